//! Boots on real machines (issue 12): tiny's `disk.img` attached the way a PC sees the medium
//! (a USB stick on xHCI or EHCI, an NVMe drive, a SATA disk on AHCI), booted by SeaBIOS or
//! OVMF from plain QEMU arguments, and oa-init's coldplug loading the drivers the machine
//! needs from the initramfs's default driver classes. virtio is tests/disk.rs; the e1000e
//! netboot is tests/pxe.rs.
//!
//! A machine whose only disk has no driver (`oa.blacklist=ahci`) stops with a FATAL line that
//! names the unclaimed controller.
//!
//! Every disk is attached with `snapshot=on`: the built image is never changed.

use oa_builder::build::read_manifest;
use oa_builder::qemu::{detect_accel, DiskBoot, Firmware, Spec};
use oa_contract::cmdline::{self, Cmdline};
use oa_contract::manifest::artifact;
use oa_contract::{Arch, ConsoleLine, FATAL_PREFIX, READY_LINE};
use oa_qemu_tests::{built, uefi_firmware, Machine};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

const BOOT: Duration = Duration::from_secs(120);
const SHORT: Duration = Duration::from_secs(30);

/// How the disk image is attached.
#[derive(Clone, Copy)]
enum Medium {
    /// A USB stick on a USB 3 (xHCI) controller.
    UsbXhci,
    /// A USB stick on a USB 2 (EHCI) controller.
    UsbEhci,
    /// An NVMe drive.
    Nvme,
    /// A SATA disk on an AHCI controller.
    Sata,
}

impl Medium {
    /// The QEMU arguments that attach `image` (read through a throw-away overlay).
    fn args(self, image: &Path, bootindex: bool) -> Vec<String> {
        let drive = format!("if=none,id=d0,file={},format=raw,snapshot=on", image.display());
        let boot = if bootindex { ",bootindex=1" } else { "" };
        let devices: Vec<String> = match self {
            Medium::UsbXhci => vec!["qemu-xhci,id=xhci".into(), format!("usb-storage,bus=xhci.0,drive=d0{boot}")],
            Medium::UsbEhci => vec!["usb-ehci,id=ehci".into(), format!("usb-storage,bus=ehci.0,drive=d0{boot}")],
            Medium::Nvme => vec![format!("nvme,serial=oa,drive=d0{boot}")],
            Medium::Sata => vec!["ahci,id=ahci".into(), format!("ide-hd,drive=d0,bus=ahci.0{boot}")],
        };
        let mut a = vec!["-drive".to_string(), drive];
        for d in devices {
            a.push("-device".into());
            a.push(d);
        }
        a
    }
}

fn tiny_disk() -> PathBuf {
    let dir = built("tiny");
    let m = read_manifest(&dir).expect("manifest of the tiny build");
    let a = m.artifact(artifact::DISK_IMAGE).expect("tiny's manifest lists disk.img ([image] disk = true)");
    dir.join(&a.path)
}

/// `Spec::from_disk`'s command line (machine, accelerator, firmware, console) with its virtio
/// disk replaced by `medium`: the firmware finds the image on that bus, as a PC would.
fn firmware_boot(name: &str, image: &Path, firmware: Firmware, medium: Medium) -> Machine {
    let disk = DiskBoot::detect(image, true).expect("disk image");
    let spec = Spec::from_disk(Arch::X86_64, disk, firmware, detect_accel(Arch::X86_64));
    let from = spec.args();
    let mut args = Vec::new();
    let mut dropped = 0;
    let mut i = 0;
    while i < from.len() {
        let pair = from.get(i + 1).map(String::as_str).unwrap_or("");
        let virtio_disk = (from[i] == "-drive" && pair.contains("id=disk0"))
            || (from[i] == "-device" && pair.starts_with("virtio-blk-pci"));
        if virtio_disk {
            dropped += 1;
            i += 2;
        } else {
            args.push(from[i].clone());
            i += 1;
        }
    }
    assert_eq!(dropped, 2, "Spec::from_disk attaches the image as one -drive and one virtio-blk-pci: {from:?}");
    args.extend(medium.args(image, true));
    let mut cmd = Command::new(spec.binary());
    cmd.args(&args);
    Machine::start(name, cmd)
}

/// The coldplug line of `module`: `oa-init: stage modules: <module> (<modalias>)`.
fn coldplug_line(module: &str) -> String {
    ConsoleLine::Stage { name: "modules", text: &format!("{module} (") }.to_string()
}

