//! Helpers shared by the QEMU boot tests (`mod common;`).
#![allow(dead_code)]

use oa_builder::build::read_manifest;
use oa_builder::qemu::{detect_accel, Spec};
use oa_contract::manifest::Manifest;
use std::path::Path;

/// The manifest of the `oa build` output in `dir` and the QEMU spec that boots it (the
/// accelerator detected for its architecture).
pub fn output_spec(dir: &Path) -> (Manifest, Spec) {
    let m = read_manifest(dir).unwrap_or_else(|e| panic!("manifest of {}: {e}", dir.display()));
    let spec = Spec::from_output(dir, &m, detect_accel(m.arch));
    (m, spec)
}
