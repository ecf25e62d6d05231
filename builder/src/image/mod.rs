//! The bootable disk image (`disk.img`), its block map and its qcow2 form.
//!
//! ```text
//! LBA 0        protective MBR, boot code = syslinux gptmbr.bin
//! LBA 1..33    GPT header + 128 entries
//! 1 MiB        p1 oa-esp     FAT (EFI system partition, "legacy BIOS bootable"):
//!                            vmlinuz, initramfs.img, syslinux.cfg, ldlinux.sys/.c32,
//!                            EFI/BOOT/BOOTX64.EFI (systemd-boot), loader/{loader.conf,entries/oa.conf}
//!              p2 oa-root    rootfs.squashfs, byte for byte, at the partition's start
//!              p3 oa-persist (only with image.persistence_mib > 0) blank: all zeros
//! last 33 LBAs backup GPT
//! ```
//!
//! Everything is written into a regular file by the builder: the partition table from Rust
//! ([`gpt`]), the FAT with mtools ([`fat`]), the boot loaders with their Debian tools
//! ([`boot`]). No root, loop device or mount is needed. The same inputs give the same bytes
//! (GUIDs and the FAT serial are derived from the inputs, timestamps from SOURCE_DATE_EPOCH).

pub mod bmap;
pub mod boot;
pub mod fat;
pub mod gpt;
pub mod iso;
pub mod uki;

use crate::error::{Error, IoContext, Result};
use bmap::Bmap;
use boot::{esp, BootFiles, UefiLoader};
use gpt::{Layout, PartSpec};
use oa_contract::cmdline::{self, Cmdline};
use oa_contract::manifest::partlabel;
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::process::Command;

const MIB: u64 = 1 << 20;
/// FAT timestamps start in 1980; used when SOURCE_DATE_EPOCH is not set.
const FAT_EPOCH: u64 = 315_532_800;
/// What syslinux's installer adds to the ESP (ldlinux.sys ~60 KiB + ldlinux.c32 ~120 KiB),
/// with room to spare.
const SYSLINUX_BYTES: u64 = 256 * 1024;

/// What goes into the disk image.
#[derive(Debug, Clone)]
pub struct DiskSpec<'a> {
    /// Shown in the boot menus (the profile name).
    pub title: &'a str,
    pub arch: oa_contract::Arch,
    pub kernel: &'a Path,
    pub initrd: &'a Path,
    pub rootfs: &'a Path,
    /// With dm-verity, `rootfs` is the data and its hash tree after it: the root partition
    /// gets the data, the `oa-verity` partition the tree.
    pub verity: Option<&'a oa_contract::cmdline::VerityArgs>,
    /// The whole kernel command line both boot loaders pass (see [`disk_cmdline`]).
    pub cmdline: &'a [String],
    /// Size of the blank `oa-persist` partition; 0: no such partition.
    pub persistence_mib: u32,
    /// ESP size; `None`: fitted to its files.
    pub esp_mib: Option<u32>,
    /// Bytes the GUIDs and the FAT serial are derived from (the inputs' digests).
    pub seed: &'a [u8],
    /// What UEFI boots: systemd-boot, the signed UKI or the shim chain; BIOS always boots
    /// syslinux.
    pub uefi: UefiLoader<'a>,
}

/// A written disk image.
#[derive(Debug, Clone)]
pub struct Disk {
    pub layout: Layout,
    pub bmap: Bmap,
    /// Bytes of files on the ESP.
    pub esp_files: u64,
}

/// The boot loaders' command line: the manifest's (with `oa.sha256=` or `oa.verity=`) plus
/// where the root image is, `oa.root=PARTLABEL=oa-root`, and with verity where its hash tree
/// is, `oa.verity.hash=PARTLABEL=oa-verity`.
pub fn disk_cmdline(manifest_cmdline: &[String]) -> Vec<String> {
    let mut cl = Cmdline::from_words(manifest_cmdline.iter().cloned());
    cl.set_root(&cmdline::disk_root());
    if cl.get(cmdline::VERITY).is_some() {
        cl.set(cmdline::VERITY_HASH, cmdline::disk_verity_hash());
    }
    cl.into_words()
}

