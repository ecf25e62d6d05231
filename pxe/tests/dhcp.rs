//! Full DHCP over real loopback sockets (issue 14): relays, ACK only what was offered, the
//! leases journal surviving SIGKILL and a torn last line, one server per leases file, no
//! symlinked leases file, --interface required, a DISCOVER flood kept from starving a client.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use dhcproto::v4::{self, Message, MessageType};
use dhcproto::{Decodable, Decoder, Encodable};
use tokio::net::UdpSocket;

use oa_pxe::cli::Options;
use oa_pxe::{Config, Server};

mod common;
use oa_testkit::netboot;

fn options(dir: &Path, range: &str) -> Options {
    let out = oa_testkit::load::minimal_output(dir, b"rootfs", "t");
    netboot::loopback_options(&out, Some(range), Some(dir.join("leases.json")), None)
}

fn msg(mt: MessageType, mac: [u8; 6], xid: u32) -> Message {
    let mut m = Message::new_with_id(
        xid,
        Ipv4Addr::UNSPECIFIED,
        Ipv4Addr::UNSPECIFIED,
        Ipv4Addr::UNSPECIFIED,
        Ipv4Addr::UNSPECIFIED,
        &mac,
    );
    m.opts_mut().insert(v4::DhcpOption::MessageType(mt));
    m
}

async fn recv(sock: &UdpSocket, within: Duration) -> Option<(Message, SocketAddr)> {
    let mut b = [0u8; 1500];
    let (n, from) = tokio::time::timeout(within, sock.recv_from(&mut b)).await.ok()?.ok()?;
    Some((Message::decode(&mut Decoder::new(&b[..n])).ok()?, from))
}

/// Journal records (non-empty lines) in the leases file naming `ip`.
fn records_for(file: &Path, ip: &str) -> usize {
    std::fs::read_to_string(file).unwrap_or_default().lines().filter(|l| l.contains(&format!("\"{ip}\""))).count()
}

