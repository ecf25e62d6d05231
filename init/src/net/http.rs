//! A small HTTP/1.1 client for the root image: GET into a file, hashing (sha256) while the
//! bytes stream through, resuming with `Range:` after a broken connection. Bounded: 5 attempts
//! with back-off; connect and read timeouts. IPv4 literals only (no DNS in stage 1).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::path::Path;
use std::time::Duration;

use sha2::{Digest, Sha256};

use crate::console;
use crate::error::{Error, IoContext, Result};

const ATTEMPTS: u32 = 5;
const CHUNK: usize = 1 << 20;
/// Bounds on what a server sends before the body: one line of the head, the number of
/// lines, and the whole head. A response over any of them is refused, not buffered.
pub const MAX_LINE: usize = 8 << 10;
pub const MAX_LINES: usize = 100;
pub const MAX_HEAD: usize = 64 << 10;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Url {
    pub host: Ipv4Addr,
    pub port: u16,
    pub path: String,
}

impl Url {
    pub fn parse(s: &str) -> std::result::Result<Url, String> {
        let rest = s.strip_prefix("http://").ok_or("only http:// URLs are supported")?;
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/"),
        };
        let (host, port) = match authority.rsplit_once(':') {
            Some((h, p)) => (h, p.parse::<u16>().map_err(|_| format!("bad port {p:?}"))?),
            None => (authority, 80),
        };
        let host = host
            .parse::<Ipv4Addr>()
            .map_err(|_| format!("host {host:?} must be an IPv4 address (stage 1 has no DNS)"))?;
        if path.bytes().any(|b| b <= b' ' || b == 0x7f) {
            return Err("the path holds spaces or control characters".into());
        }
        Ok(Url { host, port, path: path.to_string() })
    }
}

/// The status code, Content-Length and whether the server honoured a range, from a response head.
#[derive(Debug, PartialEq, Eq)]
pub struct Head {
    pub status: u16,
    pub length: Option<u64>,
    /// Start offset of a 206 response (`Content-Range: bytes START-...`).
    pub range_start: Option<u64>,
}

pub fn parse_head(lines: &[String]) -> std::result::Result<Head, String> {
    let first = lines.first().ok_or("empty response")?;
    let mut parts = first.split_whitespace();
    let proto = parts.next().unwrap_or("");
    if !proto.starts_with("HTTP/1.") {
        return Err(format!("not an HTTP/1.x response: {first:?}"));
    }
    let status = parts.next().and_then(|s| s.parse().ok()).ok_or_else(|| format!("no status code in {first:?}"))?;
    let mut h = Head { status, length: None, range_start: None };
    for l in &lines[1..] {
        let Some((k, v)) = l.split_once(':') else { continue };
        let v = v.trim();
        match k.trim().to_ascii_lowercase().as_str() {
            "content-length" => {
                let n = number(v).ok_or_else(|| format!("bad Content-Length {v:?}"))?;
                if h.length.is_some_and(|l| l != n) {
                    return Err("two different Content-Length headers".into());
                }
                h.length = Some(n);
            }
            "content-range" => {
                let start = v.strip_prefix("bytes ").and_then(|r| r.split('-').next()).and_then(number);
                h.range_start = Some(start.ok_or_else(|| format!("bad Content-Range {v:?}"))?);
            }
            "transfer-encoding" if !v.eq_ignore_ascii_case("identity") => {
                return Err(format!("Transfer-Encoding {v} is not supported"))
            }
            _ => {}
        }
    }
    Ok(h)
}

