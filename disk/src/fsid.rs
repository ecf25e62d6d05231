//! The label and UUID of a filesystem, read from its superblock the way blkid reports them
//! (`LABEL=`, `UUID=`), for oa-init's `oa.root=LABEL=`/`UUID=`: ISO 9660 (volume identifier;
//! UUID from the volume's modification date, else its creation date), FAT (volume label and
//! serial `XXXX-XXXX`), ext2/3/4 and btrfs (volume name and 16-byte UUID).
//!
//! Pure like [`crate::signature`]: give it the first [`crate::signature::HEAD_BYTES`] of the
//! device. Written here rather than linking libblkid, which would end oa-init being a small
//! static binary; these four layouts are stable and each a few fixed offsets.

use crate::signature::{detect, Signature};

/// What `oa.root=LABEL=`/`UUID=` can name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FsId {
    pub kind: FsKind,
    /// Empty when the filesystem has none.
    pub label: String,
    /// Empty when the filesystem has none (a FAT serial of 0, a nil ext4 UUID).
    pub uuid: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FsKind {
    Iso9660,
    Fat,
    Ext,
    Btrfs,
}

impl FsKind {
    /// The kernel's filesystem type for mount(2).
    pub fn fstype(self) -> &'static str {
        match self {
            FsKind::Iso9660 => "iso9660",
            FsKind::Fat => "vfat",
            FsKind::Ext => "ext4",
            FsKind::Btrfs => "btrfs",
        }
    }
    /// The kernel modules that provide [`FsKind::fstype`] (Debian builds them as modules), in
    /// load order. vfat asks for its code page and character set (nls_*), ext4 and btrfs for
    /// the crc32c checksum, at mount time, which an initramfs without modprobe cannot answer:
    /// they are loaded first.
    pub fn modules(self) -> &'static [&'static str] {
        match self {
            FsKind::Iso9660 => &["isofs"],
            FsKind::Fat => &["nls_cp437", "nls_ascii", "nls_utf8", "vfat"],
            FsKind::Ext => &["crc32c_generic", "ext4"],
            FsKind::Btrfs => &["crc32c_generic", "btrfs"],
        }
    }
}

impl FsId {
    /// Does `LABEL=want` name this filesystem? Labels compare exactly.
    pub fn has_label(&self, want: &str) -> bool {
        !self.label.is_empty() && self.label == want
    }
    /// Does `UUID=want` name this filesystem? Case-insensitive, as blkid's are hex.
    pub fn has_uuid(&self, want: &str) -> bool {
        !self.uuid.is_empty() && self.uuid.eq_ignore_ascii_case(want)
    }
}

fn bytes(buf: &[u8], off: usize, len: usize) -> Option<&[u8]> {
    buf.get(off..off.checked_add(len)?)
}

/// A fixed-size text field: up to the first NUL, trailing spaces removed, lossy UTF-8.
fn text(b: &[u8]) -> String {
    let end = b.iter().position(|&c| c == 0).unwrap_or(b.len());
    String::from_utf8_lossy(&b[..end]).trim_end_matches(' ').to_string()
}

fn uuid16(b: &[u8]) -> String {
    if b.iter().all(|&c| c == 0) {
        return String::new();
    }
    let h: String = b.iter().map(|c| format!("{c:02x}")).collect();
    format!("{}-{}-{}-{}-{}", &h[0..8], &h[8..12], &h[12..16], &h[16..20], &h[20..32])
}

/// ISO 9660 date `YYYYMMDDHHMMSScc` (+ a time zone byte) as blkid's UUID
/// `YYYY-MM-DD-HH-MM-SS-cc`; `None` when unset (all `0` or NUL).
fn iso_date(b: &[u8]) -> Option<String> {
    let d = b.get(..16)?;
    if d.iter().all(|&c| c == b'0' || c == 0) || !d.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let s = std::str::from_utf8(d).ok()?;
    Some(format!("{}-{}-{}-{}-{}-{}-{}", &s[0..4], &s[4..6], &s[6..8], &s[8..10], &s[10..12], &s[12..14], &s[14..16]))
}