#[tokio::test(flavor = "multi_thread")]
async fn relayed_requests_are_answered_only_through_configured_relays() {
    let relay: Ipv4Addr = "127.0.0.9".parse().unwrap();
    for configured in [false, true] {
        let dir = tempfile::tempdir().unwrap();
        let mut o = options(dir.path(), "127.0.1.1-127.0.1.50");
        if configured {
            o.relay = vec![relay];
        }
        let e = common::serve(dir, &o);
        // The relay agent listens on its own address at the server port (RFC 2131 4.1).
        let agent = UdpSocket::bind(SocketAddr::from((relay, e.dhcp.port()))).await.unwrap();
        let client = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let mut m = msg(MessageType::Discover, [0x52, 0x54, 0, 0, 9, 1], 77);
        m.set_giaddr(relay);
        client.send_to(&m.to_vec().unwrap(), e.dhcp).await.unwrap();
        let at_agent = recv(&agent, Duration::from_millis(800)).await;
        let at_client = recv(&client, Duration::from_millis(100)).await;
        assert!(at_client.is_none(), "a relayed request is never answered to its sender");
        if configured {
            let (r, _) = at_agent.expect("a configured relay gets the OFFER at giaddr:67");
            assert_eq!(r.opts().msg_type(), Some(MessageType::Offer));
            assert_eq!((r.xid(), r.giaddr()), (77, relay));
            assert!(!r.yiaddr().is_unspecified());
        } else {
            assert!(at_agent.is_none(), "an unconfigured relay got an answer");
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn requests_without_an_offer_get_no_lease() {
    let dir = tempfile::tempdir().unwrap();
    let leases = dir.path().join("leases.json");
    let o = options(dir.path(), "127.0.1.1-127.0.1.200");
    let e = common::serve(dir, &o);
    let sock = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let mut naks = 0;
    for i in 0..100u32 {
        let mut m = msg(MessageType::Request, [0x52, 0x54, 0, 1, (i >> 8) as u8, i as u8], 1000 + i);
        let ip = Ipv4Addr::new(127, 0, 1, 1 + (i % 200) as u8);
        m.opts_mut().insert(v4::DhcpOption::RequestedIpAddress(ip));
        if i % 2 == 0 {
            m.opts_mut().insert(v4::DhcpOption::ServerIdentifier(Ipv4Addr::LOCALHOST));
        }
        sock.send_to(&m.to_vec().unwrap(), e.dhcp).await.unwrap();
        let (r, _) = recv(&sock, Duration::from_secs(2)).await.expect("an answer to each REQUEST");
        assert_eq!(r.xid(), 1000 + i);
        assert_eq!(r.opts().msg_type(), Some(MessageType::Nak), "request {i} was not refused");
        assert!(r.yiaddr().is_unspecified());
        naks += 1;
    }
    assert_eq!(naks, 100);
    // A REQUEST naming another server is not ours: silence.
    let mut m = msg(MessageType::Request, [0x52, 0x54, 0, 2, 0, 1], 5);
    m.opts_mut().insert(v4::DhcpOption::RequestedIpAddress(Ipv4Addr::new(127, 0, 1, 1)));
    m.opts_mut().insert(v4::DhcpOption::ServerIdentifier(Ipv4Addr::new(127, 0, 0, 2)));
    sock.send_to(&m.to_vec().unwrap(), e.dhcp).await.unwrap();
    assert!(recv(&sock, Duration::from_millis(300)).await.is_none());
    // Nothing reached the table or the file; a real DORA still works and is written.
    assert_eq!(std::fs::read_to_string(&leases).unwrap().lines().filter(|l| l.contains("127.0.1.")).count(), 0);
    let (ip, _) = netboot::dhcp(&sock, e.dhcp, [0x52, 0x54, 0, 3, 0, 1], 9, false).await.unwrap();
    assert_eq!(records_for(&leases, &ip.to_string()), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn one_server_per_leases_file_and_no_symlinks() {
    let dir = tempfile::tempdir().unwrap();
    let o = options(dir.path(), "127.0.1.1-127.0.1.50");
    let first = Server::bind(Config::from_options(&o).unwrap()).unwrap();
    let e = Server::bind(Config::from_options(&o).unwrap()).err().expect("a second server on the same file");
    let e = format!("{e:#}");
    assert!(e.contains("leases.json") && e.contains("in use by another DHCP server"), "{e}");
    drop(first);
    // Once the first is gone the file is free again.
    drop(Server::bind(Config::from_options(&o).unwrap()).unwrap());
    // A symlinked leases file is refused, and the file it points at is left alone.
    let target = dir.path().join("elsewhere");
    std::fs::write(&target, "").unwrap();
    let link = dir.path().join("link.json");
    std::os::unix::fs::symlink(&target, &link).unwrap();
    let mut o2 = o.clone();
    o2.leases = Some(link);
    let e = format!("{:#}", Server::bind(Config::from_options(&o2).unwrap()).err().expect("a symlink"));
    assert!(e.contains("link.json") && e.contains("symbolic link"), "{e}");
    assert_eq!(std::fs::read(&target).unwrap(), b"");
}

#[test]
fn mode_dhcp_needs_an_interface() {
    let dir = tempfile::tempdir().unwrap();
    let mut o = options(dir.path(), "127.0.1.1-127.0.1.50");
    o.all_interfaces = false;
    let e = Config::from_options(&o).expect_err("--mode dhcp without --interface").to_string();
    assert!(e.contains("--interface") && e.contains("--all-interfaces"), "{e}");
    // The same through the binary's command line.
    let out = Command::new(env!("CARGO_BIN_EXE_oa-pxe"))
        .arg(&o.output)
        .args(["--address", "127.0.0.1", "--mode", "dhcp", "--range", "127.0.1.1-127.0.1.50"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--all-interfaces"));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_discover_flood_of_random_macs_does_not_starve_a_real_client() {
    let dir = tempfile::tempdir().unwrap();
    let leases = dir.path().join("leases.json");
    // 200 addresses: the offer table holds at most 200 offers.
    let o = options(dir.path(), "127.0.1.1-127.0.1.200");
    let e = common::serve(dir, &o);
    let server = e.dhcp;
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flood = {
        let stop = stop.clone();
        tokio::spawn(async move {
            let sock = UdpSocket::bind("127.0.0.1:0").await.unwrap();
            let mut seed = 0x2545f4914f6cdd1du64;
            let mut sent = 0u64;
            let mut offered = std::collections::HashSet::new();
            let mut b = [0u8; 1500];
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                for _ in 0..64 {
                    seed ^= seed << 13;
                    seed ^= seed >> 7;
                    seed ^= seed << 17;
                    let mut mac = seed.to_be_bytes();
                    mac[0] = 0x02;
                    let m = msg(MessageType::Discover, mac[..6].try_into().unwrap(), seed as u32);
                    let _ = sock.send_to(&m.to_vec().unwrap(), server).await;
                    sent += 1;
                }
                // Drain what came back.
                while let Ok(Ok((n, _))) = tokio::time::timeout(Duration::from_millis(1), sock.recv_from(&mut b)).await
                {
                    if let Ok(r) = Message::decode(&mut Decoder::new(&b[..n])) {
                        offered.insert(r.yiaddr());
                    }
                }
            }
            (sent, offered)
        })
    };
    tokio::time::sleep(Duration::from_millis(500)).await;
    // During the flood a real client's DISCOVER gets an OFFER and its REQUEST an ACK.
    let sock = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let real = [0x52, 0x54, 0, 0xaa, 0, 1];
    let mut got = None;
    for attempt in 0..5u32 {
        sock.send_to(&msg(MessageType::Discover, real, 42 + attempt).to_vec().unwrap(), server).await.unwrap();
        let Some((offer, _)) = recv(&sock, Duration::from_secs(1)).await else { continue };
        assert_eq!(offer.opts().msg_type(), Some(MessageType::Offer));
        let mut req = msg(MessageType::Request, real, 42 + attempt);
        req.opts_mut().insert(v4::DhcpOption::RequestedIpAddress(offer.yiaddr()));
        req.opts_mut().insert(v4::DhcpOption::ServerIdentifier(Ipv4Addr::LOCALHOST));
        sock.send_to(&req.to_vec().unwrap(), server).await.unwrap();
        if let Some((ack, _)) = recv(&sock, Duration::from_secs(1)).await {
            if ack.opts().msg_type() == Some(MessageType::Ack) {
                got = Some((ack.yiaddr(), attempt));
                break;
            }
        }
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let (sent, offered) = flood.await.unwrap();
    let (ip, attempt) = got.expect("the real client was starved by the flood");
    eprintln!(
        "flood: {sent} DISCOVERs, {} distinct addresses offered; the real client got {ip} (attempt {attempt})",
        offered.len()
    );
    assert!(sent > 2000, "the flood was too small to mean anything ({sent})");
    assert!(offered.len() <= 200);
    // Only the real client holds a lease.
    let text = std::fs::read_to_string(&leases).unwrap();
    assert_eq!(text.lines().filter(|l| l.contains("127.0.1.")).count(), 1, "{text}");
    assert!(text.contains("52:54:00:aa:00:01"));
}

fn free_udp() -> u16 {
    std::net::UdpSocket::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// The oa-pxe binary on loopback ports with its leases in `leases`; ready once it logs.
fn spawn(out: &Path, leases: &Path, ports: (u16, u16, u16, u16), log: &Path) -> Child {
    let child = Command::new(env!("CARGO_BIN_EXE_oa-pxe"))
        .arg(out)
        .args(["--address", "127.0.0.1", "--bind", "127.0.0.1", "--mode", "dhcp", "--all-interfaces"])
        .args(["--range", "127.0.1.1-127.0.1.50", "--netmask", "255.255.0.0"])
        .arg("--leases")
        .arg(leases)
        .args(["--dhcp-port", &ports.0.to_string(), "--proxy-port", &ports.1.to_string()])
        .args(["--tftp-port", &ports.2.to_string(), "--http-port", &ports.3.to_string()])
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(log).unwrap())
        .spawn()
        .unwrap();
    let t = Instant::now();
    while !std::fs::read_to_string(log).unwrap_or_default().contains("serving ") {
        assert!(
            t.elapsed() < Duration::from_secs(20),
            "oa-pxe did not start:\n{}",
            std::fs::read_to_string(log).unwrap()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    child
}

fn sigkill(c: &mut Child) {
    // SAFETY: kill(2) on the pid of a child this test started and has not reaped.
    unsafe { libc::kill(c.id() as i32, libc::SIGKILL) };
    let _ = c.wait();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_lease_survives_sigkill_right_after_the_ack_and_a_torn_last_line() {
    let dir = tempfile::tempdir().unwrap();
    let out = oa_testkit::load::minimal_output(dir.path(), b"rootfs", "t");
    let leases = dir.path().join("state/leases.json");
    let log = dir.path().join("server.log");
    let tcp = || std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let ports = (free_udp(), free_udp(), free_udp(), tcp());
    let server = SocketAddr::from(([127, 0, 0, 1], ports.0));
    let sock = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let mac = [0x52, 0x54, 0, 0xcc, 0, 1];
    let mut child = spawn(&out, &leases, ports, &log);
    let (ip, _) = netboot::dhcp(&sock, server, mac, 7, true).await.unwrap();
    // SIGKILL the moment the ACK is in: no shutdown path runs.
    sigkill(&mut child);
    assert_eq!(records_for(&leases, &ip.to_string()), 1, "the ACKed lease is not in the file");
    // Restarted, it offers the same MAC the same address (and another MAC a different one).
    let mut child = spawn(&out, &leases, ports, &log);
    let offered = |mac: [u8; 6], xid: u32| {
        let sock = &sock;
        async move {
            sock.send_to(&msg(MessageType::Discover, mac, xid).to_vec().unwrap(), server).await.unwrap();
            let (m, _) = recv(sock, Duration::from_secs(2)).await.expect("an OFFER");
            assert_eq!(m.opts().msg_type(), Some(MessageType::Offer));
            m.yiaddr()
        }
    };
    assert_eq!(offered(mac, 8).await, ip);
    assert_ne!(offered([0x52, 0x54, 0, 0xcc, 0, 2], 9).await, ip);
    sigkill(&mut child);
    // A crash mid-append leaves a torn last line: tolerated with a warning.
    let good = std::fs::read(&leases).unwrap();
    let mut torn = good.clone();
    torn.extend_from_slice(br#"{"mac":"52:54:00:cc:00:09","ip":"127.0."#);
    std::fs::write(&leases, &torn).unwrap();
    let mut child = spawn(&out, &leases, ports, &log);
    assert!(std::fs::read_to_string(&log).unwrap().contains("torn last line"));
    assert_eq!(offered(mac, 10).await, ip);
    // The torn bytes are gone before the next record, so the file replays cleanly.
    let (ip2, _) = netboot::dhcp(&sock, server, [0x52, 0x54, 0, 0xcc, 0, 3], 11, false).await.unwrap();
    sigkill(&mut child);
    let text = std::fs::read_to_string(&leases).unwrap();
    assert!(!text.contains("52:54:00:cc:00:09"), "{text}");
    assert!(text.ends_with('\n'));
    assert_eq!(records_for(&leases, &ip2.to_string()), 1);
    let mut child = spawn(&out, &leases, ports, &log);
    assert!(!std::fs::read_to_string(&log).unwrap().contains("torn last line"));
    assert_eq!(offered(mac, 12).await, ip);
    sigkill(&mut child);
}