/// A decimal number that fits a u64 (at most 20 digits), nothing else: no
/// sign, no spaces, no `+`.
fn number(s: &str) -> Option<u64> {
    if s.is_empty() || s.len() > 20 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// Read the response head (status line and headers, up to the empty line), bounded by
/// [`MAX_LINE`], [`MAX_LINES`] and [`MAX_HEAD`].
pub fn read_head(r: &mut impl BufRead) -> std::result::Result<Vec<String>, String> {
    let mut lines = Vec::new();
    let mut total = 0usize;
    loop {
        let mut l = Vec::new();
        let n = r
            .by_ref()
            .take(MAX_LINE as u64 + 1)
            .read_until(b'\n', &mut l)
            .map_err(|e| format!("read response head: {e}"))?;
        if n == 0 {
            return Err("connection closed in the response head".into());
        }
        if n > MAX_LINE {
            return Err(format!("a line of the response head is longer than {MAX_LINE} bytes"));
        }
        if !l.ends_with(b"\n") {
            return Err("connection closed in the response head".into());
        }
        total += n;
        if total > MAX_HEAD {
            return Err(format!("the response head is longer than {MAX_HEAD} bytes"));
        }
        let l = String::from_utf8(l).map_err(|_| "the response head is not text".to_string())?;
        let l = l.trim_end().to_string();
        if l.is_empty() {
            return Ok(lines);
        }
        if lines.len() >= MAX_LINES {
            return Err(format!("the response head has more than {MAX_LINES} lines"));
        }
        lines.push(l);
    }
}

#[derive(Debug)]
pub struct Fetched {
    pub bytes: u64,
    pub sha256: String,
    pub attempts: u32,
}

/// What state the download is in between attempts.
struct Partial {
    file: std::fs::File,
    have: u64,
    hash: Sha256,
}

/// Why one attempt failed, and whether another may do better: a 404 or 403 is the server's
/// answer, not a broken connection, so it is not retried (a missing `.minisig` is common).
struct Failed {
    why: String,
    retry: bool,
}

impl From<String> for Failed {
    fn from(why: String) -> Failed {
        Failed { why, retry: true }
    }
}

fn attempt(url: &Url, p: &mut Partial, max: u64) -> std::result::Result<Option<u64>, Failed> {
    let addr = SocketAddr::from((url.host, url.port));
    let mut s =
        TcpStream::connect_timeout(&addr, Duration::from_secs(5)).map_err(|e| format!("connect {addr}: {e}"))?;
    let _ = s.set_read_timeout(Some(Duration::from_secs(15)));
    let range = if p.have > 0 { format!("Range: bytes={}-\r\n", p.have) } else { String::new() };
    let req = format!(
        "GET {} HTTP/1.1\r\nHost: {}:{}\r\nUser-Agent: oa-init\r\n{range}Connection: close\r\n\r\n",
        url.path, url.host, url.port
    );
    s.write_all(req.as_bytes()).map_err(|e| format!("send request: {e}"))?;
    let mut r = BufReader::with_capacity(CHUNK, s);
    let lines = read_head(&mut r)?;
    let head = parse_head(&lines)?;
    match head.status {
        200 => {
            if p.have > 0 {
                // The server sent the whole file again: start over.
                p.file.set_len(0).map_err(|e| e.to_string())?;
                use std::io::Seek;
                p.file.seek(std::io::SeekFrom::Start(0)).map_err(|e| e.to_string())?;
                p.have = 0;
                p.hash = Sha256::new();
            }
        }
        206 if head.range_start == Some(p.have) => {}
        206 => {
            return Err(format!("the server answered a range starting at {:?}, not {}", head.range_start, p.have).into())
        }
        // 4xx but 408 (timeout) and 429 (too many requests): asking again gets the same answer.
        s if (400..500).contains(&s) && s != 408 && s != 429 => {
            return Err(Failed { why: format!("HTTP status {s} ({})", lines[0]), retry: false })
        }
        s => return Err(format!("HTTP status {s} ({})", lines[0]).into()),
    }
    let total = match head.length {
        None => None,
        Some(l) => {
            Some(p.have.checked_add(l).ok_or_else(|| format!("Content-Length {l} at byte {} overflows", p.have))?)
        }
    };
    if let Some(t) = total.filter(|t| *t > max) {
        return Err(format!("the server announces {t} bytes, more than the {max} allowed").into());
    }
    let mut buf = vec![0u8; CHUNK];
    loop {
        if total.is_some_and(|t| p.have >= t) {
            break;
        }
        let n = r.read(&mut buf).map_err(|e| format!("read body at byte {}: {e}", p.have))?;
        if n == 0 {
            if total.is_some() {
                return Err(format!("connection closed at byte {} of {}", p.have, total.unwrap_or(0)).into());
            }
            break;
        }
        // Never more than announced, nor more than allowed.
        let n = match total {
            Some(t) => n.min(usize::try_from(t - p.have).unwrap_or(usize::MAX)),
            None => n,
        };
        if p.have.saturating_add(n as u64) > max {
            return Err(format!("the body is longer than the {max} bytes allowed").into());
        }
        p.file.write_all(&buf[..n]).map_err(|e| format!("write: {e}"))?;
        p.hash.update(&buf[..n]);
        p.have += n as u64;
    }
    Ok(total)
}

/// Download `url` to `dest` (created or truncated).
pub fn download(url: &Url, dest: &Path) -> Result<Fetched> {
    download_at_most(url, dest, u64::MAX)
}

/// [`download`], refusing a body of more than `max` bytes (announced or sent). `dest` is
/// created anew 0600 (the mode given to O_CREAT: never readable by others).
pub fn download_at_most(url: &Url, dest: &Path, max: u64) -> Result<Fetched> {
    use std::os::unix::fs::OpenOptionsExt;
    match std::fs::remove_file(dest) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e).ctx("remove", dest),
    }
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(nix::libc::O_NOFOLLOW | nix::libc::O_CLOEXEC)
        .open(dest)
        .ctx("create", dest)?;
    let mut p = Partial { file, have: 0, hash: Sha256::new() };
    let mut last = String::new();
    let shown = format!("http://{}:{}{}", url.host, url.port, url.path);
    for n in 1..=ATTEMPTS {
        match attempt(url, &mut p, max) {
            Ok(_) => {
                p.file.sync_all().ctx("sync", dest)?;
                let sha256 = crate::rootimage::hex(&p.hash.clone().finalize());
                return Ok(Fetched { bytes: p.have, sha256, attempts: n });
            }
            Err(Failed { why, retry: false }) => {
                return Err(Error::Unexpected { what: format!("fetch {shown}"), why });
            }
            Err(Failed { why, retry: true }) => {
                console::warn(&format!("fetching {shown} (attempt {n} of {ATTEMPTS}): {why}"));
                last = why;
                if n < ATTEMPTS {
                    std::thread::sleep(Duration::from_millis(500 << (n - 1)));
                }
            }
        }
    }
    Err(Error::Unexpected { what: format!("fetch {shown}"), why: format!("gave up after {ATTEMPTS} attempts: {last}") })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        assert_eq!(
            Url::parse("http://10.0.0.1/rootfs.squashfs").unwrap(),
            Url { host: Ipv4Addr::new(10, 0, 0, 1), port: 80, path: "/rootfs.squashfs".into() }
        );
        assert_eq!(Url::parse("http://10.0.0.1:8080").unwrap().path, "/");
        assert_eq!(Url::parse("http://10.0.0.1:8080/a/b").unwrap().port, 8080);
        assert!(Url::parse("https://10.0.0.1/").is_err());
        assert!(Url::parse("http://server/").is_err());
        assert!(Url::parse("http://10.0.0.1:x/").is_err());
        assert!(Url::parse("http://10.0.0.1/a b").is_err());
    }

    #[test]
    fn heads() {
        let l = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(
            parse_head(&l(&["HTTP/1.1 200 OK", "Content-Length: 42"])).unwrap(),
            Head { status: 200, length: Some(42), range_start: None }
        );
        assert_eq!(
            parse_head(&l(&["HTTP/1.1 206 Partial", "content-range: bytes 10-41/42", "Content-Length: 32"]))
                .unwrap()
                .range_start,
            Some(10)
        );
        assert!(parse_head(&l(&["SSH-2.0"])).is_err());
        assert!(parse_head(&l(&["HTTP/1.1 200 OK", "Transfer-Encoding: chunked"])).is_err());
        assert!(parse_head(&l(&["HTTP/1.1 200 OK", "Content-Length: -1"])).is_err());
    }

    #[test]
    fn downloads_and_resumes_against_a_local_server() {
        use std::net::TcpListener;
        let data: Vec<u8> = (0..3_000_000u32).map(|i| (i * 7 % 251) as u8).collect();
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let d2 = data.clone();
        std::thread::spawn(move || {
            // First connection: cut off after 1 MB. Second: honour the range.
            for (i, c) in l.incoming().take(2).enumerate() {
                let mut c = c.unwrap();
                let mut req = [0u8; 1024];
                let n = c.read(&mut req).unwrap();
                let req = String::from_utf8_lossy(&req[..n]).to_string();
                if i == 0 {
                    let _ = c.write_all(format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n", d2.len()).as_bytes());
                    let _ = c.write_all(&d2[..1_000_000]);
                } else {
                    let start: usize =
                        req.split("bytes=").nth(1).and_then(|r| r.split('-').next()).unwrap().parse().unwrap();
                    let _ = c.write_all(format!("HTTP/1.1 206 Partial Content\r\nContent-Range: bytes {start}-{}/{}\r\nContent-Length: {}\r\n\r\n", d2.len() - 1, d2.len(), d2.len() - start).as_bytes());
                    let _ = c.write_all(&d2[start..]);
                }
            }
        });
        let dir = std::env::temp_dir().join(format!("oa-init-http-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let dest = dir.join("img");
        let got = download(&Url::parse(&format!("http://127.0.0.1:{port}/img")).unwrap(), &dest).unwrap();
        assert_eq!(got.attempts, 2);
        assert_eq!(got.bytes, data.len() as u64);
        assert_eq!(std::fs::read(&dest).unwrap(), data);
        assert_eq!(got.sha256, crate::rootimage::hex(&Sha256::digest(&data)));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// A server on 127.0.0.1 that reads one request and answers `reply` on each connection.
    fn serve(replies: Vec<Vec<u8>>) -> Url {
        use std::net::TcpListener;
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        std::thread::spawn(move || {
            for (c, reply) in l.incoming().zip(replies) {
                let mut c = c.unwrap();
                let mut req = [0u8; 1024];
                let _ = c.read(&mut req);
                let _ = c.write_all(&reply);
            }
        });
        Url::parse(&format!("http://127.0.0.1:{port}/x")).unwrap()
    }

    fn partial(name: &str) -> (Partial, std::path::PathBuf) {
        let p = std::env::temp_dir().join(format!("oa-init-http-{name}-{}", std::process::id()));
        let file = std::fs::File::create(&p).unwrap();
        (Partial { file, have: 0, hash: Sha256::new() }, p)
    }

    #[test]
    fn hostile_heads_are_refused_without_buffering_them() {
        let mut long = b"HTTP/1.1 200 OK\r\nX: ".to_vec();
        long.extend(vec![b'a'; 4 << 20]);
        let mut many = b"HTTP/1.1 200 OK\r\n".to_vec();
        for _ in 0..10_000 {
            many.extend_from_slice(b"X: y\r\n");
        }
        let mut big = b"HTTP/1.1 200 OK\r\n".to_vec();
        for _ in 0..99 {
            big.extend_from_slice(format!("X: {}\r\n", "b".repeat(8000)).as_bytes());
        }
        let cases: [(&[u8], &str); 5] = [
            (&long, "longer than 8192 bytes"),
            (&many, "more than 100 lines"),
            (&big, "head is longer than"),
            (b"HTTP/1.1 200 OK\r\nContent-Length: 99999999999999999999999\r\n\r\n", "bad Content-Length"),
            (b"HTTP/1.1 200 OK\r\nContent-Length: +5\r\n\r\n", "bad Content-Length"),
        ];
        for (reply, want) in cases {
            let mut r = std::io::BufReader::new(reply);
            let e = read_head(&mut r).and_then(|l| parse_head(&l).map(|_| ())).unwrap_err();
            assert!(e.contains(want), "{e} (wanted {want})");
        }
        assert!(
            parse_head(&["HTTP/1.1 200 OK".into(), "Content-Length: 1".into(), "Content-Length: 2".into()]).is_err()
        );
        // Over a real connection, too.
        let url = serve(vec![long]);
        let (mut p, path) = partial("long");
        assert!(attempt(&url, &mut p, u64::MAX).unwrap_err().why.contains("longer than"));
        std::fs::remove_file(path).unwrap();
    }

    #[test]
    fn lengths_from_the_server_cannot_overflow_or_exceed_the_limit() {
        // A resumed download whose Content-Length would wrap around u64.
        let url = serve(vec![
            b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n12345".to_vec(),
            format!(
                "HTTP/1.1 206 Partial\r\nContent-Range: bytes 5-9/10\r\nContent-Length: {}\r\n\r\n67890",
                u64::MAX - 1
            )
            .into_bytes(),
        ]);
        let (mut p, path) = partial("overflow");
        assert!(attempt(&url, &mut p, u64::MAX).unwrap_err().why.contains("connection closed at byte 5"));
        assert_eq!(p.have, 5);
        let e = attempt(&url, &mut p, u64::MAX).unwrap_err().why;
        assert!(e.contains("overflows"), "{e}");
        // More than allowed: announced, or sent without a length.
        let url = serve(vec![
            b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n".to_vec(),
            [b"HTTP/1.1 200 OK\r\n\r\n".to_vec(), vec![0u8; 100]].concat(),
            b"HTTP/1.1 206 Partial\r\nContent-Range: bytes x-9/10\r\n\r\n".to_vec(),
        ]);
        let (mut p, _) = partial("overflow");
        assert!(attempt(&url, &mut p, 10).unwrap_err().why.contains("announces 100 bytes"));
        assert!(attempt(&url, &mut p, 10).unwrap_err().why.contains("longer than the 10 bytes"));
        assert!(attempt(&url, &mut p, 10).unwrap_err().why.contains("bad Content-Range"));
        std::fs::remove_file(path).unwrap();
    }

    #[test]
    fn a_not_found_is_an_answer_and_a_server_error_is_retried() {
        let dir = std::env::temp_dir().join(format!("oa-init-http-404-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let dest = dir.join("x");
        // One 404 and nothing more: a second attempt would find no server and say so.
        let url = serve(vec![b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n".to_vec()]);
        let e = download(&url, &dest).unwrap_err().to_string();
        assert!(e.contains("HTTP status 404") && !e.contains("gave up"), "{e}");
        // A 503, then the file: the second attempt gets it.
        let url = serve(vec![
            b"HTTP/1.1 503 Busy\r\nContent-Length: 0\r\n\r\n".to_vec(),
            b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok".to_vec(),
        ]);
        let got = download(&url, &dest).unwrap();
        assert_eq!((got.attempts, std::fs::read(&dest).unwrap()), (2, b"ok".to_vec()));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
