//! The root image (squashfs): recognise it, size it from its superblock, verify its sha256.

use std::io::{Read, Seek, SeekFrom};
use std::path::Path;

use sha2::{Digest, Sha256};

use crate::error::{Error, IoContext, Result};

pub const SQUASHFS_MAGIC: &[u8; 4] = b"hsqs";
/// Superblock bytes we need (bytes_used is the u64 at offset 40).
pub const SUPERBLOCK_LEN: usize = 96;
/// mksquashfs pads its output to a multiple of this.
pub const PAD: u64 = 4096;
const CHUNK: usize = 1 << 20;

/// How many bytes of the device are the squashfs image, from its superblock: `bytes_used`
/// rounded up to 4 KiB, but not more than the device (a raw file of exactly the image may
/// lack the padding when made with -nopad).
pub fn image_len(superblock: &[u8], device_size: u64) -> Result<u64, String> {
    if superblock.len() < 48 {
        return Err(format!("superblock too short ({} bytes)", superblock.len()));
    }
    if &superblock[0..4] != SQUASHFS_MAGIC {
        return Err(format!("no squashfs magic (found {:02x?} instead of \"hsqs\")", &superblock[0..4]));
    }
    let mut b = [0u8; 8];
    b.copy_from_slice(&superblock[40..48]);
    let used = u64::from_le_bytes(b);
    if used < SUPERBLOCK_LEN as u64 {
        return Err(format!("superblock says bytes_used={used}, which is too small"));
    }
    if used > device_size {
        return Err(format!("image is truncated: superblock says {used} bytes, the device has only {device_size}"));
    }
    let padded = used.div_ceil(PAD).saturating_mul(PAD);
    Ok(padded.min(device_size))
}

/// Size of a block device or regular file (seek to the end works for both).
pub fn device_size(path: &Path) -> Result<u64> {
    let mut f = std::fs::File::open(path).ctx("open", path)?;
    f.seek(SeekFrom::End(0)).ctx("seek to end of", path)
}

/// Does `path` start with the squashfs magic? (false on any error: used for scanning)
pub fn is_squashfs(path: &Path) -> bool {
    let mut m = [0u8; 4];
    match std::fs::File::open(path) {
        Ok(mut f) => f.read_exact(&mut m).is_ok() && &m == SQUASHFS_MAGIC,
        Err(_) => false,
    }
}

/// Open the squashfs image on `path`: the file, read up to the end of its superblock, and
/// how many bytes are the image (see [`image_len`]).
fn open(path: &Path) -> Result<(std::fs::File, u64)> {
    let device = path.display().to_string();
    let size = device_size(path)?;
    let mut f = std::fs::File::open(path).ctx("open", path)?;
    let mut sb = [0u8; SUPERBLOCK_LEN];
    f.read_exact(&mut sb)
        .map_err(|e| Error::NotSquashfs { device: device.clone(), why: format!("reading the superblock: {e}") })?;
    let len = image_len(&sb, size).map_err(|why| Error::NotSquashfs { device, why })?;
    Ok((f, len))
}

/// How many bytes of `path` are the squashfs image (see [`image_len`]).
pub fn len(path: &Path) -> Result<u64> {
    open(path).map(|(_, len)| len)
}

/// sha256 (hex) of exactly the squashfs image on `path`, and the number of bytes hashed.
pub fn hash(path: &Path) -> Result<(String, u64)> {
    let (mut f, len) = open(path)?;
    f.seek(SeekFrom::Start(0)).ctx("seek", path)?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; CHUNK];
    let mut left = len;
    while left > 0 {
        let n = left.min(CHUNK as u64) as usize;
        f.read_exact(&mut buf[..n]).ctx("read", path)?;
        h.update(&buf[..n]);
        left -= n as u64;
    }
    Ok((hex(&h.finalize()), len))
}

pub fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sb(used: u64) -> Vec<u8> {
        let mut v = vec![0u8; SUPERBLOCK_LEN];
        v[0..4].copy_from_slice(SQUASHFS_MAGIC);
        v[40..48].copy_from_slice(&used.to_le_bytes());
        v
    }

    #[test]
    fn rounds_up_to_4k() {
        assert_eq!(image_len(&sb(5000), 1 << 30), Ok(8192));
        assert_eq!(image_len(&sb(8192), 1 << 30), Ok(8192));
    }

    #[test]
    fn capped_at_device_size() {
        assert_eq!(image_len(&sb(5000), 5000), Ok(5000));
        assert_eq!(image_len(&sb(5000), 6000), Ok(6000));
    }

    #[test]
    fn rejects_bad_superblocks() {
        assert!(image_len(&sb(5000), 4000).unwrap_err().contains("truncated"));
        let mut bad = sb(5000);
        bad[0] = b'x';
        assert!(image_len(&bad, 1 << 20).unwrap_err().contains("magic"));
        assert!(image_len(&bad[..10], 1 << 20).is_err());
        assert!(image_len(&sb(3), 1 << 20).is_err());
    }

    #[test]
    fn hashes_only_the_image() {
        let dir = std::env::temp_dir().join(format!("oa-init-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let img = dir.join("img");
        let mut data = sb(5000);
        data.resize(8192, 7);
        let expected = hex(&Sha256::digest(&data));
        data.resize(3 * 8192, 9); // a larger partition: trailing bytes are not hashed
        std::fs::write(&img, &data).unwrap();
        assert_eq!(hash(&img).unwrap(), (expected, 8192));
        assert!(is_squashfs(&img));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
