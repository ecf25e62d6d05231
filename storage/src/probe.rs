//! Signatures: what a device holds, read from its first and last MiB. A device is *blank* only
//! when both regions are all zeros; anything else is data that oa must not format over.

/// Bytes read from the start and from the end of a device.
pub const REGION: usize = 1 << 20;

/// The LUKS2 subsystem oa writes into the headers it makes.
pub const OA_SUBSYSTEM: &str = "oa";
/// LUKS2 label of a volume whose btrfs is not made yet (format interrupted after LUKS).
pub const LABEL_NEW: &str = "oa-persist-new";
/// LUKS2 label of a finished oa volume.
pub const LABEL_DONE: &str = "oa-persist";

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Signature {
    /// A LUKS header; `oa` when its subsystem is ours.
    Luks {
        version: u16,
        label: String,
        subsystem: String,
        uuid: String,
    },
    Btrfs,
    Ext,
    Xfs,
    Vfat,
    Ntfs,
    Gpt,
    Mbr,
    Swap,
    Squashfs,
    Iso9660,
    Lvm2,
    MdRaid,
    /// Non-zero bytes that match no known magic.
    UnknownData,
}

impl Signature {
    pub fn name(&self) -> String {
        match self {
            Signature::Luks { version, label, subsystem, .. } => {
                format!("LUKS{version} header (label {label:?}, subsystem {subsystem:?})")
            }
            Signature::Btrfs => "btrfs filesystem".into(),
            Signature::Ext => "ext2/3/4 filesystem".into(),
            Signature::Xfs => "xfs filesystem".into(),
            Signature::Vfat => "FAT filesystem".into(),
            Signature::Ntfs => "NTFS filesystem".into(),
            Signature::Gpt => "GPT partition table".into(),
            Signature::Mbr => "MBR partition table / boot sector".into(),
            Signature::Swap => "swap space".into(),
            Signature::Squashfs => "squashfs image".into(),
            Signature::Iso9660 => "ISO 9660 filesystem".into(),
            Signature::Lvm2 => "LVM2 physical volume".into(),
            Signature::MdRaid => "Linux RAID member".into(),
            Signature::UnknownData => "non-zero data of unknown type".into(),
        }
    }

    /// A LUKS2 header that oa made.
    pub fn is_oa_luks(&self) -> bool {
        matches!(self, Signature::Luks { version: 2, subsystem, .. } if subsystem == OA_SUBSYSTEM)
    }
}

fn at(buf: &[u8], off: usize, magic: &[u8]) -> bool {
    buf.get(off..off + magic.len()) == Some(magic)
}

fn cstr(buf: &[u8], off: usize, len: usize) -> String {
    let b = buf.get(off..off + len).unwrap_or(&[]);
    let end = b.iter().position(|&c| c == 0).unwrap_or(b.len());
    String::from_utf8_lossy(&b[..end]).into_owned()
}

/// Every signature found in `head` (the first bytes of the device) and `tail` (its last bytes).
/// Empty means blank.
pub fn detect(head: &[u8], tail: &[u8]) -> Vec<Signature> {
    let mut v = Vec::new();
    if at(head, 0, b"LUKS\xba\xbe") {
        let version = u16::from_be_bytes([head[6], head[7]]);
        let (label, subsystem, uuid) = if version == 2 {
            (cstr(head, 24, 48), cstr(head, 208, 48), cstr(head, 168, 40))
        } else {
            (String::new(), String::new(), cstr(head, 168, 40))
        };
        v.push(Signature::Luks { version, label, subsystem, uuid });
    }
    if at(head, 0x10040, b"_BHRfS_M") {
        v.push(Signature::Btrfs);
    }
    if at(head, 0x438, &[0x53, 0xef]) {
        v.push(Signature::Ext);
    }
    if at(head, 0, b"XFSB") {
        v.push(Signature::Xfs);
    }
    if at(head, 0x36, b"FAT1") || at(head, 0x52, b"FAT32") {
        v.push(Signature::Vfat);
    }
    if at(head, 3, b"NTFS    ") {
        v.push(Signature::Ntfs);
    }
    if at(head, 512, b"EFI PART")
        || at(head, 4096, b"EFI PART")
        || (tail.len() >= 512 && at(tail, tail.len() - 512, b"EFI PART"))
    {
        v.push(Signature::Gpt);
    }
    if at(head, 510, &[0x55, 0xaa]) && !v.iter().any(|s| matches!(s, Signature::Vfat | Signature::Ntfs)) {
        v.push(Signature::Mbr);
    }
    if at(head, 4086, b"SWAPSPACE2") || at(head, 4086, b"SWAP-SPACE") {
        v.push(Signature::Swap);
    }
    if at(head, 0, b"hsqs") {
        v.push(Signature::Squashfs);
    }
    if at(head, 0x8001, b"CD001") {
        v.push(Signature::Iso9660);
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

/// Read the first and last [`REGION`] bytes of `dev` (a block device or a file).
pub fn read_regions(dev: &std::path::Path) -> std::io::Result<(Vec<u8>, Vec<u8>)> {
    use std::io::{Read, Seek, SeekFrom};
    let mut f = std::fs::File::open(dev)?;
    let size = f.seek(SeekFrom::End(0))?;
    let n = (REGION as u64).min(size) as usize;
    let mut head = vec![0u8; n];
    f.seek(SeekFrom::Start(0))?;
    f.read_exact(&mut head)?;
    let mut tail = vec![0u8; n];
    f.seek(SeekFrom::Start(size - n as u64))?;
    f.read_exact(&mut tail)?;
    Ok((head, tail))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn zeros() -> Vec<u8> {
        vec![0u8; REGION]
    }

    #[test]
    fn zeros_are_blank() {
        assert!(detect(&zeros(), &zeros()).is_empty());
    }

    #[test]
    fn one_stray_byte_is_not_blank() {
        let mut t = zeros();
        t[REGION - 1] = 1;
        assert_eq!(detect(&zeros(), &t), vec![Signature::UnknownData]);
    }

    #[test]
    fn known_magics() {
        let cases: Vec<(usize, &[u8], Signature)> = vec![
            (0x438, &[0x53, 0xef], Signature::Ext),
            (0x10040, b"_BHRfS_M", Signature::Btrfs),
            (0, b"XFSB", Signature::Xfs),
            (512, b"EFI PART", Signature::Gpt),
            (4086, b"SWAPSPACE2", Signature::Swap),
            (0, b"hsqs", Signature::Squashfs),
            (0x8001, b"CD001", Signature::Iso9660),
        ];
        for (off, magic, sig) in cases {
            let mut h = zeros();
            h[off..off + magic.len()].copy_from_slice(magic);
            assert!(detect(&h, &zeros()).contains(&sig), "{sig:?}");
        }
    }

    #[test]
    fn luks2_header_fields_and_ownership() {
        let mut h = zeros();
        h[..6].copy_from_slice(b"LUKS\xba\xbe");
        h[7] = 2;
        h[24..24 + LABEL_DONE.len()].copy_from_slice(LABEL_DONE.as_bytes());
        h[208..210].copy_from_slice(b"oa");
        let s = detect(&h, &zeros());
        assert!(s[0].is_oa_luks(), "{s:?}");
        h[208..210].copy_from_slice(b"xx");
        assert!(!detect(&h, &zeros())[0].is_oa_luks());
    }
}
