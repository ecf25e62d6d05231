//! Raspberry Pi network boot.
//!
//! What the Pi bootloaders need (Raspberry Pi documentation: boot-net, bootflow-2711,
//! eeprom-bootloader): the Pi's DHCP DISCOVER carries option 60
//! `PXEClient:Arch:00000:UNDI:002001` and option 93 = 0, so it looks like an x86 BIOS PC; it is
//! told apart by option 97, which on the Pi 4 and 5 starts with `RPi4` / `RPi5`, and by the MAC
//! vendor prefix (Raspberry Pi Foundation / Raspberry Pi Trading OUIs). The reply must carry
//! option 60 `PXEClient` and option 43 holding "Raspberry Pi Boot" as PXE sub-options (the
//! Pi 3B boot ROM compares the menu text with three trailing spaces), and the TFTP server as
//! next-server (siaddr).
//!
//! Then the Pi reads over TFTP: the Pi 3 `bootcode.bin`, `bootsig.bin` (not found is normal)
//! and `<serial>/start.elf`; the Pi 4 `<serial>/start4.elf`, `config.txt`, `cmdline.txt`,
//! `kernel8.img`, device trees and overlays, under a `<serial>/` prefix (the board serial, 8
//! hex digits, or the MAC) that falls back to the root when that folder does not exist. They
//! are served from the output's `rpi/` tree (or a per-Pi folder `<machines>/rpi/<serial>/`),
//! with a generated `cmdline.txt` whose `oa.root=` points at this server's HTTP, so the big
//! root image never goes over TFTP (the Pi 5 TFTP client fails on files over 65535 blocks).

use std::path::PathBuf;
use std::sync::Arc;

use oa_contract::cmdline::{self, Cmdline, RootSpec};

use crate::config::Config;
use crate::fsroot::{Refused, Root};
use crate::mac::Mac;
use crate::tftp::Found;

/// MAC vendor prefixes of Raspberry Pi boards.
pub const OUIS: [[u8; 3]; 6] = [
    [0xb8, 0x27, 0xeb], // Raspberry Pi Foundation (Pi 1-3, Zero)
    [0xdc, 0xa6, 0x32], // Raspberry Pi Trading (Pi 4)
    [0xe4, 0x5f, 0x01], // Raspberry Pi Trading (Pi 4, 400)
    [0x28, 0xcd, 0xc1], // Raspberry Pi Trading
    [0xd8, 0x3a, 0xdd], // Raspberry Pi Trading (Pi 5)
    [0x2c, 0xcf, 0x67], // Raspberry Pi Trading (Pi 5)
];

/// The menu text the Pi bootloaders look for in option 43 (three trailing spaces: the Pi 3B
/// boot ROM compares 20 bytes).
pub const MENU: &[u8] = b"Raspberry Pi Boot   ";

/// Which Pi, as far as the DHCP request tells.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Model {
    /// Option 97 starts with `RPi4`.
    Pi4,
    /// Option 97 starts with `RPi5`.
    Pi5,
    /// A Raspberry Pi MAC prefix without such an option 97 (Pi 3 and older boot ROMs).
    ByMac,
}

/// Is this PXE request from a Raspberry Pi? `class` is option 60, `arch` option 93, `uuid`
/// option 97's bytes.
pub fn detect(mac: Mac, class: &[u8], arch: Option<u16>, uuid: Option<&[u8]>) -> Option<Model> {
    if !class.starts_with(b"PXEClient") || !matches!(arch, None | Some(0)) {
        return None;
    }
    let id = uuid.unwrap_or(&[]);
    // Option 97 is type byte + 16 bytes; the Pi puts its marker at the start of the data,
    // with or without the leading type byte.
    let has = |m: &[u8]| id.starts_with(m) || (id.len() > m.len() && id[1..].starts_with(m));
    if has(b"RPi4") {
        return Some(Model::Pi4);
    }
    if has(b"RPi5") {
        return Some(Model::Pi5);
    }
    if OUIS.iter().any(|o| mac.0[..3] == o[..]) {
        return Some(Model::ByMac);
    }
    None
}

/// Option 43 for a Pi: PXE sub-options discovery control (6) = 3, boot menu (9) with one
/// entry of type 0 and the menu text, menu prompt (10) with timeout 0 and "PXE", then end.
pub fn option43() -> Vec<u8> {
    let mut v = vec![6, 1, 3];
    v.push(9);
    v.push((3 + MENU.len()) as u8);
    v.extend_from_slice(&[0, 0, MENU.len() as u8]);
    v.extend_from_slice(MENU);
    v.extend_from_slice(&[10, 4, 0, b'P', b'X', b'E']);
    v.push(255);
    v
}

/// The Pi side of the TFTP server: the `rpi/` tree of the served output and the generated
/// `cmdline.txt`, held in memory (never a file in a shared folder such as /tmp, where another
/// local user could put a file or a symlink of their own first).
#[derive(Debug, Clone)]
pub struct Tree {
    root: Root,
    per_pi: Option<PathBuf>,
    cmdline: Arc<[u8]>,
}

impl Tree {
    /// The tree in `<output>/rpi/`, if the output has one, with its cmdline.txt rewritten for
    /// netboot.
    pub fn new(cfg: &Config) -> std::io::Result<Option<Tree>> {
        let dir = cfg.root.join(oa_contract::manifest::artifact::RPI_TREE);
        if !dir.is_dir() {
            return Ok(None);
        }
        let original = match std::fs::read_to_string(dir.join("cmdline.txt")) {
            Ok(s) => s,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
            Err(e) => return Err(std::io::Error::new(e.kind(), format!("reading {}/cmdline.txt: {e}", dir.display()))),
        };
        let cmdline: Arc<[u8]> = netboot_cmdline(cfg, &original).into_bytes().into();
        let per_pi = cfg.machines.as_ref().map(|m| m.join("rpi")).filter(|p| p.is_dir());
        Ok(Some(Tree { root: Root::new(&dir)?, per_pi, cmdline }))
    }

