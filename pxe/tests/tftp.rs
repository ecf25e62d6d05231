//! The TFTP server's bounds (issue 14) over real loopback sockets, each asserting the bound:
//! a duplicate-ACK storm gets no extra data and a transfer with no progress ends after
//! `tftp_retries` timeouts; an RRQ flood from one address holds at most `tftp_per_client`
//! slots and descriptors while another address is served; a forged-source RRQ gets one small
//! reply; client options are capped; netascii is converted; errors carry honest codes; a
//! transfer ends at its deadline. Clients bind 127.0.93.x addresses of their own so the
//! per-address limits see distinct clients.

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use oa_pxe::config::Limits;
use oa_pxe::tftp::{self, code};
use oa_pxe::{Config, Server};
use oa_testkit::netboot;
use tokio::net::UdpSocket;

/// The flood test counts the process's descriptors: it runs alone (write lock), the others
/// side by side (read lock).
static SERIAL: tokio::sync::RwLock<()> = tokio::sync::RwLock::const_new(());

const BIG: usize = 4 << 20;

struct Env {
    _dir: tempfile::TempDir,
    out: std::path::PathBuf,
    tftp: SocketAddr,
    limits: Limits,
}

fn big() -> Vec<u8> {
    (0..BIG as u32).map(|i| (i * 31 + i / 977) as u8).collect()
}

async fn start(limits: Limits) -> Env {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    std::fs::create_dir_all(out.join("dir")).unwrap();
    std::fs::write(out.join("big.bin"), big()).unwrap();
    std::fs::write(out.join("k"), vec![7u8; 100_000]).unwrap();
    std::fs::write(out.join("vmlinuz"), b"kernel").unwrap();
    std::fs::write(out.join("initramfs.img"), b"initramfs").unwrap();
    std::fs::write(out.join("rootfs.squashfs"), b"root").unwrap();
    std::fs::write(out.join("text.txt"), b"line1\nline2\r\nend").unwrap();
    std::fs::write(
        out.join("manifest.json"),
        r#"{"schema":1,"profile":"t","arch":"x86_64","kernel_release":"0","cmdline":[],"artifacts":[],"builder":"t"}"#,
    )
    .unwrap();
    std::fs::write(dir.path().join("secret"), b"do not serve").unwrap();
    std::os::unix::fs::symlink(dir.path().join("secret"), out.join("escape")).unwrap();
    let o = netboot::loopback_options(&out, None, None, None);
    let mut cfg = Config::from_options(&o).unwrap();
    cfg.limits = limits.clone();
    let s = Server::bind(cfg).unwrap();
    let port = s.ports().tftp;
    tokio::spawn(s.run());
    let out = std::fs::canonicalize(&out).unwrap();
    Env { _dir: dir, out, tftp: SocketAddr::from(([127, 0, 0, 1], port)), limits }
}

fn rrq(file: &str, mode: &str, opts: &[(&str, &str)]) -> Vec<u8> {
    let mut v = tftp::RRQ.to_be_bytes().to_vec();
    for s in [file, mode].into_iter().chain(opts.iter().flat_map(|(k, v)| [*k, *v])) {
        v.extend_from_slice(s.as_bytes());
        v.push(0);
    }
    v
}

fn ack(block: u16) -> [u8; 4] {
    let b = block.to_be_bytes();
    [0, 4, b[0], b[1]]
}

fn opcode(p: &[u8]) -> u16 {
    u16::from_be_bytes([p[0], p[1]])
}

fn block(p: &[u8]) -> u16 {
    u16::from_be_bytes([p[2], p[3]])
}

fn error_of(p: &[u8]) -> Option<(u16, String)> {
    (p.len() >= 4 && opcode(p) == tftp::ERROR)
        .then(|| (block(p), String::from_utf8_lossy(&p[4..]).trim_end_matches('\0').to_string()))
}

fn oack_fields(p: &[u8]) -> HashMap<String, String> {
    let f: Vec<String> = p[2..].split(|&c| c == 0).map(|s| String::from_utf8_lossy(s).to_string()).collect();
    f.chunks(2).filter(|c| c.len() == 2).map(|c| (c[0].clone(), c[1].clone())).collect()
}

async fn recv(sock: &UdpSocket, wait: Duration) -> Option<(Vec<u8>, SocketAddr)> {
    let mut b = vec![0u8; 70_000];
    match tokio::time::timeout(wait, sock.recv_from(&mut b)).await {
        Ok(Ok((n, from))) => Some((b[..n].to_vec(), from)),
        _ => None,
    }
}

