//! Finding the `oa-init` binary to put into the initramfs and the root image, and checking it
//! is what the boot needs: a static executable for the profile's architecture.

use crate::error::{Error, Result};
use oa_contract::Arch;
use object::Object;
use std::path::{Path, PathBuf};

/// Rust target triple oa-init is built for, per oa arch.
pub fn target_triple(arch: Arch) -> &'static str {
    arch.musl_target()
}

/// Where to look, in order: `explicit` (from `--init` or `OA_INIT_BIN`), next to the running
/// `oa`, then the cargo target folders around it (`target/<triple>/{release,debug}/oa-init`).
pub fn candidates(arch: Arch, explicit: Option<&Path>) -> Vec<PathBuf> {
    if let Some(p) = explicit {
        return vec![p.to_path_buf()];
    }
    let mut v = Vec::new();
    if let Ok(exe) = std::env::current_exe() {
        if let Some(dir) = exe.parent() {
            v.push(dir.join(format!("oa-init-{arch}")));
            // target/release/oa -> target/<triple>/release/oa-init
            if let Some(target) = dir.parent() {
                for profile in ["release", "debug"] {
                    v.push(target.join(target_triple(arch)).join(profile).join("oa-init"));
                }
            }
        }
    }
    v
}

/// Locate and check oa-init for `arch`.
pub fn locate(arch: Arch, explicit: Option<&Path>) -> Result<PathBuf> {
    let c = candidates(arch, explicit);
    let found = c.iter().find(|p| p.is_file()).ok_or_else(|| {
        Error::InitBinary(format!(
            "not found (looked at {}); build it with `cargo build --release -p oa-init --target {}` (`make build` does it) or pass --init PATH",
            c.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", "),
            target_triple(arch)
        ))
    })?;
    check(found, arch)?;
    Ok(found.clone())
}

/// The binary must be an ELF executable for `arch` with no program interpreter (static): the
/// initramfs carries no shared libraries for it.
pub fn check(path: &Path, arch: Arch) -> Result<()> {
    let data = std::fs::read(path).map_err(|e| Error::InitBinary(format!("reading {}: {e}", path.display())))?;
    let file = object::File::parse(&*data)
        .map_err(|e| Error::InitBinary(format!("{} is not an ELF executable: {e}", path.display())))?;
    let want = match arch {
        Arch::Aarch64 => object::Architecture::Aarch64,
        Arch::X86_64 => object::Architecture::X86_64,
    };
    if file.architecture() != want {
        return Err(Error::InitBinary(format!(
            "{} is built for {:?}, the profile is {arch}",
            path.display(),
            file.architecture()
        )));
    }
    if file.section_by_name(".interp").is_some() {
        return Err(Error::InitBinary(format!(
            "{} is dynamically linked; build it for {} (static musl)",
            path.display(),
            target_triple(arch)
        )));
    }
    Ok(())
}
