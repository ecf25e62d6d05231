//! GUID partition table with a protective MBR, written from Rust (pure: layout in, bytes out).
//!
//! Hand-written rather than with the `gpt` crate, because we need three things that crate
//! makes awkward and that take ~150 lines here: the MBR boot code (syslinux's `gptmbr.bin`)
//! in the protective MBR, the "legacy BIOS bootable" attribute on the ESP (bit 2, which
//! gptmbr.bin looks for), and deterministic disk and partition GUIDs derived from the build's
//! inputs so that the same inputs give a byte-identical image. The CRC32 is `crc32fast` (the
//! IEEE polynomial GPT uses), already in the dependency tree through flate2. oa-init parses
//! what this writes (`init/src/gpt.rs`), and the tests check it with util-linux's `partx`.
//!
//! Layout: sector 0 protective MBR, sector 1 header, sectors 2..34 the 128 entries; every
//! partition starts on a 1 MiB boundary; the backup entries and header are the last 33
//! sectors of the disk.

use sha2::{Digest, Sha256};

pub const SECTOR: u64 = 512;
/// Partitions start on 1 MiB boundaries (2048 sectors), as partitioning tools do.
pub const ALIGN_SECTORS: u64 = 2048;
const ENTRIES: u32 = 128;
const ENTRY_SIZE: u32 = 128;
/// Sectors taken by the entry array (128 * 128 bytes).
const ENTRY_SECTORS: u64 = (ENTRIES as u64 * ENTRY_SIZE as u64) / SECTOR;

/// GPT attribute bit 2: "legacy BIOS bootable", the partition gptmbr.bin boots.
pub const ATTR_LEGACY_BIOS_BOOTABLE: u64 = 1 << 2;

/// Partition type GUIDs.
pub mod types {
    /// EFI system partition.
    pub const ESP: &str = "c12a7328-f81f-11d2-ba4b-00a0c93ec93b";
    /// Linux filesystem data (the root image, the persistence partition).
    pub const LINUX_DATA: &str = "0fc63daf-8483-4772-8e79-3d69d8477de4";
}

/// A partition to lay out: its name, type, minimum size and attributes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartSpec {
    pub label: String,
    pub type_guid: &'static str,
    pub size_bytes: u64,
    pub attributes: u64,
}

/// A placed partition (1-based number, inclusive LBAs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Partition {
    pub number: u32,
    pub label: String,
    pub type_guid: String,
    pub guid: String,
    pub first_lba: u64,
    pub last_lba: u64,
    pub attributes: u64,
}

impl Partition {
    pub fn offset(&self) -> u64 {
        self.first_lba * SECTOR
    }
    pub fn size(&self) -> u64 {
        (self.last_lba + 1 - self.first_lba) * SECTOR
    }
}

/// The whole disk's layout.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    pub disk_guid: String,
    pub total_sectors: u64,
    pub partitions: Vec<Partition>,
}

impl Layout {
    /// Place `parts` in order, each on a 1 MiB boundary and rounded up to whole MiB, with
    /// 1 MiB left at the end for the backup GPT. GUIDs are derived from `seed` and the labels.
    pub fn plan(parts: &[PartSpec], seed: &[u8]) -> Layout {
        let mut next = ALIGN_SECTORS;
        let mut partitions = Vec::new();
        for (i, p) in parts.iter().enumerate() {
            let sectors = p.size_bytes.div_ceil(SECTOR).max(1).div_ceil(ALIGN_SECTORS) * ALIGN_SECTORS;
            partitions.push(Partition {
                number: i as u32 + 1,
                label: p.label.clone(),
                type_guid: p.type_guid.to_string(),
                guid: derived_guid(seed, &format!("partition:{}", p.label)),
                first_lba: next,
                last_lba: next + sectors - 1,
                attributes: p.attributes,
            });
            next += sectors;
        }
        Layout { disk_guid: derived_guid(seed, "disk"), total_sectors: next + ALIGN_SECTORS, partitions }
    }

    pub fn size_bytes(&self) -> u64 {
        self.total_sectors * SECTOR
    }

    pub fn partition(&self, label: &str) -> Option<&Partition> {
        self.partitions.iter().find(|p| p.label == label)
    }

    fn last_lba(&self) -> u64 {
        self.total_sectors - 1
    }

    /// The protective MBR: `boot_code` (up to 440 bytes, e.g. gptmbr.bin), one partition of
    /// type 0xEE covering the disk, the 0x55AA signature.
    pub fn protective_mbr(&self, boot_code: &[u8]) -> [u8; 512] {
        let mut m = [0u8; 512];
        let n = boot_code.len().min(440);
        m[..n].copy_from_slice(&boot_code[..n]);
        let e = &mut m[446..462];
        e[0] = 0x00; // not active: UEFI requires the protective entry to be non-bootable
        e[1..4].copy_from_slice(&[0x00, 0x02, 0x00]); // CHS of LBA 1
        e[4] = 0xee;
        e[5..8].copy_from_slice(&[0xff, 0xff, 0xff]);
        e[8..12].copy_from_slice(&1u32.to_le_bytes());
        let size = (self.total_sectors - 1).min(u32::MAX as u64) as u32;
        e[12..16].copy_from_slice(&size.to_le_bytes());
        m[510] = 0x55;
        m[511] = 0xaa;
        m
    }

