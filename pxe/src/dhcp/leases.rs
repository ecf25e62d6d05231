//! Full-DHCP address leases: allocation from the pool, a bounded table of offers, and the
//! leases themselves, kept on disk in the journal ([`super::journal`]).
//!
//! Only what was offered to a MAC (or is leased to it: renewal, rebinding, INIT-REBOOT) is
//! acknowledged. The offer table holds at most one offer per pool address: when it is full
//! the oldest offer goes, so a flood of DISCOVERs from random MACs cannot keep a real client
//! from an address.

use std::collections::{HashMap, VecDeque};
use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use crate::config::Pool;
use crate::mac::Mac;

use super::journal::{self, Journal};
pub use super::journal::{Durable, Lease};

/// How long an offered address is held for the client that was offered it.
const OFFER_HOLD: Duration = Duration::from_secs(60);
/// Most offers held at once, whatever the pool size.
const MAX_OFFERS: usize = 65536;

#[derive(Debug, Clone, Copy)]
struct Offer {
    ip: Ipv4Addr,
    at: Instant,
    seq: u64,
}

pub struct Leases {
    pool: Pool,
    by_mac: HashMap<Mac, Lease>,
    by_ip: HashMap<Ipv4Addr, Mac>,
    offered: HashMap<Mac, Offer>,
    offered_ip: HashMap<Ipv4Addr, Mac>,
    /// Offers oldest first (entries whose seq no longer matches are stale).
    order: VecDeque<(u64, Mac)>,
    seq: u64,
    cap: usize,
    /// Where the search for a free address goes on from.
    cursor: u32,
    journal: Journal,
}

impl std::fmt::Debug for Leases {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Leases").field("leases", &self.by_mac.len()).field("offers", &self.offered.len()).finish()
    }
}

#[derive(Debug, PartialEq, Eq)]
pub enum Nak {
    NotInPool(Ipv4Addr),
    Taken(Ipv4Addr),
    /// Neither offered to this MAC nor leased to it.
    NotOffered(Ipv4Addr),
}

impl std::fmt::Display for Nak {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Nak::NotInPool(ip) => write!(f, "{ip} is not in the pool"),
            Nak::Taken(ip) => write!(f, "{ip} is leased to another machine"),
            Nak::NotOffered(ip) => write!(f, "{ip} was neither offered nor leased to this machine"),
        }
    }
}

fn now() -> u64 {
    journal::now()
}

impl Leases {
    /// Open the table of `pool`: lock and replay its journal. Leases outside the pool (the
    /// range changed) and expired ones are dropped.
    pub fn open(pool: &Pool) -> anyhow::Result<Leases> {
        let (journal, table) = journal::open(&pool.leases_file)?;
        let mut l = Leases {
            pool: pool.clone(),
            by_mac: HashMap::new(),
            by_ip: HashMap::new(),
            offered: HashMap::new(),
            offered_ip: HashMap::new(),
            order: VecDeque::new(),
            seq: 0,
            cap: (pool.size() as usize).clamp(1, MAX_OFFERS),
            cursor: 0,
            journal,
        };
        let n = now();
        for lease in table.by_mac.into_values() {
            let Ok(mac) = lease.mac.parse::<Mac>() else { continue };
            if lease.expires > n && pool.contains(lease.ip) && !l.by_ip.contains_key(&lease.ip) {
                l.by_ip.insert(lease.ip, mac);
                l.by_mac.insert(mac, lease);
            }
        }
        Ok(l)
    }

    pub fn len(&self) -> usize {
        self.by_mac.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_mac.is_empty()
    }

    /// Offers held now.
    pub fn offers(&self) -> usize {
        self.offered.len()
    }

    pub fn get(&self, mac: Mac) -> Option<&Lease> {
        self.by_mac.get(&mac)
    }

    fn live_offer(&self, mac: Mac) -> Option<Offer> {
        self.offered.get(&mac).copied().filter(|o| o.at.elapsed() < OFFER_HOLD)
    }

    fn free(&self, ip: Ipv4Addr, mac: Mac, n: u64) -> bool {
        if !self.pool.contains(ip) {
            return false;
        }
        let leased = match self.by_ip.get(&ip) {
            Some(m) if *m != mac => self.by_mac.get(m).is_some_and(|l| l.expires > n),
            _ => false,
        };
        let held =
            self.offered_ip.get(&ip).is_some_and(|m| *m != mac && self.live_offer(*m).is_some_and(|o| o.ip == ip));
        !leased && !held
    }

    fn drop_offer(&mut self, mac: Mac) {
        if let Some(o) = self.offered.remove(&mac) {
            if self.offered_ip.get(&o.ip) == Some(&mac) {
                self.offered_ip.remove(&o.ip);
            }
        }
    }

