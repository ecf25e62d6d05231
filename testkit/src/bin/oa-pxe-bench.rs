//! `oa-pxe-bench` (part of `make bench`): on loopback, in one run, the same 64 MiB file from
//! oa-pxe and from the references: TFTP against dnsmasq's TFTP server (blksize 1468, windowsize
//! 16 and 1), HTTP against `python3 -m http.server`; and DHCP offers per second from oa-pxe.
//! Prints throughputs and the ratios (oa-pxe / reference).

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use oa_testkit::netboot;

const SIZE: usize = 64 << 20;

struct Kill(Child);
impl Drop for Kill {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Children die with this process (release builds abort on panic, so Drop may not run).
fn tied(mut c: Command) -> Command {
    use std::os::unix::process::CommandExt;
    // SAFETY: prctl is async-signal-safe; nothing else runs between fork and exec here.
    unsafe {
        c.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            Ok(())
        });
    }
    c
}

fn port(udp: bool) -> u16 {
    if udp {
        std::net::UdpSocket::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
    } else {
        std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
    }
}

fn wait_tcp(p: u16) {
    let t = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", p)).is_err() {
        assert!(t.elapsed() < Duration::from_secs(10), "nothing listens on {p}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn mib_s(d: Duration) -> f64 {
    SIZE as f64 / 1048576.0 / d.as_secs_f64()
}

async fn best<F, Fut>(what: &str, f: F) -> f64
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Vec<u8>>,
{
    let mut best = 0.0f64;
    for _ in 0..2 {
        let t = Instant::now();
        let got = f().await;
        assert_eq!(got.len(), SIZE, "{what}: wrong length");
        best = best.max(mib_s(t.elapsed()));
    }
    eprintln!("  {what}: {best:.1} MiB/s");
    best
}

fn main() {
    let dir = std::env::temp_dir().join(format!("oa-pxe-bench-{}", std::process::id()));
    let out = dir.join("out");
    std::fs::create_dir_all(&out).unwrap();
    let mut x = 0x9e3779b9u32;
    let data: Vec<u8> = (0..SIZE)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x as u8
        })
        .collect();
    std::fs::write(out.join("rootfs.squashfs"), &data).unwrap();
    std::fs::write(out.join("vmlinuz"), b"k").unwrap();
    std::fs::write(out.join("initramfs.img"), b"i").unwrap();
    std::fs::write(out.join("manifest.json"), r#"{"schema":1,"profile":"bench","arch":"x86_64","kernel_release":"0","cmdline":[],"artifacts":[],"builder":"bench"}"#).unwrap();
    let exe = std::env::current_exe().unwrap();
    let server = exe.parent().unwrap().join("oa-pxe");
    let (dp, pp, tp, hp, py) = (port(true), port(true), port(true), port(false), port(false));
    let _ours = Kill(
        tied(Command::new(&server))
            .arg(&out)
            .args([
                "--address",
                "127.0.0.1",
                "--bind",
                "127.0.0.1",
                "--mode",
                "dhcp",
                "--range",
                "127.0.1.1-127.0.255.250",
                "--netmask",
                "255.255.0.0",
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
            .stderr(Stdio::null())
            .spawn()
            .expect("oa-pxe"),
    );
    // dnsmasq: TFTP only (port=0 turns DNS off, no dhcp-range means no DHCP), on 127.0.0.1:69.
    let _dnsmasq = Kill(
        tied(Command::new("dnsmasq"))
            .args([
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
            .stderr(Stdio::null())
            .spawn()
            .expect("dnsmasq (`make deps`)"),
    );
    let _python = Kill(
        tied(Command::new("python3"))
            .args(["-m", "http.server", &py.to_string(), "--bind", "127.0.0.1", "--directory"])
            .arg(&out)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("python3"),
    );
    wait_tcp(hp);
    wait_tcp(py);
    std::thread::sleep(Duration::from_millis(300));
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    let a = |p: u16| SocketAddr::from(([127, 0, 0, 1], p));
    rt.block_on(async {
        eprintln!("oa-pxe bench (64 MiB file on loopback, best of 2)");
        let o16 = best("TFTP oa-pxe  blksize 1468 windowsize 16", || async {
            netboot::tftp_get(a(tp), "rootfs.squashfs", 1468, 16).await.unwrap()
        })
        .await;
        let d16 = best("TFTP dnsmasq blksize 1468 windowsize 16", || async {
            netboot::tftp_get(a(69), "rootfs.squashfs", 1468, 16).await.unwrap()
        })
        .await;
        let o1 = best("TFTP oa-pxe  blksize 1468 windowsize 1", || async {
            netboot::tftp_get(a(tp), "rootfs.squashfs", 1468, 1).await.unwrap()
        })
        .await;
        let d1 = best("TFTP dnsmasq blksize 1468 windowsize 1", || async {
            netboot::tftp_get(a(69), "rootfs.squashfs", 1468, 1).await.unwrap()
        })
        .await;
        let oh = best("HTTP oa-pxe", || async { netboot::http_get(a(hp), "/rootfs.squashfs").await.unwrap().1 }).await;
        let ph = best("HTTP python3 -m http.server", || async {
            netboot::http_get(a(py), "/rootfs.squashfs").await.unwrap().1
        })
        .await;
        // DHCP: 8 clients in parallel, DISCOVER -> OFFER as fast as answered, for 2 s.
        let t = Instant::now();
        let mut set = tokio::task::JoinSet::new();
        for c in 0..8u32 {
            set.spawn(async move {
                let s = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
                let mut n = 0u32;
                while t.elapsed() < Duration::from_secs(2) {
                    let mac = [0x52, 0x54, c as u8, (n >> 16) as u8, (n >> 8) as u8, n as u8];
                    if netboot::discover(&s, a(dp), mac, (c << 24) | n).await.is_ok() {
                        n += 1;
                    }
                }
                n
            });
        }
        let mut offers = 0;
        while let Some(n) = set.join_next().await {
            offers += n.unwrap();
        }
        let ops = offers as f64 / t.elapsed().as_secs_f64();
        println!();
        println!("oa-pxe bench (loopback, 64 MiB)");
        println!("  TFTP windowsize 16: oa-pxe {o16:>8.1} MiB/s  dnsmasq {d16:>8.1} MiB/s  ratio {:.2}", o16 / d16);
        println!("  TFTP windowsize 1:  oa-pxe {o1:>8.1} MiB/s  dnsmasq {d1:>8.1} MiB/s  ratio {:.2}", o1 / d1);
        println!("  HTTP:               oa-pxe {oh:>8.1} MiB/s  python3 {ph:>8.1} MiB/s  ratio {:.2}", oh / ph);
        println!("  DHCP offers/s (full DHCP, 8 parallel clients): {ops:.0}");
    });
    let _ = std::fs::remove_dir_all(&dir);
}
