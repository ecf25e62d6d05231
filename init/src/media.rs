//! Boot media that carry the root image as a file, and copy-to-RAM.
//!
//! `oa.root=LABEL=`/`UUID=` names a filesystem (the ISO 9660 of `oa.iso` on a CD, a BMC's
//! virtual media or a stick written with dd; a FAT, ext4 or btrfs stick): [`Labels`] reads
//! each block device's label and UUID (oa_disk::fsid, as blkid reports them), [`mount`]
//! mounts the one that matches read-only at `/run/oa/media` and the root image is the file
//! [`media_paths::ROOT_IMAGE`] on it.
//!
//! Copy-to-RAM (`oa.copytoram`, `[image] copytoram`): [`copy_to_ram`] copies the image into a
//! tmpfs, hashing it on the way (that is the verification: the bytes in RAM are the ones
//! hashed), then [`release`] unmounts the medium so that it can be removed or ejected.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::Instant;

use nix::mount::MsFlags;
use oa_contract::cmdline::{self, RootSpec};
use oa_contract::config::CopyToRam;
use oa_contract::{media_paths, mounts as mp};
use oa_disk::fsid::{self, FsId};
use oa_disk::signature::HEAD_BYTES;
use sha2::{Digest, Sha256};

use crate::coldplug::Coldplug;
use crate::console;
use crate::devices::BlockDev;
use crate::error::{Error, IoContext, Result};
use crate::mounts;

/// The filesystem of each block device, read once per device and size (a device whose read
/// fails, such as a drive without a medium, is read again on the next poll).
#[derive(Default)]
pub struct Labels {
    seen: HashMap<String, (u64, Option<FsId>)>,
}

/// The filesystem that `oa.root=` named, on its device.
#[derive(Debug, Clone)]
pub struct Medium {
    pub dev: BlockDev,
    pub id: FsId,
}

fn read_head(dev: &Path) -> std::io::Result<Vec<u8>> {
    let f = std::fs::File::open(dev)?;
    let mut head = Vec::with_capacity(HEAD_BYTES);
    f.take(HEAD_BYTES as u64).read_to_end(&mut head)?;
    Ok(head)
}

impl Labels {
    fn id(&mut self, d: &BlockDev) -> Option<FsId> {
        if let Some((size, id)) = self.seen.get(&d.name) {
            if *size == d.size_bytes {
                return id.clone();
            }
        }
        let head = read_head(&d.dev).ok()?;
        let id = fsid::read(&head);
        self.seen.insert(d.name.clone(), (d.size_bytes, id.clone()));
        id
    }

    /// The device whose filesystem `spec` (LABEL= or UUID=) names, if one has appeared. A
    /// partition whose whole disk matches too (an ISO written to a stick: the disk and its
    /// first partition both start with the ISO filesystem) counts as that disk; two disks
    /// that match are refused, naming both.
    pub fn find(&mut self, devs: &[BlockDev], spec: &RootSpec) -> Result<Option<Medium>> {
        let mut hits: Vec<Medium> = Vec::new();
        for d in devs {
            let Some(id) = self.id(d) else { continue };
            let matches = match spec {
                RootSpec::Label(l) => id.has_label(l),
                RootSpec::Uuid(u) => id.has_uuid(u),
                _ => false,
            };
            if matches {
                hits.push(Medium { dev: d.clone(), id });
            }
        }
        let names: Vec<String> = hits.iter().map(|m| m.dev.name.clone()).collect();
        hits.retain(|m| !m.dev.parent.as_ref().is_some_and(|p| names.contains(p)));
        match hits.len() {
            0 => Ok(None),
            1 => Ok(hits.pop()),
            _ => Err(Error::AmbiguousRoot {
                spec: cmdline::word(cmdline::ROOT, spec),
                devices: hits.iter().map(|m| m.dev.dev.display().to_string()).collect::<Vec<_>>().join(", "),
            }),
        }
    }

