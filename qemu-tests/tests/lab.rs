//! `oa lab` on the shipped example environments (examples/*.toml), as a user runs it: the real
//! binary builds the machines' profiles (cached), makes the lab's namespace, starts `oa serve`
//! (and dnsmasq) on its networks, boots the machines under TCG and runs their checks; the
//! tests read its exit status, table, JUnit XML and server logs. Also: a failing check and a
//! broken file, each reported naming what and where.
//!
//! These replace the hand-written QEMU scenarios they cover: UEFI PXE fetching iPXE over TFTP,
//! proxyDHCP next to dnsmasq (two-networks), and the USB stick whose persistence survives a
//! reboot (usb-persistence). debian-ssh logs into a netbooted Debian machine over SSH.

use oa_qemu_tests::{oa_bin, workspace};
use std::path::PathBuf;
use std::process::{Command, Output};
use std::sync::Mutex;

/// One lab at a time: each boots as many machines as there are cores.
static ONE_LAB: Mutex<()> = Mutex::new(());

fn lab_dir(name: &str) -> PathBuf {
    workspace().join("target/qemu-tests/lab").join(name)
}

/// `oa lab ENV --out target/qemu-tests --dir target/qemu-tests/lab/<name> --junit <dir>.xml`.
fn oa_lab(name: &str, env: &std::path::Path, extra: &[&str]) -> (Output, String, String) {
    let _one = ONE_LAB.lock().unwrap_or_else(|e| e.into_inner());
    let dir = lab_dir(name);
    let junit = dir.with_extension("xml");
    let _ = std::fs::remove_file(&junit);
    let o = Command::new(oa_bin())
        .current_dir(workspace())
        .arg("lab")
        .arg(env)
        .args(["--accel", "tcg", "--out"])
        .arg(workspace().join("target/qemu-tests"))
        .arg("--dir")
        .arg(&dir)
        .arg("--junit")
        .arg(&junit)
        .args(extra)
        .output()
        .expect("running oa lab");
    let stdout = String::from_utf8_lossy(&o.stdout).to_string();
    let stderr = String::from_utf8_lossy(&o.stderr).to_string();
    eprintln!("--- oa lab {} ---\n{stdout}\n{}", env.display(), tail(&stderr, 60));
    (o, stdout, stderr)
}

fn tail(s: &str, n: usize) -> String {
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

fn read(p: PathBuf) -> String {
    std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// The row of `machine` in the table, split into its columns' words.
fn row<'a>(table: &'a str, machine: &str) -> &'a str {
    table
        .lines()
        .find(|l| l.split_whitespace().next() == Some(machine))
        .unwrap_or_else(|| panic!("no row for {machine}:\n{table}"))
}

#[test]
fn the_two_networks_example_netboots_bios_uefi_and_proxy_machines() {
    let (o, table, _) = oa_lab("two-networks", &workspace().join("examples/two-networks.toml"), &[]);
    assert!(o.status.success(), "oa lab exited {}", o.status);
    assert!(
        row(&table, "bios").contains("pxe bios on lan") && row(&table, "bios").ends_with("3/3     passed"),
        "{table}"
    );
    assert!(row(&table, "uefi").contains("pxe uefi on lan") && row(&table, "uefi").contains("2/2"), "{table}");
    assert!(row(&table, "office").contains("pxe bios on office") && row(&table, "office").contains("4/4"), "{table}");
    assert!(table.contains("lab two-networks: 3/3 machines passed"), "{table}");
    let junit = read(lab_dir("two-networks").with_extension("xml"));
    assert!(junit.contains("tests=\"9\" failures=\"0\""), "{junit}");
    let lan = read(lab_dir("two-networks").join("net-lan/serve.log"));
    // OVMF's own PXE client took ipxe.efi over TFTP, then iPXE asked again.
    assert!(lan.contains("RRQ ipxe.efi (octet)"), "{lan}");
    assert!(lan.contains("\"GET /rootfs.squashfs\" 200") || lan.contains("/rootfs.squashfs\" 200"), "{lan}");
    // On the office network the address came from dnsmasq and the boot from oa serve.
    let office = read(lab_dir("two-networks").join("net-office/serve.log"));
    assert!(office.contains("rootfs.squashfs\" 200"), "{office}");
    let dnsmasq = read(lab_dir("two-networks").join("net-office/dnsmasq.log"));
    assert!(dnsmasq.contains("DHCPACK(eth0) 10.91.0."), "{dnsmasq}");
    // Nothing is left behind.
    let ns = Command::new("ip").args(["netns", "list"]).output().unwrap();
    assert!(!String::from_utf8_lossy(&ns.stdout).contains("oa-lab-"), "a lab namespace is left");
}

