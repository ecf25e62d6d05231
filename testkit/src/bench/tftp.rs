//! TFTP side by side with dnsmasq's TFTP server: one 64 MiB file, lock-step (windowsize 1)
//! blksize 1468, fetched by curl (`tftp://`) and by atftp from oa-pxe and from dnsmasq in the
//! same run; oa-pxe's RFC 7440 windowsize 16 as a row of its own (dnsmasq has no windowsize,
//! so there is no peer to compare it with).
//!
//! Both servers and all clients run in a network namespace of the benchmark's own (dnsmasq
//! 2.90 has no `--tftp-port`: it always takes port 69, which must not meet anything else on
//! the host), over its loopback. Each figure is the best of `runs`, the servers' runs
//! interleaved. Needs root (the namespace) and `make bench-deps` (dnsmasq, curl, atftp).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::{tied, Kill, Row};
use crate::netns::Netns;

/// The file served.
pub const SIZE: usize = 64 << 20;
const FILE: &str = "big.bin";
const OA_PORT: u16 = 6969;
const BLKSIZE: usize = 1468;

fn mib_s(secs: f64) -> f64 {
    SIZE as f64 / 1048576.0 / secs
}

/// A folder oa-pxe serves (an `oa build` output with a manifest) holding the 64 MiB file;
/// dnsmasq serves the same folder.
fn output(dir: &Path) -> PathBuf {
    let out = dir.join("out");
    std::fs::create_dir_all(&out).expect("bench folder");
    std::fs::write(out.join(FILE), crate::load::pattern(SIZE, 0x9e37_79b9)).expect("bench file");
    std::fs::write(out.join("vmlinuz"), b"k").unwrap();
    std::fs::write(out.join("initramfs.img"), b"i").unwrap();
    std::fs::write(out.join("rootfs.squashfs"), b"r").unwrap();
    std::fs::write(
        out.join("manifest.json"),
        r#"{"schema":1,"profile":"bench","arch":"x86_64","kernel_release":"0","cmdline":[],"artifacts":[],"builder":"bench"}"#,
    )
    .unwrap();
    out
}

/// curl's `tftp://` fetch, lock-step: seconds (curl's own time_total), after checking the size.
fn curl(ns: &Netns, port: u16) -> Result<f64, String> {
    let url = format!("tftp://127.0.0.1:{port}/{FILE}");
    let o = ns
        .command("curl")
        .args([
            "-s",
            "-S",
            "-o",
            "/dev/null",
            "--tftp-blksize",
            &BLKSIZE.to_string(),
            "-w",
            "%{size_download} %{time_total}",
        ])
        .arg(&url)
        .output()
        .map_err(|e| format!("curl: {e}"))?;
    let s = String::from_utf8_lossy(&o.stdout).to_string();
    if !o.status.success() {
        return Err(format!("curl {url}: {} {}", o.status, String::from_utf8_lossy(&o.stderr)));
    }
    let mut w = s.split_whitespace();
    let size: usize = w.next().and_then(|v| v.parse().ok()).ok_or(format!("curl output {s:?}"))?;
    let secs: f64 = w.next().and_then(|v| v.parse().ok()).ok_or(format!("curl output {s:?}"))?;
    if size != SIZE {
        return Err(format!("curl {url}: {size} bytes, not {SIZE}"));
    }
    Ok(secs)
}

/// atftp's fetch, lock-step, into `sink` (its size checked, then removed): wall seconds.
fn atftp(ns: &Netns, port: u16, sink: &Path) -> Result<f64, String> {
    let _ = std::fs::remove_file(sink);
    let t = Instant::now();
    let o = ns
        .command("atftp")
        .args(["-g", "-r", FILE, "-l"])
        .arg(sink)
        .args(["--option", &format!("blksize {BLKSIZE}"), "127.0.0.1", &port.to_string()])
        .output()
        .map_err(|e| format!("atftp: {e}"))?;
    let secs = t.elapsed().as_secs_f64();
    let size = std::fs::metadata(sink).map(|m| m.len() as usize).unwrap_or(0);
    let _ = std::fs::remove_file(sink);
    if !o.status.success() || size != SIZE {
        return Err(format!(
            "atftp port {port}: {} ({size} bytes) {}",
            o.status,
            String::from_utf8_lossy(&o.stderr).trim()
        ));
    }
    Ok(secs)
}

/// The test client's RFC 7440 fetch (blksize 1468, windowsize 16) inside the namespace.
fn windowed(ns: &Netns, port: u16) -> Result<f64, String> {
    ns.run_in(move || {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(|e| e.to_string())?;
        rt.block_on(async move {
            let t = Instant::now();
            let server = std::net::SocketAddr::from(([127, 0, 0, 1], port));
            let got = crate::netboot::tftp_get(server, FILE, BLKSIZE, 16).await.map_err(|e| e.to_string())?;
            let secs = t.elapsed().as_secs_f64();
            if got.len() != SIZE {
                return Err(format!("windowsize 16: {} bytes", got.len()));
            }
            Ok(secs)
        })
    })
}

