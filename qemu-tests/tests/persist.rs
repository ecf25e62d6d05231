//! Persistence scenarios (issue 3) on the real kernel, initramfs and root image of
//! `profiles/tiny-persist.toml`, with a second virtio disk (`/dev/vdb`, a sparse file here)
//! that oa formats as LUKS2 + btrfs on first boot. Each QEMU run is short; a scenario that
//! needs a reboot starts a new QEMU on the same disk file.

use oa_builder::build::read_manifest;
use oa_builder::qemu::{detect_accel, Spec};
use oa_contract::{FATAL_PREFIX, READY_LINE};
use oa_qemu_tests::{built, workspace, Machine};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

mod common;
use common::output_spec;

const BOOT: Duration = Duration::from_secs(120);
const SHORT: Duration = Duration::from_secs(30);
const DISK_MIB: u64 = 320;

/// A fresh, all-zero disk file for one test.
fn blank_disk(name: &str) -> PathBuf {
    let dir = workspace().join("target/qemu-tests/disks");
    std::fs::create_dir_all(&dir).unwrap();
    let p = dir.join(format!("{name}.img"));
    let _ = std::fs::remove_file(&p);
    let f = std::fs::File::create(&p).unwrap();
    f.set_len(DISK_MIB << 20).unwrap();
    p
}

/// tiny-persist with `disk` as /dev/vdb and extra kernel command line words.
fn spec(disk: &Path, append: &[&str]) -> Spec {
    let dir = built("tiny-persist");
    let (_, mut s) = output_spec(&dir);
    s.extra.extend(["-drive".to_string(), format!("file={},format=raw,if=virtio", disk.display())]);
    s.append.extend(append.iter().map(|a| a.to_string()));
    s
}

fn boot(name: &str, disk: &Path, append: &[&str]) -> Machine {
    Machine::boot(name, &spec(disk, append))
}

/// Boot to ready and wait until this boot is marked good (boot counting).
fn boot_ready(name: &str, disk: &Path) -> Machine {
    let mut vm = boot(name, disk, &[]);
    vm.expect("stage persist: state subvolume mounted", BOOT);
    vm.expect(READY_LINE, BOOT);
    vm.expect("marked good", SHORT);
    vm
}

/// Run a shell command on the console and wait for its marker line.
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

/// The sha256 of the whole file, or its first `limit` bytes.
fn sha256_of(p: &Path, limit: Option<u64>) -> String {
    match limit {
        None => oa_builder::hash::sha256_file(p).unwrap(),
        Some(n) => {
            use std::io::Read;
            let mut data = Vec::new();
            std::fs::File::open(p).unwrap().take(n).read_to_end(&mut data).unwrap();
            let tmp = p.with_extension(format!("head-{}", std::process::id()));
            std::fs::write(&tmp, &data).unwrap();
            let d = oa_builder::hash::sha256_file(&tmp).unwrap();
            let _ = std::fs::remove_file(&tmp);
            d
        }
    }
}

fn key_file() -> PathBuf {
    workspace().join("profiles/tiny-persist.key")
}

#[test]
fn format_on_first_boot_then_data_survives_reboot() {
    let disk = blank_disk("survives");
    let mut vm = boot("persist_first_boot", &disk, &[]);
    vm.expect("stage persist: formatted /dev/vdb as LUKS2", BOOT);
    vm.expect("stage persist: made btrfs", BOOT);
    vm.expect("stage overlay:", BOOT);
    vm.expect(READY_LINE, BOOT);
    vm.expect("marked good", SHORT);
    sh(&mut vm, "echo kept-$((6*7)) > /root/note && sync", "WROTE");
    poweroff(&mut vm);
    drop(vm);

    let mut vm = boot("persist_second_boot", &disk, &[]);
    let l = vm.expect("stage persist: unlocked /dev/vdb", BOOT);
    assert!(!l.contains("formatted"));
    vm.expect(READY_LINE, BOOT);
    vm.send_line("cat /root/note");
    vm.expect("kept-42", SHORT);
    // oa-init status: every object, the key slots and the snapshots.
    vm.send_line("oa-init status");
    vm.expect("slot 0: active", SHORT);
    vm.expect("mapping   /dev/mapper/oa-persist: unlocked", SHORT);
    vm.expect("boot-000002", SHORT);
    poweroff(&mut vm);
    drop(vm);

    // The standard tool reads the header oa made, and the key opens it.
    let dump = Command::new("cryptsetup")
        .arg("luksDump")
        .arg(&disk)
        .output()
        .expect("cryptsetup (apt-get install cryptsetup-bin)");
    let dump = String::from_utf8_lossy(&dump.stdout);
    assert!(dump.contains("Version:       \t2"), "{dump}");
    assert!(dump.contains("Label:         \toa-persist"), "{dump}");
    assert!(dump.contains("Subsystem:     \toa"), "{dump}");
    let st = Command::new("cryptsetup")
        .args(["open", "--test-passphrase", "--key-file"])
        .arg(key_file())
        .arg(&disk)
        .status()
        .unwrap();
    assert!(st.success(), "cryptsetup open --test-passphrase with the profile's key file");
    host_open_and_mount(&disk);
    let _ = std::fs::remove_file(&disk);
}

