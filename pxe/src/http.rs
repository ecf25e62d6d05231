//! HTTP (hyper 1, HTTP/1.1): GET and HEAD of the served root, the boot files and the generated
//! iPXE scripts; single byte ranges (206/416); Content-Length always; files streamed in
//! 256 KiB chunks (never read whole); read-only (other methods get 405); every path confined
//! to the root by [`crate::fsroot`] after percent-decoding; one access log line per request.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use http_body_util::{combinators::BoxBody, BodyExt, Empty, Full};
use hyper::body::Incoming;
use hyper::{header, Method, Request, Response, StatusCode};
use tokio::io::{AsyncRead, AsyncSeekExt, ReadBuf};

use crate::boot::{self, Override};
use crate::clients::Clients;
use crate::config::{names, Config};
use crate::fsroot::{Refused, Root};
use crate::mac::Mac;

const CHUNK: usize = 256 * 1024;

pub type HttpBody = BoxBody<Bytes, std::io::Error>;

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

/// A file read in chunks as the client takes them.
pub struct FileBody {
    file: tokio::fs::File,
    left: u64,
    buf: Vec<u8>,
}

impl Body for FileBody {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, std::io::Error>>> {
        let this = &mut *self;
        if this.left == 0 {
            return Poll::Ready(None);
        }
        let want = (this.left as usize).min(CHUNK);
        if this.buf.len() < want {
            this.buf.resize(want, 0);
        }
        let mut rb = ReadBuf::new(&mut this.buf[..want]);
        match Pin::new(&mut this.file).poll_read(cx, &mut rb) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Err(e)) => Poll::Ready(Some(Err(e))),
            Poll::Ready(Ok(())) => {
                let n = rb.filled().len();
                if n == 0 {
                    return Poll::Ready(Some(Err(std::io::Error::new(
                        std::io::ErrorKind::UnexpectedEof,
                        "file shrank while being sent",
                    ))));
                }
                this.left -= n as u64;
                Poll::Ready(Some(Ok(Frame::data(Bytes::copy_from_slice(&this.buf[..n])))))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.left == 0
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.left)
    }
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

fn empty() -> HttpBody {
    Empty::<Bytes>::new().map_err(|never| match never {}).boxed()
}

fn text(s: String) -> HttpBody {
    Full::new(Bytes::from(s)).map_err(|never| match never {}).boxed()
}

impl Http {
    /// Decode and route a request path.
    fn route(&self, raw_path: &str) -> Result<Target, (StatusCode, String)> {
        let decoded = percent_encoding::percent_decode_str(raw_path)
            .decode_utf8()
            .map_err(|_| (StatusCode::BAD_REQUEST, "path is not UTF-8 after percent-decoding".to_string()))?
            .into_owned();
        let refused = |e: Refused| match e {
            Refused::NotFound(_) | Refused::NotAFile(_) | Refused::Empty(_) => (StatusCode::NOT_FOUND, e.to_string()),
            _ => (StatusCode::FORBIDDEN, e.to_string()),
        };
        // Clean first: `..` and friends are refused before any routing or file access.
        let clean = Root::clean(&decoded).map_err(refused)?;
        let clean = clean.to_string_lossy().into_owned();
        if clean == names::SCRIPT {
            return Ok(Target::Script(None));
        }
        if let Some(m) = clean.strip_prefix("boot/").and_then(|r| r.strip_suffix(".ipxe")) {
            let mac = m.parse::<Mac>().map_err(|e| (StatusCode::NOT_FOUND, e))?;
            return Ok(Target::Script(Some(mac)));
        }
        if let Some(m) = clean.strip_prefix("config/") {
            let mac = m.parse::<Mac>().map_err(|e| (StatusCode::NOT_FOUND, e))?;
            let ov = self.override_of(mac)?;
            let p = ov.and_then(|o| o.config).ok_or((StatusCode::NOT_FOUND, format!("no config for {mac}")))?;
            return std::fs::read_to_string(&p)
                .map(Target::Generated)
                .map_err(|e| (StatusCode::NOT_FOUND, format!("{}: {e}", p.display())));
        }
        if let Some(rest) = clean.strip_prefix("m/") {
            let (m, file) = rest.split_once('/').ok_or((StatusCode::NOT_FOUND, "no file named".to_string()))?;
            let mac = m.parse::<Mac>().map_err(|e| (StatusCode::NOT_FOUND, e))?;
            let out = self
                .override_of(mac)?
                .and_then(|o| o.output)
                .ok_or((StatusCode::NOT_FOUND, format!("no output override for {mac}")))?;
            let root = Root::new(&out).map_err(|e| (StatusCode::NOT_FOUND, format!("{}: {e}", out.display())))?;
            return root.resolve(file).map(Target::File).map_err(refused);
        }
        if let Some(p) = self.cfg.boot_file(&clean) {
            return Ok(Target::File(p.to_path_buf()));
        }
        self.root.resolve(&clean).map(Target::File).map_err(refused)
    }

    fn override_of(&self, mac: Mac) -> Result<Option<Override>, (StatusCode, String)> {
        match &self.cfg.machines {
            None => Ok(None),
            Some(d) => Override::load(d, mac).map_err(|e| (StatusCode::INTERNAL_SERVER_ERROR, e)),
        }
    }

