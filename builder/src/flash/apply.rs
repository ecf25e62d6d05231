//! Carrying out a [`Plan`]: ask, open, write, sync, read back, and on failure wipe.

use super::device::{logical_sector_size, Identity};
use super::io::{HashReader, HoldHead, Interruptible, Metered};
use super::plan::{Extent, Plan};
use super::progress::Meter;
use super::{io_ctx, FlashError, Report, Result, MIB};
use super::{Sha256, TargetKind};
use crate::image::bmap;
use std::fs::{File, OpenOptions};
use std::io::{IsTerminal, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

// ---------------------------------------------------------------------------------------------
// Ctrl-C: finish cleanly (wipe) instead of leaving a half-written disk.

static INTERRUPTED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_sigint(_: libc::c_int) {
    INTERRUPTED.store(true, Ordering::SeqCst);
}

/// While alive, SIGINT, SIGTERM and SIGHUP (the terminal closed) set a flag that the copy's [`Interruptible`] adapters check.
struct SignalGuard {
    old: Vec<(nix::sys::signal::Signal, nix::sys::signal::SigAction)>,
}

impl SignalGuard {
    fn install() -> SignalGuard {
        use nix::sys::signal::{sigaction, SaFlags, SigAction, SigHandler, SigSet, Signal};
        INTERRUPTED.store(false, Ordering::SeqCst);
        let act = SigAction::new(SigHandler::Handler(on_sigint), SaFlags::empty(), SigSet::empty());
        let mut old = Vec::new();
        for s in [Signal::SIGINT, Signal::SIGTERM, Signal::SIGHUP] {
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

/// Ask on the terminal. `Ok(())` when the user typed yes.
pub fn confirm(plan: &Plan) -> Result<()> {
    if !std::io::stdin().is_terminal() {
        return Err(FlashError::NotConfirmed(
            "stdin is not a terminal, so nobody can be asked; pass --yes to write without asking".into(),
        ));
    }
    eprint!(
        "Everything on {} will be lost. Write {} to it? Type yes: ",
        plan.target.path.display(),
        plan.source.path.display()
    );
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

/// Open the plan's device for writing. A block device is opened with O_EXCL (it fails if
/// anything has it open exclusively: a mount, device-mapper), its identity and logical sector
/// size checked on the descriptor; the caller keeps this descriptor from before the question
/// to the end of the write.
pub fn open(plan: &Plan) -> Result<File> {
    let target = &plan.target;
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
    let dev = oo.open(&target.path).map_err(|e| {
        if e.raw_os_error() == Some(libc::EBUSY) {
            FlashError::Busy {
                device: target.path.clone(),
                uses: vec!["the kernel reports it busy (mounted or held)".into()],
            }
        } else {
            FlashError::Io { action: "opening for writing", path: target.path.clone(), source: e }
        }
    })?;
    if target.kind == TargetKind::WholeDisk {
        check_identity(plan, &dev)?;
    }
    Ok(dev)
}

/// The open block device `dev` is still the one planned: same identity on the descriptor
/// (number, size, serial or loop backing file), the path still names that device, and its
/// logical sectors are 512 bytes.
pub fn check_identity(plan: &Plan, dev: &File) -> Result<()> {
    use std::os::unix::fs::MetadataExt;
    let target = &plan.target;
    let Some(want) = &target.identity else { return Ok(()) };
    let now = Identity::of_open(dev).map_err(|e| FlashError::Io {
        action: "reading the identity of",
        path: target.path.clone(),
        source: e,
    })?;
    let mut changes = want.changes(&now);
    match std::fs::metadata(&target.path) {
        Ok(m) if m.rdev() == dev.metadata().map(|d| d.rdev()).unwrap_or(0) => {}
        Ok(m) => changes.push(format!(
            "the path now names device {}:{}, not the open one",
            libc::major(m.rdev()),
            libc::minor(m.rdev())
        )),
        Err(e) => changes.push(format!("the path is gone ({e})")),
    }
    if !changes.is_empty() {
        return Err(FlashError::Changed { device: target.path.clone(), changes });
    }
    match logical_sector_size(dev).map(|s| s.bytes()) {
        Some(512) => Ok(()),
        bytes => Err(FlashError::SectorSize { device: target.path.clone(), bytes }),
    }
}

/// Write `plan` (confirmed) through `dev` (from [`open`]): zero the first MiB (and a stale
/// backup GPT at the end of a larger device), write and verify every extent, the first MiB
/// last; on failure wipe its start and end (see [`wipe`]) and say so in the error.
pub fn apply(plan: &Plan, mut dev: File, progress: bool) -> Result<Report> {
    let (src, target) = (&plan.source, &plan.target);
    let _signals = SignalGuard::install();
    let start = Instant::now();
    if target.kind == TargetKind::File && !target.exists {
        io_ctx(dev.set_len(src.size), "sizing", &target.path)?;
    }
    let device_size = if target.exists { target.size } else { src.size };

    match write_and_verify(plan, &mut dev, device_size, progress) {
        Ok(()) => {
            if target.kind == TargetKind::WholeDisk {
                reread_partitions(&dev);
            }
            Ok(Report { written: plan.bytes_to_write(), used_bmap: src.bmap.is_some(), duration: start.elapsed() })
        }
        Err(reason) => {
            let wiped = wipe(&mut dev, src.size, device_size);
            Err(FlashError::Failed { device: target.path.clone(), reason, wiped })
        }
    }
}

/// Zero `[0, MIB)` and, on a device larger than the image, its last MiB (no part of the
/// image): no partition table is left from before while the rest is written.
fn clear_tables(dev: &mut File, image_size: u64, device_size: u64) -> std::result::Result<(), String> {
    let zeros = vec![0u8; MIB as usize];
    let mut spots = vec![(0u64, MIB.min(device_size))];
    if device_size > image_size {
        let a = device_size.saturating_sub(MIB).max(image_size);
        spots.push((a, device_size - a));
    }
    for (off, len) in spots {
        dev.seek(SeekFrom::Start(off)).map_err(|e| format!("seeking to byte {off}: {e}"))?;
        dev.write_all(&zeros[..len as usize])
            .map_err(|e| format!("zeroing the old partition table at byte {off}: {e}"))?;
    }
    Ok(())
}

fn write_and_verify(plan: &Plan, dev: &mut File, device_size: u64, progress: bool) -> std::result::Result<(), String> {
    let (src, dev_path) = (&plan.source, plan.target.path.as_path());
    let total = plan.bytes_to_write();
    let mut img = File::open(&src.path).map_err(|e| format!("opening {}: {e}", src.path.display()))?;
    clear_tables(dev, src.size, device_size)?;
    // Write, hashing the image as it streams (the bmap's or the manifest's digest); the bytes
    // of the first MiB are held back and written once everything else is on the device.
    let mut head = vec![0u8; MIB.min(src.size) as usize];
    let mut meter = Meter::new("writing  ", total, progress);
    for x in &plan.extents {
        write_extent(x, &mut img, &src.path, dev, &mut head, &mut meter, plan.digests_from())?;
    }
    dev.sync_all().map_err(|e| format!("syncing (a write error the device reported late): {e}"))?;
    if INTERRUPTED.load(Ordering::SeqCst) {
        return Err("interrupted (Ctrl-C)".into());
    }
    dev.seek(SeekFrom::Start(0)).map_err(|e| format!("seeking to byte 0: {e}"))?;
    dev.write_all(&head).map_err(|e| format!("writing the first MiB (partition table, boot code): {e}"))?;
    meter.finish();
    dev.sync_all().map_err(|e| format!("syncing (a write error the device reported late): {e}"))?;
    // Read back from the device, not from the page cache.
    drop_cache(dev);
    let mut meter = Meter::new("verifying", total, progress);
    for x in &plan.extents {
        verify_extent(x, &mut img, &src.path, dev, dev_path, &mut meter)?;
    }
    meter.finish();
    Ok(())
}

fn write_extent(
    x: &Extent,
    img: &mut File,
    img_path: &Path,
    dev: &mut File,
    head: &mut [u8],
    meter: &mut Meter,
    digests_from: &str,
) -> std::result::Result<(), String> {
    let (a, b) = (x.offset, x.end());
    img.seek(SeekFrom::Start(a)).map_err(|e| format!("seeking in {}: {e}", img_path.display()))?;
    let on_dev = a.max(head.len() as u64).min(b);
    dev.seek(SeekFrom::Start(on_dev)).map_err(|e| format!("seeking to byte {on_dev}: {e}"))?;
    let mut reader = HashReader::new(img.take(x.len));
    let mut writer = std::io::BufWriter::with_capacity(
        MIB as usize,
        Interruptible::new(Metered::new(HoldHead::new(&mut *dev, head, a), meter), &INTERRUPTED),
    );
    let n = std::io::copy(&mut reader, &mut writer).map_err(|e| format!("at byte {a}: {e}"))?;
    writer.flush().map_err(|e| format!("at byte {a}: {e}"))?;
    drop(writer);
    if n != x.len {
        return Err(format!("{} ended early (at byte {}): was it changed while flashing?", img_path.display(), a + n));
    }
    let got = reader.digest();
    match &x.expected_sha256 {
        Some(want) if got != *want => Err(format!(
            "the image's bytes {a}..{b} have sha256 {got}, not {want} as {digests_from} says: the image is damaged or does not match"
        )),
        _ => Ok(()),
    }
}

fn verify_extent(
    x: &Extent,
    img: &mut File,
    img_path: &Path,
    dev: &mut File,
    dev_path: &Path,
    meter: &mut Meter,
) -> std::result::Result<(), String> {
    let (a, b) = (x.offset, x.end());
    let want: Sha256 = match x.expected_sha256 {
        Some(w) => w,
        None => bmap::hash_range(img, a, b)
            .map_err(|e| format!("reading {}: {e}", img_path.display()))?
            .parse()
            .map_err(|e| format!("hashing {}: {e}", img_path.display()))?,
    };
    dev.seek(SeekFrom::Start(a)).map_err(|e| format!("seeking to byte {a}: {e}"))?;
    let mut r = HashReader::new(Interruptible::new(Metered::new((&mut *dev).take(x.len), meter), &INTERRUPTED));
    std::io::copy(&mut r, &mut std::io::sink()).map_err(|e| format!("reading back at byte {a}: {e}"))?;
    let got = r.digest();
    if got != want {
        return Err(format!(
            "read back bytes {a}..{b} of {}: sha256 {got}, expected {want} (a failing device?)",
            dev_path.display()
        ));
    }
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

    #[test]
    fn clear_tables_zeroes_the_start_and_the_end_beyond_the_image() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("dev");
        std::fs::write(&p, vec![0xaau8; 5 * MIB as usize + 512]).unwrap();
        let mut f = OpenOptions::new().read(true).write(true).open(&p).unwrap();
        clear_tables(&mut f, 4 * MIB + 1024, 5 * MIB + 512).unwrap();
        let data = std::fs::read(&p).unwrap();
        assert!(data[..MIB as usize].iter().all(|&b| b == 0));
        assert!(data[MIB as usize..(4 * MIB + 1024) as usize].iter().all(|&b| b == 0xaa), "the image's extent");
        assert!(data[(4 * MIB + 1024) as usize..].iter().all(|&b| b == 0), "beyond the image, the last MiB");
    }
}
