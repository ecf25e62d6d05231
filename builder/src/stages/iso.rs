//! Stage `iso` (when `[image] iso = true`): `oa.iso`, the hybrid ISO (builder/src/image/iso.rs),
//! from the kernel, initramfs and root image of the earlier stages.

use crate::build::{need, Context};
use crate::error::Result;
use crate::hash::{self, Key};
use crate::image::{self, iso};
use crate::pipeline::Outcome;
use oa_contract::manifest::{artifact, iso_volume_id};
use std::path::PathBuf;

/// The iso stage's cache entry.
#[derive(Debug, Clone)]
pub struct IsoOut {
    pub path: PathBuf,
    pub sha256: String,
    pub size: u64,
}

pub fn run(cx: &mut Context) -> Result<Outcome> {
    let p = cx.profile;
    let k = need(&cx.kernel, "iso", "the kernel")?;
    let initrd = need(&cx.initramfs, "iso", "the initramfs")?;
    let rootfs = need(&cx.rootfs, "iso", "the root image")?;
    let files = iso::IsoFiles::locate(p.arch)?;
    let uki = cx.uki.as_ref().and_then(|u| Some((u.iso.as_ref()?, u.systemd_boot.as_ref()?)));
    let shim = cx.shim.as_ref().filter(|_| p.secure_boot.mode == crate::profile::SecureBootMode::Shim);
    let volume_id = iso_volume_id(&p.name);
    let boot_cmdline = iso::iso_cmdline(&cx.manifest_cmdline("iso")?, &volume_id);
    let epoch = image::epoch();
    // The key is also the seed of the FAT serial: the same inputs give the same bytes.
    let mut key = Key::new("iso");
    key.add("kernel", k.vmlinuz_sha256.as_bytes())
        .add("initramfs", initrd.sha256.as_bytes())
        .add("rootfs", rootfs.sha256.as_bytes());
    key.add("title", p.name.as_bytes()).add("volume", volume_id.as_bytes());
    key.add("cmdline", boot_cmdline.join(" ").as_bytes());
    for f in files.all() {
        key.add("bootfile", hash::sha256_file(f)?.as_bytes());
    }
    if let Some((u, sd)) = uki {
        key.add("uki", u.sha256.as_bytes()).add("systemd-boot", sd.sha256.as_bytes());
    }
    if let Some(s) = shim {
        for f in [&s.shim, &s.grub, &s.mok_manager] {
            key.add("shim", f.sha256.as_bytes());
        }
    }
    // What the stage lays out beyond its inputs; changed with the layout so older entries of
    // the same inputs are not reused (2: signed systemd-boot beside the UKI, shim's chain).
    key.add("layout", b"2");
    key.add("xorriso", xorriso_version().as_bytes());
    key.add("epoch", std::env::var("SOURCE_DATE_EPOCH").unwrap_or_default().as_bytes());
    let key = key.hex();
    let (entry, made) = cx.store.get_or_build("iso", &key, cx.opts.no_cache, |scratch| {
        let spec = iso::IsoSpec {
            title: &p.name,
            volume_id: &volume_id,
            kernel: &k.kernel.vmlinuz,
            initrd: &initrd.path,
            rootfs: &rootfs.path,
            cmdline: &boot_cmdline,
            seed: key.as_bytes(),
            epoch,
            uefi: image::boot::UefiLoader::of(uki.map(|(u, sd)| (u.path.as_path(), sd.path.as_path())), shim),
        };
        let out = scratch.join(artifact::ISO);
        if crate::stages::initramfs::carries_key(p) {
            // The initramfs inside holds the key file.
            crate::stages::initramfs::create_private(&out)?;
        }
        let written = iso::write_iso(&spec, &files, &out, scratch.path())?;
        scratch.seal(artifact::ISO)?;
        Ok(format!(
            "{} (volume {volume_id}; BIOS isolinux + UEFI {} ESP {}; root image {} as {})",
            image::bmap::human(written.size),
            spec.uefi.name(),
            image::bmap::human(written.esp_bytes),
            image::bmap::human(std::fs::metadata(&rootfs.path).map(|m| m.len()).unwrap_or(0)),
            iso::paths::ROOT_IMAGE,
        ))
    })?;
    let path = entry.file(artifact::ISO);
    if crate::stages::initramfs::carries_key(p) {
        // Also an entry made before: the ISO holds the initramfs with the key file.
        crate::stages::initramfs::make_private(&path)?;
    }
    cx.iso = Some(IsoOut { path, sha256: entry.digest(artifact::ISO)?, size: entry.size(artifact::ISO)? });
    Ok(match made {
        Some(detail) => Outcome::made(detail),
        None => Outcome::cached("unchanged"),
    })
}

/// `xorriso -version`'s first line (a new xorriso may lay out the same inputs differently);
/// empty when it cannot run (the build then says how to install it).
fn xorriso_version() -> String {
    std::process::Command::new("xorriso")
        .arg("-version")
        .output()
        .ok()
        .and_then(|o| String::from_utf8_lossy(&o.stdout).lines().next().map(str::to_string))
        .unwrap_or_default()
}
