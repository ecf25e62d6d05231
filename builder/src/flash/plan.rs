//! The plan: what would be written where, with which checksum, after which checks. Computed
//! touching nothing (no device is opened for writing, no file created); `oa flash --dry-run`
//! prints it ([`Plan`]'s `Display`) and stops.

use super::device::{inspect, Target, TargetKind};
use super::source::{source, Source};
use super::{FlashError, Options, Result};
use crate::image::bmap;
use std::fmt;
use std::str::FromStr;

/// A sha256 digest.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Sha256([u8; 32]);

impl Sha256 {
    pub fn from_bytes(b: [u8; 32]) -> Sha256 {
        Sha256(b)
    }

    /// The digest of `data`.
    pub fn of(data: &[u8]) -> Sha256 {
        use sha2::Digest;
        Sha256(sha2::Sha256::digest(data).into())
    }
}

impl fmt::Display for Sha256 {
    /// 64 lowercase hex digits.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

impl fmt::Debug for Sha256 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Sha256({self})")
    }
}

impl FromStr for Sha256 {
    type Err = String;

    fn from_str(s: &str) -> std::result::Result<Sha256, String> {
        let mut b = [0u8; 32];
        match hex::decode_to_slice(s, &mut b) {
            Ok(()) => Ok(Sha256(b)),
            Err(_) => Err(format!("{:?} is not a sha256 (64 hex digits)", s.chars().take(80).collect::<String>())),
        }
    }
}

/// One byte range of the image, written at the same offset on the device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Extent {
    pub offset: u64,
    pub len: u64,
    /// What its bytes must hash to (the block map's range checksum, or the manifest's digest
    /// of the whole image); `None`: the image is hashed again to check the read-back.
    pub expected_sha256: Option<Sha256>,
}

impl Extent {
    pub fn end(&self) -> u64 {
        self.offset + self.len
    }
}

/// Everything `oa flash` will do, decided before it does anything.
#[derive(Debug, Clone)]
pub struct Plan {
    pub source: Source,
    pub target: Target,
    /// In order of offset, not overlapping.
    pub extents: Vec<Extent>,
    /// The checks that passed, in the order they were made.
    pub checks: Vec<String>,
}

impl Plan {
    /// Bytes that will be written (and read back).
    pub fn bytes_to_write(&self) -> u64 {
        self.extents.iter().map(|e| e.len).sum()
    }

    /// Where the expected checksums come from, for messages.
    pub fn digests_from(&self) -> &'static str {
        if self.source.bmap.is_some() {
            "the block map"
        } else {
            "the manifest"
        }
    }

    /// The two lines shown before asking: the image and how much of it, the device.
    pub fn summary(&self) -> String {
        let src = &self.source;
        let via = match &src.bmap {
            Some((p, _)) => format!("{} to write, using {}", bmap::human(self.bytes_to_write()), p.display()),
            None => "all of it to write (no block map)".to_string(),
        };
        format!(
            "oa flash: {} ({}, {via})\n       -> {}",
            src.path.display(),
            bmap::human(src.size),
            self.target.describe()
        )
    }
}

impl fmt::Display for Plan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (src, t) = (&self.source, &self.target);
        writeln!(f, "image:  {} ({}, {} bytes)", src.path.display(), bmap::human(src.size), src.size)?;
        match &src.bmap {
            Some((p, b)) => writeln!(
                f,
                "        block map {} ({} of {} blocks of {} bytes mapped)",
                p.display(),
                b.mapped_blocks(),
                b.blocks_count(),
                b.block_size
            )?,
            None => writeln!(f, "        no block map: the whole image is written")?,
        }
        writeln!(f, "device: {}", t.describe())?;
        if let Some(s) = t.sector_size {
            writeln!(f, "        logical sectors of {s} (the image's partition table is laid out for them)")?;
        }
        writeln!(f, "checks passed:")?;
        for c in &self.checks {
            writeln!(f, "  - {c}")?;
        }
        writeln!(
            f,
            "would write {} extent(s), {} ({} bytes), each at the same offset on the device, then sync and read back:",
            self.extents.len(),
            bmap::human(self.bytes_to_write()),
            self.bytes_to_write()
        )?;
        for e in &self.extents {
            write!(f, "  bytes {}..{} ({})", e.offset, e.end(), bmap::human(e.len))?;
            match &e.expected_sha256 {
                Some(d) => writeln!(f, " sha256 {d} ({})", self.digests_from())?,
                None => writeln!(f, " (no digest known: checked against the image on read-back)")?,
            }
        }
        if t.kind == TargetKind::File && !t.exists {
            writeln!(f, "the file would be created with {} bytes", src.size)?;
        }
        writeln!(
            f,
            "order: the first MiB{} zeroed first, the first MiB of the image (partition table, boot code) written last",
            if t.size > src.size { " and the device's last MiB (a stale backup GPT)" } else { "" }
        )?;
        write!(f, "on failure after writing starts: the first and last MiB would be zeroed")
    }
}

/// The extents to write: the block map's ranges, or the whole image.
pub fn extents(src: &Source) -> Result<Vec<Extent>> {
    match &src.bmap {
        Some((path, b)) => b
            .ranges
            .iter()
            .map(|r| {
                let (a, e) = r.bytes(b.block_size, b.image_size);
                let d = r.sha256.parse().map_err(|why| FlashError::Bmap {
                    path: path.clone(),
                    reason: format!("range {}-{}: {why}", r.first, r.last),
                })?;
                Ok(Extent { offset: a, len: e - a, expected_sha256: Some(d) })
            })
            .collect(),
        None => Ok(vec![Extent { offset: 0, len: src.size, expected_sha256: src.sha256 }]),
    }
}

/// Plan a flash: resolve the image, inspect the device, refuse what must not be written,
/// list the extents. Writes nothing.
pub fn plan(opts: &Options) -> Result<Plan> {
    let source = source(opts)?;
    let target = inspect(&opts.device, opts.allow_file, &source.path)?;
    if target.exists && target.size < source.size {
        return Err(FlashError::TooSmall {
            device: target.path.clone(),
            image_size: source.size,
            device_size: target.size,
        });
    }
    if target.kind == TargetKind::WholeDisk {
        match target.sector_size.map(|s| s.bytes()) {
            Some(512) => {}
            bytes => return Err(FlashError::SectorSize { device: target.path.clone(), bytes }),
        }
    }
    let extents = extents(&source)?;
    let mut checks = source.checks.clone();
    checks.extend(target.checks.iter().cloned());
    if target.exists {
        checks.push(format!(
            "the device ({}) is at least as large as the image ({})",
            bmap::human(target.size),
            bmap::human(source.size)
        ));
    }
    Ok(Plan { source, target, extents, checks })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sha256_parses_strictly_and_renders_lowercase() {
        let d = Sha256::of(b"abc");
        assert_eq!(d.to_string(), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
        assert_eq!(d.to_string().parse::<Sha256>(), Ok(d));
        assert_eq!(d.to_string().to_uppercase().parse::<Sha256>(), Ok(d));
        assert!("ba78".parse::<Sha256>().is_err());
        assert!("zz".repeat(32).parse::<Sha256>().unwrap_err().contains("not a sha256"));
    }
}
