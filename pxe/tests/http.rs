//! The HTTP server over real loopback sockets (issue 14): slowloris closed after the header
//! timeout, the connection cap and its per-address share (503 + close while other addresses
//! are served), idle keep-alive closed, ranges/HEAD/keep-alive on memory-held and sendfile'd
//! files, 1050 idle connections from one host leave TFTP and HTTP to the others, and
//! `/config/<mac>` only to the address leased to that MAC.
//!
//! Clients use distinct 127.0.0.x source addresses so the per-address limits see distinct
//! clients.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;
use std::time::{Duration, Instant};

use oa_pxe::config::Limits;
use oa_pxe::{Config, Server};
use oa_testkit::load::pattern;
use oa_testkit::netboot;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const SMALL: usize = 4096;
/// Held in memory but larger than one write of head + body: head and body go with writev.
const MID: usize = 300 << 10;
/// Larger than the test's `http_memory_file`: sent with sendfile.
const BIG: usize = (1 << 20) + 7;
const MAC: &str = "52-54-00-00-00-07";
const SECRET: &str = "per-machine secret 7\n";

struct Env {
    _dir: tempfile::TempDir,
    http: SocketAddr,
    tftp: SocketAddr,
    dhcp: Option<SocketAddr>,
    out: std::path::PathBuf,
}

fn folder(dir: &Path) -> (std::path::PathBuf, std::path::PathBuf) {
    let out = dir.join("out");
    std::fs::create_dir_all(&out).unwrap();
    std::fs::write(out.join("small.bin"), pattern(SMALL, 1)).unwrap();
    std::fs::write(out.join("mid.bin"), pattern(MID, 4)).unwrap();
    std::fs::write(out.join("big.bin"), pattern(BIG, 2)).unwrap();
    std::fs::write(out.join("vmlinuz"), b"kernel").unwrap();
    std::fs::write(out.join("initramfs.img"), b"initramfs").unwrap();
    std::fs::write(out.join("rootfs.squashfs"), b"rootfs").unwrap();
    std::fs::write(
        out.join("manifest.json"),
        r#"{"schema":1,"profile":"t","arch":"x86_64","kernel_release":"0","cmdline":[],"artifacts":[],"builder":"t"}"#,
    )
    .unwrap();
    let machines = dir.join("machines");
    std::fs::create_dir_all(&machines).unwrap();
    std::fs::write(machines.join(format!("{MAC}.toml")), "config = \"c7.txt\"\n").unwrap();
    std::fs::write(machines.join("c7.txt"), SECRET).unwrap();
    (out, machines)
}

/// A server on loopback with `limits`; full DHCP when `dhcp`, else proxy mode.
fn start(limits: Limits, dhcp: bool) -> Env {
    start_with(limits, dhcp, |_, _| {})
}

/// [`start`], with the options changed by `f` (given the temporary folder) first.
fn start_with(limits: Limits, dhcp: bool, f: impl FnOnce(&Path, &mut oa_pxe::cli::Options)) -> Env {
    let dir = tempfile::tempdir().unwrap();
    let (out, machines) = folder(dir.path());
    let mut o = netboot::loopback_options(
        &out,
        dhcp.then_some("127.0.1.1-127.0.1.50"),
        dhcp.then(|| dir.path().join("leases.json")),
        Some(machines),
    );
    f(dir.path(), &mut o);
    let mut cfg = Config::from_options(&o).unwrap();
    cfg.limits = limits;
    let s = Server::bind(cfg).unwrap();
    let p = s.ports();
    tokio::spawn(s.run());
    let a = |port| SocketAddr::from(([127, 0, 0, 1], port));
    Env { http: a(p.http), tftp: a(p.tftp), dhcp: p.dhcp.map(a), out, _dir: dir }
}

fn limits(f: impl FnOnce(&mut Limits)) -> Limits {
    let mut l = Limits { http_memory_file: 512 << 10, ..Limits::default() };
    f(&mut l);
    l
}

fn ip(d: u8) -> Ipv4Addr {
    Ipv4Addr::new(127, 0, 0, d)
}

async fn connect_from(local: Ipv4Addr, server: SocketAddr) -> TcpStream {
    let s = tokio::net::TcpSocket::new_v4().unwrap();
    s.bind((local, 0).into()).unwrap();
    s.connect(server).await.unwrap()
}

