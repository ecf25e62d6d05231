//! The device side: block device facts (sysfs, the sector size ioctl, mounts, swap, holders)
//! and what is on it now (oa-disk's signature detector). Refusals are made here, before
//! anything is opened for writing.

use super::{FlashError, Result};
use crate::image::bmap;
use oa_disk::mountinfo::{self, MountInfo};
use oa_disk::signature::{self, Signature};
use oa_disk::SectorSize;
use std::fs::File;
use std::io::Read;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TargetKind {
    WholeDisk,
    File,
}

/// The device side of the plan: what it is and what is on it.
#[derive(Debug, Clone)]
pub struct Target {
    pub path: std::path::PathBuf,
    pub kind: TargetKind,
    /// Its size; for a file that does not exist yet, 0.
    pub size: u64,
    pub exists: bool,
    /// `sdb` for /dev/sdb.
    pub name: Option<String>,
    pub model: Option<String>,
    pub removable: bool,
    /// The logical sector size the kernel reports (BLKSSZGET), for a block device.
    pub sector_size: Option<SectorSize>,
    /// What identifies the block device (number, size, serial or backing file), compared again
    /// on the descriptor that is written through.
    pub identity: Option<Identity>,
    pub partitions: Vec<String>,
    /// Signatures found at its start ("GPT partition table", "FAT32 filesystem", ...).
    pub contents: Vec<String>,
    /// The checks that passed, for the plan.
    pub checks: Vec<String>,
}

impl Target {
    pub fn describe(&self) -> String {
        let mut s = format!("{}: ", self.path.display());
        if !self.exists {
            return s + "new file";
        }
        s.push_str(&bmap::human(self.size));
        if let Some(m) = &self.model {
            s.push_str(&format!(", {m}"));
        }
        if self.removable {
            s.push_str(" (removable)");
        }
        if self.kind == TargetKind::File {
            s.push_str(", regular file");
        }
        if !self.partitions.is_empty() {
            s.push_str(&format!(", partitions {}", self.partitions.join(" ")));
        }
        s.push_str(&format!(
            "; holds: {}",
            if self.contents.is_empty() { "no known signature".to_string() } else { self.contents.join(", ") }
        ));
        s
    }

    fn file(device: &Path, size: u64, exists: bool, contents: Vec<String>, checks: Vec<String>) -> Target {
        Target {
            path: device.to_path_buf(),
            kind: TargetKind::File,
            size,
            exists,
            name: None,
            model: None,
            removable: false,
            sector_size: None,
            identity: None,
            partitions: vec![],
            contents,
            checks,
        }
    }
}

fn read_trim(p: &Path) -> Option<String> {
    std::fs::read_to_string(p).ok().map(|s| s.trim().to_string())
}

