//! Keeping the DHCP lease (RFC 2131 4.4.5): a thread that sleeps until T1, then REQUESTs an
//! extension from the server that granted the lease (RENEWING, unicast), from T2 from any
//! server (REBINDING, broadcast), and gives the address up when the lease ends or a server
//! says NAK. Every ACK refreshes the kernel address's lifetimes (IFA_CACHEINFO), so the kernel
//! also drops the address at expiry if this thread is not there to do it. A lease without end
//! is never renewed.
//!
//! States: bound (until T1) -> renewing (T1..T2) -> rebinding (T2..end) -> expired; an ACK
//! brings it back to bound with the new times, a NAK or the end removes the address, after
//! which the thread asks for a new lease (DISCOVER) every [`REACQUIRE`] until it has one.
//!
//! Stage 1 starts the thread after DHCP; exec of stage 2 ends it, so what it holds is kept in
//! [`STATE`] (tmpfs /run, moved into the new root by switch_root) and stage 2 starts it again
//! from there ([`resume`]). Times are CLOCK_BOOTTIME seconds, one clock for both stages that
//! neither NTP nor a suspend can move back.

use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use dhcproto::v4::MessageType;
use nix::libc;
use oa_contract::ConsoleLine;
use serde_json::{json, Value};

use super::dhcp::{self, Lease, INFINITE};
use super::link::Nic;
use super::netlink::Netlink;

/// What the lease thread holds, for stage 2 to pick up (init-internal, not part of the
/// builder/init contract).
pub const STATE: &str = "/run/oa/lease.json";

/// How long to wait for an answer at least (RFC 2131 says 60 s; leases of a minute exist).
const RETRY_MIN: u64 = 4;
/// After the address was lost: how long between attempts to get a new lease.
const REACQUIRE: Duration = Duration::from_secs(30);

/// Set once stage 1 hands the lease to a systemd root ([`hand_over`]): the thread then leaves
/// the address alone until exec ends it.
static HANDED_OVER: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

fn handed_over() -> bool {
    HANDED_OVER.load(std::sync::atomic::Ordering::SeqCst)
}

/// A lease held on an interface since `acked_at` (CLOCK_BOOTTIME seconds when the REQUEST
/// that got the ACK was sent: the lease runs from there).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Held {
    pub nic: Nic,
    pub lease: Lease,
    pub acked_at: u64,
}

/// Where a lease is `elapsed` seconds after its ACK.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Never ends: nothing to do.
    Forever,
    /// Until T1: sleep this many seconds.
    Bound(u64),
    /// T1..T2: ask the server; this many seconds to T2.
    Renewing(u64),
    /// T2..end: ask any server; this many seconds to the end.
    Rebinding(u64),
    Expired,
}

pub fn phase(l: &Lease, elapsed: u64) -> Phase {
    if l.lease_secs == INFINITE {
        return Phase::Forever;
    }
    let (t1, t2, end) = (l.renew_secs as u64, l.rebind_secs as u64, l.lease_secs as u64);
    if elapsed < t1 {
        Phase::Bound(t1 - elapsed)
    } else if elapsed < t2 {
        Phase::Renewing(t2 - elapsed)
    } else if elapsed < end {
        Phase::Rebinding(end - elapsed)
    } else {
        Phase::Expired
    }
}

/// How long to wait for an answer to a REQUEST sent `left` seconds before the end of the
/// phase (RFC 2131 4.4.5: half the time left, here at least [`RETRY_MIN`], never past the end).
pub fn retry_after(left: u64) -> u64 {
    (left / 2).max(RETRY_MIN).min(left).max(1)
}

/// CLOCK_BOOTTIME in whole seconds.
pub fn now() -> u64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: ts is a valid, writable timespec for the duration of the call.
    let r = unsafe { libc::clock_gettime(libc::CLOCK_BOOTTIME, &mut ts) };
    if r == 0 {
        ts.tv_sec.max(0) as u64
    } else {
        0
    }
}

fn ip_list(v: &[Ipv4Addr]) -> Value {
    Value::Array(v.iter().map(|a| Value::String(a.to_string())).collect())
}

impl Held {
    pub fn to_json(&self) -> Value {
        let l = &self.lease;
        json!({
            "iface": self.nic.name,
            "index": self.nic.index,
            "mac": self.nic.mac_string(),
            "ip": l.ip.to_string(),
            "prefix": l.prefix,
            "router": l.router.map(|r| r.to_string()),
            "dns": ip_list(&l.dns),
            "server": l.server.to_string(),
            "next_server": l.next_server.map(|r| r.to_string()),
            "lease_secs": l.lease_secs,
            "renew_secs": l.renew_secs,
            "rebind_secs": l.rebind_secs,
            "acked_at": self.acked_at,
        })
    }

