//! oa-pxe: the netboot server that `oa serve` and the standalone `oa-pxe` run.
//!
//! One process, one [`config::Config`]: DHCP ([`dhcp`], proxyDHCP by default, full DHCP with
//! leases kept on disk when asked), TFTP ([`tftp`], read-only, RFC 1350 + 2347/2348/2349 +
//! 7440) and HTTP ([`http`], GET/HEAD with byte ranges, sendfile), all serving one `oa build`
//! output folder and the iPXE boot files. Which client gets which file is decided by
//! [`boot`] (DHCP option 93, the iPXE user class, per-MAC overrides from a folder).
//! Every path a client names is resolved by [`fsroot`], which never leaves the served root.
//!
//! Not for: DNS, IPv6, writing files (TFTP WRQ is refused), acting as a DHCP relay (it answers
//! the relays given with --relay, from one pool).

pub mod boot;
pub mod cli;
pub mod clients;
pub mod config;
pub mod dhcp;
pub mod fsroot;
pub mod http;
pub mod mac;
pub mod neigh;
pub mod rpi;
pub mod server;
pub mod sign;
pub mod tftp;

pub use config::{Config, Mode};
pub use server::Server;
