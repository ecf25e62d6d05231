//! TFTP, read-only: RFC 1350 read requests, option negotiation (RFC 2347) with blksize
//! (2348), tsize and timeout (2349) and windowsize (RFC 7440), retransmission on timeout.
//!
//! Written here rather than taken from async-tftp 0.4: that crate runs on smol/async-io (a
//! second runtime next to tokio in one process) and its file lookup is a handler trait where
//! confinement, boot-file aliases and per-client logging would be re-plumbed anyway; the
//! protocol itself is small. [`parse`] is pure (and fuzzed).
//!
//! Bounds (issue 14; the numbers are [`crate::config::Limits`]): a transfer holds a slot,
//! counted in all (`tftp_transfers`) and per source address (`tftp_per_client`); over either
//! the client gets ERROR 0 "server busy" (never "file not found": PXE firmware gives up on
//! that). With options the first reply is the OACK alone and the file is opened only after the
//! client's ACK 0, so a forged source address gets a reply of about the request's size;
//! without options one 512-byte block; either is resent at most [`UNVERIFIED_RESENDS`]
//! times before the client has answered, then dropped without an error packet. A window
//! (windowsize x blksize) is at most `tftp_window_bytes`; it is resent only on timeout (a
//! duplicate ACK does nothing), at most `tftp_retries` times, then the transfer ends with an
//! error; the whole transfer ends at `tftp_deadline` (checked once a window: it may run one
//! timeout over); a client's `timeout` over [`MAX_TIMEOUT`] is not acknowledged. netascii is
//! converted (LF -> CR LF, CR -> CR NUL, as tftp-hpa does), in memory up to
//! [`NETASCII_MAX`].
//!
//! Each accepted transfer runs on a thread of its own with a blocking socket (the server's
//! transfer ID, connected to the client): a block costs one `pread`, one `send` and one
//! `recv`, and the transfer holds one window of data at most.

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, SocketAddr, UdpSocket as StdUdpSocket};
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::net::UdpSocket;

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
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(1);
/// The longest per-packet timeout a client may ask for: RFC 2349 allows 255 s, which would
/// let one RRQ hold a slot for half an hour of resends; longer asks are left out of the OACK.
pub const MAX_TIMEOUT: u8 = 10;
/// Resends of the first reply (the OACK, or block 1 without options) before the client has
/// answered anything: its source address may be forged, and a client that lost the reply
/// sends its RRQ again anyway. So a forged RRQ gets at most 1 + this many small replies.
pub const UNVERIFIED_RESENDS: u32 = 2;
/// netascii files are converted in memory, up to this size (larger ones: error 0).
pub const NETASCII_MAX: u64 = 8 << 20;

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

/// What a request names: a file on disk, or bytes generated at start (the Pi `cmdline.txt`).
#[derive(Debug, Clone)]
pub enum Found {
    Disk(PathBuf),
    Memory(Arc<[u8]>),
}

/// Why a request for more slots was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Busy {
    /// All `tftp_transfers` slots are held.
    All(usize),
    /// This source address holds its `tftp_per_client` share.
    Client(usize),
}

impl std::fmt::Display for Busy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Busy::All(n) => write!(f, "all {n} transfer slots are held"),
            Busy::Client(n) => write!(f, "this address already holds {n} transfers"),
        }
    }
}

#[derive(Default)]
struct SlotTable {
    total: usize,
    by_ip: HashMap<IpAddr, usize>,
}

/// Transfer slots: counted in all and per source address. A [`Slot`] gives its place back
/// when dropped (the transfer ended, however it ended).
#[derive(Default)]
pub struct Slots(Mutex<SlotTable>);

pub struct Slot {
    slots: Arc<Slots>,
    ip: IpAddr,
}

impl Slots {
    fn lock(&self) -> std::sync::MutexGuard<'_, SlotTable> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A slot for a transfer to `ip`, unless that would pass `all` in all or `per_client` for
    /// the address.
    pub fn take(self: &Arc<Self>, ip: IpAddr, all: usize, per_client: usize) -> Result<Slot, Busy> {
        let mut t = self.lock();
        if t.total >= all {
            return Err(Busy::All(t.total));
        }
        let mine = t.by_ip.entry(ip).or_insert(0);
        if *mine >= per_client {
            return Err(Busy::Client(*mine));
        }
        *mine += 1;
        t.total += 1;
        Ok(Slot { slots: self.clone(), ip })
    }

