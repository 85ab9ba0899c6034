//! Rank fidelity: does one-shot accuracy rank architectures the way
//! stand-alone training does? A ground truth of architectures trained from
//! scratch with several seeds ([`truth`]), and the score of a supernet
//! against it ([`score`]): Kendall's τ-b and Spearman's ρ with bootstrap
//! intervals, beside the ceiling that the ground truth's own seed-to-seed
//! agreement sets; and the searched networks against the random ones of
//! the same window, trained alike ([`versus`]).

pub mod score;
pub mod spread;
pub mod truth;
pub mod versus;

use std::path::PathBuf;

use crate::files::WriteError;
use crate::search::SearchError;
use crate::space::SpaceError;
use crate::supernet::SupernetError;

pub use score::{
    ArchScore, EvalNoise, RunLatency, Score, loss_ranking, repeat_settings, score_supernet,
};
pub use spread::Spread;
pub use truth::{Draw, TruthArch, TruthFile, TruthRun, draw_stratified};

/// Everything that can go wrong measuring or scoring against a ground truth.
#[derive(Debug, thiserror::Error)]
pub enum RankError {
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Underlying I/O error.
        #[source]
        source: std::io::Error,
    },
    /// A ground-truth file is not one, or not of this version.
    #[error("{path}: not a ground-truth file: {message}")]
    Format {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// A file measured with other settings than those asked for now.
    #[error("{0}")]
    Mismatch(String),
    /// Settings that cannot work.
    #[error("{0}")]
    Invalid(String),
    /// Building or scoring a network failed.
    #[error(transparent)]
    Supernet(#[from] SupernetError),
    /// Scoring a path failed.
    #[error(transparent)]
    Search(#[from] SearchError),
    /// Writing a file failed.
    #[error(transparent)]
    Write(#[from] WriteError),
    /// An architecture is not in the space.
    #[error(transparent)]
    Space(#[from] SpaceError),
}

#[cfg(test)]
mod tests;
