//! Architectures (one op per searchable layer), checked against a space,
//! mapped to and from candidate indices, and sampled.

use std::fmt;
use std::str::FromStr;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use super::{BlockKey, Op, Space, SpaceError};

/// One chosen op per searchable layer; text form `k3e6,k5e3,id,…`.
///
/// Parsing checks only the syntax; [`Space::check_arch`] (or
/// [`Space::parse_arch`]) checks it against a space.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(into = "String", try_from = "String")]
pub struct Arch {
    /// The op of each layer.
    pub ops: Vec<Op>,
}

impl Arch {
    /// Wraps a list of ops.
    pub fn new(ops: Vec<Op>) -> Self {
        Arch { ops }
    }

    /// Number of identity layers (skipped blocks).
    pub fn num_identities(&self) -> usize {
        self.ops.iter().filter(|op| op.is_identity()).count()
    }
}

impl fmt::Display for Arch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, op) in self.ops.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{op}")?;
        }
        Ok(())
    }
}

impl FromStr for Arch {
    type Err = SpaceError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.trim().is_empty() {
            return Err(SpaceError::Arch("empty architecture".into()));
        }
        let ops = s
            .split(',')
            .enumerate()
            .map(|(i, t)| {
                t.trim()
                    .parse()
                    .map_err(|e| SpaceError::Arch(format!("layer {i}: {e}")))
            })
            .collect::<Result<Vec<Op>, _>>()?;
        Ok(Arch { ops })
    }
}

impl From<Arch> for String {
    fn from(a: Arch) -> Self {
        a.to_string()
    }
}

impl TryFrom<String> for Arch {
    type Error = SpaceError;

    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

impl Space {
    /// Blocks an architecture runs, in order (stem, layers without
    /// identities, head): its latency is the sum of their table entries.
    pub fn arch_blocks(&self, arch: &Arch) -> Result<Vec<BlockKey>, SpaceError> {
        self.check_arch(arch)?;
        let mut blocks = vec![self.stem_block()];
        blocks.extend(
            self.layers
                .iter()
                .zip(&arch.ops)
                .filter_map(|(l, &op)| l.block(op)),
        );
        blocks.push(self.head_block());
        Ok(blocks)
    }

    /// Checks that `arch` has one op per layer, each among that layer's candidates.
    pub fn check_arch(&self, arch: &Arch) -> Result<(), SpaceError> {
        self.arch_indices(arch).map(|_| ())
    }

    /// Parses an architecture and checks it against the space.
    pub fn parse_arch(&self, text: &str) -> Result<Arch, SpaceError> {
        let arch: Arch = text.parse()?;
        self.check_arch(&arch)?;
        Ok(arch)
    }

    /// Position of each chosen op in its layer's candidate list.
    pub fn arch_indices(&self, arch: &Arch) -> Result<Vec<usize>, SpaceError> {
        if arch.ops.len() != self.layers.len() {
            return Err(SpaceError::Arch(format!(
                "{} ops given, the space has {} searchable layers",
                arch.ops.len(),
                self.layers.len()
            )));
        }
        self.layers
            .iter()
            .zip(&arch.ops)
            .map(|(l, op)| {
                l.ops.iter().position(|c| c == op).ok_or_else(|| {
                    let cands: Vec<String> = l.ops.iter().map(Op::to_string).collect();
                    SpaceError::Arch(format!(
                        "layer {}: {op} is not a candidate (candidates: {})",
                        l.index,
                        cands.join(",")
                    ))
                })
            })
            .collect()
    }

    /// The architecture choosing candidate `indices[i]` in layer `i`.
    pub fn arch_from_indices(&self, indices: &[usize]) -> Result<Arch, SpaceError> {
        if indices.len() != self.layers.len() {
            return Err(SpaceError::Arch(format!(
                "{} indices given, the space has {} searchable layers",
                indices.len(),
                self.layers.len()
            )));
        }
        let ops = self
            .layers
            .iter()
            .zip(indices)
            .map(|(l, &i)| {
                l.ops.get(i).copied().ok_or_else(|| {
                    SpaceError::Arch(format!(
                        "layer {}: index {i} out of range ({} candidates)",
                        l.index,
                        l.ops.len()
                    ))
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Arch { ops })
    }

    /// Candidate indices drawn uniformly per layer.
    pub fn sample_indices<R: Rng + ?Sized>(&self, rng: &mut R) -> Vec<usize> {
        // Drawn as u32 so a seed gives the same path on 32- and 64-bit hosts.
        self.layers
            .iter()
            .map(|l| rng.random_range(0..l.ops.len() as u32) as usize)
            .collect()
    }

    /// An architecture drawn uniformly per layer.
    pub fn sample<R: Rng + ?Sized>(&self, rng: &mut R) -> Arch {
        let idx = self.sample_indices(rng);
        Arch {
            ops: self.layers.iter().zip(idx).map(|(l, i)| l.ops[i]).collect(),
        }
    }

    /// An architecture drawn from a fresh `ChaCha8Rng` seeded with `seed`.
    pub fn sample_seeded(&self, seed: u64) -> Arch {
        self.sample(&mut ChaCha8Rng::seed_from_u64(seed))
    }
}
