//! HTTP/1.1: GET and HEAD of the served root, the boot files and the generated iPXE scripts;
//! single byte ranges (206/416); keep-alive; read-only (other methods get 405); every path
//! confined to the root by [`crate::fsroot`] after percent-decoding; one access log line per
//! request.
//!
//! A small server of its own on tokio + `httparse`, not hyper: hyper's per-request cost
//! (header maps, boxed bodies, a copy of every chunk into `Bytes`) held 4 KiB files to 0.23 x
//! nginx, and it has no sendfile path for bodies. What is served here is few, static and
//! read-only, so the whole protocol needed is small:
//! - bodies of files larger than [`Limits::http_memory_file`] go with sendfile(2) from the page
//!   cache to the socket ([`send_file`]); smaller files are kept in memory ([`Cache`], keyed by
//!   path, mtime, size and inode, bounded by [`Limits::http_memory_total`]) and go out with
//!   their head in one write;
//! - resolved paths are remembered for [`RESOLVED_FOR`] (the checks of [`Root::resolve`] run
//!   at most once a second per path, not on every request);
//! - bounds against slow or hostile clients (issue 14): the head must arrive within
//!   `http_header_timeout`, an idle keep-alive connection is closed after `http_idle_timeout`
//!   (also the limit for a client that stops reading), at most `http_connections` connections
//!   with at most `http_per_client` from one address (over the cap: 503 and close, with a
//!   rate-limited log line); when accept() runs out of file descriptors the server logs it
//!   once, waits 100 ms and goes on.
//!
//! `/config/<mac>` (a per-machine secret) is answered only to the address this server's DHCP
//! leased to that MAC, or without our DHCP leases (proxy mode, no DHCP) to the address the
//! kernel's neighbour table maps to that MAC ([`crate::neigh`]); anyone else gets 403.

use std::collections::HashMap;
use std::io::{self, IoSlice};
use std::net::{IpAddr, SocketAddr};
use std::os::fd::AsRawFd;
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use tokio::io::{AsyncReadExt, AsyncWriteExt, Interest};
use tokio::net::TcpStream;

use crate::boot::{self, Override};
use crate::clients::Clients;
use crate::config::{names, Config, Limits, Mode};
use crate::fsroot::{Refused, Root};
use crate::mac::Mac;

/// A request head larger than this is refused (400).
const MAX_HEAD: usize = 16 << 10;
const MAX_HEADERS: usize = 32;
/// How long a resolved path is trusted before [`Root::resolve`] checks it again.
pub const RESOLVED_FOR: Duration = Duration::from_secs(1);
/// Bound of the resolved-path table (forgotten whole when full).
const MAX_RESOLVED: usize = 4096;
/// At most this many over-cap connections are being answered 503 at once; beyond that they
/// are closed without an answer (each answer holds a descriptor for up to a second).
pub const MAX_REFUSING: usize = 256;

/// A byte range request, resolved against the file size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Range {
    /// No (usable) Range header: the whole file.
    Whole,
    /// Bytes `start..=end`.
    Part(u64, u64),
    /// Cannot be satisfied (416).
    Unsatisfiable,
}

/// Parse a `Range` header for a file of `size` bytes. Only one range is served; a list of
/// ranges or a syntax error means the whole file (RFC 9110 lets a server ignore Range).
pub fn parse_range(h: Option<&str>, size: u64) -> Range {
    let Some(h) = h else { return Range::Whole };
    let Some(spec) = h.trim().strip_prefix("bytes=") else { return Range::Whole };
    if spec.contains(',') {
        return Range::Whole;
    }
    let Some((a, b)) = spec.trim().split_once('-') else { return Range::Whole };
    let (a, b) = (a.trim(), b.trim());
    if a.is_empty() {
        // Suffix: the last N bytes.
        let Ok(n) = b.parse::<u64>() else { return Range::Whole };
        if n == 0 || size == 0 {
            return Range::Unsatisfiable;
        }
        return Range::Part(size.saturating_sub(n), size - 1);
    }
    let Ok(start) = a.parse::<u64>() else { return Range::Whole };
    let end = if b.is_empty() {
        size.saturating_sub(1)
    } else {
        match b.parse::<u64>() {
            Ok(e) if e >= start => e.min(size.saturating_sub(1)),
            _ => return Range::Whole,
        }
    };
    if start >= size {
        return Range::Unsatisfiable;
    }
    Range::Part(start, end)
}

pub struct Http {
    pub cfg: Arc<Config>,
    pub root: Root,
    pub clients: Clients,
}

/// What a request path names.
#[derive(Debug, PartialEq, Eq)]
enum Target {
    Script(Option<Mac>),
    File(PathBuf),
    Generated(String),
}

