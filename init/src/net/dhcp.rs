//! A DHCP client for stage 1 (dhcproto): DISCOVER, take the first OFFER that carries an
//! address (proxyDHCP offers carry none), REQUEST it, wait for the ACK. Asked for the boot
//! server too ([`obtain_with_boot_server`], for a root URL on `next-server`), the DISCOVER
//! carries [`oa_contract::dhcp::BOOT_SERVER_USER_CLASS`] and the client listens a little
//! longer ([`PROXY_WINDOW`]) for the proxy offer of `oa serve` that names it ([`Offers`]),
//! unless the address offer came from `oa serve` itself (it echoes the class).
//! UDP on port 68 bound
//! to the interface (SO_BINDTODEVICE), broadcast flag set so replies come as broadcasts
//! before the interface has an address. Bounded: 5 rounds with growing timeouts.
//! [`renewal`] builds the REQUEST of a bound client (RENEWING/REBINDING, RFC 2131 4.3.2) that
//! [`super::lease`] sends at T1 and T2.

use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use dhcproto::v4::{self, Message, MessageType, Opcode};
use dhcproto::{Decodable, Decoder, Encodable};
use nix::libc;

use super::link::Nic;
use crate::console;
use crate::error::{Error, Result};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    pub ip: Ipv4Addr,
    pub prefix: u8,
    pub router: Option<Ipv4Addr>,
    pub dns: Vec<Ipv4Addr>,
    pub server: Ipv4Addr,
    /// `siaddr` (the boot server, "next-server"), when the reply sets one.
    pub next_server: Option<Ipv4Addr>,
    /// Option 51; [`INFINITE`] when the server gave none or said forever.
    pub lease_secs: u32,
    /// T1 (option 58, default half the lease): renew with the server, unicast.
    pub renew_secs: u32,
    /// T2 (option 59, default 7/8 of the lease): rebind with any server, broadcast.
    pub rebind_secs: u32,
}

/// A lease time that never ends (RFC 2132 9.2: 0xffffffff).
pub const INFINITE: u32 = u32::MAX;

/// T1 and T2 of a lease: the server's if given and in order (T1 <= T2 <= lease), else the
/// RFC 2131 defaults, 0.5 and 0.875 of the lease. An infinite lease has infinite T1 and T2.
pub fn times(lease: u32, t1: Option<u32>, t2: Option<u32>) -> (u32, u32) {
    if lease == INFINITE {
        return (INFINITE, INFINITE);
    }
    let t2 = t2.filter(|&t| t <= lease).unwrap_or((lease as u64 * 7 / 8) as u32);
    let t1 = t1.filter(|&t| t <= t2).unwrap_or((lease / 2).min(t2));
    (t1, t2)
}

const ROUNDS: u32 = 5;

fn base(mac: &[u8; 6], xid: u32, mt: MessageType) -> Message {
    let mut m = Message::new_with_id(
        xid,
        Ipv4Addr::UNSPECIFIED,
        Ipv4Addr::UNSPECIFIED,
        Ipv4Addr::UNSPECIFIED,
        Ipv4Addr::UNSPECIFIED,
        mac,
    );
    m.set_flags(v4::Flags::default().set_broadcast());
    let o = m.opts_mut();
    o.insert(v4::DhcpOption::MessageType(mt));
    let mut cid = vec![1u8];
    cid.extend_from_slice(mac);
    o.insert(v4::DhcpOption::ClientIdentifier(cid));
    o.insert(v4::DhcpOption::MaxMessageSize(1500));
    o.insert(v4::DhcpOption::ClassIdentifier(b"oa-init".to_vec()));
    o.insert(v4::DhcpOption::ParameterRequestList(vec![
        v4::OptionCode::SubnetMask,
        v4::OptionCode::Router,
        v4::OptionCode::DomainNameServer,
        v4::OptionCode::AddressLeaseTime,
        v4::OptionCode::ServerIdentifier,
        v4::OptionCode::Renewal,
        v4::OptionCode::Rebinding,
    ]));
    m
}

pub fn discover(mac: &[u8; 6], xid: u32) -> Message {
    base(mac, xid, MessageType::Discover)
}