/// The root partition is `device`, the machine gets to the ready line, and coldplug loaded
/// each of `modules` for a device it found.
fn boots_from(vm: &mut Machine, device: &str, modules: &[&str]) {
    let root = vm.expect_stage("root", "found ", BOOT);
    if !root.contains(&format!("found {device} (")) || !root.contains("PARTLABEL=oa-root") {
        vm.fail(&format!("the root is not {device} (PARTLABEL=oa-root): `{root}`"));
    }
    vm.expect_ready(BOOT);
    let console = vm.console();
    let missing: Vec<&&str> = modules.iter().filter(|m| !console.contains(&coldplug_line(m))).collect();
    if !missing.is_empty() {
        vm.fail(&format!("no coldplug line for {missing:?} (`{}...`)", coldplug_line(missing[0])));
    }
}

#[test]
fn usb_stick_on_xhci_boots_under_bios() {
    let mut vm = firmware_boot("drivers_usb_xhci_bios", &tiny_disk(), Firmware::Bios, Medium::UsbXhci);
    vm.expect("SYSLINUX", BOOT);
    boots_from(&mut vm, "/dev/sda2", &["xhci_pci", "usb_storage"]);
}

#[test]
fn usb_stick_on_xhci_boots_under_uefi() {
    let (fw, _vars) = uefi_firmware(Arch::X86_64);
    let mut vm = firmware_boot("drivers_usb_xhci_uefi", &tiny_disk(), fw, Medium::UsbXhci);
    boots_from(&mut vm, "/dev/sda2", &["xhci_pci", "usb_storage"]);
}

#[test]
fn usb_stick_on_ehci_boots_under_bios() {
    let mut vm = firmware_boot("drivers_usb_ehci_bios", &tiny_disk(), Firmware::Bios, Medium::UsbEhci);
    boots_from(&mut vm, "/dev/sda2", &["ehci_pci", "usb_storage"]);
}

#[test]
fn nvme_drive_boots_under_uefi() {
    let (fw, _vars) = uefi_firmware(Arch::X86_64);
    let mut vm = firmware_boot("drivers_nvme_uefi", &tiny_disk(), fw, Medium::Nvme);
    boots_from(&mut vm, "/dev/nvme0n1p2", &["nvme"]);
}

#[test]
fn sata_disk_on_ahci_boots_under_bios() {
    let mut vm = firmware_boot("drivers_sata_bios", &tiny_disk(), Firmware::Bios, Medium::Sata);
    boots_from(&mut vm, "/dev/sda2", &["ahci"]);
}

/// One boot, two checks: the root is on AHCI and `oa.blacklist=ahci` keeps its driver out, so
/// finding the root fails and the FATAL line names the controller nobody claimed (QEMU's AHCI
/// is 8086:2922); `oa.modules=nvme` loads a driver no device of this machine asks for. The
/// emergency shell (`oa.shell`) then shows what is loaded.
#[test]
fn root_without_a_driver_names_the_unclaimed_controller() {
    let dir = built("tiny");
    let m = read_manifest(&dir).expect("manifest of the tiny build");
    let mut spec = Spec::from_output(&dir, &m, detect_accel(m.arch));
    let mut line = Cmdline::from_words(m.cmdline.iter().cloned());
    line.set_root(&cmdline::disk_root()).set(cmdline::BLACKLIST, "ahci").set(cmdline::MODULES, "nvme");
    line.push(cmdline::SHELL);
    spec.append = line.into_words();
    // No virtio root disk: the only disk is disk.img on AHCI.
    spec.root_image = None;
    spec.extra = Medium::Sata.args(&tiny_disk(), false);
    let mut vm = Machine::boot("drivers_blacklisted_ahci", &spec);
    let fatal = vm.expect(&format!("{FATAL_PREFIX} find the root image"), BOOT);
    if !fatal.contains("8086:2922") {
        vm.fail(&format!("the FATAL line does not name the AHCI controller 8086:2922: `{fatal}`"));
    }
    vm.expect(&ConsoleLine::Hint("").to_string(), SHORT);
    let console = vm.console();
    if console.contains(&coldplug_line("ahci")) {
        vm.fail("ahci was loaded although oa.blacklist=ahci");
    }
    let named = ConsoleLine::Stage { name: "modules", text: &format!("nvme ({}=", cmdline::MODULES) }.to_string();
    if !console.contains(&named) {
        vm.fail(&format!("no `{named}` line"));
    }
    if console.contains(READY_LINE) {
        vm.fail("ready without a root");
    }
    vm.send_line("echo MODS=$(grep -o -E '^(ahci|nvme) ' /proc/modules | tr -d ' ' | tr '\\n' ,)END");
    vm.expect("MODS=nvme,END", SHORT);
}
