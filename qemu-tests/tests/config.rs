//! Run-time configuration on a persistent system (issue 15): `oa.config=` applied as the
//! desired state, never written through a symbolic link, and not left readable in /run.
//!
//! The guest gets a different `oa.config` per boot without a network: the Linux kernel unpacks
//! concatenated cpio archives, so each boot's initrd is a copy of tiny-persist's
//! `initramfs.img` with a newc archive holding `/machine.json` appended, and the command line
//! says `oa.config=/machine.json` (a path inside the initramfs).

use oa_contract::READY_LINE;
use oa_qemu_tests::{built, oa_bin, workspace, Machine};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

mod common;
use common::output_spec;

const BOOT: Duration = Duration::from_secs(120);
const SHORT: Duration = Duration::from_secs(30);
const DISK_MIB: u64 = 320;

fn scratch() -> PathBuf {
    let d = workspace().join("target/qemu-tests/config");
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// `initramfs` with a newc archive of one file, `/machine.json` = `json`, appended.
fn initrd_with_config(initramfs: &Path, json: &str, name: &str) -> PathBuf {
    let dir = scratch().join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("machine.json"), json).unwrap();
    let mut cpio = Command::new("cpio")
        .args(["-o", "-H", "newc", "--quiet"])
        .current_dir(&dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("cpio (Debian package cpio)");
    cpio.stdin.take().unwrap().write_all(b"machine.json\n").unwrap();
    let out = cpio.wait_with_output().unwrap();
    assert!(out.status.success(), "cpio -o failed");
    let mut data = std::fs::read(initramfs).unwrap();
    // Each archive of a concatenation starts 4-byte aligned.
    data.resize(data.len().next_multiple_of(4), 0);
    data.extend_from_slice(&out.stdout);
    let p = dir.with_extension("initrd");
    std::fs::write(&p, data).unwrap();
    p
}

fn boot(name: &str, disk: &Path, json: &str) -> Machine {
    let (_, mut s) = output_spec(&built("tiny-persist"));
    s.initrd = initrd_with_config(&s.initrd, json, name);
    s.extra.extend(["-drive".to_string(), format!("file={},format=raw,if=virtio", disk.display())]);
    s.append.push(oa_contract::cmdline::word(oa_contract::cmdline::CONFIG, "/machine.json"));
    Machine::boot(name, &s)
}

fn sh(vm: &mut Machine, cmd: &str, marker: &str) -> String {
    vm.send_line(&format!("{cmd}; echo {marker}-$?"));
    vm.expect(&format!("{marker}-0"), SHORT)
}

fn poweroff(vm: &mut Machine) {
    vm.send_line("sync; poweroff");
    vm.expect_info("shutdown", SHORT);
    let st = vm.wait_exit(Duration::from_secs(60));
    assert!(st.success(), "QEMU exit status after poweroff: {st}");
}

/// Boot 1 applies keys for root and a file, and the user of the machine then links a new
/// user's `~/.ssh` to `/etc`. Boot 2's configuration drops root's key and the file and gives
/// that user a key: the link is refused (`/etc` stays root's), what boot 1 added is gone, and
/// `/run/oa/config.json` is gone once applied.
#[test]
fn config_is_the_desired_state_and_never_follows_a_link() {
    let disk = scratch().join("config-disk.img");
    let _ = std::fs::remove_file(&disk);
    std::fs::File::create(&disk).unwrap().set_len(DISK_MIB << 20).unwrap();

    let first = r#"{"ssh_authorized_keys": {"root": ["ssh-ed25519 AAAAC3firstkey first@test"]},
                    "files": [{"path": "/etc/oa-test.conf", "content": "from boot 1\n", "mode": "0600"}]}"#;
    let mut vm = boot("config_first", &disk, first);
    vm.expect("stage persist: state subvolume mounted", BOOT);
    vm.expect(READY_LINE, BOOT);
    sh(&mut vm, "grep -q firstkey /root/.ssh/authorized_keys && grep -q 'from boot 1' /etc/oa-test.conf", "FIRST");
    sh(&mut vm, "test ! -e /run/oa/config.json", "GONE1");
    sh(&mut vm, "stat -c %a /etc/oa-test.conf | grep -qx 600", "MODE");
    // What a user who is given SSH keys could do on a persistent system.
    sh(
        &mut vm,
        "echo 'web:x:1000:1000::/home/web:/bin/sh' >> /etc/passwd && mkdir -p /home/web && ln -s /etc /home/web/.ssh",
        "LINK",
    );
    poweroff(&mut vm);
    drop(vm);

    let second = r#"{"ssh_authorized_keys": {"web": ["ssh-ed25519 AAAAC3webkey web@test"]}}"#;
    let mut vm = boot("config_second", &disk, second);
    vm.expect("/home/web/.ssh is a symbolic link: refused", BOOT);
    vm.expect(READY_LINE, BOOT);
    sh(&mut vm, "test \"$(stat -c %u:%g /etc)\" = 0:0 && test ! -e /etc/authorized_keys", "ETC-ROOT");
    sh(&mut vm, "test -L /home/web/.ssh", "LINK-KEPT");
    // Dropped from the configuration: taken back.
    sh(&mut vm, "test ! -e /root/.ssh/authorized_keys && test ! -e /etc/oa-test.conf", "DROPPED");
    sh(&mut vm, "test ! -e /run/oa/config.json", "GONE2");
    poweroff(&mut vm);
    let _ = std::fs::remove_file(&disk);
}

/// tiny-persist's initramfs carries its key file: the output lists it (and the images holding
/// it) as key material, writes them 0600, and `oa serve` refuses to publish them to the LAN
/// unless told (`--serve-key-material`, tested in pxe/tests/server.rs).
#[test]
fn key_material_is_private_and_not_served() {
    use std::os::unix::fs::PermissionsExt;
    let dir = built("tiny-persist");
    let (m, _) = output_spec(&dir);
    assert!(m.key_material.iter().any(|p| p == "initramfs.img"), "key_material: {:?}", m.key_material);
    for p in &m.key_material {
        let mode = std::fs::metadata(dir.join(p)).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{p} is {mode:o}");
    }
    let out = Command::new(oa_bin()).arg("serve").arg(&dir).output().expect("run oa serve");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "oa serve started on key material: {err}");
    assert!(err.contains("carries key material") && err.contains("--serve-key-material"), "{err}");
}
