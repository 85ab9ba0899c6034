//! NSGA-II (Deb et al. 2002) over integer genomes: gene `i` takes a value in
//! `0..cardinalities[i]` (for architectures: the index of the op chosen in
//! layer `i` of the current layer-wise space).
//!
//! - All objectives are minimised (accuracy enters negated).
//! - A cheap hard constraint ([`Problem::feasible`], the latency window) is
//!   checked before the expensive evaluation: an infeasible genome is never
//!   evaluated and never admitted, neither at initialisation nor as
//!   offspring; it is redrawn instead.
//! - Evaluations are cached by genome, and every evaluated genome is kept in
//!   an archive (PAD-NAS ranks the whole archive to count op frequencies).
//! - Randomness of generation `g` comes from a generator seeded with
//!   `derive_seed(seed, "nsga2", g)`, not from a running one, so a search
//!   resumed from its saved state draws exactly what an uninterrupted one
//!   would; [`State`] is all that needs saving.

use std::collections::HashMap;
use std::time::Instant;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use super::SearchError;
use crate::data::derive_seed;

/// Settings of one search (paper defaults in [`Default`]).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Nsga2Config {
    /// Individuals per generation.
    pub population: usize,
    /// Generations after the initial population.
    pub generations: usize,
    /// Probability that two parents are recombined (two-point crossover).
    pub crossover_prob: f64,
    /// Probability that each gene of a child is redrawn (to another value).
    pub mutation_prob: f64,
    /// Seed of every random choice.
    pub seed: u64,
    /// Draws allowed per admitted individual before giving up (feasible and,
    /// where possible, new to the population).
    pub max_tries: usize,
}

impl Default for Nsga2Config {
    fn default() -> Self {
        Nsga2Config {
            population: 64,
            generations: 40,
            crossover_prob: 0.9,
            mutation_prob: 0.1,
            seed: 0,
            max_tries: 200,
        }
    }
}

impl Nsga2Config {
    /// Checks ranges; `what` names the config section in errors.
    pub fn check(&self, what: &str) -> Result<(), SearchError> {
        let bad = |m: String| Err(SearchError::Invalid(format!("{what}: {m}")));
        if self.population < 2 {
            return bad(format!("population {} < 2", self.population));
        }
        for (k, p) in [
            ("crossover_prob", self.crossover_prob),
            ("mutation_prob", self.mutation_prob),
        ] {
            if !(0.0..=1.0).contains(&p) {
                return bad(format!("{k} {p} is not in [0, 1]"));
            }
        }
        if self.max_tries == 0 {
            return bad("max_tries must be at least 1".into());
        }
        Ok(())
    }
}

/// What NSGA-II optimises.
pub trait Problem {
    /// Number of values of each gene (each at least 1).
    fn cardinalities(&self) -> &[usize];
    /// The hard constraint; cheap, called before [`Problem::evaluate`].
    fn feasible(&mut self, genome: &[usize]) -> Result<bool, SearchError>;
    /// Objectives to minimise (the same count for every genome).
    fn evaluate(&mut self, genome: &[usize]) -> Result<Vec<f64>, SearchError>;
}

/// One evaluated genome.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Evaluated {
    /// Gene values.
    pub genome: Vec<usize>,
    /// Objectives (minimised).
    pub objectives: Vec<f64>,
}

/// Progress of one generation.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct GenerationStats {
    /// 0 is the initial population.
    pub generation: usize,
    /// Unique genomes evaluated so far.
    pub evaluations: usize,
    /// Lookups answered by the cache so far.
    pub cache_hits: usize,
    /// Infeasible draws rejected so far.
    pub rejected: usize,
    /// Size of the population's first front.
    pub front_size: usize,
    /// Best (lowest) value of each objective in the population.
    pub best: Vec<f64>,
    /// Hypervolume of the first front w.r.t. the reference point, when one is set.
    pub hypervolume: Option<f64>,
    /// Wall time of this generation (s).
    pub seconds: f64,
}

