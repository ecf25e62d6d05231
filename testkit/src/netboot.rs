//! Protocol clients for the load test, the benchmark and the integration tests: a DHCP
//! exchange (DISCOVER/OFFER/REQUEST/ACK), a TFTP read with options, an HTTP/1.1 GET; and the
//! oa-pxe options of a server on loopback. They speak the real protocols over real sockets;
//! they are not a netboot client for production (and not in the oa-pxe crate for that reason).

use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use dhcproto::v4::{self, Message, MessageType};
use dhcproto::{Decodable, Decoder, Encodable};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UdpSocket;

use oa_pxe::cli::{ModeArg, Options};
use oa_pxe::tftp;

pub type Error = Box<dyn std::error::Error + Send + Sync>;

fn err(s: impl Into<String>) -> Error {
    s.into().into()
}

/// Server options for a test on loopback: every port chosen by the kernel; full DHCP with a
/// pool of `range` (in 127.0.0.0/16) and leases in `leases` when `range` is given, else proxy.
pub fn loopback_options(
    output: &std::path::Path,
    range: Option<&str>,
    leases: Option<std::path::PathBuf>,
    machines: Option<std::path::PathBuf>,
) -> Options {
    let dhcp = range.is_some();
    Options {
        output: output.to_path_buf(),
        interface: None,
        address: Some(Ipv4Addr::LOCALHOST),
        mode: if dhcp { ModeArg::Dhcp } else { ModeArg::Proxy },
        range: range.map(str::to_string),
        netmask: dhcp.then(|| Ipv4Addr::new(255, 255, 0, 0)),
        router: None,
        dns: vec![],
        lease_time: 600,
        leases: if dhcp { leases } else { None },
        machines,
        append: vec![],
        ipxe_dir: "/usr/lib/ipxe".into(),
        ipxe_arm64: None,
        bind: Ipv4Addr::LOCALHOST,
        dhcp_port: 0,
        proxy_port: 0,
        client_port: 68,
        tftp_port: 0,
        http_port: 0,
        serve_key_material: false,
        sign_key: None,
        // Loopback tests have no interface to bind DHCP to.
        all_interfaces: dhcp,
        relay: vec![],
    }
}

/// One DHCP exchange from `sock` to `server`; returns the ACKed address.
pub async fn dhcp(
    sock: &UdpSocket,
    server: SocketAddr,
    mac: [u8; 6],
    xid: u32,
    pxe: bool,
) -> Result<(Ipv4Addr, Option<String>), Error> {
    let build = |mt: MessageType, ip: Option<Ipv4Addr>| {
        let mut m = Message::new_with_id(
            xid,
            Ipv4Addr::UNSPECIFIED,
            Ipv4Addr::UNSPECIFIED,
            Ipv4Addr::UNSPECIFIED,
            Ipv4Addr::UNSPECIFIED,
            &mac,
        );
        m.opts_mut().insert(v4::DhcpOption::MessageType(mt));
        if pxe {
            m.opts_mut().insert(v4::DhcpOption::ClassIdentifier(b"PXEClient:Arch:00000:UNDI:002001".to_vec()));
            m.opts_mut().insert(v4::DhcpOption::ClientSystemArchitecture(0.into()));
        }
        if let Some(ip) = ip {
            m.opts_mut().insert(v4::DhcpOption::RequestedIpAddress(ip));
        }
        m.to_vec().unwrap_or_default()
    };
    let mut buf = vec![0u8; 1500];
    let ask = |mt: MessageType, ip: Option<Ipv4Addr>| build(mt, ip);
    // Retransmit like a real client: 4 tries, 1 s apart.
    let mut offer = None;
    for _ in 0..4 {
        sock.send_to(&ask(MessageType::Discover, None), server).await?;
        if let Ok(m) = wait_for(sock, &mut buf, xid, MessageType::Offer).await {
            offer = Some(m);
            break;
        }
    }
    let offer = offer.ok_or_else(|| err("no DHCPOFFER after 4 tries"))?;
    let mut ack = None;
    for _ in 0..4 {
        sock.send_to(&ask(MessageType::Request, Some(offer.yiaddr())), server).await?;
        if let Ok(m) = wait_for(sock, &mut buf, xid, MessageType::Ack).await {
            ack = Some(m);
            break;
        }
    }
    let ack = ack.ok_or_else(|| err("no DHCPACK after 4 tries"))?;
    let file =
        ack.fname_str().and_then(|r| r.ok()).map(|s| s.trim_end_matches('\0').to_string()).filter(|s| !s.is_empty());
    Ok((ack.yiaddr(), file))
}

async fn wait_for(sock: &UdpSocket, b: &mut [u8], xid: u32, want: MessageType) -> Result<Message, Error> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(1);
    loop {
        let (n, _) =
            tokio::time::timeout_at(deadline, sock.recv_from(b)).await.map_err(|_| err(format!("no {want:?}")))??;
        if let Ok(m) = Message::decode(&mut Decoder::new(&b[..n])) {
            if m.xid() == xid && m.opts().msg_type() == Some(want) {
                return Ok(m);
            }
        }
    }
}

/// DHCP DISCOVER -> OFFER only (for offers per second).
pub async fn discover(sock: &UdpSocket, server: SocketAddr, mac: [u8; 6], xid: u32) -> Result<(), Error> {
    let mut m = Message::new_with_id(
        xid,
        Ipv4Addr::UNSPECIFIED,
        Ipv4Addr::UNSPECIFIED,
        Ipv4Addr::UNSPECIFIED,
        Ipv4Addr::UNSPECIFIED,
        &mac,
    );
    m.opts_mut().insert(v4::DhcpOption::MessageType(MessageType::Discover));
    m.opts_mut().insert(v4::DhcpOption::ClassIdentifier(b"PXEClient:Arch:00000:UNDI:002001".to_vec()));
    sock.send_to(&m.to_vec()?, server).await?;
    let mut b = [0u8; 1500];
    loop {
        let (n, _) = tokio::time::timeout(Duration::from_secs(2), sock.recv_from(&mut b))
            .await
            .map_err(|_| err("no offer"))??;
        if let Ok(r) = Message::decode(&mut Decoder::new(&b[..n])) {
            if r.xid() == xid {
                return Ok(());
            }
        }
    }
}

