//! Stage `shim` (when `[secure_boot] mode = "shim"`): Debian's boot chain for machines with
//! Microsoft's keys. `shimx64.efi` (package shim-signed; Microsoft's UEFI CA signs it, Debian's
//! CA is built into it), `grubx64.efi` (grub-efi-amd64-signed; Debian signs it) and the MOK
//! manager `mmx64.efi` (shim-helpers-amd64-signed, which shim starts when a signature fails),
//! downloaded by apt and verified against its index like every package of the build. The image
//! stage puts them on disk.img's ESP; the kernel is Debian's own, which Debian signs too.
//! Secure netboot (`mode = "uki"` with `image.netboot`) serves shim with Debian's network
//! GRUB (`grubnetx64.efi`, arm64: `grubnetaa64.efi`) in front of the signed UKI: the output
//! stage puts them in `sb/`. The files come from the profile's architecture's packages.
//!
//! The files are taken from the packages, not from the build host's /usr/lib: installing
//! shim-signed on a build machine would run its maintainer scripts against the host's own ESP.

use crate::apt::PackageCache;
use crate::build::{Context, Stored};
use crate::error::Result;
use crate::hash::Key;
use crate::pipeline::Outcome;
use oa_contract::Arch;

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

/// (package, file in it, name in the stage's cache entry), in [`ShimOut`]'s order: shim, GRUB,
/// the MOK manager, network GRUB. arm64 has the same four (oa uses its network chain only:
/// oa makes no arm64 disk.img).
fn files(arch: Arch) -> [(&'static str, &'static str, &'static str); 4] {
    match arch {
        Arch::X86_64 => [
            ("shim-signed", "usr/lib/shim/shimx64.efi.signed", "shimx64.efi"),
            ("grub-efi-amd64-signed", "usr/lib/grub/x86_64-efi-signed/grubx64.efi.signed", "grubx64.efi"),
            ("shim-helpers-amd64-signed", "usr/lib/shim/mmx64.efi.signed", "mmx64.efi"),
            ("grub-efi-amd64-signed", "usr/lib/grub/x86_64-efi-signed/grubnetx64.efi.signed", "grubnetx64.efi"),
        ],
        Arch::Aarch64 => [
            ("shim-signed", "usr/lib/shim/shimaa64.efi.signed", "shimaa64.efi"),
            ("grub-efi-arm64-signed", "usr/lib/grub/arm64-efi-signed/grubaa64.efi.signed", "grubaa64.efi"),
            ("shim-helpers-arm64-signed", "usr/lib/shim/mmaa64.efi.signed", "mmaa64.efi"),
            ("grub-efi-arm64-signed", "usr/lib/grub/arm64-efi-signed/grubnetaa64.efi.signed", "grubnetaa64.efi"),
        ],
    }
}

pub fn run(cx: &mut Context) -> Result<Outcome> {
    let darch = cx.profile.arch.debian();
    let files = files(cx.profile.arch);
    let pkgs = PackageCache::new(&cx.opts.cache_root).refreshing(cx.opts.refresh);
    let mut debs = Vec::new();
    let mut key = Key::new("shim");
    for (package, file, name) in files {
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
            crate::deb::extract_file(deb, info, file, &scratch.join(format!(".unpack-{name}")), &scratch.join(name))?;
            scratch.seal(name)?;
        }
        Ok(versions.join(", "))
    })?;
    let stored = |name: &str| -> Result<Stored> { Ok(Stored { path: entry.file(name), sha256: entry.digest(name)? }) };
    cx.shim = Some(ShimOut {
        shim: stored(files[0].2)?,
        grub: stored(files[1].2)?,
        mok_manager: stored(files[2].2)?,
        grub_net: stored(files[3].2)?,
    });
    Ok(match made {
        Some(detail) => Outcome::made(detail),
        None => Outcome::cached(versions.join(", ")),
    })
}
