//! Environments: machines and networks described once (a TOML file, docs/environments.md),
//! realised as a virtual lab (`oa lab`, [`crate::lab`]) or on the physical network (`oa
//! deploy`, [`crate::deploy`]), drawn by `oa graph ENV` ([`graph`]).
//!
//! [`load`] reads a file and its includes strictly (unknown keys, wrong types and bad values
//! are errors naming file, line and column) into an [`Env`]: every reference checked (a
//! machine's networks, a `reach` check's machine, one network per netboot server), every
//! default applied, relative paths made absolute against the file that names them.

mod error;
pub mod graph;
mod load;
pub mod outputs;
#[cfg(test)]
mod tests;

pub use error::EnvError;
pub use load::{addressed_by, load};

use oa_contract::Arch;
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::time::Duration;

/// A whole environment, validated.
#[derive(Debug, Clone, PartialEq)]
pub struct Env {
    /// `name`, else the file's stem.
    pub name: String,
    /// The top-level file.
    pub file: PathBuf,
    /// Networks by name, in file order.
    pub networks: Vec<Network>,
    /// Machines by name, in file order.
    pub machines: Vec<Machine>,
}

impl Env {
    pub fn network(&self, name: &str) -> Option<&Network> {
        self.networks.iter().find(|n| n.name == name)
    }

    pub fn machine(&self, name: &str) -> Option<&Machine> {
        self.machines.iter().find(|m| m.name == name)
    }

    /// The network whose `oa serve` netboots `m` (its first network), if `m` boots over PXE.
    pub fn netboot_network(&self, m: &Machine) -> Option<&Network> {
        if m.boot != Boot::Pxe {
            return None;
        }
        m.networks.first().and_then(|n| self.network(n))
    }
}

/// One network: an IPv4 subnet; in a lab a bridge, on the fleet the LAN behind an interface.
#[derive(Debug, Clone, PartialEq)]
pub struct Network {
    pub name: String,
    /// The network address (host bits zero).
    pub subnet: Ipv4Addr,
    pub prefix: u8,
    /// `oa serve` on this network, and how it answers DHCP.
    pub serve: Option<ServeMode>,
    /// A plain DHCP server of the network's own (dnsmasq, lab only), for `serve = "proxy"`:
    /// the network's DHCP server that oa serve's proxyDHCP works next to.
    pub dhcp_server: bool,
}

impl Network {
    /// The `n`th host address of the subnet (1 = the first).
    pub fn host(&self, n: u32) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.subnet) + n)
    }

    /// The address of the lab's (or deploy host's) side of the network: the first host.
    pub fn server(&self) -> Ipv4Addr {
        self.host(1)
    }

    /// Host addresses in the subnet (without network and broadcast addresses).
    pub fn hosts(&self) -> u32 {
        (1u32 << (32 - u32::from(self.prefix))).saturating_sub(2)
    }

    /// The pool `oa serve --mode dhcp` hands out: the upper half of the subnet's hosts.
    pub fn dhcp_range(&self) -> (Ipv4Addr, Ipv4Addr) {
        let n = self.hosts();
        (self.host(n / 2 + 1), self.host(n))
    }

    /// The pool of the network's own DHCP server (`dhcp_server`): the second quarter.
    pub fn plain_dhcp_range(&self) -> (Ipv4Addr, Ipv4Addr) {
        let n = self.hosts();
        (self.host(n / 4 + 1), self.host(n / 2))
    }

    pub fn netmask(&self) -> Ipv4Addr {
        Ipv4Addr::from(u32::MAX.checked_shl(32 - u32::from(self.prefix)).unwrap_or(0))
    }

    pub fn cidr(&self) -> String {
        format!("{}/{}", self.subnet, self.prefix)
    }
}

/// How `oa serve` answers DHCP on a network (its `--mode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServeMode {
    Dhcp,
    Proxy,
    Off,
}

impl ServeMode {
    pub fn as_str(self) -> &'static str {
        match self {
            ServeMode::Dhcp => "dhcp",
            ServeMode::Proxy => "proxy",
            ServeMode::Off => "off",
        }
    }
}

/// What a machine boots: a profile (built, cached) or an output folder of `oa build`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    Profile(PathBuf),
    Output(PathBuf),
}

/// How a machine boots.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Boot {
    /// `disk.img` as its disk (virtio), through the firmware and the image's boot loader.
    Disk,
    /// `disk.img` as a USB stick (usb-storage on xHCI).
    Usb,
    /// `oa.iso` in a CD-ROM drive.
    Iso,
    /// From the network: the firmware's PXE (or iPXE), served by its first network's `oa serve`.
    Pxe,
    /// The kernel and initramfs loaded by QEMU, the root image as a read-only disk (lab only;
    /// the fastest under emulation).
    Kernel,
}

impl Boot {
    pub fn as_str(self) -> &'static str {
        match self {
            Boot::Disk => "disk",
            Boot::Usb => "usb",
            Boot::Iso => "iso",
            Boot::Pxe => "pxe",
            Boot::Kernel => "kernel",
        }
    }
}

/// The machine's firmware.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Firmware {
    Bios,
    Uefi,
    /// UEFI with Secure Boot enforced (OVMF's secboot code, Microsoft keys enrolled).
    UefiSecure,
}

