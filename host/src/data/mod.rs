//! Image data sets for supernet training: Fashion-MNIST (gzipped IDX),
//! CIFAR-10 (binary batches) and image folders (one subfolder per class).
//!
//! Every loader yields an [`ImageSet`]: all images of a split as one `u8`
//! buffer in NHWC order plus one label per image. Keeping the decoded set in
//! memory (47 MB for Fashion-MNIST) and batching by index keeps loading far
//! off the critical path; see [`Loader`] for how a batch becomes a tensor.
//!
//! Splits ([`Splits`]): `train` and `val` are carved from the data set's
//! training split with a seed (the search scores architectures on `val`);
//! `test` is the data set's own test split, kept for final reports only.

mod cifar10;
mod fashion_mnist;
mod folder;
#[cfg(feature = "train")]
mod loader;
#[cfg(test)]
mod tests;

use std::path::{Path, PathBuf};

use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;

pub use cifar10::load_cifar10;
pub use fashion_mnist::{load_fashion_mnist, read_idx};
pub use folder::load_folder;
#[cfg(feature = "train")]
pub use loader::{Batch, Loader, normalize_u8};

use crate::config::{DataConfig, DataKind};
use crate::space::Shape;

/// Everything that can go wrong loading data.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    /// A file or directory could not be read.
    #[error("{path}: {cause}")]
    Io {
        /// The path.
        path: PathBuf,
        /// Underlying I/O error.
        cause: std::io::Error,
    },
    /// A file is not in the expected format.
    #[error("{path}: {message}")]
    Format {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// An image could not be decoded.
    #[error("{path}: cannot decode image: {cause}")]
    Image {
        /// The file.
        path: PathBuf,
        /// Decoder error.
        cause: image::ImageError,
    },
    /// The data set's images do not fit the space's input.
    #[error("{kind} images are {found}, but the space expects {expected}")]
    Shape {
        /// Data set kind.
        kind: String,
        /// Image shape of the data set.
        found: Shape,
        /// Input shape of the space.
        expected: Shape,
    },
    /// A split is too small for what was asked of it.
    #[error("{0}")]
    TooSmall(String),
    /// A tensor operation failed (e.g. the device is unavailable).
    #[cfg(feature = "train")]
    #[error("torch: {0}")]
    Torch(tch::TchError),
}

// By hand, not `#[from]`: the message shows the cause, so it is not also
// returned as the source (each cause is printed once).
#[cfg(feature = "train")]
impl From<tch::TchError> for DataError {
    fn from(e: tch::TchError) -> DataError {
        DataError::Torch(e)
    }
}

/// Network input for pixel value `p`: `(p − 127.5) / 127.5`, in [−1, 1].
/// An exported model expects the same scaling.
pub const PIXEL_CENTER: f64 = 127.5;

/// `n` HWC images as the network input without libtorch: NCHW `f32`, scaled
/// by [`PIXEL_CENTER`] with the same two `f32` operations as the training
/// loader's `normalize_u8` (subtract, then multiply by the reciprocal), so
/// the values are bit for bit the same; a test holds the two together.
pub fn normalized_nchw(pixels: &[u8], n: usize, shape: Shape) -> Vec<f32> {
    let (c, hw) = (shape.channels, shape.height * shape.width);
    let center = PIXEL_CENTER as f32;
    let scale = (1.0 / PIXEL_CENTER) as f32;
    let mut out = vec![0f32; n * c * hw];
    for (i, image) in pixels.chunks_exact(c * hw).take(n).enumerate() {
        for (p, px) in image.chunks_exact(c).enumerate() {
            for (ch, &v) in px.iter().enumerate() {
                out[(i * c + ch) * hw + p] = (f32::from(v) - center) * scale;
            }
        }
    }
    out
}

impl DataError {
    pub(crate) fn io(path: &Path, source: std::io::Error) -> Self {
        DataError::Io {
            path: path.to_path_buf(),
            cause: source,
        }
    }

