//! Raspberry Pi outputs: the `rpi/` boot tree (the Pi firmware, `config.txt` and
//! `cmdline.txt` generated from the profile, the kernel as `kernel8.img`, the initramfs, the
//! Pi device trees) and the SD card image `rpi.img` (MBR; a FAT boot partition holding the
//! tree; the root image on partition 2).
//!
//! The same tree is what `oa serve` hands to netbooting Pis over TFTP (with a `cmdline.txt`
//! pointing `oa.root=` at its HTTP server). The firmware comes from Debian's `raspi-firmware`
//! package (component non-free-firmware, which the host's apt sources may not list: it is
//! fetched with a private apt configuration in the cache, leaving the host's sources alone)
//! or from a folder named in the profile.

use crate::apt::tempfile_dir;
use crate::error::{Error, IoContext, Result};
use crate::image::fat::Fat;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Files the Pi boot ROM and firmware load, as found in the firmware folder.
pub fn firmware_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .ctx("listing Raspberry Pi firmware folder", dir)?
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            let n = p.file_name().map(|n| n.to_string_lossy().to_string()).unwrap_or_default();
            n == "bootcode.bin"
                || (n.starts_with("start") && n.ends_with(".elf"))
                || (n.starts_with("fixup") && n.ends_with(".dat"))
        })
        .collect();
    v.sort();
    for need in ["bootcode.bin", "start.elf", "start4.elf", "fixup.dat", "fixup4.dat"] {
        if !v.iter().any(|p| p.file_name().is_some_and(|n| n == need)) {
            return Err(Error::Rpi(format!(
                "Raspberry Pi firmware folder {} has no {need}; point rpi.firmware at a folder with the Pi firmware (bootcode.bin, start*.elf, fixup*.dat) or use \"package\"",
                dir.display()
            )));
        }
    }
    Ok(v)
}

/// The firmware folder for `source` (`"package"` or an absolute folder).
pub fn firmware_dir(source: &str, cache_root: &Path) -> Result<PathBuf> {
    if source != "package" {
        return Ok(PathBuf::from(source));
    }
    // The private apt state that fetches the package (not a cache entry: apt keeps it).
    let base = cache_root.join("rpi-firmware");
    std::fs::create_dir_all(&base).ctx("creating", &base)?;
    let deb = fetch_firmware_package(&base)?;
    let mut key = crate::hash::Key::new("rpi-firmware");
    key.add("deb", deb.file_name().unwrap_or_default().as_encoded_bytes());
    let store = crate::cache::Store::open(cache_root)?;
    let (entry, _) = store.get_or_build("rpi-firmware", &key.hex(), false, |scratch| {
        crate::deb::extract(&deb, scratch.path(), &|p| p.starts_with(FIRMWARE_IN_PACKAGE))?;
        Ok(())
    })?;
    Ok(entry.file(FIRMWARE_IN_PACKAGE))
}

/// Where the raspi-firmware package keeps the firmware.
const FIRMWARE_IN_PACKAGE: &str = "usr/lib/raspi-firmware";

/// The host's Debian mirror and release, from its apt sources and os-release.
fn host_mirror() -> (String, String) {
    let mut uri = None;
    let mut texts = Vec::new();
    if let Ok(rd) = std::fs::read_dir("/etc/apt/sources.list.d") {
        for e in rd.flatten() {
            texts.push(std::fs::read_to_string(e.path()).unwrap_or_default());
        }
    }
    texts.push(std::fs::read_to_string("/etc/apt/sources.list").unwrap_or_default());
    'outer: for t in &texts {
        for line in t.lines().map(str::trim).filter(|l| !l.starts_with('#')) {
            let cand = line
                .strip_prefix("URIs:")
                .map(|u| u.split_whitespace().next().unwrap_or("").to_string())
                .or_else(|| {
                    line.strip_prefix("deb ")
                        .and_then(|r| r.split_whitespace().find(|w| w.contains("://")).map(str::to_string))
                });
            if let Some(c) = cand {
                if c.contains("debian") && !c.contains("security") {
                    uri = Some(c);
                    break 'outer;
                }
            }
        }
    }
    let os = std::fs::read_to_string("/etc/os-release").unwrap_or_default();
    let suite = os
        .lines()
        .find_map(|l| l.strip_prefix("VERSION_CODENAME="))
        .map(|s| s.trim_matches('"').to_string())
        .unwrap_or_else(|| "bookworm".into());
    (uri.unwrap_or_else(|| "http://deb.debian.org/debian".into()), suite)
}

