//! A shared LAN on a bad day (issue 14): from one network namespace a host floods TFTP with
//! RRQs it never acknowledges, holds HTTP connections open with half-sent headers (slowloris)
//! and floods DHCP with DISCOVERs from random MACs, all at once. Meanwhile a legitimate
//! client in another namespace must still get a DHCP lease, a 1 MiB file over TFTP and the
//! same over HTTP, each within 2 s; the server's open files and memory stay bounded and it
//! never exits.
//!
//! The server is the real `oa-pxe` binary in a third namespace, bound to its bridge as a
//! fleet's server would be (`--mode dhcp --interface br0`). No packet leaves the namespaces.

use std::io::Write;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpStream, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use oa_testkit::netboot;
use oa_testkit::netns::{Netns, Proc};

const SERVER: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 1);
const ATTACKER: &str = "10.77.0.66/24";
const CLIENT: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 20);
/// How long the attack runs; the legitimate client starts 2 s into it.
const ATTACK: Duration = Duration::from_secs(8);

fn sv(port: u16) -> SocketAddr {
    SocketAddr::V4(SocketAddrV4::new(SERVER, port))
}

/// Open files and resident memory (KiB) of a process.
fn usage(pid: u32) -> Option<(usize, u64)> {
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd")).ok()?.count();
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let rss = status.lines().find(|l| l.starts_with("VmRSS:"))?.split_whitespace().nth(1)?.parse().ok()?;
    Some((fds, rss))
}

fn rrq(file: &str) -> Vec<u8> {
    let mut p = vec![0, 1];
    for s in [file, "octet", "blksize", "1468", "windowsize", "16", "tsize", "0"] {
        p.extend_from_slice(s.as_bytes());
        p.push(0);
    }
    p
}

fn discover(mac: [u8; 6], xid: u32) -> Vec<u8> {
    use dhcproto::v4::{DhcpOption, Message, MessageType};
    use dhcproto::Encodable;
    let z = Ipv4Addr::UNSPECIFIED;
    let mut m = Message::new_with_id(xid, z, z, z, z, &mac);
    m.opts_mut().insert(DhcpOption::MessageType(MessageType::Discover));
    m.opts_mut().insert(DhcpOption::ClassIdentifier(b"PXEClient:Arch:00000:UNDI:002001".to_vec()));
    m.to_vec().unwrap()
}