    /// Slots held in all.
    pub fn held(&self) -> usize {
        self.lock().total
    }

    /// Slots held by one source address.
    pub fn held_by(&self, ip: IpAddr) -> usize {
        self.lock().by_ip.get(&ip).copied().unwrap_or(0)
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut t = self.slots.lock();
        t.total -= 1;
        if let Some(n) = t.by_ip.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                t.by_ip.remove(&self.ip);
            }
        }
    }
}

/// Files shim and GRUB ask for on every secure netboot and do fine without: shim's revocation
/// and extra-certificate files beside itself, GRUB's module lists under its prefix. Their
/// absence is logged at info, not as a warning an operator would chase.
fn optional_probe(name: &str) -> bool {
    let base = name.rsplit('/').next().unwrap_or(name);
    let efi = base.ends_with(".efi");
    (efi && (base.starts_with("revocations_") || base.starts_with("shim_certificate")))
        || (name.trim_start_matches('/').starts_with("grub/") && name.contains("-efi/") && base.ends_with(".lst"))
}

/// Shared state of the TFTP side.
pub struct Tftp {
    pub cfg: Arc<Config>,
    pub root: Root,
    pub clients: Clients,
    pub slots: Arc<Slots>,
    /// The Raspberry Pi boot tree, when the output has one.
    pub rpi: Option<crate::rpi::Tree>,
    /// When "server busy" was last logged, and how many refusals since (one line a second).
    busy_log: Mutex<(Option<Instant>, u64)>,
}

impl Tftp {
    pub fn new(cfg: Arc<Config>, root: Root, clients: Clients, rpi: Option<crate::rpi::Tree>) -> Tftp {
        Tftp { cfg, root, clients, slots: Arc::default(), rpi, busy_log: Mutex::new((None, 0)) }
    }

    /// The file a request names: a boot file alias, a file of the Pi tree, or a file inside
    /// the root.
    pub fn lookup(&self, name: &str) -> Result<Found, Refused> {
        if let Some(p) = self.cfg.boot_file(name) {
            return Ok(Found::Disk(p.to_path_buf()));
        }
        if let Some(r) = self.rpi.as_ref().and_then(|t| t.lookup(name)) {
            return r;
        }
        self.root.resolve(name).map(Found::Disk)
    }

    /// Log a "server busy" refusal, at most one line a second (a flood must not flood the log).
    fn log_busy(&self, who: &str, file: &str, why: Busy) {
        let mut g = self.busy_log.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        if g.0.is_some_and(|t| now.duration_since(t) < Duration::from_secs(1)) {
            g.1 += 1;
            return;
        }
        let more = std::mem::take(&mut g.1);
        g.0 = Some(now);
        drop(g);
        let also =
            if more > 0 { format!(" ({more} more RRQs refused as busy in the last second)") } else { String::new() };
        tracing::warn!(target: "tftp", "{who}: RRQ {file:?} refused with \"server busy\": {why}{also}");
    }

    /// The transfer's own socket (its port is the server's transfer ID), connected to the peer.
    fn transfer_socket(&self, peer: SocketAddr) -> io::Result<StdUdpSocket> {
        let local = match self.cfg.bind {
            b if b.is_unspecified() => IpAddr::V4(self.cfg.address),
            b => IpAddr::V4(b),
        };
        let sock = StdUdpSocket::bind(SocketAddr::new(local, 0))
            .or_else(|_| StdUdpSocket::bind(SocketAddr::new(IpAddr::V4(self.cfg.bind), 0)))?;
        sock.connect(peer)?;
        Ok(sock)
    }
}