    /// The labelled filesystems seen, for the diagnostics of a root that was not found.
    pub fn describe(&self) -> String {
        let mut v: Vec<String> = self
            .seen
            .iter()
            .filter_map(|(name, (_, id))| {
                let id = id.as_ref()?;
                Some(format!("{name}: {} LABEL={:?} UUID={}", id.kind.fstype(), id.label, id.uuid))
            })
            .collect();
        v.sort();
        if v.is_empty() {
            "no filesystem with a label or UUID".into()
        } else {
            format!("filesystems: {}", v.join("; "))
        }
    }
}

/// Mount the medium read-only at `/run/oa/media` (loading its filesystem's modules first) and
/// return the path of the root image on it.
pub fn mount(m: &Medium, coldplug: &mut Coldplug) -> Result<PathBuf> {
    let why = format!("the {} filesystem of {}", m.id.kind.fstype(), m.dev.dev.display());
    for module in m.id.kind.modules() {
        // Not carried means built in, or missing: mount(2) says which (ENODEV, with a hint).
        coldplug.load_for(module, &why);
    }
    let target = Path::new(mp::MEDIA);
    mounts::ensure_dir(target)?;
    let flags = MsFlags::MS_RDONLY | MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC;
    mounts::mount(&m.dev.dev.display().to_string(), target, m.id.kind.fstype(), flags, None)?;
    let image = target.join(media_paths::ROOT_IMAGE);
    if !image.is_file() {
        let _ = nix::mount::umount(target);
        return Err(Error::NoImageOnMedium {
            device: m.dev.dev.display().to_string(),
            fstype: m.id.kind.fstype().into(),
            path: format!("/{}", media_paths::ROOT_IMAGE),
        });
    }
    Ok(image)
}

/// Unmount the medium after copy-to-RAM: nothing holds it any more (an optical drive's door
/// is unlocked when its last user closes it).
pub fn release(m: &Medium) -> Result<()> {
    nix::mount::umount(mp::MEDIA).map_err(|source| Error::Sys { op: "umount", path: mp::MEDIA.into(), source })?;
    console::info(&format!("{} released: it can be removed or ejected", m.dev.dev.display()));
    Ok(())
}

fn sys_attr(name: &str, attr: &str) -> Option<String> {
    std::fs::read_to_string(Path::new("/sys/class/block").join(name).join(attr)).ok().map(|s| s.trim().to_string())
}

/// Is the device (or its whole disk) removable or optical: a CD/DVD drive, a device the kernel
/// calls removable, or one on USB (sticks do not all set the removable bit)?
pub fn removable(dev: &BlockDev) -> bool {
    let disk = dev.parent.as_deref().unwrap_or(&dev.name);
    if disk.starts_with("sr") || sys_attr(disk, "removable").as_deref() == Some("1") {
        return true;
    }
    std::fs::canonicalize(Path::new("/sys/class/block").join(disk))
        .is_ok_and(|p| p.components().any(|c| c.as_os_str().to_string_lossy().starts_with("usb")))
}

/// The field `key` (`MemTotal`, `MemAvailable`) of /proc/meminfo, in bytes.
pub fn meminfo(key: &str) -> Option<u64> {
    let t = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = t.lines().find(|l| l.strip_prefix(key).is_some_and(|r| r.starts_with(':')))?;
    line.split_whitespace().nth(1)?.parse::<u64>().ok().map(|kib| kib * 1024)
}

/// Whether to copy an image of `len` bytes into RAM, and why (for the console).
pub fn decide(mode: CopyToRam, factor: u32, len: u64, dev: Option<&BlockDev>, mem: Option<u64>) -> (bool, String) {
    match mode {
        CopyToRam::No => (false, "copytoram=no".into()),
        CopyToRam::Yes => (true, "copytoram=yes".into()),
        CopyToRam::Auto => {
            let Some(dev) = dev else { return (false, "auto: the image is not on a block device".into()) };
            if !removable(dev) {
                return (false, format!("auto: {} is not removable", dev.name));
            }
            let need = len.saturating_mul(u64::from(factor));
            match mem {
                Some(m) if m >= need => {
                    (true, format!("auto: {} is removable, RAM {} MiB >= {factor} x image", dev.name, m >> 20))
                }
                Some(m) => (false, format!("auto: RAM {} MiB < {factor} x image {} MiB", m >> 20, len >> 20)),
                None => (false, "auto: RAM size unknown".into()),
            }
        }
    }
}