impl Firmware {
    pub fn as_str(self) -> &'static str {
        match self {
            Firmware::Bios => "bios",
            Firmware::Uefi => "uefi",
            Firmware::UefiSecure => "uefi-secure",
        }
    }
}

/// An extra disk of a machine (after its boot disk).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Disk {
    /// A blank (sparse, all-zero) raw disk of this many MiB, made for each lab run and kept
    /// across the machine's reboots within the run.
    Blank { size_mib: u64 },
    /// An existing image file (raw or qcow2); the lab writes to a qcow2 overlay, never to it.
    File(PathBuf),
}

/// One machine.
#[derive(Debug, Clone, PartialEq)]
pub struct Machine {
    pub name: String,
    pub source: Source,
    pub boot: Boot,
    pub firmware: Firmware,
    /// The profile's arch when not given; checked against the output's manifest.
    pub arch: Option<Arch>,
    pub mac: [u8; 6],
    /// MiB; the profile's `qemu.memory_mib` when not given.
    pub memory_mib: Option<u32>,
    pub cpus: u32,
    /// Networks, one NIC each, in this order (a PXE boot uses the first).
    pub networks: Vec<String>,
    pub disks: Vec<Disk>,
    /// NIC model (QEMU device name).
    pub nic: String,
    /// Extra kernel command line words (netboot: through `oa serve`; kernel boot: appended).
    pub append: Vec<String>,
    /// The run-time configuration (JSON, docs/boot-contract.md) `oa serve` gives the machine.
    pub config: Option<PathBuf>,
    /// Reaching the ready line within this is the first check.
    pub ready_within: Duration,
    pub checks: Vec<Check>,
}

impl Machine {
    /// `aa:bb:cc:dd:ee:ff`.
    pub fn mac_string(&self) -> String {
        fmt_mac(&self.mac)
    }

    /// [`Machine::nic_mac`] as `aa:bb:cc:dd:ee:ff`.
    pub fn nic_mac_string(&self, i: usize) -> String {
        fmt_mac(&self.nic_mac(i))
    }

    /// `aa-bb-cc-dd-ee-ff`, as `oa serve` names per-machine files.
    pub fn mac_file_stem(&self) -> String {
        self.mac_string().replace(':', "-")
    }

    /// The MAC of this machine's NIC on its `i`th network (the first is [`Machine::mac`]; the
    /// others count up in the last byte).
    pub fn nic_mac(&self, i: usize) -> [u8; 6] {
        let mut m = self.mac;
        m[5] = m[5].wrapping_add(i as u8);
        m
    }
}

/// `aa:bb:cc:dd:ee:ff`.
pub fn fmt_mac(mac: &[u8; 6]) -> String {
    mac.iter().map(|b| format!("{b:02x}")).collect::<Vec<_>>().join(":")
}

/// One check, run in order after the machine reached ready.
#[derive(Debug, Clone, PartialEq)]
pub struct Check {
    pub kind: CheckKind,
    /// How long the check may take.
    pub within: Duration,
    /// Where it is written, for reports: `file:line`.
    pub at: String,
}

#[derive(Debug, Clone, PartialEq)]
pub enum CheckKind {
    /// Type this line into the console.
    Send(String),
    /// Wait for this text on the console (after the previous match or send).
    Expect(String),
    /// Run a command over SSH (from the lab host's side of the machine's first network) as
    /// `user`, with the lab's key; its output must contain `output` (when given) and its exit
    /// code be `exit`.
    Ssh { command: String, user: String, output: Option<String>, exit: i32 },
    /// This path exists on the machine (checked on its console).
    File(String),
    /// Another machine answers ping from this one (checked on its console).
    Reach(String),
    /// `reboot` typed on the console; the machine must come back to ready (its disks kept).
    Reboot,
    /// The power is cut (QEMU killed) and the machine started again on the same disks; it must
    /// come back to ready.
    PowerCut,
}

impl CheckKind {
    /// A short name for reports: `expect "hello"`, `ssh "uname"`, `reboot`.
    pub fn describe(&self) -> String {
        let short = |s: &str| {
            let s: String = s.chars().take(40).collect();
            format!("{s:?}")
        };
        match self {
            CheckKind::Send(t) => format!("send {}", short(t)),
            CheckKind::Expect(t) => format!("expect {}", short(t)),
            CheckKind::Ssh { command, .. } => format!("ssh {}", short(command)),
            CheckKind::File(p) => format!("file {p}"),
            CheckKind::Reach(m) => format!("reach {m}"),
            CheckKind::Reboot => "reboot".into(),
            CheckKind::PowerCut => "power cut".into(),
        }
    }
}

/// Default deadline for the ready line.
pub const DEFAULT_READY_SECS: u64 = 300;
/// Default deadline of one check.
pub const DEFAULT_CHECK_SECS: u64 = 30;

/// Is `path` an environment file (TOML with a top-level `machines` or `networks` table) rather
/// than a profile? For commands that take either (`oa graph`).
pub fn is_environment(path: &std::path::Path) -> bool {
    let Ok(text) = std::fs::read_to_string(path) else { return false };
    let Ok(doc) = text.parse::<toml_edit::DocumentMut>() else { return false };
    doc.get("machines").is_some_and(|t| t.is_table_like()) || doc.get("networks").is_some_and(|t| t.is_table_like())
}
