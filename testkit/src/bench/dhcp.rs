//! DHCP: oa-pxe `--mode dhcp` against kea-dhcp4 under perfdhcp, in one run, over the same
//! pair of network namespaces: the server in one (a bridge `br0` with 10.77.0.1/16 and the
//! veth on it), perfdhcp in the other (`vo0`, 10.77.0.2/16). perfdhcp sends as a relay agent
//! (giaddr = its address, from port 67), so oa-pxe runs with `--relay 10.77.0.2`; Kea answers
//! relayed requests from a known subnet anyway.
//!
//! Kea: its defaults (Kea 2.2: single-threaded; raw sockets on br0, as perfdhcp broadcasts) but
//! its lease logger at WARN (at INFO it logs every lease; oa-pxe logs per packet at debug
//! only), one subnet 10.77.0.0/16 with the pool 10.77.1.0 - 10.77.200.255, valid-lifetime
//! 3600, lease-database memfile with persist true and lfc-interval 0 (no lease file cleanup
//! during the run). Kea's memfile appends each lease change to its CSV file without fsync;
//! oa-pxe fdatasyncs every batch before the ACKs of that batch go out (stronger durability,
//! measured anyway).
//!
//! Rows: completed DORA exchanges per second under `perfdhcp -4 -l vo0 -r 20000 -p 8 -R
//! 30000` (goal >= 1.0 x Kea), and at 1000/s the drops (DISCOVERs without an ACK) and the mean
//! delay of both exchanges.

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use super::{tied, Kill, Row};
use crate::netns::Netns;

const SERVER: &str = "10.77.0.1";
const CLIENT: &str = "10.77.0.2";
const POOL_START: &str = "10.77.1.0";
const POOL_END: &str = "10.77.200.255";

/// What one perfdhcp run reported.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Perf {
    /// "Rate: N 4-way exchanges/second".
    pub rate: f64,
    pub discovers: f64,
    pub offers: f64,
    pub requests: f64,
    pub acks: f64,
    /// Mean delays (ms) of DISCOVER-OFFER and REQUEST-ACK.
    pub offer_delay: f64,
    pub ack_delay: f64,
}

impl Perf {
    /// DISCOVERs that did not end in an ACK, in percent.
    pub fn drops(&self) -> f64 {
        if self.discovers > 0.0 {
            100.0 * (1.0 - self.acks / self.discovers)
        } else {
            100.0
        }
    }
}

/// Parse perfdhcp's report (the DISCOVER-OFFER section first, then REQUEST-ACK).
pub fn parse(out: &str) -> Perf {
    let mut p = Perf::default();
    let mut section = 0;
    let num = |s: &str| s.split_whitespace().next().and_then(|w| w.parse::<f64>().ok()).unwrap_or(0.0);
    for line in out.lines() {
        let l = line.trim();
        if let Some(r) = l.strip_prefix("Rate:") {
            p.rate = num(r);
        } else if l.contains("Statistics for: DISCOVER-OFFER") {
            section = 1;
        } else if l.contains("Statistics for: REQUEST-ACK") {
            section = 2;
        } else if let Some(v) = l.strip_prefix("sent packets:") {
            match section {
                1 => p.discovers = num(v),
                2 => p.requests = num(v),
                _ => {}
            }
        } else if let Some(v) = l.strip_prefix("received packets:") {
            match section {
                1 => p.offers = num(v),
                2 => p.acks = num(v),
                _ => {}
            }
        } else if let Some(v) = l.strip_prefix("avg delay:") {
            let v = num(v);
            match section {
                1 if p.offer_delay == 0.0 => p.offer_delay = v,
                2 if p.ack_delay == 0.0 => p.ack_delay = v,
                _ => {}
            }
        }
    }
    p
}

fn perfdhcp(client: &Netns, rate: u32, secs: u32) -> Perf {
    let out = client
        .command("perfdhcp")
        .args(["-4", "-l", "vo0", "-r", &rate.to_string(), "-p", &secs.to_string(), "-R", "30000"])
        .stdin(Stdio::null())
        .output()
        .expect("running perfdhcp (Kea's perfdhcp; `make bench-deps`)");
    let text = String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    let p = parse(&text);
    assert!(p.discovers > 0.0, "perfdhcp sent nothing:\n{text}");
    p
}

fn wait_for(log: &Path, what: &str, name: &str) {
    let t = Instant::now();
    while !std::fs::read_to_string(log).unwrap_or_default().contains(what) {
        assert!(
            t.elapsed() < Duration::from_secs(20),
            "{name} did not start:\n{}",
            std::fs::read_to_string(log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn kea_config(dir: &Path) -> String {
    format!(
        r#"{{"Dhcp4": {{
  "interfaces-config": {{"interfaces": ["br0"]}},
  "lease-database": {{"type": "memfile", "persist": true, "name": "{leases}", "lfc-interval": 0}},
  "valid-lifetime": 3600,
  "subnet4": [{{"id": 1, "subnet": "10.77.0.0/16", "pools": [{{"pool": "{POOL_START} - {POOL_END}"}}]}}],
  "loggers": [{{"name": "kea-dhcp4", "severity": "INFO", "output_options": [{{"output": "{log}"}}]}},
              {{"name": "kea-dhcp4.leases", "severity": "WARN", "output_options": [{{"output": "{log}"}}]}}]
}}}}"#,
        leases = dir.join("kea-leases.csv").display(),
        log = dir.join("kea.log").display()
    )
}