/// A DISCOVER that also asks `oa serve` (proxyDHCP) to name itself as the boot server.
pub fn discover_asking_boot_server(mac: &[u8; 6], xid: u32) -> Message {
    let mut m = discover(mac, xid);
    m.opts_mut().insert(v4::DhcpOption::UserClass(oa_contract::dhcp::boot_server_user_class()));
    m
}

/// How long to keep listening for a proxy offer after the address offer came: both are
/// answers to the same broadcast and normally arrive within milliseconds of each other.
pub const PROXY_WINDOW: Duration = Duration::from_secs(1);

/// The boot server an offer named.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BootServer {
    pub addr: Ipv4Addr,
    /// Which field named it: `"siaddr"` or `"option 54"`.
    pub field: &'static str,
    /// The offer's server identifier (option 54), else `addr`: who sent it.
    pub from: Ipv4Addr,
    /// A proxy offer (no address); else the address offer of `oa serve --mode dhcp`.
    pub proxy: bool,
}

impl BootServer {
    /// Which offer it came from, for the console.
    pub fn offer(&self) -> &'static str {
        if self.proxy {
            "proxyDHCP offer"
        } else {
            "address offer (oa serve leasing)"
        }
    }
}

/// The boot server an OFFER names: a proxy offer (no address) by its `siaddr`, else its
/// server identifier; an address offer only when it echoes
/// [`oa_contract::dhcp::BOOT_SERVER_USER_CLASS`] (`oa serve` leasing addresses itself: the
/// `siaddr` of any other DHCP server says nothing about oa serve). Otherwise `None`.
pub fn offered_boot_server(m: &Message) -> Option<BootServer> {
    if m.opts().msg_type() != Some(MessageType::Offer) {
        return None;
    }
    let proxy = m.yiaddr().is_unspecified();
    let echoed = matches!(m.opts().get(v4::OptionCode::UserClass),
        Some(v4::DhcpOption::UserClass(u)) if oa_contract::dhcp::asks_boot_server(u));
    if !proxy && !echoed {
        return None;
    }
    let sid = match m.opts().get(v4::OptionCode::ServerIdentifier) {
        Some(v4::DhcpOption::ServerIdentifier(s)) if !s.is_unspecified() => Some(*s),
        _ => None,
    };
    let (addr, field) = match (Some(m.siaddr()).filter(|a| !a.is_unspecified()), sid) {
        (Some(a), _) => (a, "siaddr"),
        (None, Some(s)) => (s, "option 54"),
        (None, None) => return None,
    };
    Some(BootServer { addr, field, from: sid.unwrap_or(addr), proxy })
}

/// The offers of one DISCOVER round, collected until [`Offers::listen_until`] says stop.
#[derive(Debug, Default)]
pub struct Offers {
    /// The first offer with an address: the one to REQUEST.
    pub address: Option<(Message, Instant)>,
    /// From the first proxy offer that named one.
    pub boot_server: Option<BootServer>,
}

impl Offers {
    /// Take one reply to our DISCOVER (already checked for xid and MAC by [`reply_for`]):
    /// the first address offer and the first boot server an offer names
    /// ([`offered_boot_server`]); the rest is ignored.
    pub fn add(&mut self, m: Message, at: Instant) {
        if m.opts().msg_type() != Some(MessageType::Offer) {
            return;
        }
        if self.boot_server.is_none() {
            self.boot_server = offered_boot_server(&m);
        }
        if !m.yiaddr().is_unspecified() && self.address.is_none() {
            self.address = Some((m, at));
        }
    }

    /// Until when to keep listening in a round that ends at `round_end`; `None`: stop now.
    /// Without an address offer, to the round's end (a proxy offer alone makes no lease);
    /// with one, at once, unless the boot server is wanted and not yet named: then until
    /// [`PROXY_WINDOW`] after the address offer.
    pub fn listen_until(&self, round_end: Instant, want_boot_server: bool) -> Option<Instant> {
        match &self.address {
            None => Some(round_end),
            Some(_) if !want_boot_server || self.boot_server.is_some() => None,
            Some((_, at)) => Some(*at + PROXY_WINDOW),
        }
    }
}