/// `raspi-firmware` through a private apt configuration (its own sources list, package lists
/// and cache under `base/apt`), refreshed once a day.
fn fetch_firmware_package(base: &Path) -> Result<PathBuf> {
    let apt = base.join("apt");
    for d in ["lists/partial", "archives/partial"] {
        std::fs::create_dir_all(apt.join(d)).ctx("creating", apt.join(d))?;
    }
    let (mirror, suite) = host_mirror();
    let sources = apt.join("sources.list");
    let line =
        format!("deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] {mirror} {suite} non-free-firmware\n");
    if std::fs::read_to_string(&sources).ok().as_deref() != Some(line.as_str()) {
        std::fs::write(&sources, &line).ctx("writing", &sources)?;
        let _ = std::fs::remove_file(apt.join("updated"));
    }
    let opts = |c: &mut Command| {
        c.arg("-o").arg(format!("Dir::Etc::SourceList={}", sources.display()));
        c.args(["-o", "Dir::Etc::SourceParts=/nonexistent", "-o", "APT::Sandbox::User=root", "-q"]);
        c.arg("-o").arg(format!("Dir::State::Lists={}", apt.join("lists").display()));
        c.arg("-o").arg(format!("Dir::Cache={}", apt.display()));
        c.arg("-o").arg(format!("Dir::Cache::archives={}", apt.join("archives").display()));
    };
    let stamp = apt.join("updated");
    let fresh = std::fs::metadata(&stamp)
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| t.elapsed().ok())
        .is_some_and(|e| e.as_secs() < 86_400);
    if !fresh {
        let mut c = Command::new("apt-get");
        opts(&mut c);
        c.arg("update");
        crate::tool::run(&mut c, "apt-get", "oa fetches the Raspberry Pi firmware with apt").map_err(|e| {
            Error::Package {
                package: "raspi-firmware".into(),
                reason: format!("updating the private package list for {mirror} {suite} non-free-firmware: {e}"),
            }
        })?;
        std::fs::write(&stamp, b"").ctx("writing", &stamp)?;
    }
    let dl = tempfile_dir(base)?;
    let mut c = Command::new("apt-get");
    opts(&mut c);
    c.current_dir(&dl).args(["download", "raspi-firmware"]);
    let r = crate::tool::run(&mut c, "apt-get", "oa fetches the Raspberry Pi firmware with apt");
    let got = std::fs::read_dir(&dl)
        .ok()
        .and_then(|rd| rd.flatten().map(|e| e.path()).find(|p| p.extension().is_some_and(|x| x == "deb")));
    let out = match (r, got) {
        (Ok(_), Some(p)) => {
            let dst = base.join(p.file_name().unwrap_or_default());
            std::fs::rename(&p, &dst).ctx("moving the firmware package into the cache", &dst)?;
            Ok(dst)
        }
        (r, _) => {
            // Offline: a package fetched earlier is still the firmware.
            let cached = std::fs::read_dir(base).ok().and_then(|rd| {
                rd.flatten().map(|e| e.path()).filter(|p| p.extension().is_some_and(|x| x == "deb")).max()
            });
            cached.ok_or_else(|| Error::Package {
                package: "raspi-firmware".into(),
                reason: format!(
                    "apt-get download failed ({}); give the firmware folder with rpi.firmware = \"/path\" instead",
                    r.err().map(|e| e.to_string()).unwrap_or_else(|| "no .deb written".into())
                ),
            })
        }
    };
    let _ = std::fs::remove_dir_all(&dl);
    out
}