/// A refusal: status and the reason for the log line.
type Refusal = (u16, String);

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        206 => "Partial Content",
        400 => "Bad Request",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        416 => "Range Not Satisfiable",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        _ => "",
    }
}

impl Http {
    /// Decode and route a request path. `peer` is who asks (for `/config/<mac>`).
    fn route(&self, raw_path: &str, peer: IpAddr) -> Result<Target, Refusal> {
        let decoded = percent_encoding::percent_decode_str(raw_path)
            .decode_utf8()
            .map_err(|_| (400, "path is not UTF-8 after percent-decoding".to_string()))?;
        let refused = |e: Refused| match e {
            Refused::NotFound(_) | Refused::NotAFile(_) | Refused::Empty(_) => (404, e.to_string()),
            _ => (403, e.to_string()),
        };
        // Clean first: `..` and friends are refused before any routing or file access.
        let clean = Root::clean(&decoded).map_err(refused)?;
        let clean = clean.to_string_lossy();
        if clean == names::SCRIPT {
            return Ok(Target::Script(None));
        }
        if let Some(m) = clean.strip_prefix("boot/").and_then(|r| r.strip_suffix(".ipxe")) {
            let mac = m.parse::<Mac>().map_err(|e| (404, e))?;
            return Ok(Target::Script(Some(mac)));
        }
        if let Some(m) = clean.strip_prefix("config/") {
            let (m, sig) = match m.strip_suffix(oa_contract::signature::SUFFIX) {
                Some(m) => (m, true),
                None => (m, false),
            };
            let mac = m.parse::<Mac>().map_err(|e| (404, e))?;
            // Who may ask is settled before anything about the MAC's config is looked at.
            self.may_have_config(mac, peer)?;
            let ov = self.override_of(mac)?;
            let p = ov.and_then(|o| o.config).ok_or((404, format!("no config for {mac}")))?;
            let text = std::fs::read_to_string(&p).map_err(|e| (404, format!("{}: {e}", p.display())))?;
            if !sig {
                return Ok(Target::Generated(text));
            }
            return self.config_signature(mac, &p, &text).map(Target::Generated);
        }
        if let Some(rest) = clean.strip_prefix("m/") {
            let (m, file) = rest.split_once('/').ok_or((404, "no file named".to_string()))?;
            let mac = m.parse::<Mac>().map_err(|e| (404, e))?;
            let out =
                self.override_of(mac)?.and_then(|o| o.output).ok_or((404, format!("no output override for {mac}")))?;
            let root = Root::new(&out).map_err(|e| (404, format!("{}: {e}", out.display())))?;
            return root.resolve(file).map(Target::File).map_err(refused);
        }
        if let Some(p) = self.cfg.boot_file(&clean) {
            return Ok(Target::File(p.to_path_buf()));
        }
        self.root.resolve(&clean).map(Target::File).map_err(refused)
    }

    /// `Ok` when `peer` is the machine `mac`: the address our DHCP leased to it, or (when this
    /// server leases nothing) the address the kernel's neighbour table gives it.
    fn may_have_config(&self, mac: Mac, peer: IpAddr) -> Result<(), Refusal> {
        let v4 = match peer {
            IpAddr::V4(a) => Some(a),
            IpAddr::V6(a) => a.to_ipv4_mapped(),
        };
        let Some(v4) = v4 else { return Err((403, format!("config of {mac}: not asked over IPv4"))) };
        let leased = self.clients.leased_to(mac);
        if leased == Some(v4) {
            return Ok(());
        }
        let neighbour = match self.cfg.mode {
            Mode::Dhcp(_) => None,
            Mode::Proxy | Mode::Off => match crate::neigh::mac_of(v4) {
                Ok(m) => m,
                Err(e) => return Err((403, format!("config of {mac}: reading the neighbour table: {e}"))),
            },
        };
        if neighbour == Some(mac) {
            return Ok(());
        }
        Err((
            403,
            format!(
                "config of {mac} refused to {v4}: {}",
                match (&self.cfg.mode, leased, neighbour) {
                    (Mode::Dhcp(_), Some(ip), _) => format!("leased to {ip}"),
                    (Mode::Dhcp(_), None, _) => "no lease for that MAC".to_string(),
                    (_, _, Some(other)) => format!("the neighbour table gives {other} for that address"),
                    (_, _, None) => "not in the neighbour table".to_string(),
                }
            ),
        ))
    }

