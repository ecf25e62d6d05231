//! DHCP: parsing and checking requests ([`parse`]), the policy as a chain of small steps
//! ([`policy`]), full-DHCP leases ([`leases`]) kept in an append-only journal written by a
//! thread of its own ([`journal`]), and the socket loops ([`serve`]). Requests relayed by an
//! agent not given with --relay are dropped; an ACK leaves only once its lease is on disk.
//! Per-packet lines are logged at debug; [`summary`] logs the counts at info every minute.
//!
//! A packet that does not parse or fails a check is dropped with one log line naming why;
//! nothing a client sends can stop the server.

pub mod journal;
pub mod leases;
pub mod policy;

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use dhcproto::v4::{self, Message, MessageType, Opcode};
use dhcproto::{Decodable, Decoder, Encodable};

use crate::boot::Client;
use crate::mac::Mac;

/// Fixed BOOTP header (236 bytes) plus the magic cookie.
pub const MIN_LEN: usize = 240;
const MAGIC: [u8; 4] = [99, 130, 83, 99];

/// Why a packet was dropped.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Malformed {
    #[error("too short ({0} bytes, a DHCP message has at least 240)")]
    Short(usize),
    #[error("no DHCP magic cookie")]
    Magic,
    #[error("not a BOOTREQUEST (op {0})")]
    NotRequest(u8),
    #[error("hardware address is not Ethernet (htype {0}, hlen {1})")]
    NotEthernet(u8, u8),
    #[error("option {code} at offset {at}: {why}")]
    BadOption { code: u8, at: usize, why: &'static str },
    #[error("options do not end (no end option 255)")]
    NoEnd,
    #[error("no DHCP message type (option 53): a plain BOOTP request")]
    NoMessageType,
    #[error("decoding: {0}")]
    Decode(String),
}

/// Walk the option area checking every length against the packet and, for the options the
/// policy reads, against their fixed sizes. dhcproto reads fixed-size options without looking
/// at the length byte, so a wrong length would otherwise shift every later option.
fn check_options(buf: &[u8]) -> Result<(), Malformed> {
    let mut i = MIN_LEN;
    while i < buf.len() {
        let code = buf[i];
        match code {
            0 => {
                i += 1;
                continue;
            }
            255 => return Ok(()),
            _ => {}
        }
        let Some(&len) = buf.get(i + 1) else {
            return Err(Malformed::BadOption { code, at: i, why: "no length byte" });
        };
        let len = len as usize;
        if i + 2 + len > buf.len() {
            return Err(Malformed::BadOption { code, at: i, why: "runs past the end of the packet" });
        }
        let ok = match code {
            53 => len == 1,
            1 | 3 | 6 if !len.is_multiple_of(4) || len == 0 => false,
            1 | 28 | 50 | 51 | 54 | 58 | 59 => len == 4,
            57 => len == 2,
            // Rapid Commit (RFC 4039) carries no data; dhcproto panics decoding one with data
            // (found by the dhcp_parse fuzz target).
            80 => len == 0,
            // Its debug assertions on these lengths panic too (dhcp_parse found option 94 with
            // 1 byte): the UNDI version (RFC 4578), client FQDN (RFC 4702), bulk leasequery
            // status and times (RFC 6926).
            94 => len == 3,
            81 => len >= 3,
            151 => len >= 1,
            152..=155 => len == 4,
            93 => len >= 2 && len.is_multiple_of(2),
            61 | 60 | 77 | 97 | 12 => len >= 1,
            _ => true,
        };
        if !ok {
            return Err(Malformed::BadOption { code, at: i, why: "wrong length for this option" });
        }
        i += 2 + len;
    }
    Err(Malformed::NoEnd)
}