/// `config.txt`: 64-bit kernel, our initramfs, the serial console; then the profile's lines.
pub fn config_txt(profile: &str, extra: &[String]) -> String {
    let mut s = format!(
        "# Generated by oa from profile {profile}; see docs/rpi.md.\n\
         arm_64bit=1\n\
         kernel=kernel8.img\n\
         initramfs initramfs.img followkernel\n\
         enable_uart=1\n"
    );
    for l in extra {
        s.push_str(l);
        s.push('\n');
    }
    s
}

/// `cmdline.txt`: one line. Without `oa.root=` oa-init scans the block devices for the root
/// image with the `oa.sha256=` digest, which finds partition 2 of the SD card (or a USB disk).
pub fn cmdline_txt(words: &[String]) -> String {
    format!("{}\n", words.join(" "))
}

/// What goes into the boot tree.
pub struct TreeInputs<'a> {
    pub profile: &'a str,
    pub firmware: &'a Path,
    pub kernel: &'a Path,
    pub initrd: &'a Path,
    pub device_trees: &'a [PathBuf],
    pub cmdline: &'a [String],
    pub config_extra: &'a [String],
}

/// Write the boot tree into `dir` (created); returns the file names written.
pub fn write_tree(dir: &Path, i: &TreeInputs) -> Result<Vec<String>> {
    std::fs::create_dir_all(dir).ctx("creating", dir)?;
    let mut names = Vec::new();
    let mut copy = |src: &Path, name: &str| -> Result<()> {
        std::fs::copy(src, dir.join(name)).ctx("copying into the Raspberry Pi boot tree", dir.join(name))?;
        names.push(name.to_string());
        Ok(())
    };
    for f in firmware_files(i.firmware)? {
        let n = f.file_name().unwrap_or_default().to_string_lossy().to_string();
        copy(&f, &n)?;
    }
    if i.device_trees.is_empty() {
        return Err(Error::Kernel("the kernel package has no Raspberry Pi device trees (bcm2*.dtb under usr/lib/linux-image-<release>/broadcom/)".into()));
    }
    for d in i.device_trees {
        let n = d.file_name().unwrap_or_default().to_string_lossy().to_string();
        copy(d, &n)?;
    }
    copy(i.kernel, "kernel8.img")?;
    copy(i.initrd, "initramfs.img")?;
    std::fs::write(dir.join("config.txt"), config_txt(i.profile, i.config_extra))
        .ctx("writing", dir.join("config.txt"))?;
    std::fs::write(dir.join("cmdline.txt"), cmdline_txt(i.cmdline)).ctx("writing", dir.join("cmdline.txt"))?;
    names.push("config.txt".into());
    names.push("cmdline.txt".into());
    names.sort();
    Ok(names)
}

pub use oa_disk::mbr::{MbrError, MbrPart, TYPE_FAT32_LBA, TYPE_LINUX};

const MIB: u64 = 1 << 20;

/// The 512-byte MBR for `parts` with `disk_id` (the Pi's PARTUUID prefix).
pub fn mbr(disk_id: u32, parts: &[MbrPart]) -> [u8; 512] {
    oa_disk::mbr::dos(disk_id, parts)
}

/// Parse the disk identifier and the used partition entries of an MBR (for checks and tests).
pub fn parse_mbr(b: &[u8]) -> std::result::Result<(u32, Vec<MbrPart>), MbrError> {
    oa_disk::mbr::parse(b).map(|m| (m.disk_id, m.partitions))
}

fn round_mib(n: u64) -> u64 {
    n.div_ceil(MIB) * MIB
}