/// Inspect `device`: refuse what must not be written, describe the rest.
pub fn inspect(device: &Path, allow_file: bool, image: &Path) -> Result<Target> {
    let md = match std::fs::metadata(device) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            if allow_file && !device.to_string_lossy().starts_with("/dev/") {
                let checks = vec!["a new regular file (--allow-file), created with the image's size".into()];
                return Ok(Target::file(device, 0, false, vec![], checks));
            }
            return Err(FlashError::NotFound { device: device.to_path_buf() });
        }
        Err(e) => return Err(FlashError::Io { action: "inspecting", path: device.to_path_buf(), source: e }),
    };
    if let Ok(im) = std::fs::metadata(image) {
        if im.dev() == md.dev() && im.ino() == md.ino() {
            return Err(FlashError::SameFile { device: device.to_path_buf() });
        }
    }
    let ft = md.file_type();
    if ft.is_file() {
        if !allow_file {
            return Err(FlashError::IsFile { device: device.to_path_buf() });
        }
        let uses = file_uses(device);
        if !uses.is_empty() {
            return Err(FlashError::Busy { device: device.to_path_buf(), uses });
        }
        let contents = read_head(device).map(|h| describe(&h)).unwrap_or_default();
        let checks = vec![
            "a regular file (--allow-file), not the image itself".into(),
            "not the backing file of a loop device".into(),
        ];
        return Ok(Target::file(device, md.len(), true, contents, checks));
    }
    if !ft.is_block_device() {
        let kind = if ft.is_dir() {
            "a folder"
        } else if ft.is_char_device() {
            "a character device"
        } else {
            "not a regular file"
        };
        return Err(FlashError::NotABlockDevice { device: device.to_path_buf(), kind: kind.into() });
    }
    let rdev = md.rdev();
    let (major, minor) = (libc::major(rdev), libc::minor(rdev));
    let sys = std::fs::canonicalize(format!("/sys/dev/block/{major}:{minor}")).map_err(|e| FlashError::Io {
        action: "finding in /sys/dev/block",
        path: device.to_path_buf(),
        source: e,
    })?;
    let name = sys.file_name().map(|n| n.to_string_lossy().to_string()).unwrap_or_default();
    if let Some(number) = read_trim(&sys.join("partition")).and_then(|p| p.parse().ok()) {
        let disk = sys
            .parent()
            .and_then(|p| p.file_name())
            .map(|n| n.to_string_lossy().to_string())
            .unwrap_or_else(|| "?".into());
        return Err(FlashError::Partition { device: device.to_path_buf(), disk, number });
    }
    if read_trim(&sys.join("ro")).as_deref() == Some("1") {
        return Err(FlashError::ReadOnly { device: device.to_path_buf() });
    }
    let size = read_trim(&sys.join("size")).and_then(|s| s.parse::<u64>().ok()).unwrap_or(0) * 512;
    // The disk and its partitions, with their device numbers.
    let mut devs = vec![(name.clone(), format!("{major}:{minor}"))];
    let mut partitions = Vec::new();
    if let Ok(rd) = std::fs::read_dir(&sys) {
        let mut subs: Vec<_> = rd.flatten().filter(|e| e.path().join("partition").is_file()).collect();
        subs.sort_by_key(|e| e.file_name());
        for e in subs {
            let n = e.file_name().to_string_lossy().to_string();
            devs.push((n.clone(), read_trim(&e.path().join("dev")).unwrap_or_default()));
            partitions.push(n);
        }
    }
    let mounts = mountinfo::read().unwrap_or_default();
    let swaps = std::fs::read_to_string("/proc/swaps").unwrap_or_default();
    let root_dev = std::fs::metadata("/").map(|m| format!("{}:{}", libc::major(m.dev()), libc::minor(m.dev()))).ok();
    let uses = busy_uses(&devs, &mounts, &swaps, root_dev.as_deref(), &|n| holders(n));
    if !uses.is_empty() {
        return Err(FlashError::Busy { device: device.to_path_buf(), uses });
    }
    let model = [read_trim(&sys.join("device/vendor")), read_trim(&sys.join("device/model"))]
        .into_iter()
        .flatten()
        .filter(|s| !s.is_empty())
        .collect::<Vec<_>>()
        .join(" ");
    let model = if model.is_empty() {
        read_trim(&sys.join("loop/backing_file")).map(|f| format!("loop device on {f}"))
    } else {
        Some(model)
    };
    let removable = read_trim(&sys.join("removable")).as_deref() == Some("1");
    let contents = read_head(device).map(|h| describe(&h)).unwrap_or_default();
    let checks = vec![
        format!("/dev/{name} is a whole disk, not a partition, and not read-only"),
        format!(
            "neither it nor its partitions ({}) are mounted, used as swap or held (device-mapper, RAID), and it does not hold the running system",
            if partitions.is_empty() { "none".to_string() } else { partitions.join(" ") }
        ),
    ];
    Ok(Target {
        path: device.to_path_buf(),
        kind: TargetKind::WholeDisk,
        size,
        exists: true,
        name: Some(name),
        model,
        removable,
        sector_size: File::open(device).ok().and_then(|f| logical_sector_size(&f)),
        identity: Some(Identity::of_sysfs(major, minor, size)),
        partitions,
        contents,
        checks,
    })
}

nix::ioctl_read_bad!(blksszget, 0x1268, libc::c_int);
nix::ioctl_read!(blkgetsize64, 0x12, 114, u64);

/// The logical sector size of the open block device `f` (BLKSSZGET), `None` when it cannot
/// be asked.
pub fn logical_sector_size(f: &File) -> Option<SectorSize> {
    use std::os::fd::AsRawFd;
    let mut n: libc::c_int = 0;
    // SAFETY: BLKSSZGET writes one int through the pointer, which points at `n`; the
    // descriptor is a block device `f` keeps open for the call.
    unsafe { blksszget(f.as_raw_fd(), &mut n) }.ok()?;
    SectorSize::new(u32::try_from(n).ok()?)
}

/// The size in bytes of the open block device `f` (BLKGETSIZE64).
fn device_size(f: &File) -> std::io::Result<u64> {
    use std::os::fd::AsRawFd;
    let mut n: u64 = 0;
    // SAFETY: BLKGETSIZE64 writes one u64 through the pointer, which points at `n`; the
    // descriptor is a block device `f` keeps open for the call.
    unsafe { blkgetsize64(f.as_raw_fd(), &mut n) }.map_err(std::io::Error::from)?;
    Ok(n)
}

