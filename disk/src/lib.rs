//! oa's disk formats, in one small std-only library that the builder, oa-init and oa-storage
//! link.
//!
//! What it is for: the bytes on a disk and the kernel's tables about disks, as typed values.
//! - [`Guid`]: a 16-byte GUID that parses strictly and knows GPT's mixed-endian encoding.
//! - [`Lba`] and [`SectorSize`]: sector numbers and sizes, instead of bare `u64`s.
//! - [`gpt`]: GUID partition tables, written (the builder's disk image) and parsed (oa-init's
//!   PARTLABEL=/PARTUUID= lookup), with CRC32 ([`crc32()`]) in one place.
//! - [`mbr`]: the protective MBR in front of a GPT and the DOS MBR of `rpi.img`.
//! - [`signature`]: one detector of what a device holds (filesystems, partition tables, LUKS,
//!   swap, RAID/LVM members), for `oa flash` and oa-storage's refusal to format over data.
//! - [`fsid`]: the label and UUID of an ISO 9660, FAT, ext4 or btrfs filesystem (blkid's
//!   `LABEL=`/`UUID=`), for oa-init's `oa.root=LABEL=`/`UUID=`.
//! - [`mountinfo`]: `/proc/self/mountinfo` entries, with the kernel's octal escapes undone.
//!
//! What it is not for: doing things to devices. Nothing here opens a block device for
//! writing, issues an ioctl or mounts anything; parsing is pure (bytes in, values out) so it
//! is unit-tested, and callers own the I/O, its context in errors and its safety checks.
//! Everything parsed from a device is bounded and validated (sizes, counts, CRCs); errors are
//! typed per module. No dependencies beyond std, so that oa-init stays a small static binary.

pub mod crc;
pub mod fsid;
pub mod gpt;
pub mod guid;
pub mod mbr;
pub mod mountinfo;
pub mod signature;
pub mod units;

pub use crc::crc32;
pub use guid::{Guid, ParseGuidError};
pub use units::{Lba, SectorSize};
