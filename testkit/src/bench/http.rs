//! HTTP: oa-pxe against nginx, serving the same folder on loopback, same clients, one run.
//! - small files: `wrk -t2 -c32 -d5s` on a 4 KiB file (keep-alive), requests/s, best of 2;
//! - bulk: `curl` of a 64 MiB file, best of 3, MiB/s.
//!
//! The two servers take turns (oa-pxe, nginx, oa-pxe, ...): on a shared machine the load from
//! elsewhere then falls on both alike.
//!
//! nginx runs with a generated configuration: `worker_processes auto` (one worker per core, as
//! oa-pxe's tokio runtime has one worker thread per core), `sendfile on`, `tcp_nopush on`,
//! `tcp_nodelay on`, `access_log off`, `daemon off`, pid and error log in its own folder.
//! oa-pxe runs with `--mode off` (HTTP and TFTP only) and `RUST_LOG=warn` (no access log, like
//! nginx here).

use std::net::TcpListener;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::{tied, Kill, Row, Stop};

const SMALL: usize = 4 << 10;
const BIG: usize = 64 << 20;

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).expect("a free port")
}

fn wait_http(port: u16, what: &str) {
    let t = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(t.elapsed() < Duration::from_secs(10), "{what}: nothing listens on 127.0.0.1:{port}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The nginx configuration serving `root` on 127.0.0.1:`port`, state in `dir`.
pub fn nginx_conf(dir: &Path, root: &Path, port: u16) -> String {
    let d = dir.display();
    format!(
        "worker_processes auto;
daemon off;
pid {d}/nginx.pid;
error_log {d}/error.log;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    sendfile on;
    tcp_nopush on;
    tcp_nodelay on;
    keepalive_requests 1000000;
    client_body_temp_path {d}/body;
    proxy_temp_path {d}/proxy;
    fastcgi_temp_path {d}/fastcgi;
    uwsgi_temp_path {d}/uwsgi;
    scgi_temp_path {d}/scgi;
    types {{ application/octet-stream bin; }}
    server {{
        listen 127.0.0.1:{port};
        root {};
    }}
}}
",
        root.display()
    )
}

