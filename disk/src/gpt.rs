//! GUID partition tables: written for oa's disk images, parsed from any disk.
//!
//! Writing ([`Layout`]) is pure: a layout in, the bytes of the protective MBR, both headers and
//! both entry arrays out, with their offsets ([`Layout::table_writes`]); the caller writes
//! them into the image. The layout oa writes: 512-byte sectors; sector 0 the protective MBR,
//! sector 1 the header, sectors 2..34 the 128 entries; every partition on a 1 MiB boundary,
//! rounded up to whole MiB; the backup entries and header are the last 33 sectors, 1 MiB is
//! left after the last partition for them. GUIDs are given by the caller, so the same inputs
//! give the same bytes.
//!
//! Parsing ([`parse_header`], [`parse_entries`]) checks what a disk says before it is used:
//! the header's size and CRC, the entry size and count (bounded, so a damaged header cannot
//! make the caller allocate or read much), the entries' CRC.

use crate::crc::crc32;
use crate::guid::Guid;
use crate::mbr;
use crate::units::{Lba, SectorSize};
use std::fmt;

/// The sector size of the tables [`Layout`] writes.
pub const SECTOR: SectorSize = SectorSize::B512;
/// Partitions start on 1 MiB boundaries (2048 sectors of 512 bytes), as partitioning tools do.
pub const ALIGN_SECTORS: u64 = 2048;
/// Entries in the arrays written.
pub const ENTRIES: u32 = 128;
/// Bytes of one entry written.
pub const ENTRY_SIZE: u32 = 128;
/// Sectors taken by the entry array written (128 * 128 bytes).
const ENTRY_SECTORS: u64 = (ENTRIES as u64 * ENTRY_SIZE as u64) / SECTOR.bytes();
/// The header's signature.
pub const SIGNATURE: &[u8; 8] = b"EFI PART";
/// GPT revision 1.0.
const REVISION: u32 = 0x0001_0000;
/// Bytes of the header that its CRC covers (revision 1.0).
const HEADER_SIZE: u32 = 92;
/// UTF-16 code units of a partition name.
pub const NAME_UNITS: usize = 36;

/// Parsed entry arrays are at most this large (4096 entries of 128 bytes would be 512 KiB; the
/// usual table is 16 KiB).
pub const MAX_ENTRIES_BYTES: usize = 1 << 20;

/// Attribute bit 2: "legacy BIOS bootable", the partition syslinux's gptmbr.bin boots.
pub const ATTR_LEGACY_BIOS_BOOTABLE: u64 = 1 << 2;

/// A partition to lay out: its name, type, unique GUID, minimum size and attributes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartSpec {
    pub name: String,
    pub type_guid: Guid,
    pub guid: Guid,
    pub size_bytes: u64,
    pub attributes: u64,
}

/// A used partition entry: one that [`Layout`] placed, or one parsed from a disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Partition {
    /// 1-based number (index in the entry array + 1), as the kernel numbers partitions.
    pub number: u32,
    /// The partition name (PARTLABEL).
    pub name: String,
    pub type_guid: Guid,
    /// The unique partition GUID (PARTUUID).
    pub guid: Guid,
    /// First sector, inclusive.
    pub first_lba: Lba,
    /// Last sector, inclusive.
    pub last_lba: Lba,
    pub attributes: u64,
}

impl Partition {
    /// Byte offset of the partition on a disk with 512-byte sectors.
    pub fn offset(&self) -> u64 {
        self.first_lba.offset(SECTOR)
    }

    /// Size in sectors.
    pub fn sectors(&self) -> u64 {
        self.first_lba.count_to(self.last_lba)
    }

    /// Size in bytes on a disk with 512-byte sectors.
    pub fn size(&self) -> u64 {
        self.sectors() * SECTOR.bytes()
    }
}

/// A whole disk's layout, as [`Layout::table_writes`] writes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    pub disk_guid: Guid,
    /// Size of the disk in 512-byte sectors.
    pub total_sectors: u64,
    pub partitions: Vec<Partition>,
}