/// The ESP size in MiB for files of these sizes: each file rounded up to 4 KiB (clusters are
/// 512 bytes to 8 KiB), syslinux's files, 2% for the FATs and folders and 512 KiB to spare;
/// at least [`crate::profile::MIN_ESP_MIB`]. The image is never written to, so little spare.
pub fn esp_mib_for(file_sizes: &[u64]) -> u32 {
    let data: u64 = file_sizes.iter().map(|s| s.div_ceil(4096) * 4096).sum::<u64>() + SYSLINUX_BYTES + 64 * 1024;
    let want = data + data * 2 / 100 + MIB / 2;
    (want.div_ceil(MIB) as u32).max(crate::profile::MIN_ESP_MIB)
}

fn len(p: &Path) -> Result<u64> {
    Ok(std::fs::metadata(p).ctx("reading size of", p)?.len())
}

/// SOURCE_DATE_EPOCH when set (reproducible builds), else 1980-01-01, the first FAT date.
pub(crate) fn epoch() -> u64 {
    std::env::var("SOURCE_DATE_EPOCH")
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|&e| e >= FAT_EPOCH)
        .unwrap_or(FAT_EPOCH)
}

/// Write the disk image for `spec` to `out` (created or replaced). The image is sparse:
/// the blank parts are holes.
pub fn write_disk(spec: &DiskSpec<'_>, files: &BootFiles, out: &Path) -> Result<Disk> {
    let mbr_code = files.mbr_code()?;
    let (rootfs_len, tree_len) = root_parts(spec)?;
    let (esp_mib, esp_files) = esp_size(spec, files)?;
    let layout = gpt::plan(&partitions(spec, esp_mib, rootfs_len, tree_len), spec.seed);
    let (esp_p, root_p) = (layout.partitions[0].clone(), layout.partitions[1].clone());

    // The file, sparse, with the partition table.
    let _ = std::fs::remove_file(out);
    let img = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .open(out)
        .ctx("creating disk image", out)?;
    img.set_len(layout.size_bytes()).ctx("sizing disk image", out)?;
    for (off, bytes) in layout.table_writes(&mbr_code) {
        img.write_all_at(&bytes, off).ctx("writing the partition table of", out)?;
    }
    img.sync_all().ctx("syncing", out)?;
    drop(img);

    write_esp(spec, files, out, &esp_p)?;
    copy_root(spec, out, 0, root_p.offset(), rootfs_len)?;
    let tree_p = layout.partition(partlabel::VERITY).cloned();
    if let Some(p) = &tree_p {
        copy_root(spec, out, rootfs_len, p.offset(), tree_len)?;
    }

    // The block map: everything that must be on the device even where it is zeros.
    let mut required = layout.table_ranges();
    required.push((esp_p.offset(), esp_p.offset() + esp_p.size()));
    required.push((root_p.offset(), root_p.offset() + rootfs_len));
    if let Some(p) = &tree_p {
        required.push((p.offset(), p.offset() + tree_len));
    }
    if let Some(p) = layout.partition(partlabel::PERSIST) {
        // A blank partition must read as blank on the device too: its start (LUKS, btrfs,
        // ext4 and FAT signatures) and its end (RAID metadata) are written as zeros.
        let edge = p.size().min(MIB);
        required.push((p.offset(), p.offset() + edge));
        required.push((p.offset() + p.size() - edge, p.offset() + p.size()));
    }
    let map = Bmap::create(out, &required)?;
    Ok(Disk { layout, bmap: map, esp_files })
}

/// The ESP's size in MiB (the profile's, checked, or fitted to its files) and the bytes of the
/// kernel, initramfs and systemd-boot it holds.
fn esp_size(spec: &DiskSpec<'_>, files: &BootFiles) -> Result<(u32, u64)> {
    let mut loaders = 0;
    for (f, _) in spec.uefi.files(&files.systemd_boot, spec.title, spec.cmdline).efi {
        loaders += len(f)?;
    }
    let (kernel_len, initrd_len) = (len(spec.kernel)?, len(spec.initrd)?);
    let esp_files = [kernel_len, initrd_len, loaders, 4096, 4096, 4096, 4096];
    let needed = esp_mib_for(&esp_files);
    let esp_mib = match spec.esp_mib {
        Some(m) if m < needed => {
            return Err(Error::Image(format!(
                "image.esp_mib = {m} is too small for the EFI system partition's files (kernel {} + initramfs {} + boot loaders): give at least {needed}, or leave esp_mib out to fit it",
                bmap::human(kernel_len),
                bmap::human(initrd_len)
            )))
        }
        Some(m) => m,
        None => needed,
    };
    Ok((esp_mib, esp_files.iter().take(3).sum()))
}