    pub(crate) fn format(path: &Path, message: impl Into<String>) -> Self {
        DataError::Format {
            path: path.to_path_buf(),
            message: message.into(),
        }
    }
}

/// Images of one split, decoded, in memory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ImageSet {
    /// All pixels, image after image, each `height × width × channels` (HWC).
    ///
    /// HWC rather than CHW: a batch gathered from it is already channels-last,
    /// the layout libtorch's CPU convolutions run fastest in.
    pub pixels: Vec<u8>,
    /// Class index of each image.
    pub labels: Vec<u32>,
    /// Shape of one image.
    pub shape: Shape,
    /// Class names, indexed by label.
    pub classes: Vec<String>,
}

impl ImageSet {
    /// An empty set of the given image shape and classes.
    pub fn empty(shape: Shape, classes: Vec<String>) -> Self {
        ImageSet {
            pixels: Vec::new(),
            labels: Vec::new(),
            shape,
            classes,
        }
    }

    /// Number of images.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// Whether there are no images.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// Number of classes.
    pub fn num_classes(&self) -> usize {
        self.classes.len()
    }

    /// Bytes per image.
    pub fn image_len(&self) -> usize {
        self.shape.numel()
    }

    /// Pixels of image `i` (HWC).
    pub fn image(&self, i: usize) -> &[u8] {
        let n = self.image_len();
        &self.pixels[i * n..(i + 1) * n]
    }

    /// Images per class.
    pub fn class_counts(&self) -> Vec<usize> {
        let mut counts = vec![0; self.num_classes()];
        for &l in &self.labels {
            counts[l as usize] += 1;
        }
        counts
    }

    /// These images followed by `other`'s; `None` when their image shapes
    /// or classes differ.
    pub fn joined(&self, other: &ImageSet) -> Option<ImageSet> {
        if self.shape != other.shape || self.classes != other.classes {
            return None;
        }
        let mut out = self.clone();
        out.pixels.extend_from_slice(&other.pixels);
        out.labels.extend_from_slice(&other.labels);
        Some(out)
    }

    /// The images at `indices`, in that order.
    pub fn subset(&self, indices: &[usize]) -> ImageSet {
        let n = self.image_len();
        let mut pixels = Vec::with_capacity(indices.len() * n);
        for &i in indices {
            pixels.extend_from_slice(self.image(i));
        }
        ImageSet {
            pixels,
            labels: indices.iter().map(|&i| self.labels[i]).collect(),
            shape: self.shape,
            classes: self.classes.clone(),
        }
    }
}

/// The three splits of a data set.
#[derive(Clone, Debug)]
pub struct Splits {
    /// Training images (the data set's train split less `val`).
    pub train: ImageSet,
    /// Held-out validation images, carved from the train split with the seed.
    pub val: ImageSet,
    /// The data set's own test split; for final reports only.
    pub test: ImageSet,
}

impl Splits {
    /// Carves `val_split` of `train` out as validation: a seeded random
    /// subset, each part kept in the original order.
    pub fn carve(train: ImageSet, test: ImageSet, val_split: f64, seed: u64) -> Splits {
        let n = train.len();
        let n_val = ((n as f64) * val_split).round() as usize;
        let perm = permutation(n, derive_seed(seed, "val-split", 0));
        let mut val_idx = perm[..n_val].to_vec();
        let mut train_idx = perm[n_val..].to_vec();
        val_idx.sort_unstable();
        train_idx.sort_unstable();
        Splits {
            val: train.subset(&val_idx),
            train: train.subset(&train_idx),
            test,
        }
    }