/// Parse and check a request. The result has an Ethernet MAC and a message type.
pub fn parse(buf: &[u8]) -> Result<(Message, Mac, MessageType), Malformed> {
    if buf.len() < MIN_LEN {
        return Err(Malformed::Short(buf.len()));
    }
    if buf[236..240] != MAGIC {
        return Err(Malformed::Magic);
    }
    if buf[0] != 1 {
        return Err(Malformed::NotRequest(buf[0]));
    }
    if buf[1] != 1 || buf[2] != 6 {
        return Err(Malformed::NotEthernet(buf[1], buf[2]));
    }
    check_options(buf)?;
    let msg = Message::decode(&mut Decoder::new(buf)).map_err(|e| Malformed::Decode(e.to_string()))?;
    if msg.opcode() != Opcode::BootRequest {
        return Err(Malformed::NotRequest(buf[0]));
    }
    let mac = Mac::from_slice(&buf[28..34]).ok_or(Malformed::NotEthernet(buf[1], buf[2]))?;
    let mt = msg.opts().msg_type().ok_or(Malformed::NoMessageType)?;
    Ok((msg, mac, mt))
}

/// What kind of client this is, from options 60, 77 and 93.
pub fn classify(msg: &Message, mac: Mac) -> Client {
    let opts = msg.opts();
    let class = match opts.get(v4::OptionCode::ClassIdentifier) {
        Some(v4::DhcpOption::ClassIdentifier(b)) => b.clone(),
        _ => Vec::new(),
    };
    let user_class = match opts.get(v4::OptionCode::UserClass) {
        Some(v4::DhcpOption::UserClass(b)) => b.clone(),
        _ => Vec::new(),
    };
    let arch = match opts.get(v4::OptionCode::ClientSystemArchitecture) {
        Some(v4::DhcpOption::ClientSystemArchitecture(a)) => Some(u16::from(*a)),
        _ => None,
    };
    // iPXE sends option 77 as the bare string "iPXE" (not RFC 3004 length-prefixed).
    let ipxe = user_class == b"iPXE" || (user_class.len() == 5 && user_class[0] == 4 && &user_class[1..] == b"iPXE");
    let uuid = match opts.get(v4::OptionCode::ClientMachineIdentifier) {
        Some(v4::DhcpOption::ClientMachineIdentifier(b)) => Some(b.as_slice()),
        _ => None,
    };
    let rpi = crate::rpi::detect(mac, &class, arch, uuid);
    Client {
        mac: Some(mac),
        arch,
        pxe: class.starts_with(b"PXEClient"),
        http: class.starts_with(b"HTTPClient"),
        ipxe,
        rpi,
        asks_boot_server: oa_contract::dhcp::asks_boot_server(&user_class),
    }
}

pub fn encode(m: &Message) -> Vec<u8> {
    // A message we build ourselves always encodes; fall back to nothing rather than panic.
    m.to_vec().unwrap_or_default()
}

/// Which socket a request came in on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Port {
    /// 67: DHCP (broadcast).
    Dhcp,
    /// 4011: PXE boot server / proxyDHCP requests (unicast).
    Proxy,
}

/// Where a reply goes (RFC 2131 4.1, simplified): through the relay, back to the sender when
/// it has an address, else broadcast to the client port.
pub fn destination(msg: &Message, src: SocketAddr, client_port: u16, server_port: u16) -> SocketAddr {
    if !msg.giaddr().is_unspecified() {
        return SocketAddr::V4(SocketAddrV4::new(msg.giaddr(), server_port));
    }
    match src {
        SocketAddr::V4(s) if !s.ip().is_unspecified() => src,
        _ if !msg.ciaddr().is_unspecified() => SocketAddr::V4(SocketAddrV4::new(msg.ciaddr(), client_port)),
        _ => SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::BROADCAST, client_port)),
    }
}

/// What the DHCP side did, for the periodic summary line.
#[derive(Debug, Default)]
pub struct Counters {
    pub offers: AtomicU64,
    pub acks: AtomicU64,
    pub naks: AtomicU64,
    pub other_replies: AtomicU64,
    /// Not answered (policy, another server chosen, unknown relay).
    pub dropped: AtomicU64,
    pub malformed: AtomicU64,
    /// ACKs not sent because their lease could not be written.
    pub unsaved: AtomicU64,
}

