//! Raspberry Pi outputs of profiles/rpi4-ssh.toml: the `rpi/` tree and `rpi.img` layout (MBR,
//! FAT boot partition contents, config.txt / cmdline.txt, root image on partition 2), and a
//! boot of `rpi.img` on QEMU's Raspberry Pi 3B model with the real bcm2837-rpi-3-b.dtb, from
//! the SD card to the ready line.

use oa_builder::build::read_manifest;
use oa_builder::rpi::{parse_mbr, TYPE_FAT32_LBA, TYPE_LINUX};
use oa_contract::READY_LINE;
use oa_qemu_tests::{built, workspace, Machine};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

fn mtools(args: &[&str]) -> String {
    let o = Command::new(args[0])
        .args(&args[1..])
        .env("MTOOLS_SKIP_CHECK", "1")
        .env("MTOOLSRC", "/dev/null")
        .output()
        .expect("mtools");
    assert!(o.status.success(), "{args:?}: {}", String::from_utf8_lossy(&o.stderr));
    String::from_utf8_lossy(&o.stdout).to_string()
}

#[test]
fn rpi_image_layout_and_boot_files() {
    let dir = built("rpi4-ssh");
    let m = read_manifest(&dir).unwrap();
    let img = dir.join("rpi.img");
    let a = m.artifact("rpi.img").expect("rpi.img in the manifest");
    assert_eq!(a.size, std::fs::metadata(&img).unwrap().len());

    // MBR: a bootable FAT32 (LBA) partition at 1 MiB, then the root image partition.
    let data = std::fs::read(&img).unwrap();
    let (_id, parts) = parse_mbr(&data[..512]).unwrap();
    assert_eq!(parts.len(), 2);
    assert!(parts[0].bootable && parts[0].kind == TYPE_FAT32_LBA && parts[0].start_lba == 2048, "{parts:?}");
    assert_eq!(parts[1].kind, TYPE_LINUX);
    assert!(
        parts[1].start_lba as u64 >= parts[0].start_lba as u64 + parts[0].sectors as u64,
        "partitions overlap: {parts:?}"
    );
    let root = std::fs::read(dir.join("rootfs.squashfs")).unwrap();
    let off = parts[1].start_lba as usize * 512;
    assert!(data[off..off + root.len()] == root[..], "partition 2 holds the root image byte for byte");

    // The FAT holds the firmware, the kernel, the initramfs, device trees and the two text files.
    let target = format!("{}@@{}", img.display(), parts[0].start_lba as u64 * 512);
    let listing = mtools(&["mdir", "-b", "-i", &target, "::/"]);
    for f in [
        "bootcode.bin",
        "start.elf",
        "start4.elf",
        "fixup.dat",
        "fixup4.dat",
        "kernel8.img",
        "initramfs.img",
        "config.txt",
        "cmdline.txt",
        "bcm2711-rpi-4-b.dtb",
        "bcm2837-rpi-3-b.dtb",
    ] {
        assert!(listing.contains(&format!("::/{f}")), "{f} missing from the boot partition:\n{listing}");
    }
    let config = mtools(&["mtype", "-i", &target, "::/config.txt"]);
    assert_eq!(config, std::fs::read_to_string(dir.join("rpi/config.txt")).unwrap());
    for line in [
        "arm_64bit=1",
        "kernel=kernel8.img",
        "initramfs initramfs.img followkernel",
        "enable_uart=1",
        "dtparam=audio=off",
    ] {
        assert!(config.lines().any(|l| l == line), "config.txt lacks {line}:\n{config}");
    }
    let cmdline = mtools(&["mtype", "-i", &target, "::/cmdline.txt"]);
    assert_eq!(cmdline.lines().count(), 1, "cmdline.txt is one line");
    let root_sha = &m.artifact("rootfs.squashfs").unwrap().sha256;
    assert!(cmdline.contains(&oa_contract::cmdline::word(oa_contract::cmdline::SHA256, root_sha)), "{cmdline}");
    // The kernel on the card is the build's kernel.
    let kernel = mtools(&["mdir", "-i", &target, "::/kernel8.img"]);
    let ksize = std::fs::metadata(dir.join("vmlinuz")).unwrap().len().to_string();
    assert!(kernel.replace(' ', "").contains(&ksize), "kernel8.img size differs from vmlinuz ({ksize}):\n{kernel}");
}

#[test]
fn rpi_image_boots_to_ready_on_a_raspberry_pi_3b_model() {
    let dir = built("rpi4-ssh");
    let tree = dir.join("rpi");
    // QEMU wants an SD card whose size is a power of two.
    let sd = workspace().join("target/qemu-tests/rpi3b-sd.img");
    std::fs::copy(dir.join("rpi.img"), &sd).unwrap();
    let len = std::fs::metadata(&sd).unwrap().len().next_power_of_two();
    std::fs::OpenOptions::new().write(true).open(&sd).unwrap().set_len(len).unwrap();
    // The card's cmdline, with the console on the PL011 UART that QEMU's raspi3b puts on stdio.
    let cmdline = std::fs::read_to_string(tree.join("cmdline.txt")).unwrap();
    let append: Vec<&str> = cmdline.split_whitespace().filter(|w| !w.starts_with("console=")).collect();
    let mut cmd = Command::new("qemu-system-aarch64");
    cmd.args(["-M", "raspi3b", "-accel", "tcg", "-display", "none", "-monitor", "none", "-serial", "stdio"]);
    let arg = |p: &Path| p.display().to_string();
    cmd.args(["-kernel", &arg(&tree.join("kernel8.img")), "-dtb", &arg(&tree.join("bcm2837-rpi-3-b.dtb"))]);
    cmd.args(["-initrd", &arg(&tree.join("initramfs.img"))]);
    cmd.arg("-append").arg(format!("{} console=ttyAMA0", append.join(" ")));
    cmd.arg("-drive").arg(format!("file={},if=sd,format=raw", sd.display()));
    let mut vm = Machine::start("rpi3b_sd_boot", cmd);
    vm.expect_stage("root", "found /dev/mmcblk0p2", Duration::from_secs(90));
    vm.expect("service sshd started", Duration::from_secs(60));
    let ready = vm.expect(READY_LINE, Duration::from_secs(60));
    assert!(ready.contains("host=rpi4"), "{ready}");
    // dropbear (dynamically linked against the arm64 libc from the Debian packages) keeps
    // running: a missing library or a bad binary would exit at once (status 127) and be
    // reported by the supervisor.
    vm.expect_absent("service sshd exited", Duration::from_secs(5));
    // raspi3b cannot power off (poweroff only halts there): dropping the machine stops QEMU.
    drop(vm);
    let _ = std::fs::remove_file(&sd);
}
