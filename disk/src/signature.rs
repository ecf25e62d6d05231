//! What a device holds, from the magic numbers at its start (and end): one list for `oa
//! flash` (which shows what is about to be overwritten) and oa-storage (which refuses to
//! format over anything).
//!
//! [`detect`] is pure: give it the first bytes of the device (at least [`HEAD_BYTES`] to see
//! every magic; fewer just sees fewer) and optionally its last bytes (for the backup GPT).
//! An empty result means blank: every byte given was zero.

use crate::mbr;
use std::fmt;

/// Bytes from the start of a device that cover every magic [`detect`] looks at (the btrfs
/// superblock at 64 KiB is the farthest).
pub const HEAD_BYTES: usize = 70 * 1024;

/// The LUKS2 subsystem oa-storage writes into the headers it makes.
pub const OA_LUKS_SUBSYSTEM: &str = "oa";

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Signature {
    /// A LUKS header, with the LUKS2 label and subsystem (empty for LUKS1) and the UUID.
    Luks {
        version: u16,
        label: String,
        subsystem: String,
        uuid: String,
    },
    /// A GPT header at LBA 1 (512- or 4096-byte sectors), or a backup header at the end.
    Gpt,
    /// An MBR partition table with this many used entries (not reported for the protective
    /// MBR of a GPT, nor for the boot sector of a FAT/NTFS/exFAT filesystem).
    Mbr {
        partitions: usize,
    },
    Iso9660,
    Squashfs,
    Xfs,
    Ext,
    Btrfs,
    Swap,
    /// FAT32 (the ESP, a USB stick).
    Fat32,
    /// FAT12 or FAT16.
    Fat16,
    Ntfs,
    Exfat,
    Lvm2,
    MdRaid,
    /// Non-zero bytes that match no known magic.
    UnknownData,
}

impl Signature {
    /// What it is, for people ("ext2/3/4 filesystem").
    pub fn name(&self) -> String {
        self.to_string()
    }

    /// A LUKS2 header that oa-storage made (its subsystem is [`OA_LUKS_SUBSYSTEM`]).
    pub fn is_oa_luks(&self) -> bool {
        matches!(self, Signature::Luks { version: 2, subsystem, .. } if subsystem == OA_LUKS_SUBSYSTEM)
    }
}

impl fmt::Display for Signature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Signature::Luks { version, label, subsystem, .. } => {
                write!(f, "LUKS{version} encrypted volume")?;
                if !label.is_empty() || !subsystem.is_empty() {
                    write!(f, " (label {label:?}, subsystem {subsystem:?})")?;
                }
                Ok(())
            }
            Signature::Gpt => f.write_str("GPT partition table"),
            Signature::Mbr { partitions: 0 } => f.write_str("MBR boot sector (no partitions)"),
            Signature::Mbr { partitions } => write!(f, "MBR partition table ({partitions} partition(s))"),
            Signature::Iso9660 => f.write_str("ISO 9660 filesystem"),
            Signature::Squashfs => f.write_str("squashfs image"),
            Signature::Xfs => f.write_str("XFS filesystem"),
            Signature::Ext => f.write_str("ext2/3/4 filesystem"),
            Signature::Btrfs => f.write_str("btrfs filesystem"),
            Signature::Swap => f.write_str("Linux swap"),
            Signature::Fat32 => f.write_str("FAT32 filesystem"),
            Signature::Fat16 => f.write_str("FAT12/16 filesystem"),
            Signature::Ntfs => f.write_str("NTFS filesystem"),
            Signature::Exfat => f.write_str("exFAT filesystem"),
            Signature::Lvm2 => f.write_str("LVM2 physical volume"),
            Signature::MdRaid => f.write_str("Linux RAID member"),
            Signature::UnknownData => f.write_str("data of unknown kind"),
        }
    }
}

fn at(buf: &[u8], off: usize, magic: &[u8]) -> bool {
    buf.get(off..off + magic.len()) == Some(magic)
}

/// A NUL-terminated string field (lossy UTF-8); empty when out of `buf`.
fn cstr(buf: &[u8], off: usize, len: usize) -> String {
    let b = buf.get(off..off.saturating_add(len).min(buf.len())).unwrap_or(&[]);
    let end = b.iter().position(|&c| c == 0).unwrap_or(b.len());
    String::from_utf8_lossy(&b[..end]).into_owned()
}

