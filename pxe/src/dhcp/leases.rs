//! Full-DHCP address leases: allocation from the pool, kept on disk as JSON that is replaced
//! atomically (write a temporary file, fsync, rename, fsync the folder) after every change,
//! so a restart (or a crash mid-write) finds either the old or the new table, never half.

use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::config::Pool;
use crate::mac::Mac;

/// How long an offered address is held for the client that was offered it.
const OFFER_HOLD: Duration = Duration::from_secs(60);

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lease {
    pub mac: String,
    pub ip: Ipv4Addr,
    /// Unix time (seconds) the lease ends.
    pub expires: u64,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct File {
    leases: Vec<Lease>,
}

#[derive(Debug)]
pub struct Leases {
    pool: Pool,
    by_mac: HashMap<Mac, Lease>,
    by_ip: HashMap<Ipv4Addr, Mac>,
    offered: HashMap<Mac, (Ipv4Addr, Instant)>,
    offered_ip: HashMap<Ipv4Addr, Mac>,
    file: PathBuf,
}

#[derive(Debug, PartialEq, Eq)]
pub enum Nak {
    NotInPool(Ipv4Addr),
    Taken(Ipv4Addr),
}

impl std::fmt::Display for Nak {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Nak::NotInPool(ip) => write!(f, "{ip} is not in the pool"),
            Nak::Taken(ip) => write!(f, "{ip} is leased to another machine"),
        }
    }
}

fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

