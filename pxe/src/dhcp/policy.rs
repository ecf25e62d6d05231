//! The DHCP policy as a chain of small steps (dora's plugin idea). Each step looks at the
//! request context, may fill in part of the answer, and says whether to go on, answer now or
//! stay silent. The chain for a configuration is built once ([`Chain::for_config`]):
//!
//! `Overrides` (per-MAC file; `ignore = true` silences a machine) -> `BootFile` (option 93,
//! user class iPXE) -> in proxy mode `BootServer` (oa-init asking who its boot server is)
//! -> `ProxyDhcp` or `FullDhcp` (which messages are answered, and the address from the lease
//! table) -> the reply is built from the context ([`build_reply`]).

use std::net::{Ipv4Addr, SocketAddr};

use dhcproto::v4::{self, Message, MessageType, Opcode};

use crate::boot::{self, Answer, Client, Override};
use crate::config::{Config, Mode};
use crate::mac::Mac;

use super::{Port, State};

/// What a step decided.
#[derive(Debug, PartialEq, Eq)]
pub enum Action {
    /// Go on with the next step.
    Continue,
    /// Answer now with a message of this type, built from the context.
    Respond(MessageType),
    /// Stay silent; the reason goes to the log.
    NoResponse(String),
}

/// A full-DHCP address decision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    pub ip: Ipv4Addr,
    pub lease_secs: u32,
}

/// Everything known about one request while the chain runs.
pub struct Ctx<'a> {
    pub cfg: &'a Config,
    pub msg: &'a Message,
    pub mac: Mac,
    pub kind: MessageType,
    pub port: Port,
    pub client: Client,
    pub ov: Option<Override>,
    pub boot: Option<Answer>,
    pub grant: Option<Grant>,
    /// Why a NAK is sent.
    pub nak: Option<String>,
    pub leases: Option<&'a std::sync::Mutex<super::leases::Leases>>,
    /// The ACK's lease record: the reply waits for it to be on disk.
    pub durable: Option<super::leases::Durable>,
    /// The reply names this server as the boot server (`siaddr`) and nothing else.
    pub names_boot_server: bool,
}

pub trait Step: Send + Sync {
    fn name(&self) -> &'static str;
    fn run(&self, ctx: &mut Ctx<'_>) -> Action;
}

/// Per-MAC overrides from the machines folder.
pub struct Overrides;
impl Step for Overrides {
    fn name(&self) -> &'static str {
        "overrides"
    }
    fn run(&self, ctx: &mut Ctx<'_>) -> Action {
        let Some(dir) = &ctx.cfg.machines else { return Action::Continue };
        match Override::load(dir, ctx.mac) {
            Ok(Some(o)) if o.ignore => Action::NoResponse("ignored by its override file".into()),
            Ok(o) => {
                ctx.ov = o;
                Action::Continue
            }
            Err(e) => Action::NoResponse(format!("override file is broken: {e}")),
        }
    }
}

/// The boot file for netboot clients (others get none and are left to the next step).
pub struct BootFile;
impl Step for BootFile {
    fn name(&self) -> &'static str {
        "boot-file"
    }
    fn run(&self, ctx: &mut Ctx<'_>) -> Action {
        if !ctx.client.netboots() {
            return Action::Continue;
        }
        match boot::select(ctx.cfg, &ctx.client) {
            Ok(a) => {
                ctx.boot = Some(a);
                Action::Continue
            }
            Err(e) => Action::NoResponse(e),
        }
    }
}

/// proxyDHCP: boot information only, to netboot clients only. DISCOVER on 67 gets an OFFER
/// without an address; REQUEST (or INFORM) on 4011 gets an ACK. Everything else belongs to
/// the network's DHCP server.
pub struct ProxyDhcp;
impl Step for ProxyDhcp {
    fn name(&self) -> &'static str {
        "proxy-dhcp"
    }
    fn run(&self, ctx: &mut Ctx<'_>) -> Action {
        if ctx.boot.is_none() {
            return Action::NoResponse("not a netboot client (no PXEClient/HTTPClient class, no iPXE user class): left to the network's DHCP server".into());
        }
        match (ctx.port, ctx.kind) {
            (Port::Dhcp, MessageType::Discover) => Action::Respond(MessageType::Offer),
            (Port::Proxy, MessageType::Request | MessageType::Inform) => Action::Respond(MessageType::Ack),
            (Port::Dhcp, MessageType::Request) => {
                Action::NoResponse("DHCPREQUEST on port 67 is for the network's DHCP server".into())
            }
            (_, k) => Action::NoResponse(format!("{k:?} is not answered in proxy mode")),
        }
    }
}

