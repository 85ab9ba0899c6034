use super::*;

/// ZDT1 with `n` variables, each discretised to `levels` values in [0, 1].
/// Its Pareto front is f2 = 1 − √f1 (g = 1, all but the first variable
/// 0); the hypervolume of that front from (1, 1) is 2/3.
struct Zdt1 {
    cards: Vec<usize>,
    levels: usize,
    evaluations: usize,
    /// Feasible region for the window test: lo ≤ f1 ≤ hi.
    window: Option<(f64, f64)>,
}

impl Zdt1 {
    fn new(n: usize, levels: usize) -> Self {
        Zdt1 {
            cards: vec![levels; n],
            levels,
            evaluations: 0,
            window: None,
        }
    }
    fn x(&self, g: usize) -> f64 {
        g as f64 / (self.levels - 1) as f64
    }
    fn f(&self, genome: &[usize]) -> Vec<f64> {
        let f1 = self.x(genome[0]);
        let rest: f64 = genome[1..].iter().map(|&g| self.x(g)).sum();
        let g = 1.0 + 9.0 * rest / (genome.len() - 1) as f64;
        vec![f1, g * (1.0 - (f1 / g).sqrt())]
    }
}

impl Problem for Zdt1 {
    fn cardinalities(&self) -> &[usize] {
        &self.cards
    }
    fn feasible(&mut self, genome: &[usize]) -> Result<bool, SearchError> {
        let f1 = self.x(genome[0]);
        Ok(self.window.is_none_or(|(lo, hi)| (lo..=hi).contains(&f1)))
    }
    fn evaluate(&mut self, genome: &[usize]) -> Result<Vec<f64>, SearchError> {
        assert!(self.feasible(genome)?, "an infeasible genome was evaluated");
        self.evaluations += 1;
        Ok(self.f(genome))
    }
}

fn front_of(state: &State) -> Vec<Vec<f64>> {
    let objs: Vec<&[f64]> = state
        .population
        .iter()
        .map(|&i| state.archive[i].objectives.as_slice())
        .collect();
    let fronts = non_dominated_fronts(&objs);
    fronts[0].iter().map(|&i| objs[i].to_vec()).collect()
}

fn cfg(seed: u64, generations: usize) -> Nsga2Config {
    Nsga2Config {
        population: 64,
        generations,
        seed,
        mutation_prob: 0.2,
        ..Nsga2Config::default()
    }
}

#[test]
fn zdt1_front_reaches_most_of_the_optimal_hypervolume() {
    let mut p = Zdt1::new(6, 41);
    let c = cfg(3, 120);
    let s = run(&mut p, &c, None, Some(&[1.0, 1.0]), None, &mut |_| Ok(())).unwrap();
    let front = front_of(&s);
    let refs: Vec<&[f64]> = front.iter().map(Vec::as_slice).collect();
    let hv = hypervolume_2d(&refs, &[1.0, 1.0]).unwrap();
    // The optimum is 2/3 for the continuous front; 41 levels and 64
    // points lose a little of it.
    assert!(hv > 0.95 * 2.0 / 3.0, "hypervolume {hv}");
    assert!(hv <= 2.0 / 3.0 + 1e-9, "hypervolume {hv} above the optimum");
    // History: one entry per generation, hypervolume never decreasing
    // by much (elitism keeps the front).
    assert_eq!(s.history.len(), c.generations + 1);
    let first = s.history[0].hypervolume.unwrap();
    assert!(hv > first, "no progress: {first} → {hv}");
    // The cache: every evaluation is a distinct genome.
    assert_eq!(p.evaluations, s.archive.len());
    let mut genomes: Vec<_> = s.archive.iter().map(|e| e.genome.clone()).collect();
    genomes.sort();
    genomes.dedup();
    assert_eq!(genomes.len(), s.archive.len());
    assert!(s.history.last().unwrap().cache_hits > 0);
}

#[test]
fn random_search_does_worse_than_nsga2_on_zdt1() {
    // The same number of evaluations, drawn uniformly at random: a
    // check that selection and variation do the work, not the budget.
    let mut p = Zdt1::new(6, 41);
    let s = run(&mut p, &cfg(3, 40), None, None, None, &mut |_| Ok(())).unwrap();
    let mut rng = ChaCha8Rng::seed_from_u64(3);
    let random: Vec<Vec<f64>> = (0..s.archive.len())
        .map(|_| {
            let g: Vec<usize> = (0..6).map(|_| rng.random_range(0..41)).collect();
            p.f(&g)
        })
        .collect();
    let hv = |pts: &[Vec<f64>]| {
        let r: Vec<&[f64]> = pts.iter().map(Vec::as_slice).collect();
        hypervolume_2d(&r, &[1.0, 1.0]).unwrap()
    };
    let ours = hv(&front_of(&s));
    assert!(ours > hv(&random) + 0.05, "{ours} vs {}", hv(&random));
}

