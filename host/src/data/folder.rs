//! Image folders: one subfolder per class, JPEG or PNG files inside.
//!
//! Layout: `DIR/train/<class>/…` with an optional `DIR/test/<class>/…`, or
//! the class folders directly under `DIR` (then there is no test split).
//! Classes are the subfolder names in sorted order (the train split's). Each
//! image is scaled to cover the space's input size, centre-cropped to it, and
//! converted to grey or RGB after the space's input channels.

use std::path::{Path, PathBuf};

use image::imageops::FilterType;

use super::{DataError, ImageSet};
use crate::space::Shape;

const EXTENSIONS: [&str; 3] = ["jpg", "jpeg", "png"];

fn sorted_entries(dir: &Path) -> Result<Vec<PathBuf>, DataError> {
    let mut entries = std::fs::read_dir(dir)
        .map_err(|e| DataError::io(dir, e))?
        .map(|e| e.map(|e| e.path()))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| DataError::io(dir, e))?;
    // Directory order is file-system dependent; sorting makes labels and
    // image order reproducible.
    entries.sort();
    Ok(entries)
}

fn class_dirs(dir: &Path) -> Result<Vec<(String, PathBuf)>, DataError> {
    Ok(sorted_entries(dir)?
        .into_iter()
        .filter(|p| p.is_dir())
        .filter_map(|p| Some((p.file_name()?.to_str()?.to_string(), p)))
        .filter(|(name, _)| !name.starts_with('.'))
        .collect())
}

fn decode(path: &Path, shape: Shape) -> Result<Vec<u8>, DataError> {
    let img = image::open(path).map_err(|source| DataError::Image {
        path: path.to_path_buf(),
        cause: source,
    })?;
    let (w, h) = (shape.width as u32, shape.height as u32);
    let img = if img.width() == w && img.height() == h {
        img
    } else {
        // Cover then centre-crop keeps the aspect ratio (no stretching).
        img.resize_to_fill(w, h, FilterType::Triangle)
    };
    match shape.channels {
        1 => Ok(img.into_luma8().into_raw()),
        3 => Ok(img.into_rgb8().into_raw()),
        c => Err(DataError::format(
            path,
            format!("image folders give 1 or 3 channels, the space wants {c}"),
        )),
    }
}

fn load_split(dir: &Path, classes: &[String], shape: Shape) -> Result<ImageSet, DataError> {
    let mut set = ImageSet::empty(shape, classes.to_vec());
    for (label, class) in classes.iter().enumerate() {
        let class_dir = dir.join(class);
        if !class_dir.is_dir() {
            continue;
        }
        for file in sorted_entries(&class_dir)? {
            let ext = file
                .extension()
                .and_then(|e| e.to_str())
                .map(str::to_ascii_lowercase);
            if !ext.is_some_and(|e| EXTENSIONS.contains(&e.as_str())) {
                continue;
            }
            set.pixels.extend(decode(&file, shape)?);
            set.labels.push(label as u32);
        }
    }
    Ok(set)
}

/// Loads train and test splits from an image folder, sized to `shape`.
pub fn load_folder(dir: &Path, shape: Shape) -> Result<(ImageSet, ImageSet), DataError> {
    let (train_dir, test_dir) = if dir.join("train").is_dir() {
        (
            dir.join("train"),
            Some(dir.join("test")).filter(|d| d.is_dir()),
        )
    } else {
        (dir.to_path_buf(), None)
    };
    let classes: Vec<String> = class_dirs(&train_dir)?
        .into_iter()
        .map(|(n, _)| n)
        .collect();
    if classes.len() < 2 {
        return Err(DataError::format(
            &train_dir,
            format!(
                "needs one subfolder per class (at least 2), found {}",
                classes.len()
            ),
        ));
    }
    if let Some(test_dir) = &test_dir {
        for (name, _) in class_dirs(test_dir)? {
            if !classes.contains(&name) {
                return Err(DataError::format(
                    test_dir,
                    format!("class {name:?} is not in the train split"),
                ));
            }
        }
    }
    let train = load_split(&train_dir, &classes, shape)?;
    let test = match &test_dir {
        Some(d) => load_split(d, &classes, shape)?,
        None => ImageSet::empty(shape, classes),
    };
    Ok((train, test))
}
