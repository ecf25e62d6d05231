//! Sector numbers and sector sizes.

use std::fmt;

/// The size of a logical sector in bytes: 512 for disk images, 512 or 4096 for real disks
/// (the kernel's `queue/logical_block_size`, the BLKSSZGET ioctl).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SectorSize(u32);

impl SectorSize {
    /// 512 bytes, what oa's disk images use.
    pub const B512: SectorSize = SectorSize(512);
    /// 4096 bytes ("4Kn" disks).
    pub const B4096: SectorSize = SectorSize(4096);

    /// A sector size, if it is a power of two from 512 to 64 KiB (what Linux accepts).
    pub fn new(bytes: u32) -> Option<SectorSize> {
        (bytes.is_power_of_two() && (512..=65536).contains(&bytes)).then_some(SectorSize(bytes))
    }

    pub const fn bytes(self) -> u64 {
        self.0 as u64
    }

    /// How many whole sectors `bytes` take, rounded up.
    pub const fn sectors_for(self, bytes: u64) -> u64 {
        bytes.div_ceil(self.0 as u64)
    }
}

impl fmt::Display for SectorSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} bytes", self.0)
    }
}

/// A logical block address: a sector number on a disk, counted from 0.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Lba(pub u64);

impl Lba {
    /// The byte offset of this sector; `None` when it does not fit in a `u64`.
    pub fn checked_offset(self, sector: SectorSize) -> Option<u64> {
        self.0.checked_mul(sector.bytes())
    }

    /// The byte offset of this sector (for addresses the caller made, not read from a disk).
    pub const fn offset(self, sector: SectorSize) -> u64 {
        self.0 * sector.bytes()
    }

    /// The sector `n` after this one.
    pub const fn after(self, n: u64) -> Lba {
        Lba(self.0 + n)
    }

    /// The sector `n` before this one.
    pub const fn before(self, n: u64) -> Lba {
        Lba(self.0 - n)
    }

    /// Sectors in the inclusive range `self..=last` (0 when `last` is before `self`).
    pub const fn count_to(self, last: Lba) -> u64 {
        if last.0 < self.0 {
            0
        } else {
            last.0 - self.0 + 1
        }
    }
}

impl fmt::Display for Lba {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "LBA {}", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sector_sizes_and_offsets() {
        assert_eq!(SectorSize::new(512), Some(SectorSize::B512));
        assert_eq!(SectorSize::new(4096), Some(SectorSize::B4096));
        assert_eq!(SectorSize::new(1000), None);
        assert_eq!(SectorSize::new(256), None);
        assert_eq!(SectorSize::B512.sectors_for(513), 2);
        assert_eq!(Lba(2048).offset(SectorSize::B512), 1 << 20);
        assert_eq!(Lba(u64::MAX).checked_offset(SectorSize::B512), None);
        assert_eq!(Lba(2048).count_to(Lba(4095)), 2048);
        assert_eq!(Lba(5).count_to(Lba(4)), 0);
    }
}
