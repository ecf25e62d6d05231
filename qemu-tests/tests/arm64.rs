//! arm64: the tiny appliance cross-built for aarch64 (Debian's arm64 kernel and busybox, oa-init
//! for aarch64-unknown-linux-musl) boots under `qemu-system-aarch64 -M virt` (TCG).

use oa_contract::READY_LINE;
use oa_qemu_tests::{built, Machine};
use std::time::Duration;

mod common;
use common::output_spec;

#[test]
fn tiny_arm64_boots_to_ready_under_virt_and_powers_off() {
    let dir = built("tiny-arm64");
    let (m, spec) = output_spec(&dir);
    assert_eq!(m.arch, oa_contract::Arch::Aarch64);
    assert_eq!(spec.binary(), "qemu-system-aarch64");
    let mut vm = Machine::boot("tiny_arm64", &spec);
    let ready = vm.expect(READY_LINE, Duration::from_secs(90));
    assert!(ready.contains("host=tiny-arm64"), "{ready}");
    vm.expect("oa-hello: hello from oa", Duration::from_secs(30));
    vm.send_line("echo arch=$(uname -m)");
    vm.expect("arch=aarch64", Duration::from_secs(30));
    vm.send_line("poweroff");
    let st = vm.wait_exit(Duration::from_secs(60));
    assert!(st.success(), "QEMU exit status after poweroff: {st}");
}