    /// `/config/<mac>.minisig`: the signature of the configuration `text` (read from `path`)
    /// for the machine `mac` alone ([`oa_contract::signature`]'s `mac:` field). Signed on each
    /// request: ed25519 is microseconds, and an edited file is never served with a stale
    /// signature.
    fn config_signature(&self, mac: Mac, path: &std::path::Path, text: &str) -> Result<String, Refusal> {
        let key = self
            .cfg
            .sign_key
            .as_ref()
            .ok_or((404, format!("no signature for {mac}'s config: oa serve was not given --sign-key")))?;
        let file = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let comment = oa_contract::signature::trusted_comment_now(&file, Some(&mac.to_string()));
        key.sign(text.as_bytes(), &comment).map_err(|e| (500, e.to_string()))
    }

    fn override_of(&self, mac: Mac) -> Result<Option<Override>, Refusal> {
        match &self.cfg.machines {
            None => Ok(None),
            Some(d) => Override::load(d, mac).map_err(|e| (500, e)),
        }
    }
}

// ---------------------------------------------------------------------------------------
// Shared state of one server: connection counts, caches, log rate limits.

/// Connections held, all together and per address.
struct Conns {
    total: AtomicUsize,
    per: Mutex<HashMap<IpAddr, usize>>,
    refusing: AtomicUsize,
}

/// One held connection; counted down when dropped.
struct Slot {
    shared: Arc<Shared>,
    ip: IpAddr,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let c = &self.shared.conns;
        c.total.fetch_sub(1, Ordering::Relaxed);
        let mut per = c.per.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = per.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                per.remove(&self.ip);
            }
        }
    }
}

/// At most one line a second for a kind of event, with the count of those left out.
struct Every {
    last: AtomicU64,
    skipped: AtomicU64,
}

impl Every {
    const fn new() -> Every {
        Every { last: AtomicU64::new(0), skipped: AtomicU64::new(0) }
    }
    /// `Some(n)` when a line may be written now (`n` lines were left out since the last).
    fn ready(&self, start: Instant) -> Option<u64> {
        let now = start.elapsed().as_secs() + 1;
        let last = self.last.load(Ordering::Relaxed);
        if now > last && self.last.compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed).is_ok() {
            return Some(self.skipped.swap(0, Ordering::Relaxed));
        }
        self.skipped.fetch_add(1, Ordering::Relaxed);
        None
    }
}

/// A small file held in memory, valid while the file keeps its size, mtime and inode.
struct Cached {
    size: u64,
    mtime: SystemTime,
    ino: u64,
    data: Arc<[u8]>,
}

/// Small files in memory, bounded in total bytes.
struct Cache {
    files: HashMap<PathBuf, Cached>,
    bytes: u64,
}

impl Cache {
    /// Keep `e` for `path`, dropping other entries (any) until all fit in `total` bytes.
    /// Files are few; this is rare.
    fn insert(&mut self, path: PathBuf, e: Cached, total: u64) {
        if let Some(old) = self.files.remove(&path) {
            self.bytes -= old.size;
        }
        if e.size > total {
            return;
        }
        while self.bytes + e.size > total {
            let Some(k) = self.files.keys().next().cloned() else { break };
            if let Some(old) = self.files.remove(&k) {
                self.bytes -= old.size;
            }
        }
        self.bytes += e.size;
        self.files.insert(path, e);
    }
}

struct Shared {
    h: Arc<Http>,
    limits: Limits,
    conns: Conns,
    cache: Mutex<Cache>,
    /// Raw request path -> resolved file, with when it was checked.
    resolved: Mutex<HashMap<String, (PathBuf, Instant)>>,
    start: Instant,
    over_cap: Every,
    accept_err: Every,
    out_of_fds: AtomicBool,
}

impl Shared {
    /// A slot for a connection from `ip`, or which cap it hits.
    fn admit(self: &Arc<Self>, ip: IpAddr) -> Result<Slot, &'static str> {
        let c = &self.conns;
        let mut per = c.per.lock().unwrap_or_else(|e| e.into_inner());
        if c.total.load(Ordering::Relaxed) >= self.limits.http_connections {
            return Err("connections of all clients");
        }
        let n = per.entry(ip).or_insert(0);
        if *n >= self.limits.http_per_client {
            return Err("connections from this address");
        }
        *n += 1;
        c.total.fetch_add(1, Ordering::Relaxed);
        Ok(Slot { shared: self.clone(), ip })
    }

    fn cached(&self, path: &std::path::Path, md: &std::fs::Metadata) -> Option<Arc<[u8]>> {
        let c = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        let e = c.files.get(path)?;
        (e.size == md.len() && md.modified().ok() == Some(e.mtime) && e.ino == md.ino()).then(|| e.data.clone())
    }

    fn remember(&self, path: PathBuf, md: &std::fs::Metadata, data: Arc<[u8]>) {
        let Ok(mtime) = md.modified() else { return };
        let entry = Cached { size: data.len() as u64, mtime, ino: md.ino(), data };
        self.cache.lock().unwrap_or_else(|e| e.into_inner()).insert(path, entry, self.limits.http_memory_total);
    }

    /// The resolved file of `raw` if it was checked less than [`RESOLVED_FOR`] ago.
    fn resolved(&self, raw: &str) -> Option<PathBuf> {
        let r = self.resolved.lock().unwrap_or_else(|e| e.into_inner());
        r.get(raw).filter(|(_, at)| at.elapsed() < RESOLVED_FOR).map(|(p, _)| p.clone())
    }

    fn resolved_is(&self, raw: &str, p: &std::path::Path) {
        let mut r = self.resolved.lock().unwrap_or_else(|e| e.into_inner());
        if r.len() >= MAX_RESOLVED {
            r.clear();
        }
        r.insert(raw.to_string(), (p.to_path_buf(), Instant::now()));
    }
}

