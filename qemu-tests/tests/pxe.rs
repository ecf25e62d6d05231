//! Diskless netboot, end to end: a VM with no disk on a private network (a namespace with a
//! bridge and a tap that the test builds), `oa serve` answering DHCP, TFTP and HTTP, and the
//! real firmware: SeaBIOS with Debian's iPXE option ROM (virtio and e1000e), with the server's
//! log and lease file checked line by line. TCG only; no packet leaves the test's namespaces.
//!
//! OVMF's own PXE fetching ipxe.efi over TFTP, and proxyDHCP next to dnsmasq, are the example
//! environment examples/two-networks.toml, run by `oa lab` in tests/lab.rs.

use oa_contract::{Arch, ConsoleLine};
use oa_qemu_tests::netns::{Netns, Proc};
use oa_qemu_tests::{built, built_variant, keys, oa_bin, virt_fw_vars, workspace, Machine};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

const BOOT: Duration = Duration::from_secs(180);
const SERVER: &str = "10.99.0.1";

fn logs() -> PathBuf {
    let d = workspace().join("target/qemu-logs");
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// `oa serve <out>` inside `ns` on br0; waits until it logs that it is serving.
fn serve(ns: &Netns, name: &str, out: &Path, extra: &[&str]) -> (Proc, PathBuf) {
    let log = logs().join(format!("{name}-serve.log"));
    let mut args: Vec<String> = vec![
        "serve".into(),
        out.display().to_string(),
        "--interface".into(),
        "br0".into(),
        "--address".into(),
        SERVER.into(),
    ];
    args.extend(extra.iter().map(|s| s.to_string()));
    // Per-packet DHCP lines are at debug; the checks below read them.
    let p = ns.spawn_env(&oa_bin().display().to_string(), &args, &[("RUST_LOG", "info,dhcp=debug")], &log);
    let t = Instant::now();
    while !std::fs::read_to_string(&log).unwrap_or_default().contains("serving ") {
        assert!(
            t.elapsed() < Duration::from_secs(20),
            "oa serve did not start:\n{}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    (p, log)
}

/// The addresses `oa serve --mode dhcp` hands out in these tests.
const RANGE: &str = "10.99.0.100-10.99.0.150";

/// [`serve`] in `--mode dhcp` over [`RANGE`], its leases in `leases`, then `extra`.
fn serve_dhcp(ns: &Netns, name: &str, out: &Path, leases: &Path, extra: &[&str]) -> (Proc, PathBuf) {
    let leases = leases.display().to_string();
    let mut args = vec!["--mode", "dhcp", "--range", RANGE, "--leases", &leases];
    args.extend_from_slice(extra);
    serve(ns, name, out, &args)
}

/// QEMU in `ns` with one NIC of model `nic` (`virtio-net-pci`, `e1000e`) on tap0.
fn qemu(ns: &Netns, uefi: Option<&Path>, nic: &str, mac: &str, rom: bool) -> std::process::Command {
    let mut c = ns.command("qemu-system-x86_64");
    c.args([
        "-M",
        "q35",
        "-accel",
        "tcg",
        "-m",
        "512",
        "-nodefaults",
        "-no-user-config",
        "-display",
        "none",
        "-no-reboot",
        "-serial",
        "stdio",
    ]);
    if let Some(vars) = uefi {
        c.args(["-drive", "if=pflash,format=raw,unit=0,readonly=on,file=/usr/share/OVMF/OVMF_CODE_4M.fd"]);
        c.arg("-drive").arg(format!("if=pflash,format=raw,unit=1,file={}", vars.display()));
    } else {
        c.args(["-boot", "n"]);
    }
    c.args(["-netdev", "tap,id=n0,ifname=tap0,script=no,downscript=no"]);
    // rom=false: no iPXE option ROM, so OVMF's own PXE client boots (and fetches ipxe.efi).
    let rom = if rom { "" } else { ",romfile=" };
    c.arg("-device").arg(format!("{nic},netdev=n0,mac={mac},bootindex=1{rom}"));
    c
}

fn server_log(p: &Path) -> String {
    std::fs::read_to_string(p).unwrap_or_default()
}

fn tmp(name: &str) -> PathBuf {
    let d = workspace().join("target/qemu-tests").join(format!("{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

#[test]
fn bios_ipxe_netboots_to_ready_with_full_dhcp() {
    let out = built("tiny-net");
    let ns = Netns::new("pxe-bios");
    ns.bridge_with_tap(&format!("{SERVER}/24"));
    let dir = tmp("pxe-bios");
    let leases = dir.join("leases.json");
    let (_srv, log) = serve_dhcp(&ns, "pxe_bios", &out, &leases, &[]);
    let mut vm = Machine::start("pxe_bios", qemu(&ns, None, "virtio-net-pci", "52:54:00:0a:00:01", true));
    vm.expect_stage("network", "eth0 (52:54:00:0a:00:01) 10.99.0.100/24", BOOT);
    vm.expect_stage("fetch", "http://10.99.0.1/rootfs.squashfs", BOOT);
    vm.expect_stage("verify", "sha256 matches", BOOT);
    assert_eq!(vm.expect_ready(BOOT), "tiny-net");
    let l = server_log(&log);
    assert!(
        l.contains(
            "52:54:00:0a:00:01 Discover on 67 arch=0 (BIOS) class=PXEClient user-class=iPXE: Offer address 10.99.0.100"
        ),
        "{l}"
    );
    assert!(l.contains("\"GET /boot/52-54-00-0a-00-01.ipxe\" 200"), "{l}");
    assert!(l.contains("52:54:00:0a:00:01 (10.99.0.100) \"GET /rootfs.squashfs\" 200"), "{l}");
    // The lease is on disk.
    assert!(std::fs::read_to_string(&leases).unwrap().contains("52:54:00:0a:00:01"));
}

/// The NIC of many PCs (Intel 82574L): SeaBIOS runs QEMU's iPXE option ROM for it
/// (pxe-e1000e.rom), and oa-init's coldplug loads e1000e (the `net` driver class of a netboot
/// profile) for the device it finds.
#[test]
fn bios_ipxe_netboots_over_e1000e_to_ready() {
    let out = built("tiny-net");
    let ns = Netns::new("pxe-e1000e");
    ns.bridge_with_tap(&format!("{SERVER}/24"));
    let dir = tmp("pxe-e1000e");
    let (_srv, log) = serve_dhcp(&ns, "pxe_e1000e", &out, &dir.join("leases.json"), &[]);
    let mut vm = Machine::start("pxe_e1000e", qemu(&ns, None, "e1000e", "52:54:00:0a:00:05", true));
    vm.expect_stage("network", "eth0 (52:54:00:0a:00:05) 10.99.0.100/24", BOOT);
    vm.expect_stage("fetch", "http://10.99.0.1/rootfs.squashfs", BOOT);
    assert_eq!(vm.expect_ready(BOOT), "tiny-net");
    let coldplug = ConsoleLine::Stage { name: "modules", text: "e1000e (pci:v00008086d000010D3" }.to_string();
    if !vm.console().contains(&coldplug) {
        vm.fail(&format!("no coldplug line `{coldplug}...`"));
    }
    let l = server_log(&log);
    assert!(l.contains("52:54:00:0a:00:05 Discover on 67 arch=0 (BIOS) class=PXEClient user-class=iPXE"), "{l}");
    assert!(l.contains("52:54:00:0a:00:05 (10.99.0.100) \"GET /rootfs.squashfs\" 200"), "{l}");
}

#[test]
fn bios_netboot_applies_the_machines_oa_config() {
    let out = built("tiny-net");
    let ns = Netns::new("pxe-config");
    ns.bridge_with_tap(&format!("{SERVER}/24"));
    let dir = tmp("pxe-config");
    let machines = dir.join("machines");
    std::fs::create_dir_all(&machines).unwrap();
    let key = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOaTestKeyForOaConfig0123456789abcdefghij test@oa";
    std::fs::write(machines.join("52-54-00-0a-00-04.toml"), "config = \"web1.json\"\n").unwrap();
    let json = format!(
        r#"{{"hostname": "from-config", "ssh_authorized_keys": {{"root": ["{key}"]}}, "files": [{{"path": "/etc/oa-test/hello.txt", "content": "config-file-ok\n", "mode": "0600"}}]}}"#
    );
    std::fs::write(machines.join("web1.json"), json).unwrap();
    let machines_arg = machines.display().to_string();
    let (_srv, log) = serve_dhcp(&ns, "pxe_config", &out, &dir.join("leases.json"), &["--machines", &machines_arg]);
    let mut vm = Machine::start("pxe_config", qemu(&ns, None, "virtio-net-pci", "52:54:00:0a:00:04", true));
    vm.expect_stage("config", "http://10.99.0.1/config/52-54-00-0a-00-04: will apply hostname=from-config, 1 authorized key for root, files /etc/oa-test/hello.txt", BOOT);
    vm.expect_stage(
        "config",
        "applied to /: hostname from-config, /root/.ssh/authorized_keys (1 key), /etc/oa-test/hello.txt",
        BOOT,
    );
    let host = vm.expect_ready(BOOT);
    assert_eq!(host, "from-config", "the configuration's hostname wins over the profile's");
    let c = vm.console();
    assert!(!c.contains(&format!("{}= is not supported", oa_contract::cmdline::CONFIG)), "{c}");
    vm.send_line("cat /root/.ssh/authorized_keys");
    vm.expect(&format!("\n{key}"), Duration::from_secs(30));
    vm.send_line("echo MODES=$(stat -c %a /root/.ssh /root/.ssh/authorized_keys /etc/oa-test/hello.txt) H=$(hostname) F=$(cat /etc/oa-test/hello.txt)");
    vm.expect("MODES=700 600 600 H=from-config F=config-file-ok", Duration::from_secs(30));
    let l = server_log(&log);
    assert!(l.contains("52:54:00:0a:00:04 (10.99.0.100) \"GET /config/52-54-00-0a-00-04\" 200"), "{l}");
}

/// Two minisign key pairs from `oa keys init` (the operator's and someone else's), made once
/// per test process: `(dir A, dir B)`, each holding minisign.key and minisign.pub.
fn config_keys() -> &'static (PathBuf, PathBuf) {
    static KEYS: std::sync::OnceLock<(PathBuf, PathBuf)> = std::sync::OnceLock::new();
    KEYS.get_or_init(|| (keys("config-operator"), keys("config-other")))
}

/// The key id minisign prints for the public key in `dir` (last word of its first line).
fn key_id(dir: &Path) -> String {
    let text = std::fs::read_to_string(dir.join("minisign.pub")).unwrap();
    text.lines().next().unwrap().rsplit(' ').next().unwrap().to_string()
}

/// tiny-net with the operator's public key built in (`[secure_boot] config_key`), and
/// `required` for `config_required = true`.
fn with_config_key(required: bool) -> PathBuf {
    let (a, _) = config_keys();
    let key = a.join("minisign.pub").display().to_string();
    if required {
        built_variant(
            "tiny-net-cfgreq",
            "tiny-net",
            &format!("[secure_boot]\nconfig_key = {key:?}\nconfig_required = true\n"),
        )
    } else {
        built_variant("tiny-net-cfgkey", "tiny-net", &format!("[secure_boot]\nconfig_key = {key:?}\n"))
    }
}

/// A machines folder with `<mac>.toml` naming web1.json (hostname from-config).
fn machines_for(dir: &Path, mac: &str) -> String {
    let machines = dir.join("machines");
    std::fs::create_dir_all(&machines).unwrap();
    std::fs::write(machines.join(format!("{}.toml", mac.replace(':', "-"))), "config = \"web1.json\"\n").unwrap();
    std::fs::write(machines.join("web1.json"), r#"{"hostname": "from-config"}"#).unwrap();
    machines.display().to_string()
}

/// One netboot of `out` on machine `mac` in a namespace of its own (`name`, also the logs'),
/// `oa serve` giving it web1.json, signed with the secret key `sign_key` when given. Fields
/// drop in order: the machine, then the server, then the namespace.
struct ConfigBoot {
    vm: Machine,
    log: PathBuf,
    _srv: Proc,
    _ns: Netns,
}

fn config_boot(name: &str, out: &Path, mac: &str, sign_key: Option<&Path>) -> ConfigBoot {
    let ns = Netns::new(&name.replace('_', "-"));
    ns.bridge_with_tap(&format!("{SERVER}/24"));
    let dir = tmp(name);
    let machines = machines_for(&dir, mac);
    let mut extra = vec!["--machines".to_string(), machines];
    if let Some(k) = sign_key {
        extra.extend(["--sign-key".to_string(), k.display().to_string()]);
    }
    let extra: Vec<&str> = extra.iter().map(String::as_str).collect();
    let (srv, log) = serve_dhcp(&ns, name, out, &dir.join("leases.json"), &extra);
    let vm = Machine::start(name, qemu(&ns, None, "virtio-net-pci", mac, true));
    ConfigBoot { vm, log, _srv: srv, _ns: ns }
}

/// `oa serve --sign-key` signs each machine's configuration for its MAC; an image with the
/// matching key built in checks the signature and applies it.
#[test]
fn an_image_with_a_config_key_applies_a_configuration_signed_for_it() {
    let out = with_config_key(false);
    let (a, _) = config_keys();
    let mac = "52:54:00:0a:00:06";
    let mut boot = config_boot("pxe_signed", &out, mac, Some(&a.join("minisign.key")));
    let (vm, log) = (&mut boot.vm, boot.log.clone());
    vm.expect_stage(
        "config",
        &format!(
            "http://10.99.0.1/config/52-54-00-0a-00-06: signed by minisign key {} for {mac}; will apply hostname=from-config",
            key_id(a)
        ),
        BOOT,
    );
    assert_eq!(vm.expect_ready(BOOT), "from-config");
    let l = server_log(&log);
    assert!(l.contains(&format!("{mac} (10.99.0.100) \"GET /config/52-54-00-0a-00-06.minisig\" 200")), "{l}");
}

/// The same image and a server that does not sign: the configuration is refused loudly and
/// the machine boots with the profile alone (hostname tiny-net, not the configuration's).
#[test]
fn an_image_with_a_config_key_refuses_an_unsigned_configuration() {
    let out = with_config_key(false);
    let mac = "52:54:00:0a:00:07";
    let mut boot = config_boot("pxe_unsigned", &out, mac, None);
    let (vm, log) = (&mut boot.vm, boot.log.clone());
    let source = "http://10.99.0.1/config/52-54-00-0a-00-07";
    let w = vm.expect(
        &ConsoleLine::Warning(&format!(
            "{}: REFUSED: unsigned",
            oa_contract::cmdline::word(oa_contract::cmdline::CONFIG, source)
        ))
        .to_string(),
        BOOT,
    );
    assert!(w.contains(&key_id(&config_keys().0)), "the warning names the key the image accepts: {w}");
    assert_eq!(vm.expect_ready(BOOT), "tiny-net", "the refused configuration's hostname must not apply");
    let l = server_log(&log);
    assert!(l.contains(&format!("{mac} (10.99.0.100) \"GET /config/52-54-00-0a-00-07.minisig\" 404")), "{l}");
}

/// An image that requires a configuration (`config_required`), served one signed by another
/// key: FATAL naming both keys, no ready line.
#[test]
fn an_image_requiring_a_config_stops_on_one_signed_by_another_key() {
    let out = with_config_key(true);
    let (a, b) = config_keys();
    let mac = "52:54:00:0a:00:08";
    let mut boot = config_boot("pxe_otherkey", &out, mac, Some(&b.join("minisign.key")));
    let vm = &mut boot.vm;
    let fatal = vm.expect(oa_contract::FATAL_PREFIX, BOOT);
    assert!(fatal.contains("signed by another key"), "{fatal}");
    assert!(fatal.contains(&key_id(b)) && fatal.contains(&key_id(a)), "the FATAL names both keys: {fatal}");
    vm.expect_absent(oa_contract::READY_LINE, Duration::from_secs(3));
}

/// The secure-netboot image and keys, built once per test process: tiny-net with `mode =
/// "uki"` signed by a key from `oa keys init` (its dir returned too).
/// The secure netboot build of `base` (`tiny-net`, `tiny-arm64`) as `name`: a signed UKI for
/// netboot with a key pair of its own. Built once per test process.
fn secure_netboot_image(name: &str, base: &str) -> (PathBuf, PathBuf) {
    static IMG: std::sync::Mutex<Vec<(String, PathBuf, PathBuf)>> = std::sync::Mutex::new(Vec::new());
    let mut built = IMG.lock().unwrap_or_else(|e| e.into_inner());
    if let Some((_, out, keys)) = built.iter().find(|(n, _, _)| n == name) {
        return (out.clone(), keys.clone());
    }
    let keys = keys(name);
    let profile = format!(
        "[image]\nnetboot = true\n[secure_boot]\nmode = \"uki\"\nkey = {:?}\ncert = {:?}\n",
        keys.join("db.key").display().to_string(),
        keys.join("db.crt").display().to_string()
    );
    let out = built_variant(name, base, &profile);
    built.push((name.into(), out.clone(), keys.clone()));
    (out, keys)
}

/// A machine of a fleet with Secure Boot on: Microsoft's keys as shipped (OVMF_VARS_4M.ms.fd,
/// AAVMF_VARS.ms.fd) with the operator's db certificate added (as `efi-updatevar -a` or a
/// set-up screen would), written to `dir/vars.fd` by virt-fw-vars.
fn fleet_vars(dir: &Path, cert: &Path, arch: Arch) -> PathBuf {
    let vars = dir.join("vars.fd");
    let template = match arch {
        Arch::X86_64 => "/usr/share/OVMF/OVMF_VARS_4M.ms.fd",
        Arch::Aarch64 => "/usr/share/AAVMF/AAVMF_VARS.ms.fd",
    };
    let o = std::process::Command::new(virt_fw_vars())
        .args(["--input", template, "--output"])
        .arg(&vars)
        .args(["--add-db", "8be4df61-93ca-11d2-aa0d-00e098032b8c"])
        .arg(cert)
        .output()
        .unwrap();
    assert!(o.status.success(), "virt-fw-vars: {}", String::from_utf8_lossy(&o.stderr));
    vars
}

/// QEMU in `ns` under the firmware's Secure Boot build with `vars`, booting from the network
/// with the firmware's own PXE client (no iPXE ROM) on tap0. x86-64: OVMF with SMM and secure
/// flash; arm64: AAVMF on `virt` (its variables need no SMM there).
fn qemu_secure(ns: &Netns, vars: &Path, mac: &str, arch: Arch) -> std::process::Command {
    let mut c = ns.command(&format!("qemu-system-{arch}"));
    match arch {
        Arch::X86_64 => {
            c.args(["-M", "q35,smm=on", "-global", "driver=cfi.pflash01,property=secure,value=on"]);
            c.args(["-drive", "if=pflash,format=raw,unit=0,readonly=on,file=/usr/share/OVMF/OVMF_CODE_4M.secboot.fd"]);
        }
        Arch::Aarch64 => {
            c.args(["-M", "virt", "-cpu", "cortex-a57"]);
            c.args(["-drive", "if=pflash,format=raw,unit=0,readonly=on,file=/usr/share/AAVMF/AAVMF_CODE.ms.fd"]);
        }
    }
    c.args(["-accel", "tcg", "-m", "1024", "-nodefaults", "-no-user-config"]);
    c.args(["-display", "none", "-no-reboot", "-serial", "stdio"]);
    c.arg("-drive").arg(format!("if=pflash,format=raw,unit=1,file={}", vars.display()));
    c.args(["-netdev", "tap,id=n0,ifname=tap0,script=no,downscript=no"]);
    c.arg("-device").arg(format!("virtio-net-pci,netdev=n0,mac={mac},bootindex=1,romfile="));
    c
}

/// What every secure netboot test starts from: its own netns with the server's bridge and the
/// machine's tap, a folder, and the machine's variables with the operator's db certificate.
struct SecureLab {
    ns: Netns,
    dir: PathBuf,
    vars: PathBuf,
}

fn secure_lab(name: &str, keys: &Path, arch: Arch) -> SecureLab {
    let ns = Netns::new(name);
    ns.bridge_with_tap(&format!("{SERVER}/24"));
    let dir = tmp(name);
    let vars = fleet_vars(&dir, &keys.join("db.crt"), arch);
    SecureLab { ns, dir, vars }
}

/// The end of every secure netboot: the root fetched from the boot server and mapped through
/// dm-verity, ready as `host`, the kernel saying Secure Boot is on.
fn expect_verified_ready_under_secure_boot(vm: &mut Machine, host: &str) {
    vm.expect_stage("fetch", "http://10.99.0.1/rootfs.squashfs", BOOT);
    vm.expect_stage("verify", oa_contract::console::VERITY_STAGE_TEXT, BOOT);
    assert_eq!(vm.expect_ready(BOOT), host);
    vm.send_line("echo SB=$(dmesg | grep -o 'Secure boot enabled' | head -n1)");
    vm.expect("SB=Secure boot enabled", Duration::from_secs(30));
}

/// shim asks for its neighbours relative to its own path, GRUB from the root of the server:
/// each of `files` was sent over TFTP to the client the log names as `client` (`"<mac>
/// (10.99.0.1"` where the server saw the lease; by address alone where it did not).
fn assert_sent_over_tftp(log: &str, client: &str, files: &[&str]) {
    for f in files {
        let sent =
            log.lines().any(|x| x.contains(client) && x.contains(&format!("RRQ {f} (octet)")) && x.contains(": sent "));
        assert!(sent, "{f} sent over TFTP:\n{log}");
    }
}

/// Secure netboot end to end: firmware with Secure Boot on runs Debian's shim from `oa serve`
/// over TFTP, shim runs Debian's network GRUB, GRUB chain-loads the UKI signed with the
/// operator's key (checked against db), and the UKI's signed command line fetches the root
/// from the boot server and maps it through dm-verity.
#[test]
fn secure_boot_netboots_through_shim_and_grub_to_a_signed_uki() {
    let (out, keys) = secure_netboot_image("tiny-net-sb", "tiny-net");
    let mac = "52:54:00:0a:00:09";
    let lab = secure_lab("pxe-sb", &keys, Arch::X86_64);
    let (_srv, log) = serve_dhcp(&lab.ns, "pxe_sb", &out, &lab.dir.join("leases.json"), &[]);
    let mut vm = Machine::start("pxe_sb", qemu_secure(&lab.ns, &lab.vars, mac, Arch::X86_64));
    vm.expect("oa: loading /sb/oa.efi", BOOT);
    // The command line is the signed one (the boot server's address found by oa-init).
    vm.expect_stage("cmdline", "profile=tiny-net-sb oa.root=http://next-server/rootfs.squashfs oa.verity=", BOOT);
    // oa serve leases the address itself and says so in its offer: no proxy offer awaited.
    vm.expect_info("boot server 10.99.0.1: siaddr of the address offer (oa serve leasing) from 10.99.0.1", BOOT);
    expect_verified_ready_under_secure_boot(&mut vm, "tiny-net");
    let l = server_log(&log);
    assert_sent_over_tftp(
        &l,
        &format!("{mac} (10.99.0.1"),
        &["sb/shimx64.efi", "sb/grubx64.efi", "/grub/grub.cfg", "/sb/oa.efi"],
    );
    assert!(l.contains(&format!("{mac} Discover on 67 arch=7 (UEFI x64) class=PXEClient")), "{l}");
    assert!(l.contains("secure netboot: x86_64 UEFI clients get sb/shimx64.efi"), "{l}");
    let named = |x: &&str| x.contains(mac) && x.contains("user-class=oa-boot-server: Offer address 10.99.0.");
    assert!(l.lines().filter(named).any(|x| x.contains(", boot server 10.99.0.1")), "{l}");
    // What shim and GRUB probe for and go on without is not a warning.
    assert!(!l.lines().any(|x| x.contains(" WARN ") && x.contains("tftp")), "{l}");
}

/// The same chain for arm64 from Debian's arm64 packages (shimaa64, grubnetaa64, the
/// linuxaa64 stub) under AAVMF with Secure Boot on: no iPXE for arm64 needed.
#[test]
fn arm64_secure_boot_netboots_through_shim_and_grub_to_a_signed_uki() {
    let (out, keys) = secure_netboot_image("tiny-arm64-sb", "tiny-arm64");
    let mac = "52:54:00:0a:00:0b";
    let lab = secure_lab("pxe-sb-a64", &keys, Arch::Aarch64);
    let (_srv, log) = serve_dhcp(&lab.ns, "pxe_sb_a64", &out, &lab.dir.join("leases.json"), &[]);
    let mut vm = Machine::start("pxe_sb_a64", qemu_secure(&lab.ns, &lab.vars, mac, Arch::Aarch64));
    vm.expect("oa: loading /sb/oa.efi", BOOT);
    vm.expect_stage("cmdline", "profile=tiny-arm64-sb oa.root=http://next-server/rootfs.squashfs oa.verity=", BOOT);
    expect_verified_ready_under_secure_boot(&mut vm, "tiny-arm64");
    vm.send_line("echo arch=$(uname -m)");
    vm.expect("arch=aarch64", Duration::from_secs(30));
    let l = server_log(&log);
    assert_sent_over_tftp(
        &l,
        &format!("{mac} (10.99.0.1"),
        &["sb/shimaa64.efi", "sb/grubaa64.efi", "/grub/grub.cfg", "/sb/oa.efi"],
    );
    assert!(l.contains(&format!("{mac} Discover on 67 arch=11 (UEFI arm64) class=PXEClient")), "{l}");
    assert!(l.contains("secure netboot: aarch64 UEFI clients get sb/shimaa64.efi"), "{l}");
    assert!(!l.lines().any(|x| x.contains(" WARN ") && x.contains("tftp")), "{l}");
}

/// A LAN attacker (here: the server's own folder) swaps the root image for another valid
/// squashfs, the genuine one with a file added: the signed UKI's `oa.verity=` refuses it
/// (FATAL naming dm-verity), and the machine never comes up on it.
#[test]
fn secure_netboot_refuses_a_root_image_replaced_on_the_server() {
    let (out, keys) = secure_netboot_image("tiny-net-sb", "tiny-net");
    let out = &out;
    let mac = "52:54:00:0a:00:0a";
    let lab = secure_lab("pxe-sb-swap", &keys, Arch::X86_64);
    let dir = &lab.dir;
    // The server's folder: hard links to the build, but for its own rootfs.squashfs.
    let served = dir.join("served");
    let run = |c: &mut std::process::Command| {
        let o = c.output().unwrap();
        assert!(o.status.success(), "{c:?}: {}", String::from_utf8_lossy(&o.stderr));
    };
    run(std::process::Command::new("cp").arg("-rl").arg(out).arg(&served));
    let (_srv, _log) = serve_dhcp(&lab.ns, "pxe_sb_swap", &served, &dir.join("leases.json"), &[]);
    let tree = dir.join("tree");
    run(std::process::Command::new("unsquashfs")
        .arg("-q")
        .arg("-no-progress")
        .arg("-d")
        .arg(&tree)
        .arg(out.join("rootfs.squashfs")));
    std::fs::write(tree.join("etc/attacker"), vec![b'x'; 1 << 20]).unwrap();
    let evil = dir.join("evil.squashfs");
    run(std::process::Command::new("mksquashfs").arg(&tree).arg(&evil).args(["-quiet", "-no-progress", "-noappend"]));
    std::fs::remove_file(served.join("rootfs.squashfs")).unwrap();
    std::fs::copy(&evil, served.join("rootfs.squashfs")).unwrap();
    let mut vm = Machine::start("pxe_sb_swap", qemu_secure(&lab.ns, &lab.vars, mac, Arch::X86_64));
    vm.expect_stage("fetch", "http://10.99.0.1/rootfs.squashfs", BOOT);
    let fatal = vm.expect(oa_contract::FATAL_PREFIX, BOOT);
    assert!(fatal.contains("verity"), "{fatal}");
    vm.expect_absent(oa_contract::READY_LINE, Duration::from_secs(3));
}

/// The network's own DHCP server: dnsmasq (addresses only, no PXE, no DNS) in `ns`, a
/// namespace of its own on the test's bridge (oa serve's proxyDHCP holds port 67 in the
/// bridge's), its leases and log in `dir`, then `extra`. Waits until it serves.
fn dnsmasq(ns: &Netns, dir: &Path, range: &str, extra: &[&str]) -> (Proc, PathBuf) {
    let log = dir.join("dnsmasq.log");
    let mut args: Vec<String> = vec![
        "--no-daemon".into(),
        "--conf-file=/dev/null".into(),
        "--port=0".into(),
        "--user=root".into(),
        "--interface=vo0".into(),
        "--bind-interfaces".into(),
        format!("--dhcp-range={range},255.255.255.0,1h"),
        format!("--dhcp-leasefile={}", dir.join("dnsmasq.leases").display()),
        format!("--pid-file={}", dir.join("dnsmasq.pid").display()),
        "--log-dhcp".into(),
    ];
    args.extend(extra.iter().map(|s| s.to_string()));
    let p = ns.spawn("dnsmasq", &args, &log);
    let t = Instant::now();
    while !server_log(&log).contains("DHCP, IP range") {
        assert!(t.elapsed() < Duration::from_secs(20), "dnsmasq did not start:\n{}", server_log(&log));
        std::thread::sleep(Duration::from_millis(50));
    }
    (p, log)
}

/// Secure netboot where oa serve is only the proxyDHCP server (its default mode) and dnsmasq
/// (10.99.0.2) leases the addresses: the firmware gets its address from dnsmasq and shim from
/// oa serve's proxy offer, and oa-init, whose signed command line says `next-server`, asks oa
/// serve to name itself (option 77) and fetches the root from 10.99.0.1, although dnsmasq's
/// own lease names itself as next-server. Debian 12's GRUB (2.06) takes its TFTP server
/// from the firmware's DHCP ACK only (no proxyDHCP support in its efinet), so dnsmasq names
/// oa serve as next-server (siaddr, no boot file) to `PXEClient`-class clients, as PXE set-ups
/// do; oa-init is not one of them.
#[test]
fn secure_netboot_in_proxy_mode_finds_oa_serve_next_to_another_dhcp_server() {
    let (out, keys) = secure_netboot_image("tiny-net-sb", "tiny-net");
    let mac = "52:54:00:0a:00:0c";
    let lab = secure_lab("pxe-sb-proxy", &keys, Arch::X86_64);
    let side = Netns::new("pxe-sb-proxy-dns");
    lab.ns.veth_to(&side, "10.99.0.2/24");
    let grub_needs = ["--dhcp-vendorclass=set:pxe,PXEClient", "--dhcp-boot=tag:pxe,,,10.99.0.1"];
    let (_dnsmasq, dlog) = dnsmasq(&side, &lab.dir, "10.99.0.100,10.99.0.150", &grub_needs);
    let (_srv, log) = serve(&lab.ns, "pxe_sb_proxy", &out, &[]);
    let mut vm = Machine::start("pxe_sb_proxy", qemu_secure(&lab.ns, &lab.vars, mac, Arch::X86_64));
    vm.expect("oa: loading /sb/oa.efi", BOOT);
    vm.expect_stage("cmdline", "profile=tiny-net-sb oa.root=http://next-server/rootfs.squashfs", BOOT);
    let net = vm.expect_stage("network", &format!("eth0 ({mac}) 10.99.0."), BOOT);
    assert!(net.contains("from DHCP server 10.99.0.2"), "the address is dnsmasq's: {net}");
    vm.expect_info("boot server 10.99.0.1: siaddr of the proxyDHCP offer from 10.99.0.1", BOOT);
    expect_verified_ready_under_secure_boot(&mut vm, "tiny-net");
    let d = server_log(&dlog);
    assert!(d.lines().any(|x| x.contains("DHCPACK(vo0)") && x.contains(mac)), "dnsmasq leased the address:\n{d}");
    // oa-init's own lease names dnsmasq as next-server: only the proxy offer says 10.99.0.1.
    assert!(d.contains("next server: 10.99.0.2"), "{d}");
    let l = server_log(&log);
    assert!(l.contains(&format!("{mac} Discover on 67 arch=7 (UEFI x64) class=PXEClient")), "{l}");
    // A proxy does not see the ACK, so its TFTP lines name the client by address only.
    assert_sent_over_tftp(&l, "(10.99.0.1", &["sb/shimx64.efi", "sb/grubx64.efi", "/grub/grub.cfg", "/sb/oa.efi"]);
    let asked = format!("user-class={}: Offer boot server 10.99.0.1", oa_contract::dhcp::BOOT_SERVER_USER_CLASS);
    assert!(l.lines().any(|x| x.contains(mac) && x.contains(&asked)), "oa serve named itself to oa-init:\n{l}");
}

/// UEFI HTTP boot under Secure Boot: the firmware's PXE is off (fw_cfg), so it boots the
/// URL oa serve's DHCP answer names for an `HTTPClient`: the signed UKI itself, checked against
/// db by the firmware, over HTTP (no shim, no GRUB: see `pxe::boot::select`).
#[test]
fn secure_boot_netboots_over_uefi_http_boot_to_the_signed_uki() {
    let (out, keys) = secure_netboot_image("tiny-net-sb", "tiny-net");
    let mac = "52:54:00:0a:00:0d";
    let lab = secure_lab("pxe-sb-http", &keys, Arch::X86_64);
    let (_srv, log) = serve_dhcp(&lab.ns, "pxe_sb_http", &out, &lab.dir.join("leases.json"), &[]);
    let mut q = qemu_secure(&lab.ns, &lab.vars, mac, Arch::X86_64);
    q.args(["-fw_cfg", "name=opt/org.tianocore/IPv4PXESupport,string=n"]);
    q.args(["-fw_cfg", "name=opt/org.tianocore/IPv6PXESupport,string=n"]);
    let mut vm = Machine::start("pxe_sb_http", q);
    vm.expect("URI: http://10.99.0.1/sb/oa.efi", BOOT);
    vm.expect_stage("cmdline", "profile=tiny-net-sb oa.root=http://next-server/rootfs.squashfs oa.verity=", BOOT);
    expect_verified_ready_under_secure_boot(&mut vm, "tiny-net");
    let l = server_log(&log);
    assert!(l.contains(&format!("{mac} Discover on 67 arch=16 (UEFI x64 HTTP) class=HTTPClient")), "{l}");
    assert!(l.contains(&format!("{mac} (10.99.0.1")) && l.contains("\"GET /sb/oa.efi\" 200"), "{l}");
    assert!(!l.contains("RRQ"), "nothing over TFTP: {l}");
}
