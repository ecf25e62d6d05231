//! oa-init keeps its DHCP lease: a netbooted VM (tiny-net over iPXE, `oa serve --mode dhcp`
//! with a one-minute lease, the shortest it allows) renews it at T1 with the server that gave
//! it, from stage 2 too (the thread stage 1 started ends at exec; stage 2 picks the lease up
//! from /run/oa/lease.json); a server that no longer has the address NAKs the renewal, and
//! oa-init drops the address and gets a new one; once the server is gone it gives the address
//! up when the lease ends (the kernel address carries the lease's lifetime, and oa-init
//! removes it and says so). TCG only; no packet leaves the test's namespace. About three
//! minutes.

use oa_qemu_tests::netns::{Netns, Proc};
use oa_qemu_tests::{built, oa_bin, workspace, Machine};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

const BOOT: Duration = Duration::from_secs(180);
const SERVER: &str = "10.99.0.1";
const MAC: &str = "52:54:00:0a:00:07";
const IP: &str = "10.99.0.100";
const LEASE: u64 = 60;

fn logs() -> PathBuf {
    let d = workspace().join("target/qemu-logs");
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn qemu(ns: &Netns) -> std::process::Command {
    let mut c = ns.command("qemu-system-x86_64");
    c.args(["-M", "q35", "-accel", "tcg", "-m", "512", "-nodefaults", "-no-user-config", "-display", "none"]);
    c.args(["-no-reboot", "-serial", "stdio", "-boot", "n"]);
    c.args(["-netdev", "tap,id=n0,ifname=tap0,script=no,downscript=no"]);
    c.arg("-device").arg(format!("virtio-net-pci,netdev=n0,mac={MAC},bootindex=1"));
    c
}

/// `oa serve --mode dhcp` on br0 handing out `range` for [`LEASE`] seconds; waits until it
/// serves.
fn serve(ns: &Netns, out: &Path, leases: &Path, log: &str, range: &str) -> (Proc, PathBuf) {
    let log = logs().join(log);
    let lease = LEASE.to_string();
    let (out, leases) = (out.display().to_string(), leases.display().to_string());
    let args: Vec<String> = [
        "serve",
        &out,
        "--interface",
        "br0",
        "--address",
        SERVER,
        "--mode",
        "dhcp",
        "--range",
        range,
        "--leases",
        &leases,
        "--lease-time",
        &lease,
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    // Per-packet DHCP lines are at debug; the checks below read them.
    let p = ns.spawn_env(&oa_bin().display().to_string(), &args, &[("RUST_LOG", "info,dhcp=debug")], &log);
    let t = Instant::now();
    while !read(&log).contains("serving ") {
        assert!(t.elapsed() < Duration::from_secs(20), "oa serve did not start:\n{}", read(&log));
        std::thread::sleep(Duration::from_millis(50));
    }
    (p, log)
}

fn read(p: &Path) -> String {
    std::fs::read_to_string(p).unwrap_or_default()
}

#[test]
fn netbooted_client_renews_its_lease_obeys_a_nak_and_drops_the_address_when_it_ends() {
    let out = built("tiny-net");
    let ns = Netns::new("lease");
    ns.bridge_with_tap(&format!("{SERVER}/24"));
    let dir = workspace().join("target/qemu-tests").join(format!("lease-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let leases = dir.join("leases.json");
    let (srv, log) = serve(&ns, &out, &leases, "lease-serve.log", "10.99.0.100-10.99.0.150");

    let mut vm = Machine::start("lease", qemu(&ns));
    vm.expect_stage("network", &format!("eth0 ({MAC}) {IP}/24"), BOOT);
    let net = vm.console();
    assert!(net.contains(&format!("(lease {LEASE} s)")), "the server's lease time reached oa-init");
    assert_eq!(vm.expect_ready(BOOT), "tiny-net");

    // The kernel address lives as long as the lease, no longer (IFA_CACHEINFO).
    vm.send_line("ip -4 addr show dev eth0 | grep -o 'valid_lft [0-9a-z]*' | sed 's/^/LFT=/'");
    let lft = vm.expect("LFT=valid_lft ", Duration::from_secs(30));
    let secs: u64 = lft
        .rsplit("valid_lft ")
        .next()
        .and_then(|v| v.trim().strip_suffix("sec"))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| vm.fail(&format!("the address has no finite lifetime: `{lft}`")));
    assert!(secs <= LEASE && secs > 0, "valid_lft {secs} s, lease {LEASE} s");

    // Renewed at T1 (30 s after the ACK) from stage 2, after the ready line: unicast to the
    // server, which ACKs the same address back to it (oa serve's T1 and T2: half and 7/8 of
    // the lease, in whole eighths).
    let renewed = format!(
        "lease of {IP} on eth0 renewed by {SERVER} (renewing): {LEASE} s, T1 {} s, T2 {} s",
        LEASE / 2,
        LEASE / 8 * 7
    );
    vm.expect(&renewed, Duration::from_secs(LEASE + 30));
    let l = read(&log);
    let renewal = format!(": Ack address {IP} lease {LEASE} s -> {IP}:68");
    assert!(
        l.lines().any(|x| x.contains(MAC) && x.contains("Request on 67") && x.contains(&renewal)),
        "the server acknowledged a renewal (unicast reply to the bound address):\n{l}"
    );
    assert!(read(&leases).contains(MAC), "the lease is on the server's disk");

    // The server comes back with another pool: the next renewal is NAKed, the address goes,
    // and oa-init asks afresh (DISCOVER) and gets an address from the new pool.
    drop(srv);
    let (srv, log2) = serve(&ns, &out, &leases, "lease-serve2.log", "10.99.0.200-10.99.0.250");
    let naked = vm.expect(&format!("lease of {IP} on eth0 NAKed by {SERVER}"), Duration::from_secs(LEASE));
    assert!(naked.contains("is not in the pool") && naked.contains("address removed"), "{naked}");
    let new = vm.expect_info("new lease of 10.99.0.200 on eth0 from DHCP server 10.99.0.1", Duration::from_secs(60));
    let acked = Instant::now();
    assert!(new.contains(&format!("({LEASE} s)")), "{new}");
    let l = read(&log2);
    assert!(l.contains(&format!("{MAC} Request on 67 arch=- class=-: Nak refused: {IP} is not in the pool")), "{l}");
    vm.send_line("echo ADDRS=$(ip -4 addr show dev eth0 | grep -o 'inet [0-9.]*')");
    vm.expect("ADDRS=inet 10.99.0.200", Duration::from_secs(30));

    // The server goes away: RENEWING and REBINDING get no answer, and at the end of the lease
    // (60 s after the last ACK) the address is gone.
    drop(srv);
    let expired = vm.expect("lease of 10.99.0.200 on eth0 expired", Duration::from_secs(LEASE + 30));
    let took = acked.elapsed();
    assert!(
        took >= Duration::from_secs(LEASE - 5) && took <= Duration::from_secs(LEASE + 15),
        "expired {} s after the last ACK (lease {LEASE} s)",
        took.as_secs()
    );
    assert!(expired.contains("address removed"), "{expired}");
    vm.send_line("echo ADDRS=$(ip -4 addr show dev eth0 | grep -c inet)");
    vm.expect("ADDRS=0", Duration::from_secs(30));
}