/// Serve the TFTP port until the task is dropped. Requests are read here; each accepted
/// RRQ gets a slot, a socket and a thread of its own (blocking I/O: one `pread`, one `send`
/// and one `recv` a block, no runtime in between), all released when it ends.
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
                let l = &t.cfg.limits;
                let slot = match t.slots.take(peer.ip(), l.tftp_transfers, l.tftp_per_client) {
                    Ok(s) => s,
                    Err(why) => {
                        t.log_busy(&who, &file, why);
                        let _ = sock.send_to(&error_packet(code::NOT_DEFINED, "server busy, try again"), peer).await;
                        continue;
                    }
                };
                let tsock = match t.transfer_socket(peer) {
                    Ok(s) => s,
                    Err(e) => {
                        tracing::warn!(target: "tftp", "{who}: RRQ {file:?}: no transfer socket: {e}");
                        let msg = format!("server busy: {e}");
                        let _ = sock.send_to(&error_packet(code::NOT_DEFINED, &msg), peer).await;
                        continue;
                    }
                };
                let t2 = t.clone();
                let who2 = who.clone();
                let req = Request { file: file.clone(), mode, options };
                let spawned = std::thread::Builder::new().name("tftp".into()).stack_size(256 << 10).spawn(move || {
                    let _slot = slot;
                    t2.transfer(&tsock, &who2, &req);
                });
                if let Err(e) = spawned {
                    tracing::warn!(target: "tftp", "{who}: RRQ {file:?}: no thread for the transfer: {e}");
                    let msg = format!("server busy: {e}");
                    let _ = sock.send_to(&error_packet(code::NOT_DEFINED, &msg), peer).await;
                }
            }
            Ok(other) => {
                tracing::warn!(target: "tftp", "{who}: dropped {other:?} sent to the request port");
            }
        }
    }
}

struct Request {
    file: String,
    mode: String,
    options: Options,
}

/// How a transfer stopped early.
enum Stop {
    /// Tell the client (an ERROR packet) and log it.
    Fail { code: u16, msg: String },
    /// The client ended it, went away or never acknowledged the OACK: log only (nothing
    /// more is sent to an address that did not answer).
    Quiet(String),
}

fn fail(code: u16, msg: impl Into<String>) -> Stop {
    Stop::Fail { code, msg: msg.into() }
}

/// The TFTP error code for an I/O error: honest, so PXE firmware retries what may pass
/// (EMFILE is "not defined: too many open files", never "file not found").
pub fn io_code(e: &io::Error) -> u16 {
    match e.kind() {
        io::ErrorKind::NotFound => code::NOT_FOUND,
        io::ErrorKind::PermissionDenied => code::ACCESS,
        _ => code::NOT_DEFINED,
    }
}

/// netascii (RFC 764 as TFTP uses it): LF becomes CR LF, CR becomes CR NUL, as tftp-hpa sends.
pub fn to_netascii(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len() + data.len() / 16);
    for &b in data {
        match b {
            b'\n' => out.extend_from_slice(b"\r\n"),
            b'\r' => out.extend_from_slice(b"\r\0"),
            b => out.push(b),
        }
    }
    out
}

/// The bytes sent: a file read with `pread`, or a buffer.
enum Data {
    File(std::fs::File),
    Memory(Arc<[u8]>),
}

impl Data {
    fn read_at(&self, buf: &mut [u8], off: u64) -> io::Result<usize> {
        match self {
            Data::File(f) => read_full(f, buf, off),
            Data::Memory(m) => {
                let start = (off as usize).min(m.len());
                let n = buf.len().min(m.len() - start);
                buf[..n].copy_from_slice(&m[start..start + n]);
                Ok(n)
            }
        }
    }
}

