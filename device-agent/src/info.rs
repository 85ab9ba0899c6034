//! What the agent says about itself and its board in the Hello reply.
//!
//! Everything is read from `/proc` and `/sys` where Linux exposes it and left
//! `None` where it does not (containers, qemu-user, other OSes): the host
//! records these values in latency-table headers, so a guess would be worse
//! than a gap.

use std::fs;
use std::path::Path;

use crate::proto::{AgentInfo, PROTOCOL_MAJOR, PROTOCOL_MINOR};

/// Hello feature of an agent built with debug assertions (the dev profile).
pub const UNOPTIMISED: &str = "unoptimised";

/// Version of `tract-onnx` this agent was built with, from the workspace
/// `Cargo.lock` at build time (see `build.rs`).
pub const TRACT_VERSION: &str = env!("PADNAS_TRACT_VERSION");

/// Version of this crate.
pub const AGENT_VERSION: &str = env!("CARGO_PKG_VERSION");

/// Gathers [`AgentInfo`] now (frequency and temperature change over time, so
/// this is called at every Hello).
pub fn gather() -> AgentInfo {
    let cpuinfo = fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let dt_model = read_trimmed("/proc/device-tree/model");
    let cpu = cpu_model(&cpuinfo, dt_model.as_deref()).unwrap_or_else(|| "unknown".to_string());
    let cores = std::thread::available_parallelism()
        .map(|n| n.get() as u32)
        .unwrap_or(1);
    let cpufreq = Path::new("/sys/devices/system/cpu/cpu0/cpufreq");
    let mut features = Vec::new();
    if cfg!(feature = "bench") {
        features.push("bench".to_string());
    }
    if cfg!(feature = "serial") {
        features.push("serial".to_string());
    }
    // A build with debug assertions (the dev profile) runs our own code
    // unoptimised: its figures must never pass for a board's latency, so
    // it says so and the host labels its measurements.
    if cfg!(debug_assertions) {
        features.push(UNOPTIMISED.to_string());
    }
    AgentInfo {
        protocol: PROTOCOL_MAJOR,
        protocol_minor: PROTOCOL_MINOR,
        agent_version: AGENT_VERSION.to_string(),
        tract_version: TRACT_VERSION.to_string(),
        arch: std::env::consts::ARCH.to_string(),
        os: std::env::consts::OS.to_string(),
        cpu,
        cores,
        governor: read_trimmed(cpufreq.join("scaling_governor")),
        cur_freq_khz: read_trimmed(cpufreq.join("scaling_cur_freq"))
            .or_else(|| read_trimmed(cpufreq.join("cpuinfo_cur_freq")))
            .and_then(|s| s.parse().ok()),
        temperature_c: read_trimmed("/sys/class/thermal/thermal_zone0/temp")
            .and_then(|s| s.parse::<i64>().ok())
            .map(|milli| milli as f64 / 1000.0),
        features,
        mcu: None,
    }
}

/// A sysfs/procfs value without its newline (device-tree strings end in NUL).
fn read_trimmed(path: impl AsRef<Path>) -> Option<String> {
    let raw = fs::read(path).ok()?;
    let text = String::from_utf8_lossy(&raw);
    let text = text.trim_matches(|c: char| c.is_whitespace() || c == '\0');
    (!text.is_empty()).then(|| text.to_string())
}

/// Values of `key` in `/proc/cpuinfo` text, in order of appearance.
fn cpuinfo_values<'a>(cpuinfo: &'a str, key: &str) -> Vec<&'a str> {
    cpuinfo
        .lines()
        .filter_map(|line| {
            let (k, v) = line.split_once(':')?;
            (k.trim() == key).then(|| v.trim())
        })
        .filter(|v| !v.is_empty())
        .collect()
}

