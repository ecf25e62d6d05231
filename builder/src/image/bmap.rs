//! Block maps in bmaptool's XML format (version 2.0, sha256 range checksums): which 4 KiB
//! blocks of an image must be written to a device. `oa flash` and `bmaptool copy` write
//! only those and leave the rest of the device as it was.
//!
//! "Mapped" here means "its content matters", which is more than "not a hole in the file":
//! the builder passes the ranges that must be written even when they are zeros (the whole
//! partition table area, the FAT, the root image, the start and end of the blank persistence
//! partition, which must read as blank on the device), and [`Bmap::create`] adds every other
//! block that holds a non-zero byte (found with SEEK_DATA/SEEK_HOLE, so holes are not read).

use crate::error::{Error, IoContext, Result};
use sha2::{Digest, Sha256};
use std::io::{Read, Seek, SeekFrom};
use std::path::Path;

pub const BLOCK_SIZE: u64 = 4096;
const ZERO_DIGEST: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// An inclusive range of blocks and the sha256 of its bytes (cut at the image's end).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Range {
    pub first: u64,
    pub last: u64,
    pub sha256: String,
}

impl Range {
    /// The byte range `[start, end)` in an image of `image_size` bytes.
    pub fn bytes(&self, block_size: u64, image_size: u64) -> (u64, u64) {
        (self.first * block_size, ((self.last + 1) * block_size).min(image_size))
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bmap {
    pub image_size: u64,
    pub block_size: u64,
    pub ranges: Vec<Range>,
}

impl Bmap {
    pub fn blocks_count(&self) -> u64 {
        self.image_size.div_ceil(self.block_size)
    }

    pub fn mapped_blocks(&self) -> u64 {
        self.ranges.iter().map(|r| r.last + 1 - r.first).sum()
    }

    pub fn mapped_bytes(&self) -> u64 {
        self.ranges
            .iter()
            .map(|r| {
                let (a, b) = r.bytes(self.block_size, self.image_size);
                b - a
            })
            .sum()
    }

    /// Map `image`: the blocks overlapping `required` byte ranges, plus every block with a
    /// non-zero byte; then the sha256 of each merged range.
    pub fn create(image: &Path, required: &[(u64, u64)]) -> Result<Bmap> {
        let mut f = std::fs::File::open(image).ctx("opening for the block map", image)?;
        let size = f.metadata().ctx("reading size of", image)?.len();
        let mut blocks: Vec<(u64, u64)> = required
            .iter()
            .filter(|(a, b)| b > a && *a < size)
            .map(|&(a, b)| (a / BLOCK_SIZE, (b.min(size) - 1) / BLOCK_SIZE))
            .collect();
        let mut buf = vec![0u8; BLOCK_SIZE as usize];
        for (start, end) in data_extents(&f, size)? {
            let mut blk = start / BLOCK_SIZE;
            f.seek(SeekFrom::Start(blk * BLOCK_SIZE)).ctx("seeking in", image)?;
            while blk * BLOCK_SIZE < end {
                let n = (BLOCK_SIZE.min(size - blk * BLOCK_SIZE)) as usize;
                f.read_exact(&mut buf[..n]).ctx("reading", image)?;
                if buf[..n].iter().any(|&b| b != 0) {
                    blocks.push((blk, blk));
                }
                blk += 1;
            }
        }
        let merged = merge_ranges(blocks);
        let mut ranges = Vec::with_capacity(merged.len());
        for (first, last) in merged {
            let (a, b) = (first * BLOCK_SIZE, ((last + 1) * BLOCK_SIZE).min(size));
            ranges.push(Range { first, last, sha256: hash_range(&mut f, a, b).ctx("reading", image)? });
        }
        Ok(Bmap { image_size: size, block_size: BLOCK_SIZE, ranges })
    }

    /// The XML text, with `BmapFileChecksum` filled in as bmaptool checks it (sha256 of the
    /// file with the checksum's 64 characters set to "0").
    pub fn to_xml(&self) -> String {
        let body = self.xml_with_checksum(ZERO_DIGEST);
        let digest = hex::encode(Sha256::digest(body.as_bytes()));
        self.xml_with_checksum(&digest)
    }

    fn xml_with_checksum(&self, checksum: &str) -> String {
        let pct = if self.blocks_count() == 0 {
            0.0
        } else {
            self.mapped_blocks() as f64 * 100.0 / self.blocks_count() as f64
        };
        let mut s = String::new();
        s.push_str("<?xml version=\"1.0\" ?>\n");
        s.push_str("<!-- Block map of an oa disk image (bmaptool format 2.0), written by `oa build`.\n");
        s.push_str("     Mapped blocks are those whose content matters on the device: the\n");
        s.push_str("     partition table, the EFI system partition, the root image and the\n");
        s.push_str("     start and end of the blank persistence partition. `oa flash` and\n");
        s.push_str("     `bmaptool copy` write only these. -->\n\n");
        s.push_str("<bmap version=\"2.0\">\n");
        s.push_str(&format!("    <!-- Image size in bytes: {} -->\n", human(self.image_size)));
        s.push_str(&format!("    <ImageSize> {} </ImageSize>\n\n", self.image_size));
        s.push_str("    <!-- Size of a block in bytes -->\n");
        s.push_str(&format!("    <BlockSize> {} </BlockSize>\n\n", self.block_size));
        s.push_str("    <!-- Count of blocks in the image file -->\n");
        s.push_str(&format!("    <BlocksCount> {} </BlocksCount>\n\n", self.blocks_count()));
        s.push_str(&format!("    <!-- Count of mapped blocks: {} or {pct:.1}% -->\n", human(self.mapped_bytes())));
        s.push_str(&format!("    <MappedBlocksCount> {} </MappedBlocksCount>\n\n", self.mapped_blocks()));
        s.push_str("    <!-- Type of checksum used in this file -->\n");
        s.push_str("    <ChecksumType> sha256 </ChecksumType>\n\n");
        s.push_str("    <!-- The checksum of this bmap file. When it is calculated, the value of\n");
        s.push_str("         the checksum has be zero (all ASCII \"0\" symbols).  -->\n");
        s.push_str(&format!("    <BmapFileChecksum> {checksum} </BmapFileChecksum>\n\n"));
        s.push_str("    <BlockMap>\n");
        for r in &self.ranges {
            let span = if r.first == r.last { r.first.to_string() } else { format!("{}-{}", r.first, r.last) };
            s.push_str(&format!("        <Range chksum=\"{}\"> {span} </Range>\n", r.sha256));
        }
        s.push_str("    </BlockMap>\n</bmap>\n");
        s
    }

    /// Parse a bmap (format 2.x, sha256), checking the file's own checksum.
    pub fn parse(xml: &str) -> std::result::Result<Bmap, String> {
        let version = between(xml, "<bmap version=\"", "\"").ok_or("no <bmap version=...> element: not a bmap file")?;
        if !version.starts_with("2.") {
            return Err(format!("bmap format version {version} is not supported (need 2.x with sha256 checksums; recreate it with `bmaptool create` 3.x or `oa build`)"));
        }
        let num = |tag: &str| -> std::result::Result<u64, String> {
            let open = format!("<{tag}>");
            let close = format!("</{tag}>");
            between(xml, &open, &close)
                .ok_or(format!("no <{tag}> element"))?
                .trim()
                .parse::<u64>()
                .map_err(|e| format!("<{tag}> is not a number: {e}"))
        };
        let image_size = num("ImageSize")?;
        let block_size = num("BlockSize")?;
        if block_size == 0 || block_size % 512 != 0 {
            return Err(format!("block size {block_size} is not a multiple of 512"));
        }
        let ctype = between(xml, "<ChecksumType>", "</ChecksumType>").map(str::trim).unwrap_or("");
        if ctype != "sha256" {
            return Err(format!("checksum type `{ctype}` is not supported (need sha256)"));
        }
        let file_sum = between(xml, "<BmapFileChecksum>", "</BmapFileChecksum>")
            .ok_or("no <BmapFileChecksum> element")?
            .trim()
            .to_string();
        if file_sum.len() != 64 {
            return Err("<BmapFileChecksum> is not a sha256".into());
        }
        let zeroed = xml.replacen(&file_sum, ZERO_DIGEST, 1);
        let got = hex::encode(Sha256::digest(zeroed.as_bytes()));
        if got != file_sum {
            return Err(format!("the bmap file's own checksum does not match (stored {file_sum}, computed {got}): the file is damaged or was edited"));
        }
        let map = between(xml, "<BlockMap>", "</BlockMap>").ok_or("no <BlockMap> element")?;
        let mut ranges = Vec::new();
        let blocks = image_size.div_ceil(block_size);
        for part in map.split("<Range").skip(1) {
            let (attrs, rest) = part.split_once('>').ok_or("unterminated <Range>")?;
            let text = rest.split("</Range>").next().unwrap_or("").trim();
            let sha256 = between(attrs, "chksum=\"", "\"").ok_or(format!("range `{text}` has no chksum"))?.to_string();
            let (a, b) = match text.split_once('-') {
                Some((a, b)) => (a.trim(), b.trim()),
                None => (text, text),
            };
            let first: u64 = a.parse().map_err(|_| format!("bad range `{text}`"))?;
            let last: u64 = b.parse().map_err(|_| format!("bad range `{text}`"))?;
            if last < first || last >= blocks {
                return Err(format!("range `{text}` is outside the image ({blocks} blocks)"));
            }
            if let Some(prev) = ranges.last() {
                let prev: &Range = prev;
                if first <= prev.last {
                    return Err(format!("range `{text}` overlaps or is out of order"));
                }
            }
            ranges.push(Range { first, last, sha256 });
        }
        Ok(Bmap { image_size, block_size, ranges })
    }
}

/// The sha256 of bytes `[a, b)` of `f`.
pub fn hash_range<R: Read + Seek>(f: &mut R, a: u64, b: u64) -> std::io::Result<String> {
    f.seek(SeekFrom::Start(a))?;
    let mut h = Sha256::new();
    let mut left = b - a;
    let mut buf = vec![0u8; 1 << 20];
    while left > 0 {
        let n = left.min(buf.len() as u64) as usize;
        f.read_exact(&mut buf[..n])?;
        h.update(&buf[..n]);
        left -= n as u64;
    }
    Ok(hex::encode(h.finalize()))
}

/// Sort and merge overlapping or adjacent inclusive ranges.
pub fn merge_ranges(mut v: Vec<(u64, u64)>) -> Vec<(u64, u64)> {
    v.sort();
    let mut out: Vec<(u64, u64)> = Vec::new();
    for (a, b) in v {
        match out.last_mut() {
            Some(last) if a <= last.1 + 1 => last.1 = last.1.max(b),
            _ => out.push((a, b)),
        }
    }
    out
}

/// The byte ranges of `f` that hold data (not holes), by SEEK_DATA/SEEK_HOLE; the whole file
/// when the filesystem does not support them.
pub fn data_extents(f: &std::fs::File, size: u64) -> Result<Vec<(u64, u64)>> {
    use nix::unistd::{lseek, Whence};
    use std::os::fd::AsRawFd;
    let fd = f.as_raw_fd();
    let mut out = Vec::new();
    let mut pos: u64 = 0;
    while pos < size {
        let start = match lseek(fd, pos as i64, Whence::SeekData) {
            Ok(s) => s as u64,
            Err(nix::errno::Errno::ENXIO) => break, // no data after pos
            Err(nix::errno::Errno::EINVAL) => return Ok(vec![(0, size)]),
            Err(e) => return Err(Error::Image(format!("SEEK_DATA in image: {e}"))),
        };
        let end = match lseek(fd, start as i64, Whence::SeekHole) {
            Ok(e) => (e as u64).min(size),
            Err(e) => return Err(Error::Image(format!("SEEK_HOLE in image: {e}"))),
        };
        if end <= start {
            break;
        }
        out.push((start, end));
        pos = end;
    }
    Ok(out)
}

fn between<'a>(s: &'a str, open: &str, close: &str) -> Option<&'a str> {
    let i = s.find(open)? + open.len();
    let j = s[i..].find(close)? + i;
    Some(&s[i..j])
}