/// Shared state of the DHCP side.
pub struct State {
    pub chain: policy::Chain,
    pub leases: Option<Mutex<leases::Leases>>,
    pub clients: crate::clients::Clients,
    pub counters: Counters,
    /// When an unknown relay was last logged, and how many were not logged since.
    relay_log: Mutex<(Option<Instant>, u64)>,
}

impl State {
    pub fn new(chain: policy::Chain, leases: Option<Mutex<leases::Leases>>, clients: crate::clients::Clients) -> State {
        State { chain, leases, clients, counters: Counters::default(), relay_log: Mutex::new((None, 0)) }
    }

    /// Log a request from an unknown relay at most every 10 seconds (with the count since).
    fn unknown_relay(&self, giaddr: Ipv4Addr, mac: Mac, src: SocketAddr) {
        self.counters.dropped.fetch_add(1, Relaxed);
        let mut g = self.relay_log.lock().unwrap_or_else(|e| e.into_inner());
        if g.0.is_some_and(|t| t.elapsed() < Duration::from_secs(10)) {
            g.1 += 1;
            tracing::debug!(target: "dhcp", "{mac}: dropped a request relayed by {giaddr} (from {src}): not a --relay");
            return;
        }
        let more = std::mem::take(&mut g.1);
        g.0 = Some(Instant::now());
        tracing::info!(target: "dhcp",
            "{mac}: dropped a request relayed by {giaddr} (from {src}): not a --relay of this server{}",
            if more > 0 { format!(" ({more} more such requests since the last line)") } else { String::new() }
        );
    }
}

/// Log what the DHCP side did every `every`, when it did anything.
pub async fn summary(state: Arc<State>, every: Duration) {
    let mut last = [0u64; 7];
    let mut tick = tokio::time::interval(every);
    tick.tick().await;
    loop {
        tick.tick().await;
        let c = &state.counters;
        let now = [
            c.offers.load(Relaxed),
            c.acks.load(Relaxed),
            c.naks.load(Relaxed),
            c.other_replies.load(Relaxed),
            c.dropped.load(Relaxed),
            c.malformed.load(Relaxed),
            c.unsaved.load(Relaxed),
        ];
        if now == last {
            continue;
        }
        let d: Vec<u64> = now.iter().zip(last.iter()).map(|(a, b)| a - b).collect();
        let (leases, offers) = match &state.leases {
            Some(l) => {
                let l = l.lock().unwrap_or_else(|e| e.into_inner());
                (l.len().to_string(), l.offers().to_string())
            }
            None => ("-".into(), "-".into()),
        };
        tracing::info!(target: "dhcp",
            "last {} s: {} offers, {} acks, {} naks, {} other replies, {} dropped, {} malformed, {} not saved; {leases} leases, {offers} offers held",
            every.as_secs(), d[0], d[1], d[2], d[3], d[4], d[5], d[6]
        );
        last = now;
    }
}