    pub async fn handle(&self, req: Request<Incoming>, peer: SocketAddr) -> Response<HttpBody> {
        let t = Instant::now();
        let method = req.method().clone();
        let path = req.uri().path().to_string();
        let range = req.headers().get(header::RANGE).and_then(|v| v.to_str().ok()).map(str::to_string);
        let (resp, note) = self.respond(&method, &path, range.as_deref()).await;
        let len = resp.headers().get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).unwrap_or("0").to_string();
        tracing::info!(
            target: "http",
            "{} ({}) \"{method} {path}\" {} {len} bytes{}{} {:.1} ms",
            self.clients.name(peer.ip()),
            peer.ip(),
            resp.status().as_u16(),
            range.map(|r| format!(" range={r}")).unwrap_or_default(),
            note.map(|n| format!(" ({n})")).unwrap_or_default(),
            t.elapsed().as_secs_f64() * 1000.0
        );
        resp
    }

    async fn respond(&self, method: &Method, path: &str, range: Option<&str>) -> (Response<HttpBody>, Option<String>) {
        let status_only = |s: StatusCode, why: String| {
            let body = format!("{} {}\n", s.as_u16(), s.canonical_reason().unwrap_or(""));
            let mut r = Response::new(if method == Method::HEAD { empty() } else { text(body.clone()) });
            *r.status_mut() = s;
            r.headers_mut().insert(header::CONTENT_LENGTH, body.len().into());
            r.headers_mut().insert(header::CONTENT_TYPE, header::HeaderValue::from_static("text/plain"));
            (r, Some(why))
        };
        if method != Method::GET && method != Method::HEAD {
            let (mut r, n) = status_only(StatusCode::METHOD_NOT_ALLOWED, "read-only server".into());
            r.headers_mut().insert(header::ALLOW, header::HeaderValue::from_static("GET, HEAD"));
            return (r, n);
        }
        let target = match self.route(path) {
            Ok(t) => t,
            Err((s, why)) => return status_only(s, why),
        };
        let generated = match &target {
            Target::Script(mac) => {
                let ov = match mac {
                    Some(m) => match self.override_of(*m) {
                        Ok(o) => o,
                        Err((s, why)) => return status_only(s, why),
                    },
                    None => None,
                };
                Some(boot::script(&self.cfg, *mac, ov.as_ref()))
            }
            Target::Generated(s) => Some(s.clone()),
            Target::File(_) => None,
        };
        if let Some(s) = generated {
            let mut r = Response::new(if method == Method::HEAD { empty() } else { text(s.clone()) });
            r.headers_mut().insert(header::CONTENT_LENGTH, s.len().into());
            r.headers_mut().insert(header::CONTENT_TYPE, header::HeaderValue::from_static("text/plain"));
            return (r, None);
        }
        let Target::File(p) = target else { unreachable!("generated targets answered above") };
        let mut file = match tokio::fs::File::open(&p).await {
            Ok(f) => f,
            Err(e) => return status_only(StatusCode::NOT_FOUND, format!("{}: {e}", p.display())),
        };
        let size = match file.metadata().await {
            Ok(m) => m.len(),
            Err(e) => return status_only(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
        };
        let (status, start, len) = match parse_range(range, size) {
            Range::Whole => (StatusCode::OK, 0, size),
            Range::Part(a, b) => (StatusCode::PARTIAL_CONTENT, a, b - a + 1),
            Range::Unsatisfiable => {
                let (mut r, n) = status_only(StatusCode::RANGE_NOT_SATISFIABLE, format!("file has {size} bytes"));
                r.headers_mut().insert(header::CONTENT_RANGE, format!("bytes */{size}").parse().expect("ascii"));
                return (r, n);
            }
        };
        if start > 0 {
            if let Err(e) = file.seek(std::io::SeekFrom::Start(start)).await {
                return status_only(StatusCode::INTERNAL_SERVER_ERROR, e.to_string());
            }
        }
        let body = if method == Method::HEAD { empty() } else { FileBody { file, left: len, buf: Vec::new() }.boxed() };
        let mut r = Response::new(body);
        *r.status_mut() = status;
        let h = r.headers_mut();
        h.insert(header::CONTENT_LENGTH, len.into());
        h.insert(header::ACCEPT_RANGES, header::HeaderValue::from_static("bytes"));
        h.insert(header::CONTENT_TYPE, header::HeaderValue::from_static("application/octet-stream"));
        if status == StatusCode::PARTIAL_CONTENT {
            h.insert(
                header::CONTENT_RANGE,
                format!("bytes {}-{}/{size}", start, start + len - 1).parse().expect("ascii"),
            );
        }
        (r, None)
    }
}

/// Accept connections until the task is dropped.
pub async fn serve(listener: tokio::net::TcpListener, h: Arc<Http>) {
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(x) => x,
            Err(e) => {
                tracing::warn!(target: "http", "accept: {e}");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let h = h.clone();
        tokio::spawn(async move {
            let svc = hyper::service::service_fn(move |req| {
                let h = h.clone();
                async move { Ok::<_, Infallible>(h.handle(req, peer).await) }
            });
            let io = hyper_util::rt::TokioIo::new(stream);
            if let Err(e) = hyper::server::conn::http1::Builder::new().serve_connection(io, svc).await {
                tracing::debug!(target: "http", "{peer}: connection: {e}");
            }
        });
    }
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
}