/// Names an ARM core from its MIDR implementer and part numbers.
pub fn arm_core_name(implementer: u32, part: u32) -> Option<&'static str> {
    Some(match (implementer, part) {
        (0x41, 0xb76) => "ARM1176",
        (0x41, 0xc07) => "Cortex-A7",
        (0x41, 0xc08) => "Cortex-A8",
        (0x41, 0xc09) => "Cortex-A9",
        (0x41, 0xc0d) => "Cortex-A12",
        (0x41, 0xc0e) => "Cortex-A17",
        (0x41, 0xc0f) => "Cortex-A15",
        (0x41, 0xd01) => "Cortex-A32",
        (0x41, 0xd03) => "Cortex-A53",
        (0x41, 0xd04) => "Cortex-A35",
        (0x41, 0xd05) => "Cortex-A55",
        (0x41, 0xd06) => "Cortex-A65",
        (0x41, 0xd07) => "Cortex-A57",
        (0x41, 0xd08) => "Cortex-A72",
        (0x41, 0xd09) => "Cortex-A73",
        (0x41, 0xd0a) => "Cortex-A75",
        (0x41, 0xd0b) => "Cortex-A76",
        (0x41, 0xd0c) => "Neoverse-N1",
        (0x41, 0xd0d) => "Cortex-A77",
        (0x41, 0xd40) => "Neoverse-V1",
        (0x41, 0xd41) => "Cortex-A78",
        (0x41, 0xd44) => "Cortex-X1",
        (0x41, 0xd46) => "Cortex-A510",
        (0x41, 0xd47) => "Cortex-A710",
        (0x41, 0xd48) => "Cortex-X2",
        (0x41, 0xd49) => "Neoverse-N2",
        (0x41, 0xd4b) => "Cortex-A78C",
        (0x41, 0xd4d) => "Cortex-A715",
        (0x41, 0xd4e) => "Cortex-X3",
        (0x41, 0xd4f) => "Neoverse-V2",
        (0x41, 0xd80) => "Cortex-A520",
        (0x41, 0xd81) => "Cortex-A720",
        (0x41, 0xd82) => "Cortex-X4",
        (0x41, 0xd87) => "Cortex-A725",
        (0x51, 0x800 | 0x802) => "Kryo 2xx/4xx Gold",
        (0x51, 0x801 | 0x803 | 0x805) => "Kryo 2xx-5xx Silver",
        (0x51, 0x804) => "Kryo 4xx/5xx Gold",
        _ => return None,
    })
}

fn parse_hex(s: &str) -> Option<u32> {
    let s = s.trim();
    let digits = s
        .strip_prefix("0x")
        .or_else(|| s.strip_prefix("0X"))
        .unwrap_or(s);
    u32::from_str_radix(digits, 16).ok()
}