/// `cryptsetup open` + `mount` on the host, where the host kernel has device-mapper (the
/// machines here run a kernel without it: then this part says so and is skipped).
fn host_open_and_mount(disk: &Path) {
    let dm = std::fs::read_to_string("/proc/misc").unwrap_or_default().contains("device-mapper");
    if !dm {
        eprintln!("host kernel has no device-mapper: skipping cryptsetup open + mount on the host");
        return;
    }
    let lo =
        String::from_utf8(Command::new("losetup").args(["-f", "--show"]).arg(disk).output().unwrap().stdout).unwrap();
    let lo = lo.trim();
    let name = format!("oa-test-{}", std::process::id());
    let st =
        Command::new("cryptsetup").args(["open", "--key-file"]).arg(key_file()).args([lo, &name]).status().unwrap();
    assert!(st.success());
    let mnt = workspace().join(format!("target/qemu-tests/mnt-{name}"));
    std::fs::create_dir_all(&mnt).unwrap();
    let st = Command::new("mount")
        .args(["-o", "ro,subvol=/state", &format!("/dev/mapper/{name}")])
        .arg(&mnt)
        .status()
        .unwrap();
    let content = std::fs::read_to_string(mnt.join("upper/root/note")).unwrap_or_default();
    let _ = Command::new("umount").arg(&mnt).status();
    let _ = Command::new("cryptsetup").args(["close", &name]).status();
    let _ = Command::new("losetup").args(["-d", lo]).status();
    assert!(st.success());
    assert_eq!(content.trim(), "kept-42");
}

#[test]
fn snapshot_change_rollback_brings_old_content_back() {
    let disk = blank_disk("rollback");
    let mut vm = boot_ready("persist_rollback_1", &disk);
    sh(&mut vm, "echo v1 > /root/data && sync", "V1");
    vm.send_line("oa-init snapshot create before-change");
    vm.expect("snapshot before-change created", SHORT);
    sh(&mut vm, "echo v2 > /root/data && sync", "V2");
    vm.send_line("oa-init snapshot list");
    vm.expect("before-change", SHORT);
    vm.send_line("oa-init snapshot rollback before-change");
    vm.expect("the next boot rolls back to snapshot before-change", SHORT);
    poweroff(&mut vm);
    drop(vm);

    // Issue 15: a power cut inside the rollback (QEMU killed the moment its first step shows).
    let mut vm = boot("persist_rollback_cut", &disk, &[]);
    vm.expect("stage persist: rolling back to snapshot before-change: making the new state", BOOT);
    drop(vm);

    // The next boot has a state, the old or the new one, never an empty one; the rollback is
    // still asked for until it is done, so it ends with the snapshot's content.
    let mut vm = boot("persist_rollback_2", &disk, &[]);
    vm.expect("stage persist: state subvolume mounted", BOOT);
    vm.expect(READY_LINE, BOOT);
    vm.send_line("cat /root/data");
    vm.expect("v1", SHORT);
    vm.send_line("ls /run/oa/persist/; ls /run/oa/persist/snapshots/");
    vm.expect("before-change", SHORT);
    // The v2 state was kept as the boot snapshot of the boot that was cut.
    vm.send_line("cat /run/oa/persist/snapshots/boot-000002/upper/root/data");
    vm.expect("v2", SHORT);
    // Issue 15: names are one path component in every command.
    vm.send_line("oa-init snapshot delete ../state; echo DELETE-$?");
    vm.expect("\"../state\" is not a snapshot name", SHORT);
    vm.expect("DELETE-1", SHORT);
    vm.send_line("oa-init snapshot rollback ../snapshots/before-change; echo RB-$?");
    vm.expect("\"../snapshots/before-change\" is not a snapshot name", SHORT);
    vm.expect("RB-1", SHORT);
    sh(&mut vm, "test -d /run/oa/persist/state/upper && test ! -e /run/oa/persist/meta/rollback", "STATE-KEPT");
    poweroff(&mut vm);
    let _ = std::fs::remove_file(&disk);
}

