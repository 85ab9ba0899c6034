//! PAD-NAS pruning: per layer, count how often each op appears among the
//! top-ranked architectures of a search (non-domination rank below a
//! limit), and drop the ops whose frequency is at or below a threshold.
//! The result is a layer-wise space: each layer keeps its own op list.

use serde::{Deserialize, Serialize};

use super::SearchError;
use crate::space::{Arch, Op, Space};

/// Frequency of one op of one layer among the counted architectures.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct OpCount {
    /// The op.
    pub op: Op,
    /// Counted architectures that chose it in this layer.
    pub count: usize,
    /// `count` / number of counted architectures.
    pub frequency: f64,
    /// Whether it was pruned.
    pub pruned: bool,
    /// Whether it stayed only because every op of its layer fell at or below
    /// the threshold (a layer is never emptied).
    pub kept_to_avoid_empty: bool,
}

/// What a pruning step decided.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Pruning {
    /// Non-domination rank limit: architectures with rank < this were counted.
    pub rank_limit: usize,
    /// Frequency at or below which an op is pruned.
    pub threshold: f64,
    /// Architectures counted.
    pub counted: usize,
    /// Per layer, every op of the layer before pruning.
    pub layers: Vec<Vec<OpCount>>,
}

impl Pruning {
    /// The op lists that survive, one per layer.
    pub fn kept_ops(&self) -> Vec<Vec<Op>> {
        self.layers
            .iter()
            .map(|l| l.iter().filter(|c| !c.pruned).map(|c| c.op).collect())
            .collect()
    }

    /// Number of ops pruned over all layers.
    pub fn num_pruned(&self) -> usize {
        self.layers.iter().flatten().filter(|c| c.pruned).count()
    }
}