    /// Drop the oldest offer; its address, if it had one.
    fn evict_oldest(&mut self) -> Option<Ipv4Addr> {
        while let Some((seq, mac)) = self.order.pop_front() {
            if let Some(o) = self.offered.get(&mac).copied().filter(|o| o.seq == seq) {
                self.drop_offer(mac);
                return Some(o.ip);
            }
        }
        None
    }

    /// Forget offers older than the hold time (the oldest are at the front).
    fn expire_offers(&mut self) {
        while let Some(&(seq, mac)) = self.order.front() {
            match self.offered.get(&mac) {
                Some(o) if o.seq == seq && o.at.elapsed() < OFFER_HOLD => break,
                Some(o) if o.seq == seq => {
                    self.order.pop_front();
                    self.drop_offer(mac);
                }
                _ => {
                    self.order.pop_front();
                }
            }
        }
        // Stale entries (re-offers, ACKed offers) are skipped lazily; keep the queue bounded.
        if self.order.len() > 4 * self.cap + 16 {
            let offered = &self.offered;
            self.order.retain(|(seq, mac)| offered.get(mac).is_some_and(|o| o.seq == *seq));
        }
    }

    fn next_free(&mut self, mac: Mac, n: u64) -> Option<Ipv4Addr> {
        let size = self.pool.size();
        let start = u32::from(self.pool.start);
        for k in 0..size {
            let i = (self.cursor + k) % size;
            let ip = Ipv4Addr::from(start + i);
            if self.free(ip, mac, n) {
                self.cursor = (i + 1) % size;
                return Some(ip);
            }
        }
        None
    }

    /// The address to offer `mac`: its current lease, else its current offer, else the one
    /// it asks for when free, else the next free one, else the address of the oldest offer.
    /// `None` when every address is leased.
    pub fn offer(&mut self, mac: Mac, requested: Option<Ipv4Addr>) -> Option<Ipv4Addr> {
        let n = now();
        self.expire_offers();
        let pick = if let Some(l) = self.by_mac.get(&mac).filter(|l| self.free(l.ip, mac, n)) {
            Some(l.ip)
        } else if let Some(o) = self.live_offer(mac) {
            Some(o.ip)
        } else if let Some(r) = requested.filter(|r| self.free(*r, mac, n)) {
            Some(r)
        } else if let Some(ip) = self.next_free(mac, n) {
            Some(ip)
        } else {
            // Every free address is held by an offer: the oldest gives way.
            let mut got = None;
            while let Some(ip) = self.evict_oldest() {
                if self.free(ip, mac, n) {
                    got = Some(ip);
                    break;
                }
            }
            got
        }?;
        self.drop_offer(mac);
        while self.offered.len() >= self.cap {
            if self.evict_oldest().is_none() {
                break;
            }
        }
        self.seq += 1;
        self.offered.insert(mac, Offer { ip: pick, at: Instant::now(), seq: self.seq });
        self.offered_ip.insert(pick, mac);
        self.order.push_back((self.seq, mac));
        Some(pick)
    }

    /// Confirm `ip` for `mac` (DHCPREQUEST) when it was offered to `mac` or is leased to it.
    /// The record goes to the journal; the ACK may be sent once the returned [`Durable`]
    /// resolves with `Ok`.
    pub fn ack(&mut self, mac: Mac, ip: Ipv4Addr) -> Result<(Duration, Durable), Nak> {
        if !self.pool.contains(ip) {
            return Err(Nak::NotInPool(ip));
        }
        let offered = self.live_offer(mac).is_some_and(|o| o.ip == ip);
        let leased = self.by_mac.get(&mac).is_some_and(|l| l.ip == ip);
        if !offered && !leased {
            return Err(Nak::NotOffered(ip));
        }
        if !self.free(ip, mac, now()) {
            return Err(Nak::Taken(ip));
        }
        if let Some(old) = self.by_mac.remove(&mac) {
            self.by_ip.remove(&old.ip);
        }
        if let Some(other) = self.by_ip.insert(ip, mac) {
            self.by_mac.remove(&other);
        }
        let lease = Lease { mac: mac.to_string(), ip, expires: now() + self.pool.lease.as_secs() };
        self.by_mac.insert(mac, lease.clone());
        self.drop_offer(mac);
        Ok((self.pool.lease, self.journal.append(lease)))
    }

