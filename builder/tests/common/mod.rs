//! Helpers shared by the builder's integration tests (`mod common;` in each test file that
//! uses them; each test binary uses only some, hence the `dead_code` allowance).
#![allow(dead_code)]

use std::path::Path;
use std::process::{Command, Output};

/// Run the real `oa` binary in `cwd`.
pub fn oa(args: &[&str], cwd: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_oa")).args(args).current_dir(cwd).output().expect("running oa")
}

/// What a run printed on stderr, as text.
pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).to_string()
}

/// Write the `manifest.json` of an `oa build` output for `profile` (x86_64, kernel 6.1, no
/// artifacts) into `dir`: enough for `oa run` to get as far as its checks.
pub fn write_manifest(dir: &Path, profile: &str) {
    let m = oa_contract::manifest::Manifest {
        schema: oa_contract::manifest::SCHEMA_VERSION,
        profile: profile.into(),
        arch: oa_contract::Arch::X86_64,
        kernel_release: "6.1".into(),
        cmdline: vec![],
        artifacts: vec![],
        builder: "test".into(),
        key_material: vec![],
    };
    std::fs::write(dir.join("manifest.json"), serde_json::to_vec(&m).unwrap()).unwrap();
}
