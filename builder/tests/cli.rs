//! Bad input through the real `oa` binary: one clear message naming the thing and what to do,
//! a non-zero exit, and nothing half-written left behind.

use std::path::{Path, PathBuf};
use std::process::Command;

mod common;
use common::{oa, stderr, write_manifest};

fn scratch() -> tempfile::TempDir {
    tempfile::tempdir().expect("temp dir")
}

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

#[test]
fn missing_profile_is_named() {
    let d = scratch();
    let o = oa(&["build", "no-such-profile"], d.path());
    assert!(!o.status.success());
    let e = stderr(&o);
    assert!(e.contains("no-such-profile"), "{e}");
    assert_eq!(e.lines().filter(|l| l.starts_with("error:")).count(), 1, "one error line: {e}");
}

#[test]
fn unknown_key_reports_file_line_and_column() {
    let d = scratch();
    std::fs::write(d.path().join("bad.toml"), "hostname = \"x\"\n\n[kernel]\npackges = [\"a\"]\n").unwrap();
    let o = oa(&["build", "bad.toml"], d.path());
    assert!(!o.status.success());
    let e = stderr(&o);
    assert!(e.contains("bad.toml:4:1"), "{e}");
    assert!(e.contains("packges"), "{e}");
}

#[test]
fn wrong_type_reports_what_was_expected() {
    let d = scratch();
    std::fs::write(d.path().join("bad.toml"), "hostname = 42\n").unwrap();
    let o = oa(&["build", "bad.toml"], d.path());
    assert!(!o.status.success());
    let e = stderr(&o);
    assert!(e.contains("bad.toml:1:12"), "{e}");
    assert!(e.contains("string"), "{e}");
}

#[test]
fn missing_kernel_package_is_named_and_leaves_no_output() {
    let d = scratch();
    std::fs::write(
        d.path().join("p.toml"),
        "hostname = \"x\"\n[init]\nemergency_shell = false\n[kernel]\npackage = \"linux-image-oa-does-not-exist\"\n",
    )
    .unwrap();
    let out = d.path().join("out");
    let cache = d.path().join("cache");
    let o = oa(&["build", "p.toml", "--out", out.to_str().unwrap(), "--cache", cache.to_str().unwrap()], d.path());
    assert!(!o.status.success());
    let e = stderr(&o);
    assert!(e.contains("linux-image-oa-does-not-exist"), "{e}");
    assert!(!out.exists(), "no output folder after a failed build");
    let leftovers: Vec<_> = std::fs::read_dir(d.path())
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .filter(|n| n.to_string_lossy().contains("partial"))
        .collect();
    assert!(leftovers.is_empty(), "no partial output: {leftovers:?}");
}

#[test]
fn unwritable_output_folder_is_refused_before_any_work() {
    let d = scratch();
    let o = oa(
        &["build", workspace().join("profiles/tiny.toml").to_str().unwrap(), "--out", "/proc/oa-test/out"],
        d.path(),
    );
    assert!(!o.status.success());
    let e = stderr(&o);
    assert!(e.contains("/proc/oa-test/out") && e.contains("--out"), "{e}");
    assert!(!e.contains("==> [1/"), "refused before the first stage: {e}");
}

#[test]
fn missing_qemu_is_named_with_the_package_to_install() {
    let d = scratch();
    write_manifest(d.path(), "t");
    let o = Command::new(env!("CARGO_BIN_EXE_oa"))
        .args(["run", ".", "--until-ready", "--accel", "tcg"])
        .current_dir(d.path())
        .env("PATH", d.path())
        .output()
        .unwrap();
    assert!(!o.status.success());
    let e = stderr(&o);
    assert!(e.contains("qemu-system-x86_64") && e.contains("apt-get install qemu-system-x86"), "{e}");
}