    /// DHCPRELEASE.
    pub fn release(&mut self, mac: Mac, ip: Ipv4Addr) -> bool {
        if self.by_mac.get(&mac).is_some_and(|l| l.ip == ip) {
            self.by_mac.remove(&mac);
            self.by_ip.remove(&ip);
            self.journal.append_nowait(Lease { mac: mac.to_string(), ip, expires: 0 });
            return true;
        }
        false
    }

    /// Wait until everything queued so far is on disk (tests, shutdown).
    pub fn flush(&self) -> Result<(), String> {
        // A record that changes nothing: the expired release of an unused address.
        self.journal
            .append(Lease { mac: "00:00:00:00:00:00".into(), ip: Ipv4Addr::UNSPECIFIED, expires: 0 })
            .blocking_recv()
            .map_err(|e| e.to_string())?
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn pool(dir: &Path) -> Pool {
        Pool {
            start: "10.0.0.100".parse().unwrap(),
            end: "10.0.0.102".parse().unwrap(),
            netmask: "255.255.255.0".parse().unwrap(),
            router: None,
            dns: vec![],
            lease: Duration::from_secs(600),
            leases_file: dir.join("state/leases.json"),
        }
    }

    fn durable(r: Result<(Duration, Durable), Nak>) {
        r.unwrap().1.blocking_recv().unwrap().unwrap();
    }

    #[test]
    fn allocate_ack_persist_and_reload() {
        let t = tempfile::tempdir().unwrap();
        let p = pool(t.path());
        let (a, b) = (Mac([1; 6]), Mac([2; 6]));
        let mut l = Leases::open(&p).unwrap();
        let ia = l.offer(a, None).unwrap();
        assert_eq!(ia, "10.0.0.100".parse::<Ipv4Addr>().unwrap());
        // b asks for a's offered address: held for a, so b gets the next.
        let ib = l.offer(b, Some(ia)).unwrap();
        assert_ne!(ia, ib);
        durable(l.ack(a, ia));
        assert_eq!(l.ack(b, ia).err(), Some(Nak::NotOffered(ia)));
        assert_eq!(l.ack(b, "10.0.0.5".parse().unwrap()).err(), Some(Nak::NotInPool("10.0.0.5".parse().unwrap())));
        durable(l.ack(b, ib));
        drop(l);
        // A restart keeps both leases, and a's next offer is the same address.
        let mut l2 = Leases::open(&p).unwrap();
        assert_eq!(l2.len(), 2);
        assert_eq!(l2.offer(a, None), Some(ia));
        // Renewal of its own lease without an offer.
        durable(l2.ack(b, ib));
        assert!(l2.release(a, ia));
        assert_eq!(l2.len(), 1);
        l2.flush().unwrap();
        drop(l2);
        let l3 = Leases::open(&p).unwrap();
        assert_eq!(l3.len(), 1);
        assert!(l3.get(b).is_some());
    }

    #[test]
    fn unoffered_requests_get_nothing() {
        let t = tempfile::tempdir().unwrap();
        let p = pool(t.path());
        let mut l = Leases::open(&p).unwrap();
        for i in 0..100u8 {
            assert_eq!(
                l.ack(Mac([i; 6]), "10.0.0.100".parse().unwrap()).err(),
                Some(Nak::NotOffered("10.0.0.100".parse().unwrap()))
            );
        }
        assert_eq!(l.len(), 0);
        l.flush().unwrap();
        assert!(!std::fs::read_to_string(&p.leases_file).unwrap().contains("10.0.0.100"));
    }

    #[test]
    fn offer_table_is_bounded_and_the_oldest_gives_way() {
        let t = tempfile::tempdir().unwrap();
        let p = pool(t.path());
        let mut l = Leases::open(&p).unwrap();
        for i in 0..1000u32 {
            let m = Mac([2, 0, (i >> 16) as u8, (i >> 8) as u8, i as u8, 1]);
            assert!(l.offer(m, None).is_some());
            assert!(l.offers() <= 3);
        }
        // A real client still gets an address and its ACK.
        let real = Mac([0x52, 0x54, 0, 0, 0, 1]);
        let ip = l.offer(real, None).unwrap();
        durable(l.ack(real, ip));
        assert_eq!(l.len(), 1);
    }

    #[test]
    fn pool_exhaustion_and_bad_file() {
        let t = tempfile::tempdir().unwrap();
        let p = pool(t.path());
        let mut l = Leases::open(&p).unwrap();
        for i in 0..3u8 {
            let ip = l.offer(Mac([i; 6]), None).unwrap();
            durable(l.ack(Mac([i; 6]), ip));
        }
        assert_eq!(l.offer(Mac([9; 6]), None), None);
        drop(l);
        std::fs::write(&p.leases_file, "{not json\n").unwrap();
        assert!(Leases::open(&p).is_err());
    }
}
