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

use crate::cache::Store;
use crate::error::{Error, Result};
use crate::hash::Key;
use crate::pipeline::Outcome;
use crate::profile::{Base, Profile};
use std::path::{Path, PathBuf};
use std::process::Command;

/// The base a root filesystem starts from, carrying its tree for the full-OS bases.
#[derive(Debug, Clone)]
pub enum BaseTree {
    /// `base = "busybox"`: no tree; the rootfs stage unpacks the profile's packages.
    Busybox,
    /// `base = "debian"`: an mmdebstrap tree.
    Debian(Tree),
    /// `base = "arch"`: a pacman tree (its kernel comes from the installed `linux`).
    Arch(Tree),
}

impl BaseTree {
    /// The tree of a full-OS base.
    pub fn tree(&self) -> Option<&Tree> {
        match self {
            BaseTree::Busybox => None,
            BaseTree::Debian(t) | BaseTree::Arch(t) => Some(t),
        }
    }
}

/// A base tree in the cache: the entry `stages/base-<key>/` holding `base.tar` (numeric owners,
/// xattrs).
#[derive(Debug, Clone)]
pub struct Tree {
    pub tar: PathBuf,
    /// The cache key (hex), part of the rootfs key.
    pub key: String,
    /// Uncompressed size of the tarball.
    pub size: u64,
}

const TAR: &str = "base.tar";

/// Build (or reuse) the base tree of `p`, with one line for people.
pub fn base_stage(p: &Profile, store: &Store, cache_root: &Path, no_cache: bool) -> Result<(BaseTree, Outcome)> {
    let (key, describe) = match p.base {
        Base::Busybox => return Ok((BaseTree::Busybox, Outcome::cached("busybox: no base tree"))),
        Base::Debian => {
            let src = debian::Source::resolve(p)?;
            let mut k = Key::new("base-debian");
            src.add_to(&mut k, p);
            (k.hex(), format!("debian {} from {}", src.suite, src.mirror))
        }
        Base::Arch => {
            let mut k = Key::new("base-arch");
            arch::add_to(&mut k, p);
            let servers: Vec<&str> =
                p.pacman.repos.iter().filter_map(|r| r.servers.first()).map(String::as_str).collect();
            (k.hex(), format!("arch from {}", servers.join(", ")))
        }
    };
    let (entry, made) = store.get_or_build("base", &key, no_cache, |scratch| match p.base {
        Base::Debian => debian::bootstrap(p, &debian::Source::resolve(p)?, &scratch.join(TAR), cache_root),
        _ => arch::install(p, &scratch.join(TAR), cache_root),
    })?;
    let size = entry.size(TAR)?;
    let tree = Tree { tar: entry.file(TAR), key, size };
    let base = if p.base == Base::Debian { BaseTree::Debian(tree) } else { BaseTree::Arch(tree) };
    let outcome = match made {
        Some(()) => Outcome::made(format!("{describe}: {} MiB tarball", size >> 20)),
        None => Outcome::cached(format!("{describe}: unchanged")),
    };
    Ok((base, outcome))
}

/// Full-OS bases run package maintainer scripts and keep file owners: that needs root.
pub fn require_root(what: &str) -> Result<()> {
    if !nix_is_root() {
        return Err(Error::Base(format!(
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
