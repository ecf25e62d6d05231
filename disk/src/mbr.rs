//! Master boot records: the protective MBR in front of a GPT, and the DOS partition table of
//! the Raspberry Pi's `rpi.img`.

use std::fmt;

/// Partition type of a FAT32 partition addressed by LBA (the Pi's boot partition).
pub const TYPE_FAT32_LBA: u8 = 0x0c;
/// Partition type of a Linux partition.
pub const TYPE_LINUX: u8 = 0x83;
/// Partition type of the protective MBR's one partition (the disk is GPT).
pub const TYPE_GPT_PROTECTIVE: u8 = 0xee;
/// Bytes of boot code before the disk signature.
pub const BOOT_CODE_LEN: usize = 440;

/// One used partition entry (entries of type 0 are unused).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MbrPart {
    pub bootable: bool,
    pub kind: u8,
    pub start_lba: u32,
    pub sectors: u32,
}

/// A parsed MBR: the disk identifier (the Pi's PARTUUID prefix) and the used entries, in
/// table order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mbr {
    pub disk_id: u32,
    pub partitions: Vec<MbrPart>,
}

impl Mbr {
    /// The MBR of a GPT disk: one entry, of type 0xEE.
    pub fn is_protective(&self) -> bool {
        matches!(self.partitions.as_slice(), [p] if p.kind == TYPE_GPT_PROTECTIVE)
    }
}

/// Why bytes are not an MBR.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MbrError {
    TooShort { len: usize },
    NoSignature,
}

impl fmt::Display for MbrError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MbrError::TooShort { len } => write!(f, "no MBR: {len} bytes, not a 512-byte sector"),
            MbrError::NoSignature => f.write_str("no MBR signature 55 aa"),
        }
    }
}

impl std::error::Error for MbrError {}

/// CHS "beyond 1024 cylinders" (cylinder 1023, head 254, sector 63): what partitioners put
/// where an LBA does not fit CHS; firmware and Linux use the LBA fields.
const CHS_BEYOND: [u8; 3] = [0xfe, 0xff, 0xff];

/// Write entry `i` (0..4) for `p`, with the given CHS addresses of its first and last sector.
fn entry(m: &mut [u8; 512], i: usize, p: &MbrPart, chs_first: [u8; 3], chs_last: [u8; 3]) {
    let e = &mut m[446 + 16 * i..446 + 16 * (i + 1)];
    e[0] = if p.bootable { 0x80 } else { 0 };
    e[1..4].copy_from_slice(&chs_first);
    e[4] = p.kind;
    e[5..8].copy_from_slice(&chs_last);
    e[8..12].copy_from_slice(&p.start_lba.to_le_bytes());
    e[12..16].copy_from_slice(&p.sectors.to_le_bytes());
}

fn signed(mut m: [u8; 512]) -> [u8; 512] {
    m[510] = 0x55;
    m[511] = 0xaa;
    m
}

/// The protective MBR of a GPT disk of `total_sectors` 512-byte sectors: `boot_code` (its
/// first 440 bytes, e.g. syslinux's gptmbr.bin), one non-bootable entry of type 0xEE from LBA 1
/// over the rest of the disk (capped at 2^32-1 sectors), the signature.
pub fn protective(boot_code: &[u8], total_sectors: u64) -> [u8; 512] {
    let mut m = [0u8; 512];
    let n = boot_code.len().min(BOOT_CODE_LEN);
    m[..n].copy_from_slice(&boot_code[..n]);
    let size = total_sectors.saturating_sub(1).min(u32::MAX as u64) as u32;
    // Not active: UEFI requires the protective entry to be non-bootable. CHS of LBA 1 is
    // (0, 0, 2); the end is "too large" (ff ff ff), as the UEFI spec asks.
    let p = MbrPart { bootable: false, kind: TYPE_GPT_PROTECTIVE, start_lba: 1, sectors: size };
    entry(&mut m, 0, &p, [0x00, 0x02, 0x00], [0xff, 0xff, 0xff]);
    signed(m)
}

/// A DOS MBR with `parts` (the first four) and `disk_id`, no boot code; CHS fields are the
/// "beyond 1024 cylinders" marker (the Pi and Linux read the LBAs).
pub fn dos(disk_id: u32, parts: &[MbrPart]) -> [u8; 512] {
    let mut m = [0u8; 512];
    m[440..444].copy_from_slice(&disk_id.to_le_bytes());
    for (i, p) in parts.iter().take(4).enumerate() {
        entry(&mut m, i, p, CHS_BEYOND, CHS_BEYOND);
    }
    signed(m)
}

/// Parse the first 512 bytes of `b` as an MBR: its disk identifier and used entries.
pub fn parse(b: &[u8]) -> Result<Mbr, MbrError> {
    let Some(b) = b.get(..512) else { return Err(MbrError::TooShort { len: b.len() }) };
    if b[510] != 0x55 || b[511] != 0xaa {
        return Err(MbrError::NoSignature);
    }
    let disk_id = u32::from_le_bytes([b[440], b[441], b[442], b[443]]);
    let partitions = b[446..510]
        .chunks_exact(16)
        .filter(|e| e[4] != 0)
        .map(|e| MbrPart {
            bootable: e[0] == 0x80,
            kind: e[4],
            start_lba: u32::from_le_bytes([e[8], e[9], e[10], e[11]]),
            sectors: u32::from_le_bytes([e[12], e[13], e[14], e[15]]),
        })
        .collect();
    Ok(Mbr { disk_id, partitions })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dos_round_trips() {
        let parts = vec![
            MbrPart { bootable: true, kind: TYPE_FAT32_LBA, start_lba: 2048, sectors: 131072 },
            MbrPart { bootable: false, kind: TYPE_LINUX, start_lba: 133120, sectors: 4096 },
        ];
        let b = dos(0x1234abcd, &parts);
        assert_eq!(parse(&b), Ok(Mbr { disk_id: 0x1234abcd, partitions: parts }));
        assert_eq!(&b[446 + 1..446 + 4], &CHS_BEYOND);
        assert!(!parse(&b).unwrap().is_protective());
    }

    #[test]
    fn protective_round_trips_and_caps_the_size() {
        let m = protective(&[0x90; 500], 100);
        assert_eq!(&m[..440], &[0x90; 440][..]);
        assert_eq!(&m[440..446], &[0; 6]);
        let p = parse(&m).unwrap();
        assert!(p.is_protective());
        assert_eq!(p.partitions[0], MbrPart { bootable: false, kind: 0xee, start_lba: 1, sectors: 99 });
        assert_eq!(parse(&protective(&[], 1 << 40)).unwrap().partitions[0].sectors, u32::MAX);
    }

    #[test]
    fn not_an_mbr() {
        assert_eq!(parse(&[0u8; 512]), Err(MbrError::NoSignature));
        assert_eq!(parse(&[0u8; 100]), Err(MbrError::TooShort { len: 100 }));
    }
}