/// The three floods at once, each on its own thread in the attacker's namespace, until `stop`.
/// Returns what was sent (RRQs, connections held, DISCOVERs).
fn attack(ns: &Netns, stop: Arc<AtomicBool>) -> Vec<std::thread::JoinHandle<(&'static str, u64)>> {
    let mut threads = Vec::new();
    let s = stop.clone();
    threads.push(ns.thread_in(move || {
        // RRQs from 64 source ports, ~2000/s, never acknowledged.
        let socks: Vec<UdpSocket> = (0..64).map(|_| UdpSocket::bind("0.0.0.0:0").unwrap()).collect();
        let p = rrq("rootfs.squashfs");
        let mut n = 0u64;
        while !s.load(Ordering::Relaxed) {
            for so in &socks {
                let _ = so.send_to(&p, sv(69));
                n += 1;
            }
            std::thread::sleep(Duration::from_millis(30));
        }
        ("TFTP RRQs never acknowledged", n)
    }));
    let s = stop.clone();
    threads.push(ns.thread_in(move || {
        // Slowloris: as many connections as the server takes, each sending its request line
        // and then one header byte a second, never the blank line.
        let mut held: Vec<TcpStream> = Vec::new();
        let mut opened = 0u64;
        let mut last_drip = Instant::now();
        while !s.load(Ordering::Relaxed) {
            if held.len() < 1500 {
                for _ in 0..50 {
                    if let Ok(mut c) = TcpStream::connect_timeout(&sv(80), Duration::from_millis(200)) {
                        let _ = c.write_all(b"GET /rootfs.squashfs HTTP/1.1\r\nHost: x\r\n");
                        let _ = c.set_nonblocking(true);
                        held.push(c);
                        opened += 1;
                    }
                }
            }
            if last_drip.elapsed() > Duration::from_secs(1) {
                held.retain_mut(|c| c.write_all(b"X").is_ok());
                last_drip = Instant::now();
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        ("HTTP slowloris connections opened", opened)
    }));
    let s = stop;
    threads.push(ns.thread_in(move || {
        // DISCOVERs from random MACs, ~4000/s: the pool (151 addresses) is offered out within
        // the first tenth of a second.
        let so = UdpSocket::bind("0.0.0.0:0").unwrap();
        let mut x = 0x2545F4914F6CDD1Du64;
        let mut n = 0u64;
        while !s.load(Ordering::Relaxed) {
            for _ in 0..40 {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                let b = x.to_le_bytes();
                let mac = [0x02, b[0], b[1], b[2], b[3], b[4]];
                let _ = so.send_to(&discover(mac, x as u32), sv(67));
                n += 1;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        ("DHCP DISCOVERs from random MACs", n)
    }));
    threads
}

/// The legitimate client: a lease, 1 MiB over TFTP, 1 MiB over HTTP; the time each took.
fn legitimate(ns: &Netns, want: Vec<u8>) -> Vec<(&'static str, Result<Duration, String>)> {
    ns.run_in(move || {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async move {
            let mut r = Vec::new();
            let t = Instant::now();
            let sock = tokio::net::UdpSocket::bind((CLIENT, 68)).await.unwrap();
            let got = netboot::dhcp(&sock, sv(67), [0x52, 0x54, 0, 0x77, 0, 0x20], 0x77, true).await;
            r.push(("DHCP lease", got.map(|_| t.elapsed()).map_err(|e| e.to_string())));
            let t = Instant::now();
            let got = netboot::tftp_get(sv(69), "rootfs.squashfs", 1468, 8).await;
            r.push((
                "TFTP 1 MiB",
                match got {
                    Ok(b) if b == want => Ok(t.elapsed()),
                    Ok(b) => Err(format!("{} bytes, not the file", b.len())),
                    Err(e) => Err(e.to_string()),
                },
            ));
            let t = Instant::now();
            let got = netboot::http_get(sv(80), "/rootfs.squashfs").await;
            r.push((
                "HTTP 1 MiB",
                match got {
                    Ok((200, b)) if b == want => Ok(t.elapsed()),
                    Ok((s, b)) => Err(format!("status {s}, {} bytes", b.len())),
                    Err(e) => Err(e.to_string()),
                },
            ));
            r
        })
    })
}

#[test]
fn a_legitimate_client_is_served_through_a_mixed_flood() {
    let srv = Netns::new("hostile-srv");
    let atk = Netns::new("hostile-atk");
    let cli = Netns::new("hostile-cli");
    srv.bridge(&format!("{SERVER}/24"));
    srv.veth_to(&atk, ATTACKER);
    srv.veth_to(&cli, &format!("{CLIENT}/24"));

    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let data = netboot_output(&out);
    let log = dir.path().join("serve.log");
    let args: Vec<String> = [
        out.to_str().unwrap(),
        "--mode",
        "dhcp",
        "--interface",
        "br0",
        "--address",
        "10.77.0.1",
        "--range",
        "10.77.0.100-10.77.0.250",
        "--leases",
        dir.path().join("leases").to_str().unwrap(),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let mut server: Proc = srv.spawn(env!("CARGO_BIN_EXE_oa-pxe"), &args, &log);
    let t = Instant::now();
    while !std::fs::read_to_string(&log).unwrap_or_default().contains("serving ") {
        assert!(
            t.elapsed() < Duration::from_secs(10),
            "oa-pxe did not start:\n{}",
            std::fs::read_to_string(&log).unwrap()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let pid = server.0.id();
    let (fds0, rss0) = usage(pid).unwrap();

    // Before the attack: the same client, for comparison.
    let calm = legitimate(&cli, data.clone());

    let stop = Arc::new(AtomicBool::new(false));
    let floods = attack(&atk, stop.clone());
    let peak_fds = Arc::new(AtomicU64::new(0));
    let peak_rss = Arc::new(AtomicU64::new(0));
    let sampler = {
        let (stop, f, r) = (stop.clone(), peak_fds.clone(), peak_rss.clone());
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                if let Some((fds, rss)) = usage(pid) {
                    f.fetch_max(fds as u64, Ordering::Relaxed);
                    r.fetch_max(rss, Ordering::Relaxed);
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        })
    };
    let started = Instant::now();
    std::thread::sleep(Duration::from_secs(2));
    let under_attack = legitimate(&cli, data.clone());
    std::thread::sleep(ATTACK.saturating_sub(started.elapsed()));
    stop.store(true, Ordering::Relaxed);
    let sent: Vec<(&str, u64)> = floods.into_iter().map(|t| t.join().unwrap()).collect();
    sampler.join().unwrap();

    let report = format!(
        "calm: {calm:?}\nunder attack: {under_attack:?}\nsent: {sent:?}\nopen files {fds0} -> peak {}, RSS {rss0} KiB -> peak {} KiB\nserver log tail:\n{}",
        peak_fds.load(Ordering::Relaxed),
        peak_rss.load(Ordering::Relaxed),
        tail(&log, 15)
    );
    eprintln!("{report}");
    assert!(server.0.try_wait().unwrap().is_none(), "oa-pxe exited under the flood\n{report}");
    for (what, r) in &under_attack {
        match r {
            Ok(d) => assert!(*d < Duration::from_secs(2), "{what} took {d:?} under the flood\n{report}"),
            Err(e) => panic!("{what} failed under the flood: {e}\n{report}"),
        }
    }
    // The floods are bounded per source address: one host holds its few TFTP transfers and
    // its share of HTTP connections (plus the bounded set of connections being told 503),
    // never the server's whole budget (512 connections, 256 transfers).
    let limits = oa_pxe::config::Limits::default();
    let bound = fds0 + limits.tftp_per_client + limits.http_per_client + oa_pxe::http::MAX_REFUSING + 32;
    let peak = peak_fds.load(Ordering::Relaxed) as usize;
    assert!(peak <= bound, "open files grew from {fds0} to {peak} (bound {bound})\n{report}");
    let rss = peak_rss.load(Ordering::Relaxed);
    assert!(rss <= rss0 + 64 * 1024, "RSS grew from {rss0} KiB to {rss} KiB\n{report}");
    // And it still serves once the flood is over.
    let after = legitimate(&cli, data);
    assert!(after.iter().all(|(_, r)| r.is_ok()), "after the flood: {after:?}\n{report}");
    let _ = server.0.kill();
}

/// An output folder with a 1 MiB root image; returns the image's bytes.
fn netboot_output(out: &std::path::Path) -> Vec<u8> {
    oa_testkit::load::fake_output(out, 1 << 20)
}

fn tail(p: &std::path::Path, n: usize) -> String {
    let t = std::fs::read_to_string(p).unwrap_or_default();
    let l: Vec<&str> = t.lines().collect();
    l[l.len().saturating_sub(n)..].join("\n")
}