/// One response read from a keep-alive stream: (status, head, body); the body by its length.
async fn response(s: &mut TcpStream, head_only: bool) -> (u16, String, Vec<u8>) {
    let mut buf = Vec::new();
    let end = loop {
        if let Some(e) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break e;
        }
        let mut b = [0u8; 1];
        let n = tokio::time::timeout(Duration::from_secs(10), s.read(&mut b)).await.expect("a response").unwrap();
        assert!(n > 0, "closed before a whole head: {:?}", String::from_utf8_lossy(&buf));
        buf.push(b[0]);
    };
    let head = String::from_utf8_lossy(&buf[..end]).to_string();
    let status = head.split_whitespace().nth(1).unwrap().parse().unwrap();
    let len: usize =
        head.lines().find_map(|l| l.strip_prefix("content-length: ")).map(|v| v.trim().parse().unwrap()).unwrap_or(0);
    let mut body = vec![0u8; if head_only { 0 } else { len }];
    tokio::time::timeout(Duration::from_secs(10), s.read_exact(&mut body)).await.unwrap().unwrap();
    (status, head, body)
}

/// How long until the server closes `s` (reading and dropping whatever comes), at most `max`.
async fn closed_after(s: &mut TcpStream, since: Instant, max: Duration) -> Option<Duration> {
    let mut b = [0u8; 4096];
    loop {
        match tokio::time::timeout_at((since + max).into(), s.read(&mut b)).await {
            Err(_) => return None,
            Ok(Ok(0)) | Ok(Err(_)) => return Some(since.elapsed()),
            Ok(Ok(_)) => continue,
        }
    }
}