async fn client(last: u8) -> UdpSocket {
    UdpSocket::bind((Ipv4Addr::new(127, 0, 93, last), 0)).await.unwrap()
}

/// UDP sockets connected to `ip` (the server's transfer sockets to that client), from the
/// kernel's table; and descriptors of this process open on files under `dir`.
fn transfer_sockets_to(ip: Ipv4Addr) -> usize {
    let hex = format!("{:08X}:", u32::from_le_bytes(ip.octets()));
    std::fs::read_to_string("/proc/net/udp")
        .unwrap()
        .lines()
        .skip(1)
        .filter(|l| l.split_whitespace().nth(2).is_some_and(|r| r.starts_with(&hex)))
        .count()
}

fn files_open_under(dir: &std::path::Path) -> usize {
    std::fs::read_dir("/proc/self/fd")
        .unwrap()
        .filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
        .filter(|t| t.starts_with(dir))
        .count()
}

/// The data and the OACK's fields, or the error's code and message.
type Fetched = Result<(Vec<u8>, HashMap<String, String>), (u16, String)>;

/// A lock-step fetch with a raw RRQ.
async fn fetch(sock: &UdpSocket, server: SocketAddr, request: &[u8]) -> Fetched {
    sock.send_to(request, server).await.unwrap();
    let mut out = Vec::new();
    let mut fields = HashMap::new();
    let mut bs = 512;
    let mut expected = 1u16;
    loop {
        let (p, from) = recv(sock, Duration::from_secs(3)).await.ok_or((999, "no reply".to_string()))?;
        if let Some(e) = error_of(&p) {
            return Err(e);
        }
        match opcode(&p) {
            tftp::OACK => {
                fields = oack_fields(&p);
                bs = fields.get("blksize").map(|b| b.parse().unwrap()).unwrap_or(512);
                sock.send_to(&ack(0), from).await.unwrap();
            }
            tftp::DATA if block(&p) == expected => {
                out.extend_from_slice(&p[4..]);
                sock.send_to(&ack(expected), from).await.unwrap();
                if p.len() - 4 < bs {
                    return Ok((out, fields));
                }
                expected = expected.wrapping_add(1);
            }
            _ => {}
        }
    }
}

fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").unwrap().count()
}

