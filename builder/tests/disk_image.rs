//! The disk image writer with the real tools (mtools, syslinux, systemd-boot's file), checked
//! from outside with other tools: util-linux's `partx` and `blkid` read the partition table
//! and the filesystems, mtools reads the ESP, `bmaptool copy` checks the block map. No QEMU
//! here: qemu-tests/tests/disk.rs boots the image under SeaBIOS and OVMF.

use oa_builder::image::{self, boot::BootFiles, DiskSpec};
use std::path::{Path, PathBuf};
use std::process::Command;

mod common;

const MIB: u64 = 1 << 20;

fn tool(cmd: &str, args: &[&str]) -> String {
    let o = Command::new(cmd).args(args).output().unwrap_or_else(|e| panic!("{cmd}: {e} (run `make deps`)"));
    assert!(o.status.success(), "{cmd} {args:?}: {}", String::from_utf8_lossy(&o.stderr));
    String::from_utf8_lossy(&o.stdout).to_string()
}

struct Inputs {
    _dir: tempfile::TempDir,
    kernel: PathBuf,
    initrd: PathBuf,
    rootfs: PathBuf,
    out: PathBuf,
}

/// A stand-in kernel and initramfs (the writer does not look inside them) and a real squashfs.
fn inputs() -> Inputs {
    let dir = tempfile::tempdir().unwrap();
    let kernel = dir.path().join("vmlinuz");
    let initrd = dir.path().join("initramfs.img");
    std::fs::write(&kernel, (0..3 * MIB).map(|i| (i % 251) as u8).collect::<Vec<u8>>()).unwrap();
    std::fs::write(&initrd, vec![7u8; 700_000]).unwrap();
    let tree = dir.path().join("tree");
    std::fs::create_dir_all(tree.join("etc")).unwrap();
    std::fs::write(tree.join("etc/hostname"), "disk-test\n").unwrap();
    let rootfs = dir.path().join("rootfs.squashfs");
    tool("mksquashfs", &[tree.to_str().unwrap(), rootfs.to_str().unwrap(), "-noappend", "-quiet", "-no-progress"]);
    let out = dir.path().join("out");
    std::fs::create_dir(&out).unwrap();
    Inputs { kernel, initrd, rootfs, out, _dir: dir }
}

fn cmdline() -> Vec<String> {
    image::disk_cmdline(&["console=ttyS0".to_string(), oa_contract::cmdline::word(oa_contract::cmdline::SHA256, "abc")])
}

fn spec<'a>(i: &'a Inputs, cl: &'a [String], persistence_mib: u32) -> DiskSpec<'a> {
    DiskSpec {
        title: "disk-test",
        arch: oa_contract::Arch::X86_64,
        kernel: &i.kernel,
        initrd: &i.initrd,
        rootfs: &i.rootfs,
        verity: None,
        cmdline: cl,
        persistence_mib,
        esp_mib: None,
        seed: b"test seed",
        uefi: oa_builder::image::boot::UefiLoader::SystemdBoot,
    }
}