pub fn request(mac: &[u8; 6], xid: u32, ip: Ipv4Addr, server: Ipv4Addr) -> Message {
    let mut m = base(mac, xid, MessageType::Request);
    m.opts_mut().insert(v4::DhcpOption::RequestedIpAddress(ip));
    m.opts_mut().insert(v4::DhcpOption::ServerIdentifier(server));
    m
}

/// The REQUEST of a client bound to `ip` that extends its lease (RENEWING at T1, unicast to
/// the server; REBINDING at T2, broadcast): `ciaddr` set, no requested address or server
/// identifier, no broadcast flag (the reply comes to `ip`).
pub fn renewal(mac: &[u8; 6], xid: u32, ip: Ipv4Addr) -> Message {
    let mut m = base(mac, xid, MessageType::Request);
    m.set_flags(v4::Flags::default());
    m.set_ciaddr(ip);
    m
}

/// Is `buf` a reply to us (xid and MAC), and of which type? Malformed packets are `None`.
pub fn reply_for(buf: &[u8], mac: &[u8; 6], xid: u32) -> Option<Message> {
    if buf.len() < 240 || buf[2] != 6 {
        return None;
    }
    let m = Message::decode(&mut Decoder::new(buf)).ok()?;
    (m.opcode() == Opcode::BootReply && m.xid() == xid && m.chaddr() == mac && m.opts().msg_type().is_some())
        .then_some(m)
}

/// The lease an ACK (or OFFER) describes.
pub fn lease_of(m: &Message) -> Option<Lease> {
    let o = m.opts();
    let server = match o.get(v4::OptionCode::ServerIdentifier) {
        Some(v4::DhcpOption::ServerIdentifier(s)) => *s,
        _ => m.siaddr(),
    };
    let prefix = match o.get(v4::OptionCode::SubnetMask) {
        Some(v4::DhcpOption::SubnetMask(mask)) => u32::from(*mask).leading_ones() as u8,
        _ => 24,
    };
    let router = match o.get(v4::OptionCode::Router) {
        Some(v4::DhcpOption::Router(r)) => r.first().copied(),
        _ => None,
    };
    let dns = match o.get(v4::OptionCode::DomainNameServer) {
        Some(v4::DhcpOption::DomainNameServer(d)) => d.clone(),
        _ => vec![],
    };
    let lease_secs = match o.get(v4::OptionCode::AddressLeaseTime) {
        Some(v4::DhcpOption::AddressLeaseTime(s)) if *s > 0 => *s,
        _ => INFINITE,
    };
    let t1 = match o.get(v4::OptionCode::Renewal) {
        Some(v4::DhcpOption::Renewal(s)) => Some(*s),
        _ => None,
    };
    let t2 = match o.get(v4::OptionCode::Rebinding) {
        Some(v4::DhcpOption::Rebinding(s)) => Some(*s),
        _ => None,
    };
    let (renew_secs, rebind_secs) = times(lease_secs, t1, t2);
    (!m.yiaddr().is_unspecified()).then_some(Lease {
        ip: m.yiaddr(),
        prefix,
        router,
        dns,
        server,
        next_server: Some(m.siaddr()).filter(|a| !a.is_unspecified()),
        lease_secs,
        renew_secs,
        rebind_secs,
    })
}

pub(super) fn socket(nic: &Nic) -> Result<UdpSocket> {
    let s = UdpSocket::bind("0.0.0.0:68").map_err(|source| Error::Io {
        op: "bind UDP port 68 for DHCP on",
        path: nic.name.clone(),
        source,
    })?;
    s.set_broadcast(true).map_err(|source| Error::Io { op: "SO_BROADCAST on", path: nic.name.clone(), source })?;
    let name = nic.name.as_bytes();
    // SAFETY: name is valid for name.len() bytes during the call; the fd is open.
    let r = unsafe {
        libc::setsockopt(
            s.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_BINDTODEVICE,
            name.as_ptr() as *const libc::c_void,
            name.len() as u32,
        )
    };
    if r != 0 {
        return Err(Error::Sys { op: "SO_BINDTODEVICE", path: nic.name.clone(), source: nix::errno::Errno::last() });
    }
    Ok(s)
}

pub(super) fn xid(mac: &[u8; 6]) -> u32 {
    let t = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.subsec_nanos()).unwrap_or(0);
    t ^ u32::from_be_bytes([mac[2], mac[3], mac[4], mac[5]])
}