/// proxyDHCP for oa-init: a DISCOVER with [`oa_contract::dhcp::BOOT_SERVER_USER_CLASS`]
/// (its root URL is on `next-server`, the boot server) gets an OFFER with no address and no
/// boot file, only this server as `siaddr`; the network's DHCP server leases the address.
/// Answered whatever the output is: the answer only says which host serves it, which is true
/// for a secure netboot UKI and for any other command line naming `next-server` alike, and
/// only an oa-init that needs the boot server sends the class. In full DHCP mode the step is
/// not in the chain: [`FullDhcp`] names this server in the address offer and ACK instead.
pub struct BootServer;
impl Step for BootServer {
    fn name(&self) -> &'static str {
        "boot-server"
    }
    fn run(&self, ctx: &mut Ctx<'_>) -> Action {
        if !ctx.client.asks_boot_server || ctx.boot.is_some() {
            return Action::Continue;
        }
        match (ctx.port, ctx.kind) {
            (Port::Dhcp, MessageType::Discover) => {
                ctx.names_boot_server = true;
                Action::Respond(MessageType::Offer)
            }
            (_, k) => Action::NoResponse(format!(
                "{k:?} from oa-init asking for its boot server: only its DISCOVER is answered, the lease is the network's DHCP server's"
            )),
        }
    }
}

/// Full DHCP: addresses from the pool, boot information for netboot clients.
pub struct FullDhcp;
impl Step for FullDhcp {
    fn name(&self) -> &'static str {
        "full-dhcp"
    }
    fn run(&self, ctx: &mut Ctx<'_>) -> Action {
        if ctx.port == Port::Proxy {
            // A PXE client asking the boot server (4011) directly: boot information only.
            return ProxyDhcp.run(ctx);
        }
        let Some(leases) = ctx.leases else { return Action::NoResponse("no lease table".into()) };
        let mut l = leases.lock().unwrap_or_else(|e| e.into_inner());
        let requested = match ctx.msg.opts().get(v4::OptionCode::RequestedIpAddress) {
            Some(v4::DhcpOption::RequestedIpAddress(ip)) => Some(*ip),
            _ => None,
        };
        let server_id = match ctx.msg.opts().get(v4::OptionCode::ServerIdentifier) {
            Some(v4::DhcpOption::ServerIdentifier(ip)) => Some(*ip),
            _ => None,
        };
        let lease_secs = match &ctx.cfg.mode {
            Mode::Dhcp(p) => p.lease.as_secs().min(u32::MAX as u64) as u32,
            _ => 0,
        };
        // oa-init asking for its boot server learns from the address offer itself that this
        // server is the one (siaddr and the class echoed), so it need not wait for a proxy offer.
        ctx.names_boot_server =
            ctx.client.asks_boot_server && matches!(ctx.kind, MessageType::Discover | MessageType::Request);
        match ctx.kind {
            MessageType::Discover => match l.offer(ctx.mac, requested) {
                Some(ip) => {
                    ctx.grant = Some(Grant { ip, lease_secs });
                    Action::Respond(MessageType::Offer)
                }
                None => Action::NoResponse("the address pool is exhausted".into()),
            },
            MessageType::Request => {
                if server_id.is_some_and(|s| s != ctx.cfg.address) {
                    return Action::NoResponse(format!(
                        "the client chose another server ({})",
                        server_id.unwrap_or(Ipv4Addr::UNSPECIFIED)
                    ));
                }
                let ip = requested.or_else(|| Some(ctx.msg.ciaddr()).filter(|c| !c.is_unspecified()));
                let Some(ip) = ip else { return Action::NoResponse("DHCPREQUEST without an address".into()) };
                match l.ack(ctx.mac, ip) {
                    Ok((d, durable)) => {
                        ctx.durable = Some(durable);
                        ctx.grant = Some(Grant { ip, lease_secs: d.as_secs().min(u32::MAX as u64) as u32 });
                        Action::Respond(MessageType::Ack)
                    }
                    Err(nak) => {
                        ctx.nak = Some(nak.to_string());
                        Action::Respond(MessageType::Nak)
                    }
                }
            }
            MessageType::Release => {
                let released = l.release(ctx.mac, ctx.msg.ciaddr());
                Action::NoResponse(format!(
                    "released {} ({})",
                    ctx.msg.ciaddr(),
                    if released { "lease removed" } else { "no such lease" }
                ))
            }
            MessageType::Decline => Action::NoResponse("declined an address (left leased until it expires)".into()),
            MessageType::Inform => Action::Respond(MessageType::Ack),
            k => Action::NoResponse(format!("{k:?} is not a client message")),
        }
    }
}