/// Read `file` over TFTP with `blksize` and `windowsize`; returns the bytes.
pub async fn tftp_get(server: SocketAddr, file: &str, blksize: usize, windowsize: u16) -> Result<Vec<u8>, Error> {
    let local = if server.ip().is_loopback() { Ipv4Addr::LOCALHOST } else { Ipv4Addr::UNSPECIFIED };
    tftp_get_from(local, server, file, blksize, windowsize).await
}

/// [`tftp_get`] from the local address `local` (a client's leased address: the server's
/// per-client limits count source addresses, so many clients on loopback need their own).
pub async fn tftp_get_from(
    local: Ipv4Addr,
    server: SocketAddr,
    file: &str,
    blksize: usize,
    windowsize: u16,
) -> Result<Vec<u8>, Error> {
    let sock = UdpSocket::bind((local, 0)).await?;
    let mut rrq = tftp::RRQ.to_be_bytes().to_vec();
    for s in [file, "octet", "blksize", &blksize.to_string(), "windowsize", &windowsize.to_string(), "tsize", "0"] {
        rrq.extend_from_slice(s.as_bytes());
        rrq.push(0);
    }
    sock.send_to(&rrq, server).await?;
    let mut out = Vec::new();
    let mut buf = vec![0u8; blksize + 4];
    let mut expected: u16 = 1;
    let mut peer: Option<SocketAddr> = None;
    let mut since_ack = 0u16;
    let mut retries = 0;
    let mut bs = 512;
    let mut window = 1u16;
    loop {
        let r = tokio::time::timeout(Duration::from_secs(2), sock.recv_from(&mut buf)).await;
        let (n, from) = match r {
            Ok(x) => x?,
            Err(_) => {
                retries += 1;
                if retries > 5 {
                    return Err(err("TFTP timeout"));
                }
                if let Some(p) = peer {
                    sock.send_to(&[0, 4, (expected.wrapping_sub(1) >> 8) as u8, expected.wrapping_sub(1) as u8], p)
                        .await?;
                } else {
                    sock.send_to(&rrq, server).await?;
                }
                continue;
            }
        };
        if peer.is_some_and(|p| p != from) {
            continue;
        }
        peer = Some(from);
        match tftp::parse(&buf[..n]).map_err(|e| err(e.to_string()))? {
            tftp::Packet::Oack => {
                // What the server accepted (a server without RFC 7440 leaves windowsize out).
                let fields: Vec<&[u8]> = buf[2..n].split(|&c| c == 0).collect();
                let get = |k: &str| {
                    fields
                        .windows(2)
                        .find(|w| w[0].eq_ignore_ascii_case(k.as_bytes()))
                        .and_then(|w| std::str::from_utf8(w[1]).ok()?.parse::<usize>().ok())
                };
                bs = get("blksize").unwrap_or(512);
                window = get("windowsize").unwrap_or(1) as u16;
                sock.send_to(&[0, 4, 0, 0], from).await?;
            }
            tftp::Packet::Data { block, len } => {
                if block == expected {
                    out.extend_from_slice(&buf[4..4 + len]);
                    expected = expected.wrapping_add(1);
                    since_ack += 1;
                    retries = 0;
                    if len < bs {
                        sock.send_to(&[0, 4, (block >> 8) as u8, block as u8], from).await?;
                        return Ok(out);
                    }
                    if since_ack >= window {
                        since_ack = 0;
                        sock.send_to(&[0, 4, (block >> 8) as u8, block as u8], from).await?;
                    }
                } else {
                    let last = expected.wrapping_sub(1);
                    since_ack = 0;
                    sock.send_to(&[0, 4, (last >> 8) as u8, last as u8], from).await?;
                }
            }
            tftp::Packet::Error { code, msg } => return Err(err(format!("TFTP error {code}: {msg}"))),
            _ => {}
        }
    }
}

/// HTTP/1.1 GET of `path`; returns (status, body).
pub async fn http_get(server: SocketAddr, path: &str) -> Result<(u16, Vec<u8>), Error> {
    let local = if server.ip().is_loopback() { Ipv4Addr::LOCALHOST } else { Ipv4Addr::UNSPECIFIED };
    http_get_from(local, server, path).await
}

/// [`http_get`] from the local address `local` (see [`tftp_get_from`]).
pub async fn http_get_from(local: Ipv4Addr, server: SocketAddr, path: &str) -> Result<(u16, Vec<u8>), Error> {
    let sock = tokio::net::TcpSocket::new_v4()?;
    sock.bind((local, 0).into())?;
    let mut s = sock.connect(server).await?;
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: {server}\r\nConnection: close\r\n\r\n").as_bytes()).await?;
    let mut all = Vec::new();
    s.read_to_end(&mut all).await?;
    let end = all.windows(4).position(|w| w == b"\r\n\r\n").ok_or_else(|| err("no response head"))?;
    let head = String::from_utf8_lossy(&all[..end]).to_string();
    let status = head.split_whitespace().nth(1).and_then(|s| s.parse().ok()).ok_or_else(|| err("no status"))?;
    Ok((status, all[end + 4..].to_vec()))
}
