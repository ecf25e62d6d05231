//! TFTP, read-only: RFC 1350 read requests, option negotiation (RFC 2347) with blksize
//! (2348), tsize and timeout (2349) and windowsize (RFC 7440), retransmission on timeout.
//!
//! Written here rather than taken from async-tftp 0.4: that crate runs on smol/async-io (a
//! second runtime next to tokio in one process) and its file lookup is a handler trait where
//! confinement, boot-file aliases and per-client logging would be re-plumbed anyway; the
//! protocol itself is small. [`parse`] is pure (and fuzzed); each transfer runs in its own
//! task on its own socket (the server's transfer ID) and holds one window of data at most.

use std::net::{IpAddr, SocketAddr};
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::net::UdpSocket;
use tokio::sync::Semaphore;

use crate::clients::Clients;
use crate::config::Config;
use crate::fsroot::{Refused, Root};

pub const RRQ: u16 = 1;
pub const WRQ: u16 = 2;
pub const DATA: u16 = 3;
pub const ACK: u16 = 4;
pub const ERROR: u16 = 5;
pub const OACK: u16 = 6;

pub const DEFAULT_BLKSIZE: usize = 512;
pub const MAX_BLKSIZE: usize = 65464;
const RETRIES: u32 = 5;
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(1);

/// TFTP error codes (RFC 1350, 2347).
pub mod code {
    pub const NOT_DEFINED: u16 = 0;
    pub const NOT_FOUND: u16 = 1;
    pub const ACCESS: u16 = 2;
    pub const ILLEGAL: u16 = 4;
    pub const UNKNOWN_TID: u16 = 5;
    pub const OPTIONS: u16 = 8;
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Malformed {
    #[error("too short ({0} bytes)")]
    Short(usize),
    #[error("unknown opcode {0}")]
    UnknownOpcode(u16),
    #[error("a string is not NUL-terminated")]
    Unterminated,
    #[error("a string is not UTF-8")]
    NotUtf8,
    #[error("empty file name")]
    EmptyName,
    #[error("unknown transfer mode {0:?}")]
    BadMode(String),
    #[error("option {0:?} has no value")]
    OptionWithoutValue(String),
    #[error("option {0:?} given twice")]
    DuplicateOption(String),
}

/// Options the client asked for that this server accepts (values already checked).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Options {
    pub blksize: Option<usize>,
    pub timeout: Option<u8>,
    pub tsize: bool,
    pub windowsize: Option<u16>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Packet {
    Read { file: String, mode: String, options: Options },
    Write { file: String },
    Data { block: u16, len: usize },
    Ack { block: u16 },
    Error { code: u16, msg: String },
    Oack,
}

fn cstrings(b: &[u8]) -> Result<Vec<String>, Malformed> {
    if b.last() != Some(&0) {
        return Err(Malformed::Unterminated);
    }
    b[..b.len() - 1].split(|&c| c == 0).map(|s| String::from_utf8(s.to_vec()).map_err(|_| Malformed::NotUtf8)).collect()
}

/// Parse one packet. Option values out of range are ignored (not acknowledged), as RFC 2347
/// allows; unknown options are ignored.
pub fn parse(buf: &[u8]) -> Result<Packet, Malformed> {
    if buf.len() < 2 {
        return Err(Malformed::Short(buf.len()));
    }
    let op = u16::from_be_bytes([buf[0], buf[1]]);
    let rest = &buf[2..];
    match op {
        RRQ | WRQ => {
            let s = cstrings(rest)?;
            if s.len() < 2 {
                return Err(Malformed::Unterminated);
            }
            if s[0].is_empty() {
                return Err(Malformed::EmptyName);
            }
            let mode = s[1].to_ascii_lowercase();
            if !matches!(mode.as_str(), "octet" | "netascii" | "mail") {
                return Err(Malformed::BadMode(s[1].clone()));
            }
            if op == WRQ {
                return Ok(Packet::Write { file: s[0].clone() });
            }
            let mut options = Options::default();
            let mut seen: Vec<String> = Vec::new();
            let mut i = 2;
            while i < s.len() {
                let name = s[i].to_ascii_lowercase();
                let Some(value) = s.get(i + 1) else { return Err(Malformed::OptionWithoutValue(name)) };
                if seen.contains(&name) {
                    return Err(Malformed::DuplicateOption(name));
                }
                seen.push(name.clone());
                let num = value.parse::<u64>().ok();
                match name.as_str() {
                    "blksize" => {
                        options.blksize = num.filter(|n| (8..=MAX_BLKSIZE as u64).contains(n)).map(|n| n as usize)
                    }
                    "timeout" => options.timeout = num.filter(|n| (1..=255).contains(n)).map(|n| n as u8),
                    "tsize" => options.tsize = num.is_some(),
                    "windowsize" => options.windowsize = num.filter(|n| (1..=65535).contains(n)).map(|n| n as u16),
                    _ => {}
                }
                i += 2;
            }
            Ok(Packet::Read { file: s[0].clone(), mode, options })
        }
        DATA if rest.len() >= 2 => {
            Ok(Packet::Data { block: u16::from_be_bytes([rest[0], rest[1]]), len: rest.len() - 2 })
        }
        ACK if rest.len() >= 2 => Ok(Packet::Ack { block: u16::from_be_bytes([rest[0], rest[1]]) }),
        ERROR if rest.len() >= 2 => {
            let msg = rest[2..]
                .split(|&c| c == 0)
                .next()
                .map(|m| String::from_utf8_lossy(m).into_owned())
                .unwrap_or_default();
            Ok(Packet::Error { code: u16::from_be_bytes([rest[0], rest[1]]), msg })
        }
        OACK => Ok(Packet::Oack),
        DATA | ACK | ERROR => Err(Malformed::Short(buf.len())),
        other => Err(Malformed::UnknownOpcode(other)),
    }
}

pub fn error_packet(code: u16, msg: &str) -> Vec<u8> {
    let mut v = Vec::with_capacity(5 + msg.len());
    v.extend_from_slice(&ERROR.to_be_bytes());
    v.extend_from_slice(&code.to_be_bytes());
    v.extend_from_slice(msg.as_bytes());
    v.push(0);
    v
}

fn oack(pairs: &[(&str, String)]) -> Vec<u8> {
    let mut v = OACK.to_be_bytes().to_vec();
    for (k, val) in pairs {
        v.extend_from_slice(k.as_bytes());
        v.push(0);
        v.extend_from_slice(val.as_bytes());
        v.push(0);
    }
    v
}

/// Shared state of the TFTP side.
pub struct Tftp {
    pub cfg: Arc<Config>,
    pub root: Root,
    pub clients: Clients,
    pub slots: Arc<Semaphore>,
    /// The Raspberry Pi boot tree, when the output has one.
    pub rpi: Option<crate::rpi::Tree>,
}

impl Tftp {
    /// The file a request names: a boot file alias or a file inside the root.
    pub fn lookup(&self, name: &str) -> Result<PathBuf, Refused> {
        if let Some(p) = self.cfg.boot_file(name) {
            return Ok(p.to_path_buf());
        }
        if let Some(r) = self.rpi.as_ref().and_then(|t| t.lookup(name)) {
            return r;
        }
        self.root.resolve(name)
    }
}

/// Serve the TFTP port until the task is dropped.
pub async fn serve(sock: UdpSocket, t: Arc<Tftp>) {
    let mut buf = vec![0u8; 2048];
    loop {
        let (n, peer) = match sock.recv_from(&mut buf).await {
            Ok(x) => x,
            Err(e) => {
                tracing::warn!(target: "tftp", "receive: {e}");
                continue;
            }
        };
        let who = format!("{} ({peer})", t.clients.name(peer.ip()));
        match parse(&buf[..n]) {
            Err(why) => {
                tracing::warn!(target: "tftp", "{who}: dropped a malformed packet ({n} bytes): {why}");
            }
            Ok(Packet::Write { file }) => {
                tracing::warn!(target: "tftp", "{who}: WRQ {file:?} refused: read-only server");
                let _ = sock.send_to(&error_packet(code::ACCESS, "read-only server"), peer).await;
            }
            Ok(Packet::Read { file, mode, options }) => {
                let Ok(permit) = t.slots.clone().try_acquire_owned() else {
                    tracing::warn!(target: "tftp", "{who}: RRQ {file:?} refused: {} transfers running", t.cfg.limits.tftp_transfers);
                    let _ = sock.send_to(&error_packet(code::NOT_DEFINED, "server busy, try again"), peer).await;
                    continue;
                };
                let t = t.clone();
                tokio::spawn(async move {
                    transfer(&t, peer, &who, &file, &mode, options).await;
                    drop(permit);
                });
            }
            Ok(other) => {
                tracing::warn!(target: "tftp", "{who}: dropped {other:?} sent to the request port");
            }
        }
    }
}

async fn transfer(t: &Tftp, peer: SocketAddr, who: &str, name: &str, mode: &str, opts: Options) {
    let local = match t.cfg.bind {
        b if b.is_unspecified() => IpAddr::V4(t.cfg.address),
        b => IpAddr::V4(b),
    };
    let sock = match UdpSocket::bind(SocketAddr::new(local, 0)).await {
        Ok(s) => s,
        Err(_) => match UdpSocket::bind(SocketAddr::new(IpAddr::V4(t.cfg.bind), 0)).await {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(target: "tftp", "{who}: RRQ {name}: no socket: {e}");
                return;
            }
        },
    };
    if sock.connect(peer).await.is_err() {
        return;
    }
    let path = match t.lookup(name) {
        Ok(p) => p,
        Err(e) => {
            let c =
                if matches!(e, Refused::NotFound(_) | Refused::NotAFile(_)) { code::NOT_FOUND } else { code::ACCESS };
            tracing::warn!(target: "tftp", "{who}: RRQ {name:?} refused: {e}");
            let _ = sock.send(&error_packet(c, &e.to_string())).await;
            return;
        }
    };
    let file = match std::fs::File::open(&path) {
        Ok(f) => f,
        Err(e) => {
            tracing::warn!(target: "tftp", "{who}: RRQ {name:?}: {e}");
            let _ = sock.send(&error_packet(code::NOT_FOUND, "cannot open")).await;
            return;
        }
    };
    let size = file.metadata().map(|m| m.len()).unwrap_or(0);
    let blksize = opts.blksize.unwrap_or(DEFAULT_BLKSIZE);
    let window = opts.windowsize.unwrap_or(1) as u64;
    let timeout = opts.timeout.map(|s| Duration::from_secs(s as u64)).unwrap_or(DEFAULT_TIMEOUT);
    let mut pairs = Vec::new();
    if let Some(b) = opts.blksize {
        pairs.push(("blksize", b.to_string()));
    }
    if let Some(s) = opts.timeout {
        pairs.push(("timeout", s.to_string()));
    }
    if opts.tsize {
        pairs.push(("tsize", size.to_string()));
    }
    if let Some(w) = opts.windowsize {
        pairs.push(("windowsize", w.to_string()));
    }
    let started = Instant::now();
    let mut rbuf = vec![0u8; 4 + MAX_BLKSIZE.min(blksize) + 64];
    if !pairs.is_empty() {
        let o = oack(&pairs);
        match exchange(&sock, &o, 0, timeout, &mut rbuf).await {
            Ok(()) => {}
            Err(e) => {
                tracing::info!(target: "tftp", "{who}: RRQ {name}: stopped after the option acknowledgement: {e}");
                return;
            }
        }
    }
    // Blocks are numbered from 1; the last one is shorter than blksize (possibly empty).
    let total = size / blksize as u64 + 1;
    let mut base: u64 = 1;
    let mut retries = 0;
    let mut pkt = vec![0u8; 4 + blksize];
    pkt[..2].copy_from_slice(&DATA.to_be_bytes());
    'outer: while base <= total {
        let end = (base + window - 1).min(total);
        for idx in base..=end {
            let off = (idx - 1) * blksize as u64;
            let want = (size.saturating_sub(off)).min(blksize as u64) as usize;
            let n = match read_full(&file, &mut pkt[4..4 + want], off) {
                Ok(n) => n,
                Err(e) => {
                    tracing::warn!(target: "tftp", "{who}: RRQ {name}: reading {}: {e}", path.display());
                    let _ = sock.send(&error_packet(code::NOT_DEFINED, "read error")).await;
                    return;
                }
            };
            pkt[2..4].copy_from_slice(&(idx as u16).to_be_bytes());
            if let Err(e) = sock.send(&pkt[..4 + n]).await {
                tracing::warn!(target: "tftp", "{who}: RRQ {name}: send: {e}");
                return;
            }
        }
        // Wait for an ACK inside the window.
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            match tokio::time::timeout_at(deadline, sock.recv(&mut rbuf)).await {
                Err(_) => {
                    retries += 1;
                    if retries > RETRIES {
                        tracing::warn!(target: "tftp", "{who}: RRQ {name}: no acknowledgement after {RETRIES} retransmissions at block {base}; giving up");
                        return;
                    }
                    continue 'outer; // resend the window
                }
                Ok(Err(_)) => return, // ICMP port unreachable: the client went away
                Ok(Ok(n)) => match parse(&rbuf[..n]) {
                    Ok(Packet::Ack { block }) => {
                        // The acknowledged block within [base-1, end], by its low 16 bits.
                        if let Some(idx) = (base.saturating_sub(1)..=end).rev().find(|i| *i as u16 == block) {
                            if idx >= base {
                                retries = 0;
                            }
                            base = idx + 1;
                            continue 'outer;
                        }
                        // An old duplicate: keep waiting.
                    }
                    Ok(Packet::Error { code, msg }) => {
                        tracing::info!(target: "tftp", "{who}: RRQ {name}: the client ended the transfer (error {code}: {msg})");
                        return;
                    }
                    Ok(_) | Err(_) => {
                        tracing::warn!(target: "tftp", "{who}: RRQ {name}: dropped an unexpected packet during the transfer");
                    }
                },
            }
        }
    }
    let secs = started.elapsed().as_secs_f64();
    tracing::info!(
        target: "tftp",
        "{who}: RRQ {name} ({mode}) blksize={blksize} windowsize={window}{}: sent {size} bytes in {secs:.2} s",
        if opts.tsize { " tsize" } else { "" }
    );
}