fn wait_ready(ns: &Netns, port: u16, what: &str) {
    let t = Instant::now();
    loop {
        let ok = ns
            .command("curl")
            .args(["-s", "-o", "/dev/null", &format!("tftp://127.0.0.1:{port}/vmlinuz")])
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if ok {
            return;
        }
        assert!(t.elapsed() < Duration::from_secs(10), "{what} does not answer TFTP on port {port}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Run the TFTP rows: `oa_pxe` is the oa-pxe binary, each figure the best of `runs`.
pub fn run(oa_pxe: &Path, runs: usize) -> Vec<Row> {
    // In memory where there is a tmpfs (atftp writes what it gets: no disk in the figure); a
    // new private folder (create_dir fails on anything already there, a symlink included).
    let shm = Path::new("/dev/shm");
    let base = if shm.is_dir() { shm.to_path_buf() } else { std::env::temp_dir() };
    let dir = base.join(format!("oa-bench-tftp-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    {
        use std::os::unix::fs::DirBuilderExt;
        std::fs::DirBuilder::new().mode(0o700).create(&dir).expect("bench folder");
    }
    let out = output(&dir);
    let ns = Netns::new("tftpb");
    let mut oa = tied(ns.command(&oa_pxe.to_string_lossy()));
    oa.arg(&out)
        .args(["--mode", "off", "--address", "127.0.0.1", "--bind", "127.0.0.1"])
        .args(["--tftp-port", &OA_PORT.to_string(), "--http-port", "8080"])
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let _oa = Kill(oa.spawn().expect("oa-pxe"));
    let mut dm: Command = tied(ns.command("dnsmasq"));
    dm.args([
        "--no-daemon",
        "--conf-file=/dev/null",
        "--port=0",
        "--user=root",
        "--listen-address=127.0.0.1",
        "--bind-interfaces",
        "--enable-tftp",
    ])
    .arg(format!("--tftp-root={}", out.display()))
    .arg(format!("--pid-file={}", dir.join("dnsmasq.pid").display()))
    .stdout(Stdio::null())
    .stderr(Stdio::null());
    let _dnsmasq = Kill(dm.spawn().expect("dnsmasq (`make bench-deps`)"));
    wait_ready(&ns, OA_PORT, "oa-pxe");
    wait_ready(&ns, 69, "dnsmasq");
    let sink = dir.join("atftp.out");
    let (mut c_oa, mut c_dm, mut a_oa, mut a_dm, mut w_oa) = (0f64, 0f64, 0f64, 0f64, 0f64);
    let best = |b: &mut f64, r: Result<f64, String>, what: &str| match r {
        Ok(s) => {
            let v = mib_s(s);
            eprintln!("  {what}: {v:.1} MiB/s");
            *b = b.max(v);
        }
        Err(e) => eprintln!("  {what}: failed: {e}"),
    };
    for i in 0..runs.max(1) {
        eprintln!("TFTP run {}/{}", i + 1, runs.max(1));
        best(&mut c_oa, curl(&ns, OA_PORT), "curl lock-step, oa-pxe");
        best(&mut c_dm, curl(&ns, 69), "curl lock-step, dnsmasq");
        best(&mut a_oa, atftp(&ns, OA_PORT, &sink), "atftp lock-step, oa-pxe");
        best(&mut a_dm, atftp(&ns, 69, &sink), "atftp lock-step, dnsmasq");
        best(&mut w_oa, windowed(&ns, OA_PORT), "windowsize 16, oa-pxe");
    }
    let _ = std::fs::remove_dir_all(&dir);
    vec![
        Row {
            what: "TFTP 64 MiB lock-step, curl blksize 1468".into(),
            unit: "MiB/s",
            oa: c_oa,
            peer: Some(("dnsmasq", c_dm)),
            goal: Some(1.0),
        },
        Row {
            what: "TFTP 64 MiB lock-step, atftp blksize 1468".into(),
            unit: "MiB/s",
            oa: a_oa,
            peer: Some(("dnsmasq", a_dm)),
            goal: Some(1.0),
        },
        Row {
            what: "TFTP 64 MiB windowsize 16, blksize 1468 (oa-testkit client; no peer: dnsmasq has no RFC 7440)"
                .into(),
            unit: "MiB/s",
            oa: w_oa,
            peer: None,
            goal: None,
        },
    ]
}

#[cfg(test)]
mod tests {
    /// `cargo build --release -p oa-pxe` first; then
    /// `cargo test --release -p oa-testkit bench::tftp -- --ignored --nocapture` (as root).
    #[test]
    #[ignore = "benchmark: needs root, dnsmasq, curl, atftp and a release oa-pxe"]
    fn tftp_against_dnsmasq() {
        let exe = std::env::var_os("OA_PXE")
            .map(std::path::PathBuf::from)
            .unwrap_or_else(|| std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/release/oa-pxe"));
        assert!(exe.is_file(), "{}: build it with `cargo build --release -p oa-pxe`", exe.display());
        let rows = super::run(&exe, 3);
        println!("{}", super::super::table(&rows));
        for r in &rows {
            assert!(r.oa > 0.0, "{}: no figure", r.what);
            if let Some((name, p)) = r.peer {
                assert!(p > 0.0, "{}: no figure from {name}", r.what);
            }
        }
    }
}