    pub fn from_json(v: &Value) -> Option<Held> {
        let s = |k: &str| v.get(k).and_then(Value::as_str);
        let n = |k: &str| v.get(k).and_then(Value::as_u64);
        let ip = |k: &str| s(k).and_then(|a| a.parse::<Ipv4Addr>().ok());
        let nic = Nic {
            name: s("iface")?.to_string(),
            index: u32::try_from(n("index")?).ok()?,
            mac: super::link::parse_mac(s("mac")?)?,
        };
        let lease = Lease {
            ip: ip("ip")?,
            prefix: u8::try_from(n("prefix")?).ok().filter(|p| *p <= 32)?,
            router: ip("router"),
            dns: v
                .get("dns")
                .and_then(Value::as_array)
                .map(|a| a.iter().filter_map(|x| x.as_str()?.parse().ok()).collect())
                .unwrap_or_default(),
            server: ip("server")?,
            next_server: ip("next_server"),
            lease_secs: u32::try_from(n("lease_secs")?).ok()?,
            renew_secs: u32::try_from(n("renew_secs")?).ok()?,
            rebind_secs: u32::try_from(n("rebind_secs")?).ok()?,
        };
        Some(Held { nic, lease, acked_at: n("acked_at")? })
    }

    fn save(&self) {
        let tmp = format!("{STATE}.tmp");
        let text = self.to_json().to_string();
        if let Err(e) = std::fs::write(&tmp, text).and_then(|_| std::fs::rename(&tmp, STATE)) {
            say(ConsoleLine::Warning(&format!("cannot keep the DHCP lease in {STATE} for stage 2: {e}")));
        }
    }

    fn what(&self) -> String {
        format!("lease of {} on {}", self.lease.ip, self.nic.name)
    }
}

/// One console line with a single write(2) and no lock: this thread must not hold the stdout
/// lock while PID 1 forks (the child may print before exec).
fn say(l: ConsoleLine<'_>) {
    let line = format!("{l}\n");
    let _ = nix::unistd::write(std::io::stdout(), line.as_bytes());
}

/// Give the address (and the routes through it) to the kernel for `l`'s lifetime.
pub fn configure(nl: &mut Netlink, nic: &Nic, l: &Lease) -> std::result::Result<(), (&'static str, nix::errno::Errno)> {
    nl.set_address(nic.index, l.ip, l.prefix, l.lease_secs).map_err(|e| ("add address", e))?;
    if let Some(r) = l.router {
        nl.add_default_route(nic.index, r).map_err(|e| ("add default route", e))?;
    }
    Ok(())
}

/// Stage 1, after DHCP: keep `held` in [`STATE`] and keep it renewed.
pub fn start(held: Held) {
    if let Some(dir) = std::path::Path::new(STATE).parent() {
        let _ = std::fs::create_dir_all(dir);
    }
    held.save();
    spawn(held);
}

/// Stage 2: pick up the lease stage 1 kept, if any (netboot only).
pub fn resume() {
    let Ok(text) = std::fs::read_to_string(STATE) else { return };
    match serde_json::from_str::<Value>(&text).ok().as_ref().and_then(Held::from_json) {
        Some(h) => spawn(h),
        None => say(ConsoleLine::Warning(&format!("{STATE} is unreadable: the DHCP lease is not renewed"))),
    }
}

/// Stage 1, before exec of a root whose init is not oa-init (systemd): nobody will renew the
/// lease, so the address is kept without a lifetime, as before leases were kept, for the root's
/// own network configuration to take over.
pub fn hand_over() {
    HANDED_OVER.store(true, std::sync::atomic::Ordering::SeqCst);
    let Some(h) = std::fs::read_to_string(STATE)
        .ok()
        .and_then(|t| serde_json::from_str::<Value>(&t).ok())
        .and_then(|v| Held::from_json(&v))
    else {
        return;
    };
    let _ = std::fs::remove_file(STATE);
    let kept = Netlink::open().map_err(|e| e.to_string()).and_then(|mut nl| {
        nl.set_address(h.nic.index, h.lease.ip, h.lease.prefix, INFINITE).map_err(|e| e.to_string())
    });
    match kept {
        Ok(()) => say(ConsoleLine::Info(&format!(
            "{} from {} left to the root filesystem's network configuration (not renewed by oa-init)",
            h.what(),
            h.lease.server
        ))),
        Err(e) => say(ConsoleLine::Warning(&format!("{}: keeping the address for the root: {e}", h.what()))),
    }
}

fn spawn(held: Held) {
    if phase(&held.lease, 0) == Phase::Forever {
        return;
    }
    let name = held.nic.name.clone();
    if let Err(e) = std::thread::Builder::new().name("dhcp-lease".into()).spawn(move || keep(held)) {
        say(ConsoleLine::Warning(&format!("cannot start the DHCP lease thread for {name}: {e}")));
    }
}

