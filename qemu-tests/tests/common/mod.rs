//! Helpers shared by the QEMU boot tests (`mod common;`).
#![allow(dead_code)]

use oa_builder::build::read_manifest;
use oa_builder::qemu::{detect_accel, Spec};
use oa_contract::manifest::Manifest;
use oa_qemu_tests::Machine;
use std::path::Path;
use std::time::Duration;

/// The manifest of the `oa build` output in `dir` and the QEMU spec that boots it (the
/// accelerator detected for its architecture).
pub fn output_spec(dir: &Path) -> (Manifest, Spec) {
    let m = read_manifest(dir).unwrap_or_else(|e| panic!("manifest of {}: {e}", dir.display()));
    let spec = Spec::from_output(dir, &m, detect_accel(m.arch));
    (m, spec)
}

/// oa-init copied the root image from the removable medium `dev` (`sr0`, `sda`) to RAM by
/// `copytoram = "auto"`, verified it while copying and released the medium.
pub fn expect_copied_to_ram(vm: &mut Machine, dev: &str, timeout: Duration) {
    let copied = vm.expect_stage("copytoram", "", timeout);
    assert!(copied.contains("into RAM") && copied.contains(&format!("auto: {dev} is removable")), "{copied}");
    vm.expect(&format!("/dev/{dev} released"), timeout);
    vm.expect_stage("verify", "sha256 matches (checked while copying to RAM)", timeout);
}

/// With the boot medium gone, the system runs from the copy in RAM: every file of the root
/// reads, the hostname is `host`, and a killed service (tiny's `hello`) is restarted.
pub fn runs_without_the_medium(vm: &mut Machine, host: &str, timeout: Duration) {
    vm.send_line("cat $(find / -xdev -type f) >/dev/null 2>&1; echo READ=$? HOST=$(cat /etc/hostname)");
    vm.expect(&format!("READ=0 HOST={host}"), timeout);
    vm.send_line("kill $(pidof oa-hello)");
    vm.expect("service hello restarting", timeout);
    vm.expect("service hello started", timeout);
}
