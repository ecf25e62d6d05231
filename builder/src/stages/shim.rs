//! Stage `shim` (when `[secure_boot] mode = "shim"`): Debian's boot chain for machines with
//! Microsoft's keys. `shimx64.efi` (package shim-signed; Microsoft's UEFI CA signs it, Debian's
//! CA is built into it), `grubx64.efi` (grub-efi-amd64-signed; Debian signs it) and the MOK
//! manager `mmx64.efi` (shim-helpers-amd64-signed, which shim starts when a signature fails),
//! downloaded by apt and verified against its index like every package of the build. The image
//! stage puts them on disk.img's ESP; the kernel is Debian's own, which Debian signs too.
//! Secure netboot (`mode = "uki"` with `image.netboot`) serves shim with Debian's network
//! GRUB (`grubnetx64.efi`) in front of the signed UKI: the output stage puts them in `sb/`.
//!
//! The files are taken from the packages, not from the build host's /usr/lib: installing
//! shim-signed on a build machine would run its maintainer scripts against the host's own ESP.

use crate::apt::PackageCache;
use crate::build::{Context, Stored};
use crate::error::{Error, Result};
use crate::hash::Key;
use crate::pipeline::Outcome;
use std::path::Path;

/// The signed boot files of the shim chain.
#[derive(Debug, Clone)]
pub struct ShimOut {
    /// `EFI/BOOT/BOOTX64.EFI`: shim, signed by Microsoft's UEFI CA.
    pub shim: Stored,
    /// `EFI/BOOT/grubx64.efi`: GRUB, signed by Debian (shim checks it).
    pub grub: Stored,
    /// `EFI/BOOT/mmx64.efi`: the MOK manager shim starts when a signature does not verify.
    pub mok_manager: Stored,
    /// GRUB for network boot (`grubnetx64.efi.signed`, Debian signs it): secure netboot's
    /// second stage, reading its configuration from the TFTP server it came from.
    pub grub_net: Stored,
}

/// (package, file in it, name in the stage's cache entry).
const FILES: [(&str, &str, &str); 4] = [
    ("shim-signed", "usr/lib/shim/shimx64.efi.signed", "shimx64.efi"),
    ("grub-efi-amd64-signed", "usr/lib/grub/x86_64-efi-signed/grubx64.efi.signed", "grubx64.efi"),
    ("shim-helpers-amd64-signed", "usr/lib/shim/mmx64.efi.signed", "mmx64.efi"),
    ("grub-efi-amd64-signed", "usr/lib/grub/x86_64-efi-signed/grubnetx64.efi.signed", "grubnetx64.efi"),
];

pub fn run(cx: &mut Context) -> Result<Outcome> {
    let darch = cx.profile.arch.debian();
    let pkgs = PackageCache::new(&cx.opts.cache_root).refreshing(cx.opts.refresh);
    let mut debs = Vec::new();
    let mut key = Key::new("shim");
    for (package, file, name) in FILES {
        let (path, info) = pkgs.fetch(package, darch)?;
        key.add(package, info.sha256.as_bytes()).add("file", file.as_bytes());
        debs.push((path, info, file, name));
    }
    let mut versions: Vec<String> = Vec::new();
    for (_, i, _, _) in &debs {
        let v = format!("{} {}", i.name, i.version);
        if !versions.contains(&v) {
            versions.push(v);
        }
    }
    let (entry, made) = cx.store.get_or_build("shim", &key.hex(), cx.opts.no_cache, |scratch| {
        for (deb, info, file, name) in &debs {
            let unpack = scratch.join(format!(".unpack-{name}"));
            std::fs::create_dir_all(&unpack).map_err(|e| Error::Package {
                package: info.name.clone(),
                reason: format!("creating {}: {e}", unpack.display()),
            })?;
            let want = Path::new(file);
            let got = crate::deb::extract(deb, &unpack, &|p| p == want)?;
            if got.files != 1 {
                return Err(Error::Package {
                    package: info.name.clone(),
                    reason: format!(
                        "{} {} has no /{file}: Debian moved it; oa knows this package's layout of Debian 12",
                        info.name, info.version
                    ),
                });
            }
            let dst = scratch.join(name);
            std::fs::rename(unpack.join(file), &dst).map_err(|e| Error::Package {
                package: info.name.clone(),
                reason: format!("moving /{file} to {}: {e}", dst.display()),
            })?;
            let _ = std::fs::remove_dir_all(&unpack);
            scratch.seal(name)?;
        }
        Ok(versions.join(", "))
    })?;
    let stored = |name: &str| -> Result<Stored> { Ok(Stored { path: entry.file(name), sha256: entry.digest(name)? }) };
    cx.shim = Some(ShimOut {
        shim: stored(FILES[0].2)?,
        grub: stored(FILES[1].2)?,
        mok_manager: stored(FILES[2].2)?,
        grub_net: stored(FILES[3].2)?,
    });
    Ok(match made {
        Some(detail) => Outcome::made(detail),
        None => Outcome::cached(versions.join(", ")),
    })
}