    /// The partition entry array (128 entries of 128 bytes).
    pub fn entries(&self) -> Vec<u8> {
        let mut out = vec![0u8; (ENTRIES * ENTRY_SIZE) as usize];
        for p in &self.partitions {
            let e = &mut out[(p.number as usize - 1) * ENTRY_SIZE as usize..][..ENTRY_SIZE as usize];
            e[0..16].copy_from_slice(&guid_bytes(&p.type_guid));
            e[16..32].copy_from_slice(&guid_bytes(&p.guid));
            e[32..40].copy_from_slice(&p.first_lba.to_le_bytes());
            e[40..48].copy_from_slice(&p.last_lba.to_le_bytes());
            e[48..56].copy_from_slice(&p.attributes.to_le_bytes());
            for (i, u) in p.label.encode_utf16().take(36).enumerate() {
                e[56 + 2 * i..58 + 2 * i].copy_from_slice(&u.to_le_bytes());
            }
        }
        out
    }

    /// A GPT header sector. `primary`: at LBA 1 with its entries at LBA 2; else the backup at
    /// the last LBA with its entries just before it.
    pub fn header(&self, primary: bool, entries_crc: u32) -> [u8; 512] {
        let last = self.last_lba();
        let (my, alternate, entries_lba) = if primary { (1, last, 2) } else { (last, 1, last - ENTRY_SECTORS) };
        let mut h = [0u8; 512];
        h[0..8].copy_from_slice(b"EFI PART");
        h[8..12].copy_from_slice(&0x0001_0000u32.to_le_bytes());
        h[12..16].copy_from_slice(&92u32.to_le_bytes());
        h[24..32].copy_from_slice(&my.to_le_bytes());
        h[32..40].copy_from_slice(&alternate.to_le_bytes());
        h[40..48].copy_from_slice(&(2 + ENTRY_SECTORS).to_le_bytes()); // first usable LBA
        h[48..56].copy_from_slice(&(last - ENTRY_SECTORS - 1).to_le_bytes()); // last usable LBA
        h[56..72].copy_from_slice(&guid_bytes(&self.disk_guid));
        h[72..80].copy_from_slice(&entries_lba.to_le_bytes());
        h[80..84].copy_from_slice(&ENTRIES.to_le_bytes());
        h[84..88].copy_from_slice(&ENTRY_SIZE.to_le_bytes());
        h[88..92].copy_from_slice(&entries_crc.to_le_bytes());
        let crc = crc32fast::hash(&h[..92]);
        h[16..20].copy_from_slice(&crc.to_le_bytes());
        h
    }

    /// Every piece of the partition table with its byte offset in the image: the protective
    /// MBR, the primary header and entries, the backup entries and header.
    pub fn table_writes(&self, boot_code: &[u8]) -> Vec<(u64, Vec<u8>)> {
        let entries = self.entries();
        let crc = crc32fast::hash(&entries);
        let last = self.last_lba();
        vec![
            (0, self.protective_mbr(boot_code).to_vec()),
            (SECTOR, self.header(true, crc).to_vec()),
            (2 * SECTOR, entries.clone()),
            ((last - ENTRY_SECTORS) * SECTOR, entries),
            (last * SECTOR, self.header(false, crc).to_vec()),
        ]
    }

    /// The byte ranges holding the partition table (and the alignment gaps around it): the
    /// first partition's start and everything after the last partition.
    pub fn table_ranges(&self) -> Vec<(u64, u64)> {
        let first = self.partitions.first().map_or(ALIGN_SECTORS, |p| p.first_lba) * SECTOR;
        let end = self.partitions.last().map_or(ALIGN_SECTORS, |p| p.last_lba + 1) * SECTOR;
        vec![(0, first), (end, self.size_bytes())]
    }
}

/// A version-4-style GUID from sha256(seed, what): stable for the same build inputs.
pub fn derived_guid(seed: &[u8], what: &str) -> String {
    let mut h = Sha256::new();
    h.update(b"oa-gpt-guid\0");
    h.update(seed);
    h.update(what.as_bytes());
    let d = h.finalize();
    let mut b = [0u8; 16];
    b.copy_from_slice(&d[..16]);
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let x = hex::encode(b);
    format!("{}-{}-{}-{}-{}", &x[0..8], &x[8..12], &x[12..16], &x[16..20], &x[20..32])
}