// ---------------------------------------------------------------------------------------
// Accepting.

fn out_of_fds(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::EMFILE) | Some(libc::ENFILE))
}

/// Accept connections until the task is dropped.
pub async fn serve(listener: tokio::net::TcpListener, h: Arc<Http>) {
    let limits = h.cfg.limits.clone();
    let shared = Arc::new(Shared {
        h,
        limits,
        conns: Conns { total: AtomicUsize::new(0), per: Mutex::new(HashMap::new()), refusing: AtomicUsize::new(0) },
        cache: Mutex::new(Cache { files: HashMap::new(), bytes: 0 }),
        resolved: Mutex::new(HashMap::new()),
        start: Instant::now(),
        over_cap: Every::new(),
        accept_err: Every::new(),
        out_of_fds: AtomicBool::new(false),
    });
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(x) => x,
            Err(e) if out_of_fds(&e) => {
                // The connection stays in the listen queue; try again after a pause. Logged
                // once per episode (not once per try).
                if !shared.out_of_fds.swap(true, Ordering::Relaxed) {
                    tracing::error!(target: "http", "accept: {e}: no file descriptor left; new connections wait (retrying every 100 ms)");
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
            Err(e) => {
                if let Some(n) = shared.accept_err.ready(shared.start) {
                    tracing::warn!(target: "http", "accept: {e}{}", skipped(n));
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        if shared.out_of_fds.swap(false, Ordering::Relaxed) {
            tracing::info!(target: "http", "accept works again (file descriptors available)");
        }
        let _ = stream.set_nodelay(true);
        match shared.admit(peer.ip()) {
            Ok(slot) => {
                tokio::spawn(connection(stream, peer, slot));
            }
            Err(cap) => {
                if let Some(n) = shared.over_cap.ready(shared.start) {
                    tracing::warn!(
                        target: "http",
                        "{} ({}): 503, over the cap of {cap} ({} of all, {} per address){}",
                        shared.h.clients.name(peer.ip()),
                        peer.ip(),
                        shared.limits.http_connections,
                        shared.limits.http_per_client,
                        skipped(n)
                    );
                }
                refuse(stream, &shared);
            }
        }
    }
}

fn skipped(n: u64) -> String {
    if n == 0 {
        String::new()
    } else {
        format!(" ({n} more like it in the last second not logged)")
    }
}

/// Answer 503 and close, without waiting on the client for more than a second; when too many
/// are being answered already, just close.
fn refuse(stream: TcpStream, shared: &Arc<Shared>) {
    const BUSY: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: text/plain\r\ncontent-length: 12\r\nretry-after: 1\r\nconnection: close\r\n\r\nserver busy\n";
    let refusing = &shared.conns.refusing;
    if refusing.fetch_add(1, Ordering::Relaxed) >= MAX_REFUSING {
        refusing.fetch_sub(1, Ordering::Relaxed);
        return;
    }
    let shared = shared.clone();
    tokio::spawn(async move {
        let mut stream = stream;
        let _ = tokio::time::timeout(Duration::from_secs(1), async {
            stream.write_all(BUSY).await?;
            stream.shutdown().await?;
            // Read what the client sent (closing with unread data would reset the connection
            // and could lose the 503 before the client reads it).
            let mut sink = [0u8; 2048];
            for _ in 0..8 {
                if stream.read(&mut sink).await? == 0 {
                    break;
                }
            }
            Ok::<_, io::Error>(())
        })
        .await;
        shared.conns.refusing.fetch_sub(1, Ordering::Relaxed);
    });
}

// ---------------------------------------------------------------------------------------
// One connection.

#[derive(Clone, Copy, PartialEq, Eq)]
enum Method {
    Get,
    Head,
    Other,
}

/// What the server takes from a request head.
struct Request {
    method: Method,
    method_name: String,
    path: String,
    range: Option<String>,
    keep_alive: bool,
    /// A body follows (Content-Length > 0 or Transfer-Encoding): not read, so the connection
    /// closes after the answer.
    has_body: bool,
}

enum Parsed {
    Done(Request, usize),
    Partial,
    Bad(String),
}

fn parse(buf: &[u8]) -> Parsed {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    let n = match req.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return Parsed::Partial,
        Err(e) => return Parsed::Bad(format!("malformed request: {e}")),
    };
    let method_name = req.method.unwrap_or("").to_string();
    let method = match req.method {
        Some("GET") => Method::Get,
        Some("HEAD") => Method::Head,
        _ => Method::Other,
    };
    let target = req.path.unwrap_or("/");
    // Absolute form (`http://host/path`) is allowed by RFC 9112; take the path of it.
    let target = match target.strip_prefix("http://") {
        Some(rest) => rest.find('/').map(|i| &rest[i..]).unwrap_or("/"),
        None => target,
    };
    let path = target.split(['?', '#']).next().unwrap_or("/").to_string();
    let http10 = req.version == Some(0);
    let mut keep_alive = !http10;
    let mut range = None;
    let mut has_body = false;
    for h in req.headers.iter() {
        let v = || std::str::from_utf8(h.value).unwrap_or("").trim();
        if h.name.eq_ignore_ascii_case("connection") {
            for t in v().split(',').map(str::trim) {
                if t.eq_ignore_ascii_case("close") {
                    keep_alive = false;
                } else if t.eq_ignore_ascii_case("keep-alive") && http10 {
                    keep_alive = true;
                }
            }
        } else if h.name.eq_ignore_ascii_case("range") {
            range = Some(v().to_string());
        } else if h.name.eq_ignore_ascii_case("content-length") {
            has_body |= v() != "0";
        } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
            has_body = true;
        }
    }
    Parsed::Done(Request { method, method_name, path, range, keep_alive, has_body }, n)
}

/// The answer to one request, before it is written.
enum Body {
    Text(String),
    Memory(Arc<[u8]>, usize, usize),
    File(std::fs::File, u64, u64),
}

struct Answer {
    status: u16,
    content_type: &'static str,
    len: u64,
    /// `bytes a-b/size` for 206, `bytes */size` for 416.
    content_range: Option<String>,
    allow: bool,
    body: Body,
    note: Option<String>,
}

impl Answer {
    fn refusal(status: u16, why: String) -> Answer {
        let text = format!("{status} {}\n", reason(status));
        Answer {
            status,
            content_type: "text/plain",
            len: text.len() as u64,
            content_range: None,
            allow: status == 405,
            body: Body::Text(text),
            note: Some(why),
        }
    }
}

async fn connection(mut stream: TcpStream, peer: SocketAddr, slot: Slot) {
    let shared = slot.shared.clone();
    let limits = &shared.limits;
    let mut buf: Vec<u8> = Vec::with_capacity(4096);
    let mut out: Vec<u8> = Vec::with_capacity(8192);
    // The first head must be complete within the header timeout of the connection.
    let mut deadline = tokio::time::Instant::now() + limits.http_header_timeout;
    let mut fresh = true;
    loop {
        // Read until one whole head is in `buf`.
        let req = loop {
            if !buf.is_empty() {
                match parse(&buf) {
                    Parsed::Done(r, n) => {
                        buf.drain(..n);
                        break r;
                    }
                    Parsed::Bad(why) => {
                        let a = Answer::refusal(400, why);
                        log(&shared, peer, "-", "-", None, &a, Instant::now());
                        let _ = write_answer(&mut stream, &mut out, &a, Method::Get, false, limits).await;
                        return;
                    }
                    Parsed::Partial if buf.len() >= MAX_HEAD => {
                        let a = Answer::refusal(400, format!("request head longer than {MAX_HEAD} bytes"));
                        log(&shared, peer, "-", "-", None, &a, Instant::now());
                        let _ = write_answer(&mut stream, &mut out, &a, Method::Get, false, limits).await;
                        return;
                    }
                    Parsed::Partial => {}
                }
            }
            let was_empty = buf.is_empty();
            match tokio::time::timeout_at(deadline, stream.read_buf(&mut buf)).await {
                Ok(Ok(0)) => {
                    if !was_empty {
                        tracing::debug!(target: "http", "{peer}: closed with half a request");
                    }
                    return;
                }
                Ok(Ok(_)) => {
                    if was_empty && !fresh {
                        // A keep-alive connection starts its next request: the head must now
                        // arrive within the header timeout.
                        deadline = tokio::time::Instant::now() + limits.http_header_timeout;
                    }
                }
                Ok(Err(e)) => {
                    tracing::debug!(target: "http", "{peer}: read: {e}");
                    return;
                }
                Err(_) => {
                    if was_empty && !fresh {
                        tracing::debug!(target: "http", "{peer}: idle for {:?}, closed", limits.http_idle_timeout);
                    } else {
                        tracing::info!(
                            target: "http",
                            "{} ({}): no complete request head within {:?} ({} bytes), closed",
                            shared.h.clients.name(peer.ip()),
                            peer.ip(),
                            limits.http_header_timeout,
                            buf.len()
                        );
                    }
                    return;
                }
            }
        };
        let t = Instant::now();
        let keep = req.keep_alive && !req.has_body && req.method != Method::Other;
        let answer = respond(&shared, &req, peer.ip());
        log(&shared, peer, &req.method_name, &req.path, req.range.as_deref(), &answer, t);
        if let Err(e) = write_answer(&mut stream, &mut out, &answer, req.method, keep, limits).await {
            tracing::info!(
                target: "http",
                "{} ({}): \"{} {}\": sending stopped: {e}",
                shared.h.clients.name(peer.ip()),
                peer.ip(),
                req.method_name,
                req.path
            );
            return;
        }
        if !keep {
            let _ = stream.shutdown().await;
            return;
        }
        fresh = false;
        // Wait for the next request for at most the idle timeout (or the header timeout, if
        // part of it is already here: pipelining).
        deadline = tokio::time::Instant::now()
            + if buf.is_empty() { limits.http_idle_timeout } else { limits.http_header_timeout };
    }
}

fn log(shared: &Shared, peer: SocketAddr, method: &str, path: &str, range: Option<&str>, a: &Answer, t: Instant) {
    tracing::info!(
        target: "http",
        "{} ({}) \"{method} {path}\" {} {} bytes{}{} {:.1} ms",
        shared.h.clients.name(peer.ip()),
        peer.ip(),
        a.status,
        a.len,
        range.map(|r| format!(" range={r}")).unwrap_or_default(),
        a.note.as_ref().map(|n| format!(" ({n})")).unwrap_or_default(),
        t.elapsed().as_secs_f64() * 1000.0
    );
}

fn respond(shared: &Shared, req: &Request, peer: IpAddr) -> Answer {
    if req.method == Method::Other {
        return Answer::refusal(405, "read-only server".into());
    }
    let h = &shared.h;
    let path = match shared.resolved(&req.path) {
        Some(p) => p,
        None => match h.route(&req.path, peer) {
            Ok(Target::File(p)) => {
                shared.resolved_is(&req.path, &p);
                p
            }
            Ok(Target::Script(mac)) => {
                let ov = match mac.map(|m| h.override_of(m)).transpose() {
                    Ok(o) => o.flatten(),
                    Err((s, why)) => return Answer::refusal(s, why),
                };
                return text(boot::script(&h.cfg, mac, ov.as_ref()));
            }
            Ok(Target::Generated(s)) => return text(s),
            Err((s, why)) => return Answer::refusal(s, why),
        },
    };
    // Files: from memory when small, else sendfile from an open file.
    let md = match std::fs::metadata(&path) {
        Ok(m) if m.is_file() => m,
        Ok(_) => return Answer::refusal(404, format!("{}: not a regular file", path.display())),
        Err(e) => return Answer::refusal(404, format!("{}: {e}", path.display())),
    };
    let small = md.len() <= shared.limits.http_memory_file;
    if small {
        if let Some(data) = shared.cached(&path, &md) {
            return file_answer(Body::Memory(data, 0, 0), md.len(), req.range.as_deref());
        }
    }
    // Opening and reading page-cache files is done on the worker itself: a thread hop per
    // request (tokio::fs) costs more than the syscalls.
    let file = match std::fs::File::open(&path) {
        Ok(f) => f,
        Err(e) => return Answer::refusal(404, format!("{}: {e}", path.display())),
    };
    let md = match file.metadata() {
        Ok(m) => m,
        Err(e) => return Answer::refusal(500, format!("{}: {e}", path.display())),
    };
    if md.len() <= shared.limits.http_memory_file {
        let mut data = Vec::with_capacity(md.len() as usize);
        use std::io::Read;
        if let Err(e) = (&file).take(md.len()).read_to_end(&mut data) {
            return Answer::refusal(500, format!("{}: {e}", path.display()));
        }
        if data.len() as u64 != md.len() {
            return Answer::refusal(500, format!("{}: changed while being read", path.display()));
        }
        let data: Arc<[u8]> = data.into();
        shared.remember(path, &md, data.clone());
        return file_answer(Body::Memory(data, 0, 0), md.len(), req.range.as_deref());
    }
    file_answer(Body::File(file, 0, 0), md.len(), req.range.as_deref())
}

fn text(s: String) -> Answer {
    Answer {
        status: 200,
        content_type: "text/plain",
        len: s.len() as u64,
        content_range: None,
        allow: false,
        body: Body::Text(s),
        note: None,
    }
}

/// The answer for a file of `size` bytes (`body` with its range filled in here).
fn file_answer(body: Body, size: u64, range: Option<&str>) -> Answer {
    let (status, start, len) = match parse_range(range, size) {
        Range::Whole => (200, 0, size),
        Range::Part(a, b) => (206, a, b - a + 1),
        Range::Unsatisfiable => {
            let mut a = Answer::refusal(416, format!("file has {size} bytes"));
            a.content_range = Some(format!("bytes */{size}"));
            return a;
        }
    };
    let body = match body {
        Body::Memory(d, _, _) => Body::Memory(d, start as usize, len as usize),
        Body::File(f, _, _) => Body::File(f, start, len),
        other => other,
    };
    Answer {
        status,
        content_type: "application/octet-stream",
        len,
        content_range: (status == 206).then(|| format!("bytes {}-{}/{size}", start, start + len - 1)),
        allow: false,
        body,
        note: None,
    }
}

/// Write the head (and a body held in memory) in one write; a file body with sendfile.
async fn write_answer(
    stream: &mut TcpStream,
    out: &mut Vec<u8>,
    a: &Answer,
    method: Method,
    keep: bool,
    limits: &Limits,
) -> io::Result<()> {
    use std::io::Write;
    out.clear();
    write!(
        out,
        "HTTP/1.1 {} {}\r\ncontent-type: {}\r\ncontent-length: {}\r\n",
        a.status,
        reason(a.status),
        a.content_type,
        a.len
    )?;
    if matches!(a.body, Body::Memory(..) | Body::File(..)) {
        out.extend_from_slice(b"accept-ranges: bytes\r\n");
    }
    if let Some(r) = &a.content_range {
        write!(out, "content-range: {r}\r\n")?;
    }
    if a.allow {
        out.extend_from_slice(b"allow: GET, HEAD\r\n");
    }
    out.extend_from_slice(if keep { b"\r\n" } else { b"connection: close\r\n\r\n" });
    let quiet = limits.http_idle_timeout;
    let body: &[u8] = match (&a.body, method) {
        (_, Method::Head) => &[],
        (Body::Text(s), _) => s.as_bytes(),
        (Body::Memory(d, start, len), _) => &d[*start..*start + *len],
        (Body::File(file, start, len), _) => {
            // Head and the start of the body in as few packets as possible: cork, write,
            // sendfile, uncork.
            let fd = stream.as_raw_fd();
            cork(fd, true);
            let r = async {
                with_progress(quiet, stream.write_all(out)).await?;
                send_file(stream, file, *start, *len, quiet).await
            }
            .await;
            cork(fd, false);
            return r;
        }
    };
    if body.len() <= 64 << 10 {
        out.extend_from_slice(body);
        return with_progress(quiet, stream.write_all(out)).await;
    }
    write_two(stream, out, body, quiet).await
}

async fn with_progress<F: std::future::Future<Output = io::Result<()>>>(quiet: Duration, f: F) -> io::Result<()> {
    tokio::time::timeout(quiet, f)
        .await
        .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, format!("client took nothing for {quiet:?}")))?
}