/// The next reply to `xid` for `mac` that comes before `end` (anything else on the socket is
/// skipped); `None` once `end` has passed.
fn next_reply(s: &UdpSocket, mac: &[u8; 6], xid: u32, end: Instant) -> Option<Message> {
    let mut buf = [0u8; 1500];
    loop {
        let left = end.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return None;
        }
        let _ = s.set_read_timeout(Some(left));
        let Ok((n, _)) = s.recv_from(&mut buf) else { continue };
        if let Some(m) = reply_for(&buf[..n], mac, xid) {
            return Some(m);
        }
    }
}

/// Wait up to `d` for the ACK or NAK to `xid`; offers (late or proxy ones) are skipped.
pub(super) fn wait_ack(s: &UdpSocket, mac: &[u8; 6], xid: u32, d: Duration) -> Option<Message> {
    let end = Instant::now() + d;
    while let Some(m) = next_reply(s, mac, xid, end) {
        if matches!(m.opts().msg_type(), Some(MessageType::Ack | MessageType::Nak)) {
            return Some(m);
        }
    }
    None
}

/// Collect the offers to `xid` for up to `d` (see [`Offers::listen_until`]).
fn collect_offers(s: &UdpSocket, mac: &[u8; 6], xid: u32, d: Duration, want_boot_server: bool) -> Offers {
    let round_end = Instant::now() + d;
    let mut offers = Offers::default();
    while let Some(end) = offers.listen_until(round_end, want_boot_server) {
        let Some(m) = next_reply(s, mac, xid, end) else { break };
        offers.add(m, Instant::now());
    }
    offers
}

fn send(s: &UdpSocket, m: &Message, nic: &Nic) -> Result<()> {
    send_to(s, m, nic, SocketAddr::from((Ipv4Addr::BROADCAST, 67)))
}

/// Send `m` to `dst` (the broadcast address or a server's port 67).
pub(super) fn send_to(s: &UdpSocket, m: &Message, nic: &Nic, dst: SocketAddr) -> Result<()> {
    let bytes =
        m.to_vec().map_err(|e| Error::Unexpected { what: "encode a DHCP message".into(), why: e.to_string() })?;
    s.send_to(&bytes, dst).map_err(|source| Error::Io {
        op: if dst.ip() == std::net::IpAddr::V4(Ipv4Addr::BROADCAST) {
            "send DHCP broadcast on"
        } else {
            "send DHCP unicast on"
        },
        path: format!("{} to {dst}", nic.name),
        source,
    })?;
    Ok(())
}

/// Get a lease on `nic`.
pub fn obtain(nic: &Nic) -> Result<Lease> {
    obtain_rounds(nic, false).map(|(l, _)| l)
}

/// Get a lease on `nic` and ask `oa serve` to name the boot server: the lease comes from
/// whichever server offered an address, the boot server (when one answered within
/// [`PROXY_WINDOW`]) from a proxy offer.
pub fn obtain_with_boot_server(nic: &Nic) -> Result<(Lease, Option<BootServer>)> {
    obtain_rounds(nic, true)
}