/// Everything a search needs to continue after generation `generation`
/// (the default: nothing done yet).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct State {
    /// Last completed generation (0: the initial population).
    pub generation: usize,
    /// Indices into `archive` of the current population.
    pub population: Vec<usize>,
    /// Every evaluated genome, in evaluation order.
    pub archive: Vec<Evaluated>,
    /// One entry per completed generation.
    pub history: Vec<GenerationStats>,
    /// Time spent evaluating (s), over all sessions.
    pub eval_seconds: f64,
}

/// Runs NSGA-II from scratch or from `resume`, calling `on_generation` after
/// each completed generation (to save the state) and stopping early after
/// `stop_after` generations (as if interrupted there). `reference` is the
/// point hypervolumes are measured from (None: not measured).
pub fn run(
    problem: &mut dyn Problem,
    cfg: &Nsga2Config,
    resume: Option<State>,
    reference: Option<&[f64]>,
    stop_after: Option<usize>,
    on_generation: &mut dyn FnMut(&State) -> Result<(), SearchError>,
) -> Result<State, SearchError> {
    cfg.check("search")?;
    let cards = problem.cardinalities().to_vec();
    if cards.is_empty() || cards.contains(&0) {
        return Err(SearchError::Invalid(format!(
            "every gene needs at least one value: {cards:?}"
        )));
    }
    let mut s = Search {
        problem,
        cfg,
        cards,
        index: HashMap::new(),
        state: resume.unwrap_or_default(),
        cache_hits: 0,
        rejected: 0,
        reference: reference.map(<[f64]>::to_vec),
    };
    for (i, e) in s.state.archive.iter().enumerate() {
        if e.genome.len() != s.cards.len() || e.genome.iter().zip(&s.cards).any(|(g, c)| g >= c) {
            return Err(SearchError::Invalid(format!(
                "saved genome {:?} does not fit gene sizes {:?}",
                e.genome, s.cards
            )));
        }
        s.index.insert(e.genome.clone(), i);
    }
    if let Some(last) = s.state.history.last() {
        s.cache_hits = last.cache_hits;
        s.rejected = last.rejected;
    }
    let mut done_now = 0;
    if s.state.population.is_empty() {
        let t0 = Instant::now();
        s.initialise()?;
        s.record(t0);
        on_generation(&s.state)?;
        done_now += 1;
    }
    while s.state.generation < cfg.generations && stop_after.is_none_or(|n| done_now < n) {
        let t0 = Instant::now();
        s.state.generation += 1;
        s.step()?;
        s.record(t0);
        on_generation(&s.state)?;
        done_now += 1;
    }
    Ok(s.state)
}

struct Search<'a> {
    problem: &'a mut dyn Problem,
    cfg: &'a Nsga2Config,
    cards: Vec<usize>,
    index: HashMap<Vec<usize>, usize>,
    state: State,
    cache_hits: usize,
    rejected: usize,
    reference: Option<Vec<f64>>,
}

