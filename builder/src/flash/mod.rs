//! `oa flash IMAGE DEVICE`: write a disk image to a USB stick or disk, the way
//! coreos-installer does it.
//!
//! 1. Plan, touching nothing ([`plan()`], a typed [`Plan`]): resolve the image (a file, or an
//!    output folder's `disk.img`), its block map and its expected sha256 (from the manifest
//!    beside it) ([`source`]); inspect the device (a whole disk, not a partition; not
//!    read-only; nothing on it mounted, used as swap or held by device-mapper/RAID; not the
//!    disk of the running system; at least as large as the image) and read what is on it now
//!    ([`device`]). The plan lists the extents to write, each with the sha256 it must have,
//!    and the checks that passed; `oa flash --dry-run` prints it and stops there.
//! 2. Ask: show the image and the device (size, model, partitions, signatures) and wait for
//!    "yes", unless `--yes`.
//!    A block device is opened for writing (O_EXCL) before asking and written through that
//!    same descriptor; after the answer its identity (device number, size, serial or loop
//!    backing file) is taken again on the descriptor and by path and compared with the one
//!    shown: a device swapped meanwhile is refused. A device whose logical sectors are not
//!    512 bytes is refused when planning (the image's GPT is laid out for 512-byte sectors).
//! 3. Zero the device's first MiB (and its last MiB beyond the image: a stale backup GPT of
//!    an earlier, larger table); write the extents (all of the image without a bmap) through
//!    small adapters that hash, meter and interrupt the stream ([`io`], [`progress`]), holding
//!    back the bytes of the first MiB (partition table and boot code); write the first MiB
//!    last; fsync; drop the device's cached pages; read the extents back and compare their
//!    sha256 ([`apply`]). A write cut short at any point (even by a power cut) leaves no
//!    partition table.
//! 4. On any failure once writing has started (an I/O error, Ctrl-C, SIGTERM, SIGHUP, a
//!    checksum mismatch) the first MiB and the last MiB of the image's extent and of the
//!    device are overwritten with zeros, so that no half-written partition table is left for
//!    a firmware to boot; the error says so.
//!
//! A regular file stands in for a disk only with `--allow-file` (tests, VM images): an existing
//! file keeps its size like a disk; a missing one is created with the image's size.

pub mod apply;
pub mod device;
pub mod io;
pub mod plan;
pub mod progress;
pub mod source;

use crate::image::bmap;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub use apply::wipe;
pub use device::{busy_uses, describe, inspect, Target, TargetKind};
pub use plan::{extents, plan, Extent, Plan, Sha256};
pub use source::{source, Source};

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

    #[error("{} has logical sectors of {}: disk.img's partition table is laid out for 512-byte sectors and would not be found on it; nothing was written (use a device with 512-byte sectors, or a USB adapter that presents them)", device.display(), match bytes { Some(b) => format!("{b} bytes"), None => "a size the kernel would not tell (BLKSSZGET)".to_string() })]
    SectorSize { device: PathBuf, bytes: Option<u64> },

    #[error("{} changed between the check and the write ({}): it is not the device that was shown; nothing was written, run oa flash again", device.display(), changes.join("; "))]
    Changed { device: PathBuf, changes: Vec<String> },

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

pub type Result<T, E = FlashError> = std::result::Result<T, E>;

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

/// How a flash went.
#[derive(Debug, Clone)]
pub struct Report {
    pub written: u64,
    pub used_bmap: bool,
    pub duration: Duration,
}

/// `oa flash`: plan, ask, write, verify (see the module docs).
pub fn flash(opts: &Options) -> Result<Report> {
    let plan = plan(opts)?;
    if opts.progress {
        eprintln!("{}", plan.summary());
    }
    // A block device is held open (O_EXCL) from before the question to the end of the write.
    let held = match plan.target.kind {
        TargetKind::WholeDisk => Some(apply::open(&plan)?),
        TargetKind::File => None,
    };
    if !opts.yes {
        apply::confirm(&plan)?;
    }
    let dev = match held {
        Some(dev) => {
            apply::check_identity(&plan, &dev)?;
            dev
        }
        None => apply::open(&plan)?,
    };
    apply::apply(&plan, dev, opts.progress)
}
