//! Picking the libtorch device, loading CUDA support on demand.
//!
//! The binary does not list `libtorch_cuda.so` as a needed library: the
//! linker drops it (`--as-needed`, no symbol of it is referenced), which is
//! what lets the CPU-only cache (no cuDNN, cuBLAS, NCCL wheels) run at all.
//! The price is that CUDA's kernels register only once that library is
//! loaded, so `--device cuda` opens it at run time.

use super::SupernetError;
use crate::config::DeviceSpec;

/// libtorch's lib directory at build time (set by host/build.rs).
const LIBTORCH_LIB: Option<&str> = option_env!("PADNAS_LIBTORCH_LIB");

fn load_cuda_support() -> Result<(), String> {
    let candidates: Vec<String> = LIBTORCH_LIB
        .map(|d| format!("{d}/libtorch_cuda.so"))
        .into_iter()
        .chain(std::iter::once("libtorch_cuda.so".to_string()))
        .collect();
    let mut errors = Vec::new();
    for lib in candidates {
        let Ok(c) = std::ffi::CString::new(lib.clone()) else {
            continue;
        };
        // SAFETY: `c` is a valid NUL-terminated string; dlopen has no other
        // preconditions. The handle is deliberately never closed: the library
        // must stay loaded for the process's lifetime.
        let handle = unsafe { libc::dlopen(c.as_ptr(), libc::RTLD_NOW | libc::RTLD_GLOBAL) };
        if !handle.is_null() {
            return Ok(());
        }
        // SAFETY: dlerror returns NULL or a valid C string owned by libc.
        let msg = unsafe {
            let e = libc::dlerror();
            if e.is_null() {
                "unknown error".to_string()
            } else {
                std::ffi::CStr::from_ptr(e).to_string_lossy().into_owned()
            }
        };
        errors.push(format!("{lib}: {msg}"));
    }
    Err(errors.join("; "))
}

/// The tch device for `spec`; for CUDA, loads libtorch's CUDA library and
/// checks that a GPU is visible.
pub fn torch_device(spec: DeviceSpec) -> Result<tch::Device, SupernetError> {
    match spec {
        DeviceSpec::Cpu => Ok(tch::Device::Cpu),
        DeviceSpec::Cuda(n) => {
            if !tch::Cuda::is_available() {
                load_cuda_support().map_err(|e| SupernetError::Device {
                    spec: spec.to_string(),
                    message: format!(
                        "cannot load libtorch's CUDA library ({e}); \
                         run scripts/setup-libtorch.sh --cuda (see host/README.md)"
                    ),
                })?;
            }
            let count = tch::Cuda::device_count();
            if count <= n as i64 {
                return Err(SupernetError::Device {
                    spec: spec.to_string(),
                    message: format!("libtorch sees {count} CUDA device(s)"),
                });
            }
            Ok(tch::Device::Cuda(n))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// On a machine without a GPU (CI, this sandbox) `--device cuda` must
    /// fail with a message that names the device; on one with a GPU and the
    /// CUDA libraries it must give the device. Which case this machine is
    /// comes from outside libtorch (the driver's device node, the library
    /// file), so a wrong answer either way fails.
    #[test]
    fn cuda_is_the_gpu_or_a_clear_error() {
        let gpu = std::path::Path::new("/dev/nvidiactl").exists();
        let cuda_lib =
            LIBTORCH_LIB.is_some_and(|d| std::path::Path::new(d).join("libtorch_cuda.so").exists());
        match torch_device(DeviceSpec::Cuda(0)) {
            Ok(d) => {
                assert!(
                    gpu,
                    "--device cuda gave a device on a machine without a GPU"
                );
                assert_eq!(d, tch::Device::Cuda(0));
            }
            Err(e) => {
                assert!(
                    !(gpu && cuda_lib),
                    "a GPU and libtorch's CUDA library are here, yet: {e}"
                );
                assert!(e.to_string().starts_with("--device cuda: "), "{e}");
            }
        }
        let e = torch_device(DeviceSpec::Cuda(1000)).unwrap_err();
        assert!(e.to_string().starts_with("--device cuda:1000: "), "{e}");
        assert_eq!(torch_device(DeviceSpec::Cpu).unwrap(), tch::Device::Cpu);
    }
}