/// Write `rpi.img`: the tree in `tree` on a FAT partition (1 MiB aligned, sized to its files
/// with room to spare, at least 64 MiB), the root image on partition 2. Written to a
/// temporary name and renamed at the end. Returns the partitions.
pub fn write_sd_image(tree: &Path, rootfs: &Path, out: &Path, disk_id: u32) -> Result<Vec<MbrPart>> {
    let mut files: Vec<PathBuf> =
        std::fs::read_dir(tree).ctx("listing", tree)?.flatten().map(|e| e.path()).filter(|p| p.is_file()).collect();
    files.sort();
    let content: u64 = files.iter().filter_map(|f| f.metadata().ok()).map(|m| m.len()).sum();
    let boot_bytes = round_mib((content + content / 4 + 8 * MIB).max(64 * MIB));
    let root_len = std::fs::metadata(rootfs).ctx("reading", rootfs)?.len();
    let root_bytes = round_mib(root_len);
    let boot_start = MIB;
    let root_start = boot_start + boot_bytes;
    let total = root_start + root_bytes;
    let parts = vec![
        MbrPart {
            bootable: true,
            kind: TYPE_FAT32_LBA,
            start_lba: (boot_start / 512) as u32,
            sectors: (boot_bytes / 512) as u32,
        },
        MbrPart {
            bootable: false,
            kind: TYPE_LINUX,
            start_lba: (root_start / 512) as u32,
            sectors: (root_bytes / 512) as u32,
        },
    ];
    // Written beside `out` under a temporary name (removed on drop) and renamed when finished.
    use std::io::{Seek, SeekFrom, Write};
    let parent = out.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let mut tmp =
        tempfile::Builder::new().prefix(".rpi.img.").tempfile_in(parent).ctx("creating a temporary file in", parent)?;
    let path = tmp.path().to_path_buf();
    let f = tmp.as_file_mut();
    f.set_len(total).ctx("sizing", &path)?;
    f.write_all(&mbr(disk_id, &parts)).ctx("writing the MBR of", &path)?;
    f.seek(SeekFrom::Start(root_start)).ctx("seeking in", &path)?;
    let mut src = std::fs::File::open(rootfs).ctx("opening", rootfs)?;
    std::io::copy(&mut src, f).ctx("writing the root image into", &path)?;
    f.sync_all().ctx("syncing", &path)?;
    let fat = Fat::new(&path, boot_start, 0);
    fat.format(boot_bytes / 512, boot_start / 512, "OA-BOOT", disk_id)?;
    for file in &files {
        let name = file.file_name().unwrap_or_default().to_string_lossy().to_string();
        fat.copy(file, &name)?;
    }
    // Temporary files are 0600; the image is an ordinary output file.
    std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o644))
        .ctx("setting the mode of", &path)?;
    tmp.persist(out).map_err(|e| e.error).ctx("moving the finished SD image into place", out)?;
    Ok(parts)
}

/// The Raspberry Pi stage's result, kept in the cache: `<dir>/rpi/` (the tree) and
/// `<dir>/rpi.img` with its digest.
pub struct RpiOut {
    pub dir: PathBuf,
    pub img_sha256: String,
    pub img_size: u64,
}

impl RpiOut {
    /// Copy the tree and the SD image into the output folder being assembled, and list
    /// `rpi.img` in the manifest.
    pub fn copy_into(&self, out: &Path, artifacts: &mut Vec<oa_contract::manifest::Artifact>) -> Result<()> {
        use oa_contract::manifest::artifact;
        crate::fsutil::copy_tree(&self.dir.join(artifact::RPI_TREE), &out.join(artifact::RPI_TREE))?;
        let dst = out.join(artifact::RPI_IMAGE);
        crate::image::copy_sparse(&self.dir.join(artifact::RPI_IMAGE), &dst)?;
        artifacts.push(oa_contract::manifest::Artifact {
            name: artifact::RPI_IMAGE.into(),
            path: artifact::RPI_IMAGE.into(),
            size: self.img_size,
            sha256: self.img_sha256.clone(),
        });
        Ok(())
    }
}

/// Inputs of the stage that are files with known digests.
pub struct StageInputs<'a> {
    pub profile: &'a crate::profile::Profile,
    pub cache_root: &'a Path,
    pub store: &'a crate::cache::Store,
    pub kernel: &'a crate::kernel::Kernel,
    pub kernel_sha: &'a str,
    pub initrd: &'a Path,
    pub initrd_sha: &'a str,
    pub rootfs: &'a Path,
    pub rootfs_sha: &'a str,
    pub cmdline: &'a [String],
    pub no_cache: bool,
}

