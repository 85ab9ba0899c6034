//! The work of the pipeline's supernet steps on a [`Job`]: training or
//! fine-tuning a stage's supernet, an NSGA-II search in the latency window,
//! a pruning, and the choice of the network to deploy.

use std::path::Path;

use anyhow::{Context, bail};

use super::job::{Job, LatencyRecord, space_file, space_text};
use crate::data::derive_seed;
use crate::files::write_atomic;
use crate::latency::table::Table;
use crate::search::nsga2::{self, Nsga2Config};
use crate::search::{
    ArchProblem, Candidate, LatencyModel, OneShotSettings, RECORD_FORMAT, SearchRecord, prune,
};
use crate::space::{Space, format_count};
use crate::supernet::checkpoint::{
    CHECKPOINT_FILE, LoadMode, WEIGHTS_FILE, load_weights, save_weights,
};
use crate::supernet::{StepSampler, Supernet, TrainOptions, train};

impl Job {
    /// Trains the supernet on `space` for `epochs` into `dir` (starting from
    /// `init` weights when given), resuming a checkpoint there. Stage `k`
    /// draws its own paths and data order.
    pub(crate) fn train_stage(
        &self,
        k: usize,
        space: &Space,
        epochs: usize,
        init: Option<&Path>,
        dir: &Path,
    ) -> anyhow::Result<()> {
        let weights = dir.join(WEIGHTS_FILE);
        if weights.exists() {
            return Ok(());
        }
        std::fs::create_dir_all(dir)?;
        let ckpt = dir.join(CHECKPOINT_FILE);
        let net = Supernet::for_training(&self.full, self.device, self.cfg.seed, &self.cfg.train)?;
        if !ckpt.exists()
            && let Some(w) = init
        {
            load_weights(&net, w, LoadMode::Subset)?;
        }
        let seed = if k == 0 {
            self.cfg.seed
        } else {
            derive_seed(self.cfg.seed, "finetune", k as u64)
        };
        let sampler = StepSampler::new(&net, space, seed)?.with_sampling(self.cfg.train.sampling);
        let mut train_cfg = self.cfg.train.clone();
        train_cfg.epochs = epochs;
        if k > 0 {
            // Fine-tuning starts from trained weights: the schedule restarts
            // over the stage's epochs from prune.finetune_lr (train.lr when
            // unset) after prune.finetune_warmup_epochs (none when unset).
            train_cfg.warmup_epochs = self.cfg.prune.finetune_warmup_epochs;
            if let Some(lr) = self.cfg.prune.finetune_lr {
                train_cfg.lr = lr;
            }
        }
        let opts = TrainOptions {
            checkpoint: Some(ckpt),
            resume: true,
            progress: self.progress,
            ..TrainOptions::new(train_cfg, seed, self.cfg.data.augment)
        };
        let s = train(&net, &sampler, &self.splits.train, &opts)?;
        tracing::info!(
            stage = k,
            steps = s.step,
            loss = format!("{:.4}", s.loss),
            accuracy = format!("{:.4}", s.accuracy),
            images_per_s = format!("{:.0}", s.images_per_s),
            "supernet training done"
        );
        if s.finished {
            save_weights(&net, &weights)?;
        }
        Ok(())
    }

