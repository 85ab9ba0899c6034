//! Embeds libtorch's library directory as the RUNPATH of every binary and
//! test of this crate, so `padnas` runs from a fresh shell without
//! LD_LIBRARY_PATH. torch-sys reports the directory through its `links`
//! metadata (`DEP_TCH_LIBTORCH_LIB`), which only reaches crates that depend
//! on torch-sys directly; hence the direct dependency in Cargo.toml.

fn main() {
    println!("cargo:rerun-if-env-changed=DEP_TCH_LIBTORCH_LIB");
    if let Ok(lib) = std::env::var("DEP_TCH_LIBTORCH_LIB") {
        // libtorch_cpu.so finds the CUDA runtime and CUPTI it needs at load
        // time through its own RPATH ($ORIGIN/../../nvidia/cu13/lib), so
        // only the torch lib directory is needed here.
        println!("cargo:rustc-link-arg=-Wl,-rpath,{lib}");
        // Lets `--device cuda` dlopen libtorch_cuda.so from the same place.
        println!("cargo:rustc-env=PADNAS_LIBTORCH_LIB={lib}");
    }
}
