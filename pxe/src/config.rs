//! The validated runtime configuration. [`crate::cli::Options`] (what people type) is turned
//! into a [`Config`] in one place ([`Config::from_options`]), so the server never handles an
//! unchecked value.

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use oa_contract::manifest::{artifact, Manifest};

/// How DHCP is answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mode {
    /// Answer PXE clients with boot information only; addresses come from the network's own
    /// DHCP server. Safe next to one.
    Proxy,
    /// Hand out addresses from a pool too.
    Dhcp(Pool),
    /// No DHCP at all (TFTP and HTTP only).
    Off,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pool {
    pub start: Ipv4Addr,
    pub end: Ipv4Addr,
    pub netmask: Ipv4Addr,
    pub router: Option<Ipv4Addr>,
    pub dns: Vec<Ipv4Addr>,
    pub lease: Duration,
    /// Where the leases are kept (a journal of JSON lines, dhcp/journal.rs).
    pub leases_file: PathBuf,
}

impl Pool {
    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        u32::from(ip) >= u32::from(self.start) && u32::from(ip) <= u32::from(self.end)
    }
    pub fn size(&self) -> u32 {
        u32::from(self.end) - u32::from(self.start) + 1
    }
}

/// The iPXE binaries handed out over TFTP (and HTTP).
#[derive(Debug, Clone)]
pub struct BootFiles {
    /// For legacy BIOS PXE ROMs (option 93 = 0): `undionly.kpxe`.
    pub bios: PathBuf,
    /// For x86-64 UEFI (option 93 = 7, 9, 16): `ipxe.efi`.
    pub uefi_x64: PathBuf,
    /// For arm64 UEFI (option 93 = 11, 19), when such a build is present.
    pub uefi_arm64: Option<PathBuf>,
}

/// File names under which the boot files are served (TFTP and HTTP).
pub mod names {
    pub const BIOS: &str = "undionly.kpxe";
    pub const UEFI_X64: &str = "ipxe.efi";
    pub const UEFI_ARM64: &str = "ipxe-arm64.efi";
    pub const SCRIPT: &str = "boot.ipxe";
}

#[derive(Debug, Clone)]
pub struct Config {
    /// The `oa build` output folder served (canonical).
    pub root: PathBuf,
    pub manifest: Manifest,
    /// The address clients reach this server at (siaddr, option 54, URLs).
    pub address: Ipv4Addr,
    /// Bind the DHCP sockets to this interface (SO_BINDTODEVICE); broadcasts go out on it.
    pub interface: Option<String>,
    pub mode: Mode,
    /// Address the sockets bind to (0.0.0.0 for DHCP to see broadcasts).
    pub bind: Ipv4Addr,
    pub dhcp_port: u16,
    pub proxy_port: u16,
    pub client_port: u16,
    pub tftp_port: u16,
    pub http_port: u16,
    pub boot_files: BootFiles,
    /// Kernel command line: the manifest's, then the operator's extra words.
    pub cmdline: Vec<String>,
    /// Folder of per-MAC overrides (`aa-bb-cc-dd-ee-ff.toml`).
    pub machines: Option<PathBuf>,
    /// Relay agents (giaddr) whose requests are answered (--relay); any other giaddr is dropped.
    pub relays: Vec<Ipv4Addr>,
    /// What one client, and all of them together, may hold: every bound of the server.
    pub limits: Limits,
    /// Signs each per-machine configuration served (--sign-key).
    pub sign_key: Option<std::sync::Arc<crate::sign::SigningKey>>,
}

/// The bounds that keep one buggy or hostile client from taking the server (issue 14). The
/// defaults fit the usual 1024 open files with room to spare (server.rs raises the soft limit
/// to the hard one at start).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    // --- TFTP (tftp.rs) ---
    /// Concurrent TFTP transfers, all clients together.
    pub tftp_transfers: usize,
    /// Concurrent TFTP transfers from one source address.
    pub tftp_per_client: usize,
    /// A transfer ends (with an error packet) when it has not finished after this long.
    pub tftp_deadline: Duration,
    /// Upper bound of windowsize x blksize: bytes sent before the client acknowledges.
    pub tftp_window_bytes: usize,
    /// Resends of one window before the transfer is given up.
    pub tftp_retries: u32,
    // --- HTTP (http.rs) ---
    /// Open HTTP connections, all clients together.
    pub http_connections: usize,
    /// Open HTTP connections from one source address.
    pub http_per_client: usize,
    /// A request's header must arrive within this long of the connection (or the last response).
    pub http_header_timeout: Duration,
    /// A connection with no request in flight is closed after this long.
    pub http_idle_timeout: Duration,
    /// Files up to this size are served from memory.
    pub http_memory_file: u64,
    /// Bytes of small files held in memory, all files together.
    pub http_memory_total: u64,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            tftp_transfers: 256,
            tftp_per_client: 4,
            tftp_deadline: Duration::from_secs(300),
            tftp_window_bytes: 64 << 10,
            tftp_retries: 5,
            http_connections: 512,
            // iPXE opens one or two; a load test or a proxy in front of several machines more.
            http_per_client: 64,
            http_header_timeout: Duration::from_secs(10),
            http_idle_timeout: Duration::from_secs(30),
            http_memory_file: 1 << 20,
            http_memory_total: 64 << 20,
        }
    }
}

