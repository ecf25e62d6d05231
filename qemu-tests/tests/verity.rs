//! dm-verity root (issue 13): a tiny variant with `[secure_boot] mode = "uki"` (keys from
//! `oa keys init`) and verity on. The root image carries its hash tree after the data, the
//! command line `oa.verity=` instead of `oa.sha256=`; oa-init maps it through the guest
//! kernel's dm-verity (the host kernel has no device-mapper) and mounts the mapped device.
//! Booted directly (kernel + initramfs, the image as /dev/vda), so the UKI is not needed. In
//! disk.img the tree is a partition of its own (`oa-verity`, named by `oa.verity.hash=`).

use oa_contract::cmdline::{self, BootArgs};
use oa_contract::{FATAL_PREFIX, READY_LINE};
use oa_qemu_tests::{built_variant, keys, workspace, Machine};
use std::time::Duration;

mod common;
use common::output_spec;

const BOOT: Duration = Duration::from_secs(90);

fn verity_build() -> std::path::PathBuf {
    let keys = keys("verity");
    let extra = format!(
        "[image]\ndisk = true\n\n[secure_boot]\nmode = \"uki\"\nkey = {:?}\ncert = {:?}\nverity = true\n",
        keys.join("db.key").display().to_string(),
        keys.join("db.crt").display().to_string()
    );
    built_variant("verity", "tiny", &extra)
}

#[test]
fn verity_root_boots_and_a_changed_block_stops_the_boot() {
    let dir = verity_build();
    let (m, spec) = output_spec(&dir);
    let line = m.cmdline.join(" ");
    let args = BootArgs::parse(&line).expect("manifest cmdline parses");
    let v = args.verity.clone().unwrap_or_else(|| panic!("no {} in {line}", cmdline::VERITY));
    assert!(args.sha256.is_none(), "{} is left out with verity: {line}", cmdline::SHA256);
    let img = dir.join("rootfs.squashfs");
    let len = std::fs::metadata(&img).unwrap().len();
    assert!(len > v.data_blocks * 4096, "the hash tree follows the data ({len} bytes)");

    let mut vm = Machine::boot("verity_root_boots", &spec);
    let verify = vm.expect_stage("verify", "dm-verity", BOOT);
    assert!(verify.contains(&v.root_hash[..12]) && verify.contains("/dev/vda"), "{verify}");
    assert_eq!(vm.expect_ready(BOOT), "tiny");
    vm.send_line("grep -c '^/dev/dm-0 /run/oa/lower squashfs' /proc/mounts | sed 's/^/dm-lower=/'");
    vm.expect("dm-lower=1", Duration::from_secs(30));
    drop(vm);

    // One byte of the superblock changed (mkfs_time, which squashfs itself never checks):
    // only dm-verity can notice it.
    let bad = workspace().join("target/qemu-tests").join(format!("verity-bad-{}", std::process::id()));
    std::fs::create_dir_all(&bad).unwrap();
    for f in ["vmlinuz", "initramfs.img", "rootfs.squashfs", "manifest.json"] {
        std::fs::copy(dir.join(f), bad.join(f)).expect("copying output");
    }
    let bimg = bad.join("rootfs.squashfs");
    let mut data = std::fs::read(&bimg).unwrap();
    data[8] ^= 0x01;
    std::fs::write(&bimg, &data).unwrap();
    let mut vm = Machine::boot("verity_changed_block", &output_spec(&bad).1);
    let fatal = vm.expect(FATAL_PREFIX, BOOT);
    assert!(fatal.contains("dm-verity"), "the failure names dm-verity: {fatal}");
    let hint = vm.expect("hint:", Duration::from_secs(10));
    assert!(hint.contains("dm-verity"), "{hint}");
    vm.expect_absent(READY_LINE, Duration::from_secs(2));
    let _ = std::fs::remove_dir_all(&bad);
}

/// disk.img keeps the data in `oa-root` and the hash tree in `oa-verity`: with copy-to-RAM
/// oa-init copies both into one RAM image and maps that; every file of the root reads.
#[test]
fn copy_to_ram_takes_the_data_and_the_tree_from_their_partitions() {
    let dir = verity_build();
    let (_, mut spec) = output_spec(&dir);
    spec.root_image = Some(dir.join(oa_contract::manifest::artifact::DISK_IMAGE));
    let mut cl = cmdline::Cmdline::from_words(spec.append.iter().cloned());
    cl.set_root(&cmdline::disk_root());
    cl.set(cmdline::VERITY_HASH, cmdline::disk_verity_hash());
    let mut append = cl.into_words();
    append.push(cmdline::COPYTORAM.into());
    spec.append = append;
    let mut vm = Machine::boot("verity_disk_copytoram", &spec);
    let copied = vm.expect_stage("copytoram", "", BOOT);
    assert!(copied.contains("into RAM") && copied.contains("/dev/vda2"), "{copied}");
    let verify = vm.expect_stage("verify", "dm-verity", BOOT);
    assert!(verify.contains("over /dev/loop"), "the RAM copy (on a loop device) is mapped: {verify}");
    assert_eq!(vm.expect_ready(BOOT), "tiny");
    vm.send_line("cat $(find / -xdev -type f) >/dev/null 2>&1; echo READ=$?");
    vm.expect("READ=0", Duration::from_secs(30));
}
