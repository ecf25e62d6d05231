//! Roots by filesystem label and UUID, and copy-to-RAM (issue 16), on media made here with
//! the standard tools (mkfs.ext4 -d, mtools), each holding the tiny build's root image as the
//! file `oa/rootfs.squashfs`:
//! - an ext4 USB stick found by `oa.root=LABEL=`: copy-to-RAM is automatic (USB is removable),
//!   the stick is pulled out through the QEMU monitor, and the system keeps running: files
//!   read, a killed service restarts;
//! - a FAT disk found by `oa.root=UUID=` (the UUID blkid reports), used in place;
//! - oa.iso in a CD drive found by its date-based ISO 9660 UUID (as blkid reports it);
//! - a label nobody has: the FATAL names the label and the filesystems seen, with the hint.

mod common;

use oa_builder::qemu::Spec;
use oa_contract::cmdline::{self, Cmdline, RootSpec};
use oa_contract::manifest::artifact;
use oa_contract::{media_paths, FATAL_PREFIX, READY_LINE};
use oa_qemu_tests::{built, workspace, Machine, Monitor};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

const BOOT: Duration = Duration::from_secs(120);
const SHORT: Duration = Duration::from_secs(30);

fn run(cmd: &mut Command) -> String {
    let o = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(o.status.success(), "{cmd:?}: {}", String::from_utf8_lossy(&o.stderr));
    String::from_utf8_lossy(&o.stdout).to_string()
}