impl Layout {
    /// Place `parts` in order, each on a 1 MiB boundary and rounded up to whole MiB (at least
    /// one), with 1 MiB left at the end for the backup GPT. At most [`ENTRIES`] partitions are
    /// placed.
    pub fn plan(disk_guid: Guid, parts: &[PartSpec]) -> Layout {
        let mut next = Lba(ALIGN_SECTORS);
        let mut partitions = Vec::new();
        for (i, p) in parts.iter().take(ENTRIES as usize).enumerate() {
            let sectors = SECTOR.sectors_for(p.size_bytes).max(1).div_ceil(ALIGN_SECTORS) * ALIGN_SECTORS;
            partitions.push(Partition {
                number: i as u32 + 1,
                name: p.name.clone(),
                type_guid: p.type_guid,
                guid: p.guid,
                first_lba: next,
                last_lba: next.after(sectors - 1),
                attributes: p.attributes,
            });
            next = next.after(sectors);
        }
        Layout { disk_guid, total_sectors: next.0 + ALIGN_SECTORS, partitions }
    }

    pub fn size_bytes(&self) -> u64 {
        self.total_sectors * SECTOR.bytes()
    }

    /// The partition named `name`.
    pub fn partition(&self, name: &str) -> Option<&Partition> {
        self.partitions.iter().find(|p| p.name == name)
    }

    fn last_lba(&self) -> Lba {
        Lba(self.total_sectors - 1)
    }

    /// The protective MBR: `boot_code` (up to 440 bytes, e.g. gptmbr.bin), one partition of
    /// type 0xEE covering the disk (capped at 2^32-1 sectors), the 55 AA signature.
    pub fn protective_mbr(&self, boot_code: &[u8]) -> [u8; 512] {
        mbr::protective(boot_code, self.total_sectors)
    }

    /// The partition entry array (128 entries of 128 bytes).
    pub fn entries(&self) -> Vec<u8> {
        let mut out = vec![0u8; (ENTRIES * ENTRY_SIZE) as usize];
        for p in &self.partitions {
            let e = &mut out[(p.number as usize - 1) * ENTRY_SIZE as usize..][..ENTRY_SIZE as usize];
            e[0..16].copy_from_slice(&p.type_guid.to_gpt_bytes());
            e[16..32].copy_from_slice(&p.guid.to_gpt_bytes());
            e[32..40].copy_from_slice(&p.first_lba.0.to_le_bytes());
            e[40..48].copy_from_slice(&p.last_lba.0.to_le_bytes());
            e[48..56].copy_from_slice(&p.attributes.to_le_bytes());
            for (i, u) in p.name.encode_utf16().take(NAME_UNITS).enumerate() {
                e[56 + 2 * i..58 + 2 * i].copy_from_slice(&u.to_le_bytes());
            }
        }
        out
    }

    /// A header sector. `primary`: at LBA 1 with its entries at LBA 2; else the backup at the
    /// last LBA with its entries just before it.
    pub fn header(&self, primary: bool, entries_crc: u32) -> [u8; 512] {
        let last = self.last_lba();
        let (my, alternate, entries_lba) =
            if primary { (Lba(1), last, Lba(2)) } else { (last, Lba(1), last.before(ENTRY_SECTORS)) };
        let mut h = [0u8; 512];
        h[0..8].copy_from_slice(SIGNATURE);
        h[8..12].copy_from_slice(&REVISION.to_le_bytes());
        h[12..16].copy_from_slice(&HEADER_SIZE.to_le_bytes());
        h[24..32].copy_from_slice(&my.0.to_le_bytes());
        h[32..40].copy_from_slice(&alternate.0.to_le_bytes());
        h[40..48].copy_from_slice(&(2 + ENTRY_SECTORS).to_le_bytes()); // first usable LBA
        h[48..56].copy_from_slice(&last.before(ENTRY_SECTORS + 1).0.to_le_bytes()); // last usable LBA
        h[56..72].copy_from_slice(&self.disk_guid.to_gpt_bytes());
        h[72..80].copy_from_slice(&entries_lba.0.to_le_bytes());
        h[80..84].copy_from_slice(&ENTRIES.to_le_bytes());
        h[84..88].copy_from_slice(&ENTRY_SIZE.to_le_bytes());
        h[88..92].copy_from_slice(&entries_crc.to_le_bytes());
        let crc = crc32(&h[..HEADER_SIZE as usize]);
        h[16..20].copy_from_slice(&crc.to_le_bytes());
        h
    }

    /// Every piece of the partition table with its byte offset in the image: the protective
    /// MBR, the primary header and entries, the backup entries and header.
    pub fn table_writes(&self, boot_code: &[u8]) -> Vec<(u64, Vec<u8>)> {
        let entries = self.entries();
        let crc = crc32(&entries);
        let last = self.last_lba();
        vec![
            (0, self.protective_mbr(boot_code).to_vec()),
            (Lba(1).offset(SECTOR), self.header(true, crc).to_vec()),
            (Lba(2).offset(SECTOR), entries.clone()),
            (last.before(ENTRY_SECTORS).offset(SECTOR), entries),
            (last.offset(SECTOR), self.header(false, crc).to_vec()),
        ]
    }