fn read_full(f: &std::fs::File, buf: &mut [u8], mut off: u64) -> std::io::Result<usize> {
    let mut got = 0;
    while got < buf.len() {
        let n = f.read_at(&mut buf[got..], off)?;
        if n == 0 {
            break;
        }
        got += n;
        off += n as u64;
    }
    Ok(got)
}

/// Send `pkt` and wait for ACK `block`, retransmitting on timeout.
async fn exchange(sock: &UdpSocket, pkt: &[u8], block: u16, timeout: Duration, rbuf: &mut [u8]) -> Result<(), String> {
    for _ in 0..=RETRIES {
        sock.send(pkt).await.map_err(|e| e.to_string())?;
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            match tokio::time::timeout_at(deadline, sock.recv(rbuf)).await {
                Err(_) => break,
                Ok(Err(e)) => return Err(e.to_string()),
                Ok(Ok(n)) => match parse(&rbuf[..n]) {
                    Ok(Packet::Ack { block: b }) if b == block => return Ok(()),
                    Ok(Packet::Error { code, msg }) => {
                        return Err(format!("the client ended it (error {code}: {msg}; UEFI asks for tsize this way)"))
                    }
                    _ => continue,
                },
            }
        }
    }
    Err(format!("no acknowledgement after {RETRIES} retransmissions"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rrq(parts: &[&str]) -> Vec<u8> {
        let mut v = RRQ.to_be_bytes().to_vec();
        for p in parts {
            v.extend_from_slice(p.as_bytes());
            v.push(0);
        }
        v
    }

    #[test]
    fn parses_requests_with_options() {
        let p = parse(&rrq(&[
            "ipxe.efi",
            "octet",
            "blksize",
            "1468",
            "tsize",
            "0",
            "windowsize",
            "16",
            "timeout",
            "3",
            "x-frob",
            "1",
        ]))
        .unwrap();
        assert_eq!(
            p,
            Packet::Read {
                file: "ipxe.efi".into(),
                mode: "octet".into(),
                options: Options { blksize: Some(1468), timeout: Some(3), tsize: true, windowsize: Some(16) }
            }
        );
        // Out-of-range values are not acknowledged.
        let p = parse(&rrq(&["f", "OCTET", "blksize", "7", "windowsize", "0", "timeout", "300"])).unwrap();
        assert_eq!(p, Packet::Read { file: "f".into(), mode: "octet".into(), options: Options::default() });
    }

    #[test]
    fn malformed_packets_are_refused_with_a_reason() {
        assert_eq!(parse(&[]), Err(Malformed::Short(0)));
        assert_eq!(parse(&[0]), Err(Malformed::Short(1)));
        assert_eq!(parse(&[0, 9, 1, 2]), Err(Malformed::UnknownOpcode(9)));
        assert_eq!(parse(&[0, 0]), Err(Malformed::UnknownOpcode(0)));
        assert_eq!(parse(&[0, 1, b'a', 0, b'o']), Err(Malformed::Unterminated));
        assert_eq!(parse(&[0, 1, b'a', 0]), Err(Malformed::Unterminated));
        assert_eq!(parse(&rrq(&["", "octet"])), Err(Malformed::EmptyName));
        assert_eq!(parse(&rrq(&["f", "binary"])), Err(Malformed::BadMode("binary".into())));
        assert_eq!(parse(&rrq(&["f", "octet", "blksize"])), Err(Malformed::OptionWithoutValue("blksize".into())));
        assert_eq!(
            parse(&rrq(&["f", "octet", "blksize", "512", "BLKSIZE", "1024"])),
            Err(Malformed::DuplicateOption("blksize".into()))
        );
        assert_eq!(parse(&[0, 1, 0xff, 0xfe, 0, b'o', b'c', b't', b'e', b't', 0]), Err(Malformed::NotUtf8));
        assert_eq!(parse(&[0, 4, 1]), Err(Malformed::Short(3)));
        assert_eq!(parse(&[0, 4, 0, 7]), Ok(Packet::Ack { block: 7 }));
        assert!(matches!(parse(&[0, 2, b'f', 0, b'o', b'c', b't', b'e', b't', 0]), Ok(Packet::Write { .. })));
    }

    #[test]
    fn parse_never_panics_on_garbage() {
        let mut seed = 0x2545F4914F6CDD1Du64;
        for _ in 0..50000 {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            let len = (seed % 40) as usize;
            let b: Vec<u8> = (0..len).map(|i| (seed >> (i % 8 * 8)) as u8 % 8).collect();
            let _ = parse(&b);
        }
    }
}
