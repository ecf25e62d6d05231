//! Raspberry Pi netboot at the protocol level, over real loopback sockets: the Pi bootloader's
//! DHCP DISCOVER (the layout the Raspberry Pi documentation gives: option 60
//! `PXEClient:Arch:00000:UNDI:002001`, option 93 = 0, option 97 starting with `RPi4` on a
//! Pi 4, a Raspberry Pi MAC prefix on a Pi 3), the reply's option 43 bytes, option 60 and
//! next-server; then the TFTP paths a Pi asks for, with the serial prefix and the fallback
//! without it, next to an x86 PXE client on the same server; and the generated cmdline.txt
//! served from memory, whatever another user put in /tmp first.

use std::net::Ipv4Addr;
use std::path::Path;
use std::time::Duration;

use dhcproto::v4::{self, Decoder, Encodable, Encoder, Message, MessageType};
use dhcproto::Decodable;
use oa_contract::cmdline::{ROOT, SHA256};
use oa_pxe::cli::ModeArg;
use oa_pxe::rpi;
use oa_testkit::netboot;
use tokio::net::UdpSocket;

mod common;
use common::Env;

const SHA: &str = "5e8f5e8f5e8f5e8f5e8f5e8f5e8f5e8f5e8f5e8f5e8f5e8f5e8f5e8f5e8f5e8f";

fn write(p: &Path, data: &[u8]) {
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, data).unwrap();
}

async fn start(mode: ModeArg) -> Env {
    start_on(mode, 0).await
}