/// `12.3 MiB`-style sizes for people.
pub fn human(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["bytes", "KiB", "MiB", "GiB", "TiB"];
    let mut v = bytes as f64;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < UNITS.len() {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{bytes} bytes")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::os::unix::fs::FileExt;

    #[test]
    fn merge_joins_overlapping_and_adjacent_ranges() {
        assert_eq!(merge_ranges(vec![(5, 6), (0, 1), (2, 2), (9, 9), (6, 7)]), vec![(0, 2), (5, 7), (9, 9)]);
        assert_eq!(merge_ranges(vec![]), vec![]);
    }

    #[test]
    fn create_maps_required_and_nonzero_blocks_and_round_trips() {
        let dir = tempfile::tempdir().unwrap();
        let img = dir.path().join("a.img");
        let f = std::fs::File::create(&img).unwrap();
        f.set_len(64 * BLOCK_SIZE + 100).unwrap(); // a partial last block
        f.write_all_at(b"x", 10 * BLOCK_SIZE + 7).unwrap();
        f.write_all_at(b"y", 64 * BLOCK_SIZE + 99).unwrap();
        // A block of explicit zeros is data in the file but not mapped unless required.
        f.write_all_at(&[0u8; 4096], 20 * BLOCK_SIZE).unwrap();
        drop(f);
        let b = Bmap::create(&img, &[(0, 2 * BLOCK_SIZE), (11 * BLOCK_SIZE, 11 * BLOCK_SIZE + 1)]).unwrap();
        let spans: Vec<_> = b.ranges.iter().map(|r| (r.first, r.last)).collect();
        assert_eq!(spans, vec![(0, 1), (10, 11), (64, 64)]);
        assert_eq!(b.blocks_count(), 65);
        assert_eq!(b.mapped_bytes(), 4 * BLOCK_SIZE + 100);
        let mut want = vec![0u8; 100];
        want[99] = b'y';
        assert_eq!(b.ranges[2].sha256, hex::encode(Sha256::digest(&want)));
        let xml = b.to_xml();
        assert!(xml.contains("<Range chksum=\"") && xml.contains("> 64 </Range>") && xml.contains("> 10-11 </Range>"));
        assert_eq!(Bmap::parse(&xml).unwrap(), b);
        // Editing the file breaks its checksum.
        let edited = xml.replace("> 64 </Range>", "> 63 </Range>");
        assert!(Bmap::parse(&edited).unwrap_err().contains("checksum"));
    }

    #[test]
    fn parse_rejects_unsupported_formats() {
        assert!(Bmap::parse("<bmap version=\"1.4\"><ImageSize> 1 </ImageSize></bmap>").unwrap_err().contains("1.4"));
        assert!(Bmap::parse("hello").unwrap_err().contains("not a bmap"));
    }

    #[test]
    fn bmaptool_accepts_what_we_write() {
        // bmap-tools is installed by `make deps`; its own parser is the reference.
        if crate::tool::which("bmaptool").is_none() {
            panic!("bmaptool is missing: run `make deps` (Debian package bmap-tools)");
        }
        let dir = tempfile::tempdir().unwrap();
        let img = dir.path().join("a.img");
        let mut f = std::fs::File::create(&img).unwrap();
        f.write_all(&[1u8; 5000]).unwrap();
        f.set_len(1 << 20).unwrap();
        f.write_all_at(b"end", (1 << 20) - 3).unwrap();
        drop(f);
        let b = Bmap::create(&img, &[]).unwrap();
        let bmap = dir.path().join("a.img.bmap");
        std::fs::write(&bmap, b.to_xml()).unwrap();
        let dst = dir.path().join("copy.img");
        let out = std::process::Command::new("bmaptool")
            .args(["copy", "--bmap"])
            .arg(&bmap)
            .arg(&img)
            .arg(&dst)
            .output()
            .unwrap();
        assert!(out.status.success(), "bmaptool copy: {}", String::from_utf8_lossy(&out.stderr));
        assert_eq!(std::fs::read(&dst).unwrap(), std::fs::read(&img).unwrap());
    }
}
