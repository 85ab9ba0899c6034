//! Picks the memory map for the board the target implies and tells the code
//! which board it is built for.
//!
//! cortex-m-rt's `link.x` does `INCLUDE memory.x`. The linker looks in its
//! working directory (this crate's root) before any `-L` path, so there is
//! deliberately no `memory.x` at the root: the chosen file from `memory/` is
//! copied to `$OUT_DIR/memory.x` and that directory is put on the search path.
//!
//! | target                   | board (QEMU machine) | core        |
//! |--------------------------|----------------------|-------------|
//! | `thumbv7em-none-eabihf`  | `mps2-an386`         | Cortex-M4F  |
//! | `thumbv8m.main-none-eabihf` | `mps2-an505`      | Cortex-M33  |

use std::{env, fs, path::PathBuf};

fn main() {
    let target = env::var("TARGET").expect("cargo sets TARGET");
    let board = if target.starts_with("thumbv7em-") {
        "mps2_an386"
    } else if target.starts_with("thumbv8m.main-") {
        "mps2_an505"
    } else {
        panic!("padnas-mcu-agent: no board for target {target}; add one to build.rs and memory/");
    };

    let out = PathBuf::from(env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    let src = format!("memory/{}.x", board.replace('_', "-"));
    fs::copy(&src, out.join("memory.x")).unwrap_or_else(|e| panic!("copy {src}: {e}"));
    // With cortex-m-rt's `device` feature its `link.x` also INCLUDEs
    // `device.x`, where a device crate would PROVIDE one weak alias per
    // interrupt. Ours has none to give: every entry of `__INTERRUPTS`
    // (src/vectors.rs) names `DefaultHandler` itself.
    fs::write(
        out.join("device.x"),
        "/* padnas-mcu-agent: no named interrupt handlers (src/vectors.rs). */\n",
    )
    .unwrap_or_else(|e| panic!("write device.x: {e}"));
    println!("cargo::rustc-link-search={}", out.display());

    println!("cargo::rustc-check-cfg=cfg(board, values(\"mps2_an386\", \"mps2_an505\"))");
    println!("cargo::rustc-cfg=board=\"{board}\"");

    // What Hello reports as `arch`: the host checks it against the target
    // file's triple, whose first part this is (`thumbv7em`).
    let arch = target.split('-').next().unwrap_or(&target);
    println!("cargo::rustc-env=PADNAS_ARCH={arch}");

    println!("cargo::rerun-if-changed=build.rs");
    println!("cargo::rerun-if-changed=memory");
}