/// Issue 15: a first format cut between the LUKS2 header and its key slot (made here with the
/// host's cryptsetup: an oa header labelled oa-persist-new, then every key slot erased) is
/// finished on the next boot, which reaches ready with persistence. The same boot checks that
/// the top level is root's alone and mounted nosuid,nodev,noexec.
#[test]
fn a_header_without_key_slot_is_finished_and_the_top_level_is_private() {
    let disk = blank_disk("nokeyslot");
    let key = key_file();
    let cryptsetup = |args: &[&str]| {
        let st = Command::new("cryptsetup").args(args).arg(&disk).status().expect("cryptsetup (cryptsetup-bin)");
        assert!(st.success(), "cryptsetup {args:?}");
    };
    cryptsetup(&[
        "luksFormat",
        "-q",
        "--type",
        "luks2",
        "--pbkdf",
        "pbkdf2",
        "--pbkdf-force-iterations",
        "1000",
        "--label",
        "oa-persist-new",
        "--subsystem",
        "oa",
        "--key-file",
        key.to_str().unwrap(),
    ]);
    cryptsetup(&["luksErase", "-q"]);

    let mut vm = boot("persist_no_keyslot", &disk, &[]);
    let l = vm.expect("stage persist: /dev/vdb: an oa LUKS2 header from a first format cut short", BOOT);
    assert!(l.contains("no key slot") && l.contains("finishing the format"), "{l}");
    vm.expect("stage persist: formatted /dev/vdb as LUKS2", BOOT);
    vm.expect("stage persist: made btrfs", BOOT);
    vm.expect("stage persist: state subvolume mounted", BOOT);
    vm.expect(READY_LINE, BOOT);
    vm.send_line("oa-init status");
    vm.expect("slot 0: active", SHORT);
    vm.send_line("stat -c 'mode-%a' /run/oa/persist");
    vm.expect("mode-700", SHORT);
    vm.send_line("while read d m t o r; do [ \"$m\" = /run/oa/persist ] && echo \"top-opts:$o\"; done < /proc/mounts");
    let opts = vm.expect("top-opts:rw", SHORT);
    for f in ["nosuid", "nodev", "noexec"] {
        assert!(opts.split([',', ':']).any(|o| o.trim() == f), "{f} missing: {opts}");
    }
    poweroff(&mut vm);
    drop(vm);
    let dump = Command::new("cryptsetup").arg("luksDump").arg(&disk).output().unwrap();
    let dump = String::from_utf8_lossy(&dump.stdout);
    assert!(dump.contains("Label:         \toa-persist\n"), "{dump}");
    let _ = std::fs::remove_file(&disk);
}

#[test]
fn wrong_passphrase_leaves_the_device_byte_identical() {
    let disk = blank_disk("wrongpass");
    let mut vm = boot_ready("persist_wrongpass_1", &disk);
    poweroff(&mut vm);
    drop(vm);
    let before16 = sha256_of(&disk, Some(16 << 20));
    let before = sha256_of(&disk, None);

    let mut vm = boot(
        "persist_wrongpass_2",
        &disk,
        &[&oa_contract::cmdline::word(oa_contract::cmdline::PERSIST_KEY, "passphrase")],
    );
    vm.expect("passphrase for /dev/vdb", BOOT);
    vm.send_line("not-the-key");
    vm.expect("wrong passphrase for /dev/vdb (attempt 1 of 2)", SHORT);
    vm.expect("passphrase for /dev/vdb", SHORT);
    vm.send_line("still-not-the-key");
    vm.expect("wrong passphrase for /dev/vdb (attempt 2 of 2)", SHORT);
    let fatal = vm.expect(FATAL_PREFIX, SHORT);
    assert!(fatal.contains("did not unlock"), "{fatal}");
    vm.expect("hint:", SHORT);
    vm.expect_absent(READY_LINE, Duration::from_secs(2));
    drop(vm);
    assert_eq!(sha256_of(&disk, Some(16 << 20)), before16, "first 16 MiB changed");
    assert_eq!(sha256_of(&disk, None), before, "the device changed");
    let _ = std::fs::remove_file(&disk);
}

#[test]
fn disk_with_ext4_is_refused_and_untouched() {
    let disk = blank_disk("ext4");
    let st = Command::new("mkfs.ext4").args(["-q", "-F"]).arg(&disk).status().expect("mkfs.ext4 (e2fsprogs)");
    assert!(st.success());
    let before = sha256_of(&disk, None);
    let mut vm = boot("persist_ext4_refused", &disk, &[]);
    let err = vm.expect("stage persist: ERROR", BOOT);
    assert!(err.contains("/dev/vdb") && err.contains("ext2/3/4"), "names the device and what it holds: {err}");
    vm.expect("hint:", SHORT);
    let fatal = vm.expect(FATAL_PREFIX, SHORT);
    assert!(fatal.contains("refused"), "{fatal}");
    vm.expect_absent(READY_LINE, Duration::from_secs(2));
    drop(vm);
    assert_eq!(sha256_of(&disk, None), before, "the ext4 disk changed");
    let _ = std::fs::remove_file(&disk);
}