/// What the transfer agreed on with the client.
struct Agreed {
    blksize: usize,
    window: u64,
    timeout: Duration,
    pairs: Vec<(&'static str, String)>,
    notes: Vec<String>,
}

impl Tftp {
    fn transfer(&self, sock: &StdUdpSocket, who: &str, req: &Request) {
        let started = Instant::now();
        let mut link = Link { sock, timeout: DEFAULT_TIMEOUT, rbuf: vec![0u8; 2048], resends: 0, ignored: 0 };
        let name = &req.file;
        match self.run(&mut link, req, started) {
            Ok((size, a)) => {
                let secs = started.elapsed().as_secs_f64();
                let notes = if a.notes.is_empty() { String::new() } else { format!(" ({})", a.notes.join("; ")) };
                tracing::info!(
                    target: "tftp",
                    "{who}: RRQ {name} ({}) blksize={} windowsize={}: sent {size} bytes in {secs:.2} s, {} resends, {} duplicate or stray packets ignored{notes}",
                    req.mode, a.blksize, a.window, link.resends, link.ignored
                );
            }
            Err(Stop::Fail { code: code::NOT_FOUND, msg }) if optional_probe(name) => {
                tracing::info!(target: "tftp", "{who}: RRQ {name:?} ({}): not here, which is fine (shim and GRUB look for it on every netboot and go on without it)", req.mode);
                let _ = sock.send(&error_packet(code::NOT_FOUND, &msg));
            }
            Err(Stop::Fail { code, msg }) => {
                tracing::warn!(target: "tftp", "{who}: RRQ {name:?} ({}) ended with error {code}: {msg} (after {:.1} s, {} resends)", req.mode, started.elapsed().as_secs_f64(), link.resends);
                let _ = sock.send(&error_packet(code, &msg));
            }
            Err(Stop::Quiet(why)) => {
                tracing::info!(target: "tftp", "{who}: RRQ {name:?} ({}) stopped: {why} (after {:.1} s)", req.mode, started.elapsed().as_secs_f64());
            }
        }
    }

    fn agree(&self, req: &Request, found: &Found) -> Result<Agreed, Stop> {
        let l = &self.cfg.limits;
        let o = &req.options;
        let mut notes = Vec::new();
        let mut pairs = Vec::new();
        let cap = l.tftp_window_bytes.clamp(DEFAULT_BLKSIZE, MAX_BLKSIZE);
        let blksize = match o.blksize {
            Some(b) => {
                let b = b.min(cap);
                pairs.push(("blksize", b.to_string()));
                b
            }
            None => DEFAULT_BLKSIZE,
        };
        let timeout = match o.timeout {
            Some(s) if s <= MAX_TIMEOUT => {
                pairs.push(("timeout", s.to_string()));
                Duration::from_secs(s as u64)
            }
            Some(s) => {
                notes.push(format!("timeout={s} not acknowledged (over {MAX_TIMEOUT} s)"));
                DEFAULT_TIMEOUT
            }
            None => DEFAULT_TIMEOUT,
        };
        if o.tsize {
            let size = match (found, req.mode.as_str()) {
                (Found::Memory(m), "netascii") => Some(to_netascii(m).len() as u64),
                (Found::Memory(m), _) => Some(m.len() as u64),
                // Its converted size is known only once read: left out, as tftp-hpa does.
                (Found::Disk(_), "netascii") => None,
                (Found::Disk(p), _) => Some(
                    std::fs::metadata(p).map_err(|e| fail(io_code(&e), format!("{name}: {e}", name = req.file)))?.len(),
                ),
            };
            if let Some(s) = size {
                pairs.push(("tsize", s.to_string()));
            }
        }
        let window = match o.windowsize {
            Some(asked) => {
                let w = (asked as u64).min((l.tftp_window_bytes / blksize).max(1) as u64);
                if w < asked as u64 {
                    notes.push(format!("windowsize {asked} reduced to {w}"));
                }
                pairs.push(("windowsize", w.to_string()));
                w
            }
            None => 1,
        };
        Ok(Agreed { blksize, window, timeout, pairs, notes })
    }

    fn open(&self, req: &Request, found: Found) -> Result<Data, Stop> {
        let name = &req.file;
        let data = match found {
            Found::Memory(m) => Data::Memory(m),
            Found::Disk(p) => {
                Data::File(std::fs::File::open(&p).map_err(|e| fail(io_code(&e), format!("cannot open {name}: {e}")))?)
            }
        };
        if req.mode != "netascii" {
            return Ok(data);
        }
        let bytes = match data {
            Data::Memory(m) => m.to_vec(),
            Data::File(f) => {
                let size = f.metadata().map_err(|e| fail(io_code(&e), format!("{name}: {e}")))?.len();
                if size > NETASCII_MAX {
                    return Err(fail(
                        code::NOT_DEFINED,
                        format!("netascii is converted in memory up to {NETASCII_MAX} bytes; ask for this file in octet mode"),
                    ));
                }
                let mut v = vec![0u8; size as usize];
                let n = read_full(&f, &mut v, 0).map_err(|e| fail(io_code(&e), format!("reading {name}: {e}")))?;
                v.truncate(n);
                v
            }
        };
        Ok(Data::Memory(to_netascii(&bytes).into()))
    }