impl Search<'_> {
    fn rng(&self, generation: usize) -> ChaCha8Rng {
        ChaCha8Rng::seed_from_u64(derive_seed(self.cfg.seed, "nsga2", generation as u64))
    }

    fn random_genome(&self, rng: &mut ChaCha8Rng) -> Vec<usize> {
        // u32 draws: the same seed gives the same genomes on 32-bit hosts.
        self.cards
            .iter()
            .map(|&c| rng.random_range(0..c as u32) as usize)
            .collect()
    }

    /// Archive index of `genome`, evaluating it if new.
    fn lookup(&mut self, genome: Vec<usize>) -> Result<usize, SearchError> {
        if let Some(&i) = self.index.get(&genome) {
            self.cache_hits += 1;
            return Ok(i);
        }
        let t0 = Instant::now();
        let objectives = self.problem.evaluate(&genome)?;
        self.state.eval_seconds += t0.elapsed().as_secs_f64();
        if let Some(first) = self.state.archive.first()
            && first.objectives.len() != objectives.len()
        {
            return Err(SearchError::Invalid(format!(
                "evaluation returned {} objectives, earlier ones {}",
                objectives.len(),
                first.objectives.len()
            )));
        }
        if objectives.iter().any(|v| !v.is_finite()) {
            return Err(SearchError::Invalid(format!(
                "objectives of {genome:?} are not finite: {objectives:?}"
            )));
        }
        let i = self.state.archive.len();
        self.index.insert(genome.clone(), i);
        self.state.archive.push(Evaluated { genome, objectives });
        Ok(i)
    }

    /// A feasible genome made by `draw`, preferring one not already in
    /// `taken`; `None` when no feasible one was drawn in `max_tries`.
    fn admit(
        &mut self,
        rng: &mut ChaCha8Rng,
        taken: &[usize],
        draw: &mut dyn FnMut(&Self, &mut ChaCha8Rng) -> Vec<usize>,
    ) -> Result<Option<usize>, SearchError> {
        let mut fallback = None;
        for _ in 0..self.cfg.max_tries {
            let g = draw(self, rng);
            if !self.problem.feasible(&g)? {
                self.rejected += 1;
                continue;
            }
            let dup = self.index.get(&g).is_some_and(|i| taken.contains(i));
            if !dup {
                return self.lookup(g).map(Some);
            }
            fallback.get_or_insert(g);
        }
        fallback.map(|g| self.lookup(g)).transpose()
    }

    fn initialise(&mut self) -> Result<(), SearchError> {
        let mut rng = self.rng(0);
        let mut pop = Vec::with_capacity(self.cfg.population);
        while pop.len() < self.cfg.population {
            let got = self.admit(&mut rng, &pop, &mut |s, r| s.random_genome(r))?;
            match got {
                Some(i) => pop.push(i),
                None => {
                    return Err(SearchError::NoFeasible {
                        found: pop.len(),
                        wanted: self.cfg.population,
                        tries: self.cfg.max_tries,
                    });
                }
            }
        }
        self.state.population = pop;
        Ok(())
    }

    fn objectives(&self, i: usize) -> &[f64] {
        &self.state.archive[i].objectives
    }

    fn step(&mut self) -> Result<(), SearchError> {
        let mut rng = self.rng(self.state.generation);
        let parents = self.state.population.clone();
        let objs: Vec<&[f64]> = parents.iter().map(|&i| self.objectives(i)).collect();
        let (rank, crowd) = rank_and_crowding(&objs);
        let n = self.cfg.population;
        let mut children: Vec<usize> = Vec::with_capacity(n);
        while children.len() < n {
            let a = tournament(&mut rng, &rank, &crowd);
            let b = tournament(&mut rng, &rank, &crowd);
            let (ga, gb) = (
                self.state.archive[parents[a]].genome.clone(),
                self.state.archive[parents[b]].genome.clone(),
            );
            let crossover = rng.random_bool(self.cfg.crossover_prob);
            // Two children from one pair, each retried independently: a
            // retry re-mutates (and, with crossover, re-cuts) the same parents.
            for second in [false, true] {
                if children.len() == n {
                    break;
                }
                let mut taken = parents.clone();
                taken.extend(&children);
                let got = self.admit(&mut rng, &taken, &mut |s, r| {
                    let mut g = if crossover {
                        let (x, y) = two_point(r, &ga, &gb);
                        if second { y } else { x }
                    } else if second {
                        gb.clone()
                    } else {
                        ga.clone()
                    };
                    s.mutate(r, &mut g);
                    g
                })?;
                // No feasible child near these parents: fall back to a
                // feasible parent (always admissible), so the population
                // keeps its size.
                children.push(got.unwrap_or(parents[if second { b } else { a }]));
            }
        }
        // Elitist environmental selection over parents ∪ children.
        let mut pool = parents;
        pool.extend(children);
        pool.sort_unstable();
        pool.dedup();
        let objs: Vec<&[f64]> = pool.iter().map(|&i| self.objectives(i)).collect();
        let chosen = select(&objs, n);
        self.state.population = chosen.into_iter().map(|k| pool[k]).collect();
        Ok(())
    }

    fn mutate(&self, rng: &mut ChaCha8Rng, g: &mut [usize]) {
        for (v, &c) in g.iter_mut().zip(&self.cards) {
            if c > 1 && rng.random_bool(self.cfg.mutation_prob) {
                // Another value, uniformly: a redraw that may land on the
                // same value would lower the effective rate unevenly.
                let r = rng.random_range(0..(c - 1) as u32) as usize;
                *v = if r >= *v { r + 1 } else { r };
            }
        }
    }

    fn record(&mut self, t0: Instant) {
        let objs: Vec<&[f64]> = self
            .state
            .population
            .iter()
            .map(|&i| self.objectives(i))
            .collect();
        let fronts = non_dominated_fronts(&objs);
        let m = objs.first().map_or(0, |o| o.len());
        let best = (0..m)
            .map(|k| objs.iter().map(|o| o[k]).fold(f64::INFINITY, f64::min))
            .collect();
        let hypervolume = self.reference.as_ref().and_then(|r| {
            let front: Vec<&[f64]> = fronts[0].iter().map(|&i| objs[i]).collect();
            hypervolume_2d(&front, r)
        });
        self.state.history.push(GenerationStats {
            generation: self.state.generation,
            evaluations: self.state.archive.len(),
            cache_hits: self.cache_hits,
            rejected: self.rejected,
            front_size: fronts[0].len(),
            best,
            hypervolume,
            seconds: t0.elapsed().as_secs_f64(),
        });
    }
}