/// Head and a large in-memory body with writev, without copying the body.
async fn write_two(stream: &mut TcpStream, head: &[u8], body: &[u8], quiet: Duration) -> io::Result<()> {
    let (mut h, mut b) = (0usize, 0usize);
    while h < head.len() || b < body.len() {
        let bufs = [IoSlice::new(&head[h..]), IoSlice::new(&body[b..])];
        let n = tokio::time::timeout(quiet, stream.write_vectored(&bufs))
            .await
            .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, format!("client took nothing for {quiet:?}")))??;
        if n == 0 {
            return Err(io::ErrorKind::WriteZero.into());
        }
        let from_head = n.min(head.len() - h);
        h += from_head;
        b += n - from_head;
    }
    Ok(())
}

fn cork(fd: std::os::fd::RawFd, on: bool) {
    let v: libc::c_int = on.into();
    // SAFETY: setsockopt reads an int from a valid pointer; fd is the stream's open socket.
    unsafe {
        libc::setsockopt(
            fd,
            libc::IPPROTO_TCP,
            libc::TCP_CORK,
            (&v as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        );
    }
}

/// `len` bytes of `file` from `start` to the socket with sendfile(2): the kernel copies from
/// the page cache, the server never touches the data. Waits on the socket's write readiness
/// (tokio's), at most `quiet` for each bit of progress.
pub async fn send_file(
    stream: &TcpStream,
    file: &std::fs::File,
    start: u64,
    len: u64,
    quiet: Duration,
) -> io::Result<()> {
    let mut off = libc::off_t::try_from(start).map_err(|_| io::Error::other("offset too large"))?;
    let mut left = len;
    while left > 0 {
        with_progress(quiet, stream.writable()).await?;
        // At most 8 MiB a call, so one fast client does not hold a worker for long.
        let want = left.min(8 << 20) as usize;
        let r = stream.try_io(Interest::WRITABLE, || {
            // SAFETY: both descriptors are open for the duration of the call (borrowed), and
            // `off` is a valid off_t the kernel updates.
            let n = unsafe { libc::sendfile(stream.as_raw_fd(), file.as_raw_fd(), &mut off, want) };
            if n < 0 {
                Err(io::Error::last_os_error())
            } else {
                Ok(n as usize)
            }
        });
        match r {
            Ok(0) => return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "file shrank while being sent")),
            Ok(n) => left -= n as u64,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges() {
        assert_eq!(parse_range(None, 100), Range::Whole);
        assert_eq!(parse_range(Some("bytes=0-9"), 100), Range::Part(0, 9));
        assert_eq!(parse_range(Some("bytes=90-"), 100), Range::Part(90, 99));
        assert_eq!(parse_range(Some("bytes=90-1000"), 100), Range::Part(90, 99));
        assert_eq!(parse_range(Some("bytes=-10"), 100), Range::Part(90, 99));
        assert_eq!(parse_range(Some("bytes=-1000"), 100), Range::Part(0, 99));
        assert_eq!(parse_range(Some("bytes=100-"), 100), Range::Unsatisfiable);
        assert_eq!(parse_range(Some("bytes=-0"), 100), Range::Unsatisfiable);
        assert_eq!(parse_range(Some("bytes=5-2"), 100), Range::Whole);
        assert_eq!(parse_range(Some("bytes=0-1,5-6"), 100), Range::Whole);
        assert_eq!(parse_range(Some("items=0-1"), 100), Range::Whole);
        assert_eq!(parse_range(Some("bytes=x-1"), 100), Range::Whole);
    }

    #[test]
    fn the_memory_copies_stay_within_their_total() {
        let mut c = Cache { files: HashMap::new(), bytes: 0 };
        let e = |n: usize| Cached { size: n as u64, mtime: SystemTime::UNIX_EPOCH, ino: 1, data: vec![0u8; n].into() };
        for i in 0..100 {
            c.insert(PathBuf::from(format!("f{i}")), e(300), 1000);
            assert!(c.bytes <= 1000, "{} bytes held", c.bytes);
            assert_eq!(c.bytes, c.files.values().map(|f| f.size).sum::<u64>());
        }
        assert_eq!(c.files.len(), 3);
        c.insert(PathBuf::from("f99"), e(100), 1000);
        assert_eq!(c.bytes, c.files.values().map(|f| f.size).sum::<u64>(), "replacing an entry counts once");
        c.insert(PathBuf::from("huge"), e(2000), 1000);
        assert!(!c.files.contains_key(&PathBuf::from("huge")), "larger than the total: not kept");
    }

    #[test]
    fn heads() {
        let head = b"GET /a%20b?x=1 HTTP/1.1\r\nHost: x\r\nRange: bytes=1-2\r\n\r\n";
        let Parsed::Done(r, n) = parse(&[&head[..], b"GET"].concat()) else { panic!("complete head") };
        assert_eq!(
            (r.path.as_str(), r.range.as_deref(), r.keep_alive, r.has_body),
            ("/a%20b", Some("bytes=1-2"), true, false)
        );
        assert_eq!(n, head.len(), "the next request's bytes stay");
        let Parsed::Done(r, _) = parse(b"GET http://h:80/x HTTP/1.0\r\n\r\n") else { panic!() };
        assert_eq!((r.path.as_str(), r.keep_alive), ("/x", false));
        let Parsed::Done(r, _) = parse(b"GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n") else { panic!() };
        assert!(r.keep_alive);
        let Parsed::Done(r, _) = parse(b"GET / HTTP/1.1\r\nConnection: close\r\n\r\n") else { panic!() };
        assert!(!r.keep_alive);
        let Parsed::Done(r, _) = parse(b"POST / HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello") else { panic!() };
        assert!(r.method == Method::Other && r.has_body);
        assert!(matches!(parse(b"GET / HTTP/1.1\r\nHost:"), Parsed::Partial));
        assert!(matches!(parse(b"\x01\x02 nonsense\r\n\r\n"), Parsed::Bad(_)));
    }
}
