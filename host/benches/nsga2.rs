//! One NSGA-II generation (selection, crossover, mutation, constraint checks,
//! evaluation, ranking) on a synthetic objective, so the figure is the
//! search's own cost: in a real search the one-shot evaluation dominates.
//! Run with `cargo bench -p padnas --bench nsga2`; figures in host/README.md.
//!
//! The problem has the shape of `proxyless-basic` (21 layers of 7 ops) and
//! the paper's population of 64; its two objectives conflict (a latency-like
//! sum and an accuracy-like concave gain) and a window on the first rejects
//! part of the draws, as the latency window does.

use std::hint::black_box;

use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use padnas::search::SearchError;
use padnas::search::nsga2::{self, Nsga2Config, Problem, State};

const LAYERS: usize = 21;
const OPS: usize = 7;

struct Synthetic {
    cards: Vec<usize>,
}

impl Synthetic {
    fn latency(genome: &[usize]) -> f64 {
        genome
            .iter()
            .enumerate()
            .map(|(i, &g)| (g as f64) * (1.0 + (i % 5) as f64 * 0.25))
            .sum()
    }
}

impl Problem for Synthetic {
    fn cardinalities(&self) -> &[usize] {
        &self.cards
    }

    fn feasible(&mut self, genome: &[usize]) -> Result<bool, SearchError> {
        let lat = Synthetic::latency(genome);
        Ok((40.0..=110.0).contains(&lat))
    }

    fn evaluate(&mut self, genome: &[usize]) -> Result<Vec<f64>, SearchError> {
        let gain: f64 = genome
            .iter()
            .enumerate()
            .map(|(i, &g)| ((g + 1) as f64).sqrt() * (1.0 + (i % 3) as f64 * 0.5))
            .sum();
        Ok(vec![Synthetic::latency(genome), -gain])
    }
}

fn one_generation(c: &mut Criterion) {
    let mut problem = Synthetic {
        cards: vec![OPS; LAYERS],
    };
    let mut cfg = Nsga2Config {
        generations: 0,
        seed: 1,
        ..Nsga2Config::default()
    };
    // The initial population, then time generation 1 from it.
    let start: State =
        nsga2::run(&mut problem, &cfg, None, None, None, &mut |_| Ok(())).expect("initialise");
    cfg.generations = 1;
    c.bench_function("nsga2/generation/pop64-21x7", |b| {
        b.iter_batched(
            || start.clone(),
            |state| {
                let out = nsga2::run(
                    &mut problem,
                    black_box(&cfg),
                    Some(state),
                    None,
                    None,
                    &mut |_| Ok(()),
                )
                .expect("generation");
                assert_eq!(out.generation, 1);
                out
            },
            BatchSize::SmallInput,
        )
    });
}

criterion_group!(benches, one_generation);
criterion_main!(benches);
