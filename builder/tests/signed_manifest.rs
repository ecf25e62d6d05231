//! `[secure_boot] sign_key`: a real build of profiles/tiny.toml signs its manifest.json, and
//! Debian's own `minisign` checks the signature with the public key `oa keys init` made (as a
//! user would); a changed manifest fails that check. A public key given as the secret key, or
//! a missing one, fails the build before its first stage: no output appears.

use std::path::{Path, PathBuf};
use std::process::Command;

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

fn oa(args: &[&str], cwd: &Path) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_oa")).args(args).current_dir(cwd).output().expect("running oa")
}

/// A profile including tiny.toml that signs with `key`.
fn profile(dir: &Path, name: &str, key: &Path) -> PathBuf {
    let p = dir.join(format!("{name}.toml"));
    let tiny = workspace().join("profiles/tiny.toml");
    std::fs::write(&p, format!("include = [{:?}]\n[secure_boot]\nsign_key = {:?}\n", tiny, key)).unwrap();
    p
}

fn minisign_verify(out: &Path, public: &Path) -> std::process::Output {
    Command::new("minisign")
        .arg("-Vm")
        .arg(out.join("manifest.json"))
        .arg("-p")
        .arg(public)
        .output()
        .expect("minisign (Debian package minisign; run `make deps`)")
}

#[test]
fn minisign_checks_the_signed_manifest_and_refuses_a_changed_one() {
    let d = tempfile::tempdir().unwrap();
    let keys = d.path().join("keys");
    let o = oa(&["keys", "init", keys.to_str().unwrap()], d.path());
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let out = d.path().join("out");
    let p = profile(d.path(), "signed", &keys.join("minisign.key"));
    let o = oa(&["build", p.to_str().unwrap(), "--out", out.to_str().unwrap()], d.path());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "oa build: {err}");
    assert!(err.contains("manifest signed by "), "the output stage says it signed: {err}");
    let v = minisign_verify(&out, &keys.join("minisign.pub"));
    let said = String::from_utf8_lossy(&v.stdout).to_string() + &String::from_utf8_lossy(&v.stderr);
    assert!(v.status.success(), "minisign -V: {said}");
    assert!(said.contains("Signature and comment signature verified"), "{said}");
    assert!(said.contains("file:manifest.json"), "the trusted comment names the file: {said}");
    // One byte changed (a space added at the end): minisign refuses it.
    let mut m = std::fs::read(out.join("manifest.json")).unwrap();
    m.push(b' ');
    std::fs::write(out.join("manifest.json"), m).unwrap();
    let v = minisign_verify(&out, &keys.join("minisign.pub"));
    assert!(!v.status.success(), "a changed manifest must fail minisign -V");
}

#[test]
fn a_public_or_missing_sign_key_is_refused_before_any_stage_runs() {
    let d = tempfile::tempdir().unwrap();
    let keys = d.path().join("keys");
    assert!(oa(&["keys", "init", keys.to_str().unwrap()], d.path()).status.success());
    for (name, key, want) in
        [("public", keys.join("minisign.pub"), "is a public key"), ("missing", keys.join("nope.key"), "nope.key")]
    {
        let out = d.path().join(format!("out-{name}"));
        let p = profile(d.path(), name, &key);
        let o = oa(&["build", p.to_str().unwrap(), "--out", out.to_str().unwrap()], d.path());
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(!o.status.success(), "{name}: the build must fail");
        assert!(err.contains("sign_key") && err.contains(want), "{name}: {err}");
        assert!(!err.contains("==> [1/"), "{name}: refused before the first stage: {err}");
        assert!(
            !out.join("manifest.json").exists() && !out.join("manifest.json.minisig").exists(),
            "{name}: nothing is left at {}",
            out.display()
        );
    }
}