/// Counts op frequencies over the architectures in `ranked` whose rank is
/// below `rank_limit`, and prunes those at or below `threshold`. Every
/// architecture must belong to `space`. A layer whose every op would go
/// keeps its most frequent ones (all that tie for the top count).
pub fn prune(
    space: &Space,
    ranked: &[(Arch, usize)],
    rank_limit: usize,
    threshold: f64,
) -> Result<Pruning, SearchError> {
    if !(0.0..1.0).contains(&threshold) {
        return Err(SearchError::Invalid(format!(
            "prune threshold {threshold} is not in [0, 1)"
        )));
    }
    let layers = space.layers();
    let mut counts: Vec<Vec<usize>> = layers.iter().map(|l| vec![0; l.ops.len()]).collect();
    let mut counted = 0usize;
    for (arch, rank) in ranked {
        let idx = space.arch_indices(arch)?;
        if *rank >= rank_limit {
            continue;
        }
        counted += 1;
        for (c, i) in counts.iter_mut().zip(idx) {
            c[i] += 1;
        }
    }
    if counted == 0 {
        return Err(SearchError::Invalid(format!(
            "no architecture has a non-domination rank below {rank_limit}: nothing to count"
        )));
    }
    let out = layers
        .iter()
        .zip(&counts)
        .map(|(layer, c)| {
            let freq = |n: usize| n as f64 / counted as f64;
            let all_go = c.iter().all(|&n| freq(n) <= threshold);
            let top = c.iter().copied().max().unwrap_or(0);
            layer
                .ops
                .iter()
                .zip(c)
                .map(|(&op, &n)| {
                    let low = freq(n) <= threshold;
                    let rescue = all_go && n == top;
                    OpCount {
                        op,
                        count: n,
                        frequency: freq(n),
                        pruned: low && !rescue,
                        kept_to_avoid_empty: low && rescue,
                    }
                })
                .collect()
        })
        .collect();
    Ok(Pruning {
        rank_limit,
        threshold,
        counted,
        layers: out,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn space() -> Space {
        Space::from_yaml_str(
            "name: t\ninput: { channels: 1, height: 8, width: 8 }\nnum_classes: 3\n\
             stem: { kernel: 3, channels: 4, stride: 1 }\n\
             stages:\n\
             - { channels: 8, num_layers: 2, stride: 2, first_ops: [k3e3, k5e3, k7e3], ops: [k3e3, k5e3, id] }\n\
             head: { channels: 16 }\n",
            "t.yaml",
        )
        .unwrap()
    }

    fn arch(s: &str) -> Arch {
        s.parse().unwrap()
    }

    #[test]
    fn counts_only_the_top_ranks_and_prunes_at_the_threshold() {
        let s = space();
        // 100 counted: layer 0 k3e3 ×98, k5e3 ×1 (exactly 1%: pruned), k7e3 ×1;
        // layer 1 k3e3 ×50, id ×48, k5e3 ×2 (2%: kept).
        let mut ranked = Vec::new();
        for i in 0..100 {
            let l0 = match i {
                0 => "k5e3",
                1 => "k7e3",
                _ => "k3e3",
            };
            let l1 = match i {
                0..50 => "k3e3",
                50..98 => "id",
                _ => "k5e3",
            };
            ranked.push((arch(&format!("{l0},{l1}")), i % 10));
        }
        // Rank 10 and worse is not counted, however often it occurs.
        for _ in 0..500 {
            ranked.push((arch("k5e3,k5e3"), 10));
        }
        let p = prune(&s, &ranked, 10, 0.01).unwrap();
        assert_eq!(p.counted, 100);
        let l0: Vec<(String, usize, bool)> = p.layers[0]
            .iter()
            .map(|c| (c.op.to_string(), c.count, c.pruned))
            .collect();
        assert_eq!(
            l0,
            [
                ("k3e3".into(), 98, false),
                ("k5e3".into(), 1, true),
                ("k7e3".into(), 1, true)
            ]
        );
        assert_eq!(p.kept_ops()[1], arch("k3e3,k5e3,id").ops);
        assert_eq!(p.num_pruned(), 2);
        // The pruned space is valid and layer-wise: identity stays only
        // where the space allowed it.
        let pruned = s.with_layer_ops(&p.kept_ops()).unwrap();
        assert_eq!(pruned.layers()[0].ops.len(), 1);
        assert_eq!(pruned.layers()[1].ops.len(), 3);
        assert!(pruned.layers()[1].ops.contains(&Op::Identity));

        // A threshold of 0 prunes only ops never chosen.
        let p0 = prune(&s, &ranked, 10, 0.0).unwrap();
        assert_eq!(p0.num_pruned(), 0);
        let p1 = prune(&s, &ranked[..2], 10, 0.0).unwrap();
        assert_eq!(p1.kept_ops()[0].len(), 2);
    }

    #[test]
    fn a_layer_is_never_emptied() {
        let s = space();
        // 3 architectures, threshold 0.5: every op of layer 0 has 1/3.
        let ranked = vec![
            (arch("k3e3,id"), 0),
            (arch("k5e3,id"), 0),
            (arch("k7e3,k3e3"), 1),
        ];
        let p = prune(&s, &ranked, 10, 0.5).unwrap();
        // Layer 0: all tie at the top count, all kept; layer 1: id (2/3) kept.
        assert_eq!(p.kept_ops()[0].len(), 3);
        assert!(p.layers[0].iter().all(|c| c.kept_to_avoid_empty));
        assert_eq!(p.kept_ops()[1], vec![Op::Identity]);
        // A layer where one op leads but is still under the threshold keeps it alone.
        let ranked = vec![
            (arch("k3e3,id"), 0),
            (arch("k3e3,k3e3"), 0),
            (arch("k5e3,k5e3"), 0),
            (arch("k7e3,k3e3"), 0),
        ];
        let p = prune(&s, &ranked, 10, 0.6).unwrap();
        assert_eq!(p.kept_ops()[0], arch("k3e3").ops);
        assert!(s.with_layer_ops(&p.kept_ops()).is_ok());
    }

    #[test]
    fn bad_input_is_refused() {
        let s = space();
        assert!(prune(&s, &[(arch("k3e3,id"), 0)], 10, 1.0).is_err());
        assert!(prune(&s, &[(arch("k3e3,id"), 12)], 10, 0.01).is_err());
        // Identity in the first layer is not in the space.
        let e = prune(&s, &[(arch("id,id"), 0)], 10, 0.01).unwrap_err();
        assert!(e.to_string().contains("layer 0"), "{e}");
    }
}