/// Bytes of the root partition's image and of the verity hash tree (0 without verity): with
/// verity the root image file is exactly the data blocks and the tree after them.
fn root_parts(spec: &DiskSpec<'_>) -> Result<(u64, u64)> {
    let file = len(spec.rootfs)?;
    let Some(v) = spec.verity else { return Ok((file, 0)) };
    if file != v.image_bytes() {
        return Err(Error::Image(format!(
            "{}: {file} bytes, but its verity facts ({} data blocks) make {} bytes of data and hash tree; rebuild without the cache (--no-cache)",
            spec.rootfs.display(),
            v.data_blocks,
            v.image_bytes()
        )));
    }
    let data = v.data_blocks * oa_contract::cmdline::VERITY_BLOCK_SIZE;
    Ok((data, file - data))
}

/// The partitions of disk.img: the ESP, the root image, its verity hash tree when it has one,
/// and the blank persistence partition when the profile asks for one.
fn partitions(spec: &DiskSpec<'_>, esp_mib: u32, rootfs_len: u64, tree_len: u64) -> Vec<PartSpec> {
    let mut parts = vec![
        PartSpec {
            label: partlabel::ESP.into(),
            type_guid: gpt::types::ESP,
            size_bytes: esp_mib as u64 * MIB,
            attributes: gpt::ATTR_LEGACY_BIOS_BOOTABLE,
        },
        PartSpec {
            label: partlabel::ROOT.into(),
            type_guid: gpt::types::LINUX_DATA,
            size_bytes: rootfs_len,
            attributes: 0,
        },
    ];
    if tree_len > 0 {
        parts.push(PartSpec {
            label: partlabel::VERITY.into(),
            type_guid: gpt::types::LINUX_DATA,
            size_bytes: tree_len,
            attributes: 0,
        });
    }
    if spec.persistence_mib > 0 {
        parts.push(PartSpec {
            label: partlabel::PERSIST.into(),
            type_guid: gpt::types::LINUX_DATA,
            size_bytes: spec.persistence_mib as u64 * MIB,
            attributes: 0,
        });
    }
    parts
}

/// The ESP: FAT, syslinux's boot sector and ldlinux, the boot loader configuration, the
/// kernel, the initramfs and the UEFI boot loader ([`UefiLoader`]: systemd-boot, the signed UKI
/// with signed systemd-boot beside it, or shim with GRUB).
fn write_esp(spec: &DiskSpec<'_>, files: &BootFiles, out: &Path, esp_p: &gpt::Partition) -> Result<()> {
    let g = gpt::derived_guid(spec.seed, "esp-serial").to_gpt_bytes();
    let serial = u32::from_le_bytes([g[0], g[1], g[2], g[3]]);
    let ep = epoch();
    let fat = fat::Fat::new(out, esp_p.offset(), ep);
    fat.format(esp_p.sectors(), esp_p.first_lba.0, "OA-ESP", serial)?;
    install_syslinux(&files.syslinux, out, esp_p.offset(), ep)?;
    fat.mkdirs(esp::DIRS)?;
    // mtools copies from files: the generated texts go through a folder removed on drop.
    let parent = out.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let cfg_dir =
        tempfile::Builder::new().prefix(".oa-esp-").tempdir_in(parent).ctx("creating a temporary folder in", parent)?;
    let uefi = spec.uefi.files(&files.systemd_boot, spec.title, spec.cmdline);
    fat.mkdirs(uefi.dirs)?;
    let mut texts = vec![(esp::SYSLINUX_CFG, boot::syslinux_cfg(spec.title, spec.cmdline))];
    texts.extend(uefi.texts);
    for (i, (dst, text)) in texts.iter().enumerate() {
        let tmp = cfg_dir.path().join(format!("{i}.conf"));
        std::fs::write(&tmp, text).ctx("writing", &tmp)?;
        fat.copy(&tmp, dst)?;
    }
    fat.copy(spec.kernel, esp::KERNEL)?;
    fat.copy(spec.initrd, esp::INITRD)?;
    for (src, dst) in uefi.efi {
        fat.copy(src, dst)?;
    }
    Ok(())
}

