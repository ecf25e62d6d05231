//! Stage `image` (when `[image] disk = true`): `disk.img` with its block map, and `disk.qcow2`
//! when asked, from the kernel, initramfs and root image of the earlier stages.

use crate::build::{need, Context};
use crate::error::{IoContext, Result};
use crate::hash::{self, Key};
use crate::image::{self, boot::BootFiles, boot::UefiLoader};
use crate::pipeline::Outcome;
use oa_contract::manifest::{artifact, partlabel};
use std::path::PathBuf;

/// The image stage's cache entry.
#[derive(Debug, Clone)]
pub struct DiskOut {
    pub img: PathBuf,
    pub img_sha256: String,
    /// Logical size of disk.img (its holes included).
    pub size: u64,
    pub bmap: PathBuf,
    pub qcow2: Option<(PathBuf, String)>,
}

pub fn run(cx: &mut Context) -> Result<Outcome> {
    let p = cx.profile;
    let k = need(&cx.kernel, "image", "the kernel")?;
    let initrd = need(&cx.initramfs, "image", "the initramfs")?;
    let rootfs = need(&cx.rootfs, "image", "the root image")?;
    let files = BootFiles::locate(p.arch)?;
    let uki = cx.uki.as_ref().and_then(|u| Some((u.disk.as_ref()?, u.systemd_boot.as_ref()?)));
    // Secure netboot fetches shim too; disk.img boots through it only with mode = "shim".
    let shim = cx.shim.as_ref().filter(|_| p.secure_boot.mode == crate::profile::SecureBootMode::Shim);
    let boot_cmdline = image::disk_cmdline(&cx.manifest_cmdline("image")?);
    // The key is also the seed of the disk's GUIDs: the same inputs give the same bytes.
    let mut key = Key::new("image");
    key.add("kernel", k.vmlinuz_sha256.as_bytes())
        .add("initramfs", initrd.sha256.as_bytes())
        .add("rootfs", rootfs.sha256.as_bytes());
    key.add("title", p.name.as_bytes()).add("cmdline", boot_cmdline.join(" ").as_bytes());
    // Whether an ISO is made too does not change disk.img.
    let disk_settings = crate::profile::Image { iso: false, ..p.image.clone() };
    key.add("image", &serde_json::to_vec(&disk_settings).unwrap_or_default());
    for f in [&files.gptmbr, &files.syslinux, &files.systemd_boot] {
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
    key.add("epoch", std::env::var("SOURCE_DATE_EPOCH").unwrap_or_default().as_bytes());
    let key = key.hex();
    let (entry, made) = cx.store.get_or_build("image", &key, cx.opts.no_cache, |scratch| {
        let spec = image::DiskSpec {
            title: &p.name,
            arch: p.arch,
            kernel: &k.kernel.vmlinuz,
            initrd: &initrd.path,
            rootfs: &rootfs.path,
            verity: cx.verity.as_ref(),
            cmdline: &boot_cmdline,
            persistence_mib: p.image.persistence_mib,
            esp_mib: p.image.esp_mib,
            seed: key.as_bytes(),
            uefi: UefiLoader::of(uki.map(|(u, sd)| (u.path.as_path(), sd.path.as_path())), shim),
        };
        let img = scratch.join(artifact::DISK_IMAGE);
        let disk = image::write_disk(&spec, &files, &img)?;
        let bmap = scratch.join(artifact::DISK_BMAP);
        std::fs::write(&bmap, disk.bmap.to_xml()).ctx("writing", &bmap)?;
        scratch.seal(artifact::DISK_IMAGE)?;
        let mut detail = format!(
            "{} (ESP {} MiB, root {} MiB{}), {} mapped",
            image::bmap::human(disk.layout.size_bytes()),
            disk.layout.partitions[0].size() >> 20,
            disk.layout.partitions[1].size() >> 20,
            [(partlabel::VERITY, "verity hash tree"), (partlabel::PERSIST, "persistence")]
                .iter()
                .filter_map(|(l, what)| disk
                    .layout
                    .partition(l)
                    .map(|q| format!(", {what} {}", image::bmap::human(q.size()))))
                .collect::<String>(),
            image::bmap::human(disk.bmap.mapped_bytes()),
        );
        if p.image.qcow2 {
            let q = scratch.join(artifact::DISK_QCOW2);
            image::write_qcow2(&img, &q)?;
            scratch.seal(artifact::DISK_QCOW2)?;
            let qsize = std::fs::metadata(&q).ctx("reading", &q)?.len();
            detail.push_str(&format!(", qcow2 {}", image::bmap::human(qsize)));
        }
        Ok(detail)
    })?;
    let qcow2 = match p.image.qcow2 {
        true => Some((entry.file(artifact::DISK_QCOW2), entry.digest(artifact::DISK_QCOW2)?)),
        false => None,
    };
    cx.disk = Some(DiskOut {
        img: entry.file(artifact::DISK_IMAGE),
        img_sha256: entry.digest(artifact::DISK_IMAGE)?,
        size: entry.size(artifact::DISK_IMAGE)?,
        bmap: entry.file(artifact::DISK_BMAP),
        qcow2,
    });
    Ok(match made {
        Some(detail) => Outcome::made(detail),
        None => Outcome::cached("unchanged"),
    })
}