/// What came of one REQUEST.
enum Answer {
    Ack(Lease),
    Nak(Ipv4Addr, String),
    None,
}

/// Send the renewal REQUEST to `dst` and wait up to `secs` for the ACK or NAK.
fn ask(h: &Held, dst: SocketAddr, secs: u64) -> crate::error::Result<Answer> {
    let s = dhcp::socket(&h.nic)?;
    let x = dhcp::xid(&h.nic.mac);
    dhcp::send_to(&s, &dhcp::renewal(&h.nic.mac, x, h.lease.ip), &h.nic, dst)?;
    let Some(m) = dhcp::wait_ack(&s, &h.nic.mac, x, Duration::from_secs(secs)) else {
        return Ok(Answer::None);
    };
    let server = dhcp::lease_of(&m).map(|l| l.server).unwrap_or(m.siaddr());
    if m.opts().msg_type() == Some(MessageType::Nak) {
        let why = match m.opts().get(dhcproto::v4::OptionCode::Message) {
            Some(dhcproto::v4::DhcpOption::Message(t)) => t.clone(),
            _ => String::new(),
        };
        let from = match m.opts().get(dhcproto::v4::OptionCode::ServerIdentifier) {
            Some(dhcproto::v4::DhcpOption::ServerIdentifier(s)) => *s,
            _ => server,
        };
        return Ok(Answer::Nak(from, why));
    }
    match dhcp::lease_of(&m) {
        Some(l) if l.ip == h.lease.ip => Ok(Answer::Ack(l)),
        Some(l) => Ok(Answer::Nak(l.server, format!("the ACK is for another address, {}", l.ip))),
        None => Ok(Answer::None),
    }
}

/// The thread: renew until the lease is lost, then get a new one, forever.
fn keep(mut h: Held) {
    loop {
        renew(&mut h);
        h = reacquire(&h.nic);
    }
}

/// Keep `h` for as long as ACKs come; returns when the address was removed.
fn renew(h: &mut Held) {
    loop {
        let sent = now();
        let (dst, left) = match phase(&h.lease, sent.saturating_sub(h.acked_at)) {
            Phase::Forever => loop {
                std::thread::park();
            },
            Phase::Bound(s) => {
                std::thread::sleep(Duration::from_secs(s));
                continue;
            }
            Phase::Renewing(left) => (SocketAddr::from((h.lease.server, 67)), left),
            Phase::Rebinding(left) => (SocketAddr::from((Ipv4Addr::BROADCAST, 67)), left),
            Phase::Expired if handed_over() => loop {
                std::thread::park();
            },
            Phase::Expired => {
                let secs = sent.saturating_sub(h.acked_at);
                drop_address(h, &format!("expired ({secs} s after the last ACK from {})", h.lease.server));
                return;
            }
        };
        let wait = retry_after(left);
        let answer = ask(h, dst, wait);
        if handed_over() {
            loop {
                std::thread::park();
            }
        }
        match answer {
            Ok(Answer::Ack(l)) => {
                h.lease = l;
                h.acked_at = sent;
                let refreshed = Netlink::open()
                    .map_err(|e| e.to_string())
                    .and_then(|mut nl| configure(&mut nl, &h.nic, &h.lease).map_err(|(op, e)| format!("{op}: {e}")));
                if let Err(e) = refreshed {
                    say(ConsoleLine::Warning(&format!(
                        "{} renewed but the address lifetime was not refreshed: {e}",
                        h.what()
                    )));
                }
                h.save();
                say(ConsoleLine::Info(&format!(
                    "{} renewed by {} ({}): {} s, T1 {} s, T2 {} s",
                    h.what(),
                    h.lease.server,
                    if dst.ip() == std::net::IpAddr::V4(Ipv4Addr::BROADCAST) { "rebinding" } else { "renewing" },
                    h.lease.lease_secs,
                    h.lease.renew_secs,
                    h.lease.rebind_secs
                )));
            }
            Ok(Answer::Nak(server, why)) => {
                let why = if why.is_empty() { String::new() } else { format!(": {why}") };
                drop_address(h, &format!("NAKed by {server}{why}"));
                return;
            }
            Ok(Answer::None) => {}
            Err(e) => {
                say(ConsoleLine::Warning(&format!("{}: renewal request to {dst}: {e}", h.what())));
                std::thread::sleep(Duration::from_secs(wait));
            }
        }
    }
}

/// The lease is gone: remove the address (the kernel may have already) and say so.
fn drop_address(h: &Held, why: &str) {
    let removed = Netlink::open().map_err(|e| e.to_string()).and_then(|mut nl| {
        nl.del_address(h.nic.index, h.lease.ip, h.lease.prefix).map_err(|e| format!("delete address: {e}"))
    });
    let _ = std::fs::remove_file(STATE);
    match removed {
        Ok(()) => say(ConsoleLine::Warning(&format!("{} {why}: address removed, asking for a new lease", h.what()))),
        Err(e) => say(ConsoleLine::Warning(&format!("{} {why}; removing the address failed: {e}", h.what()))),
    }
}