/// Binary tournament: lower rank wins, then larger crowding distance, then
/// the first drawn.
fn tournament(rng: &mut ChaCha8Rng, rank: &[usize], crowd: &[f64]) -> usize {
    let n = rank.len() as u32;
    let a = rng.random_range(0..n) as usize;
    let b = rng.random_range(0..n) as usize;
    if rank[b] < rank[a] || (rank[b] == rank[a] && crowd[b] > crowd[a]) {
        b
    } else {
        a
    }
}

/// Two-point crossover: the genes between two cut points are swapped.
fn two_point(rng: &mut ChaCha8Rng, a: &[usize], b: &[usize]) -> (Vec<usize>, Vec<usize>) {
    let n = a.len() as u32;
    let (mut x, mut y) = (a.to_vec(), b.to_vec());
    if n < 2 {
        return (x, y);
    }
    let p = rng.random_range(0..n) as usize;
    let q = rng.random_range(0..n) as usize;
    let (lo, hi) = (p.min(q), p.max(q) + 1);
    x[lo..hi].copy_from_slice(&b[lo..hi]);
    y[lo..hi].copy_from_slice(&a[lo..hi]);
    (x, y)
}

/// Whether `a` Pareto-dominates `b` (no worse in all, better in one).
pub fn dominates(a: &[f64], b: &[f64]) -> bool {
    let mut better = false;
    for (x, y) in a.iter().zip(b) {
        if x > y {
            return false;
        }
        if x < y {
            better = true;
        }
    }
    better
}

/// Fast non-dominated sort: the fronts, best first, as indices into `objs`
/// (ascending within a front).
pub fn non_dominated_fronts(objs: &[&[f64]]) -> Vec<Vec<usize>> {
    let n = objs.len();
    let mut dominated_by: Vec<Vec<usize>> = vec![Vec::new(); n];
    let mut count = vec![0usize; n];
    for i in 0..n {
        for j in (i + 1)..n {
            if dominates(objs[i], objs[j]) {
                dominated_by[i].push(j);
                count[j] += 1;
            } else if dominates(objs[j], objs[i]) {
                dominated_by[j].push(i);
                count[i] += 1;
            }
        }
    }
    let mut fronts = Vec::new();
    let mut current: Vec<usize> = (0..n).filter(|&i| count[i] == 0).collect();
    while !current.is_empty() {
        let mut next = Vec::new();
        for &i in &current {
            for &j in &dominated_by[i] {
                count[j] -= 1;
                if count[j] == 0 {
                    next.push(j);
                }
            }
        }
        next.sort_unstable();
        fronts.push(std::mem::replace(&mut current, next));
    }
    if fronts.is_empty() {
        fronts.push(Vec::new());
    }
    fronts
}

