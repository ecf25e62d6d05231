//! The server over real loopback sockets: path traversal refused over TFTP and HTTP, malformed
//! packets dropped without stopping anything, ranges, HEAD, and the 500-client load test.

use std::path::Path;
use std::time::Duration;

use oa_pxe::cli::Options;

mod common;
use common::Env;
use oa_testkit::load::{self, LoadOptions};
use oa_testkit::netboot;

fn options(out: &Path, leases: &Path) -> Options {
    netboot::loopback_options(out, Some("127.0.1.1-127.0.1.200"), Some(leases.to_path_buf()), None)
}

async fn start() -> Env {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    std::fs::create_dir_all(out.join("sub")).unwrap();
    std::fs::write(out.join("rootfs.squashfs"), (0..100_000u32).map(|i| i as u8).collect::<Vec<u8>>()).unwrap();
    std::fs::write(out.join("vmlinuz"), b"kernel").unwrap();
    std::fs::write(out.join("initramfs.img"), b"initramfs").unwrap();
    std::fs::write(
        out.join("manifest.json"),
        r#"{"schema":1,"profile":"t","arch":"x86_64","kernel_release":"0","cmdline":[],"artifacts":[],"builder":"t"}"#,
    )
    .unwrap();
    std::fs::write(dir.path().join("secret"), b"do not serve").unwrap();
    std::os::unix::fs::symlink(dir.path().join("secret"), out.join("escape")).unwrap();
    std::os::unix::fs::symlink("/etc/passwd", out.join("sub/passwd")).unwrap();
    let o = options(&out, &dir.path().join("leases.json"));
    common::serve(dir, &o)
}

#[tokio::test(flavor = "multi_thread")]
async fn traversal_is_refused_over_tftp_and_http() {
    let e = start().await;
    for bad in ["../secret", "sub/../../secret", "/etc/passwd", "escape", "sub/passwd", "..\\secret", "%2e%2e/secret"] {
        let r = netboot::tftp_get(e.tftp, bad, 512, 1).await;
        assert!(r.is_err(), "TFTP {bad} was served");
    }
    for bad in [
        "/../secret",
        "/%2e%2e/secret",
        "/%2E%2E%2Fsecret",
        "/sub/..%2f..%2fsecret",
        "//etc/passwd",
        "/escape",
        "/sub/passwd",
        "/%00",
        "/..%5csecret",
    ] {
        let (st, body) = netboot::http_get(e.http, bad).await.unwrap();
        assert!(st == 403 || st == 404 || st == 400, "HTTP {bad}: status {st}");
        assert!(
            !String::from_utf8_lossy(&body).contains("do not serve")
                && !String::from_utf8_lossy(&body).contains("root:"),
            "HTTP {bad} leaked"
        );
    }
    // The real files are served.
    assert_eq!(netboot::tftp_get(e.tftp, "rootfs.squashfs", 1468, 4).await.unwrap().len(), 100_000);
    assert_eq!(netboot::tftp_get(e.tftp, "/vmlinuz", 512, 1).await.unwrap(), b"kernel");
    let (st, b) = netboot::http_get(e.http, "/rootfs.squashfs").await.unwrap();
    assert_eq!((st, b.len()), (200, 100_000));
    let (st, b) = netboot::http_get(e.http, "/boot.ipxe").await.unwrap();
    assert_eq!(st, 200);
    assert!(String::from_utf8_lossy(&b).contains(&format!("{}=http://127.0.0.1:", oa_contract::cmdline::ROOT)));
}