    /// The generated cmdline.txt.
    pub fn cmdline(&self) -> &[u8] {
        &self.cmdline
    }

    /// The file for a Pi's TFTP request, or `None` when the request is not one of the tree's
    /// files (the caller goes on to the rest of the output).
    pub fn lookup(&self, request: &str) -> Option<Result<Found, Refused>> {
        let clean = match Root::clean(request) {
            Ok(c) => c,
            Err(e) => return Some(Err(e)),
        };
        let parts: Vec<String> = clean.iter().map(|c| c.to_string_lossy().to_string()).collect();
        let (prefix, rest) = match parts.split_first() {
            Some((first, rest)) if !rest.is_empty() && is_pi_prefix(first) => (Some(first.clone()), rest.join("/")),
            _ => (None, parts.join("/")),
        };
        // A per-Pi folder first (operator's machines folder), then the shared tree.
        if let (Some(p), Some(dir)) = (&prefix, &self.per_pi) {
            if let Ok(r) = Root::new(&dir.join(p)) {
                if let Ok(f) = r.resolve(&rest) {
                    return Some(Ok(Found::Disk(f)));
                }
            }
        }
        if rest == "cmdline.txt" {
            return Some(Ok(Found::Memory(self.cmdline.clone())));
        }
        match self.root.resolve(&rest) {
            Ok(f) => Some(Ok(Found::Disk(f))),
            // A Pi-prefixed name that is not in the tree: say so (the Pi falls back).
            Err(e @ (Refused::NotFound(_) | Refused::NotAFile(_))) if prefix.is_some() => Some(Err(e)),
            Err(Refused::NotFound(_) | Refused::NotAFile(_)) => None,
            Err(e) => Some(Err(e)),
        }
    }
}

/// `<serial>` (8 hex digits) or a MAC (`dc-a6-32-01-02-03` / `dc:a6:...`) as the first path
/// component of a Pi request.
pub fn is_pi_prefix(s: &str) -> bool {
    let hex = |t: &str| t.bytes().all(|b| b.is_ascii_hexdigit());
    (s.len() == 8 && hex(s))
        || (s.len() == 17 && s.split(['-', ':']).count() == 6 && s.split(['-', ':']).all(|p| p.len() == 2 && hex(p)))
}

/// The tree's cmdline.txt for netboot: the same words with `oa.root=` pointing at this
/// server's HTTP (the root image is fetched into RAM by oa-init).
pub fn netboot_cmdline(cfg: &Config, original: &str) -> String {
    let mut words = Cmdline::from_words(original.split_whitespace());
    words.remove(cmdline::ROOT);
    if words.is_empty() {
        words = Cmdline::from_words(cfg.cmdline.iter().cloned());
        words.remove(cmdline::ROOT);
    }
    words.set_root(&RootSpec::Http(format!("{}/{}", cfg.http_base(), oa_contract::manifest::artifact::ROOTFS)));
    format!("{words}\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn option43_bytes() {
        let o = option43();
        assert_eq!(&o[..3], &[6, 1, 3]);
        assert_eq!(&o[3..8], &[9, 23, 0, 0, 20]);
        assert_eq!(&o[8..28], b"Raspberry Pi Boot   ");
        assert_eq!(&o[28..], &[10, 4, 0, b'P', b'X', b'E', 255]);
    }

    #[test]
    fn detects_pis_and_only_pis() {
        let pi3 = Mac([0xb8, 0x27, 0xeb, 1, 2, 3]);
        let pc = Mac([0x52, 0x54, 0, 1, 2, 3]);
        let class = b"PXEClient:Arch:00000:UNDI:002001";
        assert_eq!(detect(pi3, class, Some(0), None), Some(Model::ByMac));
        assert_eq!(detect(pc, class, Some(0), None), None);
        let mut uuid = vec![0u8];
        uuid.extend_from_slice(b"RPi4");
        uuid.extend_from_slice(&[0xab; 12]);
        assert_eq!(detect(pc, class, Some(0), Some(&uuid)), Some(Model::Pi4));
        assert_eq!(detect(pc, class, Some(0), Some(b"RPi5\x01\x02")), Some(Model::Pi5));
        // UEFI clients and non-PXE requests are never Pis.
        assert_eq!(detect(pi3, class, Some(7), None), None);
        assert_eq!(detect(pi3, b"udhcp 1.35", Some(0), None), None);
    }

    #[test]
    fn netboot_cmdline_points_the_root_at_http() {
        use oa_contract::cmdline::{word, ROOT, SHA256};
        let cfg = crate::boot::tests::cfg();
        let original = format!("console=ttyS1,115200 {} {} quiet\n", word(ROOT, "/dev/mmcblk0p2"), word(SHA256, "ab"));
        assert_eq!(
            netboot_cmdline(&cfg, &original),
            "console=ttyS1,115200 oa.sha256=ab quiet oa.root=http://10.0.0.1:8080/rootfs.squashfs\n"
        );
        let aaa = "a".repeat(64);
        assert_eq!(
            netboot_cmdline(&cfg, " \n"),
            format!("console=ttyS0 oa.sha256={aaa} oa.root=http://10.0.0.1:8080/rootfs.squashfs\n")
        );
    }

    #[test]
    fn pi_prefixes() {
        assert!(is_pi_prefix("1a2b3c4d"));
        assert!(is_pi_prefix("dc-a6-32-01-02-03"));
        assert!(!is_pi_prefix("overlays"));
        assert!(!is_pi_prefix("1a2b3c4"));
    }
}