/// Non-domination rank of each point (0: the first front).
pub fn ranks(objs: &[&[f64]]) -> Vec<usize> {
    let mut rank = vec![0; objs.len()];
    for (r, front) in non_dominated_fronts(objs).iter().enumerate() {
        for &i in front {
            rank[i] = r;
        }
    }
    rank
}

/// Crowding distance of each member of `front` (indices into `objs`), in
/// the order of `front`: boundary points get infinity.
pub fn crowding(objs: &[&[f64]], front: &[usize]) -> Vec<f64> {
    let n = front.len();
    let mut d = vec![0.0; n];
    if n <= 2 {
        return vec![f64::INFINITY; n];
    }
    let m = objs[front[0]].len();
    // `k` picks an objective inside each point, not an element of `objs`.
    #[allow(clippy::needless_range_loop)]
    for k in 0..m {
        let mut order: Vec<usize> = (0..n).collect();
        order.sort_by(|&a, &b| {
            objs[front[a]][k]
                .total_cmp(&objs[front[b]][k])
                .then(front[a].cmp(&front[b]))
        });
        let lo = objs[front[order[0]]][k];
        let hi = objs[front[order[n - 1]]][k];
        d[order[0]] = f64::INFINITY;
        d[order[n - 1]] = f64::INFINITY;
        if hi > lo {
            for w in 1..n - 1 {
                let gap = objs[front[order[w + 1]]][k] - objs[front[order[w - 1]]][k];
                d[order[w]] += gap / (hi - lo);
            }
        }
    }
    d
}

fn rank_and_crowding(objs: &[&[f64]]) -> (Vec<usize>, Vec<f64>) {
    let mut rank = vec![0; objs.len()];
    let mut crowd = vec![0.0; objs.len()];
    for (r, front) in non_dominated_fronts(objs).iter().enumerate() {
        for (&i, c) in front.iter().zip(crowding(objs, front)) {
            rank[i] = r;
            crowd[i] = c;
        }
    }
    (rank, crowd)
}

/// NSGA-II environmental selection: `n` indices of `objs`, whole fronts
/// first, the last front cut by descending crowding distance.
pub fn select(objs: &[&[f64]], n: usize) -> Vec<usize> {
    let mut out = Vec::with_capacity(n);
    for front in non_dominated_fronts(objs) {
        if out.len() + front.len() <= n {
            out.extend(&front);
        } else {
            let c = crowding(objs, &front);
            let mut order: Vec<usize> = (0..front.len()).collect();
            order.sort_by(|&a, &b| c[b].total_cmp(&c[a]).then(front[a].cmp(&front[b])));
            out.extend(order.iter().take(n - out.len()).map(|&k| front[k]));
        }
        if out.len() >= n {
            break;
        }
    }
    out
}

/// Hypervolume dominated by a two-objective point set (minimised) and bounded
/// by `reference`; points not better than the reference in both count for
/// nothing. `None` unless there are exactly two objectives.
pub fn hypervolume_2d(points: &[&[f64]], reference: &[f64]) -> Option<f64> {
    if reference.len() != 2 || points.iter().any(|p| p.len() != 2) {
        return None;
    }
    let mut pts: Vec<(f64, f64)> = points
        .iter()
        .map(|p| (p[0], p[1]))
        .filter(|&(x, y)| x < reference[0] && y < reference[1])
        .collect();
    pts.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.total_cmp(&b.1)));
    let mut hv = 0.0;
    let mut best_y = reference[1];
    for (x, y) in pts {
        if y < best_y {
            hv += (reference[0] - x) * (best_y - y);
            best_y = y;
        }
    }
    Some(hv)
}

#[cfg(test)]
mod tests;
