//! Signatures: what a device holds, read from its first and last MiB. A device is *blank* only
//! when both regions are all zeros; anything else is data that oa must not format over. The
//! detector is oa-disk's ([`oa_disk::signature`]), the one `oa flash` uses too.

pub use oa_disk::signature::{detect, Signature};

/// Bytes read from the start and from the end of a device.
pub const REGION: usize = 1 << 20;

/// The LUKS2 subsystem oa writes into the headers it makes.
pub const OA_SUBSYSTEM: &str = oa_disk::signature::OA_LUKS_SUBSYSTEM;
/// LUKS2 label of a volume whose btrfs is not made yet (format interrupted after LUKS).
pub const LABEL_NEW: &str = "oa-persist-new";
/// LUKS2 label of a finished oa volume.
pub const LABEL_DONE: &str = "oa-persist";

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
    fn the_regions_of_a_file_are_its_ends() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("dev");
        let mut data = vec![0u8; 3 * REGION];
        data[0x438..0x43a].copy_from_slice(&[0x53, 0xef]);
        data[3 * REGION - 512..3 * REGION - 504].copy_from_slice(b"EFI PART");
        std::fs::write(&p, &data).unwrap();
        let (h, t) = read_regions(&p).unwrap();
        assert_eq!((h.len(), t.len()), (REGION, REGION));
        assert_eq!(detect(&h, &t), vec![Signature::Gpt, Signature::Ext]);
    }

    #[test]
    fn luks2_header_fields_and_ownership() {
        let mut h = zeros();
        h[..6].copy_from_slice(b"LUKS\xba\xbe");
        h[7] = 2;
        h[24..24 + LABEL_DONE.len()].copy_from_slice(LABEL_DONE.as_bytes());
        h[208..210].copy_from_slice(OA_SUBSYSTEM.as_bytes());
        let s = detect(&h, &zeros());
        assert!(s[0].is_oa_luks(), "{s:?}");
        assert!(matches!(&s[0], Signature::Luks { label, .. } if label == LABEL_DONE));
        h[208..210].copy_from_slice(b"xx");
        assert!(!detect(&h, &zeros())[0].is_oa_luks());
    }
}
