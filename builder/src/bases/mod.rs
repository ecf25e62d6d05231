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
/// xattrs) and `packages.txt`, the installed packages (`name version arch`, sorted).
#[derive(Debug, Clone)]
pub struct Tree {
    pub tar: PathBuf,
    /// The cache key (hex): what the tree was made from.
    pub key: String,
    /// What the tree holds, for the keys of later stages: the key and the installed package
    /// list. A `--refresh` that finds the same package versions keeps it, so the stages after
    /// the base stay cached; new versions change it.
    pub content: String,
    /// The installed packages ([`PACKAGES`] in the entry).
    pub packages: PathBuf,
    /// Uncompressed size of the tarball.
    pub size: u64,
}

const TAR: &str = "base.tar";
/// The package list in a base entry (the same name as the output folder's).
pub const PACKAGES: &str = oa_contract::manifest::artifact::PACKAGES;

/// Build (or reuse) the base tree of `p`, with one line for people. `refresh` makes it again
/// from the mirrors (new package versions) although its key is unchanged.
pub fn base_stage(
    p: &Profile,
    store: &Store,
    cache_root: &Path,
    no_cache: bool,
    refresh: bool,
) -> Result<(BaseTree, Outcome)> {
    let (key, describe) = match p.base {
        Base::Busybox => return Ok((BaseTree::Busybox, Outcome::cached("busybox: no base tree"))),
        Base::Debian => {
            let src = debian::Source::resolve(p)?;
            let mut k = Key::new("base-debian");
            src.add_to(&mut k, p);
            (k.hex(), format!("debian {}", src.describe()))
        }
        Base::Arch => {
            let mut k = Key::new("base-arch");
            arch::add_to(&mut k, p);
            let servers: Vec<&str> =
                p.pacman.repos.iter().filter_map(|r| r.servers.first()).map(String::as_str).collect();
            (k.hex(), format!("arch from {}", servers.join(", ")))
        }
    };
    // The list of the entry this one replaces (a refresh), to say what changed.
    let before = store.lookup("base", &key).and_then(|e| std::fs::read_to_string(e.file(PACKAGES)).ok());
    let (entry, made) = store.get_or_build("base", &key, no_cache || refresh, |scratch| {
        let (tar, list) = (scratch.join(TAR), scratch.join(PACKAGES));
        match p.base {
            Base::Debian => debian::bootstrap(p, &debian::Source::resolve(p)?, &tar, &list)?,
            _ => arch::install(p, &tar, &list, cache_root)?,
        }
        scratch.seal(PACKAGES)
    })?;
    let size = entry.size(TAR)?;
    let list_digest = entry.digest(PACKAGES)?;
    let mut ck = Key::new("base-content");
    ck.add("key", key.as_bytes()).add("packages", list_digest.as_bytes());
    let tree = Tree { tar: entry.file(TAR), key, content: ck.hex(), packages: entry.file(PACKAGES), size };
    let count = std::fs::read_to_string(&tree.packages).map(|t| t.lines().count()).unwrap_or(0);
    let base = if p.base == Base::Debian { BaseTree::Debian(tree.clone()) } else { BaseTree::Arch(tree.clone()) };
    let outcome = match made {
        Some(_) => {
            let now = std::fs::read_to_string(&tree.packages).unwrap_or_default();
            let changes = match &before {
                Some(b) => format!(", {} package version(s) changed", changed_packages(b, &now).len()),
                None => String::new(),
            };
            Outcome::made(format!("{describe}: {} MiB tarball, {count} packages{changes}", size >> 20))
        }
        None => Outcome::cached(format!("{describe}: unchanged, {count} packages")),
    };
    Ok((base, outcome))
}

/// The lines of package list `after` that are not in `before` (new or other versions).
pub fn changed_packages<'a>(before: &str, after: &'a str) -> Vec<&'a str> {
    let old: std::collections::BTreeSet<&str> = before.lines().collect();
    after.lines().filter(|l| !l.trim().is_empty() && !old.contains(l)).collect()
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn changed_packages_are_new_lines() {
        let before = "libc6 2.36-9+deb12u7 amd64\nopenssl 3.0.20-1~deb12u2 amd64\n";
        let after = "libc6 2.36-9+deb12u7 amd64\nopenssl 3.0.22-1~deb12u2 amd64\ntzdata 2025b-0+deb12u1 all\n";
        assert_eq!(changed_packages(before, after), ["openssl 3.0.22-1~deb12u2 amd64", "tzdata 2025b-0+deb12u1 all"]);
        assert!(changed_packages(after, after).is_empty());
    }

    #[test]
    fn pacman_local_database_as_package_lines() {
        let d = tempfile::tempdir().unwrap();
        for (dir, desc) in [
            ("linux-6.9-1", "%NAME%\nlinux\n\n%VERSION%\n6.9-1\n\n%ARCH%\nx86_64\n"),
            ("filesystem-1-1", "%NAME%\nfilesystem\n\n%VERSION%\n1-1\n"),
        ] {
            std::fs::create_dir_all(d.path().join(dir)).unwrap();
            std::fs::write(d.path().join(dir).join("desc"), desc).unwrap();
        }
        std::fs::write(d.path().join("ALPM_DB_VERSION"), "9\n").unwrap();
        assert_eq!(arch::installed(d.path()).unwrap(), "filesystem 1-1 any\nlinux 6.9-1 x86_64\n");
    }
}