fn obtain_rounds(nic: &Nic, want_boot_server: bool) -> Result<(Lease, Option<BootServer>)> {
    let s = socket(nic)?;
    let mut timeout = Duration::from_secs(2);
    for round in 1..=ROUNDS {
        let x = xid(&nic.mac);
        let d = if want_boot_server { discover_asking_boot_server(&nic.mac, x) } else { discover(&nic.mac, x) };
        send(&s, &d, nic)?;
        let offers = collect_offers(&s, &nic.mac, x, timeout, want_boot_server);
        if let Some((offer, _)) = &offers.address {
            let Some(l) = lease_of(offer) else { continue };
            send(&s, &request(&nic.mac, x, l.ip, l.server), nic)?;
            match wait_ack(&s, &nic.mac, x, timeout) {
                Some(ack) if ack.opts().msg_type() == Some(MessageType::Ack) => {
                    if let Some(l) = lease_of(&ack) {
                        return Ok((l, offers.boot_server));
                    }
                }
                Some(_) => console::warn(&format!("DHCP: {} refused {} (NAK); starting over", l.server, l.ip)),
                None => console::warn(&format!("DHCP: no answer to the request for {} from {}", l.ip, l.server)),
            }
        } else {
            console::info(&format!("DHCP on {}: no offer yet (round {round} of {ROUNDS})", nic.name));
        }
        timeout = (timeout * 2).min(Duration::from_secs(8));
    }
    Err(Error::Unexpected {
        what: format!("DHCP on {} ({})", nic.name, nic.mac_string()),
        why: format!(
            "no address offered after {ROUNDS} rounds: is a DHCP server (or `oa serve --mode dhcp`) on this network?"
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAC: [u8; 6] = [0x52, 0x54, 0, 1, 2, 3];

    fn reply(mt: MessageType, yiaddr: Ipv4Addr) -> Vec<u8> {
        let mut m =
            Message::new_with_id(7, Ipv4Addr::UNSPECIFIED, yiaddr, Ipv4Addr::UNSPECIFIED, Ipv4Addr::UNSPECIFIED, &MAC);
        m.set_opcode(Opcode::BootReply);
        m.opts_mut().insert(v4::DhcpOption::MessageType(mt));
        m.opts_mut().insert(v4::DhcpOption::ServerIdentifier(Ipv4Addr::new(10, 0, 0, 1)));
        m.opts_mut().insert(v4::DhcpOption::SubnetMask(Ipv4Addr::new(255, 255, 0, 0)));
        m.opts_mut().insert(v4::DhcpOption::Router(vec![Ipv4Addr::new(10, 0, 0, 254)]));
        m.to_vec().unwrap()
    }

    #[test]
    fn requests_carry_what_servers_need() {
        let d = discover(&MAC, 7);
        assert!(d.flags().broadcast());
        assert_eq!(d.opts().msg_type(), Some(MessageType::Discover));
        let r = request(&MAC, 7, Ipv4Addr::new(10, 0, 0, 5), Ipv4Addr::new(10, 0, 0, 1));
        assert!(
            matches!(r.opts().get(v4::OptionCode::RequestedIpAddress), Some(v4::DhcpOption::RequestedIpAddress(ip)) if *ip == Ipv4Addr::new(10, 0, 0, 5))
        );
    }

    #[test]
    fn renewals_are_unicast_requests_from_the_bound_address() {
        let ip = Ipv4Addr::new(10, 0, 0, 5);
        let r = renewal(&MAC, 9, ip);
        assert_eq!(r.opts().msg_type(), Some(MessageType::Request));
        assert_eq!(r.ciaddr(), ip);
        assert!(!r.flags().broadcast(), "the reply is unicast to the bound address");
        assert!(r.opts().get(v4::OptionCode::RequestedIpAddress).is_none(), "RFC 2131 4.3.2: not in RENEWING");
        assert!(r.opts().get(v4::OptionCode::ServerIdentifier).is_none(), "RFC 2131 4.3.2: not in RENEWING");
        // It encodes and a server reads it back as a request from `ip`.
        let back = Message::decode(&mut Decoder::new(&r.to_vec().unwrap())).unwrap();
        assert_eq!((back.ciaddr(), back.xid(), back.chaddr()), (ip, 9, &MAC[..]));
    }

    #[test]
    fn t1_and_t2_default_to_half_and_seven_eighths() {
        assert_eq!(times(3600, None, None), (1800, 3150));
        assert_eq!(times(60, None, None), (30, 52));
        assert_eq!(times(3600, Some(600), Some(1200)), (600, 1200));
        // Out of order or beyond the lease: the defaults (T1 never after T2).
        assert_eq!(times(3600, Some(4000), Some(5000)), (1800, 3150));
        assert_eq!(times(100, Some(90), Some(80)), (50, 80));
        assert_eq!(times(INFINITE, Some(10), Some(20)), (INFINITE, INFINITE));
        // From an ACK: the server's T1/T2, or none given and no lease time = forever.
        let mut m = Message::decode(&mut Decoder::new(&reply(MessageType::Ack, Ipv4Addr::new(10, 0, 3, 4)))).unwrap();
        assert_eq!(
            lease_of(&m).map(|l| (l.lease_secs, l.renew_secs, l.rebind_secs)),
            Some((INFINITE, INFINITE, INFINITE))
        );
        m.opts_mut().insert(v4::DhcpOption::AddressLeaseTime(120));
        m.opts_mut().insert(v4::DhcpOption::Renewal(40));
        assert_eq!(lease_of(&m).map(|l| (l.lease_secs, l.renew_secs, l.rebind_secs)), Some((120, 40, 105)));
    }

    #[test]
    fn leases_from_replies() {
        let b = reply(MessageType::Ack, Ipv4Addr::new(10, 0, 3, 4));
        let m = reply_for(&b, &MAC, 7).unwrap();
        let l = lease_of(&m).unwrap();
        assert_eq!(
            (l.ip, l.prefix, l.router, l.server),
            (Ipv4Addr::new(10, 0, 3, 4), 16, Some(Ipv4Addr::new(10, 0, 0, 254)), Ipv4Addr::new(10, 0, 0, 1))
        );
        // Another transaction, another machine, garbage: not for us.
        assert!(reply_for(&b, &MAC, 8).is_none());
        assert!(reply_for(&b, &[1; 6], 7).is_none());
        assert!(reply_for(&b[..100], &MAC, 7).is_none());
        // A proxyDHCP offer carries no address.
        let p = reply(MessageType::Offer, Ipv4Addr::UNSPECIFIED);
        assert!(lease_of(&reply_for(&p, &MAC, 7).unwrap()).is_none());
    }

    /// A reply to xid 7 for [`MAC`] as [`reply_for`] gives it: `yiaddr`, `siaddr`, option 54.
    fn offer(mt: MessageType, yiaddr: [u8; 4], siaddr: [u8; 4], sid: Option<[u8; 4]>) -> Message {
        let mut m =
            Message::new_with_id(7, Ipv4Addr::UNSPECIFIED, yiaddr.into(), siaddr.into(), Ipv4Addr::UNSPECIFIED, &MAC);
        m.set_opcode(Opcode::BootReply);
        m.opts_mut().insert(v4::DhcpOption::MessageType(mt));
        if let Some(s) = sid {
            m.opts_mut().insert(v4::DhcpOption::ServerIdentifier(s.into()));
        }
        reply_for(&m.to_vec().unwrap(), &MAC, 7).unwrap()
    }

    const NONE: [u8; 4] = [0, 0, 0, 0];
    const DNSMASQ: [u8; 4] = [10, 99, 0, 2];
    const OA_SERVE: [u8; 4] = [10, 99, 0, 1];

    #[test]
    fn only_the_asking_discover_carries_the_boot_server_class() {
        let class = oa_contract::dhcp::boot_server_user_class();
        let d = discover_asking_boot_server(&MAC, 7);
        assert_eq!(d.opts().msg_type(), Some(MessageType::Discover));
        assert!(matches!(d.opts().get(v4::OptionCode::UserClass), Some(v4::DhcpOption::UserClass(u)) if *u == class));
        let back = Message::decode(&mut Decoder::new(&d.to_vec().unwrap())).unwrap();
        assert!(
            matches!(back.opts().get(v4::OptionCode::UserClass), Some(v4::DhcpOption::UserClass(u)) if oa_contract::dhcp::asks_boot_server(u))
        );
        assert!(discover(&MAC, 7).opts().get(v4::OptionCode::UserClass).is_none());
    }

    /// `m` as `oa serve` sends it to oa-init asking for the boot server: the class echoed.
    fn echoing(mut m: Message) -> Message {
        m.opts_mut().insert(v4::DhcpOption::UserClass(oa_contract::dhcp::boot_server_user_class()));
        m
    }

    #[test]
    fn a_proxy_offer_names_the_boot_server_by_siaddr_else_option_54() {
        let b = offered_boot_server(&offer(MessageType::Offer, NONE, OA_SERVE, Some([10, 99, 0, 9]))).unwrap();
        assert_eq!((b.addr, b.field, b.from, b.proxy), (OA_SERVE.into(), "siaddr", [10, 99, 0, 9].into(), true));
        let b = offered_boot_server(&offer(MessageType::Offer, NONE, NONE, Some(OA_SERVE))).unwrap();
        assert_eq!((b.addr, b.field, b.from), (OA_SERVE.into(), "option 54", OA_SERVE.into()));
        // Another server's address offer (its siaddr is its own next-server), an ACK, or an
        // offer naming nobody: no boot server.
        assert!(offered_boot_server(&offer(MessageType::Offer, [10, 99, 0, 50], OA_SERVE, Some(DNSMASQ))).is_none());
        assert!(offered_boot_server(&offer(MessageType::Ack, NONE, OA_SERVE, Some(OA_SERVE))).is_none());
        assert!(offered_boot_server(&offer(MessageType::Offer, NONE, NONE, None)).is_none());
        // oa serve's own address offer, the class echoed.
        let b = offered_boot_server(&echoing(offer(MessageType::Offer, [10, 99, 0, 50], OA_SERVE, Some(OA_SERVE))));
        assert_eq!(b.map(|b| (b.addr, b.proxy)), Some((OA_SERVE.into(), false)));
    }

    #[test]
    fn an_address_offer_from_oa_serve_ends_the_round_at_once() {
        let t0 = Instant::now();
        let round_end = t0 + Duration::from_secs(2);
        let mut o = Offers::default();
        o.add(echoing(offer(MessageType::Offer, [10, 99, 0, 50], OA_SERVE, Some(OA_SERVE))), t0);
        assert_eq!(o.listen_until(round_end, true), None, "no proxy window to wait out");
        assert_eq!(o.address.as_ref().map(|(m, _)| m.yiaddr()), Some([10, 99, 0, 50].into()));
        assert_eq!(o.boot_server.map(|b| b.addr), Some(OA_SERVE.into()));
    }

    #[test]
    fn offers_wait_for_the_proxy_only_when_asked_and_only_briefly() {
        let t0 = Instant::now();
        let round_end = t0 + Duration::from_secs(2);
        let address = || offer(MessageType::Offer, [10, 99, 0, 50], NONE, Some(DNSMASQ));
        let proxy = || offer(MessageType::Offer, NONE, OA_SERVE, Some(OA_SERVE));
        let mut o = Offers::default();
        assert_eq!(o.listen_until(round_end, true), Some(round_end));
        o.add(address(), t0);
        // Not asked: the address offer ends the round at once, as before.
        assert_eq!(o.listen_until(round_end, false), None);
        // Asked: a short window after the address offer, then the proxy offer ends it.
        assert_eq!(o.listen_until(round_end, true), Some(t0 + PROXY_WINDOW));
        o.add(proxy(), t0 + Duration::from_millis(3));
        assert_eq!(o.listen_until(round_end, true), None);
        let (m, _) = o.address.as_ref().unwrap();
        assert_eq!(lease_of(m).map(|l| (l.ip, l.server)), Some(([10, 99, 0, 50].into(), DNSMASQ.into())));
        assert_eq!(o.boot_server.map(|b| b.addr), Some(OA_SERVE.into()));
    }

    #[test]
    fn a_proxy_offer_alone_makes_no_lease_and_the_first_of_each_kind_counts() {
        let t0 = Instant::now();
        let round_end = t0 + Duration::from_secs(2);
        let mut o = Offers::default();
        o.add(offer(MessageType::Offer, NONE, OA_SERVE, Some(OA_SERVE)), t0);
        assert!(o.address.is_none());
        assert_eq!(o.listen_until(round_end, true), Some(round_end), "still waiting for an address");
        // A later proxy offer from another server, an ACK out of turn: ignored.
        o.add(offer(MessageType::Offer, NONE, [10, 99, 0, 7], None), t0);
        o.add(offer(MessageType::Ack, [10, 99, 0, 66], NONE, Some(DNSMASQ)), t0);
        assert!(o.address.is_none());
        assert_eq!(o.boot_server.map(|b| b.addr), Some(OA_SERVE.into()));
        // The first address offer is the one requested; it ends the round (the proxy came first).
        o.add(offer(MessageType::Offer, [10, 99, 0, 50], NONE, Some(DNSMASQ)), t0);
        o.add(offer(MessageType::Offer, [10, 99, 0, 51], NONE, Some([10, 99, 0, 3])), t0);
        assert_eq!(o.address.as_ref().map(|(m, _)| m.yiaddr()), Some([10, 99, 0, 50].into()));
        assert_eq!(o.listen_until(round_end, true), None);
    }
}