    fn run(&self, link: &mut Link, req: &Request, started: Instant) -> Result<(u64, Agreed), Stop> {
        let l = &self.cfg.limits;
        let name = &req.file;
        if req.mode == "mail" {
            return Err(fail(code::ILLEGAL, "mail mode is for writes; this server is read-only"));
        }
        let found = self.lookup(name).map_err(|e| {
            let c =
                if matches!(e, Refused::NotFound(_) | Refused::NotAFile(_)) { code::NOT_FOUND } else { code::ACCESS };
            fail(c, e.to_string())
        })?;
        let a = self.agree(req, &found)?;
        link.timeout = a.timeout;
        link.sock.set_read_timeout(Some(a.timeout)).map_err(|e| fail(code::NOT_DEFINED, e.to_string()))?;
        let deadline = started + l.tftp_deadline;
        // With options: the OACK alone, nothing more (no file opened) until the client's
        // ACK 0 shows it really asked from this address.
        if !a.pairs.is_empty() {
            let pkt = oack(&a.pairs);
            let mut tries = 0;
            loop {
                link.send(&pkt)?;
                if link.wait(0, 0)?.is_some() {
                    break;
                }
                tries += 1;
                if tries > l.tftp_retries.min(UNVERIFIED_RESENDS) {
                    return Err(Stop::Quiet(format!(
                        "the option acknowledgement was never acknowledged ({tries} sent, {} s apart)",
                        a.timeout.as_secs()
                    )));
                }
                link.resends += 1;
            }
        }
        let data = self.open(req, found)?;
        let size = match &data {
            Data::File(f) => f.metadata().map_err(|e| fail(io_code(&e), format!("{name}: {e}")))?.len(),
            Data::Memory(m) => m.len() as u64,
        };
        let bs = a.blksize as u64;
        // Blocks are numbered from 1; the last one is shorter than blksize (possibly empty).
        let total = size / bs + 1;
        let mut pkt = vec![0u8; 4 + a.blksize];
        pkt[..2].copy_from_slice(&DATA.to_be_bytes());
        let mut base: u64 = 1;
        let mut retries = 0;
        // Without options nothing has come back from the client yet: block 1 is its first
        // reply, resent fewer times and given up quietly (the address may be forged).
        let mut verified = !a.pairs.is_empty();
        loop {
            if Instant::now() > deadline {
                return Err(fail(
                    code::NOT_DEFINED,
                    format!("transfer deadline of {} s passed at block {base} of {total}", l.tftp_deadline.as_secs()),
                ));
            }
            let end = (base + a.window - 1).min(total);
            for idx in base..=end {
                let off = (idx - 1) * bs;
                let want = size.saturating_sub(off).min(bs) as usize;
                let n = data
                    .read_at(&mut pkt[4..4 + want], off)
                    .map_err(|e| fail(io_code(&e), format!("reading {name}: {e}")))?;
                pkt[2..4].copy_from_slice(&(idx as u16).to_be_bytes());
                link.send(&pkt[..4 + n])?;
            }
            match link.wait(base, end)? {
                Some(idx) if idx == total => return Ok((size, a)),
                Some(idx) => {
                    base = idx + 1;
                    retries = 0;
                    verified = true;
                }
                None if !verified => {
                    retries += 1;
                    if retries > l.tftp_retries.min(UNVERIFIED_RESENDS) {
                        return Err(Stop::Quiet(format!(
                            "block 1 was never acknowledged ({retries} sent, {} s apart)",
                            a.timeout.as_secs()
                        )));
                    }
                    link.resends += 1;
                }
                None => {
                    retries += 1;
                    if retries > l.tftp_retries {
                        return Err(fail(
                            code::NOT_DEFINED,
                            format!(
                                "no acknowledgement of block {base} after {} resends {} s apart",
                                l.tftp_retries,
                                a.timeout.as_secs()
                            ),
                        ));
                    }
                    link.resends += 1;
                }
            }
        }
    }
}

/// One transfer's socket and counters.
struct Link<'a> {
    sock: &'a StdUdpSocket,
    timeout: Duration,
    rbuf: Vec<u8>,
    resends: u32,
    ignored: u64,
}