    /// The byte ranges holding the partition table (and the alignment gaps around it): up to
    /// the first partition's start, and everything after the last partition.
    pub fn table_ranges(&self) -> Vec<(u64, u64)> {
        let first = self.partitions.first().map_or(Lba(ALIGN_SECTORS), |p| p.first_lba).offset(SECTOR);
        let end = self.partitions.last().map_or(Lba(ALIGN_SECTORS), |p| p.last_lba.after(1)).offset(SECTOR);
        vec![(0, first), (end, self.size_bytes())]
    }
}

/// The fields of a GPT header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    pub revision: u32,
    pub header_size: u32,
    pub my_lba: Lba,
    pub alternate_lba: Lba,
    pub first_usable_lba: Lba,
    pub last_usable_lba: Lba,
    pub disk_guid: Guid,
    pub entries_lba: Lba,
    pub num_entries: u32,
    pub entry_size: u32,
    pub entries_crc: u32,
}

impl Header {
    /// Bytes the partition entry array takes (at most [`MAX_ENTRIES_BYTES`] once parsed).
    pub fn entries_len(&self) -> usize {
        self.num_entries as usize * self.entry_size as usize
    }
}

/// What is wrong with a partition table read from a disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GptError {
    HeaderTooShort { len: usize },
    HeaderSize { size: u32 },
    HeaderCrc { stored: u32, computed: u32 },
    EntrySize { size: u32 },
    EntryCount { count: u32 },
    EntriesTooLarge { bytes: usize },
    EntriesTruncated { have: usize, need: usize },
    EntriesCrc { stored: u32, computed: u32 },
}

impl fmt::Display for GptError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            GptError::HeaderTooShort { len } => write!(f, "header sector too short ({len} bytes)"),
            GptError::HeaderSize { size } => write!(f, "header size {size} is out of range"),
            GptError::HeaderCrc { stored, computed } => {
                write!(f, "header CRC mismatch (stored {stored:08x}, computed {computed:08x})")
            }
            GptError::EntrySize { size } => write!(f, "partition entry size {size} is invalid"),
            GptError::EntryCount { count } => write!(f, "{count} partition entries is implausible"),
            GptError::EntriesTooLarge { bytes } => {
                write!(f, "partition entry array of {bytes} bytes is implausible (at most {MAX_ENTRIES_BYTES})")
            }
            GptError::EntriesTruncated { have, need } => {
                write!(f, "partition entries truncated ({have} of {need} bytes)")
            }
            GptError::EntriesCrc { stored, computed } => {
                write!(f, "partition entries CRC mismatch (stored {stored:08x}, computed {computed:08x})")
            }
        }
    }
}

impl std::error::Error for GptError {}

fn u32_at(b: &[u8], off: usize) -> u32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[off..off + 4]);
    u32::from_le_bytes(a)
}

fn u64_at(b: &[u8], off: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[off..off + 8]);
    u64::from_le_bytes(a)
}

fn guid_at(b: &[u8], off: usize) -> Guid {
    let mut a = [0u8; 16];
    a.copy_from_slice(&b[off..off + 16]);
    Guid::from_gpt_bytes(a)
}

/// Parse a header sector (LBA 1, or the backup's). `Ok(None)` when there is no GPT signature.
pub fn parse_header(sector: &[u8]) -> Result<Option<Header>, GptError> {
    if sector.len() < HEADER_SIZE as usize {
        return Err(GptError::HeaderTooShort { len: sector.len() });
    }
    if &sector[0..8] != SIGNATURE {
        return Ok(None);
    }
    let header_size = u32_at(sector, 12);
    if !(HEADER_SIZE as usize..=sector.len()).contains(&(header_size as usize)) {
        return Err(GptError::HeaderSize { size: header_size });
    }
    let stored = u32_at(sector, 16);
    let mut copy = sector[..header_size as usize].to_vec();
    copy[16..20].fill(0);
    let computed = crc32(&copy);
    if stored != computed {
        return Err(GptError::HeaderCrc { stored, computed });
    }
    let h = Header {
        revision: u32_at(sector, 8),
        header_size,
        my_lba: Lba(u64_at(sector, 24)),
        alternate_lba: Lba(u64_at(sector, 32)),
        first_usable_lba: Lba(u64_at(sector, 40)),
        last_usable_lba: Lba(u64_at(sector, 48)),
        disk_guid: guid_at(sector, 56),
        entries_lba: Lba(u64_at(sector, 72)),
        num_entries: u32_at(sector, 80),
        entry_size: u32_at(sector, 84),
        entries_crc: u32_at(sector, 88),
    };
    if h.entry_size < 128 || h.entry_size & 7 != 0 || h.entry_size > 4096 {
        return Err(GptError::EntrySize { size: h.entry_size });
    }
    if h.num_entries > 4096 {
        return Err(GptError::EntryCount { count: h.num_entries });
    }
    if h.entries_len() > MAX_ENTRIES_BYTES {
        return Err(GptError::EntriesTooLarge { bytes: h.entries_len() });
    }
    Ok(Some(h))
}