/// DISCOVER again until a server gives a lease; configure and keep it.
fn reacquire(nic: &Nic) -> Held {
    loop {
        let sent = now();
        match dhcp::obtain(nic) {
            Ok(lease) => {
                let mut nl = Netlink::open();
                let r = nl
                    .as_mut()
                    .map_err(|e| e.to_string())
                    .and_then(|nl| configure(nl, nic, &lease).map_err(|(op, e)| format!("{op}: {e}")));
                match r {
                    Ok(()) => {
                        let h = Held { nic: nic.clone(), lease, acked_at: sent };
                        say(ConsoleLine::Info(&format!(
                            "new {} from DHCP server {} ({} s)",
                            h.what(),
                            h.lease.server,
                            h.lease.lease_secs
                        )));
                        h.save();
                        return h;
                    }
                    Err(e) => say(ConsoleLine::Warning(&format!("new lease on {}: {e}", nic.name))),
                }
            }
            Err(e) => say(ConsoleLine::Warning(&format!("no new lease on {} yet: {e}", nic.name))),
        }
        std::thread::sleep(REACQUIRE);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lease(secs: u32) -> Lease {
        let (renew_secs, rebind_secs) = dhcp::times(secs, None, None);
        Lease {
            ip: Ipv4Addr::new(10, 0, 0, 5),
            prefix: 24,
            router: Some(Ipv4Addr::new(10, 0, 0, 1)),
            dns: vec![Ipv4Addr::new(10, 0, 0, 53)],
            server: Ipv4Addr::new(10, 0, 0, 1),
            next_server: Some(Ipv4Addr::new(10, 0, 0, 2)),
            lease_secs: secs,
            renew_secs,
            rebind_secs,
        }
    }

    #[test]
    fn phases_follow_t1_t2_and_the_end() {
        let l = lease(3600);
        assert_eq!(phase(&l, 0), Phase::Bound(1800));
        assert_eq!(phase(&l, 1799), Phase::Bound(1));
        assert_eq!(phase(&l, 1800), Phase::Renewing(1350));
        assert_eq!(phase(&l, 3149), Phase::Renewing(1));
        assert_eq!(phase(&l, 3150), Phase::Rebinding(450));
        assert_eq!(phase(&l, 3599), Phase::Rebinding(1));
        assert_eq!(phase(&l, 3600), Phase::Expired);
        assert_eq!(phase(&l, u64::MAX), Phase::Expired);
        assert_eq!(phase(&lease(INFINITE), u64::MAX), Phase::Forever, "an infinite lease is never renewed");
    }

    #[test]
    fn retries_halve_the_time_left_but_not_below_the_floor() {
        assert_eq!(retry_after(1350), 675);
        assert_eq!(retry_after(22), 11);
        assert_eq!(retry_after(6), 4, "at least RETRY_MIN");
        assert_eq!(retry_after(3), 3, "never past the end of the phase");
        assert_eq!(retry_after(0), 1);
        // A 60 s lease renewed at T1 = 30 s, unanswered: requests at 30, 41, 46.5.. s, then
        // rebinding at 52 s, and the end at 60 s; at most a few requests, never past the end.
        let l = lease(60);
        let mut t = 30;
        let mut sent = vec![];
        while let Phase::Renewing(left) | Phase::Rebinding(left) = phase(&l, t) {
            sent.push(t);
            t += retry_after(left);
        }
        assert_eq!(sent, vec![30, 41, 46, 50, 52, 56]);
        assert_eq!(phase(&l, t), Phase::Expired);
        assert_eq!(t, 60);
    }

    #[test]
    fn the_state_file_round_trips() {
        let h = Held {
            nic: Nic { name: "eth0".into(), index: 2, mac: [0x52, 0x54, 0, 1, 2, 3] },
            lease: lease(60),
            acked_at: 17,
        };
        let v: Value = serde_json::from_str(&h.to_json().to_string()).unwrap();
        assert_eq!(Held::from_json(&v), Some(h.clone()));
        let mut none = h.clone();
        none.lease.router = None;
        none.lease.dns.clear();
        assert_eq!(Held::from_json(&none.to_json()), Some(none));
        // Damaged: missing or out-of-range fields are refused, not guessed.
        let mut bad = h.to_json();
        bad["prefix"] = json!(33);
        assert_eq!(Held::from_json(&bad), None);
        bad = h.to_json();
        bad.as_object_mut().unwrap().remove("server");
        assert_eq!(Held::from_json(&bad), None);
    }
}
