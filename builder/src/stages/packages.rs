//! Stage `packages`: the kernel package (behind its metapackage), the `[packages] debian` of a
//! busybox base, and busybox-static for the emergency shell, downloaded and verified by apt.
//! Later stages are keyed by the packages' sha256, so a `--refresh` that resolves the same
//! versions keeps them.

use crate::apt::{PackageCache, PackageInfo};
use crate::build::Context;
use crate::error::{Error, Result};
use crate::pipeline::Outcome;
use crate::profile::Base;
use std::path::PathBuf;

/// Where the kernel comes from.
#[derive(Debug, Clone)]
pub enum KernelSource {
    /// A Debian kernel image package.
    Deb { path: PathBuf, info: PackageInfo },
    /// `base = "arch"`: the installed `linux` package of the base tree.
    ArchBase,
}

/// The packages a build uses.
#[derive(Debug, Clone)]
pub struct Packages {
    pub kernel: KernelSource,
    /// `[packages] debian` of a busybox base (unpacked in the rootfs stage).
    pub debs: Vec<(PathBuf, PackageInfo)>,
    /// busybox-static, when the emergency shell is on.
    pub busybox: Option<(PathBuf, PackageInfo)>,
}

/// How deep a kernel metapackage chain may go (linux-image-amd64 -> linux-image-6.1.0-..).
const METAPACKAGE_DEPTH: usize = 4;

pub fn run(cx: &mut Context) -> Result<Outcome> {
    let p = cx.profile;
    let darch = p.arch.debian();
    // --refresh: what apt would install now (its index; `apt-get update` brings new lists).
    let pkgs = PackageCache::new(&cx.opts.cache_root).refreshing(cx.opts.refresh);
    let kernel = if p.base == Base::Arch {
        KernelSource::ArchBase
    } else {
        let mut name = p.kernel.package.clone();
        let mut found = None;
        for _ in 0..METAPACKAGE_DEPTH {
            let (path, info) = pkgs.fetch(&name, darch)?;
            // A metapackage (linux-image-amd64) depends on the real image package.
            match info.depends.iter().find(|d| d.starts_with("linux-image-")) {
                Some(real) => name = real.clone(),
                None => {
                    found = Some(KernelSource::Deb { path, info });
                    break;
                }
            }
        }
        found.ok_or_else(|| Error::Package {
            package: p.kernel.package.clone(),
            reason: "no kernel image package found behind it".into(),
        })?
    };
    let mut debs = Vec::new();
    // base = "debian": [packages] debian goes to mmdebstrap in the base stage instead.
    if p.base == Base::Busybox {
        for d in &p.packages.debian {
            debs.push(pkgs.fetch(d, darch)?);
        }
    }
    let busybox = if p.init.emergency_shell { Some(pkgs.fetch("busybox-static", darch)?) } else { None };
    let detail = match &kernel {
        KernelSource::Deb { info, .. } => format!("kernel {} {}, {} package(s)", info.name, info.version, debs.len()),
        KernelSource::ArchBase => format!("kernel from the Arch base, {} package(s)", debs.len()),
    };
    cx.packages = Some(Packages { kernel, debs, busybox });
    Ok(Outcome::made(detail))
}
