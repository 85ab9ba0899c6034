//! `target:`: the board to search for, and where its latency table comes from.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::{ConfigError, Ctx, absolute};
use crate::latency::noise::{check_passes, check_sensor_gate};

/// Target section.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTarget {
    /// Target name (a file under `targets_dir`) or path of a target YAML.
    pub name: String,
    /// Directory of target files; `targets` under the current directory when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub targets_dir: Option<PathBuf>,
    /// Latency table; measured (or completed) with `padnas profile` into
    /// `tables_dir` when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub table: Option<PathBuf>,
    /// Root of measured tables; `latency-tables` under the current directory when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tables_dir: Option<PathBuf>,
    /// Reference block for a table profiled by the run (`padnas profile
    /// --reference`): for machines whose speed changes every few seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reference: Option<crate::space::BlockKey>,
    /// Sweeps over the block list for a table profiled by the run
    /// (`padnas profile --passes`); 1 when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub passes: Option<u32>,
    /// Sensor gate (%) for a table profiled by the run (`padnas profile
    /// --sensor-gate`): for a machine slowed from outside for seconds at a time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sensor_gate: Option<f64>,
}

/// The target section, validated.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TargetConfig {
    /// Target name or file.
    pub name: String,
    /// Directory of target files.
    pub targets_dir: PathBuf,
    /// A given latency table, or none to profile into `tables_dir`.
    pub table: Option<PathBuf>,
    /// Root of measured tables.
    pub tables_dir: PathBuf,
    /// Reference block for profiling, if any.
    pub reference: Option<crate::space::BlockKey>,
    /// Sweeps over the block list when profiling.
    pub passes: u32,
    /// Sensor gate (%) when profiling, if any.
    pub sensor_gate: Option<f64>,
}

impl TargetConfig {
    /// The section, or this machine's CPU (`local`) when it is absent.
    pub(super) fn from_raw(raw: Option<&RawTarget>, cx: &Ctx) -> Result<TargetConfig, ConfigError> {
        let Some(r) = raw else {
            return Ok(TargetConfig {
                name: "local".into(),
                targets_dir: PathBuf::from("targets"),
                table: None,
                tables_dir: PathBuf::from("latency-tables"),
                reference: None,
                passes: 1,
                sensor_gate: None,
            });
        };
        if r.name.trim().is_empty() {
            return Err(cx.bad("target.name", "must not be empty"));
        }
        let sensor_gate = r
            .sensor_gate
            .map(check_sensor_gate)
            .transpose()
            .map_err(|m| cx.bad("target.sensor_gate", m))?;
        if sensor_gate.is_some() && r.reference.is_some() {
            return Err(cx.bad(
                "target.sensor_gate",
                "does not combine with target.reference",
            ));
        }
        Ok(TargetConfig {
            name: r.name.clone(),
            targets_dir: r
                .targets_dir
                .as_deref()
                .map_or_else(|| PathBuf::from("targets"), |p| cx.resolve(p)),
            table: r.table.as_deref().map(|p| cx.resolve(p)),
            tables_dir: r
                .tables_dir
                .as_deref()
                .map_or_else(|| PathBuf::from("latency-tables"), |p| cx.resolve(p)),
            reference: r.reference,
            passes: check_passes(r.passes.unwrap_or(1)).map_err(|m| cx.bad("target.passes", m))?,
            sensor_gate,
        })
    }

    pub(super) fn to_raw(&self) -> RawTarget {
        RawTarget {
            name: self.name.clone(),
            targets_dir: Some(absolute(&self.targets_dir)),
            table: self.table.as_deref().map(absolute),
            tables_dir: Some(absolute(&self.tables_dir)),
            reference: self.reference,
            passes: Some(self.passes),
            sensor_gate: self.sensor_gate,
        }
    }
}
