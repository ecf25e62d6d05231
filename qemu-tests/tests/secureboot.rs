//! Secure Boot (issue 13), under OVMF's Secure Boot build (`OVMF_CODE_4M.secboot.fd`, SMM) with
//! Debian's snakeoil key enrolled (`OVMF_VARS_4M.snakeoil.fd`; its key pair is
//! /usr/share/ovmf/PkKek-1-snakeoil.{key,pem}):
//!
//! - `[secure_boot] mode = "uki"` signed with that key: the firmware starts the UKI, the kernel
//!   says Secure Boot is on, the appliance reaches ready with the command line from inside the
//!   signature;
//! - each link broken: one byte changed in the UKI's `.cmdline`, `.linux` or `.initrd`, a UKI
//!   signed by another key (`oa keys init`), and today's unsigned systemd-boot: the firmware
//!   refuses each ("Access Denied") and nothing of oa runs; one byte changed in the root
//!   partition: dm-verity stops the boot (FATAL, no ready line);
//! - `mode = "shim"` under Microsoft's keys (`OVMF_VARS_4M.ms.fd`, what stock PCs have):
//!   Debian's shim -> GRUB -> Debian's kernel boots to ready; a changed kernel is refused.

use oa_builder::qemu::{detect_accel, DiskBoot, Firmware, SecureVars, Spec, UefiFiles, VarsCopy, SECURE_BOOT_ARGS};
use oa_contract::manifest::artifact;
use oa_contract::{Arch, READY_LINE};
use oa_qemu_tests::{built, built_variant, keys, workspace, Machine};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

const BOOT: Duration = Duration::from_secs(180);
const SHORT: Duration = Duration::from_secs(30);
/// What OVMF prints when an image's signature does not check out.
const REFUSED: &str = "Access Denied";
const SNAKEOIL_KEY: &str = "/usr/share/ovmf/PkKek-1-snakeoil.key";
const SNAKEOIL_CERT: &str = "/usr/share/ovmf/PkKek-1-snakeoil.pem";

