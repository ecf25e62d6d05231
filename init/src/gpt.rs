//! GUID partition tables, parsed from bytes (pure; the I/O is in devices.rs).

/// The fields of a GPT header we use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    pub entries_lba: u64,
    pub num_entries: u32,
    pub entry_size: u32,
    pub entries_crc: u32,
}

/// One used partition entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Partition {
    /// 1-based partition number (index in the table + 1), as the kernel numbers them.
    pub number: u32,
    /// Partition GUID, lowercase `xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx` (PARTUUID).
    pub uuid: String,
    /// Partition name (PARTLABEL).
    pub name: String,
    pub first_lba: u64,
    pub last_lba: u64,
}

const SIGNATURE: &[u8; 8] = b"EFI PART";

/// CRC-32 (IEEE 802.3, as used by GPT).
pub fn crc32(data: &[u8]) -> u32 {
    let mut crc = 0xffff_ffffu32;
    for &b in data {
        crc ^= b as u32;
        for _ in 0..8 {
            let mask = (crc & 1).wrapping_neg();
            crc = (crc >> 1) ^ (0xedb8_8320 & mask);
        }
    }
    !crc
}

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

/// Parse the header sector (LBA 1). `Ok(None)` when there is no GPT signature.
pub fn parse_header(sector: &[u8]) -> Result<Option<Header>, String> {
    if sector.len() < 92 {
        return Err(format!("header sector too short ({} bytes)", sector.len()));
    }
    if &sector[0..8] != SIGNATURE {
        return Ok(None);
    }
    let header_size = u32_at(sector, 12) as usize;
    if !(92..=sector.len()).contains(&header_size) {
        return Err(format!("header size {header_size} is out of range"));
    }
    let want = u32_at(sector, 16);
    let mut copy = sector[..header_size].to_vec();
    copy[16..20].fill(0);
    let got = crc32(&copy);
    if want != got {
        return Err(format!("header CRC mismatch (stored {want:08x}, computed {got:08x})"));
    }
    let h = Header {
        entries_lba: u64_at(sector, 72),
        num_entries: u32_at(sector, 80),
        entry_size: u32_at(sector, 84),
        entries_crc: u32_at(sector, 88),
    };
    if h.entry_size < 128 || h.entry_size & 7 != 0 || h.entry_size > 4096 {
        return Err(format!("partition entry size {} is invalid", h.entry_size));
    }
    if h.num_entries > 4096 {
        return Err(format!("{} partition entries is implausible", h.num_entries));
    }
    Ok(Some(h))
}

/// Bytes the partition entry array takes.
pub fn entries_len(h: &Header) -> usize {
    h.num_entries as usize * h.entry_size as usize
}

/// Format a GUID stored in GPT's mixed-endian layout.
pub fn guid_string(g: &[u8]) -> String {
    format!(
        "{:02x}{:02x}{:02x}{:02x}-{:02x}{:02x}-{:02x}{:02x}-{:02x}{:02x}-{:02x}{:02x}{:02x}{:02x}{:02x}{:02x}",
        g[3], g[2], g[1], g[0], g[5], g[4], g[7], g[6], g[8], g[9], g[10], g[11], g[12], g[13], g[14], g[15]
    )
}

/// Parse the partition entry array; unused entries (zero type GUID) are skipped.
pub fn parse_entries(h: &Header, buf: &[u8]) -> Result<Vec<Partition>, String> {
    let len = entries_len(h);
    if buf.len() < len {
        return Err(format!("partition entries truncated ({} of {len} bytes)", buf.len()));
    }
    let got = crc32(&buf[..len]);
    if got != h.entries_crc {
        return Err(format!("partition entries CRC mismatch (stored {:08x}, computed {got:08x})", h.entries_crc));
    }
    let mut out = Vec::new();
    for (i, e) in buf[..len].chunks_exact(h.entry_size as usize).enumerate() {
        if e[0..16].iter().all(|&b| b == 0) {
            continue;
        }
        let units: Vec<u16> =
            e[56..128].chunks_exact(2).map(|c| u16::from_le_bytes([c[0], c[1]])).take_while(|&u| u != 0).collect();
        out.push(Partition {
            number: i as u32 + 1,
            uuid: guid_string(&e[16..32]),
            name: String::from_utf16_lossy(&units),
            first_lba: u64_at(e, 32),
            last_lba: u64_at(e, 40),
        });
    }
    Ok(out)
}

#[cfg(test)]
pub mod tests {
    use super::*;

    /// Build a header sector + entry array the way a partitioner would.
    pub fn build(parts: &[(u32, [u8; 16], &str)], sector: usize) -> (Vec<u8>, Vec<u8>) {
        let n = 128u32;
        let mut entries = vec![0u8; n as usize * 128];
        for (num, guid, name) in parts {
            let e = &mut entries[(*num as usize - 1) * 128..*num as usize * 128];
            e[0] = 0xaf; // some type GUID, non-zero
            e[16..32].copy_from_slice(guid);
            e[32..40].copy_from_slice(&2048u64.to_le_bytes());
            e[40..48].copy_from_slice(&4095u64.to_le_bytes());
            for (i, u) in name.encode_utf16().enumerate() {
                e[56 + 2 * i..58 + 2 * i].copy_from_slice(&u.to_le_bytes());
            }
        }
        let mut hdr = vec![0u8; sector];
        hdr[0..8].copy_from_slice(SIGNATURE);
        hdr[8..12].copy_from_slice(&0x0001_0000u32.to_le_bytes());
        hdr[12..16].copy_from_slice(&92u32.to_le_bytes());
        hdr[72..80].copy_from_slice(&2u64.to_le_bytes());
        hdr[80..84].copy_from_slice(&n.to_le_bytes());
        hdr[84..88].copy_from_slice(&128u32.to_le_bytes());
        hdr[88..92].copy_from_slice(&crc32(&entries).to_le_bytes());
        let c = crc32(&hdr[..92]);
        hdr[16..20].copy_from_slice(&c.to_le_bytes());
        (hdr, entries)
    }

    #[test]
    fn crc32_known_value() {
        assert_eq!(crc32(b"123456789"), 0xcbf4_3926);
    }

    #[test]
    fn parses_partitions() {
        let guid = [0x78, 0x56, 0x34, 0x12, 0xbc, 0x9a, 0xf0, 0xde, 0x01, 0x23, 0x45, 0x67, 0x89, 0xab, 0xcd, 0xef];
        let (hdr, ent) = build(&[(1, [1; 16], "ESP"), (3, guid, "oa-root")], 512);
        let h = parse_header(&hdr).unwrap().unwrap();
        assert_eq!(h.entries_lba, 2);
        let p = parse_entries(&h, &ent).unwrap();
        assert_eq!(p.len(), 2);
        assert_eq!(p[1].number, 3);
        assert_eq!(p[1].name, "oa-root");
        assert_eq!(p[1].uuid, "12345678-9abc-def0-0123-456789abcdef");
        assert_eq!(p[0].name, "ESP");
    }

    #[test]
    fn no_signature_is_none() {
        assert_eq!(parse_header(&[0u8; 512]).unwrap(), None);
    }

    #[test]
    fn damaged_tables_are_errors() {
        let (mut hdr, mut ent) = build(&[(1, [1; 16], "x")], 512);
        let h = parse_header(&hdr).unwrap().unwrap();
        ent[60] ^= 1;
        assert!(parse_entries(&h, &ent).unwrap_err().contains("CRC"));
        hdr[72] ^= 1;
        assert!(parse_header(&hdr).unwrap_err().contains("CRC"));
        assert!(parse_header(&hdr[..50]).is_err());
    }
}
