//! Predicting an architecture's latency from a table: the sum of its stem,
//! blocks and head (identity layers cost nothing), optionally corrected by
//! the table's calibration.

use std::path::{Path, PathBuf};

use serde::Serialize;

use super::LatencyError;
use super::table::Table;
use crate::space::{Arch, Space};

/// A predicted latency.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Prediction {
    /// Sum of the table's medians over the architecture's blocks (ms).
    pub predicted_ms: f64,
    /// `predicted_ms` through the table's calibration, when it has one.
    pub calibrated_ms: Option<f64>,
    /// Blocks summed (stem, layers without identities, head).
    pub blocks: usize,
}

/// Predicts `arch`'s latency in `space` from `table` (read from `path`,
/// named in errors). Every missing block is listed in the error.
pub fn predict(
    table: &Table,
    path: &Path,
    space: &Space,
    arch: &Arch,
) -> Result<Prediction, LatencyError> {
    let blocks = space.arch_blocks(arch)?;
    let mut missing: Vec<String> = Vec::new();
    let mut sum = 0.0;
    for key in &blocks {
        match table.latency_ms(key) {
            Some(ms) => sum += ms,
            None => {
                let k = key.to_string();
                if !missing.contains(&k) {
                    missing.push(k);
                }
            }
        }
    }
    if !missing.is_empty() {
        return Err(LatencyError::MissingEntries {
            path: path.to_path_buf(),
            missing,
        });
    }
    Ok(Prediction {
        predicted_ms: sum,
        calibrated_ms: table.header.calibration.as_ref().map(|c| c.fit.apply(sum)),
        blocks: blocks.len(),
    })
}