#[test]
fn the_image_has_the_partitions_filesystems_and_boot_files() {
    let i = inputs();
    let files = BootFiles::locate(oa_contract::Arch::X86_64).expect("boot loader files (make deps)");
    let cl = cmdline();
    let img = i.out.join("disk.img");
    let disk = image::write_disk(&spec(&i, &cl, 32), &files, &img).unwrap();
    let p = img.to_str().unwrap();

    // The partition table as util-linux reads it (libblkid checks both GPT CRCs).
    let parts = tool("partx", &["--raw", "--noheadings", "--output", "NR,START,SECTORS,NAME,TYPE,FLAGS", p]);
    let rows: Vec<Vec<&str>> = parts.lines().map(|l| l.split(' ').collect()).collect();
    assert_eq!(rows.len(), 3, "{parts}");
    assert_eq!(rows[0][3], "oa-esp");
    assert_eq!(rows[0][4], "c12a7328-f81f-11d2-ba4b-00a0c93ec93b");
    assert_eq!(rows[0][5], "0x4", "legacy BIOS bootable: {parts}");
    assert_eq!((rows[1][3], rows[2][3]), ("oa-root", "oa-persist"));
    assert_eq!(rows[2][2], (32 * 2048).to_string());
    for r in &rows {
        assert_eq!(r[1].parse::<u64>().unwrap() % 2048, 0, "aligned to 1 MiB: {r:?}");
    }

    // The MBR boot code is syslinux's gptmbr.bin.
    let data = std::fs::read(&img).unwrap();
    let mbr = std::fs::read(&files.gptmbr).unwrap();
    assert_eq!(&data[..mbr.len()], &mbr[..]);

    // Filesystems: FAT on the ESP (with syslinux's boot sector), the squashfs byte for byte.
    let esp = &disk.layout.partitions[0];
    let root = &disk.layout.partitions[1];
    let t = tool("blkid", &["-p", "-O", &esp.offset().to_string(), "-o", "export", p]);
    assert!(t.contains("TYPE=vfat") && t.contains("LABEL=OA-ESP"), "{t}");
    assert_eq!(&data[esp.offset() as usize + 3..esp.offset() as usize + 11], b"SYSLINUX");
    let sq = std::fs::read(&i.rootfs).unwrap();
    assert!(data[root.offset() as usize..root.offset() as usize + sq.len()] == sq[..]);
    let t = tool("blkid", &["-p", "-O", &root.offset().to_string(), "-o", "export", p]);
    assert!(t.contains("TYPE=squashfs"), "{t}");

    // The persistence partition is blank: no signature for oa-init to refuse.
    let persist = &disk.layout.partitions[2];
    assert!(data[persist.offset() as usize..(persist.offset() + persist.size()) as usize].iter().all(|&b| b == 0));

    // The ESP's files, read back with mtools.
    let fat = format!("{p}@@{}", esp.offset());
    let listing = tool("mdir", &["-i", &fat, "-a", "-b", "-/", "::/"]);
    for f in [
        "::/vmlinuz",
        "::/initramfs.img",
        "::/syslinux.cfg",
        "::/ldlinux.sys",
        "::/ldlinux.c32",
        "::/EFI/BOOT/BOOTX64.EFI",
        "::/loader/loader.conf",
        "::/loader/entries/oa.conf",
    ] {
        assert!(listing.lines().any(|l| l.eq_ignore_ascii_case(f)), "{f} on the ESP:\n{listing}");
    }
    let read = |f: &str| tool("mtype", &["-i", &fat, &format!("::/{f}")]);
    let copy = i.out.join("k");
    tool("mcopy", &["-i", &fat, "::/vmlinuz", copy.to_str().unwrap()]);
    assert_eq!(std::fs::read(&copy).unwrap(), std::fs::read(&i.kernel).unwrap());
    let (sys, entry) = (read("syslinux.cfg"), read("loader/entries/oa.conf"));
    let want = "console=ttyS0 oa.sha256=abc oa.root=PARTLABEL=oa-root";
    assert_eq!(image::boot::config_cmdline(&sys).as_deref(), Some(want), "{sys}");
    assert_eq!(image::boot::config_cmdline(&entry).as_deref(), Some(want), "{entry}");

    // The block map: maps the table, the ESP, the root image and the edges of the blank
    // partition; leaves the rest of it out; bmaptool accepts it and copies a bootable image.
    let b = &disk.bmap;
    let mapped = |off: u64| b.ranges.iter().any(|r| r.first * 4096 <= off && off < (r.last + 1) * 4096);
    assert!(mapped(0) && mapped(esp.offset() + esp.size() - 1) && mapped(root.offset()) && mapped(persist.offset()));
    assert!(mapped(persist.offset() + persist.size() - 1) && mapped(disk.layout.size_bytes() - 1));
    assert!(!mapped(persist.offset() + persist.size() / 2));
    std::fs::write(i.out.join("disk.img.bmap"), b.to_xml()).unwrap();
    let dst = i.out.join("copy.img");
    tool("bmaptool", &["copy", p, dst.to_str().unwrap()]);
    let parts2 = tool(
        "partx",
        &["--raw", "--noheadings", "--output", "NR,START,SECTORS,NAME,TYPE,FLAGS", dst.to_str().unwrap()],
    );
    assert_eq!(parts, parts2);
}

#[test]
fn the_same_inputs_give_the_same_bytes() {
    let i = inputs();
    let files = BootFiles::locate(oa_contract::Arch::X86_64).expect("boot loader files (make deps)");
    let cl = cmdline();
    let a = i.out.join("a.img");
    let b = i.out.join("b.img");
    image::write_disk(&spec(&i, &cl, 0), &files, &a).unwrap();
    std::thread::sleep(std::time::Duration::from_millis(1100)); // a different wall-clock second
    image::write_disk(&spec(&i, &cl, 0), &files, &b).unwrap();
    assert!(std::fs::read(&a).unwrap() == std::fs::read(&b).unwrap(), "disk.img is reproducible");
}

#[test]
fn a_too_small_esp_is_refused_with_the_size_needed() {
    let i = inputs();
    let files = BootFiles::locate(oa_contract::Arch::X86_64).expect("boot loader files (make deps)");
    let cl = cmdline();
    let mut s = spec(&i, &cl, 0);
    s.esp_mib = Some(8);
    std::fs::write(&i.kernel, vec![1u8; 9 * MIB as usize]).unwrap();
    let img = i.out.join("disk.img");
    let e = image::write_disk(&s, &files, &img).unwrap_err().to_string();
    assert!(e.contains("image.esp_mib = 8 is too small") && e.contains("at least"), "{e}");
    assert!(!Path::new(&img).exists(), "nothing written");
}