#[test]
fn the_window_is_never_violated() {
    let mut p = Zdt1::new(5, 21);
    p.window = Some((0.3, 0.6));
    let s = run(&mut p, &cfg(5, 15), None, None, None, &mut |st| {
        for &i in &st.population {
            let f1 = st.archive[i].objectives[0];
            assert!((0.3..=0.6).contains(&f1), "{f1} admitted");
        }
        Ok(())
    })
    .unwrap();
    assert!(
        s.archive
            .iter()
            .all(|e| (0.3..=0.6).contains(&e.objectives[0]))
    );
    assert!(s.history.last().unwrap().rejected > 0);
}

#[test]
fn an_empty_window_is_an_error_not_a_hang() {
    let mut p = Zdt1::new(3, 5);
    p.window = Some((2.0, 3.0));
    let e = run(&mut p, &cfg(1, 3), None, None, None, &mut |_| Ok(())).unwrap_err();
    assert!(matches!(e, SearchError::NoFeasible { found: 0, .. }), "{e}");
    assert_eq!(p.evaluations, 0);
}

#[test]
fn the_same_seed_gives_the_same_search_and_resume_changes_nothing() {
    let c = cfg(9, 12);
    let full = run(&mut Zdt1::new(5, 21), &c, None, None, None, &mut |_| Ok(())).unwrap();
    let again = run(&mut Zdt1::new(5, 21), &c, None, None, None, &mut |_| Ok(())).unwrap();
    assert_eq!(full.population, again.population);
    assert_eq!(full.archive, again.archive);
    let other = run(
        &mut Zdt1::new(5, 21),
        &cfg(10, 12),
        None,
        None,
        None,
        &mut |_| Ok(()),
    )
    .unwrap();
    assert_ne!(full.archive, other.archive);

    // Interrupted after 5 generations (initial + 4), saved through
    // JSON, resumed in a fresh problem.
    let mut saved = String::new();
    let part = run(&mut Zdt1::new(5, 21), &c, None, None, Some(5), &mut |st| {
        saved = serde_json::to_string(st).unwrap();
        Ok(())
    })
    .unwrap();
    assert_eq!(part.generation, 4);
    let back: State = serde_json::from_str(&saved).unwrap();
    // Bit-exact floats (serde_json's float_roundtrip), or the resumed
    // selection would differ.
    assert!(back == part, "the saved state does not read back exactly");
    let mut fresh = Zdt1::new(5, 21);
    let resumed = run(&mut fresh, &c, Some(back), None, None, &mut |_| Ok(())).unwrap();
    assert_eq!(resumed.population, full.population);
    assert_eq!(resumed.archive, full.archive);
    assert_eq!(resumed.history.len(), full.history.len());
    // Only the genomes new since the interruption were evaluated again.
    assert_eq!(fresh.evaluations, full.archive.len() - part.archive.len());
}

#[test]
fn sorting_crowding_and_selection_on_hand_made_points() {
    let pts: Vec<Vec<f64>> = vec![
        vec![1.0, 5.0], // 0: front 0
        vec![2.0, 3.0], // 1: front 0
        vec![4.0, 1.0], // 2: front 0
        vec![2.0, 4.0], // 3: front 1 (dominated by 1)
        vec![5.0, 5.0], // 4: front 2
        vec![3.0, 3.0], // 5: front 1 (dominated by 1)
        vec![2.0, 3.0], // 6: equal to 1: neither dominates, front 0
    ];
    let objs: Vec<&[f64]> = pts.iter().map(Vec::as_slice).collect();
    let fronts = non_dominated_fronts(&objs);
    assert_eq!(fronts, vec![vec![0, 1, 2, 6], vec![3, 5], vec![4]]);
    assert_eq!(ranks(&objs), vec![0, 0, 0, 1, 2, 1, 0]);
    let c = crowding(&objs, &[0, 1, 2]);
    assert!(c[0].is_infinite() && c[2].is_infinite());
    // (4 − 1)/3 + (5 − 1)/4 = 2.
    assert!((c[1] - 2.0).abs() < 1e-12, "{c:?}");
    // Five places: front 0 (4), then the more crowded-apart of front 1
    // (both boundary: the lower index).
    assert_eq!(select(&objs, 5), vec![0, 1, 2, 6, 3]);
    let hv = hypervolume_2d(&objs[..3], &[6.0, 6.0]).unwrap();
    // 5×1 + 4×2 + 2×2 = 17.
    assert!((hv - 17.0).abs() < 1e-12, "{hv}");
    assert!(dominates(&[1.0, 1.0], &[1.0, 2.0]));
    assert!(!dominates(&[1.0, 2.0], &[1.0, 2.0]));
}

#[test]
fn bad_settings_are_refused() {
    let mut p = Zdt1::new(3, 5);
    for c in [
        Nsga2Config {
            population: 1,
            ..Nsga2Config::default()
        },
        Nsga2Config {
            mutation_prob: 1.5,
            ..Nsga2Config::default()
        },
    ] {
        assert!(matches!(
            run(&mut p, &c, None, None, None, &mut |_| Ok(())),
            Err(SearchError::Invalid(_))
        ));
    }
}