/// The space of a table, when none is given: the most recent space in the
/// header whose file still exists and still has the recorded hash. A
/// relative path is tried as recorded (from the working directory), then
/// from the table's directory and each directory above it.
pub fn space_from_header(table: &Table, path: &Path) -> Result<(Space, PathBuf), LatencyError> {
    let mut tried: Vec<String> = Vec::new();
    for r in table.header.spaces.iter().rev() {
        let Some(p) = &r.path else { continue };
        let recorded = PathBuf::from(p);
        let mut candidates = vec![recorded.clone()];
        if recorded.is_relative() {
            // A committed table sits under the repository it was profiled
            // from, so its relative space path also resolves against the
            // table's ancestors, from wherever padnas runs.
            let dir = path
                .parent()
                .filter(|d| !d.as_os_str().is_empty())
                .unwrap_or(Path::new("."));
            let dir = dir.canonicalize().unwrap_or_else(|_| dir.to_path_buf());
            candidates.extend(dir.ancestors().map(|a| a.join(&recorded)));
        }
        for c in candidates {
            if !c.is_file() {
                continue;
            }
            match Space::load(&c) {
                Ok(space) if space.hash() == r.hash => return Ok((space, c)),
                Ok(space) => tried.push(format!(
                    "{} (changed since profiling: hash {} ≠ {})",
                    c.display(),
                    space.hash(),
                    r.hash
                )),
                Err(e) => tried.push(format!("{} ({e})", c.display())),
            }
        }
    }
    let recorded: Vec<&str> = table
        .header
        .spaces
        .iter()
        .filter_map(|r| r.path.as_deref())
        .collect();
    let message = if recorded.is_empty() {
        "the table records no space file".to_string()
    } else if tried.is_empty() {
        format!(
            "its space file(s) {} were not found from here or above the table",
            recorded.join(", ")
        )
    } else {
        format!("no recorded space file is usable: {}", tried.join("; "))
    };
    Err(LatencyError::NoSpace {
        path: path.to_path_buf(),
        message,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::latency::stats::LinearFit;
    use crate::latency::table::tests::{entry, header};
    use crate::latency::table::{Calibration, SpaceRef};

    const SPACE: &str = "\
name: two
input: { channels: 3, height: 8, width: 8 }
num_classes: 4
stem: { kernel: 3, channels: 8, stride: 1 }
stages:
  - { channels: 8, num_layers: 1, stride: 1, first_ops: [k3e1] }
  - { channels: 8, num_layers: 2, stride: 1, first_ops: [k3e3, k5e3], ops: [k3e3, id] }
head: { channels: 16 }
";

    /// A hand-made table: stem 1, head 2, k3e1 0.5, k3e3 0.25, k5e3 0.75.
    fn table(space: &Space) -> Table {
        let mut t = Table::new(header());
        t.entries.insert(space.stem_block(), entry(1.0));
        t.entries.insert(space.head_block(), entry(2.0));
        let layers = space.layers();
        let ms = [("k3e1", 0.5), ("k3e3", 0.25), ("k5e3", 0.75)];
        for l in layers {
            for op in &l.ops {
                if let Some(k) = l.block(*op) {
                    let v = ms
                        .iter()
                        .find(|(n, _)| *n == op.to_string())
                        .map(|(_, v)| *v)
                        .expect("op");
                    t.entries.entry(k).or_insert_with(|| entry(v));
                }
            }
        }
        t
    }

    #[test]
    fn sums_blocks_and_identity_is_free() {
        let space = Space::from_yaml_str(SPACE, "two.yaml").expect("space");
        let mut t = table(&space);
        let p = Path::new("t.json");
        let a = space.parse_arch("k3e1,k5e3,k3e3").expect("arch");
        let got = predict(&t, p, &space, &a).expect("predict");
        assert!(
            (got.predicted_ms - (1.0 + 0.5 + 0.75 + 0.25 + 2.0)).abs() < 1e-12,
            "{got:?}"
        );
        assert_eq!(got.calibrated_ms, None);
        let b = space.parse_arch("k3e1,k3e3,id").expect("arch");
        let got = predict(&t, p, &space, &b).expect("predict");
        assert!((got.predicted_ms - (1.0 + 0.5 + 0.25 + 2.0)).abs() < 1e-12);
        assert_eq!(got.blocks, 4);
        t.header.calibration = Some(Calibration {
            fit: LinearFit {
                intercept_ms: 0.5,
                slope: 2.0,
            },
            n: 10,
            fitted_at: "x".into(),
            space_hash: space.hash(),
            loo_mape: 0.0,
            loo_within_5pct: 1.0,
            loo_within_10pct: 1.0,
            report: None,
        });
        let got = predict(&t, p, &space, &b).expect("predict");
        assert_eq!(got.calibrated_ms, Some(0.5 + 2.0 * 3.75));
    }

    #[test]
    fn missing_entries_are_all_listed() {
        let space = Space::from_yaml_str(SPACE, "two.yaml").expect("space");
        let mut t = table(&space);
        t.entries.remove(&space.head_block());
        let k5 = space.layers()[1]
            .block(space.layers()[1].ops[1])
            .expect("block");
        t.entries.remove(&k5);
        let a = space.parse_arch("k3e1,k5e3,k3e3").expect("arch");
        let e = predict(&t, Path::new("t.json"), &space, &a).expect_err("missing");
        let msg = e.to_string();
        assert!(
            msg.contains("2 block(s) missing") && msg.contains("t.json"),
            "{msg}"
        );
        assert!(
            msg.contains(&space.head_block().to_string()) && msg.contains(&k5.to_string()),
            "{msg}"
        );
    }

    #[test]
    fn space_comes_from_the_header_when_unchanged() {
        let dir = tempfile::tempdir().expect("tempdir");
        let space_path = dir.path().join("two.yaml");
        std::fs::write(&space_path, SPACE).expect("write");
        let space = Space::load(&space_path).expect("space");
        let mut t = table(&space);
        let tp = dir.path().join("t.json");
        let e = space_from_header(&t, &tp).expect_err("none recorded");
        assert!(e.to_string().contains("--space"), "{e}");
        t.header
            .spaces
            .push(SpaceRef::new(&space, Some(&space_path)));
        let (s, p) = space_from_header(&t, &tp).expect("found");
        assert_eq!((s.hash(), p), (space.hash(), space_path.clone()));
        // Relative to the table's directory too.
        t.header.spaces[0].path = Some("two.yaml".into());
        assert!(space_from_header(&t, &tp).is_ok());
        // A changed file is refused rather than silently used.
        std::fs::write(&space_path, SPACE.replace("channels: 16", "channels: 24")).expect("write");
        let msg = space_from_header(&t, &tp).expect_err("changed").to_string();
        assert!(msg.contains("changed since profiling"), "{msg}");
    }
}