#[test]
fn the_usb_persistence_example_keeps_a_file_across_a_reboot_and_a_power_cut() {
    let (o, table, _) = oa_lab("usb-persistence", &workspace().join("examples/usb-persistence.toml"), &[]);
    assert!(o.status.success(), "oa lab exited {}", o.status);
    assert!(row(&table, "stick").contains("usb bios") && row(&table, "stick").contains("9/9     passed"), "{table}");
    let console = read(lab_dir("usb-persistence").join("stick.log"));
    assert!(console.contains("stage persist: formatted"), "first boot formats the stick's partition");
    assert_eq!(console.matches("oa-init: ready").count(), 3, "three boots: first, after reboot, after power cut");
}

#[test]
fn the_debian_ssh_example_logs_in_over_ssh_and_is_reached_from_another_machine() {
    let (o, table, _) = oa_lab("debian-ssh", &workspace().join("examples/debian-ssh.toml"), &[]);
    assert!(o.status.success(), "oa lab exited {}", o.status);
    assert!(
        row(&table, "debian").contains("pxe bios on lan") && row(&table, "debian").contains("2/2     passed"),
        "{table}"
    );
    assert!(row(&table, "client").contains("2/2     passed"), "{table}");
    // The lab's key went to the machine in its configuration, served to that machine only.
    let serve = read(lab_dir("debian-ssh").join("net-lan/serve.log"));
    assert!(serve.contains("\"GET /config/") && serve.contains(" 200 "), "{serve}");
    let console = read(lab_dir("debian-ssh").join("debian.log"));
    assert!(console.contains("authorized_keys (1 key)"), "oa-init wrote admin's key:\n{console}");
}

#[test]
fn a_failing_check_names_the_machine_the_check_and_the_console() {
    let dir = lab_dir("failing-env");
    std::fs::create_dir_all(&dir).unwrap();
    let env = dir.with_extension("toml");
    std::fs::write(
        &env,
        format!(
            "[machines.quick]\nprofile = {:?}\nboot = \"kernel\"\nready_within = 120\n\n[[machines.quick.checks]]\nexpect = \"hello from oa\"\n\n[[machines.quick.checks]]\nexpect = \"no such text\"\nwithin = 3\n\n[[machines.quick.checks]]\nreboot = true\n",
            workspace().join("profiles/tiny.toml").display().to_string()
        ),
    )
    .unwrap();
    let (o, table, stderr) = oa_lab("failing", &env, &["--jobs", "1"]);
    assert_eq!(o.status.code(), Some(1), "a failed check exits 1");
    assert!(
        row(&table, "quick").contains("kernel bios")
            && row(&table, "quick").contains("2/4")
            && row(&table, "quick").ends_with("FAILED"),
        "{table}"
    );
    assert!(
        stderr.contains(&format!("FAILED: machine quick: check `expect \"no such text\"` ({}:10): no \"no such text\" on the console within 3 s", env.display())),
        "{stderr}"
    );
    assert!(
        stderr.contains("--- console of quick") && stderr.contains("oa-init: ready"),
        "the console lines are shown:\n{stderr}"
    );
    let junit = read(lab_dir("failing").with_extension("xml"));
    assert!(junit.contains("failures=\"1\"") && junit.contains("<skipped/>"), "{junit}");
}

#[test]
fn a_broken_environment_file_names_file_line_and_column() {
    let dir = lab_dir("broken-env");
    std::fs::create_dir_all(&dir).unwrap();
    let env = dir.join("broken.toml");
    std::fs::write(
        &env,
        "[networks.lan]\nsubnet = \"10.90.0.0/24\"\n\n[machines.a]\nboot = \"floppy\"\noutput = \"x\"\n",
    )
    .unwrap();
    let o = Command::new(oa_bin()).arg("lab").arg(&env).output().unwrap();
    let e = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{e}");
    assert!(
        e.contains("broken.toml:5:8: boot = `floppy`: expected \"disk\", \"usb\", \"iso\", \"pxe\" or \"kernel\""),
        "{e}"
    );
}

/// The namespaces of labs (`oa-lab-<pid>[-tag]`) whose pid is `pid`.
fn lab_namespaces(pid: u32) -> Vec<String> {
    let o = Command::new("ip").args(["netns", "list"]).output().unwrap();
    String::from_utf8_lossy(&o.stdout)
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|n| n.strip_prefix("oa-lab-").and_then(|r| r.split('-').next()) == Some(&pid.to_string()))
        .map(str::to_string)
        .collect()
}