fn scratch(name: &str) -> PathBuf {
    let d = workspace().join("target/qemu-tests").join(format!("sb-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn run(c: &mut Command) -> String {
    let out = c.output().unwrap_or_else(|e| panic!("{c:?}: {e}"));
    assert!(out.status.success(), "{c:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The snakeoil pair, its key decrypted (its passphrase is `snakeoil`; sbsign would ask).
fn snakeoil_keys() -> (PathBuf, PathBuf) {
    static KEYS: std::sync::OnceLock<(PathBuf, PathBuf)> = std::sync::OnceLock::new();
    KEYS.get_or_init(decrypt_snakeoil).clone()
}

fn decrypt_snakeoil() -> (PathBuf, PathBuf) {
    let dir = workspace().join("target/qemu-tests/sb-keys");
    std::fs::create_dir_all(&dir).unwrap();
    let key = dir.join("snakeoil.key");
    if !key.is_file() {
        let tmp = dir.join(format!("snakeoil.key.{}", std::process::id()));
        run(Command::new("openssl").args(["pkey", "-passin", "pass:snakeoil", "-in", SNAKEOIL_KEY, "-out"]).arg(&tmp));
        std::fs::rename(&tmp, &key).unwrap();
    }
    (key, PathBuf::from(SNAKEOIL_CERT))
}

fn uki_profile(key: &Path, cert: &Path) -> String {
    format!(
        "[image]\ndisk = true\niso = true\n[secure_boot]\nmode = \"uki\"\nkey = {:?}\ncert = {:?}\n",
        key.display().to_string(),
        cert.display().to_string()
    )
}

/// The tiny disk image with its UKI signed by the snakeoil key.
fn snakeoil_disk() -> PathBuf {
    let (key, cert) = snakeoil_keys();
    built_variant("tiny-sb-snakeoil", "tiny", &uki_profile(&key, &cert)).join(artifact::DISK_IMAGE)
}

/// Boot `image` (as a snapshot) under Secure Boot with the snakeoil key enrolled.
fn boot(name: &str, image: &Path) -> (Machine, VarsCopy) {
    boot_from(name, DiskBoot::detect(image, true).expect("disk image"))
}

fn boot_from(name: &str, disk: DiskBoot) -> (Machine, VarsCopy) {
    boot_with(SecureVars::Snakeoil, name, disk)
}

fn boot_with(keys: SecureVars, name: &str, disk: DiskBoot) -> (Machine, VarsCopy) {
    let files = UefiFiles::secure(keys).unwrap_or_else(|e| panic!("{e}"));
    let (fw, vars) = files.for_run(&workspace().join("target/qemu-tests/uefi-vars")).unwrap_or_else(|e| panic!("{e}"));
    assert!(matches!(fw, Firmware::Uefi { .. }));
    let mut spec = Spec::from_disk(Arch::X86_64, disk, fw, detect_accel(Arch::X86_64));
    spec.extra.extend(SECURE_BOOT_ARGS.map(String::from));
    (Machine::boot(name, &spec), vars)
}

/// Where the ESP (the first GPT partition) starts in `image`.
fn esp_offset(image: &Path) -> u64 {
    let d = std::fs::read(image).unwrap();
    assert_eq!(&d[512..520], b"EFI PART", "GPT header");
    let entries_lba = u64::from_le_bytes(d[512 + 72..512 + 80].try_into().unwrap());
    let e = (entries_lba * 512) as usize;
    u64::from_le_bytes(d[e + 32..e + 40].try_into().unwrap()) * 512
}

/// `(file offset, size)` of `section` in the PE file `efi` (objdump -h).
fn section(efi: &Path, section: &str) -> (u64, u64) {
    let h = run(Command::new("objdump").arg("-h").arg(efi));
    h.lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>())
        .find(|f| f.len() == 7 && f[1] == section)
        .map(|f| (u64::from_str_radix(f[5], 16).unwrap(), u64::from_str_radix(f[2], 16).unwrap()))
        .unwrap_or_else(|| panic!("{} has no {section} section:\n{h}", efi.display()))
}

/// A copy of `image` whose UKI has one byte of `sec` changed (the signature left as it was).
fn tampered(image: &Path, sec: &str, dir: &Path) -> PathBuf {
    let copy = dir.join(format!("disk{}.img", sec.replace('.', "-")));
    std::fs::copy(image, &copy).unwrap();
    let at = format!("{}@@{}", copy.display(), esp_offset(&copy));
    let efi = dir.join(format!("uki{}.efi", sec.replace('.', "-")));
    run(Command::new("mcopy").args(["-n", "-i", &at, "::/EFI/BOOT/BOOTX64.EFI"]).arg(&efi));
    let (off, size) = section(&efi, sec);
    let mut data = std::fs::read(&efi).unwrap();
    data[(off + size / 2) as usize] ^= 0x01;
    std::fs::write(&efi, &data).unwrap();
    run(Command::new("mcopy").args(["-o", "-i", &at]).arg(&efi).arg("::/EFI/BOOT/BOOTX64.EFI"));
    copy
}

fn expect_refused(name: &str, image: &Path) {
    let (mut vm, _vars) = boot(name, image);
    let line = vm.expect(REFUSED, BOOT);
    assert!(line.contains("failed to load"), "the firmware's refusal: {line}");
    vm.expect_absent("oa-init", Duration::from_secs(3));
}

#[test]
fn snakeoil_signed_uki_boots_to_ready_with_secure_boot_on() {
    let (mut vm, _vars) = boot("sb_uki", &snakeoil_disk());
    vm.expect(READY_LINE, BOOT);
    vm.send_line(
        "echo SB=$(dmesg | grep -o 'Secure boot enabled' | head -n1) ROOT=$(grep -o 'oa.root=[^ ]*' /proc/cmdline)",
    );
    vm.expect("SB=Secure boot enabled ROOT=oa.root=PARTLABEL=oa-root", SHORT);
    // dm-verity reads the data from the root partition, the tree from a partition of its own.
    vm.send_line("echo UNDER=$(ls /sys/block/dm-0/slaves | tr '\\n' ' ')");
    vm.expect("UNDER=vda2 vda3", SHORT);
    drop(vm);
    // oa.iso's ESP holds its own UKI, with the ISO's root on its command line.
    let iso = snakeoil_disk().with_file_name(artifact::ISO);
    let (mut vm, _vars) = boot_from("sb_uki_iso", DiskBoot::cdrom(&iso));
    vm.expect(READY_LINE, BOOT);
    vm.send_line(
        "echo SB=$(dmesg | grep -o 'Secure boot enabled' | head -n1) ROOT=$(grep -o 'oa.root=[^ ]*' /proc/cmdline)",
    );
    vm.expect("SB=Secure boot enabled ROOT=oa.root=LABEL=", SHORT);
}

/// The signed disk's ESP also holds systemd-boot, signed with the same key: a firmware boot
/// entry for `\EFI\systemd\systemd-bootx64.efi` (as `bootctl install` would make; here
/// written by virt-fw-vars) runs it with Secure Boot on, and its entry starts the signed UKI.
#[test]
fn signed_systemd_boot_starts_the_signed_uki() {
    let files = UefiFiles::secure(SecureVars::Snakeoil).unwrap_or_else(|e| panic!("{e}"));
    let (fw, vars) = files.for_run(&workspace().join("target/qemu-tests/uefi-vars")).unwrap_or_else(|e| panic!("{e}"));
    let edited = vars.0.with_extension("sd-boot.fd");
    let _edited = VarsCopy(edited.clone());
    run(Command::new(oa_qemu_tests::virt_fw_vars())
        .arg("--input")
        .arg(&vars.0)
        .arg("--output")
        .arg(&edited)
        .args(["--append-boot-filepath", "\\EFI\\systemd\\systemd-bootx64.efi"]));
    std::fs::rename(&edited, &vars.0).unwrap();
    let disk = DiskBoot::detect(&snakeoil_disk(), true).expect("disk image");
    let mut spec = Spec::from_disk(Arch::X86_64, disk, fw, detect_accel(Arch::X86_64));
    spec.extra.extend(SECURE_BOOT_ARGS.map(String::from));
    let mut vm = Machine::boot("sb_systemd_boot", &spec);
    let started = vm.expect("systemd-bootx64.efi", BOOT);
    assert!(started.contains("BdsDxe"), "the firmware starts systemd-boot: {started}");
    vm.expect(READY_LINE, BOOT);
    vm.send_line("echo SB=$(dmesg | grep -o 'Secure boot enabled' | head -n1)");
    vm.expect("SB=Secure boot enabled", SHORT);
    // systemd-boot started the UKI: the firmware did not go on to another boot entry.
    let console = vm.console();
    assert_eq!(console.matches("BdsDxe: starting").count(), 1, "{console}");
}

/// Where GPT partition `n` (1: the ESP, 2: the root, 3: its verity hash tree) starts in `image`.
fn partition_offset(image: &Path, n: usize) -> u64 {
    let d = std::fs::read(image).unwrap();
    let entries_lba = u64::from_le_bytes(d[512 + 72..512 + 80].try_into().unwrap());
    let e = (entries_lba * 512) as usize + 128 * (n - 1);
    u64::from_le_bytes(d[e + 32..e + 40].try_into().unwrap()) * 512
}

/// A copy of the signed disk with one byte at `at` flipped: dm-verity stops its boot.
fn expect_verity_stops(name: &str, dir: &Path, at: impl Fn(&Path) -> u64) {
    let copy = dir.join(format!("{name}.img"));
    std::fs::copy(snakeoil_disk(), &copy).unwrap();
    let at = at(&copy);
    let f = std::fs::OpenOptions::new().read(true).write(true).open(&copy).unwrap();
    use std::os::unix::fs::FileExt;
    let mut b = [0u8; 1];
    f.read_exact_at(&mut b, at).unwrap();
    f.write_all_at(&[b[0] ^ 0x01], at).unwrap();
    drop(f);
    let (mut vm, _vars) = boot(name, &copy);
    let fatal = vm.expect(oa_contract::FATAL_PREFIX, BOOT);
    assert!(fatal.contains("dm-verity"), "{fatal}");
    vm.expect_absent(READY_LINE, Duration::from_secs(3));
}

/// The signed UKI accepted, the root partition changed by one byte (the squashfs superblock's
/// mkfs_time, which squashfs never checks), or one byte of the hash tree's partition: dm-verity,
/// with the root hash from the signed command line, stops the boot.
#[test]
fn a_changed_byte_in_the_root_or_hash_tree_partition_stops_the_signed_boot() {
    let dir = scratch("root");
    expect_verity_stops("sb_root_changed", &dir, |img| partition_offset(img, 2) + 8);
    // The tree's first block is the top level, the one every read goes through.
    expect_verity_stops("sb_tree_changed", &dir, |img| partition_offset(img, 3) + 100);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn firmware_refuses_a_changed_uki_another_key_and_an_unsigned_loader() {
    let dir = scratch("refused");
    let good = snakeoil_disk();
    for sec in [".cmdline", ".linux", ".initrd"] {
        expect_refused(&format!("sb_changed{}", sec.replace('.', "_")), &tampered(&good, sec, &dir));
    }
    // A UKI signed by a key the machine has not enrolled.
    let keys = keys("sb-other");
    let other = built_variant("tiny-sb-other", "tiny", &uki_profile(&keys.join("db.key"), &keys.join("db.crt")));
    expect_refused("sb_other_key", &other.join(artifact::DISK_IMAGE));
    // Today's image: unsigned systemd-boot.
    expect_refused("sb_unsigned", &built("tiny").join(artifact::DISK_IMAGE));
    let _ = std::fs::remove_dir_all(&dir);
}

/// The stock chain: Debian's Microsoft-signed shim, Debian's GRUB and kernel, under the
/// Microsoft keys every PC has, from disk.img and from oa.iso (as a CD). One changed byte of
/// the kernel: GRUB (asking shim) refuses it.
#[test]
fn microsoft_keys_boot_the_shim_chain_and_refuse_a_changed_kernel() {
    let out =
        built_variant("tiny-sb-shim", "tiny", "[image]\ndisk = true\niso = true\n[secure_boot]\nmode = \"shim\"\n");
    let disk = out.join(artifact::DISK_IMAGE);
    let boot_ms = |name: &str, image: &Path| {
        boot_with(SecureVars::Microsoft, name, DiskBoot::detect(image, true).expect("disk image"))
    };
    let (mut vm, _vars) = boot_ms("sb_shim", &disk);
    vm.expect(READY_LINE, BOOT);
    vm.send_line(
        "echo SB=$(dmesg | grep -o 'Secure boot enabled' | head -n1) ROOT=$(grep -o 'oa.root=[^ ]*' /proc/cmdline)",
    );
    vm.expect("SB=Secure boot enabled ROOT=oa.root=PARTLABEL=oa-root", SHORT);
    drop(vm);
    // oa.iso's ESP holds the same chain, GRUB's entry naming the ISO's root.
    let (mut vm, _vars) = boot_with(SecureVars::Microsoft, "sb_shim_iso", DiskBoot::cdrom(&out.join(artifact::ISO)));
    vm.expect(READY_LINE, BOOT);
    vm.send_line(
        "echo SB=$(dmesg | grep -o 'Secure boot enabled' | head -n1) ROOT=$(grep -o 'oa.root=[^ ]*' /proc/cmdline)",
    );
    vm.expect("SB=Secure boot enabled ROOT=oa.root=LABEL=", SHORT);
    drop(vm);

    let dir = scratch("shim");
    let copy = dir.join("disk-kernel.img");
    std::fs::copy(&disk, &copy).unwrap();
    let at = format!("{}@@{}", copy.display(), esp_offset(&copy));
    let kernel = dir.join("vmlinuz");
    run(Command::new("mcopy").args(["-n", "-i", &at, "::/vmlinuz"]).arg(&kernel));
    let mut data = std::fs::read(&kernel).unwrap();
    let mid = data.len() / 2;
    data[mid] ^= 0x01;
    std::fs::write(&kernel, &data).unwrap();
    run(Command::new("mcopy").args(["-o", "-i", &at]).arg(&kernel).arg("::/vmlinuz"));
    let (mut vm, _vars) = boot_ms("sb_shim_changed_kernel", &copy);
    // GRUB's words when shim's verifier rejects the kernel.
    vm.expect("error: bad shim signature", BOOT);
    vm.expect_absent("oa-init", Duration::from_secs(5));
    drop(vm);
    // Under Microsoft's keys the unsigned systemd-boot of a plain image is refused as well.
    let (mut vm, _vars) = boot_ms("sb_ms_unsigned", &built("tiny").join(artifact::DISK_IMAGE));
    assert!(vm.expect(REFUSED, BOOT).contains("failed to load"));
    let _ = std::fs::remove_dir_all(&dir);
}