/// Copy the root image into a tmpfs at `/run/oa/ram`, hashing it on the way; with `want`, the
/// digest must match (else the copy is removed). `parts` (file or device, bytes) are read one
/// after the other into the one RAM image: the root image, or with a verity hash tree on a
/// partition of its own the data and then the tree (so the copy has the layout of an image
/// with the tree appended). Returns the copy and its sha256. Progress lines every 10% for
/// images of 64 MiB and more.
pub fn copy_to_ram(parts: &[(&Path, u64)], want: Option<&str>) -> Result<(PathBuf, String)> {
    let len: u64 = parts.iter().map(|(_, l)| l).sum();
    let src = parts.first().map(|(p, _)| *p).unwrap_or(Path::new("/"));
    let avail = meminfo("MemAvailable");
    // Keep room for the system itself (the overlay's tmpfs upper layer, services).
    if let Some(a) = avail {
        if a < len.saturating_add(64 << 20) {
            return Err(Error::CopyToRam {
                why: format!("the image is {} MiB and only {} MiB of RAM are available", len >> 20, a >> 20),
            });
        }
    }
    let dir = Path::new(mp::RAM);
    mounts::ensure_dir(dir)?;
    let size = len.div_ceil(1 << 20) + 1;
    let opts = format!("size={size}m,mode=0700");
    mounts::mount("tmpfs", dir, "tmpfs", MsFlags::MS_NOSUID | MsFlags::MS_NODEV, Some(&opts))?;
    let dst = dir.join("rootfs.squashfs");
    let result = copy_hashed(parts, &dst, len);
    let fail = |e: Error| {
        let _ = std::fs::remove_file(&dst);
        let _ = nix::mount::umount(dir);
        e
    };
    let got = result.map_err(fail)?;
    if let Some(w) = want {
        if got != w {
            return Err(fail(Error::HashMismatch {
                device: format!("{} (copied to RAM)", src.display()),
                expected: w.to_string(),
                actual: got,
            }));
        }
    }
    Ok((dst, got))
}