/// Every signature found in `head` (the first bytes of the device) and `tail` (its last bytes;
/// may be empty). Empty means blank.
pub fn detect(head: &[u8], tail: &[u8]) -> Vec<Signature> {
    let mut v = Vec::new();
    if at(head, 0, b"LUKS\xba\xbe") {
        let version = head.get(6..8).map_or(0, |b| u16::from_be_bytes([b[0], b[1]]));
        let (label, subsystem) =
            if version == 2 { (cstr(head, 24, 48), cstr(head, 208, 48)) } else { (String::new(), String::new()) };
        v.push(Signature::Luks { version, label, subsystem, uuid: cstr(head, 168, 40) });
    }
    let gpt = at(head, 512, b"EFI PART")
        || at(head, 4096, b"EFI PART")
        || (tail.len() >= 512 && at(tail, tail.len() - 512, b"EFI PART"));
    if gpt {
        v.push(Signature::Gpt);
    }
    let boot_sector_of_fs =
        at(head, 0x36, b"FAT") || at(head, 0x52, b"FAT32") || at(head, 3, b"NTFS    ") || at(head, 3, b"EXFAT   ");
    if !boot_sector_of_fs {
        if let Ok(m) = mbr::parse(head) {
            if !(gpt && (m.is_protective() || m.partitions.is_empty())) {
                v.push(Signature::Mbr { partitions: m.partitions.len() });
            }
        }
    }
    if at(head, 0x47, b"CD001") || at(head, 0x8001, b"CD001") {
        v.push(Signature::Iso9660);
    }
    if at(head, 0, b"hsqs") {
        v.push(Signature::Squashfs);
    }
    if at(head, 0, b"XFSB") {
        v.push(Signature::Xfs);
    }
    if at(head, 0x438, &[0x53, 0xef]) {
        v.push(Signature::Ext);
    }
    if at(head, 0x10040, b"_BHRfS_M") {
        v.push(Signature::Btrfs);
    }
    if at(head, 4086, b"SWAPSPACE2") || at(head, 4086, b"SWAP-SPACE") {
        v.push(Signature::Swap);
    }
    if at(head, 0x52, b"FAT32") {
        v.push(Signature::Fat32);
    } else if at(head, 0x36, b"FAT1") {
        v.push(Signature::Fat16);
    }
    if at(head, 3, b"NTFS    ") {
        v.push(Signature::Ntfs);
    }
    if at(head, 3, b"EXFAT   ") {
        v.push(Signature::Exfat);
    }
    if at(head, 512 + 24, b"LVM2 001") {
        v.push(Signature::Lvm2);
    }
    if at(head, 4096, &[0xfc, 0x4e, 0x2b, 0xa9]) || at(head, 0, &[0xfc, 0x4e, 0x2b, 0xa9]) {
        v.push(Signature::MdRaid);
    }
    if v.is_empty() && (head.iter().any(|&b| b != 0) || tail.iter().any(|&b| b != 0)) {
        v.push(Signature::UnknownData);
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    fn zeros() -> Vec<u8> {
        vec![0u8; 1 << 20]
    }

    fn with(magics: &[(usize, &[u8])]) -> Vec<u8> {
        let mut h = zeros();
        for (off, m) in magics {
            h[*off..off + m.len()].copy_from_slice(m);
        }
        h
    }

    #[test]
    fn zeros_are_blank_and_one_stray_byte_is_not() {
        assert!(detect(&zeros(), &zeros()).is_empty());
        assert!(detect(&[], &[]).is_empty());
        let mut t = zeros();
        t[(1 << 20) - 1] = 1;
        assert_eq!(detect(&zeros(), &t), vec![Signature::UnknownData]);
        assert_eq!(detect(&[7u8; 100], &[]), vec![Signature::UnknownData]);
    }

    #[test]
    fn every_magic_is_named() {
        let cases: Vec<(usize, &[u8], Signature, &str)> = vec![
            (0x438, &[0x53, 0xef], Signature::Ext, "ext2/3/4 filesystem"),
            (0x10040, b"_BHRfS_M", Signature::Btrfs, "btrfs filesystem"),
            (0, b"XFSB", Signature::Xfs, "XFS filesystem"),
            (512, b"EFI PART", Signature::Gpt, "GPT partition table"),
            (4096, b"EFI PART", Signature::Gpt, "GPT partition table"),
            (4086, b"SWAPSPACE2", Signature::Swap, "Linux swap"),
            (4086, b"SWAP-SPACE", Signature::Swap, "Linux swap"),
            (0, b"hsqs", Signature::Squashfs, "squashfs image"),
            (0x8001, b"CD001", Signature::Iso9660, "ISO 9660 filesystem"),
            (0x47, b"CD001", Signature::Iso9660, "ISO 9660 filesystem"),
            (0x52, b"FAT32", Signature::Fat32, "FAT32 filesystem"),
            (0x36, b"FAT16", Signature::Fat16, "FAT12/16 filesystem"),
            (3, b"NTFS    ", Signature::Ntfs, "NTFS filesystem"),
            (3, b"EXFAT   ", Signature::Exfat, "exFAT filesystem"),
            (536, b"LVM2 001", Signature::Lvm2, "LVM2 physical volume"),
            (4096, &[0xfc, 0x4e, 0x2b, 0xa9], Signature::MdRaid, "Linux RAID member"),
        ];
        for (off, magic, sig, name) in cases {
            let found = detect(&with(&[(off, magic)]), &[]);
            assert!(found.contains(&sig), "{sig:?} at {off}: {found:?}");
            assert_eq!(sig.name(), name);
        }
        let mut t = zeros();
        t[(1 << 20) - 512..(1 << 20) - 504].copy_from_slice(b"EFI PART");
        assert_eq!(detect(&zeros(), &t), vec![Signature::Gpt], "the backup GPT at the end");
    }

    #[test]
    fn mbr_partitions_are_counted_and_boot_sectors_are_not_tables() {
        let mut m = with(&[(510, &[0x55, 0xaa]), (446 + 4, &[0x0c]), (446 + 16 + 4, &[0x83])]);
        assert_eq!(detect(&m, &[]), vec![Signature::Mbr { partitions: 2 }]);
        assert_eq!(detect(&m, &[])[0].name(), "MBR partition table (2 partition(s))");
        m[0x52..0x57].copy_from_slice(b"FAT32");
        assert_eq!(detect(&m, &[]), vec![Signature::Fat32]);
        let empty = with(&[(510, &[0x55, 0xaa])]);
        assert_eq!(detect(&empty, &[]), vec![Signature::Mbr { partitions: 0 }]);
    }

    #[test]
    fn the_protective_mbr_of_a_gpt_is_part_of_the_gpt() {
        let mut g = with(&[(512, b"EFI PART")]);
        g[..512].copy_from_slice(&crate::mbr::protective(&[0x90; 440], 1 << 20));
        assert_eq!(detect(&g, &[]), vec![Signature::Gpt]);
        // A hybrid MBR (more than the 0xEE entry) is shown as well.
        g[446 + 16 + 4] = 0x0c;
        assert_eq!(detect(&g, &[]), vec![Signature::Gpt, Signature::Mbr { partitions: 2 }]);
    }

    #[test]
    fn luks_headers_and_ownership() {
        let mut h = with(&[(0, b"LUKS\xba\xbe\0\x02"), (24, b"oa-persist"), (168, b"1234-abcd"), (208, b"oa")]);
        let s = detect(&h, &[]);
        assert_eq!(
            s,
            vec![Signature::Luks {
                version: 2,
                label: "oa-persist".into(),
                subsystem: "oa".into(),
                uuid: "1234-abcd".into()
            }]
        );
        assert!(s[0].is_oa_luks());
        assert_eq!(s[0].name(), "LUKS2 encrypted volume (label \"oa-persist\", subsystem \"oa\")");
        h[208..210].copy_from_slice(b"xx");
        assert!(!detect(&h, &[])[0].is_oa_luks());
        // Short buffers are fine: what is not there is empty.
        assert_eq!(detect(b"LUKS\xba\xbe\0\x02", &[])[0].name(), "LUKS2 encrypted volume");
        assert!(matches!(detect(b"LUKS\xba\xbe", &[])[0], Signature::Luks { version: 0, .. }));
    }
}

#[cfg(test)]
mod short_devices {
    use super::*;

    /// A device of any small size, holding any magic's first bytes, is probed without a panic:
    /// every fixed offset is read through `get`, and what is not there is not matched.
    #[test]
    fn every_short_prefix_of_every_magic_probes() {
        let magics: [&[u8]; 6] = [
            b"LUKS\xba\xbe\0\x02oa-persist",
            b"hsqs",
            b"XFSB",
            b"\xfc\x4e\x2b\xa9",
            b"\xeb\x58\x90NTFS    ",
            b"\x55\xaa",
        ];
        for m in magics {
            for n in 0..=m.len() {
                for len in [n, 6, 7, 8, 511, 512] {
                    let mut head = m[..n].to_vec();
                    head.resize(len.max(n), 0);
                    for tail_len in [0, 6, 7, 511, 512] {
                        let tail = vec![0xffu8; tail_len];
                        let _ = detect(&head, &tail);
                        let _ = detect(&tail, &head);
                    }
                }
            }
        }
        assert!(matches!(detect(b"LUKS\xba\xbe\0", &[])[0], Signature::Luks { version: 0, .. }));
    }
}
