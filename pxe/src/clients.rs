//! Which MAC address uses which IPv4 address. Two kinds of knowledge, kept apart because they
//! are not equally trustworthy:
//! - a **lease**: this server ACKed that address to that MAC (full DHCP). Authoritative; it is
//!   what `/config/<mac>` is answered against (http.rs).
//! - a **sender**: a unicast DHCP packet from that MAC arrived from that source address (the IP
//!   layer's, not a field of the packet). Good for log lines; never overrides a lease.
//!
//! Packet fields (ciaddr, yiaddr a client claims) are never learnt: any host can write them.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::{Arc, Mutex};

use crate::mac::Mac;

/// Bounded: each table forgets everything once it holds this many entries (a flood of random
/// MACs cannot grow it without bound; leases are re-learnt on their next renewal).
const MAX: usize = 65536;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// This server leased the address to the MAC.
    Lease,
    /// A unicast packet from the MAC came from the address.
    Sender,
}

#[derive(Default)]
struct Tables {
    by_ip: HashMap<Ipv4Addr, (Mac, Source)>,
    leased: HashMap<Mac, Ipv4Addr>,
}

#[derive(Clone, Default)]
pub struct Clients(Arc<Mutex<Tables>>);

impl Clients {
    fn lock(&self) -> std::sync::MutexGuard<'_, Tables> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// This server ACKed `ip` to `mac`.
    pub fn learn_lease(&self, ip: Ipv4Addr, mac: Mac) {
        if ip.is_unspecified() || ip.is_broadcast() {
            return;
        }
        let mut t = self.lock();
        if t.by_ip.len() >= MAX || t.leased.len() >= MAX {
            *t = Tables::default();
        }
        if let Some(old) = t.leased.insert(mac, ip) {
            if old != ip {
                t.by_ip.remove(&old);
            }
        }
        if let Some((other, Source::Lease)) = t.by_ip.get(&ip).copied() {
            if other != mac {
                t.leased.remove(&other);
            }
        }
        t.by_ip.insert(ip, (mac, Source::Lease));
    }

    /// The lease of `mac` ended (released, expired or taken back).
    pub fn forget_lease(&self, mac: Mac) {
        let mut t = self.lock();
        if let Some(ip) = t.leased.remove(&mac) {
            if matches!(t.by_ip.get(&ip), Some((m, Source::Lease)) if *m == mac) {
                t.by_ip.remove(&ip);
            }
        }
    }

    /// A unicast packet from `mac` came from `ip` (the socket's source address).
    pub fn learn_sender(&self, ip: Ipv4Addr, mac: Mac) {
        if ip.is_unspecified() || ip.is_broadcast() {
            return;
        }
        let mut t = self.lock();
        if matches!(t.by_ip.get(&ip), Some((_, Source::Lease))) {
            return;
        }
        if t.by_ip.len() >= MAX {
            t.by_ip.retain(|_, (_, s)| *s == Source::Lease);
        }
        t.by_ip.insert(ip, (mac, Source::Sender));
    }

    /// The address this server leased to `mac`, if any.
    pub fn leased_to(&self, mac: Mac) -> Option<Ipv4Addr> {
        self.lock().leased.get(&mac).copied()
    }

    /// Who uses `ip`, and how we know.
    pub fn at(&self, ip: Ipv4Addr) -> Option<(Mac, Source)> {
        self.lock().by_ip.get(&ip).copied()
    }

    /// For log lines: `52:54:00:..` when this server leased the address, `52:54:00:.. (unverified)`
    /// when only a packet from the address named that MAC (anyone can claim any MAC), `?` when
    /// the address was never seen in DHCP.
    pub fn name(&self, ip: IpAddr) -> String {
        let v4 = match ip {
            IpAddr::V4(v4) => Some(v4),
            IpAddr::V6(v6) => v6.to_ipv4_mapped(),
        };
        match v4.and_then(|a| self.at(a)) {
            Some((m, Source::Lease)) => m.to_string(),
            Some((m, Source::Sender)) => format!("{m} (unverified)"),
            None => "?".into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lease_wins_over_a_sender_and_moves_with_the_mac() {
        let c = Clients::default();
        let a: Mac = "52:54:00:00:00:01".parse().unwrap();
        let b: Mac = "52:54:00:00:00:02".parse().unwrap();
        let ip1 = Ipv4Addr::new(10, 0, 0, 1);
        let ip2 = Ipv4Addr::new(10, 0, 0, 2);
        c.learn_lease(ip1, a);
        c.learn_sender(ip1, b);
        assert_eq!(c.at(ip1), Some((a, Source::Lease)));
        assert_eq!(c.leased_to(a), Some(ip1));
        c.learn_lease(ip2, a);
        assert_eq!(c.at(ip1), None);
        assert_eq!(c.leased_to(a), Some(ip2));
        c.learn_lease(ip2, b);
        assert_eq!(c.leased_to(a), None);
        assert_eq!(c.leased_to(b), Some(ip2));
        c.forget_lease(b);
        assert_eq!(c.at(ip2), None);
        c.learn_sender(ip2, a);
        assert_eq!(c.name(IpAddr::V4(ip2)), format!("{a} (unverified)"));
        c.learn_lease(ip2, a);
        assert_eq!(c.name(IpAddr::V4(ip2)), a.to_string());
    }
}
