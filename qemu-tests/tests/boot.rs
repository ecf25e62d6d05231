//! Boot scenarios of the walking skeleton, on the real kernel, initramfs and root image that
//! `oa build profiles/tiny.toml` makes, under QEMU (TCG here).

use oa_builder::qemu::Spec;
use oa_contract::{FATAL_PREFIX, READY_LINE};
use oa_qemu_tests::{built, Machine};
use std::time::Duration;

mod common;
use common::output_spec;

const BOOT: Duration = Duration::from_secs(90);

fn tiny_spec() -> Spec {
    let dir = built("tiny");
    output_spec(&dir).1
}

#[test]
fn tiny_boots_to_ready_and_starts_its_service() {
    let mut vm = Machine::boot("tiny_boots_to_ready", &tiny_spec());
    vm.expect_stage("modules", "", BOOT);
    vm.expect_stage("verify", "", BOOT);
    let host = vm.expect_ready(BOOT);
    assert_eq!(host, "tiny", "ready line names the host");
    // The service runs with its environment from the profile.
    vm.expect("oa-hello: hello from oa", Duration::from_secs(30));
    // The overlay and the generated files are in the root filesystem; the hostname is set.
    vm.send_line("echo H=$(hostname) M=$(head -c 20 /etc/motd)");
    vm.expect("H=tiny M=Welcome to the oa", Duration::from_secs(30));
    // The root is the overlay of the image and a writable layer.
    vm.send_line("touch /written && grep -c ' / overlay ' /proc/mounts | sed 's/^/overlay-root=/'");
    vm.expect("overlay-root=1", Duration::from_secs(30));
}

#[test]
fn service_is_restarted_after_it_is_killed() {
    let mut vm = Machine::boot("service_restarted", &tiny_spec());
    vm.expect(READY_LINE, BOOT);
    let first = vm.expect("oa-hello: hello from oa (pid ", Duration::from_secs(30));
    vm.send_line("kill -9 $(cat /run/oa-hello.pid)");
    vm.expect("service hello exited", Duration::from_secs(30));
    vm.expect("service hello restarting", Duration::from_secs(30));
    let second = vm.expect("oa-hello: hello from oa (pid ", Duration::from_secs(30));
    assert_ne!(first, second, "the restarted service is a new process");
}

#[test]
fn corrupt_root_image_stops_with_a_clear_message() {
    let src = built("tiny");
    let dir = tempdir("corrupt");
    for f in ["vmlinuz", "initramfs.img", "rootfs.squashfs", "manifest.json"] {
        std::fs::copy(src.join(f), dir.join(f)).expect("copying output");
    }
    // Flip one byte in the middle of the image; the manifest still has the good digest.
    let img = dir.join("rootfs.squashfs");
    let mut data = std::fs::read(&img).unwrap();
    let mid = data.len() / 2;
    data[mid] ^= 0xff;
    std::fs::write(&img, &data).unwrap();
    let mut vm = Machine::boot("corrupt_root_image", &output_spec(&dir).1);
    let fatal = vm.expect(FATAL_PREFIX, BOOT);
    assert!(fatal.contains("sha256"), "the failure names the check: {fatal}");
    vm.expect("hint:", Duration::from_secs(10));
    vm.expect_absent(READY_LINE, Duration::from_secs(2));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn poweroff_ends_qemu_with_exit_0() {
    let mut vm = Machine::boot("poweroff", &tiny_spec());
    vm.expect(READY_LINE, BOOT);
    vm.send_line("poweroff");
    vm.expect_info("shutdown", Duration::from_secs(30));
    let st = vm.wait_exit(Duration::from_secs(60));
    assert!(st.success(), "QEMU exit status after poweroff: {st}");
}

fn tempdir(name: &str) -> std::path::PathBuf {
    let d = oa_qemu_tests::workspace().join("target/qemu-tests").join(format!("{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}
