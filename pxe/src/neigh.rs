//! The kernel's IPv4 neighbour table (`/proc/net/arp`): which MAC address the kernel last saw
//! using an address on a directly attached network. In proxy mode this server leases nothing,
//! so `/config/<mac>` (http.rs) is answered only to the address this table maps to that MAC.
//! It is as good as ARP: a host on the same LAN that answers ARP for another's address can
//! fool it, a host behind a router cannot (its packets carry the router's MAC).
//!
//! The read is bounded ([`MAX_BYTES`]); the table is read on each use (config requests are
//! rare, and a cached copy would go stale).

use std::io::Read;
use std::net::Ipv4Addr;

use crate::mac::Mac;

const ARP: &str = "/proc/net/arp";
/// At most this much of the table is read (about 13000 entries).
pub const MAX_BYTES: u64 = 1 << 20;
/// ATF_COM: the entry is complete (a reply was seen).
const COMPLETE: u32 = 0x2;

/// The MAC the kernel's neighbour table gives for `ip`, if a complete entry exists.
pub fn mac_of(ip: Ipv4Addr) -> std::io::Result<Option<Mac>> {
    let mut text = String::new();
    std::fs::File::open(ARP)?.take(MAX_BYTES).read_to_string(&mut text)?;
    Ok(lookup(&text, ip))
}

/// Find `ip` in the text of `/proc/net/arp`:
/// `IP address  HW type  Flags  HW address  Mask  Device`, one entry per line after a header.
/// Incomplete entries (flag 0x2 clear) and malformed lines are skipped.
pub fn lookup(text: &str, ip: Ipv4Addr) -> Option<Mac> {
    for line in text.lines().skip(1) {
        let mut f = line.split_whitespace();
        let (Some(a), Some(_hw), Some(flags), Some(mac)) = (f.next(), f.next(), f.next(), f.next()) else {
            continue;
        };
        if a.parse::<Ipv4Addr>().ok() != Some(ip) {
            continue;
        }
        let Ok(flags) = u32::from_str_radix(flags.trim_start_matches("0x"), 16) else { continue };
        if flags & COMPLETE == 0 {
            continue;
        }
        match mac.parse::<Mac>() {
            Ok(m) if m.0 != [0; 6] => return Some(m),
            _ => continue,
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    const TABLE: &str = "IP address       HW type     Flags       HW address            Mask     Device
10.0.0.5         0x1         0x2         52:54:00:12:34:56     *        br0
10.0.0.6         0x1         0x0         00:00:00:00:00:00     *        br0
10.0.0.7         0x1         0x2         garbage               *        br0
short line
10.0.0.8         0x1         0x6         52:54:00:aa:bb:cc     *        br0
";

    #[test]
    fn complete_entries_only() {
        let ip = |d| Ipv4Addr::new(10, 0, 0, d);
        assert_eq!(lookup(TABLE, ip(5)), Some("52:54:00:12:34:56".parse().unwrap()));
        assert_eq!(lookup(TABLE, ip(6)), None, "incomplete entry");
        assert_eq!(lookup(TABLE, ip(7)), None, "malformed MAC");
        assert_eq!(lookup(TABLE, ip(8)), Some("52:54:00:aa:bb:cc".parse().unwrap()), "complete + permanent");
        assert_eq!(lookup(TABLE, ip(9)), None);
        assert_eq!(lookup("", ip(5)), None);
    }

    #[test]
    fn the_real_table_reads() {
        // Whatever this host holds, reading it works and 0.0.0.0 is never in it.
        assert_eq!(mac_of(Ipv4Addr::UNSPECIFIED).unwrap(), None);
    }
}