/// Serve one DHCP socket until the task is dropped.
pub async fn serve(sock: Arc<tokio::net::UdpSocket>, port: Port, state: Arc<State>, cfg: Arc<crate::Config>) {
    let mut buf = vec![0u8; 1500];
    loop {
        let (n, src) = match sock.recv_from(&mut buf).await {
            Ok(x) => x,
            Err(e) => {
                tracing::warn!(target: "dhcp", "receive: {e}");
                continue;
            }
        };
        let out = policy::handle(&state, &cfg, &buf[..n], src, port);
        let c = &state.counters;
        match out {
            policy::Outcome::Reply { msg, log, durable } => {
                let kind = msg.opts().msg_type();
                let dst = destination(&msg, src, cfg.client_port, cfg.dhcp_port);
                let bytes = encode(&msg);
                match durable {
                    None => {
                        match kind {
                            Some(MessageType::Offer) => &c.offers,
                            Some(MessageType::Nak) => &c.naks,
                            _ => &c.other_replies,
                        }
                        .fetch_add(1, Relaxed);
                        send(&sock, &bytes, dst, &log).await;
                    }
                    Some(d) => {
                        // The ACK goes out once its lease is on disk; the loop goes on meanwhile
                        // (the journal writes every waiting record with one fdatasync).
                        let (sock, state) = (sock.clone(), state.clone());
                        tokio::spawn(async move {
                            match d.await {
                                Ok(Ok(())) => {
                                    state.counters.acks.fetch_add(1, Relaxed);
                                    send(&sock, &bytes, dst, &log).await;
                                }
                                Ok(Err(e)) => {
                                    state.counters.unsaved.fetch_add(1, Relaxed);
                                    tracing::warn!(target: "dhcp", "not acknowledging {dst}: the lease is not saved: {e}");
                                }
                                Err(_) => {
                                    state.counters.unsaved.fetch_add(1, Relaxed);
                                    tracing::warn!(target: "dhcp", "not acknowledging {dst}: the leases writer stopped");
                                }
                            }
                        });
                    }
                }
            }
            policy::Outcome::Drop { log } => {
                c.dropped.fetch_add(1, Relaxed);
                tracing::debug!(target: "dhcp", "{log}");
            }
            policy::Outcome::UnknownRelay { giaddr, mac } => state.unknown_relay(giaddr, mac, src),
            policy::Outcome::Malformed { why } => {
                c.malformed.fetch_add(1, Relaxed);
                tracing::debug!(target: "dhcp", "dropped a malformed packet from {src} ({n} bytes): {why}")
            }
        }
    }
}