async fn start_on(mode: ModeArg, http_port: u16) -> Env {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    write(&out.join("rootfs.squashfs"), b"root image");
    write(&out.join("vmlinuz"), b"kernel");
    write(&out.join("initramfs.img"), b"initramfs");
    write(&out.join("manifest.json"), format!(r#"{{"schema":1,"profile":"rpi4-ssh","arch":"aarch64","kernel_release":"0","cmdline":["console=ttyS1,115200","{SHA256}={SHA}"],"artifacts":[],"builder":"t"}}"#).as_bytes());
    // The rpi/ tree as `oa build` writes it (small stand-ins for the firmware blobs; start4.elf
    // spans many TFTP blocks).
    let tree = out.join("rpi");
    write(&tree.join("bootcode.bin"), b"BOOTCODE");
    write(&tree.join("start.elf"), b"START-PI3");
    write(&tree.join("start4.elf"), &(0..200_000u32).map(|i| (i * 7) as u8).collect::<Vec<u8>>());
    write(&tree.join("fixup4.dat"), b"FIXUP4");
    write(&tree.join("config.txt"), b"arm_64bit=1\nkernel=kernel8.img\n");
    write(&tree.join("cmdline.txt"), format!("console=ttyS1,115200 oa.sha256={SHA}\n").as_bytes());
    write(&tree.join("kernel8.img"), b"kernel");
    write(&tree.join("initramfs.img"), b"initramfs");
    write(&tree.join("bcm2711-rpi-4-b.dtb"), b"DTB");
    // A per-Pi folder for one board.
    let machines = dir.path().join("machines");
    write(&machines.join("rpi/1a2b3c4d/config.txt"), b"arm_64bit=1\n# only for 1a2b3c4d\n");
    let dhcp = matches!(mode, ModeArg::Dhcp);
    let mut o = netboot::loopback_options(
        &out,
        dhcp.then_some("127.0.2.1-127.0.2.50"),
        Some(dir.path().join("leases.json")),
        Some(machines),
    );
    o.http_port = http_port;
    common::serve(dir, &o)
}

/// A DISCOVER laid out like the Pi bootloader's.
fn pi_discover(mac: [u8; 6], xid: u32, option97: Option<Vec<u8>>) -> Vec<u8> {
    let mut m = Message::new_with_id(
        xid,
        Ipv4Addr::UNSPECIFIED,
        Ipv4Addr::UNSPECIFIED,
        Ipv4Addr::UNSPECIFIED,
        Ipv4Addr::UNSPECIFIED,
        &mac,
    );
    let o = m.opts_mut();
    o.insert(v4::DhcpOption::MessageType(MessageType::Discover));
    o.insert(v4::DhcpOption::ParameterRequestList(
        [1u8, 3, 43, 60, 66, 67, 128, 129, 130, 131, 132, 133, 134, 135]
            .iter()
            .map(|c| v4::OptionCode::from(*c))
            .collect(),
    ));
    o.insert(v4::DhcpOption::ClientSystemArchitecture(0.into()));
    o.insert(v4::DhcpOption::ClientNetworkInterface(1, 2, 1));
    if let Some(u) = option97 {
        o.insert(v4::DhcpOption::ClientMachineIdentifier(u));
    }
    o.insert(v4::DhcpOption::ClassIdentifier(b"PXEClient:Arch:00000:UNDI:002001".to_vec()));
    let mut buf = Vec::new();
    m.encode(&mut Encoder::new(&mut buf)).unwrap();
    buf
}

async fn offer_for(e: &Env, packet: &[u8], xid: u32) -> Message {
    let sock = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let mut buf = vec![0u8; 1500];
    for _ in 0..4 {
        sock.send_to(packet, e.dhcp).await.unwrap();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(1);
        while let Ok(Ok((n, _))) = tokio::time::timeout_at(deadline, sock.recv_from(&mut buf)).await {
            if let Ok(m) = Message::decode(&mut Decoder::new(&buf[..n])) {
                if m.xid() == xid && m.opts().msg_type() == Some(MessageType::Offer) {
                    return m;
                }
            }
        }
    }
    panic!("no DHCPOFFER for xid {xid:#x}");
}

fn option43(m: &Message) -> Vec<u8> {
    match m.opts().get(v4::OptionCode::VendorExtensions) {
        Some(v4::DhcpOption::VendorExtensions(b)) => b.clone(),
        other => panic!("no option 43: {other:?}"),
    }
}

fn option60(m: &Message) -> Vec<u8> {
    match m.opts().get(v4::OptionCode::ClassIdentifier) {
        Some(v4::DhcpOption::ClassIdentifier(b)) => b.clone(),
        other => panic!("no option 60: {other:?}"),
    }
}

fn pi4_option97() -> Vec<u8> {
    let mut u = vec![0u8];
    u.extend_from_slice(b"RPi4");
    u.extend_from_slice(&[0x1a, 0x2b, 0x3c, 0x4d, 0, 0, 0, 0, 0, 0, 0, 0]);
    u
}

#[tokio::test(flavor = "multi_thread")]
async fn pi_and_pc_get_their_own_dhcp_answers() {
    for mode in [ModeArg::Dhcp, ModeArg::Proxy] {
        let e = start(mode).await;
        // Pi 4: told apart from a BIOS PC by option 97 (its MAC here is not a Pi prefix).
        let pi4 = offer_for(&e, &pi_discover([0x02, 0, 0, 0, 0, 4], 0x4444, Some(pi4_option97())), 0x4444).await;
        // Pi 3: no option 97, a Raspberry Pi Foundation MAC prefix.
        let pi3 = offer_for(&e, &pi_discover([0xb8, 0x27, 0xeb, 1, 2, 3], 0x3333, None), 0x3333).await;
        for (name, m) in [("Pi 4", &pi4), ("Pi 3", &pi3)] {
            let o43 = option43(m);
            assert_eq!(o43, rpi::option43(), "{name}: option 43");
            // "Raspberry Pi Boot" with its three trailing spaces, as PXE sub-option 9.
            let i = o43.iter().position(|b| *b == 9).unwrap();
            assert_eq!(&o43[i + 5..i + 5 + 20], b"Raspberry Pi Boot   ", "{name}");
            assert_eq!(o43.last(), Some(&255));
            assert_eq!(option60(m), b"PXEClient", "{name}: option 60");
            assert_eq!(m.siaddr(), Ipv4Addr::new(127, 0, 0, 1), "{name}: next-server is the TFTP server");
        }
        // An x86 BIOS PC with the same class and arch: iPXE's undionly, the plain PXE options.
        let pc = offer_for(&e, &pi_discover([0x52, 0x54, 0, 9, 9, 9], 0x8686, None), 0x8686).await;
        assert_eq!(option43(&pc), vec![6, 1, 8, 255]);
        assert_eq!(
            pc.fname_str().and_then(|r| r.ok()).map(|s| s.trim_end_matches('\0').to_string()).as_deref(),
            Some("undionly.kpxe")
        );
        if matches!(mode, ModeArg::Proxy) {
            assert_eq!(pi4.yiaddr(), Ipv4Addr::UNSPECIFIED, "proxyDHCP hands out no address");
        } else {
            assert_ne!(pi4.yiaddr(), Ipv4Addr::UNSPECIFIED);
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn pi_tftp_paths_with_serial_prefix_and_fallback() {
    let e = start(ModeArg::Proxy).await;
    let get = |p: &'static str| netboot::tftp_get(e.tftp, p, 512, 1);
    // Pi 3: bootcode.bin, bootsig.bin (not found is normal), then <serial>/start.elf.
    assert_eq!(get("bootcode.bin").await.unwrap(), b"BOOTCODE");
    assert!(get("bootsig.bin").await.is_err(), "bootsig.bin does not exist");
    assert_eq!(get("deadbeef/start.elf").await.unwrap(), b"START-PI3");
    // Pi 4: <serial>/start4.elf (many blocks), then the rest under the same prefix.
    let start4 = get("1a2b3c4d/start4.elf").await.unwrap();
    assert_eq!(start4, (0..200_000u32).map(|i| (i * 7) as u8).collect::<Vec<u8>>());
    assert_eq!(get("1a2b3c4d/fixup4.dat").await.unwrap(), b"FIXUP4");
    assert_eq!(get("1a2b3c4d/bcm2711-rpi-4-b.dtb").await.unwrap(), b"DTB");
    // The per-Pi folder wins for that board; other boards get the shared tree.
    assert!(String::from_utf8(get("1a2b3c4d/config.txt").await.unwrap()).unwrap().contains("only for 1a2b3c4d"));
    assert_eq!(get("deadbeef/config.txt").await.unwrap(), b"arm_64bit=1\nkernel=kernel8.img\n");
    // The fallback without a prefix, and a MAC-named prefix.
    assert_eq!(get("start4.elf").await.unwrap().len(), 200_000);
    assert_eq!(get("dc-a6-32-01-02-03/kernel8.img").await.unwrap(), b"kernel");
    // cmdline.txt: the tree's words, with oa.root= at this server's HTTP (the root image never
    // goes over TFTP).
    let cmdline = String::from_utf8(get("1a2b3c4d/cmdline.txt").await.unwrap()).unwrap();
    assert!(cmdline.contains(&format!("{SHA256}={SHA}")), "{cmdline}");
    assert!(cmdline.contains(&format!("{ROOT}=http://127.0.0.1:{}/rootfs.squashfs", e.http.port())), "{cmdline}");
    assert!(cmdline.starts_with("console=ttyS1,115200 "));
    // A missing file under a Pi prefix is "not found", and traversal stays refused.
    assert!(get("1a2b3c4d/nothing.bin").await.is_err());
    assert!(get("1a2b3c4d/../../etc/passwd").await.is_err());
}

/// The generated cmdline.txt once lived in `/tmp/oa-pxe-<pid>-<http port>/`, a name any local
/// user could create first (a symlink to /etc/shadow served over TFTP, or their own command
/// line for every Pi). Now it is served from memory: such a folder, with symlinks in it where
/// the old code read and wrote, changes nothing and is not touched.
#[tokio::test(flavor = "multi_thread")]
async fn a_planted_tmp_folder_has_no_effect() {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let planted = std::env::temp_dir().join(format!("oa-pxe-{}-{port}", std::process::id()));
    let _ = std::fs::remove_dir_all(&planted);
    std::fs::create_dir_all(&planted).unwrap();
    let victim = planted.join("victim");
    std::fs::write(&victim, b"secret of another user\n").unwrap();
    std::os::unix::fs::symlink(&victim, planted.join("rpi-cmdline.txt")).unwrap();
    std::os::unix::fs::symlink(&victim, planted.join(format!("rpi-cmdline.txt.{}", std::process::id()))).unwrap();
    let listing = |d: &Path| {
        let mut v: Vec<_> = std::fs::read_dir(d).unwrap().map(|e| e.unwrap().file_name()).collect();
        v.sort();
        v
    };
    let before = listing(&planted);
    let e = start_on(ModeArg::Proxy, port).await;
    assert_eq!(e.http.port(), port);
    for path in ["cmdline.txt", "1a2b3c4d/cmdline.txt"] {
        let got = String::from_utf8(netboot::tftp_get(e.tftp, path, 512, 1).await.unwrap()).unwrap();
        assert!(got.contains(&format!("{ROOT}=http://127.0.0.1:{port}/rootfs.squashfs")), "{path}: {got}");
        assert!(got.contains(&format!("{SHA256}={SHA}")), "{path}: {got}");
        assert!(!got.contains("secret"), "{path}: {got}");
    }
    assert_eq!(std::fs::read(&victim).unwrap(), b"secret of another user\n", "the symlink target is untouched");
    assert_eq!(listing(&planted), before, "nothing written into the planted folder");
    std::fs::remove_dir_all(&planted).unwrap();
}
