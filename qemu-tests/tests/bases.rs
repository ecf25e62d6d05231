//! Full-OS bases under QEMU (TCG), docs/bases.md:
//! - `debian-ssh` (mmdebstrap from the host's Debian mirror, systemd after oa-init's stage 1)
//!   reaches multi-user.target and the ready line; an SSH login with a key generated here and
//!   given at build time runs a command over QEMU user networking (host port forward).
//! - an Arch base installed with pacman from a local repository made here (Arch mirrors are
//!   not reachable from these machines) boots to the ready line.

use oa_builder::build::default_cache_root;
use oa_contract::READY_LINE;
use oa_qemu_tests::{oa_build, workspace, Machine};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

mod common;
use common::output_spec;

/// systemd under TCG: measured ~30 s to the ready line; generous for a loaded machine.
const SYSTEMD_BOOT: Duration = Duration::from_secs(300);

fn dir(name: &str) -> PathBuf {
    let d = workspace().join("target/qemu-tests").join(name);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// An ed25519 key for the tests, made once with ssh-keygen and kept (so the image, whose key
/// list depends on it, stays cached across runs).
fn test_key() -> (PathBuf, String) {
    static ONCE: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _one_at_a_time = ONCE.lock().unwrap_or_else(|e| e.into_inner());
    let d = dir("ssh");
    let key = d.join("id_ed25519");
    if !key.exists() {
        let st = Command::new("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", "", "-C", "oa-qemu-test", "-f"])
            .arg(&key)
            .status()
            .expect("ssh-keygen (install openssh-client: make deps)");
        assert!(st.success());
    }
    let public = std::fs::read_to_string(key.with_extension("pub")).unwrap().trim().to_string();
    (key, public)
}

/// `oa build <profile file> --out target/qemu-tests/<name>` (checked against `oa graph`).
fn build(name: &str, profile: &Path) -> PathBuf {
    let out = workspace().join("target/qemu-tests").join(name);
    let took = oa_build(profile.as_os_str(), &out);
    eprintln!("[{name}] oa build took {:.1}s", took.as_secs_f64());
    out
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

#[test]
fn debian_ssh_boots_systemd_to_ready_and_accepts_an_ssh_login() {
    let (key, public) = test_key();
    // The shipped profile plus the test key, given at build time.
    let profile = dir("profiles").join("debian-ssh-test.toml");
    std::fs::write(
        &profile,
        format!(
            "include = [\"{}\"]\nname = \"debian-ssh-test\"\n[users.admin]\nssh_authorized_keys = [\"{public}\"]\n",
            workspace().join("profiles/debian-ssh.toml").display()
        ),
    )
    .unwrap();
    let out = build("debian-ssh-test", &profile);
    let (_, mut spec) = output_spec(&out);
    spec.memory_mib = 1024;
    let port = free_port();
    spec.extra.extend(
        ["-netdev", &format!("user,id=n0,hostfwd=tcp:127.0.0.1:{port}-:22"), "-device", "virtio-net-pci,netdev=n0"]
            .iter()
            .map(|s| s.to_string()),
    );
    let mut vm = Machine::boot("debian_ssh", &spec);
    vm.expect("exec /sbin/init", Duration::from_secs(90));
    let ready = vm.expect(READY_LINE, SYSTEMD_BOOT);
    let booted = vm.elapsed();
    assert!(ready.contains("host=debian-ssh"), "ready line names the host: {ready}");
    eprintln!("[debian_ssh] ready after {:.1}s", booted.as_secs_f64());

    // SSH with the key; the guest's systemd-networkd configures the NIC by DHCP.
    let deadline = Instant::now() + Duration::from_secs(120);
    let t = Instant::now();
    let output = loop {
        let o = Command::new("ssh")
            .args(["-i"])
            .arg(&key)
            .args(["-p", &port.to_string()])
            .args([
                "-o",
                "StrictHostKeyChecking=no",
                "-o",
                "UserKnownHostsFile=/dev/null",
                "-o",
                "BatchMode=yes",
                "-o",
                "ConnectTimeout=10",
                "-o",
                "LogLevel=ERROR",
            ])
            .arg("admin@127.0.0.1")
            .arg("echo oa-ssh-ok user=$(id -un) host=$(hostname) init=$(cat /proc/1/comm) tz=$(date +%Z)")
            .output()
            .expect("running ssh (install openssh-client: make deps)");
        let text = String::from_utf8_lossy(&o.stdout).to_string();
        if o.status.success() && text.contains("oa-ssh-ok") {
            break text;
        }
        if Instant::now() > deadline {
            vm.fail(&format!("no SSH login within 120 s: {}", String::from_utf8_lossy(&o.stderr)));
        }
        std::thread::sleep(Duration::from_secs(2));
    };
    eprintln!("[debian_ssh] ssh answered {:.1}s after the ready line: {}", t.elapsed().as_secs_f64(), output.trim());
    assert!(output.contains("user=admin host=debian-ssh init=systemd tz=UTC"), "{output}");
}

#[test]
fn arch_local_repository_builds_and_boots_to_ready() {
    let (_, public) = test_key();
    let base = dir("arch-local");
    let modules: Vec<String> =
        ["virtio_pci", "virtio_blk", "squashfs", "overlay", "loop"].iter().map(|s| s.to_string()).collect();
    let t = Instant::now();
    let repo = oa_testkit::archrepo::demo_repo(&base.join("repo"), "oa-local", &default_cache_root(), Some(&modules))
        .expect("making the local Arch repository");
    eprintln!("[arch_local] local repository made in {:.1}s", t.elapsed().as_secs_f64());
    let profile = base.join("arch-local.toml");
    std::fs::write(
        &profile,
        format!(
            "name = \"arch-local\"\narch = \"x86_64\"\nbase = \"arch\"\nhostname = \"arch-local\"\n\
             [kernel]\ncmdline = [\"console=ttyS0\", \"quiet\"]\nmodules = {modules:?}\n\
             [packages]\narch = [\"busybox\", \"linux\"]\n\
             [pacman]\nsig_level = \"Never\"\ncache_dir = \"{}\"\n[pacman.repos.oa-local]\nservers = [\"file://{}\"]\n\
             [init]\nsystem = \"oa\"\nconsole_shell = true\n\
             [users.admin]\nshell = \"/bin/sh\"\nssh_authorized_keys = [\"{public}\"]\n\
             [files.\"/etc/motd\"]\ncontent = \"oa arch-local\\n\"\n",
            base.join("pkgcache").display(),
            repo.display()
        ),
    )
    .unwrap();
    let out = build("arch-local", &profile);
    let (_, spec) = output_spec(&out);
    let mut vm = Machine::boot("arch_local", &spec);
    let ready = vm.expect(READY_LINE, Duration::from_secs(120));
    assert!(ready.contains("host=arch-local"), "{ready}");
    eprintln!("[arch_local] ready after {:.1}s", vm.elapsed().as_secs_f64());
    // Installed by pacman (its database is in the image), customised from the profile.
    vm.send_line("echo P=$(ls /var/lib/pacman/local | grep -c -e busybox -e linux -e filesystem) K=$(grep -c oa-qemu-test /home/admin/.ssh/authorized_keys) M=$(cat /etc/motd) U=$(uname -r | grep -c .)");
    vm.expect("P=3 K=1 M=oa arch-local U=1", Duration::from_secs(30));
}
