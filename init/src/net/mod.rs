//! The network side of stage 1, for `oa.root=http://...`: find the NIC ([`link`]), bring it
//! up and configure it over rtnetlink ([`netlink`]), get an address with a DHCP client
//! ([`dhcp`], dhcproto), then download the root image into RAM ([`http`]) with a bounded
//! number of retries, hashing it while it streams in. The lease is kept by a thread of its
//! own ([`lease`]: renewed at T1, rebound at T2, the address removed when it ends).
//!
//! States, as the design notes model them: the interface is down -> up -> addressed (with a
//! default route when DHCP gives a router); the image file is absent -> partial -> complete
//! and verified. Each transition is idempotent (an address or route that already exists is
//! fine), and every failure names the interface, server or URL involved.

pub mod dhcp;
pub mod http;
pub mod lease;
pub mod link;
pub mod netlink;

use std::path::PathBuf;
use std::time::Instant;

use crate::coldplug::Coldplug;
use crate::console;
use crate::error::{Error, Result};

/// Where the fetched root image is kept (tmpfs /run, so RAM).
pub const IMAGE: &str = "/run/oa/root.squashfs";

/// Whether [`up`] has configured an interface already (stage 1 is single-threaded).
static UP: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Bring the first Ethernet interface up and configure it by DHCP, once: later calls (the root
/// image, then `oa.config=`) find it up and return at once.
pub fn up(coldplug: &mut Coldplug) -> Result<()> {
    up_with(coldplug, false)
}

/// [`up`]; `ask_boot_server`: the DHCP DISCOVER also asks `oa serve` to name the boot server
/// (a root URL on [`oa_contract::cmdline::NEXT_SERVER_HOST`]), which a proxyDHCP server
/// answers while another server leases the address.
fn up_with(coldplug: &mut Coldplug, ask_boot_server: bool) -> Result<()> {
    if UP.load(std::sync::atomic::Ordering::Relaxed) {
        return Ok(());
    }
    let t = Instant::now();
    let nic = link::find_nic(coldplug)?;
    let mut nl = netlink::Netlink::open()?;
    nl.link_up(nic.index).map_err(|e| net_err(&nic.name, "set link up", e))?;
    link::wait_carrier(&nic.name);
    let asked = lease::now();
    let (lease, proxy) =
        if ask_boot_server { dhcp::obtain_with_boot_server(&nic)? } else { (dhcp::obtain(&nic)?, None) };
    lease::configure(&mut nl, &nic, &lease).map_err(|(op, e)| net_err(&nic.name, op, e))?;
    console::stage(
        "network",
        &format!(
            "{} ({}) {}/{} router {} from DHCP server {} (lease {}) in {} ms",
            nic.name,
            nic.mac_string(),
            lease.ip,
            lease.prefix,
            lease.router.map(|r| r.to_string()).unwrap_or_else(|| "none".into()),
            lease.server,
            if lease.lease_secs == dhcp::INFINITE { "infinite".to_string() } else { format!("{} s", lease.lease_secs) },
            t.elapsed().as_millis()
        ),
    );
    let _ = BOOT_SERVER.set(boot_server(&lease, proxy, ask_boot_server));
    lease::start(lease::Held { nic, lease, acked_at: asked });
    UP.store(true, std::sync::atomic::Ordering::Relaxed);
    Ok(())
}

/// The boot server of the lease [`up`] got: next-server (`siaddr`), else the DHCP server.
static BOOT_SERVER: std::sync::OnceLock<std::net::Ipv4Addr> = std::sync::OnceLock::new();

/// The boot server for `next-server`: the one a proxy offer named, else the lease's
/// next-server (`siaddr`), else its DHCP server; said on the console when it was asked for.
fn boot_server(lease: &dhcp::Lease, proxy: Option<dhcp::BootServer>, asked: bool) -> std::net::Ipv4Addr {
    let (addr, how) = match (proxy, lease.next_server) {
        (Some(p), _) => (p.addr, format!("{} of the {} from {}", p.field, p.offer(), p.from)),
        (None, Some(n)) => (n, format!("siaddr of the lease from {} (no proxyDHCP offer)", lease.server)),
        (None, None) => (lease.server, "the DHCP server itself (no proxyDHCP offer, no siaddr)".to_string()),
    };
    if asked {
        console::info(&format!("boot server {addr}: {how}"));
    }
    addr
}

/// Does `url` name the boot server by [`oa_contract::cmdline::NEXT_SERVER_HOST`]?
pub fn uses_boot_server(url: &str) -> bool {
    with_boot_server(url, std::net::Ipv4Addr::UNSPECIFIED) != url
}

/// `url` with the host [`oa_contract::cmdline::NEXT_SERVER_HOST`] replaced by `server`
/// (`http://next-server/x` -> `http://10.0.0.1/x`); other URLs as they are.
pub fn with_boot_server(url: &str, server: std::net::Ipv4Addr) -> String {
    let placeholder = format!("http://{}", oa_contract::cmdline::NEXT_SERVER_HOST);
    match url.strip_prefix(&placeholder) {
        Some(rest) if rest.is_empty() || rest.starts_with('/') || rest.starts_with(':') => {
            format!("http://{server}{rest}")
        }
        _ => url.to_string(),
    }
}

/// Bring the network up and fetch `url` to [`IMAGE`]; returns its path and sha256.
pub fn fetch_root(url: &str, sha256: Option<&str>, coldplug: &mut Coldplug) -> Result<(PathBuf, String)> {
    let bad = |why| Error::Unexpected { what: oa_contract::cmdline::word(oa_contract::cmdline::ROOT, url), why };
    // Checked before the network is up, with a stand-in for the boot server's address.
    http::Url::parse(&with_boot_server(url, std::net::Ipv4Addr::UNSPECIFIED)).map_err(bad)?;
    up_with(coldplug, uses_boot_server(url))?;
    let resolved = match BOOT_SERVER.get() {
        Some(s) => with_boot_server(url, *s),
        None => url.to_string(),
    };
    if resolved != url {
        console::debug(&format!("{url}: the boot server from DHCP makes it {resolved}"));
    }
    let target = http::Url::parse(&resolved).map_err(bad)?;
    if let Some(parent) = std::path::Path::new(IMAGE).parent() {
        crate::mounts::ensure_dir(parent)?;
    }
    let t = Instant::now();
    let got = http::download(&target, std::path::Path::new(IMAGE))?;
    let secs = t.elapsed().as_secs_f64().max(0.001);
    console::stage(
        "fetch",
        &format!(
            "{resolved}: {} bytes in {} ms ({:.1} MiB/s){}",
            got.bytes,
            t.elapsed().as_millis(),
            got.bytes as f64 / secs / 1048576.0,
            if got.attempts > 1 { format!(" after {} attempts", got.attempts) } else { String::new() }
        ),
    );
    if let Some(want) = sha256 {
        if got.sha256 != want {
            let _ = std::fs::remove_file(IMAGE);
            return Err(Error::HashMismatch {
                device: resolved.clone(),
                expected: want.to_string(),
                actual: got.sha256,
            });
        }
    }
    Ok((PathBuf::from(IMAGE), got.sha256))
}

fn net_err(iface: &str, op: &'static str, e: nix::errno::Errno) -> Error {
    Error::Sys { op, path: format!("interface {iface} (rtnetlink)"), source: e }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_next_server_host_is_the_boot_server_from_dhcp() {
        let s = std::net::Ipv4Addr::new(10, 99, 0, 1);
        let root = oa_contract::cmdline::netboot_root();
        let oa_contract::cmdline::RootSpec::Http(url) = root else { panic!("{root:?}") };
        assert_eq!(super::with_boot_server(&url, s), "http://10.99.0.1/rootfs.squashfs");
        assert_eq!(super::with_boot_server("http://next-server:8080/x", s), "http://10.99.0.1:8080/x");
        assert_eq!(super::with_boot_server("http://next-server", s), "http://10.99.0.1");
        // Only the whole host: another host that starts the same way stays.
        assert_eq!(super::with_boot_server("http://next-serverx/y", s), "http://next-serverx/y");
        assert_eq!(super::with_boot_server("http://10.0.0.9/y", s), "http://10.0.0.9/y");
        // Only URLs on next-server make oa-init ask oa serve for the boot server.
        assert!(super::uses_boot_server(&url));
        assert!(super::uses_boot_server("http://next-server:8080/x"));
        assert!(!super::uses_boot_server("http://next-serverx/y"));
        assert!(!super::uses_boot_server("http://10.0.0.9/y"));
    }
}