/// What identifies a block device: its number, its size and what sysfs says it is (serial,
/// WWID, or a loop device's backing file). Taken when planning, taken again on the open
/// descriptor before writing: a different stick in the same slot, a re-attached loop device
/// or a re-enumerated disk differs in one of them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub major: u32,
    pub minor: u32,
    pub size: u64,
    /// `serial ...`, `wwid ...` or `backing file ...`, when sysfs has one.
    pub tag: Option<String>,
}

impl Identity {
    fn of_sysfs(major: u32, minor: u32, size: u64) -> Identity {
        let sys = Path::new("/sys/dev/block").join(format!("{major}:{minor}"));
        let tag = [
            ("serial", sys.join("device/serial")),
            ("wwid", sys.join("device/wwid")),
            ("wwid", sys.join("wwid")),
            ("backing file", sys.join("loop/backing_file")),
        ]
        .into_iter()
        .find_map(|(what, p)| read_trim(&p).filter(|v| !v.is_empty()).map(|v| format!("{what} {v}")));
        Identity { major, minor, size, tag }
    }

    /// The identity of the block device open as `f` (fstat, BLKGETSIZE64, sysfs).
    pub fn of_open(f: &File) -> std::io::Result<Identity> {
        let md = f.metadata()?;
        let rdev = md.rdev();
        Ok(Identity::of_sysfs(libc::major(rdev), libc::minor(rdev), device_size(f)?))
    }

    /// What differs from `now`, for the refusal ("device number 7:0 -> 7:1", ...). Pure.
    pub fn changes(&self, now: &Identity) -> Vec<String> {
        let mut c = Vec::new();
        if (self.major, self.minor) != (now.major, now.minor) {
            c.push(format!("device number {}:{} -> {}:{}", self.major, self.minor, now.major, now.minor));
        }
        if self.size != now.size {
            c.push(format!("size {} -> {} bytes", self.size, now.size));
        }
        if self.tag != now.tag {
            let s = |t: &Option<String>| t.clone().unwrap_or_else(|| "none".into());
            c.push(format!("{} -> {}", s(&self.tag), s(&now.tag)));
        }
        c
    }
}

/// Device-mapper, RAID or other holders of a block device (`/sys/class/block/<n>/holders`),
/// with dm names where there are some.
fn holders(name: &str) -> Vec<String> {
    let dir = Path::new("/sys/class/block").join(name).join("holders");
    let mut out = Vec::new();
    if let Ok(rd) = std::fs::read_dir(&dir) {
        for e in rd.flatten() {
            let h = e.file_name().to_string_lossy().to_string();
            match read_trim(&Path::new("/sys/class/block").join(&h).join("dm/name")) {
                Some(dm) => out.push(format!("{h} ({dm})")),
                None => out.push(h),
            }
        }
    }
    out.sort();
    out
}

/// Why `devs` (name, "major:minor") may not be written: mounts, swap, holders, the running
/// system. Pure: the tables are passed in.
pub fn busy_uses(
    devs: &[(String, String)],
    mounts: &[MountInfo],
    swaps: &str,
    root_dev: Option<&str>,
    holders: &dyn Fn(&str) -> Vec<String>,
) -> Vec<String> {
    let mut uses = Vec::new();
    let is_dev = |source: &str, dev_path: &str| {
        source == dev_path
            || (source.starts_with('/') && std::fs::canonicalize(source).is_ok_and(|p| p == Path::new(dev_path)))
    };
    for (name, majmin) in devs {
        let dev_path = format!("/dev/{name}");
        for m in mounts {
            if m.dev() == *majmin || is_dev(&m.source, &dev_path) {
                let u = format!("{dev_path} is mounted at {}", m.mount_point.display());
                if !uses.contains(&u) {
                    uses.push(u);
                }
            }
        }
        for line in swaps.lines().skip(1) {
            if let Some(src) = line.split_whitespace().next() {
                if is_dev(src, &dev_path) {
                    uses.push(format!("{dev_path} is used as swap"));
                }
            }
        }
        let h = holders(name);
        if !h.is_empty() {
            uses.push(format!("{dev_path} is held by {} (device-mapper, LUKS, LVM or RAID)", h.join(", ")));
        }
        if root_dev == Some(majmin.as_str()) {
            uses.push(format!("{dev_path} holds the running system (/)"));
        }
    }
    uses
}

/// A regular file in use as a loop device's backing file.
fn file_uses(file: &Path) -> Vec<String> {
    let Ok(canon) = std::fs::canonicalize(file) else { return vec![] };
    let mut out = Vec::new();
    if let Ok(rd) = std::fs::read_dir("/sys/class/block") {
        for e in rd.flatten() {
            if let Some(b) = read_trim(&e.path().join("loop/backing_file")) {
                if Path::new(&b) == canon {
                    out.push(format!(
                        "it is attached to /dev/{} (losetup -d it first)",
                        e.file_name().to_string_lossy()
                    ));
                }
            }
        }
    }
    out
}