/// The steps for a configuration, in order.
pub struct Chain(pub Vec<Box<dyn Step>>);

impl Chain {
    pub fn for_config(cfg: &Config) -> Chain {
        let mut steps: Vec<Box<dyn Step>> = vec![Box::new(Overrides), Box::new(BootFile)];
        match cfg.mode {
            Mode::Dhcp(_) => steps.push(Box::new(FullDhcp)),
            _ => {
                steps.push(Box::new(BootServer));
                steps.push(Box::new(ProxyDhcp));
            }
        }
        Chain(steps)
    }

    /// Run the steps; the first that does not `Continue` decides.
    pub fn run(&self, ctx: &mut Ctx<'_>) -> (Action, &'static str) {
        for s in &self.0 {
            match s.run(ctx) {
                Action::Continue => continue,
                a => return (a, s.name()),
            }
        }
        (Action::NoResponse("no step answered".into()), "end")
    }
}

/// The reply for a decided context.
pub fn build_reply(ctx: &Ctx<'_>, kind: MessageType) -> Message {
    let req = ctx.msg;
    let mut m = Message::default();
    m.set_opcode(Opcode::BootReply)
        .set_htype(req.htype())
        .set_chaddr(req.chaddr())
        .set_xid(req.xid())
        .set_flags(req.flags())
        .set_giaddr(req.giaddr())
        .set_ciaddr(req.ciaddr());
    let o = m.opts_mut();
    o.insert(v4::DhcpOption::MessageType(kind));
    o.insert(v4::DhcpOption::ServerIdentifier(ctx.cfg.address));
    if kind == MessageType::Nak {
        o.insert(v4::DhcpOption::Message(ctx.nak.clone().unwrap_or_default()));
        return m;
    }
    if let (Some(g), Mode::Dhcp(pool)) = (&ctx.grant, &ctx.cfg.mode) {
        m.set_yiaddr(g.ip);
        let o = m.opts_mut();
        o.insert(v4::DhcpOption::AddressLeaseTime(g.lease_secs));
        o.insert(v4::DhcpOption::Renewal(g.lease_secs / 2));
        o.insert(v4::DhcpOption::Rebinding(g.lease_secs / 8 * 7));
        o.insert(v4::DhcpOption::SubnetMask(pool.netmask));
        if let Some(r) = pool.router {
            o.insert(v4::DhcpOption::Router(vec![r]));
        }
        if !pool.dns.is_empty() {
            o.insert(v4::DhcpOption::DomainNameServer(pool.dns.clone()));
        }
    } else if kind == MessageType::Ack && matches!(ctx.cfg.mode, Mode::Dhcp(_)) && ctx.kind == MessageType::Inform {
        if let Mode::Dhcp(pool) = &ctx.cfg.mode {
            m.opts_mut().insert(v4::DhcpOption::SubnetMask(pool.netmask));
        }
    }
    if ctx.names_boot_server && kind != MessageType::Nak {
        // No file: oa-init is past the firmware. The user class echoed says this server is
        // the boot server oa-init asked for (another DHCP server's siaddr says nothing of it).
        m.set_siaddr(ctx.cfg.address);
        let o = m.opts_mut();
        o.insert(v4::DhcpOption::UserClass(oa_contract::dhcp::boot_server_user_class()));
        if ctx.grant.is_none() {
            // A proxy offer, as PXE's carry it.
            o.insert(v4::DhcpOption::ClassIdentifier(b"PXEClient".to_vec()));
        }
    }
    if let Some(b) = &ctx.boot {
        match b {
            Answer::Tftp(f) => {
                m.set_siaddr(ctx.cfg.address);
                m.set_fname_str(f);
            }
            Answer::Http(u) => {
                m.set_siaddr(ctx.cfg.address);
                m.set_fname_str(u);
            }
        }
        let o = m.opts_mut();
        if ctx.client.http {
            o.insert(v4::DhcpOption::ClassIdentifier(b"HTTPClient".to_vec()));
        } else {
            o.insert(v4::DhcpOption::ClassIdentifier(b"PXEClient".to_vec()));
            if ctx.client.rpi.is_some() {
                // The Pi bootloaders want "Raspberry Pi Boot" in the PXE boot menu sub-option.
                o.insert(v4::DhcpOption::VendorExtensions(crate::rpi::option43()));
            } else {
                // PXE vendor options: discovery control 8 = boot the file named here, skip
                // boot server discovery.
                o.insert(v4::DhcpOption::VendorExtensions(vec![6, 1, 8, 255]));
            }
        }
        if let Some(v4::DhcpOption::ClientMachineIdentifier(g)) =
            req.opts().get(v4::OptionCode::ClientMachineIdentifier)
        {
            o.insert(v4::DhcpOption::ClientMachineIdentifier(g.clone()));
        }
    }
    m
}