/// `wrk -t2 -c32 -d5s url`: requests per second.
fn wrk(url: &str) -> f64 {
    let out = Command::new("wrk").args(["-t2", "-c32", "-d5s", url]).output().expect("wrk (`make bench-deps`)");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "wrk {url}: {text} {}", String::from_utf8_lossy(&out.stderr));
    assert!(!text.contains("Non-2xx"), "wrk {url}: errors: {text}");
    eprintln!("wrk -t2 -c32 -d5s {url}:\n{text}");
    text.lines()
        .find_map(|l| l.strip_prefix("Requests/sec:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("wrk {url}: no Requests/sec in {text}"))
}

/// `curl` of `url` to /dev/null: MiB/s (checking the size).
fn curl(url: &str, size: usize) -> f64 {
    let out = Command::new("curl")
        .args(["-s", "-o", "/dev/null", "-w", "%{size_download} %{speed_download}", url])
        .output()
        .expect("curl");
    let text = String::from_utf8_lossy(&out.stdout);
    let mut f = text.split_whitespace();
    let got: f64 = f.next().and_then(|v| v.parse().ok()).unwrap_or(0.0);
    let speed: f64 = f.next().and_then(|v| v.parse().ok()).unwrap_or(0.0);
    assert_eq!(got as usize, size, "curl {url}: {text}");
    eprintln!("curl {url}: {:.1} MiB/s", speed / 1048576.0);
    speed / 1048576.0
}

/// The best of `rounds` runs of `f` on each of the two servers, taking turns (oa-pxe, peer,
/// oa-pxe, ...) so that load from elsewhere on the machine falls on both alike.
fn best_in_turns(rounds: usize, mut f: impl FnMut(u16) -> f64, ours: u16, peer: u16) -> (f64, f64) {
    let (mut a, mut b) = (0.0f64, 0.0f64);
    for _ in 0..rounds {
        a = a.max(f(ours));
        b = b.max(f(peer));
    }
    (a, b)
}

/// Run the HTTP benchmark with the `oa-pxe` binary at `oa_pxe`.
pub fn run(oa_pxe: &Path) -> Vec<Row> {
    let dir = std::env::temp_dir().join(format!("oa-pxe-bench-http-{}", std::process::id()));
    let out = dir.join("out");
    let ngx = dir.join("nginx");
    std::fs::create_dir_all(&out).expect("bench folder");
    std::fs::create_dir_all(&ngx).expect("nginx folder");
    let big = crate::load::pattern(BIG, 0x9e37_79b9);
    std::fs::write(out.join("small.bin"), &big[..SMALL]).expect("small file");
    std::fs::write(out.join("big.bin"), &big).expect("big file");
    // What oa-pxe needs to accept the folder as an `oa build` output.
    for f in ["vmlinuz", "initramfs.img", "rootfs.squashfs"] {
        std::fs::write(out.join(f), b"x").expect("boot file");
    }
    std::fs::write(
        out.join("manifest.json"),
        r#"{"schema":1,"profile":"bench","arch":"x86_64","kernel_release":"0","cmdline":[],"artifacts":[],"builder":"bench"}"#,
    )
    .expect("manifest");
    let (op, np, tp) = (free_port(), free_port(), free_port());
    let _ours = Kill(
        tied(Command::new(oa_pxe))
            .arg(&out)
            .args(["--address", "127.0.0.1", "--bind", "127.0.0.1", "--mode", "off"])
            .args(["--http-port", &op.to_string(), "--tftp-port", &tp.to_string()])
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("{}: {e}", oa_pxe.display())),
    );
    let conf = ngx.join("nginx.conf");
    std::fs::write(&conf, nginx_conf(&ngx, &out, np)).expect("nginx.conf");
    let _nginx = Stop(
        tied(Command::new("nginx"))
            .arg("-c")
            .arg(&conf)
            .arg("-p")
            .arg(&ngx)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("nginx (`make bench-deps`)"),
    );
    wait_http(op, "oa-pxe");
    wait_http(np, "nginx");
    let url = |p: u16, f: &str| format!("http://127.0.0.1:{p}/{f}");
    // Warm both (page cache, oa-pxe's memory copy of the small file).
    for p in [op, np] {
        for f in ["small.bin", "big.bin"] {
            let _ = Command::new("curl").args(["-s", "-o", "/dev/null", &url(p, f)]).status();
        }
    }
    let (oa_small, ngx_small) = best_in_turns(2, |p| wrk(&url(p, "small.bin")), op, np);
    let (oa_big, ngx_big) = best_in_turns(3, |p| curl(&url(p, "big.bin"), BIG), op, np);
    let _ = std::fs::remove_dir_all(&dir);
    vec![
        Row {
            what: "HTTP 4 KiB file, wrk -t2 -c32 -d5s (keep-alive), best of 2 in turns".into(),
            unit: "req/s",
            oa: oa_small,
            peer: Some(("nginx", ngx_small)),
            goal: Some(0.8),
        },
        Row {
            what: "HTTP 64 MiB file, curl, best of 3 in turns".into(),
            unit: "MiB/s",
            oa: oa_big,
            peer: Some(("nginx", ngx_big)),
            goal: Some(1.0),
        },
    ]
}

#[cfg(test)]
mod tests {
    /// `cargo build --release -p oa-pxe && cargo test --release -p oa-testkit bench::http --
    /// --ignored --nocapture`
    #[test]
    #[ignore = "benchmark: needs nginx, wrk, curl and a release oa-pxe; run by hand or by make bench"]
    fn http_against_nginx() {
        let exe = std::env::current_exe().expect("test binary");
        // target/release/deps/oa_testkit-... -> target/release/oa-pxe
        let oa_pxe = exe.parent().and_then(|d| d.parent()).map(|d| d.join("oa-pxe")).expect("target folder");
        assert!(oa_pxe.is_file(), "{} missing: cargo build --release -p oa-pxe", oa_pxe.display());
        let rows = super::run(&oa_pxe);
        println!("{}", super::super::table(&rows));
        for r in &rows {
            assert!(r.oa > 0.0 && r.peer.is_some_and(|(_, p)| p > 0.0), "{}: nothing measured", r.what);
        }
    }
}
