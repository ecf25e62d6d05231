//! Kernel modules: load the files the builder listed, in its order (dependencies first).

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

/// Load one module file (path relative to `root`).
pub fn load_one(root: &Path, rel: &str) -> Result<bool, String> {
    let path = root.join(rel.trim_start_matches('/'));
    let file = std::fs::File::open(&path).map_err(|e| format!("open {}: {e}", path.display()))?;
    let flags = if is_compressed(rel) {
        ModuleInitFlags::from_bits_retain(MODULE_INIT_COMPRESSED_FILE)
    } else {
        ModuleInitFlags::empty()
    };
    match finit_module(&file, c"", flags) {
        Ok(()) => Ok(true),
        Err(Errno::EEXIST) => Ok(false),
        Err(e) => Err(format!("finit_module {}: {e}", path.display())),
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
            Err(e) => r.failed.push((m.clone(), e)),
        }
    }
    r
}
