//! The hybrid ISO (issue 16): `oa.iso` of tiny-iso boots to ready as a CD-ROM (q35's AHCI)
//! and as a USB stick (usb-storage, the file written to it as with dd), under SeaBIOS
//! (isolinux) and OVMF (systemd-boot from the ISO's ESP). oa-init finds the ISO filesystem by
//! its volume id (`oa.root=LABEL=OA_TINY_ISO`, passed by both boot loaders), copies the root
//! image to RAM (`copytoram = "auto"`: a CD and a USB stick are removable) and releases the
//! medium; the CD is then ejected through the QEMU monitor and the system keeps running.

mod common;

use oa_builder::build::read_manifest;
use oa_builder::qemu::{detect_accel, DiskBoot, Firmware, Spec};
use oa_contract::manifest::{artifact, iso_volume_id};
use oa_contract::{Arch, READY_LINE};
use oa_qemu_tests::{built, uefi_firmware, Machine, Monitor};
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

const BOOT: Duration = Duration::from_secs(150);
const SHORT: Duration = Duration::from_secs(30);

fn tiny_iso() -> PathBuf {
    let dir = built("tiny-iso");
    let m = read_manifest(&dir).expect("manifest of tiny-iso");
    let a = m.artifact(artifact::ISO).expect("tiny-iso's manifest lists oa.iso ([image] iso = true)");
    assert!(a.size > 0 && a.sha256.len() == 64);
    dir.join(&a.path)
}

fn cd(firmware: Firmware) -> Spec {
    Spec::from_disk(Arch::X86_64, DiskBoot::cdrom(&tiny_iso()), firmware, detect_accel(Arch::X86_64))
}

/// The ISO file as a USB stick: the virtio disk of a disk boot becomes a usb-storage device.
fn stick(firmware: Firmware) -> Command {
    let disk = DiskBoot::detect(&tiny_iso(), true).expect("the ISO of tiny-iso");
    let s = Spec::from_disk(Arch::X86_64, disk, firmware, detect_accel(Arch::X86_64));
    let args: Vec<String> = s
        .args()
        .into_iter()
        .map(|a| {
            if a == "virtio-blk-pci,drive=disk0,bootindex=0" {
                "usb-storage,bus=xhci.0,drive=disk0,bootindex=0,id=stick".to_string()
            } else {
                a
            }
        })
        .collect();
    assert!(args.iter().any(|a| a.starts_with("usb-storage")), "the disk device was replaced: {args:?}");
    let mut c = Command::new(s.binary());
    c.args(["-device", "qemu-xhci,id=xhci"]).args(args);
    c
}

/// The machine `vm` boots to ready; check what oa-init says about the medium `dev`.
fn boot_to_ready(mut vm: Machine, dev: &str) -> Machine {
    let root = vm.expect_stage("root", "", BOOT);
    let label = format!("LABEL={}", iso_volume_id("tiny-iso"));
    assert!(root.contains("/run/oa/media/oa/rootfs.squashfs") && root.contains(&label), "{root}");
    common::expect_copied_to_ram(&mut vm, dev, BOOT);
    vm.expect(READY_LINE, BOOT);
    vm
}

fn efi(vm: &mut Machine, want: &str) {
    vm.send_line("echo EFI=$(test -d /sys/firmware/efi && echo yes || echo no)");
    vm.expect(&format!("EFI={want}"), SHORT);
}

#[test]
fn iso_as_a_cd_under_bios_boots_then_the_cd_is_ejected() {
    let mon = Monitor::new("iso_cd_bios");
    let mut spec = cd(Firmware::Bios);
    spec.extra.extend(mon.args());
    let mut vm = boot_to_ready(Machine::boot("iso_cd_bios", &spec), "sr0");
    efi(&mut vm, "no");
    let out = mon.run("eject -f cd0");
    assert!(!out.contains("rror"), "eject: {out}");
    vm.send_line("dd if=/dev/sr0 of=/dev/null bs=2048 count=1 2>/dev/null && echo MEDIUM=in || echo MEDIUM=out");
    vm.expect("MEDIUM=out", SHORT);
    common::runs_without_the_medium(&mut vm, "tiny-iso", SHORT);
}

#[test]
fn iso_as_a_cd_under_uefi_boots_to_ready() {
    let (fw, _vars) = uefi_firmware(Arch::X86_64);
    let mut vm = boot_to_ready(Machine::boot("iso_cd_uefi", &cd(fw)), "sr0");
    efi(&mut vm, "yes");
}

#[test]
fn iso_written_to_a_usb_stick_boots_under_bios() {
    let mut vm = boot_to_ready(Machine::start("iso_usb_bios", stick(Firmware::Bios)), "sda");
    efi(&mut vm, "no");
}

#[test]
fn iso_written_to_a_usb_stick_boots_under_uefi() {
    let (fw, _vars) = uefi_firmware(Arch::X86_64);
    let mut vm = boot_to_ready(Machine::start("iso_usb_uefi", stick(fw)), "sda");
    efi(&mut vm, "yes");
}
