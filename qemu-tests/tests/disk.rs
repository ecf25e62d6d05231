//! Disk image scenarios (issue 4): `disk.img` boots through the firmware and its boot loader,
//! as on a real machine from a USB stick: SeaBIOS -> gptmbr.bin -> syslinux, and OVMF ->
//! systemd-boot; both to the same kernel, initramfs, root partition and command line.
//!
//! A USB stick with a persistence partition (formatted on its first boot, a file kept across a
//! reboot and a power cut) is the example environment examples/usb-persistence.toml, run by
//! tests/lab.rs.

use oa_builder::build::read_manifest;
use oa_builder::qemu::{detect_accel, DiskBoot, Firmware, Spec};
use oa_contract::manifest::artifact;
use oa_contract::{Arch, READY_LINE};
use oa_qemu_tests::{built, built_variant, oa_bin, uefi_firmware, workspace, Machine};
use std::path::{Path, PathBuf};
use std::time::Duration;

const BOOT: Duration = Duration::from_secs(120);
const SHORT: Duration = Duration::from_secs(30);

/// Boot `image` (snapshot: the file is not changed) under `firmware`.
fn disk_spec(image: &Path, snapshot: bool, firmware: Firmware) -> Spec {
    let disk = DiskBoot::detect(image, snapshot).expect("disk image");
    Spec::from_disk(Arch::X86_64, disk, firmware, detect_accel(Arch::X86_64))
}

fn tiny_disk() -> PathBuf {
    let dir = built("tiny");
    let m = read_manifest(&dir).expect("manifest of the tiny build");
    let a = m.artifact(artifact::DISK_IMAGE).expect("tiny's manifest lists disk.img ([image] disk = true)");
    assert!(a.sha256.len() == 64 && a.size > 0);
    dir.join(&a.path)
}

#[test]
fn tiny_disk_boots_to_ready_under_bios() {
    let mut vm = Machine::boot("disk_bios", &disk_spec(&tiny_disk(), true, Firmware::Bios));
    vm.expect("SYSLINUX", BOOT);
    let root = vm.expect_stage("root", "", BOOT);
    assert!(root.contains("/dev/vda2") && root.contains("PARTLABEL=oa-root"), "{root}");
    vm.expect_stage("verify", "sha256 matches", BOOT);
    vm.expect(READY_LINE, BOOT);
    vm.send_line(
        "echo EFI=$(test -d /sys/firmware/efi && echo yes || echo no) ROOT=$(grep -o 'oa.root=[^ ]*' /proc/cmdline)",
    );
    vm.expect("EFI=no ROOT=oa.root=PARTLABEL=oa-root", SHORT);
}

#[test]
fn tiny_disk_boots_to_ready_under_uefi() {
    let (fw, _vars) = uefi_firmware(Arch::X86_64);
    let mut vm = Machine::boot("disk_uefi", &disk_spec(&tiny_disk(), true, fw));
    vm.expect_stage("root", "", BOOT);
    vm.expect(READY_LINE, BOOT);
    vm.send_line(
        "echo EFI=$(test -d /sys/firmware/efi && echo yes || echo no) ROOT=$(grep -o 'oa.root=[^ ]*' /proc/cmdline)",
    );
    vm.expect("EFI=yes ROOT=oa.root=PARTLABEL=oa-root", SHORT);
}

#[test]
fn qcow2_with_a_persistence_partition_boots_and_the_partition_is_blank() {
    let dir = built_variant("tiny-disk-persist", "tiny", "[image]\ndisk = true\nqcow2 = true\npersistence_mib = 64\n");
    let m = read_manifest(&dir).expect("manifest");
    for a in [artifact::DISK_IMAGE, artifact::DISK_BMAP, artifact::DISK_QCOW2] {
        assert!(m.artifact(a).is_some(), "{a} in the manifest");
    }
    let qcow2 = dir.join(artifact::DISK_QCOW2);
    let mut vm = Machine::boot("disk_qcow2_persist", &disk_spec(&qcow2, true, Firmware::Bios));
    vm.expect(READY_LINE, BOOT);
    vm.send_line("echo PART=$(grep PARTNAME /sys/class/block/vda3/uevent) SIZE=$(cat /sys/class/block/vda3/size) BLANK=$(head -c 1048576 /dev/vda3 | tr -d '\\000' | wc -c)");
    vm.expect("PART=PARTNAME=oa-persist SIZE=131072 BLANK=0", SHORT);
}

#[test]
fn flash_to_a_file_then_boot_that_file_under_uefi() {
    let img = tiny_disk();
    // A "stick" larger than the image with old data on it: the block map skips the blank
    // ranges, so what was there stays there and must not matter.
    let dir = workspace().join("target/qemu-tests/flash");
    std::fs::create_dir_all(&dir).unwrap();
    let stick = dir.join("stick.img");
    std::fs::write(&stick, vec![0xa5u8; 48 << 20]).unwrap();
    let o = std::process::Command::new(oa_bin())
        .args(["flash", img.to_str().unwrap(), stick.to_str().unwrap(), "--allow-file", "--yes"])
        .output()
        .expect("running oa flash");
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "oa flash: {e}");
    assert!(e.contains("wrote and verified") && e.contains("block map"), "{e}");
    assert_eq!(std::fs::metadata(&stick).unwrap().len(), 48 << 20, "a file keeps its size, like a disk");
    let (fw, _vars) = uefi_firmware(Arch::X86_64);
    let mut vm = Machine::boot("disk_flashed_uefi", &disk_spec(&stick, false, fw));
    vm.expect(READY_LINE, BOOT);
    drop(vm);
    let _ = std::fs::remove_file(&stick);
}