/// The root image at `offset` (the start of its partition), checked to be `rootfs_len` bytes.
/// Copy `len` bytes of the root image from `from` to `offset` of the disk image.
fn copy_root(spec: &DiskSpec<'_>, out: &Path, from: u64, offset: u64, len: u64) -> Result<()> {
    let mut src = std::fs::File::open(spec.rootfs).ctx("opening", spec.rootfs)?;
    src.seek(SeekFrom::Start(from)).ctx("seeking in", spec.rootfs)?;
    let mut dst = std::fs::OpenOptions::new().write(true).open(out).ctx("opening", out)?;
    dst.seek(SeekFrom::Start(offset)).ctx("seeking in", out)?;
    let copied = std::io::copy(&mut src.take(len), &mut dst).ctx("writing the root image into", out)?;
    if copied != len {
        return Err(Error::Image(format!(
            "{} changed while it was copied into {}",
            spec.rootfs.display(),
            out.display()
        )));
    }
    dst.sync_all().ctx("syncing", out)
}

/// `syslinux --install --offset`: syslinux's boot sector and ldlinux.sys/.c32 into the FAT
/// at `offset` of the image file (the installer drives mtools itself).
fn install_syslinux(syslinux: &Path, image: &Path, offset: u64, epoch: u64) -> Result<()> {
    let mut c = Command::new(syslinux);
    c.env("SOURCE_DATE_EPOCH", epoch.to_string()).env("TZ", "UTC");
    c.arg("--install").arg("--offset").arg(offset.to_string()).arg(image);
    let out = crate::tool::run(
        &mut c,
        "syslinux",
        "install syslinux: apt-get install syslinux syslinux-common (`make deps` does it)",
    )?;
    // The installer reports some failures as warnings and still exits 0.
    if out.contains("warning") || out.contains("Segmentation fault") {
        return Err(Error::ToolFailed {
            command: format!("{} --install --offset {offset} {}", syslinux.display(), image.display()),
            status: "a warning".into(),
            output: out.trim().to_string(),
        });
    }
    Ok(())
}

/// `qemu-img convert`: `raw` as qcow2 at `out`.
pub fn write_qcow2(raw: &Path, out: &Path) -> Result<()> {
    let _ = std::fs::remove_file(out);
    let mut c = Command::new("qemu-img");
    c.args(["convert", "-f", "raw", "-O", "qcow2"]).arg(raw).arg(out);
    crate::tool::run(&mut c, "qemu-img", "install qemu-utils: apt-get install qemu-utils (`make deps` does it)")
        .map(drop)
}

/// Copy `src` to `dst` keeping holes as holes; returns the bytes of data copied.
pub fn copy_sparse(src: &Path, dst: &Path) -> Result<u64> {
    let mut s = std::fs::File::open(src).ctx("opening", src)?;
    let size = s.metadata().ctx("reading size of", src)?.len();
    let _ = std::fs::remove_file(dst);
    let mut d = std::fs::File::create(dst).ctx("creating", dst)?;
    d.set_len(size).ctx("sizing", dst)?;
    let mut buf = vec![0u8; MIB as usize];
    let mut copied = 0;
    for (a, b) in bmap::data_extents(&s, size)? {
        s.seek(SeekFrom::Start(a)).ctx("seeking in", src)?;
        d.seek(SeekFrom::Start(a)).ctx("seeking in", dst)?;
        let mut left = b - a;
        while left > 0 {
            let n = left.min(buf.len() as u64) as usize;
            s.read_exact(&mut buf[..n]).ctx("reading", src)?;
            d.write_all(&buf[..n]).ctx("writing", dst)?;
            left -= n as u64;
        }
        copied += b - a;
    }
    d.sync_all().ctx("syncing", dst)?;
    Ok(copied)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn disk_cmdline_names_the_root_partition_once() {
        let cl = [
            "console=ttyS0".to_string(),
            cmdline::word(cmdline::SHA256, "ab"),
            cmdline::word(cmdline::ROOT, "/dev/vda"),
        ];
        assert_eq!(disk_cmdline(&cl).join(" "), "console=ttyS0 oa.sha256=ab oa.root=PARTLABEL=oa-root");
    }

    #[test]
    fn esp_is_fitted_to_its_files() {
        // tiny: kernel 8 MiB, initramfs 1.5 MiB, systemd-boot 140 KiB -> 11 MiB.
        assert_eq!(esp_mib_for(&[8_247_232, 1_522_588, 140_891]), 11);
        assert_eq!(esp_mib_for(&[1000]), crate::profile::MIN_ESP_MIB);
    }
}