    /// Runs (or resumes, or skips) the NSGA-II search `name` over `space`
    /// with the supernet `weights`, saving its record at `out` after every
    /// generation.
    pub(crate) fn search(
        &self,
        name: &str,
        space: &Space,
        weights: &Path,
        table: &Table,
        latency: &LatencyRecord,
        out: &Path,
    ) -> anyhow::Result<SearchRecord> {
        let s = &self.cfg.search;
        let nsga = Nsga2Config {
            population: s.population,
            generations: s.generations,
            crossover_prob: s.crossover_prob,
            mutation_prob: s.mutation_prob,
            seed: derive_seed(self.cfg.seed, &format!("search/{name}"), 0),
            ..Nsga2Config::default()
        };
        let one_shot = OneShotSettings {
            bn_batches: s.bn_batches,
            batch_size: self.cfg.train.batch_size,
            val_samples: s.val_samples,
            seed: self.cfg.seed,
        };
        let previous = crate::search::SearchRecord::load(out)?;
        if let Some(r) = &previous {
            if r.space_hash != space.hash()
                || r.window != latency.window
                || r.memory != latency.memory
                || r.nsga2 != nsga
            {
                bail!(
                    "{}: saved with another space, window, memory limit or settings; delete it to search again",
                    out.display()
                );
            }
            if r.complete {
                return Ok(r.clone());
            }
            tracing::info!("{name}: resuming after generation {}", r.state.generation);
        }
        if !weights.exists() {
            bail!("{}: no supernet weights; train first", weights.display());
        }
        let net = Supernet::new(&self.full, self.device, self.cfg.seed)?;
        load_weights(&net, weights, LoadMode::Subset)?;
        let model = LatencyModel::new(table, &latency.table, space)?;
        let mut problem = ArchProblem::new(
            space,
            &net,
            model,
            latency.window.clone(),
            &self.splits.train,
            &self.splits.val,
            one_shot.clone(),
        )?
        .with_memory(latency.memory)?;
        let mut record = SearchRecord {
            format: RECORD_FORMAT.into(),
            stage: name.into(),
            space_hash: space.hash(),
            num_architectures: space.num_architectures(),
            window: latency.window.clone(),
            memory: latency.memory,
            nsga2: nsga.clone(),
            one_shot,
            weights: weights.to_path_buf(),
            complete: false,
            // Replaced by the search's state after every generation.
            state: nsga2::State::default(),
            evaluations_per_s: 0.0,
            candidates: Vec::new(),
        };
        if let Some(parent) = out.parent() {
            std::fs::create_dir_all(parent)?;
        }
        let bar = if self.progress {
            super::profile::progress_bar(nsga.generations as u64 + 1)
        } else {
            indicatif::ProgressBar::hidden()
        };
        bar.set_position(
            previous
                .as_ref()
                .map_or(0, |r| r.state.generation as u64 + 1),
        );
        let resume = previous.map(|r| r.state);
        let reference = [1.0, latency.window.hi_ms];
        let state = nsga2::run(
            &mut problem,
            &nsga,
            resume,
            Some(&reference),
            None,
            &mut |st| {
                record.state = st.clone();
                record.save(out)?;
                if let Some(h) = st.history.last() {
                    bar.set_position(st.generation as u64 + 1);
                    bar.set_message(format!(
                        "{name}: {} evaluated, best {:.2}%, {:.1} eval/s",
                        h.evaluations,
                        100.0 * (1.0 - h.best[0]),
                        st.archive.len() as f64 / st.eval_seconds.max(1e-9)
                    ));
                }
                Ok(())
            },
        )?;
        bar.finish_and_clear();
        record.state = state;
        record.complete = true;
        record.rank(space)?;
        record.save(out)?;
        tracing::info!(
            "{name}: {} architectures evaluated ({:.2}/s), {} on the Pareto front",
            record.candidates.len(),
            record.evaluations_per_s,
            record.pareto().len()
        );
        Ok(record)
    }

    /// Pruning step `k` (from the complete search of stage `k`): writes
    /// `stage-k/prune.json` and `space.stage-k.yaml`.
    pub(crate) fn prune_stage(
        &self,
        k: usize,
        prev: &Space,
        rec: &SearchRecord,
    ) -> anyhow::Result<Space> {
        let ranked: Vec<_> = rec
            .candidates
            .iter()
            .map(|c| Ok((prev.parse_arch(&c.arch)?, c.rank)))
            .collect::<anyhow::Result<_>>()?;
        let p = prune(
            prev,
            &ranked,
            self.cfg.prune.rank_limit,
            self.cfg.prune.threshold,
        )?;
        let next = prev.with_layer_ops(&p.kept_ops())?;
        let dir = self.path(format!("stage-{k}"));
        std::fs::create_dir_all(&dir)?;
        write_atomic(
            &dir.join("prune.json"),
            serde_json::to_string_pretty(&p)?.as_bytes(),
        )?;
        // The space last: its presence marks the step done.
        write_atomic(&self.path(space_file(k)), space_text(k, &next).as_bytes())?;
        tracing::info!(
            "stage {k}: {} architectures counted, {} ops pruned; {} → {} architectures",
            p.counted,
            p.num_pruned(),
            format_count(prev.num_architectures()),
            format_count(next.num_architectures())
        );
        Ok(next)
    }
}

/// The architecture to deploy: the most accurate (one-shot) of the final
/// Pareto front, all of which lie in the latency window; ties go to the
/// faster one.
pub fn choose(rec: &SearchRecord) -> anyhow::Result<Candidate> {
    rec.pareto()
        .into_iter()
        .max_by(|a, b| {
            a.accuracy
                .total_cmp(&b.accuracy)
                .then(b.latency_ms.total_cmp(&a.latency_ms))
        })
        .cloned()
        .context("the final search has an empty Pareto front")
}
