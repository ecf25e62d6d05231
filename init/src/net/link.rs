//! Finding the network interface to boot from, in /sys/class/net.

use std::path::Path;
use std::time::{Duration, Instant};

use crate::coldplug::Coldplug;
use crate::error::{Error, Result};

const SYS_NET: &str = "/sys/class/net";
/// How long to wait for a NIC to appear after its driver was loaded.
const WAIT: Duration = Duration::from_secs(10);
const ARPHRD_ETHER: u32 = 1;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Nic {
    pub name: String,
    pub index: u32,
    pub mac: [u8; 6],
}

impl Nic {
    pub fn mac_string(&self) -> String {
        self.mac.iter().map(|b| format!("{b:02x}")).collect::<Vec<_>>().join(":")
    }
}

fn read(p: &Path) -> Option<String> {
    std::fs::read_to_string(p).ok().map(|s| s.trim().to_string())
}

pub fn parse_mac(s: &str) -> Option<[u8; 6]> {
    let v: Vec<u8> = s.split(':').map(|p| u8::from_str_radix(p, 16)).collect::<std::result::Result<_, _>>().ok()?;
    v.try_into().ok()
}

/// Ethernet interfaces (not loopback, not wireless), sorted by name.
pub fn list() -> Vec<Nic> {
    let mut out = Vec::new();
    let Ok(rd) = std::fs::read_dir(SYS_NET) else { return out };
    for e in rd.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let p = e.path();
        let ty: Option<u32> = read(&p.join("type")).and_then(|s| s.parse().ok());
        if name == "lo" || ty != Some(ARPHRD_ETHER) || p.join("wireless").exists() {
            continue;
        }
        let (Some(index), Some(mac)) = (
            read(&p.join("ifindex")).and_then(|s| s.parse().ok()),
            read(&p.join("address")).and_then(|s| parse_mac(&s)),
        ) else {
            continue;
        };
        out.push(Nic { name, index, mac });
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    out
}

/// The first Ethernet interface, waiting for one to appear (coldplug loads its driver when
/// the device asks for it).
pub fn find_nic(coldplug: &mut Coldplug) -> Result<Nic> {
    let start = Instant::now();
    loop {
        coldplug.poll();
        if let Some(n) = list().into_iter().next() {
            return Ok(n);
        }
        if start.elapsed() > WAIT {
            let seen: Vec<String> = std::fs::read_dir(SYS_NET)
                .map(|rd| rd.flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect())
                .unwrap_or_default();
            return Err(Error::NoNic {
                waited_s: WAIT.as_secs(),
                seen: if seen.is_empty() { "none".into() } else { seen.join(", ") },
                drivers: coldplug.report(),
            });
        }
        if !coldplug.busy() {
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// Wait (up to 5 s) for the link to report a carrier; go on regardless (some drivers never
/// report it).
pub fn wait_carrier(name: &str) {
    let p = Path::new(SYS_NET).join(name).join("carrier");
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(5) {
        if read(&p).as_deref() == Some("1") {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn macs() {
        assert_eq!(super::parse_mac("52:54:00:12:34:5f"), Some([0x52, 0x54, 0, 0x12, 0x34, 0x5f]));
        assert_eq!(super::parse_mac("52:54:00:12:34"), None);
        assert_eq!(super::parse_mac("zz:54:00:12:34:56"), None);
    }
}
