//! Block devices: list them from /sys/class/block and find the root image named by `oa.root=`.

use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use oa_contract::cmdline::{self, RootSpec};

use crate::coldplug::Coldplug;
use crate::console;
use crate::error::{Error, IoContext, Result};
use crate::media::{self, Labels, Medium};
use crate::rootimage;
use oa_disk::gpt;
use oa_disk::{Guid, SectorSize};

const SYS_BLOCK: &str = "/sys/class/block";
pub const POLL: Duration = Duration::from_millis(20);
pub const WAIT: Duration = Duration::from_secs(10);

/// A block device as sysfs describes it.
#[derive(Debug, Clone)]
pub struct BlockDev {
    pub name: String,
    /// `/dev/<name>`
    pub dev: PathBuf,
    /// Partition number, for partitions.
    pub partition: Option<u32>,
    /// The whole disk, for partitions.
    pub parent: Option<String>,
    pub size_bytes: u64,
}

fn read_trim(p: &Path) -> Option<String> {
    std::fs::read_to_string(p).ok().map(|s| s.trim().to_string())
}

/// All block devices with a non-zero size (empty loop devices and the like are left out).
pub fn list() -> Vec<BlockDev> {
    let mut out = Vec::new();
    let Ok(rd) = std::fs::read_dir(SYS_BLOCK) else { return out };
    for e in rd.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let sys = e.path();
        let sectors: u64 = read_trim(&sys.join("size")).and_then(|s| s.parse().ok()).unwrap_or(0);
        if sectors == 0 {
            continue;
        }
        let partition = read_trim(&sys.join("partition")).and_then(|s| s.parse().ok());
        let parent = if partition.is_some() {
            std::fs::canonicalize(&sys)
                .ok()
                .and_then(|p| p.parent().and_then(|q| q.file_name()).map(|n| n.to_string_lossy().into_owned()))
        } else {
            None
        };
        out.push(BlockDev {
            dev: PathBuf::from("/dev").join(&name),
            name,
            partition,
            parent,
            size_bytes: sectors * 512,
        });
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    out
}

fn names(devs: &[BlockDev]) -> String {
    if devs.is_empty() {
        "none".into()
    } else {
        devs.iter().map(|d| format!("{} ({} KiB)", d.name, d.size_bytes / 1024)).collect::<Vec<_>>().join(", ")
    }
}

/// Read the GPT of a whole disk. `Ok(None)` when the disk has no GPT.
pub fn read_gpt(disk: &BlockDev) -> Result<Option<Vec<gpt::Partition>>> {
    let sector = read_trim(&Path::new(SYS_BLOCK).join(&disk.name).join("queue/logical_block_size"))
        .and_then(|s| s.parse().ok())
        .and_then(SectorSize::new)
        .unwrap_or(SectorSize::B512);
    let mut f = match std::fs::File::open(&disk.dev) {
        // An optical or card-reader drive without a medium holds no partition table.
        Err(e) if e.raw_os_error() == Some(nix::libc::ENOMEDIUM) => return Ok(None),
        r => r.ctx("open", &disk.dev)?,
    };
    let mut hdr = vec![0u8; sector.bytes() as usize];
    f.seek(SeekFrom::Start(sector.bytes())).ctx("seek to GPT header of", &disk.dev)?;
    if f.read_exact(&mut hdr).is_err() {
        return Ok(None); // smaller than two sectors: no GPT
    }
    let gpt_err = |why: String| Error::Gpt { device: disk.dev.display().to_string(), why };
    let Some(h) = gpt::parse_header(&hdr).map_err(|e| gpt_err(e.to_string()))? else { return Ok(None) };
    // Bounded by parse_header (at most gpt::MAX_ENTRIES_BYTES).
    let mut ent = vec![0u8; h.entries_len()];
    let off = h.entries_lba.checked_offset(sector).ok_or_else(|| gpt_err("entry LBA out of range".into()))?;
    f.seek(SeekFrom::Start(off)).ctx("seek to GPT entries of", &disk.dev)?;
    f.read_exact(&mut ent).ctx("read GPT entries of", &disk.dev)?;
    gpt::parse_entries(&h, &ent).map(Some).map_err(|e| gpt_err(e.to_string()))
}

/// Look for a GPT partition matching `pred` on every whole disk, return its device.
fn find_partition(
    devs: &[BlockDev],
    pred: &dyn Fn(&gpt::Partition) -> bool,
    errors: &mut Vec<String>,
) -> Option<PathBuf> {
    for disk in devs.iter().filter(|d| d.partition.is_none()) {
        match read_gpt(disk) {
            Ok(Some(parts)) => {
                for p in parts.iter().filter(|p| pred(p)) {
                    let dev = devs
                        .iter()
                        .find(|d| d.parent.as_deref() == Some(disk.name.as_str()) && d.partition == Some(p.number));
                    if let Some(d) = dev {
                        if d.dev.exists() {
                            return Some(d.dev.clone());
                        }
                    }
                }
            }
            Ok(None) => {}
            Err(e) => {
                let s = e.to_string();
                if !errors.contains(&s) {
                    console::warn(&s);
                    errors.push(s);
                }
            }
        }
    }
    None
}