impl Leases {
    /// Open the table of `pool`, reading its file when there is one. Leases outside the pool
    /// (the range changed) and expired ones are dropped.
    pub fn open(pool: &Pool) -> anyhow::Result<Leases> {
        let mut l = Leases {
            pool: pool.clone(),
            by_mac: HashMap::new(),
            by_ip: HashMap::new(),
            offered: HashMap::new(),
            offered_ip: HashMap::new(),
            file: pool.leases_file.clone(),
        };
        match std::fs::read_to_string(&l.file) {
            Ok(t) => {
                let f: File = serde_json::from_str(&t)
                    .map_err(|e| anyhow::anyhow!("{}: {e} (move it away to start with no leases)", l.file.display()))?;
                let n = now();
                for lease in f.leases {
                    let Ok(mac) = lease.mac.parse::<Mac>() else { continue };
                    if lease.expires > n && pool.contains(lease.ip) && !l.by_ip.contains_key(&lease.ip) {
                        l.by_ip.insert(lease.ip, mac);
                        l.by_mac.insert(mac, lease);
                    }
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => anyhow::bail!("{}: {e}", l.file.display()),
        }
        Ok(l)
    }

    pub fn len(&self) -> usize {
        self.by_mac.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_mac.is_empty()
    }

    pub fn get(&self, mac: Mac) -> Option<&Lease> {
        self.by_mac.get(&mac)
    }

    fn free(&self, ip: Ipv4Addr, mac: Mac, n: u64) -> bool {
        if !self.pool.contains(ip) {
            return false;
        }
        let leased = match self.by_ip.get(&ip) {
            Some(m) if *m != mac => self.by_mac.get(m).is_some_and(|l| l.expires > n),
            _ => false,
        };
        let held = self.offered_ip.get(&ip).is_some_and(|m| {
            *m != mac && self.offered.get(m).is_some_and(|(i, t)| *i == ip && t.elapsed() < OFFER_HOLD)
        });
        !leased && !held
    }

    /// The address to offer `mac`: its current lease, else the one it asks for when free,
    /// else the first free one. `None` when the pool is exhausted.
    pub fn offer(&mut self, mac: Mac, requested: Option<Ipv4Addr>) -> Option<Ipv4Addr> {
        let n = now();
        if self.offered.len() > 1024 {
            self.offered.retain(|_, (_, t)| t.elapsed() < OFFER_HOLD);
            let live: std::collections::HashSet<Ipv4Addr> = self.offered.values().map(|(i, _)| *i).collect();
            self.offered_ip.retain(|ip, _| live.contains(ip));
        }
        let pick = if let Some(l) = self.by_mac.get(&mac) {
            Some(l.ip)
        } else if let Some(r) = requested.filter(|r| self.free(*r, mac, n)) {
            Some(r)
        } else if let Some((ip, _)) = self.offered.get(&mac) {
            Some(*ip)
        } else {
            (u32::from(self.pool.start)..=u32::from(self.pool.end))
                .map(Ipv4Addr::from)
                .find(|ip| self.free(*ip, mac, n))
        };
        if let Some(ip) = pick {
            self.offered.insert(mac, (ip, Instant::now()));
            self.offered_ip.insert(ip, mac);
        }
        pick
    }

    /// Confirm `ip` for `mac` (DHCPREQUEST): the lease is written to disk before this returns.
    pub fn ack(&mut self, mac: Mac, ip: Ipv4Addr) -> Result<Duration, Nak> {
        if !self.pool.contains(ip) {
            return Err(Nak::NotInPool(ip));
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
        self.by_mac.insert(mac, Lease { mac: mac.to_string(), ip, expires: now() + self.pool.lease.as_secs() });
        self.offered.remove(&mac);
        Ok(self.pool.lease)
    }

    /// DHCPRELEASE.
    pub fn release(&mut self, mac: Mac, ip: Ipv4Addr) -> bool {
        if self.by_mac.get(&mac).is_some_and(|l| l.ip == ip) {
            self.by_mac.remove(&mac);
            self.by_ip.remove(&ip);
            return true;
        }
        false
    }

    /// Write the table: temporary file, fsync, rename over the old one, fsync the folder.
    pub fn save(&self) -> std::io::Result<()> {
        let mut leases: Vec<Lease> = self.by_mac.values().cloned().collect();
        leases.sort_by_key(|l| u32::from(l.ip));
        let text = serde_json::to_string_pretty(&File { leases }).map_err(std::io::Error::other)?;
        write_atomic(&self.file, text.as_bytes())
    }
}

pub fn write_atomic(path: &Path, data: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let tmp = dir.join(format!(
        ".{}.tmp-{}",
        path.file_name().and_then(|n| n.to_str()).unwrap_or("leases"),
        std::process::id()
    ));
    {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(data)?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, path)?;
    std::fs::File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

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
        assert!(l.ack(a, ia).is_ok());
        assert_eq!(l.ack(b, ia), Err(Nak::Taken(ia)));
        assert_eq!(l.ack(b, "10.0.0.5".parse().unwrap()), Err(Nak::NotInPool("10.0.0.5".parse().unwrap())));
        l.ack(b, ib).unwrap();
        l.save().unwrap();
        // A restart keeps both leases, and a's next offer is the same address.
        let mut l2 = Leases::open(&p).unwrap();
        assert_eq!(l2.len(), 2);
        assert_eq!(l2.offer(a, None), Some(ia));
        assert!(l2.release(a, ia));
        assert_eq!(l2.len(), 1);
        // No temporary file is left behind.
        let names: Vec<_> =
            std::fs::read_dir(t.path().join("state")).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(names, vec![std::ffi::OsString::from("leases.json")]);
    }

    #[test]
    fn pool_exhaustion_and_bad_file() {
        let t = tempfile::tempdir().unwrap();
        let p = pool(t.path());
        let mut l = Leases::open(&p).unwrap();
        for i in 0..3u8 {
            let ip = l.offer(Mac([i; 6]), None).unwrap();
            l.ack(Mac([i; 6]), ip).unwrap();
        }
        assert_eq!(l.offer(Mac([9; 6]), None), None);
        std::fs::create_dir_all(t.path().join("state")).unwrap();
        std::fs::write(&p.leases_file, "{not json").unwrap();
        assert!(Leases::open(&p).is_err());
    }
}
