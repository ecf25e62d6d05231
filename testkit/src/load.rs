//! The oa-pxe load test: N simulated clients (default 500) at once on loopback against a real
//! `oa-pxe` process: each does a DHCP exchange (full DHCP, PXE class) and then downloads the
//! root image over TFTP (blksize 1468, windowsize 8) or HTTP, alternately. Every byte is
//! compared; the server's resident memory is sampled throughout. [`run`] returns a [`Report`]
//! that passes only when all clients got correct bytes and the peak RSS stayed under the bound.
//! `oa-pxe-load` runs it from the command line; pxe/tests/server.rs runs it in a test.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::netboot;

/// What to run.
#[derive(Debug, Clone)]
pub struct LoadOptions {
    pub clients: usize,
    /// Size of the root image every client downloads, in bytes.
    pub size: usize,
    /// Bound on the server's peak resident memory.
    pub max_rss_mib: u64,
    /// The `oa-pxe` binary to start.
    pub server: PathBuf,
}

impl Default for LoadOptions {
    /// 500 clients, 1 MiB each, 256 MiB, the `oa-pxe` beside the running binary.
    fn default() -> Self {
        let server = std::env::current_exe()
            .ok()
            .and_then(|p| p.parent().map(|d| d.join("oa-pxe")))
            .unwrap_or_else(|| PathBuf::from("oa-pxe"));
        LoadOptions { clients: 500, size: 1 << 20, max_rss_mib: 256, server }
    }
}

/// What happened: the figures and each failed client's error.
#[derive(Debug)]
pub struct Report {
    pub options: LoadOptions,
    pub elapsed: Duration,
    pub correct: usize,
    pub failed: Vec<String>,
    pub distinct_addresses: usize,
    pub rss_idle_mib: u64,
    pub rss_peak_mib: u64,
}

impl Report {
    /// Every client got correct bytes at an address of its own, within the memory bound.
    pub fn passed(&self) -> bool {
        self.failed.is_empty()
            && self.distinct_addresses == self.options.clients
            && self.rss_peak_mib <= self.options.max_rss_mib
    }
}

impl std::fmt::Display for Report {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let o = &self.options;
        writeln!(
            f,
            "oa-pxe load: {} clients (DHCP, then {} KiB over TFTP or HTTP, alternately) in {:.2} s",
            o.clients,
            o.size / 1024,
            self.elapsed.as_secs_f64()
        )?;
        writeln!(
            f,
            "  correct: {}  failed: {}  distinct addresses: {}",
            self.correct,
            self.failed.len(),
            self.distinct_addresses
        )?;
        write!(
            f,
            "  server RSS: idle {} MiB, peak {} MiB (bound {} MiB)",
            self.rss_idle_mib, self.rss_peak_mib, o.max_rss_mib
        )?;
        for e in self.failed.iter().take(10) {
            write!(f, "\n  {e}")?;
        }
        Ok(())
    }
}

fn free_port(udp: bool) -> u16 {
    if udp {
        std::net::UdpSocket::bind("127.0.0.1:0").and_then(|s| s.local_addr()).map(|a| a.port()).unwrap_or(0)
    } else {
        std::net::TcpListener::bind("127.0.0.1:0").and_then(|s| s.local_addr()).map(|a| a.port()).unwrap_or(0)
    }
}

fn rss_kib(pid: u32, key: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with(key))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// `n` pseudo-random bytes (xorshift32 from `seed`): test files whose every byte is checked.
pub fn pattern(n: usize, seed: u32) -> Vec<u8> {
    let mut x = seed | 1;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x as u8
        })
        .collect()
}

