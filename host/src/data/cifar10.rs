//! CIFAR-10 "binary version": `data_batch_1.bin` … `data_batch_5.bin` and
//! `test_batch.bin`, each a run of records `label (1 byte) + 3×32×32 pixels`
//! (channel planes R, G, B, each row-major), and `batches.meta.txt` with the
//! class names.

use std::path::{Path, PathBuf};

use super::{DataError, ImageSet};
use crate::space::Shape;

const SIDE: usize = 32;
const PLANE: usize = SIDE * SIDE;
const RECORD: usize = 1 + 3 * PLANE;
const DEFAULT_CLASSES: [&str; 10] = [
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
];

/// The directory holding the batches: `dir` itself, or the
/// `cifar-10-batches-bin` folder the official archive unpacks to.
fn batches_dir(dir: &Path) -> PathBuf {
    let nested = dir.join("cifar-10-batches-bin");
    if !dir.join("test_batch.bin").is_file() && nested.is_dir() {
        nested
    } else {
        dir.to_path_buf()
    }
}

fn read_batches(files: &[PathBuf], classes: Vec<String>) -> Result<ImageSet, DataError> {
    let mut set = ImageSet::empty(Shape::new(3, SIDE, SIDE), classes);
    for path in files {
        let bytes = std::fs::read(path).map_err(|e| DataError::io(path, e))?;
        if bytes.is_empty() || bytes.len() % RECORD != 0 {
            return Err(DataError::format(
                path,
                format!(
                    "{} bytes is not a whole number of {RECORD}-byte records",
                    bytes.len()
                ),
            ));
        }
        set.pixels.reserve(bytes.len() / RECORD * 3 * PLANE);
        for rec in bytes.chunks_exact(RECORD) {
            let label = u32::from(rec[0]);
            if label as usize >= set.classes.len() {
                return Err(DataError::format(
                    path,
                    format!("label {label} out of range"),
                ));
            }
            set.labels.push(label);
            // CHW planes → HWC pixels.
            let planes = &rec[1..];
            for p in 0..PLANE {
                set.pixels.extend_from_slice(&[
                    planes[p],
                    planes[PLANE + p],
                    planes[2 * PLANE + p],
                ]);
            }
        }
    }
    Ok(set)
}

/// Loads the train (five batches) and test splits from `dir`.
pub fn load_cifar10(dir: &Path) -> Result<(ImageSet, ImageSet), DataError> {
    let dir = batches_dir(dir);
    let classes: Vec<String> = match std::fs::read_to_string(dir.join("batches.meta.txt")) {
        Ok(text) => text
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .map(String::from)
            .collect(),
        Err(_) => DEFAULT_CLASSES.iter().map(|s| s.to_string()).collect(),
    };
    let train_files: Vec<PathBuf> = (1..=5)
        .map(|i| dir.join(format!("data_batch_{i}.bin")))
        .collect();
    let train = read_batches(&train_files, classes.clone())?;
    let test = read_batches(&[dir.join("test_batch.bin")], classes)?;
    Ok((train, test))
}
