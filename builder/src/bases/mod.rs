//! Full-OS bases (docs/bases.md): the base tree of `base = "debian"` (mmdebstrap) and
//! `base = "arch"` (pacman), cached as a tarball keyed by its inputs, and the customisation
//! applied to every base (users, SSH keys, systemd units, timezone, locale, generated files,
//! the ready unit).
//!
//! The base stage runs before the kernel stage: an Arch kernel comes out of the base tree.

pub mod arch;
pub mod archpkg;
pub mod customize;
pub mod debian;

use crate::error::{Error, IoContext, Result};
use crate::hash::{self, Key};
use crate::profile::{Base, Profile};
use std::path::{Path, PathBuf};
use std::process::Command;

/// A base tree in the cache: `stages/base-<key>.tar` (numeric owners, xattrs).
#[derive(Debug, Clone)]
pub struct BaseTree {
    pub tar: PathBuf,
    /// The cache key (hex), part of the rootfs key.
    pub key: String,
    /// Uncompressed size of the tarball.
    pub size: u64,
}

/// Build (or reuse) the base tree of `p`. `None` for `base = "busybox"` (its packages are
/// unpacked in the rootfs stage). Returns the tree and whether it came from the cache.
pub fn base_stage(p: &Profile, cache_root: &Path, no_cache: bool) -> Result<Option<(BaseTree, bool, String)>> {
    let stage_dir = cache_root.join("stages");
    std::fs::create_dir_all(&stage_dir).ctx("creating cache folder", &stage_dir)?;
    let (key, describe) = match p.base {
        Base::Busybox => return Ok(None),
        Base::Debian => {
            let src = debian::Source::resolve(p)?;
            let mut k = Key::new("base-debian");
            src.add_to(&mut k, p);
            (k.hex(), format!("debian {} from {}", src.suite, src.mirror))
        }
        Base::Arch => {
            let mut k = Key::new("base-arch");
            arch::add_to(&mut k, p);
            (
                k.hex(),
                format!(
                    "arch from {}",
                    p.pacman.repos.iter().map(|r| r.servers[0].as_str()).collect::<Vec<_>>().join(", ")
                ),
            )
        }
    };
    let tar = stage_dir.join(format!("base-{key}.tar"));
    let done = stage_dir.join(format!("base-{key}.tar.sha256"));
    if !no_cache && tar.is_file() && done.is_file() {
        let size = std::fs::metadata(&tar).ctx("reading", &tar)?.len();
        return Ok(Some((BaseTree { tar, key, size }, true, format!("{describe}: unchanged"))));
    }
    let _ = std::fs::remove_file(&done);
    let tmp = stage_dir.join(format!(".base-{}.tar.tmp", hash::unique_suffix()));
    let result = match p.base {
        Base::Debian => debian::bootstrap(p, &debian::Source::resolve(p)?, &tmp, cache_root),
        Base::Arch => arch::install(p, &tmp, cache_root),
        Base::Busybox => unreachable!(),
    };
    if let Err(e) = result {
        // Nothing partial stays in the cache.
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    let d = hash::sha256_file(&tmp)?;
    std::fs::write(&done, d).ctx("writing", &done)?;
    std::fs::rename(&tmp, &tar).ctx("storing base tree", &tar)?;
    let size = std::fs::metadata(&tar).ctx("reading", &tar)?.len();
    let detail = format!("{describe}: {} MiB tarball", size >> 20);
    Ok(Some((BaseTree { tar, key, size }, false, detail)))
}

/// Full-OS bases run package maintainer scripts and keep file owners: that needs root.
pub fn require_root(what: &str) -> Result<()> {
    if !nix_is_root() {
        return Err(Error::Other(format!(
            "{what} needs root (package scripts run in a chroot and files keep their owners); run `oa build` as root"
        )));
    }
    Ok(())
}

fn nix_is_root() -> bool {
    // SAFETY-free: read the effective uid from /proc.
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with("Uid:")).map(|l| l.split_whitespace().nth(2) == Some("0")))
        .unwrap_or(false)
}

/// Unpack a base tarball into `root` (an empty directory), keeping owners, modes, xattrs and
/// device nodes.
pub fn unpack(tar: &Path, root: &Path) -> Result<()> {
    let mut c = Command::new("tar");
    c.arg("-C").arg(root).args(["--numeric-owner", "--xattrs", "--xattrs-include=*", "-xpf"]).arg(tar);
    crate::tool::run(&mut c, "tar", "install tar")?;
    Ok(())
}

/// Pack a directory into a tarball for the cache (numeric owners, xattrs, sorted).
pub fn pack_tar(root: &Path, tar: &Path) -> Result<()> {
    let mut c = Command::new("tar");
    c.arg("-C")
        .arg(root)
        .args(["--numeric-owner", "--xattrs", "--xattrs-include=*", "--sort=name", "-cf"])
        .arg(tar)
        .arg(".");
    crate::tool::run(&mut c, "tar", "install tar")?;
    Ok(())
}

/// The last `n` non-empty lines of a tool's output, for error messages.
pub(crate) fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}
