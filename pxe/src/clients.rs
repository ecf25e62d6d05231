//! Which MAC address uses which IPv4 address, as learnt from DHCP, so that TFTP and HTTP log
//! lines can name the client by MAC.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::{Arc, Mutex};

use crate::mac::Mac;

/// Bounded: the table forgets everything once it holds this many entries (it is for logs only).
const MAX: usize = 65536;

#[derive(Clone, Default)]
pub struct Clients(Arc<Mutex<HashMap<Ipv4Addr, Mac>>>);

impl Clients {
    pub fn learn(&self, ip: Ipv4Addr, mac: Mac) {
        if ip.is_unspecified() {
            return;
        }
        let mut m = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if m.len() >= MAX {
            m.clear();
        }
        m.insert(ip, mac);
    }

    /// `52:54:00:..` or `?` when the address was never seen in DHCP.
    pub fn name(&self, ip: IpAddr) -> String {
        let m = self.0.lock().unwrap_or_else(|e| e.into_inner());
        match ip {
            IpAddr::V4(v4) => m.get(&v4).map(|m| m.to_string()).unwrap_or_else(|| "?".into()),
            IpAddr::V6(v6) => {
                v6.to_ipv4_mapped().and_then(|v4| m.get(&v4)).map(|m| m.to_string()).unwrap_or_else(|| "?".into())
            }
        }
    }
}
