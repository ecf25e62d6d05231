//! `oa flash IMAGE DEVICE`: write a disk image to a USB stick or disk, the way
//! coreos-installer does it.
//!
//! 1. Plan, touching nothing: resolve the image (a file, or an output folder's `disk.img`),
//!    its block map and its expected sha256 (from the manifest beside it); inspect the device
//!    (a whole disk, not a partition; not read-only; nothing on it mounted, used as swap or
//!    held by device-mapper/RAID; not the disk of the running system; at least as large as
//!    the image) and read what is on it now.
//! 2. Ask: show the image and the device (size, model, partitions, signatures) and wait for
//!    "yes", unless `--yes`.
//! 3. Write the mapped ranges (all of the image without a bmap) through small adapters that
//!    hash and meter the stream, with a progress line; fsync; drop the device's cached pages;
//!    read the ranges back and compare their sha256 with the bmap's (or the whole image's).
//! 4. On any failure once writing has started (an I/O error, Ctrl-C, a checksum mismatch) the
//!    first MiB and the last MiB of the image's extent and of the device are overwritten with
//!    zeros, so that no half-written partition table is left for a firmware to boot; the error
//!    says so.
//!
//! A regular file stands in for a disk only with `--allow-file` (tests, VM images): an existing
//! file keeps its size like a disk; a missing one is created with the image's size.