impl Link<'_> {
    fn send(&self, pkt: &[u8]) -> Result<(), Stop> {
        match self.sock.send(pkt) {
            Ok(_) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {
                Err(Stop::Quiet("the client went away (ICMP port unreachable)".into()))
            }
            Err(e) => Err(Stop::Quiet(format!("send: {e}"))),
        }
    }

    /// Wait up to one timeout for an ACK of a block in `lo..=hi` (matched by its low 16 bits,
    /// the highest first). Any other ACK (a duplicate of one already acted on) and stray
    /// packets are ignored and do not extend the wait: only a timeout makes the caller resend.
    fn wait(&mut self, lo: u64, hi: u64) -> Result<Option<u64>, Stop> {
        let until = Instant::now() + self.timeout;
        let mut shortened = false;
        let got = loop {
            match self.sock.recv(&mut self.rbuf) {
                Ok(n) => match parse(&self.rbuf[..n]) {
                    Ok(Packet::Ack { block }) => {
                        if let Some(idx) = (lo..=hi).rev().find(|i| *i as u16 == block) {
                            break Ok(Some(idx));
                        }
                    }
                    Ok(Packet::Error { code, msg }) => {
                        break Err(Stop::Quiet(format!(
                            "the client ended it (error {code}: {msg}; UEFI asks for tsize this way)"
                        )))
                    }
                    _ => {}
                },
                Err(e) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut) => break Ok(None),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {
                    break Err(Stop::Quiet("the client went away (ICMP port unreachable)".into()))
                }
                Err(e) => break Err(Stop::Quiet(format!("receive: {e}"))),
            }
            // An ignored packet: wait only for what is left of this timeout.
            self.ignored += 1;
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break Ok(None);
            }
            shortened = true;
            if let Err(e) = self.sock.set_read_timeout(Some(left)) {
                break Err(Stop::Quiet(format!("socket: {e}")));
            }
        };
        if shortened {
            let _ = self.sock.set_read_timeout(Some(self.timeout));
        }
        got
    }
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

#[cfg(test)]
mod tests {
    #[test]
    fn the_files_shim_and_grub_probe_for_are_optional_and_the_chain_is_not() {
        for f in [
            "sb/revocations_sku.efi",
            "sb/revocations_sbat.efi",
            "sb/shim_certificate_0.efi",
            "/grub/x86_64-efi/command.lst",
            "/grub/arm64-efi/fs.lst",
        ] {
            assert!(super::optional_probe(f), "{f}");
        }
        for f in ["sb/shimx64.efi", "sb/grubx64.efi", "/sb/oa.efi", "/grub/grub.cfg", "rootfs.squashfs", "x.lst"] {
            assert!(!super::optional_probe(f), "{f}");
        }
    }

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
    fn netascii_conversion() {
        assert_eq!(to_netascii(b"a\nb\rc\r\n"), b"a\r\nb\r\0c\r\0\r\n");
        assert_eq!(to_netascii(b""), b"");
    }

    #[test]
    fn slots_count_in_all_and_per_address() {
        let s = Arc::new(Slots::default());
        let a: IpAddr = "127.0.0.2".parse().unwrap();
        let b: IpAddr = "127.0.0.3".parse().unwrap();
        let a1 = s.take(a, 3, 2).unwrap();
        let _a2 = s.take(a, 3, 2).unwrap();
        assert_eq!(s.take(a, 3, 2).err(), Some(Busy::Client(2)));
        let _b1 = s.take(b, 3, 2).unwrap();
        assert_eq!(s.take(b, 3, 2).err(), Some(Busy::All(3)));
        drop(a1);
        assert_eq!((s.held(), s.held_by(a)), (2, 1));
        let _b2 = s.take(b, 3, 2).unwrap();
        assert_eq!(s.held_by(b), 2);
    }

    #[test]
    fn io_errors_get_honest_codes() {
        assert_eq!(io_code(&io::Error::from(io::ErrorKind::NotFound)), code::NOT_FOUND);
        assert_eq!(io_code(&io::Error::from(io::ErrorKind::PermissionDenied)), code::ACCESS);
        assert_eq!(io_code(&io::Error::from_raw_os_error(libc::EMFILE)), code::NOT_DEFINED);
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