/// The label and UUID of the filesystem at the start of `head`, if it is one of [`FsKind`].
pub fn read(head: &[u8]) -> Option<FsId> {
    let sigs = detect(head, &[]);
    let has = |s: &Signature| sigs.contains(s);
    if has(&Signature::Iso9660) && bytes(head, 0x8001, 5) == Some(b"CD001") {
        // The primary volume descriptor at sector 16 (2048-byte sectors).
        let pvd = bytes(head, 0x8000, 2048)?;
        let uuid = iso_date(&pvd[830..847]).or_else(|| iso_date(&pvd[813..830])).unwrap_or_default();
        return Some(FsId { kind: FsKind::Iso9660, label: text(&pvd[40..72]), uuid });
    }
    if has(&Signature::Btrfs) {
        let sb = bytes(head, 0x10000, 0x22b)?;
        return Some(FsId { kind: FsKind::Btrfs, label: text(&sb[0x12b..0x22b]), uuid: uuid16(&sb[0x20..0x30]) });
    }
    if has(&Signature::Ext) {
        let sb = bytes(head, 1024, 136)?;
        return Some(FsId { kind: FsKind::Ext, label: text(&sb[120..136]), uuid: uuid16(&sb[104..120]) });
    }
    let (serial_at, label_at) = if has(&Signature::Fat32) {
        (67, 71)
    } else if has(&Signature::Fat16) {
        (39, 43)
    } else {
        return None;
    };
    let serial = bytes(head, serial_at, 4)?;
    let serial = u32::from_le_bytes([serial[0], serial[1], serial[2], serial[3]]);
    let label = text(bytes(head, label_at, 11)?);
    Some(FsId {
        kind: FsKind::Fat,
        // "NO NAME" is what formatters write when there is no label.
        label: if label == "NO NAME" { String::new() } else { label },
        uuid: if serial == 0 { String::new() } else { format!("{:04X}-{:04X}", serial >> 16, serial & 0xffff) },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn put(buf: &mut [u8], off: usize, b: &[u8]) {
        buf[off..off + b.len()].copy_from_slice(b);
    }

    #[test]
    fn iso9660_volume_id_and_date_uuid() {
        let mut h = vec![0u8; 70 * 1024];
        put(&mut h, 0x8000, b"\x01CD001\x01");
        put(&mut h, 0x8000 + 40, b"OA_TINY                         ");
        put(&mut h, 0x8000 + 813, b"2026120118000000\0");
        let f = read(&h).unwrap();
        assert_eq!((f.kind, f.label.as_str(), f.uuid.as_str()), (FsKind::Iso9660, "OA_TINY", "2026-12-01-18-00-00-00"));
        // The modification date wins over the creation date.
        put(&mut h, 0x8000 + 830, b"2026120219304512\0");
        assert_eq!(read(&h).unwrap().uuid, "2026-12-02-19-30-45-12");
        put(&mut h, 0x8000 + 40, b"                                ");
        assert!(!read(&h).unwrap().has_label(""), "no label names nothing");
    }

    #[test]
    fn ext4_btrfs_and_fat() {
        let mut h = vec![0u8; 70 * 1024];
        put(&mut h, 0x438, &[0x53, 0xef]);
        put(&mut h, 1024 + 104, &[0x12, 0x34, 0x56, 0x78, 0x9a, 0xbc, 0xde, 0xf0, 1, 2, 3, 4, 5, 6, 7, 8]);
        put(&mut h, 1024 + 120, b"oa-media");
        let f = read(&h).unwrap();
        assert_eq!(f.kind, FsKind::Ext);
        assert!(f.has_label("oa-media") && !f.has_label("oa-medi"));
        assert!(f.has_uuid("12345678-9ABC-DEF0-0102-030405060708"));

        let mut b = vec![0u8; 70 * 1024];
        put(&mut b, 0x10040, b"_BHRfS_M");
        put(&mut b, 0x10020, &[0xaa; 16]);
        put(&mut b, 0x1012b, b"state");
        let f = read(&b).unwrap();
        assert_eq!((f.kind, f.label.as_str()), (FsKind::Btrfs, "state"));
        assert_eq!(f.uuid, "aaaaaaaa-aaaa-aaaa-aaaa-aaaaaaaaaaaa");

        let mut v = vec![0u8; 4096];
        put(&mut v, 0x52, b"FAT32   ");
        put(&mut v, 67, &0x1234abcdu32.to_le_bytes());
        put(&mut v, 71, b"OA_ESP     ");
        let f = read(&v).unwrap();
        assert_eq!((f.kind, f.label.as_str(), f.uuid.as_str()), (FsKind::Fat, "OA_ESP", "1234-ABCD"));
        put(&mut v, 71, b"NO NAME    ");
        assert_eq!(read(&v).unwrap().label, "");
        let mut w = vec![0u8; 4096];
        put(&mut w, 0x36, b"FAT16   ");
        put(&mut w, 39, &0x0000_0001u32.to_le_bytes());
        put(&mut w, 43, b"STICK      ");
        assert_eq!(read(&w).unwrap().uuid, "0000-0001");
    }

    #[test]
    fn others_and_short_buffers_have_no_id() {
        assert_eq!(read(&[]), None);
        assert_eq!(read(b"hsqs"), None);
        let mut h = vec![0u8; 0x8010];
        put(&mut h, 0x8001, b"CD001");
        assert_eq!(read(&h), None, "a descriptor cut short is not read");
        let mut e = vec![0u8; 0x43a];
        put(&mut e, 0x438, &[0x53, 0xef]);
        assert_eq!(read(&e), None);
    }
}