async fn send(sock: &tokio::net::UdpSocket, bytes: &[u8], dst: SocketAddr, log: &str) {
    match sock.send_to(bytes, dst).await {
        Ok(_) => tracing::debug!(target: "dhcp", "{log} -> {dst}"),
        Err(e) => tracing::warn!(target: "dhcp", "sending a reply to {dst}: {e}"),
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A well-formed request as a PXE ROM sends it.
    pub fn request(
        mt: MessageType,
        mac: [u8; 6],
        class: Option<&str>,
        arch: Option<u16>,
        user_class: Option<&[u8]>,
    ) -> Vec<u8> {
        let mut m = Message::new_with_id(
            0x1234,
            Ipv4Addr::UNSPECIFIED,
            Ipv4Addr::UNSPECIFIED,
            Ipv4Addr::UNSPECIFIED,
            Ipv4Addr::UNSPECIFIED,
            &mac,
        );
        m.opts_mut().insert(v4::DhcpOption::MessageType(mt));
        if let Some(c) = class {
            m.opts_mut().insert(v4::DhcpOption::ClassIdentifier(c.as_bytes().to_vec()));
        }
        if let Some(a) = arch {
            m.opts_mut().insert(v4::DhcpOption::ClientSystemArchitecture(a.into()));
        }
        if let Some(u) = user_class {
            m.opts_mut().insert(v4::DhcpOption::UserClass(u.to_vec()));
        }
        m.to_vec().unwrap()
    }

    #[test]
    fn parses_a_pxe_discover() {
        let b = request(
            MessageType::Discover,
            [0x52, 0x54, 0, 1, 2, 3],
            Some("PXEClient:Arch:00007:UNDI:003016"),
            Some(7),
            None,
        );
        let (m, mac, mt) = parse(&b).unwrap();
        assert_eq!(mt, MessageType::Discover);
        assert_eq!(mac.to_string(), "52:54:00:01:02:03");
        let c = classify(&m, mac);
        assert!(c.pxe && !c.ipxe && c.arch == Some(7));
        let b = request(MessageType::Discover, [1; 6], Some("PXEClient"), Some(0), Some(b"iPXE"));
        let (m, mac, _) = parse(&b).unwrap();
        assert!(classify(&m, mac).ipxe);
    }

    #[test]
    fn malformed_packets_are_refused_with_a_reason() {
        let good = request(MessageType::Discover, [1; 6], Some("PXEClient"), Some(0), None);
        // Truncated.
        assert_eq!(parse(&good[..100]), Err(Malformed::Short(100)));
        assert_eq!(parse(&[]), Err(Malformed::Short(0)));
        // Bad magic.
        let mut b = good.clone();
        b[236] = 0;
        assert_eq!(parse(&b), Err(Malformed::Magic));
        // A reply, not a request (unknown opcodes too).
        for op in [2u8, 0, 7, 255] {
            let mut b = good.clone();
            b[0] = op;
            assert_eq!(parse(&b), Err(Malformed::NotRequest(op)));
        }
        // hlen larger than chaddr (dhcproto would panic on chaddr()).
        let mut b = good.clone();
        b[2] = 200;
        assert_eq!(parse(&b), Err(Malformed::NotEthernet(1, 200)));
        // Wrong option length: message type with 2 bytes.
        let mut b = good[..MIN_LEN].to_vec();
        b.extend_from_slice(&[53, 2, 1, 1, 255]);
        assert!(matches!(parse(&b), Err(Malformed::BadOption { code: 53, .. })));
        // Option 93 with an odd length.
        let mut b = good[..MIN_LEN].to_vec();
        b.extend_from_slice(&[53, 1, 1, 93, 3, 0, 0, 0, 255]);
        assert!(matches!(parse(&b), Err(Malformed::BadOption { code: 93, .. })));
        // Lengths dhcproto asserts in debug builds (found by fuzzing): refused before it decodes.
        for opt in [&[94u8, 1, 1][..], &[81, 2, 0, 0], &[151, 0], &[152, 3, 0, 0, 0]] {
            let mut b = good[..MIN_LEN].to_vec();
            b.extend_from_slice(&[53, 1, 1]);
            b.extend_from_slice(opt);
            b.push(255);
            assert!(matches!(parse(&b), Err(Malformed::BadOption { code, .. }) if code == opt[0]), "{opt:?}");
        }
        // An option running past the end.
        let mut b = good[..MIN_LEN].to_vec();
        b.extend_from_slice(&[53, 1, 1, 60, 50, b'P']);
        assert!(matches!(parse(&b), Err(Malformed::BadOption { code: 60, .. })));
        // No end option.
        let mut b = good[..MIN_LEN].to_vec();
        b.extend_from_slice(&[53, 1, 1]);
        assert_eq!(parse(&b), Err(Malformed::NoEnd));
        // BOOTP (no message type).
        let mut b = good[..MIN_LEN].to_vec();
        b.push(255);
        assert_eq!(parse(&b), Err(Malformed::NoMessageType));
    }

    #[test]
    fn parse_never_panics_on_garbage() {
        let good = request(MessageType::Request, [1; 6], Some("PXEClient"), Some(7), Some(b"iPXE"));
        let mut seed = 0x9e3779b97f4a7c15u64;
        for _ in 0..20000 {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            let mut b = good.clone();
            let n = (seed % 8) as usize + 1;
            for k in 0..n {
                let pos = ((seed >> (8 * k)) as usize) % b.len();
                b[pos] = (seed >> (3 * k)) as u8;
            }
            b.truncate(MIN_LEN + ((seed >> 40) as usize % (b.len() - MIN_LEN + 1)));
            let _ = parse(&b);
        }
    }

    #[test]
    fn replies_go_to_relay_sender_or_broadcast() {
        let b = request(MessageType::Discover, [1; 6], None, None, None);
        let (m, _, _) = parse(&b).unwrap();
        let zero: SocketAddr = "0.0.0.0:68".parse().unwrap();
        assert_eq!(destination(&m, zero, 68, 67), "255.255.255.255:68".parse().unwrap());
        let lo: SocketAddr = "127.0.0.1:5000".parse().unwrap();
        assert_eq!(destination(&m, lo, 68, 67), lo);
        let mut m2 = m.clone();
        m2.set_giaddr(Ipv4Addr::new(10, 1, 1, 1));
        assert_eq!(destination(&m2, zero, 68, 67), "10.1.1.1:67".parse().unwrap());
    }
}