    /// Keeps a seeded random subset of `n` training images (CI-sized runs)
    /// and returns the ones it leaves out (empty when it keeps all): images
    /// no network of the run trains on, which a ground truth may score on.
    pub fn limit_train(&mut self, n: usize, seed: u64) -> ImageSet {
        if n >= self.train.len() {
            return self.train.subset(&[]);
        }
        let idx = permutation(self.train.len(), derive_seed(seed, "train-subset", 0));
        let (mut kept, mut left) = (idx[..n].to_vec(), idx[n..].to_vec());
        kept.sort_unstable();
        left.sort_unstable();
        let left_out = self.train.subset(&left);
        self.train = self.train.subset(&kept);
        left_out
    }
}

/// Loads the data set a config names, checks it against the space's input
/// shape, and carves the validation split.
pub fn load(cfg: &DataConfig, input: Shape, seed: u64) -> Result<Splits, DataError> {
    let (train, test) = match cfg.kind {
        DataKind::FashionMnist => load_fashion_mnist(&cfg.path)?,
        DataKind::Cifar10 => load_cifar10(&cfg.path)?,
        DataKind::Folder => load_folder(&cfg.path, input)?,
    };
    if train.shape != input {
        return Err(DataError::Shape {
            kind: cfg.kind.to_string(),
            found: train.shape,
            expected: input,
        });
    }
    if train.is_empty() {
        return Err(DataError::TooSmall(format!(
            "{}: no training images",
            cfg.path.display()
        )));
    }
    Ok(Splits::carve(train, test, cfg.val_split, seed))
}

/// A seed for one purpose (`tag`) and one index (step, epoch) derived from
/// the job seed. Everything random in training is drawn from such seeds, not
/// from a running generator, so a resumed run draws exactly what an
/// uninterrupted one would.
pub fn derive_seed(seed: u64, tag: &str, index: u64) -> u64 {
    // FNV-1a over the tag, then SplitMix64 finalisation of the mix.
    let h = crate::hash::fnv1a64(tag.as_bytes());
    let mut z = h ^ seed.rotate_left(17) ^ index.wrapping_mul(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// A random permutation of `0..n` from `seed`.
pub fn permutation(n: usize, seed: u64) -> Vec<usize> {
    let mut idx: Vec<usize> = (0..n).collect();
    idx.shuffle(&mut ChaCha8Rng::seed_from_u64(seed));
    idx
}

#[cfg(test)]
mod split_tests {
    use super::*;

    fn toy(n: usize) -> ImageSet {
        ImageSet {
            pixels: (0..n).map(|i| i as u8).collect(),
            labels: (0..n).map(|i| (i % 3) as u32).collect(),
            shape: Shape::new(1, 1, 1),
            classes: vec!["a".into(), "b".into(), "c".into()],
        }
    }

    #[test]
    fn carve_is_seeded_disjoint_and_complete() {
        let s = Splits::carve(toy(100), toy(0), 0.2, 5);
        assert_eq!((s.train.len(), s.val.len()), (80, 20));
        let mut all: Vec<u8> = s
            .train
            .pixels
            .iter()
            .chain(&s.val.pixels)
            .copied()
            .collect();
        all.sort_unstable();
        assert_eq!(all, (0..100).map(|i| i as u8).collect::<Vec<_>>());
        let again = Splits::carve(toy(100), toy(0), 0.2, 5);
        assert_eq!(again.val, s.val);
        let other = Splits::carve(toy(100), toy(0), 0.2, 6);
        assert_ne!(other.val, s.val);
        // Labels travel with their images.
        for (p, l) in s.val.pixels.iter().zip(&s.val.labels) {
            assert_eq!(u32::from(*p) % 3, *l);
        }
    }

    #[test]
    fn derived_seeds_differ_by_tag_and_index() {
        assert_ne!(derive_seed(1, "a", 0), derive_seed(1, "b", 0));
        assert_ne!(derive_seed(1, "a", 0), derive_seed(1, "a", 1));
        assert_ne!(derive_seed(1, "a", 0), derive_seed(2, "a", 0));
        assert_eq!(derive_seed(1, "a", 7), derive_seed(1, "a", 7));
    }
}
