//! `oa flash` through the real binary, against loop devices (real block devices, so the
//! sysfs, /proc/self/mountinfo and /proc/swaps checks run for real) and plain files.
//! Needs root (loop devices, mount, swapon), as `make test` has here.
//!
//! Every refusal is checked for its message, a non-zero exit, and that the device's bytes are
//! unchanged afterwards.

use oa_builder::image::bmap::Bmap;
use oa_builder::image::gpt::{self, PartSpec};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

const MIB: u64 = 1 << 20;

fn oa(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_oa")).args(args).stdin(Stdio::null()).output().expect("running oa")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).to_string()
}

fn run(cmd: &str, args: &[&str]) -> String {
    let o = Command::new(cmd).args(args).output().unwrap_or_else(|e| panic!("{cmd}: {e}"));
    assert!(o.status.success(), "{cmd} {args:?}: {}", String::from_utf8_lossy(&o.stderr));
    String::from_utf8_lossy(&o.stdout).trim().to_string()
}

/// A loop device on a file of `size` bytes filled with `fill`; detached when dropped.
struct Loop {
    dev: String,
    _backing: PathBuf,
}

/// Wait until the kernel reports `dev` at `size` bytes: a loop device another test has just
/// detached can be handed out again while its size still reads 0 (seen as mkfs.ext4's
/// "Device size reported to be zero" under `--test-threads=2`).
fn settle(dev: &str, size: u64) {
    let sys = format!("/sys/block/{}/size", dev.trim_start_matches("/dev/"));
    let t = std::time::Instant::now();
    loop {
        let sectors: u64 = std::fs::read_to_string(&sys).ok().and_then(|s| s.trim().parse().ok()).unwrap_or(0);
        if sectors * 512 == size {
            return;
        }
        assert!(t.elapsed() < std::time::Duration::from_secs(10), "{dev} reports {} bytes, not {size}", sectors * 512);
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

impl Loop {
    fn new(dir: &Path, name: &str, size: u64, fill: u8) -> Loop {
        let backing = dir.join(name);
        std::fs::write(&backing, vec![fill; size as usize]).unwrap();
        let dev = run("losetup", &["--find", "--show", "--partscan", backing.to_str().unwrap()]);
        settle(&dev, size);
        Loop { dev, _backing: backing }
    }
    /// A loop device with `sector` byte logical sectors on a sparse file of `size` bytes whose
    /// first and last MiB are filled with `fill` (the rest reads as zeros).
    fn sparse(dir: &Path, name: &str, size: u64, fill: u8, sector: u32) -> Loop {
        let backing = dir.join(name);
        let f = std::fs::File::create(&backing).unwrap();
        f.set_len(size).unwrap();
        f.write_all_at(&vec![fill; MIB as usize], 0).unwrap();
        f.write_all_at(&vec![fill; MIB as usize], size - MIB).unwrap();
        drop(f);
        let ss = sector.to_string();
        let dev = run("losetup", &["--find", "--show", "--sector-size", &ss, backing.to_str().unwrap()]);
        settle(&dev, size);
        Loop { dev, _backing: backing }
    }
    fn read(&self) -> Vec<u8> {
        std::fs::read(&self.dev).unwrap()
    }
    fn read_range(&self, a: u64, len: u64) -> Vec<u8> {
        let f = std::fs::File::open(&self.dev).unwrap();
        let mut b = vec![0u8; len as usize];
        f.read_exact_at(&mut b, a).unwrap();
        b
    }
}

impl Drop for Loop {
    fn drop(&mut self) {
        let _ = Command::new("losetup").args(["-d", &self.dev]).status();
    }
}

/// A small GPT disk image with data in two places, its bmap beside it (`disk.img.bmap`).
/// Returns (image, the byte range of a hole that the bmap leaves unmapped).
fn test_image(dir: &Path, size_mib: u64) -> (PathBuf, (u64, u64)) {
    let layout = gpt::plan(
        &[
            PartSpec { label: "oa-esp".into(), type_guid: gpt::types::ESP, size_bytes: MIB, attributes: 0 },
            PartSpec {
                label: "oa-root".into(),
                type_guid: gpt::types::LINUX_DATA,
                size_bytes: (size_mib - 3) * MIB,
                attributes: 0,
            },
        ],
        b"flash-test",
    );
    assert_eq!(layout.size_bytes(), size_mib * MIB);
    let img = dir.join("disk.img");
    let f = std::fs::File::create(&img).unwrap();
    f.set_len(layout.size_bytes()).unwrap();
    for (off, bytes) in layout.table_writes(&[0x90; 440]) {
        f.write_all_at(&bytes, off).unwrap();
    }
    let root = layout.partition("oa-root").unwrap();
    f.write_all_at(&[0x5a; 8192], root.offset() + 4096).unwrap();
    drop(f);
    let b = Bmap::create(&img, &layout.table_ranges()).unwrap();
    std::fs::write(dir.join("disk.img.bmap"), b.to_xml()).unwrap();
    let hole = (root.offset() + MIB / 2, root.offset() + MIB);
    assert!(b.ranges.iter().all(|r| (r.last + 1) * 4096 <= hole.0 || r.first * 4096 >= hole.1), "the hole is unmapped");
    (img, hole)
}

/// One test at a time holds loop devices: `make test` runs two tests at once, and a loop
/// device another test has just detached can be handed out while the kernel still tears it
/// down (seen as a fresh device reading 0 bytes). Taken first in every test, so it is released
/// after the test's devices are detached; a failed test does not poison it for the others.
fn serial() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

fn scratch() -> tempfile::TempDir {
    tempfile::tempdir().expect("temp dir")
}

#[test]
fn image_larger_than_the_device_is_refused_and_nothing_is_written() {
    let _serial = serial();
    let d = scratch();
    let (img, _) = test_image(d.path(), 8);
    let lo = Loop::new(d.path(), "small", 4 * MIB, 0xaa);
    let before = lo.read();
    let o = oa(&["flash", img.to_str().unwrap(), &lo.dev, "--yes"]);
    assert!(!o.status.success());
    let e = stderr(&o);
    assert!(e.contains("larger than") && e.contains(&lo.dev) && e.contains("4.0 MiB"), "{e}");
    assert!(lo.read() == before, "the device is untouched");
}

#[test]
fn a_partition_is_refused_naming_the_whole_disk() {
    let _serial = serial();
    let d = scratch();
    let (img, _) = test_image(d.path(), 8);
    let lo = Loop::new(d.path(), "disk", 16 * MIB, 0);
    // Put a partition table on the loop device and have the kernel add its partitions (the
    // host kernel may not parse GPT itself: partx adds them with BLKPG).
    run(env!("CARGO_BIN_EXE_oa"), &["flash", img.to_str().unwrap(), &lo.dev, "--yes"]);
    let part = format!("{}p1", lo.dev);
    if !Path::new(&part).exists() {
        run("partx", &["-a", &lo.dev]);
    }
    assert!(Path::new(&part).exists(), "{part} after partx");
    let before = lo.read();
    let o = oa(&["flash", img.to_str().unwrap(), &part, "--yes"]);
    assert!(!o.status.success());
    let e = stderr(&o);
    let disk = lo.dev.trim_start_matches("/dev/");
    assert!(
        e.contains(&format!("partition 1 of /dev/{disk}")) && e.contains(&format!("give the whole disk /dev/{disk}")),
        "{e}"
    );
    assert!(lo.read() == before);
}

struct Mount(PathBuf);

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

#[test]
fn a_mounted_device_is_refused() {
    let _serial = serial();
    let d = scratch();
    let (img, _) = test_image(d.path(), 8);
    let lo = Loop::new(d.path(), "mounted", 16 * MIB, 0);
    run("mkfs.ext4", &["-q", &lo.dev]);
    let mnt = d.path().join("mnt");
    std::fs::create_dir(&mnt).unwrap();
    run("mount", &[&lo.dev, mnt.to_str().unwrap()]);
    let _m = Mount(mnt.clone());
    let o = oa(&["flash", img.to_str().unwrap(), &lo.dev, "--yes"]);
    assert!(!o.status.success());
    let e = stderr(&o);
    assert!(e.contains("in use") && e.contains(&format!("{} is mounted at {}", lo.dev, mnt.display())), "{e}");
    // The filesystem is still there.
    assert!(oa_builder::flash::describe(&std::fs::read(&lo.dev).unwrap()[..70 * 1024])
        .contains(&"ext2/3/4 filesystem".to_string()));
}

struct Swap(String);

impl Drop for Swap {
    fn drop(&mut self) {
        let _ = Command::new("swapoff").arg(&self.0).status();
    }
}

#[test]
fn a_swap_device_is_refused() {
    let _serial = serial();
    let d = scratch();
    let (img, _) = test_image(d.path(), 8);
    let lo = Loop::new(d.path(), "swap", 16 * MIB, 0);
    run("mkswap", &[&lo.dev]);
    run("swapon", &[&lo.dev]);
    let _s = Swap(lo.dev.clone());
    let before = lo.read();
    let o = oa(&["flash", img.to_str().unwrap(), &lo.dev, "--yes"]);
    assert!(!o.status.success());
    let e = stderr(&o);
    assert!(e.contains(&format!("{} is used as swap", lo.dev)), "{e}");
    assert!(lo.read() == before);
}

#[test]
fn writes_only_the_mapped_ranges_of_a_loop_device_and_verifies() {
    let _serial = serial();
    let d = scratch();
    let (img, hole) = test_image(d.path(), 8);
    let lo = Loop::new(d.path(), "target", 32 * MIB, 0xaa);
    let o = oa(&["flash", img.to_str().unwrap(), &lo.dev, "--yes"]);
    let e = stderr(&o);
    assert!(o.status.success(), "{e}");
    assert!(e.contains("wrote and verified") && e.contains("block map"), "{e}");
    assert!(e.contains("holds: data of unknown kind"), "the device's old content is shown: {e}");
    let dev = lo.read();
    let image = std::fs::read(&img).unwrap();
    let b = Bmap::parse(&std::fs::read_to_string(d.path().join("disk.img.bmap")).unwrap()).unwrap();
    for r in &b.ranges {
        let (a, z) = r.bytes(b.block_size, b.image_size);
        assert!(dev[a as usize..z as usize] == image[a as usize..z as usize], "mapped range {a}..{z} written");
    }
    // Unmapped: skipped, so the old bytes are still there; beyond the image too.
    assert!(dev[hole.0 as usize..hole.1 as usize].iter().all(|&x| x == 0xaa));
    assert!(dev[image.len()..dev.len() - MIB as usize].iter().all(|&x| x == 0xaa));
    // The device's last MiB (where a stale backup GPT would be) is zeroed.
    assert!(dev[dev.len() - MIB as usize..].iter().all(|&x| x == 0));
    // The device now describes as the image's GPT.
    assert!(oa_builder::flash::describe(&dev[..70 * 1024]).contains(&"GPT partition table".to_string()));

    // --no-bmap writes everything, holes included.
    let o = oa(&["flash", img.to_str().unwrap(), &lo.dev, "--yes", "--no-bmap"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(lo.read()[..image.len()] == image[..]);
}

#[test]
fn without_yes_and_without_a_terminal_nothing_is_written() {
    let _serial = serial();
    let d = scratch();
    let (img, _) = test_image(d.path(), 8);
    let lo = Loop::new(d.path(), "ask", 16 * MIB, 0x11);
    let before = lo.read();
    let o = oa(&["flash", img.to_str().unwrap(), &lo.dev]);
    assert!(!o.status.success());
    let e = stderr(&o);
    assert!(e.contains("not confirmed") && e.contains("--yes") && e.contains("nothing was written"), "{e}");
    assert!(e.contains(&lo.dev) && e.contains("16.0 MiB"), "the device is shown before asking: {e}");
    assert!(lo.read() == before);
}

#[test]
fn regular_files_need_allow_file_and_keep_their_size() {
    let _serial = serial();
    let d = scratch();
    let (img, _) = test_image(d.path(), 8);
    let f = d.path().join("stick.img");
    std::fs::write(&f, vec![0u8; 4 * MIB as usize]).unwrap();
    let o = oa(&["flash", img.to_str().unwrap(), f.to_str().unwrap(), "--yes"]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("--allow-file"), "{}", stderr(&o));
    let o = oa(&["flash", img.to_str().unwrap(), f.to_str().unwrap(), "--yes", "--allow-file"]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("larger than"), "{}", stderr(&o));
    assert_eq!(std::fs::metadata(&f).unwrap().len(), 4 * MIB);
    // A new file is created with the image's size.
    let n = d.path().join("new.img");
    let o = oa(&["flash", img.to_str().unwrap(), n.to_str().unwrap(), "--yes", "--allow-file"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(std::fs::metadata(&n).unwrap().len(), 8 * MIB);
    // A partition path, a folder and a character device are not disks.
    let o = oa(&["flash", img.to_str().unwrap(), "/dev/null", "--yes"]);
    assert!(stderr(&o).contains("character device"), "{}", stderr(&o));
    let o = oa(&["flash", img.to_str().unwrap(), "/dev/oa-no-such-disk", "--yes", "--allow-file"]);
    assert!(stderr(&o).contains("no such device"), "{}", stderr(&o));
}

#[test]
fn a_damaged_image_fails_the_check_and_the_device_is_wiped() {
    let _serial = serial();
    let d = scratch();
    let (img, _) = test_image(d.path(), 8);
    // Change a mapped byte after the bmap was made: the image no longer matches its bmap.
    let f = std::fs::OpenOptions::new().write(true).open(&img).unwrap();
    f.write_all_at(&[0x77], 2 * MIB + 4096 + 10).unwrap();
    drop(f);
    let lo = Loop::new(d.path(), "wipe", 16 * MIB, 0xaa);
    let o = oa(&["flash", img.to_str().unwrap(), &lo.dev, "--yes"]);
    assert!(!o.status.success());
    let e = stderr(&o);
    assert!(e.contains("sha256") && e.contains("block map"), "{e}");
    assert!(e.contains("overwritten with zeros so that nothing half-written boots"), "{e}");
    let dev = lo.read();
    let zero = |a: u64, b: u64| dev[a as usize..b as usize].iter().all(|&x| x == 0);
    assert!(zero(0, MIB), "first MiB wiped");
    assert!(zero(7 * MIB, 8 * MIB), "the image's last MiB (backup GPT) wiped");
    assert!(zero(15 * MIB, 16 * MIB), "the device's last MiB wiped");
}

#[test]
fn a_bmap_for_another_image_is_refused_before_writing() {
    let _serial = serial();
    let d = scratch();
    let (img, _) = test_image(d.path(), 8);
    let other = scratch();
    test_image(other.path(), 9);
    let lo = Loop::new(d.path(), "bmap", 16 * MIB, 0xaa);
    let before = lo.read();
    let bm = other.path().join("disk.img.bmap");
    let o = oa(&["flash", img.to_str().unwrap(), &lo.dev, "--yes", "--bmap", bm.to_str().unwrap()]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("is for an image of"), "{}", stderr(&o));
    assert!(lo.read() == before);
}

#[test]
fn dry_run_prints_the_plan_and_writes_nothing() {
    let _serial = serial();
    let d = scratch();
    let (img, _) = test_image(d.path(), 8);
    let b = Bmap::parse(&std::fs::read_to_string(d.path().join("disk.img.bmap")).unwrap()).unwrap();
    // An existing file: same bytes afterwards.
    let f = d.path().join("stick.img");
    std::fs::write(&f, vec![0x33u8; 16 * MIB as usize]).unwrap();
    let o = oa(&["flash", img.to_str().unwrap(), f.to_str().unwrap(), "--allow-file", "--dry-run"]);
    let out = String::from_utf8_lossy(&o.stdout).to_string();
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stderr(&o).contains("nothing was written"), "{}", stderr(&o));
    assert!(std::fs::read(&f).unwrap().iter().all(|&x| x == 0x33), "the file is untouched");
    // Every extent of the block map, with its checksum, and the checks made.
    assert!(out.contains(&format!("would write {} extent(s)", b.ranges.len())), "{out}");
    for r in &b.ranges {
        let (a, z) = r.bytes(b.block_size, b.image_size);
        assert!(out.contains(&format!("bytes {a}..{z} (")) && out.contains(&r.sha256), "{out}");
    }
    assert!(out.contains("checks passed:") && out.contains("block map") && out.contains("at least as large"), "{out}");
    assert!(out.contains("holds: data of unknown kind"), "{out}");
    // A missing file is not created.
    let n = d.path().join("new.img");
    let o = oa(&["flash", img.to_str().unwrap(), n.to_str().unwrap(), "--allow-file", "--dry-run", "--no-bmap"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = String::from_utf8_lossy(&o.stdout).to_string();
    assert!(out.contains("would write 1 extent(s)") && out.contains("bytes 0..8388608"), "{out}");
    assert!(out.contains("would be created"), "{out}");
    assert!(!n.exists(), "no file was created");
    // A loop device: the plan names it whole and its sector size; its bytes are unchanged.
    let lo = Loop::new(d.path(), "dry", 16 * MIB, 0x44);
    let before = lo.read();
    let o = oa(&["flash", img.to_str().unwrap(), &lo.dev, "--dry-run"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = String::from_utf8_lossy(&o.stdout).to_string();
    assert!(out.contains("is a whole disk") && out.contains("logical sectors of 512 bytes"), "{out}");
    assert!(lo.read() == before);
    // Refusals still apply.
    let small = d.path().join("small.img");
    std::fs::write(&small, vec![0u8; MIB as usize]).unwrap();
    let o = oa(&["flash", img.to_str().unwrap(), small.to_str().unwrap(), "--allow-file", "--dry-run"]);
    assert!(!o.status.success() && stderr(&o).contains("larger than"), "{}", stderr(&o));
}

#[test]
fn a_device_with_4096_byte_sectors_is_refused() {
    let _serial = serial();
    let d = scratch();
    let (img, _) = test_image(d.path(), 8);
    let lo = Loop::sparse(d.path(), "4kn", 16 * MIB, 0xaa, 4096);
    let before = lo.read();
    for extra in [&["--yes"][..], &["--dry-run"][..]] {
        let mut args = vec!["flash", img.to_str().unwrap(), lo.dev.as_str()];
        args.extend_from_slice(extra);
        let o = oa(&args);
        assert!(!o.status.success(), "{extra:?}");
        let e = stderr(&o);
        assert!(e.contains(&lo.dev) && e.contains("logical sectors of 4096 bytes") && e.contains("512-byte"), "{e}");
    }
    assert!(lo.read() == before, "nothing was written");
}

/// A large image written without its bmap, `oa flash` stopped by `signal` once the first
/// progress line (a quarter written) shows. Returns what it printed and how it ended.
fn flash_and_signal(img: &Path, dev: &str, signal: nix::sys::signal::Signal) -> (String, std::process::ExitStatus) {
    use std::io::BufRead;
    let mut child = Command::new(env!("CARGO_BIN_EXE_oa"))
        .args(["flash", img.to_str().unwrap(), dev, "--yes", "--no-bmap"])
        .stdin(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut err = std::io::BufReader::new(child.stderr.take().unwrap());
    let mut text = String::new();
    loop {
        let mut line = String::new();
        assert!(err.read_line(&mut line).unwrap() > 0, "oa ended before writing: {text}");
        text.push_str(&line);
        if line.starts_with("writing") {
            break;
        }
    }
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(child.id() as i32), signal).unwrap();
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut err, &mut rest).unwrap();
    text.push_str(&rest);
    (text, child.wait().unwrap())
}

/// A big sparse GPT image (its table in the first MiB, data at the end).
fn big_image(dir: &Path) -> PathBuf {
    let (img, _) = test_image(dir, 8);
    let f = std::fs::OpenOptions::new().write(true).open(&img).unwrap();
    let layout_head = std::fs::read(&img).unwrap()[..MIB as usize].to_vec();
    f.set_len(384 * MIB).unwrap();
    f.write_all_at(&layout_head, 0).unwrap();
    drop(f);
    img
}

#[test]
fn the_first_mib_is_written_last_so_a_cut_write_leaves_no_table() {
    let _serial = serial();
    let d = scratch();
    let img = big_image(d.path());
    let lo = Loop::sparse(d.path(), "cut", 400 * MIB, 0xaa, 512);
    // SIGKILL (as a power cut or a pulled cable): nothing can clean up, and the first MiB is
    // still the zeros written before anything else.
    let (e, st) = flash_and_signal(&img, &lo.dev, nix::sys::signal::Signal::SIGKILL);
    assert!(!st.success(), "{e}");
    let head = lo.read_range(0, MIB);
    assert!(head.iter().all(|&b| b == 0), "the first MiB holds no table after a cut write: {e}");
    assert!(oa_builder::flash::describe(&lo.read_range(0, 70 * 1024))[0].starts_with("zeros"));
}

#[test]
fn sighup_and_sigterm_wipe_and_report() {
    let _serial = serial();
    let d = scratch();
    let img = big_image(d.path());
    let lo = Loop::sparse(d.path(), "hup", 400 * MIB, 0xaa, 512);
    for sig in [nix::sys::signal::Signal::SIGHUP, nix::sys::signal::Signal::SIGTERM] {
        let (e, st) = flash_and_signal(&img, &lo.dev, sig);
        assert!(!st.success(), "{sig}: {e}");
        assert!(
            e.contains("interrupted") && e.contains("overwritten with zeros so that nothing half-written boots"),
            "{sig}: {e}"
        );
        assert!(lo.read_range(0, MIB).iter().all(|&b| b == 0), "{sig}: first MiB wiped");
        assert!(lo.read_range(399 * MIB, MIB).iter().all(|&b| b == 0), "{sig}: last MiB wiped");
    }
}

#[test]
fn a_stale_backup_gpt_at_the_end_of_a_larger_device_is_cleared() {
    let _serial = serial();
    let d = scratch();
    let lo = Loop::new(d.path(), "stale", 64 * MIB, 0);
    // A 64 MiB GPT first: its backup table fills the device's last 33 sectors.
    let big = scratch();
    let (img64, _) = test_image(big.path(), 64);
    let o = oa(&["flash", img64.to_str().unwrap(), &lo.dev, "--yes"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(&lo.read_range(64 * MIB - 512, 8), b"EFI PART", "the backup GPT header is in the last sector");
    let (img8, _) = test_image(d.path(), 8);
    let o = oa(&["flash", img8.to_str().unwrap(), &lo.dev, "--yes"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(lo.read_range(63 * MIB, MIB).iter().all(|&b| b == 0), "the old backup GPT is gone");
    assert_eq!(&lo.read_range(8 * MIB - 512, 8), b"EFI PART", "the new image's backup GPT is in place");
}

#[test]
fn a_device_swapped_between_the_question_and_the_answer_is_not_written() {
    let _serial = serial();
    use std::io::{Read, Write};
    let d = scratch();
    let (img, _) = test_image(d.path(), 8);
    let lo = Loop::new(d.path(), "asked", 16 * MIB, 0x11);
    let other = d.path().join("other");
    std::fs::write(&other, vec![0x55u8; 16 * MIB as usize]).unwrap();
    // A terminal for the question (script(1) gives oa a pty and relays our stdin to it).
    let cmd = format!("{} flash {} {}", env!("CARGO_BIN_EXE_oa"), img.display(), lo.dev);
    let mut child = Command::new("script")
        .args(["-q", "-e", "-c", &cmd, "/dev/null"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = child.stdout.take().unwrap();
    let mut seen = Vec::new();
    while !String::from_utf8_lossy(&seen).contains("Type yes") {
        let mut b = [0u8; 512];
        let n = out.read(&mut b).unwrap();
        assert!(n > 0, "no question: {}", String::from_utf8_lossy(&seen));
        seen.extend_from_slice(&b[..n]);
    }
    // Swap: detach the loop device and attach another file under the same name. While oa
    // holds the device open the kernel only marks it for detaching and the same name cannot
    // be reused; had oa closed it, the other file would be what the path opens now.
    run("losetup", &["-d", &lo.dev]);
    let reattached = Command::new("losetup").args([&lo.dev, other.to_str().unwrap()]).status().unwrap().success();
    child.stdin.as_mut().unwrap().write_all(b"yes\n").unwrap();
    let mut rest = Vec::new();
    out.read_to_end(&mut rest).unwrap();
    seen.extend_from_slice(&rest);
    let st = child.wait().unwrap();
    let text = String::from_utf8_lossy(&seen).to_string();
    assert!(std::fs::read(&other).unwrap().iter().all(|&b| b == 0x55), "the other file is untouched: {text}");
    if reattached {
        assert!(!st.success() && text.contains("changed between the check and the write"), "{text}");
    } else {
        // The device shown is the one written (through the descriptor held since the question).
        assert!(st.success() && text.contains("wrote and verified"), "{text}");
    }
}
