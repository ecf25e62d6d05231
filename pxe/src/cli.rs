//! The command line of `oa-pxe` and the options it shares with `oa serve` (one definition,
//! flattened into both CLIs). Each doc comment is the `--help` text; `oa doc` renders the same
//! definitions as the oa-pxe(1) man page and its shell completions.

use std::net::Ipv4Addr;
use std::path::PathBuf;

/// oa-pxe: serve an `oa build` output folder to netbooting machines (proxyDHCP or DHCP, TFTP, HTTP).
#[derive(Debug, clap::Parser)]
#[command(name = "oa-pxe", version, max_term_width = 100)]
pub struct Cli {
    #[command(flatten)]
    pub options: Options,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ModeArg {
    /// proxyDHCP: boot information only, next to the network's own DHCP server (safe default).
    Proxy,
    /// Full DHCP: hand out addresses from --range too (only on a network without another DHCP server).
    Dhcp,
    /// No DHCP (TFTP and HTTP only; point your own DHCP server at this host).
    Off,
}

#[derive(Debug, Clone, clap::Args)]
pub struct Options {
    /// The `oa build` output folder to serve (vmlinuz, initramfs.img, rootfs.squashfs, manifest.json).
    pub output: PathBuf,
    /// Interface to serve DHCP on (its broadcasts go out there); also gives --address when that is not set.
    #[arg(long, short, value_name = "IFACE")]
    pub interface: Option<String>,
    /// The IPv4 address clients reach this server at (next-server, URLs).
    #[arg(long, short, value_name = "IP")]
    pub address: Option<Ipv4Addr>,
    /// DHCP mode.
    #[arg(long, value_enum, default_value_t = ModeArg::Proxy)]
    pub mode: ModeArg,
    /// With --mode dhcp and no --interface: answer on every interface of this host (any network
    /// it is on gets a DHCP server). Without it, --mode dhcp needs --interface.
    #[arg(long)]
    pub all_interfaces: bool,
    /// A DHCP relay agent (giaddr) to answer through (repeat for more); requests relayed by any
    /// other agent are dropped. Without it, relayed requests are not answered.
    #[arg(long, value_name = "IP")]
    pub relay: Vec<Ipv4Addr>,
    /// Address pool for --mode dhcp, START-END (e.g. 10.0.0.100-10.0.0.200).
    #[arg(long, value_name = "START-END")]
    pub range: Option<String>,
    /// Netmask handed out with --mode dhcp.
    #[arg(long, value_name = "MASK")]
    pub netmask: Option<Ipv4Addr>,
    /// Default router handed out with --mode dhcp.
    #[arg(long, value_name = "IP")]
    pub router: Option<Ipv4Addr>,
    /// DNS server handed out with --mode dhcp (repeat for more).
    #[arg(long, value_name = "IP")]
    pub dns: Vec<Ipv4Addr>,
    /// Lease time in seconds for --mode dhcp.
    #[arg(long, default_value_t = 3600, value_name = "SECS")]
    pub lease_time: u64,
    /// Leases file for --mode dhcp, a journal of JSON lines held locked while serving (one
    /// server per file; a symlink is refused) [default: $XDG_STATE_HOME/oa/leases.json].
    #[arg(long, value_name = "FILE")]
    pub leases: Option<PathBuf>,
    /// Folder of per-machine overrides, one `aa-bb-cc-dd-ee-ff.toml` per MAC address (see docs/pxe.md).
    #[arg(long, value_name = "DIR")]
    pub machines: Option<PathBuf>,
    /// Extra kernel command line words for every client (e.g. `oa.debug`).
    #[arg(long, value_name = "ARGS", allow_hyphen_values = true)]
    pub append: Vec<String>,
    /// Folder with iPXE's undionly.kpxe and ipxe.efi (Debian's ipxe package).
    #[arg(long, default_value = "/usr/lib/ipxe", value_name = "DIR")]
    pub ipxe_dir: PathBuf,
    /// An arm64 UEFI iPXE build, served as ipxe-arm64.efi to arm64 UEFI clients (Debian has
    /// none). Not needed for an arm64 secure netboot output (`[secure_boot] mode = "uki"` with
    /// netboot): its arm64 clients get Debian's signed shim and GRUB from sb/.
    #[arg(long, value_name = "FILE")]
    pub ipxe_arm64: Option<PathBuf>,
    /// Address the sockets bind to (with --interface, DHCP binds the wildcard address on that
    /// interface whatever this says: clients broadcast).
    #[arg(long, default_value = "0.0.0.0", value_name = "IP")]
    pub bind: Ipv4Addr,
    /// DHCP server port.
    #[arg(long, default_value_t = 67, value_name = "PORT")]
    pub dhcp_port: u16,
    /// PXE boot server (proxyDHCP request) port.
    #[arg(long, default_value_t = 4011, value_name = "PORT")]
    pub proxy_port: u16,
    /// DHCP client port broadcasts are sent to.
    #[arg(long, default_value_t = 68, value_name = "PORT")]
    pub client_port: u16,
    /// TFTP port.
    #[arg(long, default_value_t = 69, value_name = "PORT")]
    pub tftp_port: u16,
    /// HTTP port.
    #[arg(long, default_value_t = 80, value_name = "PORT")]
    pub http_port: u16,
    /// Serve an output whose initramfs carries key material (persistence `key = "keyfile"`:
    /// the key file is inside, so every machine on the network can fetch it and unlock the
    /// persistent data). Without it such an output is refused.
    #[arg(long)]
    pub serve_key_material: bool,
    /// A minisign secret key (`oa keys init DIR` makes DIR/minisign.key; `minisign -G -W` too):
    /// each machine's oa.config is served with its signature at /config/<mac>.minisig, made
    /// for that MAC. Images built with `[secure_boot] config_key` (the matching minisign.pub)
    /// refuse configurations without one.
    #[arg(long, value_name = "FILE")]
    pub sign_key: Option<PathBuf>,
}