/// The first [`signature::HEAD_BYTES`] of `p` (fewer when it is smaller).
fn read_head(p: &Path) -> Option<Vec<u8>> {
    let mut f = File::open(p).ok()?;
    let mut buf = vec![0u8; signature::HEAD_BYTES];
    let mut n = 0;
    while n < buf.len() {
        match f.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(_) => break,
        }
    }
    buf.truncate(n);
    Some(buf)
}

/// What the first bytes of a disk say it holds (oa-disk's signatures, by name). Pure.
pub fn describe(h: &[u8]) -> Vec<String> {
    if h.is_empty() {
        return vec![];
    }
    let found = signature::detect(h, &[]);
    if found.is_empty() {
        return vec![format!("zeros (first {} KiB blank)", h.len() / 1024)];
    }
    found.iter().map(Signature::name).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_are_named() {
        let mut gpt = vec![0u8; 70 * 1024];
        gpt[510] = 0x55;
        gpt[511] = 0xaa;
        gpt[512..520].copy_from_slice(b"EFI PART");
        assert_eq!(describe(&gpt), vec!["GPT partition table"]);
        let mut mbr = vec![0u8; 4096];
        mbr[510] = 0x55;
        mbr[511] = 0xaa;
        mbr[446 + 4] = 0x0c;
        mbr[446 + 16 + 4] = 0x83;
        assert_eq!(describe(&mbr), vec!["MBR partition table (2 partition(s))"]);
        let mut fat = vec![0u8; 4096];
        fat[510] = 0x55;
        fat[511] = 0xaa;
        fat[82..87].copy_from_slice(b"FAT32");
        assert_eq!(describe(&fat), vec!["FAT32 filesystem"]);
        let mut ext = vec![0u8; 4096];
        ext[0x438] = 0x53;
        ext[0x439] = 0xef;
        assert_eq!(describe(&ext), vec!["ext2/3/4 filesystem"]);
        assert_eq!(describe(b"LUKS\xba\xbe\0\x02"), vec!["LUKS2 encrypted volume"]);
        assert!(describe(&[0u8; 8192])[0].starts_with("zeros"));
        assert_eq!(describe(&[7u8; 100]), vec!["data of unknown kind"]);
        assert!(describe(&[]).is_empty());
    }

    #[test]
    fn busy_finds_mounts_swap_holders_and_the_root() {
        let devs = vec![
            ("sdb".to_string(), "8:16".to_string()),
            ("sdb1".to_string(), "8:17".to_string()),
            ("sdb2".to_string(), "8:18".to_string()),
        ];
        let mounts = mountinfo::parse(
            "22 1 0:21 / /proc rw - proc proc rw\n\
             40 1 8:17 / /media/my\\040stick rw,relatime - vfat /dev/sdb1 rw\n\
             41 1 0:50 / /data rw - btrfs /dev/sdb2 rw\n",
        )
        .unwrap();
        let swaps = "Filename Type Size Used Priority\n/dev/sdb2 partition 1024 0 -2\n";
        let holders = |n: &str| if n == "sdb" { vec!["dm-0 (luks-1)".to_string()] } else { vec![] };
        let u = busy_uses(&devs, &mounts, swaps, Some("8:18"), &holders);
        assert_eq!(
            u,
            vec![
                "/dev/sdb is held by dm-0 (luks-1) (device-mapper, LUKS, LVM or RAID)",
                "/dev/sdb1 is mounted at /media/my stick",
                "/dev/sdb2 is mounted at /data",
                "/dev/sdb2 is used as swap",
                "/dev/sdb2 holds the running system (/)",
            ]
        );
        let proc_only = mountinfo::parse("22 1 0:21 / /proc rw - proc proc rw\n").unwrap();
        assert!(busy_uses(&devs, &proc_only, "Filename\n", Some("0:21"), &|_| vec![]).is_empty());
    }

    #[test]
    fn identity_changes_are_named() {
        let a = Identity { major: 7, minor: 0, size: 16 << 20, tag: Some("backing file /a".into()) };
        assert!(a.changes(&a.clone()).is_empty());
        let b = Identity { major: 7, minor: 1, size: 32 << 20, tag: Some("backing file /b".into()) };
        assert_eq!(
            a.changes(&b),
            vec!["device number 7:0 -> 7:1", "size 16777216 -> 33554432 bytes", "backing file /a -> backing file /b"]
        );
    }
}