/// The smallest folder oa-pxe serves as an `oa build` output: a root image holding `root`,
/// a kernel and initramfs of a few bytes, and a manifest naming `profile`. Returns `dir/out`.
pub fn minimal_output(dir: &std::path::Path, root: &[u8], profile: &str) -> std::path::PathBuf {
    let out = dir.join("out");
    std::fs::create_dir_all(&out).unwrap();
    for (n, b) in [("rootfs.squashfs", root), ("vmlinuz", b"kernel"), ("initramfs.img", b"initramfs")] {
        std::fs::write(out.join(n), b).unwrap();
    }
    std::fs::write(
        out.join("manifest.json"),
        format!(r#"{{"schema":1,"profile":"{profile}","arch":"x86_64","kernel_release":"0","cmdline":[],"artifacts":[],"builder":"{profile}"}}"#),
    )
    .unwrap();
    out
}

/// A throw-away `oa build`-shaped output folder with a pseudo-random root image.
pub fn fake_output(dir: &std::path::Path, size: usize) -> Vec<u8> {
    std::fs::create_dir_all(dir).unwrap();
    let data = pattern(size, 0x12345678);
    std::fs::write(dir.join("rootfs.squashfs"), &data).unwrap();
    std::fs::write(dir.join("vmlinuz"), b"kernel").unwrap();
    std::fs::write(dir.join("initramfs.img"), b"initramfs").unwrap();
    std::fs::write(
        dir.join("manifest.json"),
        r#"{"schema":1,"profile":"load","arch":"x86_64","kernel_release":"0","cmdline":["console=ttyS0"],"artifacts":[],"builder":"oa-pxe-load"}"#,
    )
    .unwrap();
    data
}

/// Start `options.server` on loopback ports, run the clients against it, stop it.
pub fn run(options: &LoadOptions) -> Report {
    let LoadOptions { clients, size, ref server, .. } = *options;
    let dir = std::env::temp_dir().join(format!("oa-pxe-load-{}", std::process::id()));
    let out = dir.join("out");
    let data = Arc::new(fake_output(&out, size));
    let (dp, pp, tp, hp) = (free_port(true), free_port(true), free_port(true), free_port(false));
    let log = dir.join("server.log");
    let mut child = Command::new(server)
        .arg(&out)
        .args([
            "--address",
            "127.0.0.1",
            "--bind",
            "127.0.0.1",
            "--mode",
            "dhcp",
            "--range",
            "127.0.1.1-127.0.3.250",
            "--netmask",
            "255.255.0.0",
            "--all-interfaces",
        ])
        .arg("--leases")
        .arg(dir.join("leases.json"))
        .args([
            "--dhcp-port",
            &dp.to_string(),
            "--proxy-port",
            &pp.to_string(),
            "--tftp-port",
            &tp.to_string(),
            "--http-port",
            &hp.to_string(),
        ])
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap_or_else(|e| panic!("starting {}: {e}", server.display()));
    let pid = child.id();
    // Wait until the HTTP port answers.
    let t = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", hp)).is_err() {
        assert!(
            t.elapsed() < Duration::from_secs(10),
            "oa-pxe did not start: {}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let rss_idle = rss_kib(pid, "VmRSS:");
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    let peak = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let results = rt.block_on(async {
        let p2 = peak.clone();
        let sampler = tokio::spawn(async move {
            loop {
                p2.fetch_max(rss_kib(pid, "VmRSS:"), Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        });
        let mut set = tokio::task::JoinSet::new();
        for n in 0..clients {
            let data = data.clone();
            set.spawn(async move {
                let mac = [0x52, 0x54, 0x00, (n >> 16) as u8, (n >> 8) as u8, n as u8];
                let sock = tokio::net::UdpSocket::bind("127.0.0.1:0").await.map_err(|e| e.to_string())?;
                let dhcp: SocketAddr = ([127, 0, 0, 1], dp).into();
                let (ip, file) = netboot::dhcp(&sock, dhcp, mac, 0x1000_0000 + n as u32, true)
                    .await
                    .map_err(|e| format!("client {n}: DHCP: {e}"))?;
                if file.as_deref() != Some("undionly.kpxe") {
                    return Err(format!("client {n}: boot file {file:?}"));
                }
                // From the leased address (all of 127/8 is loopback): the server's per-client
                // limits count source addresses, as on a real LAN.
                let got = if n % 2 == 0 {
                    netboot::tftp_get_from(ip, ([127, 0, 0, 1], tp).into(), "rootfs.squashfs", 1468, 8)
                        .await
                        .map_err(|e| format!("client {n}: TFTP: {e}"))?
                } else {
                    let (st, b) = netboot::http_get_from(ip, ([127, 0, 0, 1], hp).into(), "/rootfs.squashfs")
                        .await
                        .map_err(|e| format!("client {n}: HTTP: {e}"))?;
                    if st != 200 {
                        return Err(format!("client {n}: HTTP status {st}"));
                    }
                    b
                };
                if got[..] != data[..] {
                    return Err(format!("client {n}: wrong bytes ({} of {})", got.len(), data.len()));
                }
                Ok::<_, String>(ip)
            });
        }
        let mut ok = Vec::new();
        let mut bad = Vec::new();
        while let Some(r) = set.join_next().await {
            match r {
                Ok(Ok(ip)) => ok.push(ip),
                Ok(Err(e)) => bad.push(e),
                Err(e) => bad.push(e.to_string()),
            }
        }
        sampler.abort();
        (ok, bad)
    });
    let elapsed = started.elapsed();
    let hwm = rss_kib(pid, "VmHWM:");
    let _ = child.kill();
    let _ = child.wait();
    let (ok, bad) = results;
    let mut ips = ok.clone();
    ips.sort();
    ips.dedup();
    let peak_mib = peak.load(Ordering::Relaxed).max(hwm) / 1024;
    let _ = std::fs::remove_dir_all(&dir);
    Report {
        options: options.clone(),
        elapsed,
        correct: ok.len(),
        failed: bad,
        distinct_addresses: ips.len(),
        rss_idle_mib: rss_idle / 1024,
        rss_peak_mib: peak_mib,
    }
}