fn copy_hashed(parts: &[(&Path, u64)], dst: &Path, len: u64) -> Result<String> {
    let t = Instant::now();
    let mut to = std::fs::OpenOptions::new().write(true).create_new(true).open(dst).ctx("create", dst)?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let (mut done, mut shown) = (0u64, 0u64);
    let loud = len >= 64 << 20;
    let (mut part, mut part_done) = (0usize, 0u64);
    let mut from: Option<std::fs::File> = None;
    while done < len {
        let (src, part_len) = parts[part];
        if part_done == part_len {
            (part, part_done, from) = (part + 1, 0, None);
            continue;
        }
        let f = match &mut from {
            Some(f) => f,
            None => from.insert(std::fs::File::open(src).ctx("open", src)?),
        };
        let want = (part_len - part_done).min(buf.len() as u64) as usize;
        let n = f.read(&mut buf[..want]).ctx("read", src)?;
        if n == 0 {
            return Err(Error::NotSquashfs {
                device: src.display().to_string(),
                why: format!("ended after {part_done} of {part_len} bytes while copying to RAM"),
            });
        }
        part_done += n as u64;
        h.update(&buf[..n]);
        to.write_all(&buf[..n]).ctx("write", dst)?;
        done += n as u64;
        let pct = done * 100 / len;
        if loud && pct >= shown + 10 {
            shown = pct - pct % 10;
            console::info(&format!(
                "copytoram: {} of {} MiB ({pct}%) in {:.1} s",
                done >> 20,
                len >> 20,
                t.elapsed().as_secs_f64()
            ));
        }
    }
    Ok(crate::rootimage::hex(&h.finalize()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dev(name: &str) -> BlockDev {
        BlockDev {
            name: name.into(),
            dev: PathBuf::from("/dev").join(name),
            partition: None,
            parent: None,
            size_bytes: 1,
        }
    }

    /// A file that starts like an ext4 filesystem labelled `label`.
    fn ext4_file(dir: &Path, name: &str, label: &str) -> BlockDev {
        let mut h = vec![0u8; 2048];
        h[0x438..0x43a].copy_from_slice(&[0x53, 0xef]);
        h[1024 + 104] = name.len() as u8;
        h[1024 + 120..1024 + 120 + label.len()].copy_from_slice(label.as_bytes());
        let path = dir.join(name);
        std::fs::write(&path, &h).unwrap();
        BlockDev { name: name.into(), dev: path, partition: None, parent: None, size_bytes: 2048 }
    }

    #[test]
    fn a_disk_and_its_partition_are_one_medium_two_disks_are_refused() {
        let d = std::env::temp_dir().join(format!("oa-media-labels-{}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        let sda = ext4_file(&d, "sda", "OA_X");
        let mut sda1 = ext4_file(&d, "sda1", "OA_X");
        sda1.parent = Some("sda".into());
        sda1.partition = Some(1);
        let other = ext4_file(&d, "vdb", "other");
        let want = RootSpec::Label("OA_X".into());
        let mut l = Labels::default();
        let m = l.find(&[sda.clone(), sda1.clone(), other.clone()], &want).unwrap().unwrap();
        assert_eq!(m.dev.name, "sda", "the whole disk, not its first partition");
        assert!(l.find(std::slice::from_ref(&other), &want).unwrap().is_none());
        assert!(l.describe().contains("vdb: ext4 LABEL=\"other\""), "{}", l.describe());
        let sdb = ext4_file(&d, "sdb", "OA_X");
        let e = Labels::default().find(&[sda, sdb, other], &want).unwrap_err().to_string();
        assert!(e.contains("more than one device") && e.contains("sda") && e.contains("sdb"), "{e}");
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn decide_follows_mode_media_and_ram() {
        let sr0 = dev("sr0");
        let (yes, why) = decide(CopyToRam::Auto, 4, 100 << 20, Some(&sr0), Some(512 << 20));
        assert!(yes, "{why}");
        let (yes, why) = decide(CopyToRam::Auto, 4, 200 << 20, Some(&sr0), Some(512 << 20));
        assert!(!yes && why.contains("< 4 x image"), "{why}");
        assert!(!decide(CopyToRam::Auto, 4, 1, None, Some(1 << 30)).0, "http roots are in RAM already");
        assert!(!decide(CopyToRam::No, 4, 1, Some(&sr0), Some(1 << 30)).0);
        assert!(decide(CopyToRam::Yes, 4, 1 << 40, None, Some(1)).0, "yes is yes (copy_to_ram then checks RAM)");
    }

    #[test]
    fn copy_hashes_exactly_len_bytes() {
        let d = std::env::temp_dir().join(format!("oa-media-test-{}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        let src = d.join("src");
        std::fs::write(&src, vec![7u8; 3 << 20]).unwrap();
        let dst = d.join("dst");
        let got = copy_hashed(&[(&src, (2 << 20) + 5)], &dst, (2 << 20) + 5).unwrap();
        assert_eq!(got, crate::rootimage::hex(&Sha256::digest(vec![7u8; (2 << 20) + 5])));
        assert_eq!(std::fs::metadata(&dst).unwrap().len(), (2 << 20) + 5);
        let short = copy_hashed(&[(&src, 4 << 20)], &d.join("dst2"), 4 << 20).unwrap_err();
        assert!(short.to_string().contains("ended after"), "{short}");
        // Two parts, one after the other (data, then a verity tree from its own partition).
        let tree = d.join("tree");
        std::fs::write(&tree, vec![9u8; 10_000]).unwrap();
        let both = d.join("both");
        copy_hashed(&[(&src, 4096), (&tree, 8192)], &both, 4096 + 8192).unwrap();
        let mut want = vec![7u8; 4096];
        want.extend(vec![9u8; 8192]);
        assert_eq!(std::fs::read(&both).unwrap(), want);
        std::fs::remove_dir_all(&d).unwrap();
    }
}