/// Parse the partition entry array of `h` (`buf` holds at least [`Header::entries_len`]
/// bytes); unused entries (nil type GUID) are skipped.
pub fn parse_entries(h: &Header, buf: &[u8]) -> Result<Vec<Partition>, GptError> {
    let len = h.entries_len();
    if buf.len() < len {
        return Err(GptError::EntriesTruncated { have: buf.len(), need: len });
    }
    let computed = crc32(&buf[..len]);
    if computed != h.entries_crc {
        return Err(GptError::EntriesCrc { stored: h.entries_crc, computed });
    }
    let mut out = Vec::new();
    for (i, e) in buf[..len].chunks_exact(h.entry_size as usize).enumerate() {
        let type_guid = guid_at(e, 0);
        if type_guid.is_nil() {
            continue;
        }
        let units: Vec<u16> = e[56..56 + 2 * NAME_UNITS]
            .chunks_exact(2)
            .map(|c| u16::from_le_bytes([c[0], c[1]]))
            .take_while(|&u| u != 0)
            .collect();
        out.push(Partition {
            number: i as u32 + 1,
            name: String::from_utf16_lossy(&units),
            type_guid,
            guid: guid_at(e, 16),
            first_lba: Lba(u64_at(e, 32)),
            last_lba: Lba(u64_at(e, 40)),
            attributes: u64_at(e, 48),
        });
    }
    Ok(out)
}