/// `oa run --disk` bad input: refused before QEMU starts.
#[test]
fn run_disk_without_a_disk_image_or_with_append_is_refused() {
    let d = tempfile::tempdir().unwrap();
    common::write_manifest(d.path(), "p");
    let oa = |args: &[&str]| Command::new(env!("CARGO_BIN_EXE_oa")).args(args).env("OA_ACCEL", "tcg").output().unwrap();
    let o = oa(&["run", d.path().to_str().unwrap(), "--disk", "--until-ready"]);
    assert!(!o.status.success());
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(e.contains("has no disk.img") && e.contains("[image] disk = true"), "{e}");
    let img = d.path().join("x.img");
    let mut b = vec![0u8; 4096];
    b[510] = 0x55;
    b[511] = 0xaa;
    std::fs::write(&img, &b).unwrap();
    let o = oa(&["run", img.to_str().unwrap(), "--append", oa_contract::cmdline::SHELL, "--until-ready"]);
    assert!(!o.status.success());
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(e.contains("--append") && e.contains("syslinux.cfg"), "{e}");
}

/// With dm-verity the root image file is the data and its hash tree: disk.img holds the data in
/// `oa-root` and the tree in a partition of its own, `oa-verity`, which the command line names.
#[test]
fn a_verity_root_gets_its_hash_tree_in_a_partition_of_its_own() {
    let i = inputs();
    let files = BootFiles::locate(oa_contract::Arch::X86_64).expect("boot loader files (make deps)");
    // A root image of some 150 blocks (incompressible), so that it has a tree of 2 blocks.
    let tree = i.out.join("tree");
    std::fs::create_dir_all(&tree).unwrap();
    let mut x: u32 = 1;
    let noise: Vec<u8> = (0..600_000)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x as u8
        })
        .collect();
    std::fs::write(tree.join("noise"), noise).unwrap();
    tool("mksquashfs", &[tree.to_str().unwrap(), i.rootfs.to_str().unwrap(), "-noappend", "-quiet", "-no-progress"]);
    let data = std::fs::read(&i.rootfs).unwrap();
    let v = oa_builder::stages::verity::append_tree(&i.rootfs, "00ff").unwrap();
    let whole = std::fs::read(&i.rootfs).unwrap();
    let data_len = (v.data_blocks * 4096) as usize;
    assert!(whole.len() > data_len && whole.starts_with(&data));
    let cl = image::disk_cmdline(&[oa_contract::cmdline::word(oa_contract::cmdline::VERITY, &v)]);
    let tree_word =
        oa_contract::cmdline::word(oa_contract::cmdline::VERITY_HASH, oa_contract::cmdline::disk_verity_hash());
    assert!(cl.contains(&tree_word), "{cl:?}");
    let img = i.out.join("disk.img");
    let mut s = spec(&i, &cl, 0);
    s.verity = Some(&v);
    image::write_disk(&s, &files, &img).unwrap();
    let p = img.to_str().unwrap();
    let parts = tool("partx", &["--raw", "--noheadings", "--output", "NR,START,SECTORS,NAME", p]);
    let rows: Vec<Vec<&str>> = parts.lines().map(|l| l.split(' ').collect()).collect();
    let names: Vec<&str> = rows.iter().map(|r| r[3]).collect();
    assert_eq!(names, ["oa-esp", "oa-root", "oa-verity"], "{parts}");
    let bytes = std::fs::read(&img).unwrap();
    let at = |r: &[&str]| r[1].parse::<usize>().unwrap() * 512;
    let (root, tree) = (at(&rows[1]), at(&rows[2]));
    assert_eq!(&bytes[root..root + data_len], &whole[..data_len]);
    assert_eq!(&bytes[tree..tree + whole.len() - data_len], &whole[data_len..]);
    // The root partition holds the data only (the rest of its last MiB reads as zeros).
    let root_end = root + rows[1][2].parse::<usize>().unwrap() * 512;
    assert!(root_end <= tree && bytes[root + data_len..root_end].iter().all(|&b| b == 0));
    // A root image that is not what its verity facts say is refused, nothing written.
    let mut w = v.clone();
    w.data_blocks += 1;
    s.verity = Some(&w);
    let e = image::write_disk(&s, &files, &i.out.join("bad.img")).unwrap_err().to_string();
    assert!(e.contains("verity facts"), "{e}");
    assert!(!i.out.join("bad.img").exists());
}