fn scratch(name: &str) -> PathBuf {
    let d = workspace().join("target/qemu-tests/media").join(name);
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// `blkid -s TAG -o value`.
fn blkid(image: &Path, tag: &str) -> String {
    run(Command::new("blkid").args(["-p", "-s", tag, "-o", "value"]).arg(image)).trim().to_string()
}

/// An ext4 image labelled `label` with the tiny root image at oa/rootfs.squashfs.
fn ext4_stick(dir: &Path, tiny: &Path, label: &str) -> PathBuf {
    let tree = dir.join("tree");
    let image_path = tree.join(media_paths::ROOT_IMAGE);
    std::fs::create_dir_all(image_path.parent().unwrap()).unwrap();
    std::fs::copy(tiny.join(artifact::ROOTFS), &image_path).unwrap();
    let img = dir.join("ext4.img");
    std::fs::File::create(&img).unwrap().set_len(24 << 20).unwrap();
    run(Command::new("mkfs.ext4").args(["-q", "-F", "-L", label, "-d"]).arg(&tree).arg(&img));
    assert_eq!(blkid(&img, "LABEL"), label);
    img
}

/// The tiny build booted by its kernel and initramfs with `oa.root=<root>` and `more` on the
/// command line; the media come as `extra` QEMU arguments.
fn spec(tiny: &Path, root: RootSpec, more: &[&str], extra: Vec<String>) -> Spec {
    let (_, mut s) = common::output_spec(tiny);
    let mut c = Cmdline::from_words(s.append.iter().cloned());
    c.set_root(&root);
    let mut words = c.into_words();
    words.extend(more.iter().map(|w| w.to_string()));
    s.append = words;
    s.root_image = None;
    s.extra = extra;
    s
}

#[test]
fn ext4_stick_by_label_is_copied_to_ram_and_can_be_pulled_out() {
    let tiny = built("tiny");
    let dir = scratch("label-usb");
    let img = ext4_stick(&dir, &tiny, "oa-stick");
    let mon = Monitor::new("media_label_usb");
    let mut extra = vec![
        "-device".into(),
        "qemu-xhci,id=xhci".into(),
        "-drive".into(),
        format!("file={},format=raw,if=none,id=stick,snapshot=on", img.display()),
        "-device".into(),
        "usb-storage,bus=xhci.0,drive=stick,id=usbstick".into(),
    ];
    extra.extend(mon.args());
    // No oa.copytoram: the default `auto` copies because the stick is on USB.
    let mut vm = Machine::boot("media_label_usb", &spec(&tiny, RootSpec::Label("oa-stick".into()), &[], extra));
    let root = vm.expect_stage("root", "", BOOT);
    assert!(root.contains("/run/oa/media/oa/rootfs.squashfs") && root.contains("LABEL=oa-stick"), "{root}");
    common::expect_copied_to_ram(&mut vm, "sda", BOOT);
    vm.expect(READY_LINE, BOOT);
    vm.send_line("echo MEDIA=$(grep -c ' /run/oa/media ' /proc/mounts) LOOP=$(cat /sys/block/loop*/loop/backing_file | grep -c ram/rootfs.squashfs)");
    vm.expect("MEDIA=0 LOOP=1", SHORT);

    // Pull the stick out.
    let out = mon.run("device_del usbstick");
    assert!(!out.contains("rror"), "device_del: {out}");
    vm.send_line("sleep 2; test -e /sys/block/sda && echo STICK=there || echo STICK=gone");
    vm.expect("STICK=gone", SHORT);
    common::runs_without_the_medium(&mut vm, "tiny", SHORT);
}

#[test]
fn fat_disk_by_uuid_is_used_in_place() {
    let tiny = built("tiny");
    let dir = scratch("uuid-fat");
    let img = dir.join("fat.img");
    std::fs::File::create(&img).unwrap().set_len(32 << 20).unwrap();
    let i = img.display().to_string();
    run(Command::new("mformat").args(["-i", &i, "-N", "0a1b2c3d", "-v", "OAFAT", "::"]));
    run(Command::new("mmd").args(["-i", &i, "::/oa"]));
    let src = tiny.join(artifact::ROOTFS).display().to_string();
    run(Command::new("mcopy").args(["-i", &i, &src, &format!("::/{}", media_paths::ROOT_IMAGE)]));
    let uuid = blkid(&img, "UUID");
    assert_eq!(uuid, "0A1B-2C3D", "blkid's UUID of the FAT serial");
    let extra = vec!["-drive".into(), format!("file={i},format=raw,if=virtio,snapshot=on")];
    // Lower case: UUID= compares without case, like blkid's.
    let root = RootSpec::Uuid(uuid.to_lowercase());
    let mut vm = Machine::boot("media_uuid_fat", &spec(&tiny, root, &[], extra));
    let found = vm.expect_stage("root", "", BOOT);
    assert!(found.contains("/run/oa/media/oa/rootfs.squashfs"), "{found}");
    vm.expect_stage("verify", "sha256 matches", BOOT);
    vm.expect(READY_LINE, BOOT);
    assert!(!vm.console().contains("stage copytoram"), "a virtio disk is not removable: used in place");
    vm.send_line("echo MEDIA=$(grep ' /run/oa/media ' /proc/mounts | cut -d' ' -f1,3,4 | cut -d, -f1)");
    vm.expect("MEDIA=/dev/vda vfat ro", SHORT);
}

#[test]
fn iso_by_uuid_as_blkid_reports_it() {
    // The ISO of tiny-iso in a CD drive, the kernel booted directly with its date-based UUID.
    let dir = built("tiny-iso");
    let iso = dir.join(artifact::ISO);
    let uuid = blkid(&iso, "UUID");
    assert_eq!(uuid.len(), 22, "an ISO 9660 UUID is a date: {uuid}");
    let extra = vec![
        "-drive".into(),
        format!("file={},format=raw,if=none,id=cd0,media=cdrom,readonly=on", iso.display()),
        "-device".into(),
        "ide-cd,drive=cd0,bus=ide.0".into(),
    ];
    let copy = format!("{}=no", cmdline::COPYTORAM);
    let mut vm = Machine::boot("media_uuid_iso", &spec(&dir, RootSpec::Uuid(uuid.clone()), &[&copy], extra));
    let found = vm.expect_stage("root", "", BOOT);
    assert!(found.contains(&format!("UUID={uuid}")), "{found}");
    vm.expect(READY_LINE, BOOT);
    vm.send_line("echo MEDIA=$(grep ' /run/oa/media ' /proc/mounts | cut -d' ' -f1,3)");
    vm.expect("MEDIA=/dev/sr0 iso9660", SHORT);
}

#[test]
fn a_label_nobody_has_is_a_fatal_naming_what_was_seen() {
    let tiny = built("tiny");
    let dir = scratch("label-missing");
    let img = ext4_stick(&dir, &tiny, "oa-other");
    let extra = vec!["-drive".into(), format!("file={},format=raw,if=virtio,snapshot=on", img.display())];
    let mut vm = Machine::boot("media_label_missing", &spec(&tiny, RootSpec::Label("oa-nowhere".into()), &[], extra));
    let fatal = vm.expect(FATAL_PREFIX, BOOT);
    let want = cmdline::word(cmdline::ROOT, RootSpec::Label("oa-nowhere".into()));
    assert!(fatal.contains(&format!("no block device matching {want}")), "{fatal}");
    assert!(fatal.contains("vda: ext4 LABEL=\"oa-other\""), "the filesystems seen are named: {fatal}");
    let hint = vm.expect("oa-init: hint:", SHORT);
    assert!(hint.contains(cmdline::ROOT), "{hint}");
    vm.expect_absent(READY_LINE, Duration::from_secs(2));
}