use crate::image::bmap::{self, Bmap};
use oa_contract::manifest::{self, artifact, Manifest};
use sha2::{Digest, Sha256};
use std::fs::{File, OpenOptions};
use std::io::{IsTerminal, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

const MIB: u64 = 1 << 20;

#[derive(Debug, thiserror::Error)]
pub enum FlashError {
    #[error("image {}: {reason}", path.display())]
    Image { path: PathBuf, reason: String },

    #[error("block map {}: {reason}", path.display())]
    Bmap { path: PathBuf, reason: String },

    #[error("{}: no such device or file; give the whole disk, e.g. /dev/sdb (`lsblk` lists them)", device.display())]
    NotFound { device: PathBuf },

    #[error("{} is {kind}, not a block device; give the whole disk, e.g. /dev/sdb", device.display())]
    NotABlockDevice { device: PathBuf, kind: String },

    #[error("{} is a regular file; pass --allow-file to write the image into a file", device.display())]
    IsFile { device: PathBuf },

    #[error("{} is partition {number} of /dev/{disk}; give the whole disk /dev/{disk} (the image has its own partition table)", device.display())]
    Partition { device: PathBuf, disk: String, number: u32 },

    #[error("{} is read-only (write-protect switch, or `blockdev --setro`)", device.display())]
    ReadOnly { device: PathBuf },

    #[error("{} is in use: {}; unmount it (or swapoff, or close what holds it) and try again", device.display(), uses.join("; "))]
    Busy { device: PathBuf, uses: Vec<String> },

    #[error("{} and the image are the same file", device.display())]
    SameFile { device: PathBuf },

    #[error("the image ({}, {image_size} bytes) is larger than {} ({}, {device_size} bytes); use a larger device", bmap::human(*image_size), device.display(), bmap::human(*device_size))]
    TooSmall { device: PathBuf, image_size: u64, device_size: u64 },

    #[error("not confirmed: {0}; nothing was written")]
    NotConfirmed(String),

    #[error("writing {}: {reason}; {}", device.display(), wiped_note(wiped))]
    Failed { device: PathBuf, reason: String, wiped: Result<(), String> },

    #[error("{action} {}: {source}", path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

fn wiped_note(w: &Result<(), String>) -> String {
    match w {
        Ok(()) => {
            "the first and last MiB were overwritten with zeros so that nothing half-written boots; flash again".into()
        }
        Err(e) => format!("wiping the start and end also failed ({e}): do not boot from this device, flash it again"),
    }
}

type Result<T, E = FlashError> = std::result::Result<T, E>;

fn io_ctx<T>(r: std::io::Result<T>, action: &'static str, path: &Path) -> Result<T> {
    r.map_err(|source| FlashError::Io { action, path: path.to_path_buf(), source })
}

/// What the user asked for.
#[derive(Debug, Clone)]
pub struct Options {
    /// A disk image, or an output folder of `oa build` (its `disk.img`).
    pub image: PathBuf,
    pub device: PathBuf,
    /// Do not ask for confirmation.
    pub yes: bool,
    /// The block map; default: `<image>.bmap` when it exists.
    pub bmap: Option<PathBuf>,
    /// Write the whole image even when a block map exists.
    pub no_bmap: bool,
    /// Accept a regular file as the device.
    pub allow_file: bool,
    /// Progress line and messages on stderr.
    pub progress: bool,
}

/// The image side of the plan.
#[derive(Debug, Clone)]
pub struct Source {
    pub path: PathBuf,
    pub size: u64,
    pub bmap: Option<(PathBuf, Bmap)>,
    /// From the manifest beside the image, when it lists the image.
    pub sha256: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TargetKind {
    WholeDisk,
    File,
}

/// The device side of the plan: what it is and what is on it.
#[derive(Debug, Clone)]
pub struct Target {
    pub path: PathBuf,
    pub kind: TargetKind,
    /// Its size; for a file that does not exist yet, 0.
    pub size: u64,
    pub exists: bool,
    /// `sdb` for /dev/sdb.
    pub name: Option<String>,
    pub model: Option<String>,
    pub removable: bool,
    pub partitions: Vec<String>,
    /// Signatures found at its start ("GPT partition table", "FAT32 filesystem", ...).
    pub contents: Vec<String>,
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
}

/// How a flash went.
#[derive(Debug, Clone)]
pub struct Report {
    pub written: u64,
    pub used_bmap: bool,
    pub duration: Duration,
}

// ---------------------------------------------------------------------------------------------
// Planning: the image.

/// Resolve the image, its block map and its expected digest.
pub fn source(opts: &Options) -> Result<Source> {
    let (path, folder) = if opts.image.is_dir() {
        (opts.image.join(artifact::DISK_IMAGE), Some(opts.image.clone()))
    } else {
        (opts.image.clone(), opts.image.parent().map(Path::to_path_buf))
    };
    let md = std::fs::metadata(&path).map_err(|e| FlashError::Image {
        path: path.clone(),
        reason: if opts.image.is_dir() {
            format!("not readable ({e}); build it with `[image] disk = true` in the profile")
        } else {
            format!("not readable ({e})")
        },
    })?;
    if !md.is_file() {
        return Err(FlashError::Image { path, reason: "not a regular file".into() });
    }
    let mut head = [0u8; 4];
    let mut f = io_ctx(File::open(&path), "opening", &path)?;
    let _ = f.read(&mut head);
    if &head == b"QFI\xfb" {
        return Err(FlashError::Image { path, reason: "is a qcow2 image (for VMs); flash the raw disk.img".into() });
    }
    // The manifest beside it names its digest (and the bmap's).
    let m: Option<Manifest> = folder
        .as_ref()
        .and_then(|d| std::fs::read(d.join(manifest::FILE_NAME)).ok())
        .and_then(|b| serde_json::from_slice(&b).ok());
    let file_name = path.file_name().map(|n| n.to_string_lossy().to_string()).unwrap_or_default();
    let listed = |name: &str| {
        m.as_ref().and_then(|m| m.artifacts.iter().find(|a| a.path == name)).map(|a| (a.size, a.sha256.clone()))
    };
    let sha256 = match listed(&file_name) {
        Some((size, _)) if size != md.len() => {
            return Err(FlashError::Image {
                path,
                reason: format!(
                    "is {} bytes but its manifest says {size}: the file was changed or truncated",
                    md.len()
                ),
            })
        }
        Some((_, d)) => Some(d),
        None => None,
    };
    let bmap_path = if opts.no_bmap {
        None
    } else if let Some(b) = &opts.bmap {
        Some(b.clone())
    } else {
        let beside = PathBuf::from(format!("{}.bmap", path.display()));
        let stem = path.with_extension("bmap");
        [beside, stem].into_iter().find(|p| p.is_file())
    };
    let bmap = match bmap_path {
        None => None,
        Some(bp) => {
            let text = std::fs::read_to_string(&bp)
                .map_err(|e| FlashError::Bmap { path: bp.clone(), reason: format!("not readable ({e})") })?;
            let b = Bmap::parse(&text).map_err(|reason| FlashError::Bmap { path: bp.clone(), reason })?;
            if b.image_size != md.len() {
                return Err(FlashError::Bmap {
                    path: bp,
                    reason: format!(
                        "is for an image of {} bytes, but {} has {}; give the matching bmap or --no-bmap",
                        b.image_size,
                        path.display(),
                        md.len()
                    ),
                });
            }
            let bname = bp.file_name().map(|n| n.to_string_lossy().to_string()).unwrap_or_default();
            if let (Some((_, want)), true) = (listed(&bname), bp.parent() == path.parent()) {
                let got = hex::encode(Sha256::digest(text.as_bytes()));
                if got != want {
                    return Err(FlashError::Bmap {
                        path: bp,
                        reason: format!("its sha256 {got} is not the manifest's {want}"),
                    });
                }
            }
            Some((bp, b))
        }
    };
    Ok(Source { path, size: md.len(), bmap, sha256 })
}

// ---------------------------------------------------------------------------------------------
// Planning: the device.

fn read_trim(p: &Path) -> Option<String> {
    std::fs::read_to_string(p).ok().map(|s| s.trim().to_string())
}

/// Inspect `device`: refuse what must not be written, describe the rest.
pub fn inspect(device: &Path, allow_file: bool, image: &Path) -> Result<Target> {
    let md = match std::fs::metadata(device) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            if allow_file && !device.to_string_lossy().starts_with("/dev/") {
                return Ok(Target {
                    path: device.to_path_buf(),
                    kind: TargetKind::File,
                    size: 0,
                    exists: false,
                    name: None,
                    model: None,
                    removable: false,
                    partitions: vec![],
                    contents: vec![],
                });
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
        return Ok(Target {
            path: device.to_path_buf(),
            kind: TargetKind::File,
            size: md.len(),
            exists: true,
            name: None,
            model: None,
            removable: false,
            partitions: vec![],
            contents,
        });
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
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let swaps = std::fs::read_to_string("/proc/swaps").unwrap_or_default();
    let root_dev = std::fs::metadata("/").map(|m| format!("{}:{}", libc::major(m.dev()), libc::minor(m.dev()))).ok();
    let uses = busy_uses(&devs, &mountinfo, &swaps, root_dev.as_deref(), &|n| holders(n));
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
    Ok(Target {
        path: device.to_path_buf(),
        kind: TargetKind::WholeDisk,
        size,
        exists: true,
        name: Some(name),
        model,
        removable,
        partitions,
        contents,
    })
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
    mountinfo: &str,
    swaps: &str,
    root_dev: Option<&str>,
    holders: &dyn Fn(&str) -> Vec<String>,
) -> Vec<String> {
    let mut uses = Vec::new();
    for (name, majmin) in devs {
        let dev_path = format!("/dev/{name}");
        for line in mountinfo.lines() {
            let f: Vec<&str> = line.split_whitespace().collect();
            let Some(sep) = f.iter().position(|x| *x == "-") else { continue };
            let (mm, mountpoint, source) = (
                f.get(2).copied().unwrap_or(""),
                f.get(4).copied().unwrap_or("?"),
                f.get(sep + 2).copied().unwrap_or(""),
            );
            let source_is_dev = source == dev_path
                || (source.starts_with('/') && std::fs::canonicalize(source).is_ok_and(|p| p == Path::new(&dev_path)));
            if mm == majmin || source_is_dev {
                let u = format!("{dev_path} is mounted at {}", mountpoint.replace("\\040", " "));
                if !uses.contains(&u) {
                    uses.push(u);
                }
            }
        }
        for line in swaps.lines().skip(1) {
            if let Some(src) = line.split_whitespace().next() {
                if src == dev_path
                    || (src.starts_with('/') && std::fs::canonicalize(src).is_ok_and(|p| p == Path::new(&dev_path)))
                {
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

fn read_head(p: &Path) -> Option<Vec<u8>> {
    let mut f = File::open(p).ok()?;
    let mut buf = vec![0u8; 70 * 1024];
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

/// What the first bytes of a disk say it holds. Pure.
pub fn describe(h: &[u8]) -> Vec<String> {
    let at = |off: usize, magic: &[u8]| h.len() >= off + magic.len() && &h[off..off + magic.len()] == magic;
    let mut out = Vec::new();
    if h.is_empty() {
        return out;
    }
    if h.iter().all(|&b| b == 0) {
        out.push(format!("zeros (first {} KiB blank)", h.len() / 1024));
        return out;
    }
    if at(512, b"EFI PART") {
        out.push("GPT partition table".into());
    } else if at(510, &[0x55, 0xaa])
        && !at(54, b"FAT")
        && !at(82, b"FAT32")
        && !at(3, b"NTFS    ")
        && !at(3, b"EXFAT   ")
    {
        let parts = (0..4).filter(|i| h[446 + 16 * i + 4] != 0).count();
        if parts > 0 {
            out.push(format!("MBR partition table ({parts} partition(s))"));
        }
    }
    if at(0x47, b"CD001") || at(0x8001, b"CD001") {
        out.push("ISO 9660 filesystem".into());
    }
    if at(0, b"LUKS\xba\xbe") {
        out.push("LUKS encrypted volume".into());
    }
    if at(0, b"hsqs") {
        out.push("squashfs".into());
    }
    if at(0, b"XFSB") {
        out.push("XFS filesystem".into());
    }
    if at(0x438, &[0x53, 0xef]) {
        out.push("ext2/3/4 filesystem".into());
    }
    if at(0x10040, b"_BHRfS_M") {
        out.push("btrfs filesystem".into());
    }
    if at(4086, b"SWAPSPACE2") || at(4086, b"SWAP-SPACE") {
        out.push("Linux swap".into());
    }
    if at(82, b"FAT32") {
        out.push("FAT32 filesystem".into());
    } else if at(54, b"FAT1") {
        out.push("FAT12/16 filesystem".into());
    }
    if at(3, b"NTFS    ") {
        out.push("NTFS filesystem".into());
    }
    if at(3, b"EXFAT   ") {
        out.push("exFAT filesystem".into());
    }
    if out.is_empty() {
        out.push("data of unknown kind".into());
    }
    out
}

// ---------------------------------------------------------------------------------------------
// Streams: small adapters for hashing and metering (coreos-installer's io/ style).

/// Hashes what is read through it.
pub struct HashReader<R> {
    inner: R,
    hasher: Sha256,
}

impl<R: Read> HashReader<R> {
    pub fn new(inner: R) -> Self {
        HashReader { inner, hasher: Sha256::new() }
    }
    pub fn hex(self) -> String {
        hex::encode(self.hasher.finalize())
    }
}

impl<R: Read> Read for HashReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
}

/// Counts bytes through it for the progress line, and stops the stream when Ctrl-C was hit.
pub struct Metered<'a, T> {
    inner: T,
    meter: &'a mut Meter,
}

impl<'a, T> Metered<'a, T> {
    pub fn new(inner: T, meter: &'a mut Meter) -> Self {
        Metered { inner, meter }
    }
}

fn interrupted() -> std::io::Error {
    std::io::Error::other("interrupted (Ctrl-C)")
}

impl<T: Write> Write for Metered<'_, T> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if INTERRUPTED.load(Ordering::SeqCst) {
            return Err(interrupted());
        }
        let n = self.inner.write(buf)?;
        self.meter.add(n as u64);
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

impl<T: Read> Read for Metered<'_, T> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if INTERRUPTED.load(Ordering::SeqCst) {
            return Err(interrupted());
        }
        let n = self.inner.read(buf)?;
        self.meter.add(n as u64);
        Ok(n)
    }
}

/// The progress line: `writing  12.0 MiB / 15.3 MiB  78%  41.2 MiB/s`, redrawn in place on a
/// terminal (at most 5 times a second), one line per quarter otherwise.
pub struct Meter {
    what: &'static str,
    total: u64,
    done: u64,
    start: Instant,
    last: Instant,
    last_quarter: u64,
    on: bool,
    tty: bool,
}

impl Meter {
    pub fn new(what: &'static str, total: u64, on: bool) -> Meter {
        let now = Instant::now();
        Meter { what, total, done: 0, start: now, last: now, last_quarter: 0, on, tty: std::io::stderr().is_terminal() }
    }

    fn line(&self) -> String {
        let secs = self.start.elapsed().as_secs_f64().max(0.001);
        let pct = (self.done * 100).checked_div(self.total).unwrap_or(100);
        format!(
            "{} {:>10} / {:<10} {pct:>3}%  {}/s",
            self.what,
            bmap::human(self.done),
            bmap::human(self.total),
            bmap::human((self.done as f64 / secs) as u64)
        )
    }

    fn add(&mut self, n: u64) {
        self.done += n;
        if !self.on {
            return;
        }
        if self.tty {
            if self.last.elapsed() >= Duration::from_millis(200) {
                self.last = Instant::now();
                eprint!("\r{}\x1b[K", self.line());
            }
        } else {
            let quarter = (self.done * 4).checked_div(self.total).unwrap_or(4);
            if quarter > self.last_quarter {
                self.last_quarter = quarter;
                eprintln!("{}", self.line());
            }
        }
    }

    pub fn finish(&mut self) {
        if self.on && self.tty {
            eprintln!("\r{}\x1b[K", self.line());
        } else if self.on && self.last_quarter < 4 {
            eprintln!("{}", self.line());
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Ctrl-C: finish cleanly (wipe) instead of leaving a half-written disk.

static INTERRUPTED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_sigint(_: libc::c_int) {
    INTERRUPTED.store(true, Ordering::SeqCst);
}

/// While alive, SIGINT and SIGTERM set a flag that the copy loop checks.
struct SignalGuard {
    old: Vec<(nix::sys::signal::Signal, nix::sys::signal::SigAction)>,
}

impl SignalGuard {
    fn install() -> SignalGuard {
        use nix::sys::signal::{sigaction, SaFlags, SigAction, SigHandler, SigSet, Signal};
        INTERRUPTED.store(false, Ordering::SeqCst);
        let act = SigAction::new(SigHandler::Handler(on_sigint), SaFlags::empty(), SigSet::empty());
        let mut old = Vec::new();
        for s in [Signal::SIGINT, Signal::SIGTERM] {
            // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
            if let Ok(o) = unsafe { sigaction(s, &act) } {
                old.push((s, o));
            }
        }
        SignalGuard { old }
    }
}

impl Drop for SignalGuard {
    fn drop(&mut self) {
        for (s, o) in &self.old {
            // SAFETY: restores the disposition that was there before install().
            let _ = unsafe { nix::sys::signal::sigaction(*s, o) };
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Doing it.

/// The byte ranges to write: the bmap's, or the whole image.
pub fn ranges(src: &Source) -> Vec<(u64, u64, Option<String>)> {
    match &src.bmap {
        Some((_, b)) => b
            .ranges
            .iter()
            .map(|r| {
                let (a, e) = r.bytes(b.block_size, b.image_size);
                (a, e, Some(r.sha256.clone()))
            })
            .collect(),
        None => vec![(0, src.size, src.sha256.clone())],
    }
}

/// Ask on the terminal. `Ok(())` when the user typed yes.
fn confirm(src: &Source, target: &Target) -> Result<()> {
    if !std::io::stdin().is_terminal() {
        return Err(FlashError::NotConfirmed(
            "stdin is not a terminal, so nobody can be asked; pass --yes to write without asking".into(),
        ));
    }
    eprint!("Everything on {} will be lost. Write {} to it? Type yes: ", target.path.display(), src.path.display());
    let _ = std::io::stderr().flush();
    let mut answer = String::new();
    std::io::stdin()
        .read_line(&mut answer)
        .map_err(|e| FlashError::NotConfirmed(format!("reading the answer: {e}")))?;
    if matches!(answer.trim(), "yes" | "y" | "YES" | "Yes") {
        Ok(())
    } else {
        Err(FlashError::NotConfirmed(format!("the answer was {:?}", answer.trim())))
    }
}

/// `oa flash`: plan, ask, write, verify (see the module docs).
pub fn flash(opts: &Options) -> Result<Report> {
    let src = source(opts)?;
    let target = inspect(&opts.device, opts.allow_file, &src.path)?;
    if target.exists && target.size < src.size {
        return Err(FlashError::TooSmall {
            device: target.path.clone(),
            image_size: src.size,
            device_size: target.size,
        });
    }
    let plan = ranges(&src);
    let to_write: u64 = plan.iter().map(|(a, b, _)| b - a).sum();
    if opts.progress {
        let via = match &src.bmap {
            Some((p, _)) => format!("{} to write, using {}", bmap::human(to_write), p.display()),
            None => "all of it to write (no block map)".to_string(),
        };
        eprintln!("oa flash: {} ({}, {via})", src.path.display(), bmap::human(src.size));
        eprintln!("       -> {}", target.describe());
    }
    if !opts.yes {
        confirm(&src, &target)?;
    }
    let _signals = SignalGuard::install();
    let start = Instant::now();

    // Open for writing; O_EXCL on a block device fails if anything has it open exclusively
    // (a mount, device-mapper): a last check the kernel makes for us.
    let mut oo = OpenOptions::new();
    oo.read(true).write(true);
    match target.kind {
        TargetKind::WholeDisk => {
            oo.custom_flags(libc::O_EXCL);
        }
        TargetKind::File => {
            oo.create(true);
        }
    }
    let mut dev = oo.open(&target.path).map_err(|e| {
        if e.raw_os_error() == Some(libc::EBUSY) {
            FlashError::Busy {
                device: target.path.clone(),
                uses: vec!["the kernel reports it busy (mounted or held)".into()],
            }
        } else {
            FlashError::Io { action: "opening for writing", path: target.path.clone(), source: e }
        }
    })?;
    if target.kind == TargetKind::File && !target.exists {
        io_ctx(dev.set_len(src.size), "sizing", &target.path)?;
    }
    let device_size = if target.exists { target.size } else { src.size };

    let result = write_and_verify(&src, &plan, to_write, &mut dev, &target.path, opts.progress);
    match result {
        Ok(()) => {
            if target.kind == TargetKind::WholeDisk {
                reread_partitions(&dev);
            }
            Ok(Report { written: to_write, used_bmap: src.bmap.is_some(), duration: start.elapsed() })
        }
        Err(reason) => {
            let wiped = wipe(&mut dev, src.size, device_size);
            Err(FlashError::Failed { device: target.path.clone(), reason, wiped })
        }
    }
}

fn write_and_verify(
    src: &Source,
    plan: &[(u64, u64, Option<String>)],
    total: u64,
    dev: &mut File,
    dev_path: &Path,
    progress: bool,
) -> std::result::Result<(), String> {
    let mut img = File::open(&src.path).map_err(|e| format!("opening {}: {e}", src.path.display()))?;
    // Write, hashing the image as it streams (the bmap's or the manifest's digest).
    let mut meter = Meter::new("writing  ", total, progress);
    for (a, b, want) in plan {
        img.seek(SeekFrom::Start(*a)).map_err(|e| format!("seeking in {}: {e}", src.path.display()))?;
        dev.seek(SeekFrom::Start(*a)).map_err(|e| format!("seeking to byte {a}: {e}"))?;
        let mut reader = HashReader::new((&mut img).take(b - a));
        let mut writer = std::io::BufWriter::with_capacity(MIB as usize, Metered::new(&mut *dev, &mut meter));
        let n = std::io::copy(&mut reader, &mut writer).map_err(|e| format!("at byte {a}: {e}"))?;
        writer.flush().map_err(|e| format!("at byte {a}: {e}"))?;
        drop(writer);
        if n != b - a {
            return Err(format!(
                "{} ended early (at byte {}): was it changed while flashing?",
                src.path.display(),
                a + n
            ));
        }
        let got = reader.hex();
        if let Some(want) = want {
            if &got != want {
                return Err(format!(
                    "the image's bytes {a}..{b} have sha256 {got}, not {want} as {} says: the image is damaged or does not match",
                    if src.bmap.is_some() { "the block map" } else { "the manifest" }
                ));
            }
        }
    }
    meter.finish();
    dev.sync_all().map_err(|e| format!("syncing (a write error the device reported late): {e}"))?;
    // Read back from the device, not from the page cache.
    drop_cache(dev);
    let mut meter = Meter::new("verifying", total, progress);
    for (a, b, want) in plan {
        let want = match want {
            Some(w) => w.clone(),
            None => bmap::hash_range(&mut img, *a, *b).map_err(|e| format!("reading {}: {e}", src.path.display()))?,
        };
        dev.seek(SeekFrom::Start(*a)).map_err(|e| format!("seeking to byte {a}: {e}"))?;
        let mut r = HashReader::new(Metered::new((&mut *dev).take(b - a), &mut meter));
        std::io::copy(&mut r, &mut std::io::sink()).map_err(|e| format!("reading back at byte {a}: {e}"))?;
        let got = r.hex();
        if got != want {
            return Err(format!(
                "read back bytes {a}..{b} of {}: sha256 {got}, expected {want} (a failing device?)",
                dev_path.display()
            ));
        }
    }
    meter.finish();
    Ok(())
}

/// Drop the device's pages from the page cache so the read-back reads the medium.
fn drop_cache(dev: &File) {
    use std::os::fd::AsRawFd;
    // SAFETY: posix_fadvise on a valid open descriptor; advice only, no memory is touched.
    let _ = unsafe { libc::posix_fadvise(dev.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED) };
}

nix::ioctl_none!(blkrrpart, 0x12, 95);

/// Ask the kernel to read the new partition table (best effort; loop devices without
/// partition scanning refuse, which is fine).
fn reread_partitions(dev: &File) {
    use std::os::fd::AsRawFd;
    // SAFETY: BLKRRPART takes no argument; the descriptor is a block device we opened.
    let _ = unsafe { blkrrpart(dev.as_raw_fd()) };
}

/// Zero the first MiB and the last MiB of the image's extent and of the device: both GPT
/// copies and the MBR are gone, so no firmware boots a half-written disk.
pub fn wipe(dev: &mut File, image_size: u64, device_size: u64) -> std::result::Result<(), String> {
    let zeros = vec![0u8; MIB as usize];
    let mut spots = vec![0u64];
    for end in [image_size, device_size] {
        if end > MIB {
            spots.push(end - MIB);
        }
    }
    for off in spots {
        let len = MIB.min(device_size.saturating_sub(off)) as usize;
        dev.seek(SeekFrom::Start(off)).map_err(|e| e.to_string())?;
        dev.write_all(&zeros[..len]).map_err(|e| format!("writing zeros at byte {off}: {e}"))?;
    }
    dev.sync_all().map_err(|e| e.to_string())
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
        assert_eq!(describe(b"LUKS\xba\xbe\0\x02"), vec!["LUKS encrypted volume"]);
        assert!(describe(&[0u8; 8192])[0].starts_with("zeros"));
        assert_eq!(describe(&[7u8; 100]), vec!["data of unknown kind"]);
    }

    #[test]
    fn busy_finds_mounts_swap_holders_and_the_root() {
        let devs = vec![
            ("sdb".to_string(), "8:16".to_string()),
            ("sdb1".to_string(), "8:17".to_string()),
            ("sdb2".to_string(), "8:18".to_string()),
        ];
        let mountinfo = "22 1 0:21 / /proc rw - proc proc rw\n\
                         40 1 8:17 / /media/my\\040stick rw,relatime - vfat /dev/sdb1 rw\n\
                         41 1 0:50 / /data rw - btrfs /dev/sdb2 rw\n";
        let swaps = "Filename Type Size Used Priority\n/dev/sdb2 partition 1024 0 -2\n";
        let holders = |n: &str| if n == "sdb" { vec!["dm-0 (luks-1)".to_string()] } else { vec![] };
        let u = busy_uses(&devs, mountinfo, swaps, Some("8:18"), &holders);
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
        assert!(busy_uses(&devs, "22 1 0:21 / /proc rw - proc proc rw\n", "Filename\n", Some("0:21"), &|_| vec![])
            .is_empty());
    }

    #[test]
    fn wipe_zeroes_both_ends() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("dev");
        std::fs::write(&p, vec![0xaau8; 5 * MIB as usize]).unwrap();
        let mut f = OpenOptions::new().read(true).write(true).open(&p).unwrap();
        wipe(&mut f, 3 * MIB, 5 * MIB).unwrap();
        let data = std::fs::read(&p).unwrap();
        let mib = |i: usize| &data[i * MIB as usize..(i + 1) * MIB as usize];
        assert!(mib(0).iter().all(|&b| b == 0));
        assert!(mib(1).iter().all(|&b| b == 0xaa));
        assert!(mib(2).iter().all(|&b| b == 0), "the image's last MiB (backup GPT)");
        assert!(mib(3).iter().all(|&b| b == 0xaa));
        assert!(mib(4).iter().all(|&b| b == 0), "the device's last MiB");
    }
}