#[test]
fn power_cut_during_writes_keeps_synced_data_and_snapshots() {
    let disk = blank_disk("powercut");
    let mut vm = boot_ready("persist_powercut_1", &disk);
    sh(&mut vm, "echo synced-data > /root/synced && sync", "SYNCED");
    vm.send_line("(i=0; while true; do echo line-$i >> /root/loop; i=$((i+1)); done) & echo LOOPING");
    vm.expect("LOOPING", SHORT);
    std::thread::sleep(Duration::from_secs(3));
    drop(vm); // kills QEMU mid-write: the power cut

    let mut vm = boot("persist_powercut_2", &disk, &[]);
    vm.expect("stage persist: unlocked /dev/vdb", BOOT);
    vm.expect(READY_LINE, BOOT);
    vm.send_line("cat /root/synced");
    vm.expect("synced-data", SHORT);
    vm.send_line("ls /run/oa/persist/snapshots/");
    vm.expect("boot-000002", SHORT);
    vm.send_line("cat /run/oa/persist/snapshots/boot-000002/upper/root/synced");
    vm.expect("synced-data", SHORT);
    // Unsynced writes of the loop may be lost (btrfs commits every 30 s); the filesystem is
    // consistent and writable: no fsck, no read-only remount.
    sh(&mut vm, "(test ! -e /root/loop || tail -n 1 /root/loop > /dev/null) && echo after-cut > /root/after && sync && cat /root/after", "USABLE");
    poweroff(&mut vm);
    let _ = std::fs::remove_file(&disk);
}

#[test]
fn boot_counting_rolls_back_after_failed_boots() {
    // tiny-persist has boot_attempts = 2.
    let disk = blank_disk("bootcount");
    let mut vm = boot_ready("persist_bootcount_1", &disk);
    sh(&mut vm, "echo one > /root/state && sync", "ONE");
    poweroff(&mut vm);
    drop(vm);
    // boot 2 starts from boot-000002 (state=one) and reaches ready: the last good snapshot.
    let mut vm = boot_ready("persist_bootcount_2", &disk);
    sh(&mut vm, "echo two > /root/state && sync", "TWO");
    drop(vm);
    // Two boots that never reach ready (cut before stage 2).
    for i in 3..=4 {
        let mut vm = boot(&format!("persist_bootcount_{i}"), &disk, &[]);
        vm.expect(&format!("boot {} of 2 allowed", i - 2), BOOT);
        vm.expect("stage overlay:", BOOT);
        drop(vm);
    }
    let mut vm = boot("persist_bootcount_5", &disk, &[]);
    let l = vm.expect("ROLLED BACK to snapshot boot-000002", BOOT);
    assert!(l.contains("boot counting: 2 boot(s) in a row did not reach ready"), "{l}");
    vm.expect(READY_LINE, BOOT);
    vm.send_line("cat /root/state");
    vm.expect("one", SHORT);
    poweroff(&mut vm);
    let _ = std::fs::remove_file(&disk);
}

#[test]
fn only_the_listed_paths_persist() {
    // profiles/tiny-persist-paths.toml: [persistence] paths = ["/etc", "/root"].
    let dir = built("tiny-persist-paths");
    let m = read_manifest(&dir).expect("manifest of the tiny-persist-paths build");
    let disk = blank_disk("paths");
    let spec = || {
        let mut s = Spec::from_output(&dir, &m, detect_accel(m.arch));
        s.extra.extend(["-drive".to_string(), format!("file={},format=raw,if=virtio", disk.display())]);
        s
    };
    let mut vm = Machine::boot("persist_paths_first", &spec());
    vm.expect("stage persist: /etc persists (overlay on the image)", BOOT);
    vm.expect("stage persist: /root persists", BOOT);
    vm.expect(READY_LINE, BOOT);
    sh(
        &mut vm,
        "echo etc-kept > /etc/oa-note && echo root-kept > /root/note && echo gone > /var/note && sync",
        "WROTE",
    );
    poweroff(&mut vm);
    drop(vm);

    let mut vm = Machine::boot("persist_paths_second", &spec());
    vm.expect(READY_LINE, BOOT);
    vm.send_line("cat /etc/oa-note /root/note; test -e /var/note && echo var-survived || echo var-is-fresh");
    vm.expect("etc-kept", SHORT);
    vm.expect("root-kept", SHORT);
    vm.expect("var-is-fresh", SHORT);
    // The image's own /etc is still underneath the persistent layer.
    vm.send_line("cat /etc/hostname");
    vm.expect("tiny-paths", SHORT);
    poweroff(&mut vm);
}