/// The whole answer to one request on a fresh connection from `local` (server closes after).
async fn get_from(local: Ipv4Addr, server: SocketAddr, path: &str) -> (u16, Vec<u8>) {
    netboot::http_get_from(local, server, path).await.unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn slowloris_is_closed_after_the_header_timeout_and_the_caps_hold() {
    let header = Duration::from_secs(2);
    let e = start(
        limits(|l| {
            l.http_header_timeout = header;
            l.http_idle_timeout = Duration::from_secs(30);
            l.http_per_client = 8;
            l.http_connections = 12;
        }),
        false,
    );
    let t0 = Instant::now();
    // Eight half-sent heads from one address; half of them keep trickling a byte at a time.
    let mut held = Vec::new();
    for i in 0..8 {
        let mut s = connect_from(ip(3), e.http).await;
        s.write_all(b"GET /small.bin HTTP/1.1\r\nHost: x\r\n").await.unwrap();
        held.push((s, i % 2 == 0, Instant::now()));
    }
    // The ninth from that address: 503 and closed.
    let mut s = connect_from(ip(3), e.http).await;
    s.write_all(b"GET /small.bin HTTP/1.1\r\nHost: x\r\n\r\n").await.unwrap();
    let (st, head, _) = response(&mut s, false).await;
    assert_eq!(st, 503, "{head}");
    assert!(head.contains("connection: close"), "{head}");
    assert!(closed_after(&mut s, Instant::now(), Duration::from_secs(2)).await.is_some(), "503 then closed");
    // Another address is served meanwhile.
    let (st, body) = get_from(ip(4), e.http, "/small.bin").await;
    assert_eq!((st, body.len()), (200, SMALL));
    // Four more from a third address fill the total cap of 12: a fourth address gets 503.
    for _ in 0..4 {
        let mut s = connect_from(ip(5), e.http).await;
        s.write_all(b"GET /small.bin HTTP/1.1\r\n").await.unwrap();
        held.push((s, false, Instant::now()));
    }
    // Give the server a moment to count the connections it accepted.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let (st, _) = get_from(ip(6), e.http, "/small.bin").await;
    assert_eq!(st, 503, "over the total cap");
    assert!(t0.elapsed() < header, "the test setup took longer than the header timeout; the checks above mean nothing");
    // Trickle: a byte every 200 ms does not extend the deadline.
    let trickle = tokio::spawn(async move {
        let mut closed = Vec::new();
        let mut ticks = 0;
        let mut open = held;
        while !open.is_empty() && ticks < 40 {
            tokio::time::sleep(Duration::from_millis(200)).await;
            ticks += 1;
            let mut still = Vec::new();
            for (mut s, trickles, since) in open {
                if trickles && s.write_all(b"-X").await.is_err() {
                    closed.push(since.elapsed());
                    continue;
                }
                let mut b = [0u8; 64];
                match tokio::time::timeout(Duration::from_millis(1), s.read(&mut b)).await {
                    Ok(Ok(0)) | Ok(Err(_)) => closed.push(since.elapsed()),
                    _ => still.push((s, trickles, since)),
                }
            }
            open = still;
        }
        (closed, open.len())
    });
    let (closed, still_open) = trickle.await.unwrap();
    assert_eq!(still_open, 0, "half-sent heads still held after 8 s");
    for c in &closed {
        assert!(*c >= header - Duration::from_millis(100), "closed too early: {c:?}");
        assert!(*c <= header + Duration::from_millis(1500), "closed late: {c:?} (header timeout {header:?})");
    }
    // The slots are free again.
    let (st, body) = get_from(ip(3), e.http, "/small.bin").await;
    assert_eq!((st, body.len()), (200, SMALL));
    let (st, _) = get_from(ip(6), e.http, "/small.bin").await;
    assert_eq!(st, 200);
}

#[tokio::test(flavor = "multi_thread")]
async fn idle_keep_alive_is_closed_after_the_idle_timeout() {
    let idle = Duration::from_secs(1);
    let e = start(
        limits(|l| {
            l.http_header_timeout = Duration::from_secs(10);
            l.http_idle_timeout = idle;
        }),
        false,
    );
    let mut s = connect_from(ip(10), e.http).await;
    for _ in 0..3 {
        s.write_all(b"GET /small.bin HTTP/1.1\r\nHost: x\r\n\r\n").await.unwrap();
        let (st, head, body) = response(&mut s, false).await;
        assert_eq!((st, body.len()), (200, SMALL), "{head}");
        assert!(!head.contains("connection: close"), "kept alive: {head}");
    }
    let t = Instant::now();
    let c = closed_after(&mut s, t, Duration::from_secs(5)).await.expect("idle connection closed");
    assert!(c >= idle - Duration::from_millis(100) && c <= idle + Duration::from_millis(1500), "closed after {c:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn ranges_head_and_keep_alive_from_memory_and_sendfile() {
    let e = start(limits(|_| {}), false);
    for (name, size, seed) in [("small.bin", SMALL, 1), ("mid.bin", MID, 4), ("big.bin", BIG, 2)] {
        let data = pattern(size, seed);
        let mut s = connect_from(ip(11), e.http).await;
        let ask = |extra: &str, method: &str| format!("{method} /{name} HTTP/1.1\r\nHost: x\r\n{extra}\r\n");
        s.write_all(ask("", "GET").as_bytes()).await.unwrap();
        let (st, head, body) = response(&mut s, false).await;
        assert_eq!(st, 200, "{head}");
        assert!(body == data, "{name}: whole file");
        assert!(head.contains("accept-ranges: bytes"), "{head}");
        s.write_all(ask("Range: bytes=10-19\r\n", "GET").as_bytes()).await.unwrap();
        let (st, head, body) = response(&mut s, false).await;
        assert_eq!(st, 206, "{head}");
        assert!(head.contains(&format!("content-range: bytes 10-19/{size}")), "{head}");
        assert_eq!(body, &data[10..20]);
        s.write_all(ask("Range: bytes=-5\r\n", "GET").as_bytes()).await.unwrap();
        let (st, _, body) = response(&mut s, false).await;
        assert_eq!((st, &body[..]), (206, &data[size - 5..]));
        s.write_all(ask(&format!("Range: bytes={size}-\r\n"), "GET").as_bytes()).await.unwrap();
        let (st, head, _) = response(&mut s, false).await;
        assert_eq!(st, 416, "{head}");
        assert!(head.contains(&format!("content-range: bytes */{size}")), "{head}");
        // HEAD: the head only (the next response follows at once), then two pipelined GETs.
        let pipelined =
            [ask("", "HEAD"), ask("Range: bytes=0-0\r\n", "GET"), ask("Range: bytes=1-1\r\n", "GET")].concat();
        s.write_all(pipelined.as_bytes()).await.unwrap();
        let (st, head, _) = response(&mut s, true).await;
        assert_eq!(st, 200);
        assert!(head.contains(&format!("content-length: {size}")), "{head}");
        let (st, _, b0) = response(&mut s, false).await;
        let (st1, _, b1) = response(&mut s, false).await;
        assert_eq!((st, st1, b0[0], b1[0]), (206, 206, data[0], data[1]), "{name}: pipelined after HEAD");
        // Connection: close is honoured.
        s.write_all(ask("Connection: close\r\n", "GET").as_bytes()).await.unwrap();
        let (st, head, _) = response(&mut s, false).await;
        assert!(st == 200 && head.contains("connection: close"), "{head}");
        assert!(closed_after(&mut s, Instant::now(), Duration::from_secs(2)).await.is_some());
    }
    // A file changed on disk is served new, not from the memory copy.
    let (_, before) = get_from(ip(11), e.http, "/small.bin").await;
    let new = pattern(SMALL, 99);
    assert_ne!(before, new);
    std::fs::write(e.out.join("small.bin"), &new).unwrap();
    let (st, after) = get_from(ip(11), e.http, "/small.bin").await;
    assert!(st == 200 && after == new, "stale memory copy served");
    // Methods and bad heads.
    let mut s = connect_from(ip(11), e.http).await;
    s.write_all(b"DELETE /small.bin HTTP/1.1\r\nHost: x\r\n\r\n").await.unwrap();
    let (st, head, _) = response(&mut s, false).await;
    assert!(st == 405 && head.contains("allow: GET, HEAD") && head.contains("connection: close"), "{head}");
    let mut s = connect_from(ip(11), e.http).await;
    s.write_all(b"\x16\x03\x01 not http\r\n\r\n").await.unwrap();
    assert_eq!(response(&mut s, false).await.0, 400);
    let (st, _) = get_from(ip(11), e.http, "/nothing-here").await;
    assert_eq!(st, 404);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_thousand_idle_connections_from_one_host_leave_tftp_and_http_to_the_others() {
    let l = limits(|l| l.http_header_timeout = Duration::from_secs(60));
    let share = l.http_per_client;
    let e = start(l, false);
    let mut conns = Vec::new();
    for _ in 0..1050 {
        conns.push(connect_from(ip(20), e.http).await);
    }
    // Every connection: either held (no answer, still open) or refused (503 or closed).
    let mut set = tokio::task::JoinSet::new();
    for mut s in conns {
        set.spawn(async move {
            let mut b = vec![0u8; 512];
            match tokio::time::timeout(Duration::from_secs(3), s.read(&mut b)).await {
                Err(_) => (true, false, Some(s)),
                Ok(Ok(n)) => (false, b[..n].starts_with(b"HTTP/1.1 503"), None),
                Ok(Err(_)) => (false, false, None),
            }
        });
    }
    let (mut held, mut refused, mut said_503) = (Vec::new(), 0, 0);
    while let Some(r) = set.join_next().await {
        match r.unwrap() {
            (true, _, s) => held.push(s),
            (false, is_503, _) => {
                refused += 1;
                said_503 += is_503 as usize;
            }
        }
    }
    assert_eq!(held.len(), share, "connections held for one address");
    assert_eq!(refused, 1050 - share);
    assert!(said_503 >= 200, "most over-cap connections are told 503 ({said_503})");
    // Meanwhile another host gets HTTP and TFTP.
    let (st, body) = get_from(ip(21), e.http, "/big.bin").await;
    assert_eq!((st, body.len()), (200, BIG));
    let t = netboot::tftp_get_from(ip(21), e.tftp, "small.bin", 1468, 1).await.unwrap();
    assert_eq!(t.len(), SMALL);
    drop(held);
}

#[tokio::test(flavor = "multi_thread")]
async fn config_of_a_mac_only_to_the_address_leased_to_it() {
    let e = start(limits(|_| {}), true);
    let path = format!("/config/{MAC}");
    // Nobody holds a lease yet.
    let (st, body) = get_from(ip(1), e.http, &path).await;
    assert_eq!(st, 403);
    assert!(!String::from_utf8_lossy(&body).contains("secret"));
    let sock = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let mac = [0x52, 0x54, 0, 0, 0, 7];
    let (leased, _) = netboot::dhcp(&sock, e.dhcp.unwrap(), mac, 7, true).await.unwrap();
    assert!(leased.octets()[..3] == [127, 0, 1], "leased {leased}");
    // Another address: refused, and the secret not in the answer.
    for other in [ip(1), ip(30)] {
        let (st, body) = get_from(other, e.http, &path).await;
        assert_eq!(st, 403, "asked from {other}");
        assert!(!String::from_utf8_lossy(&body).contains("secret"));
    }
    // The same MAC in the other spelling: still refused elsewhere.
    let (st, _) = get_from(ip(30), e.http, "/config/52:54:00:00:00:07").await;
    assert_eq!(st, 403);
    // The leased address gets it.
    let (st, body) = get_from(leased, e.http, &path).await;
    assert_eq!((st, String::from_utf8_lossy(&body).as_ref()), (200, SECRET));
    // A MAC leased to nobody: 403 from anywhere (no hint whether it has a config).
    let (st, _) = get_from(leased, e.http, "/config/52-54-00-00-00-08").await;
    assert_eq!(st, 403);
}

/// With --sign-key, `/config/<mac>.minisig` is the configuration's signature for that MAC
/// (checked here with the minisign crate, as oa-init and `minisign -V` check it), given to
/// the same address only; without --sign-key there is none (404).
#[tokio::test(flavor = "multi_thread")]
async fn config_signature_is_made_for_the_mac_and_only_to_it() {
    let mut public = None;
    let e = start_with(limits(|_| {}), true, |dir, o| {
        let (sk, pk) = oa_pxe::sign::generate("test").unwrap();
        std::fs::write(dir.join("minisign.key"), sk).unwrap();
        public = Some(pk);
        o.sign_key = Some(dir.join("minisign.key"));
    });
    let path = format!("/config/{MAC}.minisig");
    let (st, _) = get_from(ip(1), e.http, &path).await;
    assert_eq!(st, 403, "no lease yet");
    let sock = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let (leased, _) = netboot::dhcp(&sock, e.dhcp.unwrap(), [0x52, 0x54, 0, 0, 0, 7], 7, true).await.unwrap();
    let (st, _) = get_from(ip(30), e.http, &path).await;
    assert_eq!(st, 403, "another address");
    let (st, body) = get_from(leased, e.http, &path).await;
    assert_eq!(st, 200);
    let sig = minisign::SignatureBox::from_string(&String::from_utf8(body).unwrap()).unwrap();
    let tc = sig.trusted_comment().unwrap();
    assert_eq!(oa_contract::signature::field(&tc, oa_contract::signature::MAC_FIELD), Some("52:54:00:00:00:07"));
    assert_eq!(oa_contract::signature::field(&tc, oa_contract::signature::FILE_FIELD), Some("c7.txt"));
    let pk = minisign::PublicKeyBox::from_string(&public.unwrap()).unwrap().into_public_key().unwrap();
    minisign::verify(&pk, &sig, std::io::Cursor::new(SECRET.as_bytes()), true, false, false).unwrap();
    assert!(minisign::verify(&pk, &sig, std::io::Cursor::new(&b"other"[..]), true, false, false).is_err());

    let plain = start(limits(|_| {}), true);
    let (leased, _) = netboot::dhcp(&sock, plain.dhcp.unwrap(), [0x52, 0x54, 0, 0, 0, 7], 8, true).await.unwrap();
    let (st, body) = get_from(leased, plain.http, &path).await;
    assert_eq!(st, 404, "{}", String::from_utf8_lossy(&body));
}

#[tokio::test(flavor = "multi_thread")]
async fn config_in_proxy_mode_needs_the_neighbour_table() {
    // Loopback addresses are never in the ARP table: refused.
    let e = start(limits(|_| {}), false);
    let (st, body) = get_from(ip(1), e.http, &format!("/config/{MAC}")).await;
    assert_eq!(st, 403);
    assert!(!String::from_utf8_lossy(&body).contains("secret"));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_client_that_stops_reading_loses_its_slot_after_the_idle_timeout() {
    let idle = Duration::from_secs(1);
    let e = start(
        limits(|l| {
            l.http_idle_timeout = idle;
            l.http_per_client = 1;
        }),
        false,
    );
    // 32 MiB: far more than the socket buffers hold, so the server's sending stalls.
    std::fs::write(e.out.join("huge.bin"), pattern(32 << 20, 3)).unwrap();
    let mut stalled = connect_from(ip(40), e.http).await;
    stalled.write_all(b"GET /huge.bin HTTP/1.1\r\nHost: x\r\n\r\n").await.unwrap();
    let t = Instant::now();
    tokio::time::sleep(Duration::from_millis(200)).await;
    // The one slot of this address is taken by the reader that does not read.
    let (st, _) = get_from(ip(40), e.http, "/small.bin").await;
    assert_eq!(st, 503);
    // Freed once the server has had no progress for the idle timeout.
    let freed = loop {
        let (st, _) = get_from(ip(40), e.http, "/small.bin").await;
        if st == 200 {
            break t.elapsed();
        }
        assert!(t.elapsed() < Duration::from_secs(5), "slot still held after {:?}", t.elapsed());
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(freed >= idle - Duration::from_millis(100), "freed after {freed:?}, before the idle timeout");
    drop(stalled);
}

/// Descriptors this process has open now.
fn open_descriptors() -> usize {
    std::fs::read_dir("/proc/self/fd").unwrap().count()
}

/// Run in a child process (it lowers this process's open-file limit): accept() failing with
/// EMFILE makes the server pause and retry, not exit; once descriptors are free the waiting
/// connection is served.
#[test]
fn out_of_descriptors_at_accept_backs_off_and_recovers() {
    const CHILD: &str = "OA_PXE_TEST_EMFILE_CHILD";
    if std::env::var_os(CHILD).is_none() {
        let exe = std::env::current_exe().unwrap();
        let out = std::process::Command::new(exe)
            .args(["--exact", "out_of_descriptors_at_accept_backs_off_and_recovers", "--nocapture", "--test-threads=1"])
            .env(CHILD, "1")
            .output()
            .unwrap();
        let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        assert!(out.status.success(), "child failed:\n{text}");
        assert!(text.contains("1 passed"), "child ran the test:\n{text}");
        // Logged once for the episode, not once per retry; and the recovery is logged.
        assert_eq!(text.matches("no file descriptor left").count(), 1, "{text}");
        assert!(text.contains("accept works again"), "{text}");
        return;
    }
    oa_pxe::server::init_logging();
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    rt.block_on(async {
        let e = start(limits(|_| {}), false);
        let before = open_descriptors();
        let (st, _) = get_from(ip(50), e.http, "/small.bin").await;
        assert_eq!(st, 200);
        // The server closes its side of that connection a moment after the client: wait for
        // it, or the descriptor it frees later lets accept() succeed while "starved".
        let t = Instant::now();
        while open_descriptors() > before {
            assert!(t.elapsed() < Duration::from_secs(5), "the server kept the first connection open");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        // Sockets made before the limit drops: connecting needs no new descriptor.
        let socks: Vec<_> = (0..3)
            .map(|_| {
                let s = tokio::net::TcpSocket::new_v4().unwrap();
                s.bind((ip(50), 0).into()).unwrap();
                s
            })
            .collect();
        // The lowest free descriptor number: with the limit there, no new one can be made.
        let lowest = {
            use std::os::fd::AsRawFd;
            let f = std::fs::File::open("/dev/null").unwrap();
            f.as_raw_fd() as u64
        };
        let mut old = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
        // SAFETY: getrlimit/setrlimit read and write only the struct given.
        unsafe {
            assert_eq!(libc::getrlimit(libc::RLIMIT_NOFILE, &mut old), 0);
            let low = libc::rlimit { rlim_cur: lowest, rlim_max: old.rlim_max };
            assert_eq!(libc::setrlimit(libc::RLIMIT_NOFILE, &low), 0);
        }
        let mut conns = Vec::new();
        for s in socks {
            let mut c = s.connect(e.http).await.unwrap();
            c.write_all(b"GET /small.bin HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").await.unwrap();
            conns.push(c);
        }
        // The server cannot accept: no answer while starved.
        let mut b = [0u8; 16];
        let r = tokio::time::timeout(Duration::from_millis(700), conns[0].read(&mut b)).await;
        assert!(r.is_err(), "answered although accept had no descriptor: {r:?}");
        // SAFETY: as above.
        unsafe {
            assert_eq!(libc::setrlimit(libc::RLIMIT_NOFILE, &old), 0);
        }
        // Within the 100 ms back-off (and some), all three are served.
        let t = Instant::now();
        for c in &mut conns {
            let (st, _, body) = response(c, false).await;
            assert_eq!((st, body.len()), (200, SMALL));
        }
        assert!(t.elapsed() < Duration::from_secs(2), "served {:?} after descriptors came back", t.elapsed());
    });
}
