//! Fashion-MNIST in IDX format (as shipped by Debian's
//! `dataset-fashion-mnist`: `train-images-idx3-ubyte.gz` and friends),
//! gzipped or not.

use std::io::Read;
use std::path::{Path, PathBuf};

use super::{DataError, ImageSet};
use crate::space::Shape;

/// Class names in label order.
pub const CLASSES: [&str; 10] = [
    "t-shirt",
    "trouser",
    "pullover",
    "dress",
    "coat",
    "sandal",
    "shirt",
    "sneaker",
    "bag",
    "ankle-boot",
];

/// An IDX array of unsigned bytes: its dimensions and data.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Idx {
    /// Dimensions, outermost first.
    pub dims: Vec<usize>,
    /// Row-major data.
    pub data: Vec<u8>,
}

/// Reads an IDX file of `u8` (type code 0x08), transparently gunzipping
/// files whose name ends in `.gz`.
pub fn read_idx(path: &Path) -> Result<Idx, DataError> {
    let file = std::fs::File::open(path).map_err(|e| DataError::io(path, e))?;
    let mut bytes = Vec::new();
    let gz = path.extension().is_some_and(|e| e == "gz");
    let read = if gz {
        flate2::read::GzDecoder::new(file).read_to_end(&mut bytes)
    } else {
        std::io::BufReader::new(file).read_to_end(&mut bytes)
    };
    read.map_err(|e| DataError::io(path, e))?;
    parse_idx(&bytes).map_err(|m| DataError::format(path, m))
}

fn parse_idx(bytes: &[u8]) -> Result<Idx, String> {
    if bytes.len() < 4 || bytes[0] != 0 || bytes[1] != 0 {
        return Err("not an IDX file (bad magic)".into());
    }
    if bytes[2] != 0x08 {
        return Err(format!(
            "IDX type 0x{:02x} is not unsigned bytes (0x08)",
            bytes[2]
        ));
    }
    let ndim = usize::from(bytes[3]);
    let header = 4 + 4 * ndim;
    if ndim == 0 || bytes.len() < header {
        return Err("truncated IDX header".into());
    }
    let dims: Vec<usize> = bytes[4..header]
        .chunks_exact(4)
        .map(|c| u32::from_be_bytes([c[0], c[1], c[2], c[3]]) as usize)
        .collect();
    let n = dims
        .iter()
        .try_fold(1usize, |acc, &d| acc.checked_mul(d))
        .ok_or("IDX size overflows")?;
    let data = &bytes[header..];
    if data.len() != n {
        return Err(format!(
            "IDX header promises {n} bytes of data, file has {}",
            data.len()
        ));
    }
    Ok(Idx {
        dims,
        data: data.to_vec(),
    })
}

/// Finds `stem` or `stem.gz` in `dir`.
fn find(dir: &Path, stem: &str) -> Result<PathBuf, DataError> {
    for name in [format!("{stem}.gz"), stem.to_string()] {
        let p = dir.join(name);
        if p.is_file() {
            return Ok(p);
        }
    }
    Err(DataError::io(
        &dir.join(format!("{stem}.gz")),
        std::io::Error::new(
            std::io::ErrorKind::NotFound,
            "not found (Debian: apt-get install dataset-fashion-mnist)",
        ),
    ))
}

fn load_split(dir: &Path, prefix: &str) -> Result<ImageSet, DataError> {
    let images_path = find(dir, &format!("{prefix}-images-idx3-ubyte"))?;
    let labels_path = find(dir, &format!("{prefix}-labels-idx1-ubyte"))?;
    let images = read_idx(&images_path)?;
    let labels = read_idx(&labels_path)?;
    let &[n, h, w] = images.dims.as_slice() else {
        return Err(DataError::format(
            &images_path,
            format!("expected 3 dims, got {:?}", images.dims),
        ));
    };
    if labels.dims != [n] {
        return Err(DataError::format(
            &labels_path,
            format!("expected {n} labels, got dims {:?}", labels.dims),
        ));
    }
    if let Some(&bad) = labels
        .data
        .iter()
        .find(|&&l| usize::from(l) >= CLASSES.len())
    {
        return Err(DataError::format(
            &labels_path,
            format!("label {bad} out of range 0..10"),
        ));
    }
    Ok(ImageSet {
        // One channel: HWC and CHW coincide.
        pixels: images.data,
        labels: labels.data.iter().map(|&l| u32::from(l)).collect(),
        shape: Shape::new(1, h, w),
        classes: CLASSES.iter().map(|s| s.to_string()).collect(),
    })
}

/// Loads the train and test splits from `dir`.
pub fn load_fashion_mnist(dir: &Path) -> Result<(ImageSet, ImageSet), DataError> {
    Ok((load_split(dir, "train")?, load_split(dir, "t10k")?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn idx_header_checks() {
        let mut ok = vec![0, 0, 8, 2, 0, 0, 0, 2, 0, 0, 0, 3];
        ok.extend([1, 2, 3, 4, 5, 6]);
        assert_eq!(
            parse_idx(&ok).unwrap(),
            Idx {
                dims: vec![2, 3],
                data: vec![1, 2, 3, 4, 5, 6]
            }
        );
        assert!(
            parse_idx(&ok[..15])
                .unwrap_err()
                .contains("promises 6 bytes")
        );
        let mut float = ok.clone();
        float[2] = 0x0d;
        assert!(parse_idx(&float).unwrap_err().contains("0x0d"));
        assert!(parse_idx(&[1, 2]).is_err());
        assert!(
            parse_idx(&[0, 0, 8, 3, 0])
                .unwrap_err()
                .contains("truncated")
        );
    }
}