/// Where the root image is, and its digest when finding it already verified it.
pub struct Found {
    pub path: PathBuf,
    pub verified_sha256: Option<String>,
    /// The block device the image is on (itself, or the medium holding it as a file); `None`
    /// for an image downloaded into RAM.
    pub device: Option<BlockDev>,
    /// The filesystem mounted at /run/oa/media that holds the image as a file
    /// (`oa.root=LABEL=`/`UUID=`).
    pub medium: Option<Medium>,
}

impl Found {
    fn on(path: PathBuf, devs: &[BlockDev], verified_sha256: Option<String>) -> Found {
        let device = devs.iter().find(|d| d.dev == path).cloned();
        Found { path, verified_sha256, device, medium: None }
    }
}

/// Find the root image. Polls every 20 ms for up to 10 s: device nodes appear asynchronously
/// after the storage driver is loaded, and the devices behind a controller (a USB stick, the
/// SCSI disk on it) ask coldplug for their drivers one after the other.
pub fn find_root(spec: Option<&RootSpec>, sha256: Option<&str>, coldplug: &mut Coldplug) -> Result<Found> {
    let start = Instant::now();
    let mut gpt_errors = Vec::new();
    let mut mismatched: Vec<(PathBuf, String)> = Vec::new();
    let mut labels = Labels::default();
    loop {
        coldplug.poll();
        let devs = list();
        let found = match spec {
            Some(RootSpec::Path(p)) => {
                let p = PathBuf::from(p);
                p.exists().then_some(p)
            }
            Some(RootSpec::PartLabel(l)) => find_partition(&devs, &|p| &p.name == l, &mut gpt_errors),
            Some(RootSpec::PartUuid(u)) => {
                // A PARTUUID= that is not a GUID matches no partition (and is named as not found).
                let want = u.parse::<Guid>().ok();
                find_partition(&devs, &|p| Some(p.guid) == want, &mut gpt_errors)
            }
            Some(s @ (RootSpec::Label(_) | RootSpec::Uuid(_))) => {
                if let Some(m) = labels.find(&devs, s)? {
                    console::debug(&format!(
                        "{} ({}) found after {} ms",
                        m.dev.dev.display(),
                        m.id.kind.fstype(),
                        start.elapsed().as_millis()
                    ));
                    let path = media::mount(&m, coldplug)?;
                    return Ok(Found { path, verified_sha256: None, device: Some(m.dev.clone()), medium: Some(m) });
                }
                None
            }
            Some(RootSpec::Http(u)) => {
                // Network boot: bring the NIC up, DHCP, download into RAM (crate::net).
                let (path, sha) = crate::net::fetch_root(u, sha256, coldplug)?;
                return Ok(Found { path, verified_sha256: sha256.map(|_| sha), device: None, medium: None });
            }
            None => {
                // Scan: the first device holding a squashfs image (whose digest matches, when
                // oa.sha256= is given). Whole disks and partitions both count.
                let mut hit = None;
                for d in devs.iter().filter(|d| rootimage::is_squashfs(&d.dev)) {
                    if mismatched.iter().any(|(p, _)| p == &d.dev) {
                        continue;
                    }
                    match sha256 {
                        None => {
                            hit = Some(d.dev.clone());
                            break;
                        }
                        Some(want) => {
                            let (got, _) = rootimage::hash(&d.dev)?;
                            if got == want {
                                return Ok(Found::on(d.dev.clone(), &devs, Some(got)));
                            }
                            console::warn(&format!(
                                "{}: squashfs image with sha256 {got}, not the one oa.sha256= asks for",
                                d.dev.display()
                            ));
                            mismatched.push((d.dev.clone(), got));
                        }
                    }
                }
                hit
            }
        };
        if let Some(path) = found {
            console::debug(&format!("root image at {} after {} ms", path.display(), start.elapsed().as_millis()));
            return Ok(Found::on(path, &devs, None));
        }
        if start.elapsed() >= WAIT {
            if let (Some(want), [(dev, got)]) = (sha256, mismatched.as_slice()) {
                return Err(Error::HashMismatch {
                    device: dev.display().to_string(),
                    expected: want.to_string(),
                    actual: got.clone(),
                });
            }
            let by_fs = matches!(spec, Some(RootSpec::Label(_) | RootSpec::Uuid(_)));
            let spec = match spec {
                Some(s) => cmdline::word(cmdline::ROOT, s),
                None if !mismatched.is_empty() => "a squashfs image with the sha256 from oa.sha256=".to_string(),
                None => "a squashfs image (oa.root= not given, scanned all block devices)".to_string(),
            };
            let mut seen = names(&devs);
            if !gpt_errors.is_empty() {
                seen.push_str(&format!("; GPT errors: {}", gpt_errors.join("; ")));
            }
            if by_fs {
                seen.push_str(&format!("; {}", labels.describe()));
            }
            return Err(Error::RootNotFound {
                spec,
                waited_ms: start.elapsed().as_millis() as u64,
                seen,
                drivers: coldplug.report(),
            });
        }
        if !coldplug.busy() {
            std::thread::sleep(POLL);
        }
    }
}
