//! Derives the tract version the agent reports from the lock file, so the
//! Hello reply (and every latency table recorded through it) names the tract
//! that was really compiled in, never a hand-typed string that drifts.

use std::env;
use std::fs;
use std::path::{Path, PathBuf};

fn find_lock(start: &Path) -> Option<PathBuf> {
    start
        .ancestors()
        .map(|dir| dir.join("Cargo.lock"))
        .find(|p| p.is_file())
}

/// Versions of `name` in a Cargo.lock (TOML `[[package]]` tables; read by
/// hand to keep the build dependency-free).
fn locked_versions(lock: &str, name: &str) -> Vec<String> {
    let mut versions = Vec::new();
    for block in lock.split("[[package]]") {
        let mut pkg = None;
        let mut version = None;
        for line in block.lines() {
            if let Some((k, v)) = line.split_once('=') {
                let v = v.trim().trim_matches('"').to_string();
                match k.trim() {
                    "name" => pkg = Some(v),
                    "version" => version = Some(v),
                    _ => {}
                }
            }
        }
        if pkg.as_deref() == Some(name)
            && let Some(v) = version
        {
            versions.push(v);
        }
    }
    versions
}

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    let manifest_dir = PathBuf::from(env::var("CARGO_MANIFEST_DIR").unwrap_or_default());
    let bench = env::var_os("CARGO_FEATURE_BENCH").is_some();
    let version = match find_lock(&manifest_dir) {
        Some(lock) => {
            println!("cargo:rerun-if-changed={}", lock.display());
            let versions = fs::read_to_string(&lock)
                .map(|text| locked_versions(&text, "tract-onnx"))
                .unwrap_or_default();
            if versions.is_empty() {
                println!("cargo:warning=tract-onnx not found in {}", lock.display());
                "unknown".to_string()
            } else {
                versions.join("+")
            }
        }
        None => {
            println!(
                "cargo:warning=no Cargo.lock above {}; tract version unknown",
                manifest_dir.display()
            );
            "unknown".to_string()
        }
    };
    // Without the runner, tract is not linked at all; say so rather than
    // report a version that is not in the binary.
    let reported = if bench {
        version
    } else {
        format!("none (built without bench; lock has {version})")
    };
    println!("cargo:rustc-env=PADNAS_TRACT_VERSION={reported}");
}
