//! A minimal rtnetlink client: set a link up, add (or refresh) and delete an IPv4 address,
//! add a default route.
//! Hand-rolled (a few fixed structs and attributes) to keep oa-init small, static and free of
//! a netlink dependency tree. Every request asks for an acknowledgement and reads it, so a
//! failure comes back as the kernel's errno; "already exists" counts as success (idempotent).

use std::net::Ipv4Addr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use nix::errno::Errno;
use nix::libc;

use crate::error::{Error, Result};

const RTM_NEWLINK: u16 = 16;
const RTM_NEWADDR: u16 = 20;
const RTM_DELADDR: u16 = 21;
const RTM_NEWROUTE: u16 = 24;
const NLMSG_ERROR: u16 = 2;
const NLM_F_REQUEST: u16 = 0x1;
const NLM_F_ACK: u16 = 0x4;
const NLM_F_REPLACE: u16 = 0x100;
const NLM_F_CREATE: u16 = 0x400;
const IFF_UP: u32 = 0x1;
const IFA_ADDRESS: u16 = 1;
const IFA_LOCAL: u16 = 2;
const IFA_BROADCAST: u16 = 4;
const IFA_CACHEINFO: u16 = 6;
const RTA_OIF: u16 = 4;
const RTA_GATEWAY: u16 = 5;
const RT_TABLE_MAIN: u8 = 254;
const RTPROT_BOOT: u8 = 3;
const RT_SCOPE_UNIVERSE: u8 = 0;
const RTN_UNICAST: u8 = 1;

pub struct Netlink {
    fd: OwnedFd,
    seq: u32,
}

/// Append an attribute (type, value) padded to 4 bytes.
fn attr(buf: &mut Vec<u8>, ty: u16, value: &[u8]) {
    let len = 4 + value.len();
    buf.extend_from_slice(&(len as u16).to_ne_bytes());
    buf.extend_from_slice(&ty.to_ne_bytes());
    buf.extend_from_slice(value);
    while !buf.len().is_multiple_of(4) {
        buf.push(0);
    }
}

/// A whole message: nlmsghdr + payload.
pub fn message(ty: u16, flags: u16, seq: u32, payload: &[u8]) -> Vec<u8> {
    let len = 16 + payload.len();
    let mut m = Vec::with_capacity(len);
    m.extend_from_slice(&(len as u32).to_ne_bytes());
    m.extend_from_slice(&ty.to_ne_bytes());
    m.extend_from_slice(&(flags | NLM_F_REQUEST | NLM_F_ACK).to_ne_bytes());
    m.extend_from_slice(&seq.to_ne_bytes());
    m.extend_from_slice(&0u32.to_ne_bytes());
    m.extend_from_slice(payload);
    m
}

/// The errno of an acknowledgement for `seq` in `buf` (0 = success), if it holds one.
pub fn ack_errno(buf: &[u8], seq: u32) -> Option<i32> {
    let mut off = 0;
    while off + 16 <= buf.len() {
        let len = u32::from_ne_bytes(buf[off..off + 4].try_into().ok()?) as usize;
        let ty = u16::from_ne_bytes(buf[off + 4..off + 6].try_into().ok()?);
        let s = u32::from_ne_bytes(buf[off + 8..off + 12].try_into().ok()?);
        if len < 16 || off + len > buf.len() {
            return None;
        }
        if ty == NLMSG_ERROR && s == seq && len >= 20 {
            return Some(i32::from_ne_bytes(buf[off + 16..off + 20].try_into().ok()?));
        }
        off += (len + 3) & !3;
    }
    None
}