impl Config {
    /// The output is a signed UKI for netboot (`[secure_boot] mode = "uki"`, `image.netboot`):
    /// UEFI clients of the output's architecture boot shim -> GRUB -> the UKI from `sb/`
    /// instead of iPXE. The chain the manifest lists, if any.
    pub fn secure_netboot(&self) -> Option<oa_contract::manifest::artifact::SecureNetboot> {
        let sb = oa_contract::manifest::artifact::SecureNetboot::of(self.manifest.arch);
        self.manifest.artifacts.iter().any(|a| a.name == sb.shim).then_some(sb)
    }
    /// Base URL of the HTTP server as clients see it.
    pub fn http_base(&self) -> String {
        if self.http_port == 80 {
            format!("http://{}", self.address)
        } else {
            format!("http://{}:{}", self.address, self.http_port)
        }
    }

    /// The file name a boot-file name stands for, if it is one.
    pub fn boot_file(&self, name: &str) -> Option<&Path> {
        match name.trim_start_matches('/') {
            names::BIOS => Some(&self.boot_files.bios),
            names::UEFI_X64 => Some(&self.boot_files.uefi_x64),
            names::UEFI_ARM64 => self.boot_files.uefi_arm64.as_deref(),
            _ => None,
        }
    }

    pub fn from_options(o: &crate::cli::Options) -> anyhow::Result<Config> {
        use anyhow::{bail, Context};
        let root = std::fs::canonicalize(&o.output).with_context(|| format!("output folder {}", o.output.display()))?;
        let mpath = root.join(oa_contract::manifest::FILE_NAME);
        let text = std::fs::read_to_string(&mpath)
            .with_context(|| format!("reading {} (is {} an `oa build` output?)", mpath.display(), root.display()))?;
        let manifest: Manifest = serde_json::from_str(&text).with_context(|| format!("parsing {}", mpath.display()))?;
        for a in [artifact::KERNEL, artifact::INITRAMFS, artifact::ROOTFS] {
            let p = manifest.artifact(a).map(|x| x.path.clone()).unwrap_or_else(|| a.to_string());
            if !root.join(&p).is_file() {
                bail!("{} is missing from {}: rebuild with `oa build`", p, root.display());
            }
        }
        if !manifest.key_material.is_empty() && !o.serve_key_material {
            bail!(
                "{} carries key material ({} hold the persistence key file): serving it hands the key that unlocks the persistent data to every machine on the network. Rebuild with `[persistence] key = \"passphrase\"` (or \"network\"), or pass --serve-key-material if that is what you want (an isolated lab network)",
                root.display(),
                manifest.key_material.join(", ")
            );
        }
        if !manifest.key_material.is_empty() {
            tracing::warn!(
                "serving key material ({}) from {}: any machine on the network can fetch the persistence key (--serve-key-material)",
                manifest.key_material.join(", "),
                root.display()
            );
        }
        let address = match (o.address, &o.interface) {
            (Some(a), _) => a,
            (None, Some(i)) => interface_address(i)?,
            (None, None) => bail!("give --address (the IPv4 address clients reach this server at) or --interface"),
        };
        if address.is_unspecified() || address.is_broadcast() || address.is_multicast() {
            bail!("--address {address} is not an address clients can reach");
        }
        let mode = match o.mode {
            crate::cli::ModeArg::Proxy => {
                if o.range.is_some() {
                    bail!("--range is for --mode dhcp; proxy mode hands out no addresses");
                }
                Mode::Proxy
            }
            crate::cli::ModeArg::Off => Mode::Off,
            crate::cli::ModeArg::Dhcp => {
                if o.interface.is_none() && !o.all_interfaces {
                    bail!("--mode dhcp needs --interface IFACE (the network to hand out addresses on), or --all-interfaces to answer on every network this host is on");
                }
                let Some(r) = &o.range else { bail!("--mode dhcp needs --range START-END") };
                let (s, e) = r.split_once('-').context("--range is START-END, e.g. 10.0.0.100-10.0.0.200")?;
                let start: Ipv4Addr = s.trim().parse().with_context(|| format!("--range start {s:?}"))?;
                let end: Ipv4Addr = e.trim().parse().with_context(|| format!("--range end {e:?}"))?;
                if u32::from(start) > u32::from(end) {
                    bail!("--range {r}: the start is after the end");
                }
                let netmask = o.netmask.unwrap_or(Ipv4Addr::new(255, 255, 255, 0));
                let m = u32::from(netmask);
                if m.leading_ones() + m.trailing_zeros() != 32 {
                    bail!("--netmask {netmask} is not a contiguous mask");
                }
                if (u32::from(start) & m) != (u32::from(end) & m) || (u32::from(address) & m) != (u32::from(start) & m)
                {
                    bail!("--range {r} and the server address {address} must be in one subnet (netmask {netmask})");
                }
                if (u32::from(start)..=u32::from(end)).contains(&u32::from(address)) {
                    bail!("--range {r} contains the server's own address {address}");
                }
                if o.lease_time < 60 {
                    bail!("--lease-time must be at least 60 seconds");
                }
                let leases_file = o.leases.clone().unwrap_or_else(default_leases_file);
                Mode::Dhcp(Pool {
                    start,
                    end,
                    netmask,
                    router: o.router,
                    dns: o.dns.clone(),
                    lease: Duration::from_secs(o.lease_time),
                    leases_file,
                })
            }
        };
        let ipxe = &o.ipxe_dir;
        let need = |n: &str| -> anyhow::Result<PathBuf> {
            let p = ipxe.join(n);
            if !p.is_file() && mode != Mode::Off {
                bail!("{} is missing: install Debian's ipxe package (`make deps`) or give --ipxe-dir", p.display());
            }
            Ok(p)
        };
        let boot_files = BootFiles {
            bios: need(names::BIOS)?,
            uefi_x64: need(names::UEFI_X64)?,
            uefi_arm64: o.ipxe_arm64.clone().filter(|p| p.is_file()),
        };
        let mut cmdline = manifest.cmdline.clone();
        for w in o.append.iter().flat_map(|s| s.split_whitespace()) {
            if !cmdline.iter().any(|c| c == w) {
                cmdline.push(w.to_string());
            }
        }
        let machines = match &o.machines {
            Some(d) if !d.is_dir() => bail!("--machines {}: not a folder", d.display()),
            Some(d) => Some(d.clone()),
            None => None,
        };
        let sign_key = match &o.sign_key {
            Some(p) => Some(std::sync::Arc::new(crate::sign::SigningKey::load(p).context("--sign-key")?)),
            None => None,
        };
        Ok(Config {
            sign_key,
            root,
            manifest,
            address,
            interface: o.interface.clone(),
            mode,
            bind: o.bind,
            dhcp_port: o.dhcp_port,
            proxy_port: o.proxy_port,
            client_port: o.client_port,
            tftp_port: o.tftp_port,
            http_port: o.http_port,
            boot_files,
            cmdline,
            machines,
            relays: o.relay.clone(),
            limits: Limits::default(),
        })
    }
}