#[tokio::test(flavor = "multi_thread")]
async fn http_ranges_head_and_methods() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let e = start().await;
    let raw = |req: String| async move {
        let mut s = tokio::net::TcpStream::connect(e.http).await.unwrap();
        s.write_all(req.as_bytes()).await.unwrap();
        let mut v = Vec::new();
        s.read_to_end(&mut v).await.unwrap();
        String::from_utf8_lossy(&v).to_string()
    };
    let r = raw("GET /vmlinuz HTTP/1.1\r\nHost: x\r\nRange: bytes=2-3\r\nConnection: close\r\n\r\n".into()).await;
    assert!(r.starts_with("HTTP/1.1 206"), "{r}");
    assert!(r.contains("content-range: bytes 2-3/6") && r.ends_with("\r\n\r\nrn"), "{r}");
    let r = raw("HEAD /vmlinuz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".into()).await;
    assert!(r.starts_with("HTTP/1.1 200") && r.contains("content-length: 6") && r.ends_with("\r\n\r\n"), "{r}");
    let r = raw("GET /vmlinuz HTTP/1.1\r\nHost: x\r\nRange: bytes=10-\r\nConnection: close\r\n\r\n".into()).await;
    assert!(r.starts_with("HTTP/1.1 416"), "{r}");
    let r = raw("PUT /vmlinuz HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".into()).await;
    assert!(r.starts_with("HTTP/1.1 405"), "{r}");
}

#[tokio::test(flavor = "multi_thread")]
async fn malformed_packets_do_not_stop_the_server() {
    let e = start().await;
    let s = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let junk: Vec<Vec<u8>> = vec![
        vec![],
        vec![0],
        vec![1; 100],
        vec![1; 300],
        vec![0, 9, 1, 2],
        vec![0, 1, b'a'],
        vec![0, 2, b'f', 0, b'o', b'c', b't', b'e', b't', 0],
        vec![0xff; 1400],
    ];
    for j in &junk {
        s.send_to(j, e.dhcp).await.unwrap();
        s.send_to(j, e.tftp).await.unwrap();
    }
    // A WRQ is answered with an access violation.
    let mut b = [0u8; 100];
    let mut saw_error = false;
    while let Ok(Ok((n, _))) = tokio::time::timeout(Duration::from_millis(300), s.recv_from(&mut b)).await {
        if n >= 4 && b[1] == 5 && b[3] == 2 {
            saw_error = true;
        }
    }
    assert!(saw_error, "WRQ refused with error 2");
    // Both still answer.
    let (ip, file) = netboot::dhcp(&s, e.dhcp, [0x52, 0x54, 0, 0, 0, 1], 42, true).await.unwrap();
    assert_eq!(ip.to_string(), "127.0.1.1");
    assert_eq!(file.as_deref(), Some("undionly.kpxe"));
    assert_eq!(netboot::tftp_get(e.tftp, "vmlinuz", 512, 1).await.unwrap(), b"kernel");
}

#[test]
fn load_500_clients_dhcp_then_tftp_or_http() {
    let report = load::run(&LoadOptions {
        clients: 500,
        max_rss_mib: 128,
        server: env!("CARGO_BIN_EXE_oa-pxe").into(),
        ..LoadOptions::default()
    });
    println!("{report}");
    assert!(report.passed(), "oa-pxe load test failed:\n{report}");
}

/// An output whose manifest says its initramfs carries the persistence key file: refused
/// (naming the files and the flag), served with --serve-key-material.
#[tokio::test(flavor = "multi_thread")]
async fn key_material_is_served_only_when_asked() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    std::fs::create_dir_all(&out).unwrap();
    std::fs::write(out.join("rootfs.squashfs"), b"root").unwrap();
    std::fs::write(out.join("vmlinuz"), b"kernel").unwrap();
    std::fs::write(out.join("initramfs.img"), b"initramfs with a key").unwrap();
    std::fs::write(
        out.join("manifest.json"),
        r#"{"schema":1,"profile":"t","arch":"x86_64","kernel_release":"0","cmdline":[],"artifacts":[],"builder":"t","key_material":["initramfs.img"]}"#,
    )
    .unwrap();
    let mut o = netboot::loopback_options(&out, None, None, None);
    let e = format!("{:#}", oa_pxe::Config::from_options(&o).unwrap_err());
    assert!(
        e.contains("carries key material") && e.contains("initramfs.img") && e.contains("--serve-key-material"),
        "{e}"
    );
    o.serve_key_material = true;
    let e = common::serve(dir, &o);
    let (st, b) = netboot::http_get(e.http, "/initramfs.img").await.unwrap();
    assert_eq!((st, b.as_slice()), (200, &b"initramfs with a key"[..]));
}