/// A GUID string in GPT's on-disk byte order (first three fields little-endian).
pub fn guid_bytes(guid: &str) -> [u8; 16] {
    let hexs: String = guid.chars().filter(|c| *c != '-').collect();
    let mut raw = [0u8; 16];
    if let Ok(v) = hex::decode(&hexs) {
        if v.len() == 16 {
            raw.copy_from_slice(&v);
        }
    }
    let mut out = raw;
    out[0..4].copy_from_slice(&[raw[3], raw[2], raw[1], raw[0]]);
    out[4..6].copy_from_slice(&[raw[5], raw[4]]);
    out[6..8].copy_from_slice(&[raw[7], raw[6]]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layout() -> Layout {
        Layout::plan(
            &[
                PartSpec {
                    label: "oa-esp".into(),
                    type_guid: types::ESP,
                    size_bytes: 12 << 20,
                    attributes: ATTR_LEGACY_BIOS_BOOTABLE,
                },
                PartSpec {
                    label: "oa-root".into(),
                    type_guid: types::LINUX_DATA,
                    size_bytes: 1_000_000,
                    attributes: 0,
                },
                PartSpec {
                    label: "oa-persist".into(),
                    type_guid: types::LINUX_DATA,
                    size_bytes: 64 << 20,
                    attributes: 0,
                },
            ],
            b"seed",
        )
    }

    #[test]
    fn partitions_are_aligned_and_rounded_to_mib() {
        let l = layout();
        let p: Vec<_> = l.partitions.iter().map(|p| (p.number, p.first_lba, p.last_lba)).collect();
        assert_eq!(
            p,
            vec![(1, 2048, 2048 + 12 * 2048 - 1), (2, 26624, 26624 + 2048 - 1), (3, 28672, 28672 + 64 * 2048 - 1)]
        );
        assert_eq!(l.total_sectors, 28672 + 64 * 2048 + 2048);
        assert_eq!(l.partition("oa-root").unwrap().size(), 1 << 20);
        assert_eq!(l.table_ranges(), vec![(0, 1 << 20), ((28672 + 64 * 2048) * 512, l.size_bytes())]);
    }

    #[test]
    fn guids_are_stable_and_distinct() {
        let (a, b) = (layout(), layout());
        assert_eq!(a, b);
        let mut all: Vec<&str> = a.partitions.iter().map(|p| p.guid.as_str()).collect();
        all.push(&a.disk_guid);
        all.sort();
        all.dedup();
        assert_eq!(all.len(), 4);
        assert_eq!(&a.disk_guid[14..15], "4", "version 4 nibble: {}", a.disk_guid);
        let other = Layout::plan(&[], b"other seed");
        assert_ne!(other.disk_guid, a.disk_guid);
    }

    #[test]
    fn guid_byte_order_is_mixed_endian() {
        // The ESP type GUID as it appears on disk (UEFI spec, table 5.7).
        assert_eq!(hex::encode(guid_bytes(types::ESP)), "28732ac11ff8d211ba4b00a0c93ec93b");
    }

    #[test]
    fn headers_and_entries_check_out() {
        let l = layout();
        let w = l.table_writes(&[0x90; 440]);
        let mbr = &w[0].1;
        assert_eq!(&mbr[..440], &[0x90; 440][..]);
        assert_eq!((mbr[450], mbr[510], mbr[511]), (0xee, 0x55, 0xaa));
        let entries = &w[2].1;
        assert_eq!(entries, &w[3].1);
        let crc = crc32fast::hash(entries);
        for (hdr, my) in [(&w[1].1, 1u64), (&w[4].1, l.total_sectors - 1)] {
            assert_eq!(&hdr[0..8], b"EFI PART");
            let mut copy = hdr[..92].to_vec();
            let stored = u32::from_le_bytes(copy[16..20].try_into().unwrap());
            copy[16..20].fill(0);
            assert_eq!(crc32fast::hash(&copy), stored, "header CRC");
            assert_eq!(u64::from_le_bytes(hdr[24..32].try_into().unwrap()), my);
            assert_eq!(u32::from_le_bytes(hdr[88..92].try_into().unwrap()), crc);
        }
        // The backup entries end right before the backup header.
        assert_eq!(w[3].0 + entries.len() as u64, w[4].0);
        // Entry 1: ESP type, legacy BIOS bootable, name in UTF-16LE.
        assert_eq!(&entries[0..16], &guid_bytes(types::ESP));
        assert_eq!(u64::from_le_bytes(entries[48..56].try_into().unwrap()), ATTR_LEGACY_BIOS_BOOTABLE);
        assert_eq!(&entries[56..62], &[b'o', 0, b'a', 0, b'-', 0]);
        // Entries 4..128 are empty.
        assert!(entries[3 * 128..].iter().all(|&b| b == 0));
    }

    /// The exact bytes of the table for a fixed layout: a change here changes every disk image
    /// (the image must stay byte-identical for the same inputs).
    #[test]
    fn table_bytes_are_pinned() {
        let mut h = Sha256::new();
        for (off, bytes) in layout().table_writes(&[0x90; 440]) {
            h.update(off.to_le_bytes());
            h.update(&bytes);
        }
        assert_eq!(hex::encode(h.finalize()), "8f160c8b4dd00870a8dd12eb83885ba69e1dafc24d479618b51f97a8981421ec");
        // The ESP's FAT serial is taken from a derived GUID's on-disk bytes.
        assert_eq!(guid_bytes(&derived_guid(b"seed", "esp-serial"))[..4], [173, 31, 60, 5]);
    }
}