/// Each server in turn under the same perfdhcp loads: (rate run, 1000/s run).
fn measure(client: &Netns, start: impl FnOnce() -> Kill) -> (Perf, Perf) {
    let _server = start();
    let full = perfdhcp(client, 20000, 8);
    let slow = perfdhcp(client, 1000, 5);
    (full, slow)
}

/// Run the DHCP benchmark with the oa-pxe binary at `oa_pxe`.
pub fn run(oa_pxe: &Path) -> Vec<Row> {
    let dir = std::env::temp_dir().join(format!("oa-bench-dhcp-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let server = Netns::new("bds");
    let client = Netns::new("bdc");
    server.bridge(&format!("{SERVER}/16"));
    server.veth_to(&client, &format!("{CLIENT}/16"));

    std::fs::write(dir.join("kea.json"), kea_config(&dir)).unwrap();
    let kea = measure(&client, || {
        let log = dir.join("kea.out");
        let mut c = server.command("kea-dhcp4");
        c.arg("-c").arg(dir.join("kea.json"));
        c.env("KEA_PIDFILE_DIR", &dir).env("KEA_LOCKFILE_DIR", &dir);
        c.stdout(std::fs::File::create(&log).unwrap()).stderr(Stdio::null());
        let k = Kill(tied(c).spawn().expect("starting kea-dhcp4 (`make bench-deps`)"));
        wait_for(&dir.join("kea.log"), "DHCP4_STARTED", "kea-dhcp4");
        k
    });

    let out = crate::load::minimal_output(&dir, b"rootfs", "bench");
    let oa = measure(&client, || {
        let log = dir.join("oa-pxe.log");
        let mut c = server.command(&oa_pxe.display().to_string());
        c.arg(&out)
            .args(["--interface", "br0", "--address", SERVER, "--mode", "dhcp"])
            .args(["--range", &format!("{POOL_START}-{POOL_END}"), "--netmask", "255.255.0.0"])
            .args(["--lease-time", "3600", "--relay", CLIENT])
            .arg("--leases")
            .arg(dir.join("oa-leases.json"))
            .args(["--tftp-port", "6969", "--http-port", "8080", "--proxy-port", "4011"])
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap());
        let k = Kill(tied(c).spawn().expect("starting oa-pxe"));
        wait_for(&log, "serving ", "oa-pxe");
        k
    });
    for (name, (f, s)) in [("kea", kea), ("oa-pxe", oa)] {
        eprintln!("{name}: 20000/s: {f:?}\n{name}: 1000/s: {s:?}");
    }
    let _ = std::fs::remove_dir_all(&dir);
    vec![
        Row {
            what: "DHCP DORA, perfdhcp -r 20000 -R 30000, 8 s (leases on disk)".into(),
            unit: "exchanges/s",
            oa: oa.0.rate,
            peer: Some(("kea-dhcp4", kea.0.rate)),
            goal: Some(1.0),
        },
        Row {
            what: "DHCP DORA at 1000/s: DISCOVERs without an ACK (lower is better)".into(),
            unit: "%",
            oa: oa.1.drops(),
            peer: Some(("kea-dhcp4", kea.1.drops())),
            goal: None,
        },
        Row {
            what: "DHCP DORA at 1000/s: mean delay OFFER + ACK (lower is better)".into(),
            unit: "ms",
            oa: oa.1.offer_delay + oa.1.ack_delay,
            peer: Some(("kea-dhcp4", kea.1.offer_delay + kea.1.ack_delay)),
            goal: None,
        },
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_perfdhcp_report() {
        let text = "Rate: 7424.88 4-way exchanges/second, expected rate: 20000\n\
            ***Statistics for: DISCOVER-OFFER***\nsent packets: 150478\nreceived packets: 98925\n\
            drops: 51553\navg delay: 4.246 ms\n\
            ***Statistics for: REQUEST-ACK***\nsent packets: 98925\nreceived packets: 59460\n\
            avg delay: 17.814 ms\n";
        let p = parse(text);
        assert_eq!((p.rate, p.discovers, p.offers, p.requests, p.acks), (7424.88, 150478.0, 98925.0, 98925.0, 59460.0));
        assert_eq!((p.offer_delay, p.ack_delay), (4.246, 17.814));
        assert!((p.drops() - 60.49).abs() < 0.01);
    }

    /// `cargo build --release -p oa-pxe && cargo test --release -p oa-testkit bench::dhcp --
    /// --ignored --nocapture` (root: network namespaces; kea-dhcp4 and perfdhcp installed).
    #[test]
    #[ignore]
    fn bench_dhcp_against_kea() {
        let exe = std::env::current_exe().unwrap();
        let bin = exe.parent().and_then(|d| d.parent()).map(|d| d.join("oa-pxe")).unwrap();
        assert!(bin.is_file(), "{} is missing: cargo build --release -p oa-pxe", bin.display());
        let rows = run(&bin);
        println!("{}", super::super::table(&rows));
        assert!(rows[0].oa > 0.0 && rows[0].peer.is_some_and(|(_, k)| k > 0.0));
    }
}