/// Make (or reuse from the cache) the `rpi/` tree and `rpi.img`.
pub fn stage(i: &StageInputs) -> Result<(RpiOut, crate::pipeline::Outcome)> {
    use oa_contract::manifest::artifact;
    let p = i.profile;
    let firmware = firmware_dir(&p.rpi.firmware, i.cache_root)?;
    let dtbs = i.kernel.device_trees("bcm2");
    let mut key = crate::hash::Key::new("rpi");
    key.add("kernel", i.kernel_sha.as_bytes())
        .add("initrd", i.initrd_sha.as_bytes())
        .add("rootfs", i.rootfs_sha.as_bytes());
    key.add("firmware", firmware.as_os_str().as_encoded_bytes());
    for f in firmware_files(&firmware)? {
        key.add("fw", crate::hash::sha256_file(&f)?.as_bytes());
    }
    for d in &dtbs {
        key.add("dtb", d.file_name().unwrap_or_default().as_encoded_bytes());
    }
    key.add("cmdline", i.cmdline.join(" ").as_bytes())
        .add("config", p.rpi.config.join("\n").as_bytes())
        .add("profile", p.name.as_bytes());
    let (entry, made) = i.store.get_or_build("rpi", &key.hex(), i.no_cache, |scratch| {
        let names = write_tree(
            &scratch.join(artifact::RPI_TREE),
            &TreeInputs {
                profile: &p.name,
                firmware: &firmware,
                kernel: &i.kernel.vmlinuz,
                initrd: i.initrd,
                device_trees: &dtbs,
                cmdline: i.cmdline,
                config_extra: &p.rpi.config,
            },
        )?;
        let disk_id = u32::from_str_radix(&i.rootfs_sha[..8], 16).unwrap_or(0x6f61_0001);
        let img = scratch.join(artifact::RPI_IMAGE);
        let parts = write_sd_image(&scratch.join(artifact::RPI_TREE), i.rootfs, &img, disk_id)?;
        scratch.seal(artifact::RPI_IMAGE)?;
        let size = std::fs::metadata(&img).ctx("reading", &img)?.len();
        Ok(format!(
            "rpi/ ({} files, {} device trees) + rpi.img {} MiB (boot {} MiB FAT, root {} MiB)",
            names.len(),
            dtbs.len(),
            size >> 20,
            (parts[0].sectors as u64 * 512) >> 20,
            (parts[1].sectors as u64 * 512) >> 20
        ))
    })?;
    let out = RpiOut {
        img_sha256: entry.digest(artifact::RPI_IMAGE)?,
        img_size: entry.size(artifact::RPI_IMAGE)?,
        dir: entry.dir,
    };
    let outcome = match made {
        Some(detail) => crate::pipeline::Outcome::made(detail),
        None => crate::pipeline::Outcome::cached("unchanged"),
    };
    Ok((out, outcome))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mbr_round_trips() {
        let parts = vec![
            MbrPart { bootable: true, kind: TYPE_FAT32_LBA, start_lba: 2048, sectors: 131072 },
            MbrPart { bootable: false, kind: TYPE_LINUX, start_lba: 133120, sectors: 4096 },
        ];
        let b = mbr(0x1234abcd, &parts);
        assert_eq!(parse_mbr(&b).unwrap(), (0x1234abcd, parts));
        // The exact bytes: rpi.img must stay byte-identical for the same inputs.
        use sha2::{Digest, Sha256};
        assert_eq!(hex::encode(Sha256::digest(b)), "a45020269418327b1ff25d782290c488be0d6e4e44fba18537ff6e4ff1d804b3");
    }

    #[test]
    fn config_txt_boots_our_kernel_and_initramfs() {
        let c = config_txt("p", &["dtparam=audio=off".into()]);
        assert!(c.contains("arm_64bit=1\n"));
        assert!(c.contains("kernel=kernel8.img\n"));
        assert!(c.contains("initramfs initramfs.img followkernel\n"));
        assert!(c.ends_with("dtparam=audio=off\n"));
    }
}