/// QEMU processes running inside namespace `ns` (`ip netns pids`).
fn pids_in(ns: &str) -> usize {
    let o = Command::new("ip").args(["netns", "pids", ns]).output().unwrap();
    String::from_utf8_lossy(&o.stdout).lines().count()
}

/// Start `oa lab` on a one-machine environment and wait until its machine is booting.
fn lab_booting(name: &str) -> (std::process::Child, PathBuf) {
    let dir = lab_dir(name);
    std::fs::create_dir_all(&dir).unwrap();
    let env = dir.with_extension("toml");
    std::fs::write(
        &env,
        format!(
            "[networks.lan]\nsubnet = \"10.93.0.0/24\"\nserve = \"dhcp\"\n\n[machines.slow]\nprofile = {:?}\nboot = \"kernel\"\nnetworks = [\"lan\"]\n\n[[machines.slow.checks]]\nexpect = \"never printed\"\nwithin = 600\n",
            workspace().join("profiles/tiny.toml").display().to_string()
        ),
    )
    .unwrap();
    let child = Command::new(oa_bin())
        .current_dir(workspace())
        .arg("lab")
        .arg(&env)
        .args(["--accel", "tcg", "--out"])
        .arg(workspace().join("target/qemu-tests"))
        .arg("--dir")
        .arg(lab_dir(&format!("{name}-run")))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let log = lab_dir(&format!("{name}-run")).join("slow.log");
    let start = std::time::Instant::now();
    while !std::fs::read_to_string(&log).unwrap_or_default().contains("oa-init") {
        assert!(start.elapsed() < std::time::Duration::from_secs(120), "the lab's machine did not start booting");
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    (child, log)
}

#[test]
fn ctrl_c_and_a_killed_lab_leave_no_namespace_or_machine_behind() {
    let _one = ONE_LAB.lock().unwrap_or_else(|e| e.into_inner());
    // Ctrl-C (SIGINT to oa alone, as `kill -INT` does; a terminal signals QEMU too).
    let (mut child, _) = lab_booting("interrupted");
    let pid = child.id();
    let ns = lab_namespaces(pid);
    assert_eq!(ns.len(), 1, "one namespace while it runs: {ns:?}");
    assert!(pids_in(&ns[0]) >= 2, "oa serve and QEMU run inside it");
    let t = std::time::Instant::now();
    Command::new("kill").args(["-INT", &pid.to_string()]).status().unwrap();
    let st = child.wait().unwrap();
    assert_eq!(st.code(), Some(1), "interrupted: exit 1");
    assert!(t.elapsed() < std::time::Duration::from_secs(15), "teardown took {:?}", t.elapsed());
    assert!(lab_namespaces(pid).is_empty(), "the namespace is deleted");

    // SIGKILL: QEMU and oa serve die with oa (PR_SET_PDEATHSIG); the next lab removes the
    // namespace left behind.
    let (mut child, _) = lab_booting("killed");
    let pid = child.id();
    let ns = lab_namespaces(pid);
    assert_eq!(ns.len(), 1);
    child.kill().unwrap();
    child.wait().unwrap();
    std::thread::sleep(std::time::Duration::from_secs(1));
    assert_eq!(pids_in(&ns[0]), 0, "nothing runs in the namespace of a killed lab");
    let dir = lab_dir("stale-env");
    std::fs::create_dir_all(&dir).unwrap();
    let next = dir.join("bad.toml");
    std::fs::write(&next, "[machines.x]\nboot = \"kernel\"\noutput = \"nowhere\"\n").unwrap();
    let o = Command::new(oa_bin()).arg("lab").arg(&next).output().unwrap();
    assert_eq!(o.status.code(), Some(2));
    assert!(lab_namespaces(pid).contains(&ns[0]), "a bad environment stops before the lab is made");
    let quick = dir.join("quick.toml");
    std::fs::write(
        &quick,
        format!(
            "[machines.quick]\nprofile = {:?}\nboot = \"kernel\"\n\n[[machines.quick.checks]]\nexpect = \"hello from oa\"\n",
            workspace().join("profiles/tiny.toml").display().to_string()
        ),
    )
    .unwrap();
    let o = Command::new(oa_bin())
        .current_dir(workspace())
        .arg("lab")
        .arg(&quick)
        .args(["--accel", "tcg", "--out"])
        .arg(workspace().join("target/qemu-tests"))
        .arg("--dir")
        .arg(lab_dir("stale-run"))
        .output()
        .unwrap();
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{e}");
    assert!(e.contains(&format!("removing network namespace {}", ns[0])), "{e}");
    assert!(lab_namespaces(pid).is_empty(), "the next lab removed the stale namespace");
}
