//! Kernel modules: load the files the builder listed, in its order (dependencies first).
//! Coldplug (crate::coldplug) loads the driver classes' modules through [`load_with`].

use std::path::Path;

use nix::errno::Errno;
use nix::kmod::{finit_module, ModuleInitFlags};

/// What happened to the module list.
#[derive(Debug, Default)]
pub struct LoadReport {
    /// Loaded now.
    pub loaded: usize,
    /// Already in the kernel (built in or loaded before).
    pub present: usize,
    /// (module file, why) for modules that could not be loaded.
    pub failed: Vec<(String, String)>,
}

/// `MODULE_INIT_COMPRESSED_FILE`: the kernel decompresses the file itself (Linux >= 6.4 with
/// CONFIG_MODULE_DECOMPRESS).
const MODULE_INIT_COMPRESSED_FILE: u32 = 4;

fn is_compressed(name: &str) -> bool {
    name.ends_with(".xz") || name.ends_with(".zst") || name.ends_with(".gz")
}

/// Why a module file could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("open {path}: {source}")]
    Open { path: String, source: std::io::Error },
    #[error("finit_module {path}: {source}")]
    Init { path: String, source: Errno },
}

/// How a module's devices are probed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Probe {
    /// Loading returns once the module's init and the probes it started are done.
    Sync,
    /// The kernel's `async_probe` module parameter: the driver probes its devices in the
    /// background and loading returns at once, so one slow controller (an IDE bus that times
    /// out under TCG, a USB hub) does not hold up the next driver; the devices it finds arrive
    /// as uevents (crate::coldplug).
    Async,
}

/// Load one module file (path relative to `root`): `Ok(true)` when loaded now, `Ok(false)` when
/// the kernel has it already (`EEXIST`).
pub fn load_one(root: &Path, rel: &str) -> Result<bool, LoadError> {
    load_with(root, rel, Probe::Sync)
}

/// [`load_one`] with a choice of [`Probe`].
pub fn load_with(root: &Path, rel: &str, probe: Probe) -> Result<bool, LoadError> {
    let path = root.join(rel.trim_start_matches('/'));
    let file =
        std::fs::File::open(&path).map_err(|source| LoadError::Open { path: path.display().to_string(), source })?;
    let flags = if is_compressed(rel) {
        ModuleInitFlags::from_bits_retain(MODULE_INIT_COMPRESSED_FILE)
    } else {
        ModuleInitFlags::empty()
    };
    let params = match probe {
        Probe::Sync => c"",
        Probe::Async => c"async_probe",
    };
    match finit_module(&file, params, flags) {
        Ok(()) => Ok(true),
        Err(Errno::EEXIST) => Ok(false),
        Err(source) => Err(LoadError::Init { path: path.display().to_string(), source }),
    }
}

/// Load every module in order. Failures are collected, not fatal: a later step fails with a
/// clear message if a needed driver is missing.
pub fn load_all(root: &Path, modules: &[String]) -> LoadReport {
    let mut r = LoadReport::default();
    for m in modules {
        match load_one(root, m) {
            Ok(true) => r.loaded += 1,
            Ok(false) => r.present += 1,
            Err(e) => r.failed.push((m.clone(), e.to_string())),
        }
    }
    r
}