#[tokio::test(flavor = "multi_thread")]
async fn duplicate_ack_storm_gets_no_extra_data_and_a_stalled_transfer_ends() {
    let _g = SERIAL.read().await;
    let e = start(Limits::default()).await;
    let retries = e.limits.tftp_retries as usize;
    let sock = Arc::new(client(21).await);
    sock.send_to(&rrq("big.bin", "octet", &[("blksize", "1468"), ("windowsize", "16")]), e.tftp).await.unwrap();
    let (p, tid) = recv(&sock, Duration::from_secs(2)).await.expect("an OACK");
    assert_eq!(opcode(&p), tftp::OACK);
    assert_eq!(oack_fields(&p).get("windowsize").map(String::as_str), Some("16"));
    sock.send_to(&ack(0), tid).await.unwrap();
    let mut first = Vec::new();
    while first.len() < 16 {
        let (p, _) = recv(&sock, Duration::from_secs(2)).await.expect("the first window");
        assert_eq!(opcode(&p), tftp::DATA);
        first.push(p);
    }
    assert_eq!(first.iter().map(|p| block(p)).collect::<Vec<_>>(), (1..=16).collect::<Vec<u16>>());
    assert_eq!(&first[0][4..], &big()[..1468]);
    // Progress once (block 16), then a storm of duplicates of that ACK: 20 at once, then one
    // every 50 ms until the server gives up.
    sock.send_to(&ack(16), tid).await.unwrap();
    let acked = Instant::now();
    let storm = {
        let sock = sock.clone();
        tokio::spawn(async move {
            for _ in 0..20 {
                let _ = sock.send_to(&ack(16), tid).await;
            }
            loop {
                tokio::time::sleep(Duration::from_millis(50)).await;
                let _ = sock.send_to(&ack(16), tid).await;
            }
        })
    };
    let (mut packets, mut bytes, mut end) = (0usize, 0usize, None);
    while acked.elapsed() < Duration::from_secs(15) {
        let Some((p, _)) = recv(&sock, Duration::from_secs(1)).await else { continue };
        if let Some(err) = error_of(&p) {
            end = Some((err, acked.elapsed()));
            break;
        }
        assert_eq!(opcode(&p), tftp::DATA);
        assert!((17..=32).contains(&block(&p)), "only the second window is ever sent, got block {}", block(&p));
        packets += 1;
        bytes += p.len();
    }
    storm.abort();
    let ((c, msg), after) = end.expect("the server ends a transfer that makes no progress");
    eprintln!("duplicate-ACK storm: {packets} DATA packets, {bytes} bytes, error {c} {msg:?} after {after:?}");
    assert_eq!(c, code::NOT_DEFINED);
    // One window after the ACK, one more per timeout (1 s) for tftp_retries timeouts: the
    // storm's ~170 duplicate ACKs added nothing (before: one whole window each).
    assert!(packets <= 16 * (1 + retries), "{packets} DATA packets for {} windows", 1 + retries);
    assert!(bytes <= 16 * 1472 * (1 + retries));
    // Ended within retries x timeout + slack, though the client kept sending.
    assert!(after <= Duration::from_secs(1 + retries as u64 + 2), "ended after {after:?}");
    assert!(after >= Duration::from_secs(retries as u64), "resends come on timeout only: {after:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn rrq_flood_from_one_address_holds_its_share_only() {
    let _g = SERIAL.write().await;
    let e = start(Limits::default()).await;
    let per = e.limits.tftp_per_client;
    // 127.0.93.x: addresses no other test uses (the kernel's UDP table is counted below).
    let socks: Vec<UdpSocket> = futures_join(20, 9).await;
    let other = client(10).await;
    let base = open_fds();
    let started = Instant::now();
    let req = rrq("vmlinuz", "octet", &[("blksize", "1468")]);
    for i in 0..1000 {
        socks[i % socks.len()].send_to(&req, e.tftp).await.unwrap();
    }
    // Replies: OACKs from at most `per` transfer sockets, "server busy" for the rest.
    let mut tids = std::collections::HashSet::new();
    let mut busy = 0;
    let mut other_errors = Vec::new();
    let mut peak = open_fds();
    let (mut peak_socks, mut peak_files) = (0, 0);
    let flooder = Ipv4Addr::new(127, 0, 93, 9);
    for s in &socks {
        while let Some((p, from)) = recv(s, Duration::from_millis(50)).await {
            match (opcode(&p), error_of(&p)) {
                (tftp::OACK, _) => {
                    tids.insert(from);
                }
                (_, Some((0, m))) if m.contains("busy") => busy += 1,
                (_, err) => other_errors.push(err),
            }
        }
        peak = peak.max(open_fds());
        peak_socks = usize::max(peak_socks, transfer_sockets_to(flooder));
        peak_files = usize::max(peak_files, files_open_under(&e.out));
    }
    eprintln!(
        "RRQ flood: {} transfers, {busy} busy, {peak_socks} transfer sockets, {peak_files} files open, fds {base} -> peak {peak}, in {:?}",
        tids.len(),
        started.elapsed()
    );
    assert!(other_errors.is_empty(), "{other_errors:?}");
    assert!(tids.len() <= per, "{} transfers held by one address", tids.len());
    assert!(busy >= 1000 - per - 10, "{busy} busy replies");
    // No file is open before ACK 0: one socket per held slot, nothing else.
    assert!(peak_socks <= per, "{peak_socks} transfer sockets to the flooding address");
    assert_eq!(peak_files, 0, "files opened before any ACK");
    // (The whole process too, with room for other tests' transfers still ending.)
    assert!(peak <= base + per + 8, "descriptors {base} -> {peak}");
    // The flooding address is still refused...
    // (Its socket also gets the held transfers' OACK resends.)
    socks[0].send_to(&req, e.tftp).await.unwrap();
    let refused = loop {
        let (p, _) = recv(&socks[0], Duration::from_secs(1)).await.expect("a reply");
        if opcode(&p) != tftp::OACK {
            break error_of(&p);
        }
    };
    assert!(matches!(&refused, Some((0, m)) if m.contains("busy")), "{refused:?}");
    // ...while another address is served.
    assert!(transfer_sockets_to(flooder) > 0, "the flood still holds its slots");
    assert_eq!(
        netboot::tftp_get_from(Ipv4Addr::new(127, 0, 93, 10), e.tftp, "vmlinuz", 1468, 1).await.unwrap(),
        b"kernel"
    );
    let (data, _) = fetch(&other, e.tftp, &rrq("k", "octet", &[])).await.unwrap();
    assert_eq!(data.len(), 100_000);
    // The unacknowledged OACKs give their slots back after (resends + 1) timeouts.
    let held_for = Duration::from_secs(tftp::UNVERIFIED_RESENDS as u64 + 1);
    tokio::time::sleep((held_for + Duration::from_millis(1500)).saturating_sub(started.elapsed())).await;
    assert_eq!(transfer_sockets_to(flooder), 0, "transfer sockets released");
    let (data, _) = fetch(&socks[0], e.tftp, &req).await.unwrap();
    assert_eq!(data, b"kernel");
}

async fn futures_join(n: usize, last: u8) -> Vec<UdpSocket> {
    let mut v = Vec::new();
    for _ in 0..n {
        v.push(client(last).await);
    }
    v
}

#[tokio::test(flavor = "multi_thread")]
async fn a_forged_rrq_gets_one_small_reply() {
    let _g = SERIAL.read().await;
    let e = start(Limits::default()).await;
    let wait = Duration::from_secs(e.limits.tftp_retries as u64 + 2);
    // With an option: the OACK only, about the request's size, resent on timeout; no data.
    let s = client(31).await;
    let req = rrq("k", "octet", &[("tsize", "0")]);
    s.send_to(&req, e.tftp).await.unwrap();
    let t0 = Instant::now();
    let mut replies = Vec::new();
    while t0.elapsed() < wait {
        if let Some((p, _)) = recv(&s, Duration::from_millis(300)).await {
            replies.push(p);
        }
    }
    let total: usize = replies.iter().map(Vec::len).sum();
    eprintln!("{}-byte RRQ with tsize: {} replies, {total} bytes", req.len(), replies.len());
    assert!(!replies.is_empty());
    for p in &replies {
        assert_eq!(opcode(p), tftp::OACK, "only OACKs before ACK 0");
        assert!(p.len() <= req.len(), "a {}-byte OACK for a {}-byte RRQ", p.len(), req.len());
    }
    assert!(replies.len() <= 1 + tftp::UNVERIFIED_RESENDS as usize, "{} OACKs", replies.len());
    // Without options: one 512-byte block (and its resends), nothing past block 1.
    let s = client(32).await;
    let req = rrq("k", "octet", &[]);
    s.send_to(&req, e.tftp).await.unwrap();
    let t0 = Instant::now();
    let mut replies = Vec::new();
    while t0.elapsed() < wait {
        if let Some((p, _)) = recv(&s, Duration::from_millis(300)).await {
            replies.push(p);
        }
    }
    eprintln!("{}-byte RRQ without options: {} replies", req.len(), replies.len());
    assert!(!replies.is_empty());
    let data: Vec<&Vec<u8>> = replies.iter().filter(|p| opcode(p) == tftp::DATA).collect();
    assert!(data.iter().all(|p| block(p) == 1 && p.len() == 516), "block 1 only");
    assert!(data.len() <= 1 + tftp::UNVERIFIED_RESENDS as usize, "{} blocks", data.len());
    // And no error packet either: the address never answered.
    assert_eq!(data.len(), replies.len());
}

#[tokio::test(flavor = "multi_thread")]
async fn client_options_are_capped() {
    let _g = SERIAL.read().await;
    let e = start(Limits::default()).await;
    let s = client(41).await;
    let server = e.tftp;
    let first = |req: Vec<u8>| {
        let s = &s;
        async move {
            s.send_to(&req, server).await.unwrap();
            let (p, from) = recv(s, Duration::from_secs(2)).await.expect("a reply");
            // End it here (the client may stop a transfer with an error).
            s.send_to(&tftp::error_packet(0, "test done"), from).await.unwrap();
            assert_eq!(opcode(&p), tftp::OACK, "{p:?}");
            oack_fields(&p)
        }
    };
    // timeout=255 would hold a slot for minutes: not acknowledged (the default applies).
    let f = first(rrq("big.bin", "octet", &[("blksize", "1468"), ("timeout", "255")])).await;
    assert_eq!(f.get("timeout"), None, "{f:?}");
    assert_eq!(f.get("blksize").map(String::as_str), Some("1468"));
    let f = first(rrq("big.bin", "octet", &[("timeout", "3")])).await;
    assert_eq!(f.get("timeout").map(String::as_str), Some("3"));
    // windowsize x blksize <= tftp_window_bytes: the OACK carries the reduced windowsize.
    let f = first(rrq("big.bin", "octet", &[("blksize", "1468"), ("windowsize", "1000"), ("tsize", "0")])).await;
    let most = e.limits.tftp_window_bytes / 1468;
    assert_eq!(f.get("windowsize"), Some(&most.to_string()), "{f:?}");
    assert_eq!(f.get("tsize"), Some(&BIG.to_string()));
    let f = first(rrq("big.bin", "octet", &[("blksize", "65464"), ("windowsize", "4")])).await;
    let bs: usize = f["blksize"].parse().unwrap();
    let w: usize = f["windowsize"].parse().unwrap();
    assert!(bs * w <= e.limits.tftp_window_bytes, "{f:?}");
    // And a capped window still delivers the whole file.
    let data = netboot::tftp_get_from(Ipv4Addr::new(127, 0, 93, 42), e.tftp, "big.bin", 1468, 1000).await.unwrap();
    assert!(data == big(), "big.bin over a capped window");
}

#[tokio::test(flavor = "multi_thread")]
async fn netascii_is_converted() {
    let _g = SERIAL.read().await;
    let e = start(Limits::default()).await;
    let s = client(51).await;
    let want = b"line1\r\nline2\r\0\r\nend".to_vec();
    let (data, _) = fetch(&s, e.tftp, &rrq("text.txt", "netascii", &[])).await.unwrap();
    assert_eq!(data, want);
    let (data, f) = fetch(&s, e.tftp, &rrq("text.txt", "NETASCII", &[("blksize", "8"), ("tsize", "0")])).await.unwrap();
    assert_eq!(data, want);
    // The converted size is known only once read: tsize left out, as tftp-hpa does.
    assert_eq!(f.get("tsize"), None);
    assert_eq!(f.get("blksize").map(String::as_str), Some("8"));
    // octet stays byte for byte.
    let (data, f) = fetch(&s, e.tftp, &rrq("text.txt", "octet", &[("tsize", "0")])).await.unwrap();
    assert_eq!(data, b"line1\nline2\r\nend");
    assert_eq!(f.get("tsize").map(String::as_str), Some("16"));
}

#[tokio::test(flavor = "multi_thread")]
async fn errors_carry_honest_codes() {
    let _g = SERIAL.read().await;
    let e = start(Limits::default()).await;
    let s = client(61).await;
    let code_of = |r: Fetched| r.map(|_| ()).unwrap_err();
    assert_eq!(code_of(fetch(&s, e.tftp, &rrq("missing.bin", "octet", &[])).await).0, code::NOT_FOUND);
    assert_eq!(code_of(fetch(&s, e.tftp, &rrq("dir", "octet", &[])).await).0, code::NOT_FOUND);
    assert_eq!(code_of(fetch(&s, e.tftp, &rrq("escape", "octet", &[])).await).0, code::ACCESS);
    assert_eq!(code_of(fetch(&s, e.tftp, &rrq("../etc/passwd", "octet", &[])).await).0, code::ACCESS);
    assert_eq!(code_of(fetch(&s, e.tftp, &rrq("k", "mail", &[])).await).0, code::ILLEGAL);
    // A missing file stays "not found" with options too (no OACK for it).
    assert_eq!(code_of(fetch(&s, e.tftp, &rrq("missing.bin", "octet", &[("tsize", "0")])).await).0, code::NOT_FOUND);
    let mut w = rrq("k", "octet", &[]);
    w[1] = tftp::WRQ as u8;
    assert_eq!(code_of(fetch(&s, e.tftp, &w).await).0, code::ACCESS);
    // EMFILE and other I/O errors: error 0 with the reason (tftp::io_code, unit-tested).
    assert_eq!(tftp::io_code(&std::io::Error::from_raw_os_error(libc::EMFILE)), code::NOT_DEFINED);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_slow_transfer_ends_at_its_deadline() {
    let _g = SERIAL.read().await;
    let limits = Limits { tftp_deadline: Duration::from_secs(2), ..Limits::default() };
    let e = start(limits).await;
    let s = client(71).await;
    s.send_to(&rrq("k", "octet", &[]), e.tftp).await.unwrap();
    let t0 = Instant::now();
    // A client that acknowledges each block, but slowly (196 blocks x 400 ms = 78 s).
    let end = loop {
        let (p, from) = recv(&s, Duration::from_secs(3)).await.expect("data or an error");
        if let Some(err) = error_of(&p) {
            break err;
        }
        tokio::time::sleep(Duration::from_millis(400)).await;
        s.send_to(&ack(block(&p)), from).await.unwrap();
    };
    let after = t0.elapsed();
    eprintln!("deadline: error {end:?} after {after:?}");
    assert_eq!(end.0, code::NOT_DEFINED);
    assert!(end.1.contains("deadline"), "{end:?}");
    assert!(after < Duration::from_secs(2 + 1 + 1), "{after:?}");
}

/// "Too many open files" is error 0 with the reason, never "file not found" (which PXE
/// firmware takes as final). The oa-pxe binary, its open-file limit lowered (prlimit) to
/// what it holds plus one: a transfer gets its socket, then cannot open the file; with that
/// socket held by another transfer, the next RRQ gets no socket at all.
#[tokio::test(flavor = "multi_thread")]
async fn too_many_open_files_is_not_file_not_found() {
    let _g = SERIAL.read().await;
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    std::fs::create_dir_all(&out).unwrap();
    for (f, d) in [("k", &b"kernel"[..]), ("vmlinuz", b"k"), ("initramfs.img", b"i"), ("rootfs.squashfs", b"r")] {
        std::fs::write(out.join(f), d).unwrap();
    }
    std::fs::write(
        out.join("manifest.json"),
        r#"{"schema":1,"profile":"t","arch":"x86_64","kernel_release":"0","cmdline":[],"artifacts":[],"builder":"t"}"#,
    )
    .unwrap();
    let port = std::net::UdpSocket::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_oa-pxe"))
        .arg(&out)
        .args(["--mode", "off", "--address", "127.0.0.1", "--bind", "127.0.0.1", "--http-port", "0"])
        .args(["--tftp-port", &port.to_string()])
        .env("RUST_LOG", "warn")
        .stderr(std::fs::File::create(dir.path().join("log")).unwrap())
        .spawn()
        .unwrap();
    struct Reap(std::process::Child);
    impl Drop for Reap {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let child = Reap(child);
    let server = SocketAddr::from(([127, 0, 0, 1], port));
    let ready = client(81).await;
    let t0 = Instant::now();
    while fetch(&ready, server, &rrq("k", "octet", &[])).await.is_err() {
        assert!(t0.elapsed() < Duration::from_secs(10), "oa-pxe does not answer");
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let pid = child.0.id() as libc::pid_t;
    let open: Vec<u64> = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().parse().unwrap())
        .collect();
    // New descriptors take the lowest free numbers below the limit: the smallest limit that
    // leaves exactly one free.
    let limit = (1u64..).find(|l| l - open.iter().filter(|fd| *fd < l).count() as u64 == 1).unwrap();
    let lim = libc::rlimit { rlim_cur: limit, rlim_max: limit };
    // SAFETY: prlimit with a valid struct and no old-limit pointer.
    assert_eq!(unsafe { libc::prlimit(pid, libc::RLIMIT_NOFILE, &lim, std::ptr::null_mut()) }, 0);
    // The socket fits, the file does not.
    let r = fetch(&client(82).await, server, &rrq("k", "octet", &[("blksize", "1024")])).await;
    let (c, msg) = r.map(|_| ()).unwrap_err();
    eprintln!("open at the limit: error {c} {msg:?}");
    assert_eq!(c, code::NOT_DEFINED, "{msg}");
    assert!(msg.contains("Too many open files"), "{msg}");
    // A transfer holding the last descriptor (its OACK not acknowledged): the next gets none.
    // (First the ended transfer's thread closes its socket: it sent the error just before.)
    let count = || std::fs::read_dir(format!("/proc/{pid}/fd")).unwrap().count();
    let t0 = Instant::now();
    while count() > open.len() {
        assert!(t0.elapsed() < Duration::from_secs(3), "the ended transfer's socket is not closed");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let holder = client(83).await;
    holder.send_to(&rrq("k", "octet", &[("blksize", "1024")]), server).await.unwrap();
    let (p, _) = recv(&holder, Duration::from_secs(2)).await.unwrap();
    assert_eq!(opcode(&p), tftp::OACK, "{:?}", error_of(&p));
    let (c, msg) = fetch(&client(84).await, server, &rrq("k", "octet", &[])).await.map(|_| ()).unwrap_err();
    eprintln!("no socket left: error {c} {msg:?}");
    assert_eq!(c, code::NOT_DEFINED, "{msg}");
    assert!(msg.contains("busy") && msg.contains("Too many open files"), "{msg}");
}