/// Parse the primary table of a whole disk image held in memory (for tests and tools; a real
/// disk is read piece by piece). `Ok(None)` when there is no GPT.
pub fn parse_image(disk: &[u8], sector: SectorSize) -> Result<Option<(Header, Vec<Partition>)>, GptError> {
    let s = sector.bytes() as usize;
    let Some(hdr) = disk.get(s..2 * s) else {
        return Err(GptError::HeaderTooShort { len: disk.len().saturating_sub(s) });
    };
    let Some(h) = parse_header(hdr)? else { return Ok(None) };
    let need = h.entries_len();
    let start = h.entries_lba.checked_offset(sector).and_then(|o| usize::try_from(o).ok()).unwrap_or(usize::MAX);
    let ent = disk.get(start..).unwrap_or(&[]);
    let parts = parse_entries(&h, &ent[..ent.len().min(need)])?;
    Ok(Some((h, parts)))
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn guid(n: u8) -> Guid {
        Guid::v4_from_bytes([n; 16])
    }

    fn layout() -> Layout {
        let spec = |name: &str, type_guid, size_bytes, attributes, n| PartSpec {
            name: name.into(),
            type_guid,
            guid: guid(n),
            size_bytes,
            attributes,
        };
        Layout::plan(
            guid(0),
            &[
                spec("oa-esp", Guid::ESP, 12 << 20, ATTR_LEGACY_BIOS_BOOTABLE, 1),
                spec("oa-root", Guid::LINUX_DATA, 1_000_000, 0, 2),
                spec("oa-persist", Guid::LINUX_DATA, 64 << 20, 0, 3),
            ],
        )
    }

    fn image(l: &Layout) -> Vec<u8> {
        let mut disk = vec![0u8; l.size_bytes() as usize];
        for (off, bytes) in l.table_writes(&[0x90; 440]) {
            disk[off as usize..off as usize + bytes.len()].copy_from_slice(&bytes);
        }
        disk
    }

    #[test]
    fn partitions_are_aligned_and_rounded_to_mib() {
        let l = layout();
        let p: Vec<_> = l.partitions.iter().map(|p| (p.number, p.first_lba.0, p.last_lba.0)).collect();
        assert_eq!(
            p,
            vec![(1, 2048, 2048 + 12 * 2048 - 1), (2, 26624, 26624 + 2048 - 1), (3, 28672, 28672 + 64 * 2048 - 1)]
        );
        assert_eq!(l.total_sectors, 28672 + 64 * 2048 + 2048);
        assert_eq!(l.partition("oa-root").map(Partition::size), Some(1 << 20));
        assert_eq!(l.table_ranges(), vec![(0, 1 << 20), ((28672 + 64 * 2048) * 512, l.size_bytes())]);
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
        let crc = crc32(entries);
        for (hdr, my) in [(&w[1].1, 1u64), (&w[4].1, l.total_sectors - 1)] {
            let h = parse_header(hdr).unwrap().unwrap();
            assert_eq!(h.my_lba, Lba(my));
            assert_eq!(h.entries_crc, crc);
            assert_eq!(h.disk_guid, l.disk_guid);
        }
        // The backup entries end right before the backup header.
        assert_eq!(w[3].0 + entries.len() as u64, w[4].0);
        // Entry 1: ESP type, legacy BIOS bootable, name in UTF-16LE.
        assert_eq!(&entries[0..16], &Guid::ESP.to_gpt_bytes());
        assert_eq!(u64_at(entries, 48), ATTR_LEGACY_BIOS_BOOTABLE);
        assert_eq!(&entries[56..62], &[b'o', 0, b'a', 0, b'-', 0]);
        // Entries 4..128 are empty.
        assert!(entries[3 * 128..].iter().all(|&b| b == 0));
    }

    #[test]
    fn write_then_parse_round_trips() {
        let l = layout();
        let disk = image(&l);
        let (h, parts) = parse_image(&disk, SECTOR).unwrap().unwrap();
        assert_eq!(parts, l.partitions);
        assert_eq!((h.first_usable_lba, h.last_usable_lba), (Lba(34), Lba(l.total_sectors - 34)));
        assert_eq!(h.alternate_lba, Lba(l.total_sectors - 1));
        // The backup table says the same.
        let last = (l.total_sectors - 1) as usize * 512;
        let b = parse_header(&disk[last..last + 512]).unwrap().unwrap();
        let at = b.entries_lba.0 as usize * 512;
        assert_eq!(parse_entries(&b, &disk[at..at + b.entries_len()]).unwrap(), l.partitions);
    }

    #[test]
    fn no_signature_is_none() {
        assert_eq!(parse_header(&[0u8; 512]).unwrap(), None);
        assert_eq!(parse_image(&[0u8; 4096], SECTOR).unwrap(), None);
    }

    #[test]
    fn damaged_tables_are_errors() {
        let l = layout();
        let w = l.table_writes(&[]);
        let (mut hdr, mut ent) = (w[1].1.clone(), w[2].1.clone());
        let h = parse_header(&hdr).unwrap().unwrap();
        ent[60] ^= 1;
        assert!(matches!(parse_entries(&h, &ent), Err(GptError::EntriesCrc { .. })));
        assert!(parse_entries(&h, &ent[..100]).unwrap_err().to_string().contains("truncated"));
        hdr[72] ^= 1;
        assert!(parse_header(&hdr).unwrap_err().to_string().contains("CRC"));
        assert!(matches!(parse_header(&hdr[..50]), Err(GptError::HeaderTooShort { len: 50 })));
    }

    /// A header with a valid CRC but absurd fields is refused before anything is allocated.
    #[test]
    fn implausible_headers_are_errors() {
        let l = layout();
        let good = l.header(true, 0);
        let with = |fields: &[(usize, u32)]| {
            let mut h = good;
            for &(off, v) in fields {
                h[off..off + 4].copy_from_slice(&v.to_le_bytes());
            }
            h[16..20].fill(0);
            let c = crc32(&h[..92]);
            h[16..20].copy_from_slice(&c.to_le_bytes());
            parse_header(&h)
        };
        assert_eq!(with(&[(84, 100)]), Err(GptError::EntrySize { size: 100 }));
        assert_eq!(with(&[(84, 8192)]), Err(GptError::EntrySize { size: 8192 }));
        assert_eq!(with(&[(80, 100_000)]), Err(GptError::EntryCount { count: 100_000 }));
        assert!(with(&[(84, 4096)]).is_ok(), "128 entries of 4 KiB");
        assert_eq!(with(&[(80, 4096), (84, 4096)]), Err(GptError::EntriesTooLarge { bytes: 16 << 20 }));
        let mut h = good;
        h[12..16].copy_from_slice(&600u32.to_le_bytes());
        assert_eq!(parse_header(&h), Err(GptError::HeaderSize { size: 600 }));
    }
}
