//! Full-OS bases under QEMU (TCG), docs/bases.md:
//! - `debian-ssh` (mmdebstrap from the host's Debian mirrors: the suite, -updates and
//!   -security, systemd after oa-init's stage 1): the image's apt sources list the three
//!   suites and packages.txt shows a version from -security (checked against the host's apt);
//!   it reaches multi-user.target and the ready line; an SSH login with a key generated here and
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

/// `dpkg --compare-versions a op b`.
fn dpkg_version(a: &str, op: &str, b: &str) -> bool {
    Command::new("dpkg").args(["--compare-versions", a, op, b]).status().expect("dpkg").success()
}

/// The host's apt: the versions of `pkg` it knows, by suite (`apt-cache madison`).
fn host_versions(pkg: &str) -> Vec<(String, String)> {
    let o = Command::new("apt-cache").args(["madison", pkg]).output().expect("apt-cache");
    String::from_utf8_lossy(&o.stdout)
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split('|').map(str::trim).collect();
            // `openssl | 3.0.22-1~deb12u2 | http://deb.debian.org/debian-security bookworm-security/main amd64 Packages`
            let suite = f.get(2)?.split_whitespace().nth(1)?.split('/').next()?.to_string();
            Some((suite, f.get(1)?.to_string()))
        })
        .collect()
}

/// Issue 16: the image's apt lists the suite, -updates and -security, and the base was made
/// from them: a shipped package has the version the host's apt reports from `-security`,
/// newer than the point release's.
fn check_debian_sources_and_security_versions(out: &Path) {
    let os = std::fs::read_to_string("/etc/os-release").unwrap();
    let suite = os.lines().find_map(|l| l.strip_prefix("VERSION_CODENAME=")).unwrap().trim_matches('"').to_string();
    let o = Command::new("unsquashfs")
        .arg("-cat")
        .arg(out.join(oa_contract::manifest::artifact::ROOTFS))
        .arg("etc/apt/sources.list.d/debian.sources")
        .output()
        .expect("unsquashfs (squashfs-tools)");
    let sources = String::from_utf8_lossy(&o.stdout).to_string();
    assert!(o.status.success(), "no debian.sources in the image: {}", String::from_utf8_lossy(&o.stderr));
    eprintln!("[debian_ssh] image apt sources:\n{sources}");
    let suites: Vec<&str> =
        sources.lines().filter_map(|l| l.strip_prefix("Suites:")).flat_map(|l| l.split_whitespace()).collect();
    for want in [suite.clone(), format!("{suite}-updates"), format!("{suite}-security")] {
        assert!(suites.contains(&want.as_str()), "the image's apt sources lack {want}: {sources}");
    }
    assert!(sources.contains("Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg"), "{sources}");
    let ls = Command::new("unsquashfs")
        .arg("-l")
        .arg(out.join(oa_contract::manifest::artifact::ROOTFS))
        .arg("etc/apt/sources.list")
        .output()
        .unwrap();
    assert!(
        !String::from_utf8_lossy(&ls.stdout).lines().any(|l| l.ends_with("etc/apt/sources.list")),
        "mmdebstrap's one-line sources.list is replaced by debian.sources"
    );

    let manifest: oa_contract::manifest::Manifest =
        serde_json::from_slice(&std::fs::read(out.join(oa_contract::manifest::FILE_NAME)).unwrap()).unwrap();
    let listed = manifest.artifact(oa_contract::manifest::artifact::PACKAGES).expect("packages.txt in the manifest");
    let packages = std::fs::read_to_string(out.join(&listed.path)).unwrap();
    let shipped = |name: &str| {
        packages.lines().find_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.len() == 3 && f[0] == name).then(|| f[1].to_string())
        })
    };
    assert!(shipped("openssh-server").is_some() && shipped("systemd").is_some(), "{packages}");
    let mut from_security = Vec::new();
    for pkg in ["openssl", "libssl3", "openssh-server", "openssh-client", "libc6", "systemd", "libsystemd0", "libudev1"]
    {
        let Some(have) = shipped(pkg) else { continue };
        let host = host_versions(pkg);
        let version_in = |s: &str| host.iter().filter(|(x, _)| x == s).map(|(_, v)| v.clone()).next();
        let (Some(sec), Some(release)) = (version_in(&format!("{suite}-security")), version_in(&suite)) else {
            continue;
        };
        eprintln!("[debian_ssh] {pkg}: image {have}, host apt: {suite} {release}, {suite}-security {sec}");
        // The mirror may have moved on since the host's `apt-get update`: at least that version.
        if dpkg_version(&sec, "gt", &release) && dpkg_version(&have, "ge", &sec) {
            from_security.push(format!("{pkg} {have} (security {sec} > {suite} {release})"));
        }
    }
    assert!(
        !from_security.is_empty(),
        "no shipped package has the {suite}-security version the host's apt reports (newer than the point release):\n{packages}"
    );
    eprintln!("[debian_ssh] from {suite}-security: {}", from_security.join(", "));
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
    check_debian_sources_and_security_versions(&out);
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