/// ifaddrmsg + IFA_LOCAL, IFA_ADDRESS, IFA_BROADCAST and, with `lifetime`, IFA_CACHEINFO
/// (preferred = valid = `lifetime` seconds).
fn address_payload(index: u32, ip: Ipv4Addr, prefix: u8, lifetime: Option<u32>) -> Vec<u8> {
    let mut p = vec![libc::AF_INET as u8, prefix, 0, RT_SCOPE_UNIVERSE];
    p.extend_from_slice(&index.to_ne_bytes());
    attr(&mut p, IFA_LOCAL, &ip.octets());
    attr(&mut p, IFA_ADDRESS, &ip.octets());
    let mask = if prefix == 0 { 0 } else { u32::MAX << (32 - prefix as u32) };
    let brd = Ipv4Addr::from(u32::from(ip) | !mask);
    attr(&mut p, IFA_BROADCAST, &brd.octets());
    if let Some(secs) = lifetime {
        // struct ifa_cacheinfo { ifa_prefered, ifa_valid, cstamp, tstamp } (the stamps are the
        // kernel's, ignored on input).
        let mut ci = Vec::with_capacity(16);
        for v in [secs, secs, 0, 0] {
            ci.extend_from_slice(&v.to_ne_bytes());
        }
        attr(&mut p, IFA_CACHEINFO, &ci);
    }
    p
}

impl Netlink {
    pub fn open() -> Result<Netlink> {
        // SAFETY: plain socket(2) call; the result is checked and owned below.
        let fd = unsafe { libc::socket(libc::AF_NETLINK, libc::SOCK_RAW | libc::SOCK_CLOEXEC, libc::NETLINK_ROUTE) };
        if fd < 0 {
            return Err(Error::Sys { op: "socket(AF_NETLINK)", path: "rtnetlink".into(), source: Errno::last() });
        }
        // SAFETY: fd is a freshly created, valid descriptor nobody else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        let tv = libc::timeval { tv_sec: 5, tv_usec: 0 };
        // SAFETY: tv is a valid timeval living across the call; the size matches.
        unsafe {
            libc::setsockopt(
                fd.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_RCVTIMEO,
                &tv as *const _ as *const libc::c_void,
                std::mem::size_of::<libc::timeval>() as u32,
            );
        }
        Ok(Netlink { fd, seq: 1 })
    }

    fn request(&mut self, ty: u16, flags: u16, payload: &[u8]) -> std::result::Result<(), Errno> {
        self.seq += 1;
        let seq = self.seq;
        let msg = message(ty, flags, seq, payload);
        // SAFETY: a zeroed sockaddr_nl is valid; family set to AF_NETLINK, pid 0 = the kernel.
        let mut sa: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
        sa.nl_family = libc::AF_NETLINK as u16;
        // SAFETY: msg and sa are valid for the lengths given for the duration of the call.
        let n = unsafe {
            libc::sendto(
                self.fd.as_raw_fd(),
                msg.as_ptr() as *const libc::c_void,
                msg.len(),
                0,
                &sa as *const _ as *const libc::sockaddr,
                std::mem::size_of::<libc::sockaddr_nl>() as u32,
            )
        };
        if n < 0 {
            return Err(Errno::last());
        }
        let mut buf = vec![0u8; 8192];
        loop {
            // SAFETY: buf is valid for writes of its length.
            let n = unsafe { libc::recv(self.fd.as_raw_fd(), buf.as_mut_ptr() as *mut libc::c_void, buf.len(), 0) };
            if n < 0 {
                return Err(Errno::last());
            }
            match ack_errno(&buf[..n as usize], seq) {
                Some(0) => return Ok(()),
                Some(e) if -e == libc::EEXIST => return Ok(()),
                Some(e) => return Err(Errno::from_raw(-e)),
                None => continue,
            }
        }
    }

    /// `ip link set <index> up`
    pub fn link_up(&mut self, index: u32) -> std::result::Result<(), Errno> {
        let mut p = Vec::with_capacity(16);
        p.push(libc::AF_UNSPEC as u8);
        p.push(0);
        p.extend_from_slice(&0u16.to_ne_bytes());
        p.extend_from_slice(&(index as i32).to_ne_bytes());
        p.extend_from_slice(&IFF_UP.to_ne_bytes());
        p.extend_from_slice(&IFF_UP.to_ne_bytes());
        self.request(RTM_NEWLINK, 0, &p)
    }