/// The CPU model from `/proc/cpuinfo` text (and the device-tree model, where
/// there is one).
///
/// x86 and some ARM kernels give a useful `model name`. 32-bit ARM kernels
/// say only "ARMv7 Processor rev 4 (v7l)" and arm64 kernels say nothing, so
/// there the board (`Model`, `Hardware` or device tree) is combined with the
/// cores decoded from `CPU implementer` / `CPU part`, e.g.
/// "Raspberry Pi 4 Model B Rev 1.4 (4x Cortex-A72)".
pub fn cpu_model(cpuinfo: &str, dt_model: Option<&str>) -> Option<String> {
    if let Some(name) = cpuinfo_values(cpuinfo, "model name").first()
        && !name.starts_with("ARMv")
    {
        return Some((*name).to_string());
    }
    let implementers = cpuinfo_values(cpuinfo, "CPU implementer");
    let parts = cpuinfo_values(cpuinfo, "CPU part");
    // Counted per distinct core type, in first-seen order (big.LITTLE).
    let mut cores: Vec<(String, usize)> = Vec::new();
    for (imp, part) in implementers.iter().zip(parts.iter()) {
        let (Some(imp), Some(part)) = (parse_hex(imp), parse_hex(part)) else {
            continue;
        };
        let name = arm_core_name(imp, part)
            .map(str::to_string)
            .unwrap_or_else(|| format!("implementer {imp:#x} part {part:#x}"));
        match cores.iter_mut().find(|(n, _)| *n == name) {
            Some((_, count)) => *count += 1,
            None => cores.push((name, 1)),
        }
    }
    let cores_text = cores
        .iter()
        .map(|(name, count)| format!("{count}x {name}"))
        .collect::<Vec<_>>()
        .join(" + ");
    let board = cpuinfo_values(cpuinfo, "Model")
        .first()
        .map(|s| s.to_string())
        .or_else(|| dt_model.map(str::to_string))
        .or_else(|| {
            cpuinfo_values(cpuinfo, "Hardware")
                .first()
                .map(|s| s.to_string())
        });
    let generic = cpuinfo_values(cpuinfo, "model name")
        .first()
        .map(|s| s.to_string());
    match (board, cores_text.is_empty()) {
        (Some(board), false) => Some(format!("{board} ({cores_text})")),
        (Some(board), true) => Some(board),
        (None, false) => Some(cores_text),
        (None, true) => generic,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const X86: &str = "processor\t: 0\nvendor_id\t: GenuineIntel\nmodel name\t: Intel(R) Xeon(R) CPU @ 2.20GHz\n\nprocessor\t: 1\nmodel name\t: Intel(R) Xeon(R) CPU @ 2.20GHz\n";

    const PI4_ARM64: &str = "processor\t: 0\nBogoMIPS\t: 108.00\nFeatures\t: fp asimd evtstrm crc32 cpuid\nCPU implementer\t: 0x41\nCPU architecture: 8\nCPU variant\t: 0x0\nCPU part\t: 0xd08\nCPU revision\t: 3\n\nprocessor\t: 1\nCPU implementer\t: 0x41\nCPU part\t: 0xd08\n\nprocessor\t: 2\nCPU implementer\t: 0x41\nCPU part\t: 0xd08\n\nprocessor\t: 3\nCPU implementer\t: 0x41\nCPU part\t: 0xd08\n\nRevision\t: c03114\nSerial\t\t: 10000000abcdef\nModel\t\t: Raspberry Pi 4 Model B Rev 1.4\n";

    const PI3_ARMV7: &str = "processor\t: 0\nmodel name\t: ARMv7 Processor rev 4 (v7l)\nBogoMIPS\t: 38.40\nCPU implementer\t: 0x41\nCPU architecture: 7\nCPU part\t: 0xd03\n\nHardware\t: BCM2835\nRevision\t: a02082\n";

    const BIG_LITTLE: &str = "processor\t: 0\nCPU implementer\t: 0x41\nCPU part\t: 0xd05\n\nprocessor\t: 1\nCPU implementer\t: 0x41\nCPU part\t: 0xd05\n\nprocessor\t: 2\nCPU implementer\t: 0x41\nCPU part\t: 0xd0b\n";

    #[test]
    fn x86_uses_model_name() {
        assert_eq!(
            cpu_model(X86, None).as_deref(),
            Some("Intel(R) Xeon(R) CPU @ 2.20GHz")
        );
    }

    #[test]
    fn pi4_decodes_cores_and_board() {
        assert_eq!(
            cpu_model(PI4_ARM64, None).as_deref(),
            Some("Raspberry Pi 4 Model B Rev 1.4 (4x Cortex-A72)")
        );
    }

    #[test]
    fn armv7_generic_name_is_replaced() {
        assert_eq!(
            cpu_model(PI3_ARMV7, None).as_deref(),
            Some("BCM2835 (1x Cortex-A53)")
        );
        assert_eq!(
            cpu_model(PI3_ARMV7, Some("Raspberry Pi 3 Model B Rev 1.2")).as_deref(),
            Some("Raspberry Pi 3 Model B Rev 1.2 (1x Cortex-A53)")
        );
    }

    #[test]
    fn big_little_lists_both_clusters() {
        assert_eq!(
            cpu_model(BIG_LITTLE, None).as_deref(),
            Some("2x Cortex-A55 + 1x Cortex-A76")
        );
    }

    #[test]
    fn nothing_known_is_none() {
        assert_eq!(cpu_model("", None), None);
    }

    #[test]
    fn gather_fills_the_basics() {
        let info = gather();
        assert_eq!(info.protocol, PROTOCOL_MAJOR);
        assert!(info.cores >= 1);
        assert!(!info.tract_version.is_empty());
        assert_eq!(info.arch, std::env::consts::ARCH);
    }
}