/// What to do with one packet.
#[derive(Debug)]
pub enum Outcome {
    /// Send `msg`; when `durable` is set (an ACK) only once it resolves with `Ok`. `log` is
    /// empty unless debug logging is on for the dhcp target.
    Reply {
        msg: Message,
        log: String,
        durable: Option<super::leases::Durable>,
    },
    Drop {
        log: String,
    },
    /// Relayed by an agent not given with --relay.
    UnknownRelay {
        giaddr: Ipv4Addr,
        mac: Mac,
    },
    Malformed {
        why: super::Malformed,
    },
}

/// Parse, run the chain, build the reply; the log line (built only when debug logging is on
/// for the dhcp target) names the MAC and what it was given.
pub fn handle(state: &State, cfg: &Config, buf: &[u8], src: SocketAddr, port: Port) -> Outcome {
    handle_with(state, cfg, buf, src, port, tracing::enabled!(target: "dhcp", tracing::Level::DEBUG))
}

/// [`handle`], building the log line when `debug`.
pub fn handle_with(state: &State, cfg: &Config, buf: &[u8], src: SocketAddr, port: Port, debug: bool) -> Outcome {
    let (msg, mac, kind) = match super::parse(buf) {
        Ok(x) => x,
        Err(why) => return Outcome::Malformed { why },
    };
    let giaddr = msg.giaddr();
    if !giaddr.is_unspecified() && !cfg.relays.contains(&giaddr) {
        return Outcome::UnknownRelay { giaddr, mac };
    }
    let client = super::classify(&msg, mac);
    if let SocketAddr::V4(s) = src {
        state.clients.learn_sender(*s.ip(), mac);
    }
    let mut ctx = Ctx {
        cfg,
        msg: &msg,
        mac,
        kind,
        port,
        client,
        ov: None,
        boot: None,
        grant: None,
        nak: None,
        leases: state.leases.as_ref(),
        durable: None,
        names_boot_server: false,
    };
    let (action, step) = state.chain.run(&mut ctx);
    let what = || {
        format!(
            "{mac} {kind:?} on {} arch={} class={}{}{}",
            if port == Port::Dhcp { cfg.dhcp_port } else { cfg.proxy_port },
            ctx.client.arch.map(|a| format!("{a} ({})", boot::arch::name(a))).unwrap_or_else(|| "-".into()),
            if ctx.client.http {
                "HTTPClient"
            } else if ctx.client.pxe {
                "PXEClient"
            } else {
                "-"
            },
            if ctx.client.ipxe { " user-class=iPXE" } else { "" },
            if ctx.client.asks_boot_server {
                format!(" user-class={}", oa_contract::dhcp::BOOT_SERVER_USER_CLASS)
            } else {
                String::new()
            },
        ) + match ctx.client.rpi {
            Some(m) => format!(" Raspberry Pi ({m:?})"),
            None => String::new(),
        }
        .as_str()
    };
    match action {
        Action::Respond(t) => {
            let reply = build_reply(&ctx, t);
            if t == MessageType::Ack {
                if let Some(g) = &ctx.grant {
                    state.clients.learn_lease(g.ip, mac);
                }
            }
            let log = if debug {
                let given = match (&ctx.grant, &ctx.boot) {
                    (Some(g), Some(b)) => format!("address {} lease {} s, boot {b}", g.ip, g.lease_secs),
                    (Some(g), None) if ctx.names_boot_server => {
                        format!("address {} lease {} s, boot server {}", g.ip, g.lease_secs, cfg.address)
                    }
                    (Some(g), None) => format!("address {} lease {} s", g.ip, g.lease_secs),
                    (None, Some(b)) => format!("boot {b}"),
                    (None, None) if ctx.names_boot_server => {
                        format!("boot server {} (proxy offer, no address, no boot file)", cfg.address)
                    }
                    (None, None) => ctx.nak.clone().map(|n| format!("refused: {n}")).unwrap_or_default(),
                };
                format!("{}: {t:?} {given}", what())
            } else {
                String::new()
            };
            Outcome::Reply { msg: reply, log, durable: ctx.durable.take() }
        }
        Action::NoResponse(why) => {
            if kind == MessageType::Release && why.contains("lease removed") {
                state.clients.forget_lease(mac);
            }
            Outcome::Drop { log: if debug { format!("{}: no answer ({step}: {why})", what()) } else { String::new() } }
        }
        Action::Continue => Outcome::Drop { log: if debug { format!("{}: no answer", what()) } else { String::new() } },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::boot::tests::cfg;
    use crate::config::Pool;
    use crate::dhcp::tests::request;
    use dhcproto::{Decodable, Decoder, Encodable};
    use std::sync::Mutex;
    use std::time::Duration;

    const PXE: Option<&str> = Some("PXEClient:Arch:00000:UNDI:002001");
    const MAC: [u8; 6] = [0x52, 0x54, 0, 1, 2, 3];

    /// A pool from `start` to `end` with a ten-minute lease, its lease file in `dir`.
    fn pool(start: &str, end: &str, netmask: &str, dir: &std::path::Path) -> Pool {
        Pool {
            start: start.parse().unwrap(),
            end: end.parse().unwrap(),
            netmask: netmask.parse().unwrap(),
            router: None,
            dns: vec![],
            lease: Duration::from_secs(600),
            leases_file: dir.join("l.json"),
        }
    }

    fn state(c: &Config) -> State {
        let leases = match &c.mode {
            Mode::Dhcp(p) => Some(Mutex::new(super::super::leases::Leases::open(p).unwrap())),
            _ => None,
        };
        State::new(Chain::for_config(c), leases, Default::default())
    }

    fn handle(s: &State, c: &Config, b: &[u8], src: SocketAddr, port: Port) -> Outcome {
        handle_with(s, c, b, src, port, true)
    }

    fn zero() -> SocketAddr {
        "0.0.0.0:68".parse().unwrap()
    }

    fn reply(o: Outcome) -> Message {
        match o {
            Outcome::Reply { msg, log, durable } => {
                if let Some(d) = durable {
                    d.blocking_recv().unwrap().unwrap();
                }
                assert!(log.contains("52:54:00:01:02:03"), "log names the MAC: {log}");
                // What we send parses back.
                Message::decode(&mut Decoder::new(&super::super::encode(&msg))).unwrap()
            }
            other => panic!("expected a reply, got {other:?}"),
        }
    }

    #[test]
    fn proxy_offers_boot_info_without_an_address() {
        let c = cfg();
        let s = state(&c);
        let m = reply(handle(&s, &c, &request(MessageType::Discover, MAC, PXE, Some(0), None), zero(), Port::Dhcp));
        assert_eq!(m.opts().msg_type(), Some(MessageType::Offer));
        assert_eq!(m.yiaddr(), Ipv4Addr::UNSPECIFIED);
        assert_eq!(m.siaddr(), c.address);
        assert_eq!(m.fname_str().unwrap().unwrap().trim_end_matches(char::from(0)), "undionly.kpxe");
        assert_eq!(m.xid(), 0x1234);
        assert!(
            matches!(m.opts().get(v4::OptionCode::ClassIdentifier), Some(v4::DhcpOption::ClassIdentifier(c)) if c == b"PXEClient")
        );
        // UEFI on 4011: ACK with ipxe.efi.
        let m = reply(handle(
            &s,
            &c,
            &request(MessageType::Request, MAC, Some("PXEClient:Arch:00007"), Some(7), None),
            "10.0.0.50:68".parse().unwrap(),
            Port::Proxy,
        ));
        assert_eq!(m.opts().msg_type(), Some(MessageType::Ack));
        assert_eq!(m.fname_str().unwrap().unwrap().trim_end_matches(char::from(0)), "ipxe.efi");
        // iPXE: the script URL.
        let m = reply(handle(
            &s,
            &c,
            &request(MessageType::Discover, MAC, PXE, Some(0), Some(b"iPXE")),
            zero(),
            Port::Dhcp,
        ));
        assert_eq!(
            m.fname_str().unwrap().unwrap().trim_end_matches(char::from(0)),
            "http://10.0.0.1:8080/boot/52-54-00-01-02-03.ipxe"
        );
    }

    /// oa-init's DISCOVER when its root URL is on `next-server`: class `oa-init`, option 77.
    fn asking(mt: MessageType) -> Vec<u8> {
        request(mt, MAC, Some("oa-init"), None, Some(&oa_contract::dhcp::boot_server_user_class()))
    }

    #[test]
    fn proxy_names_itself_the_boot_server_for_oa_init() {
        let c = cfg();
        let s = state(&c);
        let m = reply(handle(&s, &c, &asking(MessageType::Discover), zero(), Port::Dhcp));
        assert_eq!(m.opts().msg_type(), Some(MessageType::Offer));
        assert_eq!(m.yiaddr(), Ipv4Addr::UNSPECIFIED, "the address is the network's DHCP server's");
        assert_eq!(m.siaddr(), c.address);
        assert!(
            matches!(m.opts().get(v4::OptionCode::ServerIdentifier), Some(v4::DhcpOption::ServerIdentifier(a)) if *a == c.address)
        );
        assert!(
            matches!(m.opts().get(v4::OptionCode::ClassIdentifier), Some(v4::DhcpOption::ClassIdentifier(c)) if c == b"PXEClient")
        );
        assert!(m.fname().is_none_or(|f| f.iter().all(|&b| b == 0)), "no boot file: oa-init is not firmware");
        assert!(m.opts().get(v4::OptionCode::VendorExtensions).is_none());
        match handle(&s, &c, &asking(MessageType::Discover), zero(), Port::Dhcp) {
            Outcome::Reply { log, .. } => {
                assert!(log.contains("user-class=oa-boot-server: Offer boot server 10.0.0.1"), "{log}")
            }
            o => panic!("{o:?}"),
        }
        // Its REQUEST goes to the network's DHCP server; on 4011 it has nothing to ask.
        for port in [Port::Dhcp, Port::Proxy] {
            match handle(&s, &c, &asking(MessageType::Request), zero(), port) {
                Outcome::Drop { log } => assert!(log.contains("boot-server"), "{log}"),
                o => panic!("{o:?}"),
            }
        }
        // Without the user class oa-init is left alone, as before.
        let plain = request(MessageType::Discover, MAC, Some("oa-init"), None, None);
        assert!(matches!(handle(&s, &c, &plain, zero(), Port::Dhcp), Outcome::Drop { .. }));
    }

    #[test]
    fn full_dhcp_names_itself_the_boot_server_in_the_address_offer_for_oa_init() {
        let t = tempfile::tempdir().unwrap();
        let mut c = cfg();
        c.mode = Mode::Dhcp(pool("10.0.0.100", "10.0.0.101", "255.255.255.0", t.path()));
        let s = state(&c);
        let echoed = oa_contract::dhcp::boot_server_user_class();
        let mut req = Message::decode(&mut Decoder::new(&asking(MessageType::Request))).unwrap();
        req.opts_mut().insert(v4::DhcpOption::RequestedIpAddress("10.0.0.100".parse().unwrap()));
        for b in [asking(MessageType::Discover), req.to_vec().unwrap()] {
            let m = reply(handle(&s, &c, &b, zero(), Port::Dhcp));
            assert_eq!(m.yiaddr(), "10.0.0.100".parse::<Ipv4Addr>().unwrap());
            assert_eq!(m.siaddr(), c.address);
            assert!(
                matches!(m.opts().get(v4::OptionCode::ServerIdentifier), Some(v4::DhcpOption::ServerIdentifier(a)) if *a == c.address)
            );
            assert!(
                matches!(m.opts().get(v4::OptionCode::UserClass), Some(v4::DhcpOption::UserClass(u)) if *u == echoed)
            );
            assert!(m.opts().get(v4::OptionCode::ClassIdentifier).is_none(), "an address offer, not a proxy one");
        }
        // Without the class: a plain lease, no boot server named.
        let plain = request(MessageType::Discover, MAC, Some("oa-init"), None, None);
        let m = reply(handle(&s, &c, &plain, zero(), Port::Dhcp));
        assert!(m.opts().get(v4::OptionCode::UserClass).is_none() && m.siaddr().is_unspecified());
    }

    #[test]
    fn proxy_leaves_other_clients_and_requests_alone() {
        let c = cfg();
        let s = state(&c);
        assert!(matches!(
            handle(&s, &c, &request(MessageType::Discover, MAC, None, None, None), zero(), Port::Dhcp),
            Outcome::Drop { .. }
        ));
        assert!(matches!(
            handle(&s, &c, &request(MessageType::Discover, MAC, Some("MSFT 5.0"), None, None), zero(), Port::Dhcp),
            Outcome::Drop { .. }
        ));
        assert!(matches!(
            handle(&s, &c, &request(MessageType::Request, MAC, PXE, Some(0), None), zero(), Port::Dhcp),
            Outcome::Drop { .. }
        ));
        assert!(matches!(handle(&s, &c, &[1, 2, 3], zero(), Port::Dhcp), Outcome::Malformed { .. }));
    }

    #[test]
    fn full_dhcp_leases_addresses_and_naks() {
        let t = tempfile::tempdir().unwrap();
        let mut c = cfg();
        c.mode = Mode::Dhcp(Pool {
            router: Some("10.0.0.1".parse().unwrap()),
            ..pool("10.0.0.100", "10.0.0.101", "255.255.255.0", t.path())
        });
        let s = state(&c);
        // A plain (non-PXE) client gets an address and no boot file.
        let m = reply(handle(&s, &c, &request(MessageType::Discover, MAC, None, None, None), zero(), Port::Dhcp));
        assert_eq!(m.yiaddr(), "10.0.0.100".parse::<Ipv4Addr>().unwrap());
        assert!(m.fname().is_none_or(|f| f.is_empty()));
        // An OFFER teaches the name table nothing; only the ACK does.
        assert_eq!(s.clients.leased_to(Mac(MAC)), None);
        let mut req =
            Message::decode(&mut Decoder::new(&request(MessageType::Request, MAC, PXE, Some(0), None))).unwrap();
        req.opts_mut().insert(v4::DhcpOption::RequestedIpAddress("10.0.0.100".parse().unwrap()));
        req.opts_mut().insert(v4::DhcpOption::ServerIdentifier(c.address));
        let m = reply(handle(&s, &c, &super::super::encode(&req), zero(), Port::Dhcp));
        assert_eq!(m.opts().msg_type(), Some(MessageType::Ack));
        assert_eq!(m.yiaddr(), "10.0.0.100".parse::<Ipv4Addr>().unwrap());
        assert_eq!(m.fname_str().unwrap().unwrap().trim_end_matches(char::from(0)), "undionly.kpxe");
        assert!(matches!(m.opts().get(v4::OptionCode::AddressLeaseTime), Some(v4::DhcpOption::AddressLeaseTime(600))));
        assert!(std::fs::read_to_string(t.path().join("l.json")).unwrap().contains("10.0.0.100"));
        assert_eq!(s.clients.leased_to(Mac(MAC)), Some("10.0.0.100".parse().unwrap()));
        // Another machine asking for the same address is refused.
        let other = [0x52, 0x54, 0, 1, 2, 4];
        let mut req2 =
            Message::decode(&mut Decoder::new(&request(MessageType::Request, other, None, None, None))).unwrap();
        req2.opts_mut().insert(v4::DhcpOption::RequestedIpAddress("10.0.0.100".parse().unwrap()));
        match handle(&s, &c, &super::super::encode(&req2), zero(), Port::Dhcp) {
            Outcome::Reply { msg, .. } => assert_eq!(msg.opts().msg_type(), Some(MessageType::Nak)),
            o => panic!("{o:?}"),
        }
    }

    #[test]
    fn overrides_can_silence_a_machine() {
        let t = tempfile::tempdir().unwrap();
        std::fs::write(t.path().join("52-54-00-01-02-03.toml"), "ignore = true\n").unwrap();
        let mut c = cfg();
        c.machines = Some(t.path().to_path_buf());
        let s = state(&c);
        match handle(&s, &c, &request(MessageType::Discover, MAC, PXE, Some(0), None), zero(), Port::Dhcp) {
            Outcome::Drop { log } => assert!(log.contains("ignored"), "{log}"),
            o => panic!("{o:?}"),
        }
    }

    #[test]
    fn relayed_requests_only_through_configured_relays() {
        let mut c = cfg();
        let s = state(&c);
        let mut m =
            Message::decode(&mut Decoder::new(&request(MessageType::Discover, MAC, PXE, Some(0), None))).unwrap();
        m.set_giaddr("10.9.0.1".parse::<Ipv4Addr>().unwrap());
        let b = super::super::encode(&m);
        assert!(matches!(handle(&s, &c, &b, zero(), Port::Dhcp), Outcome::UnknownRelay { .. }));
        c.relays = vec!["10.9.0.1".parse().unwrap()];
        let r = reply(handle(&s, &c, &b, zero(), Port::Dhcp));
        assert_eq!(r.giaddr(), "10.9.0.1".parse::<Ipv4Addr>().unwrap());
    }

    /// Where the time of one DORA goes (`cargo test --release -p oa-pxe --lib per_packet_cost
    /// -- --ignored --nocapture`): parse, the whole handle() for DISCOVER and REQUEST, encode.
    #[test]
    #[ignore]
    fn per_packet_cost() {
        use std::time::Instant;
        let t = tempfile::tempdir().unwrap();
        let mut c = cfg();
        c.mode = Mode::Dhcp(Pool {
            lease: Duration::from_secs(3600),
            ..pool("10.1.0.1", "10.1.255.250", "255.255.0.0", t.path())
        });
        c.address = "10.1.255.254".parse().unwrap();
        let s = state(&c);
        let n = 30000u32;
        let mac = |i: u32| [2, 0, 0, (i >> 16) as u8, (i >> 8) as u8, i as u8];
        let discovers: Vec<Vec<u8>> =
            (0..n).map(|i| request(MessageType::Discover, mac(i), None, None, None)).collect();
        let t0 = Instant::now();
        for d in &discovers {
            std::hint::black_box(super::super::parse(d).unwrap());
        }
        let parse = t0.elapsed() / n;
        let t0 = Instant::now();
        let mut offers = Vec::with_capacity(n as usize);
        for d in &discovers {
            match handle_with(&s, &c, d, zero(), Port::Dhcp, false) {
                Outcome::Reply { msg, .. } => offers.push(msg.yiaddr()),
                o => panic!("{o:?}"),
            }
        }
        let discover = t0.elapsed() / n;
        let requests: Vec<Vec<u8>> = (0..n)
            .map(|i| {
                let mut m =
                    Message::decode(&mut Decoder::new(&request(MessageType::Request, mac(i), None, None, None)))
                        .unwrap();
                m.opts_mut().insert(v4::DhcpOption::RequestedIpAddress(offers[i as usize]));
                m.opts_mut().insert(v4::DhcpOption::ServerIdentifier(c.address));
                super::super::encode(&m)
            })
            .collect();
        let t0 = Instant::now();
        let mut pending = Vec::with_capacity(n as usize);
        let mut replies = Vec::with_capacity(n as usize);
        for r in &requests {
            match handle_with(&s, &c, r, zero(), Port::Dhcp, false) {
                Outcome::Reply { msg, durable: Some(d), .. } => {
                    pending.push(d);
                    replies.push(msg);
                }
                o => panic!("{o:?}"),
            }
        }
        let request = t0.elapsed() / n;
        let t0 = Instant::now();
        for m in &replies {
            std::hint::black_box(super::super::encode(m));
        }
        let encode = t0.elapsed() / n;
        let t0 = Instant::now();
        for d in pending {
            d.blocking_recv().unwrap().unwrap();
        }
        eprintln!(
            "per packet: parse {parse:?}, handle DISCOVER {discover:?}, handle REQUEST {request:?}, encode {encode:?}; all {n} leases durable {:?} after the last REQUEST",
            t0.elapsed()
        );
    }
}