    /// `ip addr replace <ip>/<prefix> brd + dev <index> valid_lft <secs> preferred_lft <secs>`:
    /// the kernel removes the address itself when `secs` have passed (`u32::MAX`: never).
    /// Called again with the same address, it refreshes the lifetimes (a renewed lease).
    pub fn set_address(&mut self, index: u32, ip: Ipv4Addr, prefix: u8, secs: u32) -> std::result::Result<(), Errno> {
        let p = address_payload(index, ip, prefix, Some(secs));
        self.request(RTM_NEWADDR, NLM_F_CREATE | NLM_F_REPLACE, &p)
    }

    /// `ip addr del <ip>/<prefix> dev <index>`; an address already gone counts as deleted.
    pub fn del_address(&mut self, index: u32, ip: Ipv4Addr, prefix: u8) -> std::result::Result<(), Errno> {
        let p = address_payload(index, ip, prefix, None);
        match self.request(RTM_DELADDR, 0, &p) {
            Err(Errno::EADDRNOTAVAIL) | Err(Errno::ESRCH) | Err(Errno::ENODEV) => Ok(()),
            r => r,
        }
    }

    /// `ip route replace default via <gw> dev <index>`
    pub fn add_default_route(&mut self, index: u32, gw: Ipv4Addr) -> std::result::Result<(), Errno> {
        let mut p = vec![libc::AF_INET as u8, 0, 0, 0, RT_TABLE_MAIN, RTPROT_BOOT, RT_SCOPE_UNIVERSE, RTN_UNICAST];
        p.extend_from_slice(&0u32.to_ne_bytes());
        attr(&mut p, RTA_GATEWAY, &gw.octets());
        attr(&mut p, RTA_OIF, &index.to_ne_bytes());
        self.request(RTM_NEWROUTE, NLM_F_CREATE | NLM_F_REPLACE, &p)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_are_laid_out_as_the_kernel_expects() {
        let mut p = Vec::new();
        attr(&mut p, IFA_LOCAL, &[10, 0, 0, 5]);
        assert_eq!(p, vec![8u8, 0, 2, 0, 10, 0, 0, 5]); // little-endian length and type
        let m = message(RTM_NEWADDR, NLM_F_CREATE, 7, &p);
        assert_eq!(u32::from_ne_bytes(m[0..4].try_into().unwrap()), 24);
        assert_eq!(u16::from_ne_bytes(m[6..8].try_into().unwrap()), NLM_F_CREATE | NLM_F_REQUEST | NLM_F_ACK);
        // An ack: nlmsghdr(error) + errno + the original header.
        let mut ack = message(NLMSG_ERROR, 0, 7, &(-17i32).to_ne_bytes());
        ack.extend_from_slice(&[0; 16]);
        let len = ack.len() as u32;
        ack[0..4].copy_from_slice(&len.to_ne_bytes());
        assert_eq!(ack_errno(&ack, 7), Some(-17));
        assert_eq!(ack_errno(&ack, 8), None);
        assert_eq!(ack_errno(&ack[..10], 7), None);
    }

    #[test]
    fn addresses_carry_their_lifetime() {
        let ip = Ipv4Addr::new(10, 0, 0, 5);
        let forever = address_payload(2, ip, 24, None);
        // ifaddrmsg (8) + three 8-byte attributes; the broadcast address is the last one.
        assert_eq!(forever.len(), 8 + 3 * 8);
        assert_eq!(&forever[forever.len() - 4..], &[10, 0, 0, 255]);
        let leased = address_payload(2, ip, 24, Some(60));
        assert_eq!(leased.len(), forever.len() + 20);
        let ci = &leased[forever.len()..];
        assert_eq!(u16::from_ne_bytes([ci[0], ci[1]]), 20);
        assert_eq!(u16::from_ne_bytes([ci[2], ci[3]]), IFA_CACHEINFO);
        assert_eq!(u32::from_ne_bytes(ci[4..8].try_into().unwrap()), 60, "preferred");
        assert_eq!(u32::from_ne_bytes(ci[8..12].try_into().unwrap()), 60, "valid");
    }

    #[test]
    fn odd_attribute_lengths_are_padded() {
        let mut p = Vec::new();
        attr(&mut p, 1, &[1, 2, 3, 4, 5]);
        assert_eq!(p.len(), 12);
        assert_eq!(u16::from_ne_bytes([p[0], p[1]]), 9);
    }
}