fn default_leases_file() -> PathBuf {
    let base = std::env::var_os("XDG_STATE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/state")))
        .unwrap_or_else(|| PathBuf::from("/var/lib"));
    base.join("oa/leases.json")
}

/// The first IPv4 address of an interface (getifaddrs).
pub fn interface_address(name: &str) -> anyhow::Result<Ipv4Addr> {
    let mut found = None;
    let mut ifap: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: getifaddrs fills a linked list that we only read and then free below.
    if unsafe { libc::getifaddrs(&mut ifap) } != 0 {
        anyhow::bail!("getifaddrs: {}", std::io::Error::last_os_error());
    }
    let mut cur = ifap;
    while !cur.is_null() {
        // SAFETY: cur is a node of the list getifaddrs returned, not yet freed.
        let ifa = unsafe { &*cur };
        // SAFETY: ifa_name is a NUL-terminated string owned by the list.
        let n = unsafe { std::ffi::CStr::from_ptr(ifa.ifa_name) }.to_string_lossy();
        if n == name && !ifa.ifa_addr.is_null() {
            // SAFETY: ifa_addr is non-null and points at a sockaddr of the family it names.
            let fam = unsafe { (*ifa.ifa_addr).sa_family } as i32;
            if fam == libc::AF_INET {
                // SAFETY: AF_INET means the sockaddr is a sockaddr_in.
                let sin = unsafe { &*(ifa.ifa_addr as *const libc::sockaddr_in) };
                found = Some(Ipv4Addr::from(u32::from_be(sin.sin_addr.s_addr)));
                break;
            }
        }
        cur = ifa.ifa_next;
    }
    // SAFETY: ifap came from getifaddrs and is freed once.
    unsafe { libc::freeifaddrs(ifap) };
    found.ok_or_else(|| anyhow::anyhow!("interface {name} has no IPv4 address: give --address"))
}
