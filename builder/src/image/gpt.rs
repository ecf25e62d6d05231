//! The disk image's GUID partition table: oa-disk's GPT writer ([`oa_disk::gpt`]) with GUIDs
//! derived from the build's inputs, so that the same inputs give a byte-identical image.
//!
//! Hand-written rather than with the `gpt` crate, because we need three things that crate
//! makes awkward: the MBR boot code (syslinux's `gptmbr.bin`) in the protective MBR, the
//! "legacy BIOS bootable" attribute on the ESP (bit 2, which gptmbr.bin looks for), and
//! deterministic GUIDs. oa-init parses what this writes with the same library, and its tests
//! check it with util-linux's `partx`.

use oa_disk::Guid;
use sha2::{Digest, Sha256};

pub use oa_disk::gpt::{Layout, Partition, ALIGN_SECTORS, ATTR_LEGACY_BIOS_BOOTABLE, SECTOR};

/// Partition type GUIDs.
pub mod types {
    use oa_disk::Guid;
    /// EFI system partition.
    pub const ESP: Guid = Guid::ESP;
    /// Linux filesystem data (the root image, the persistence partition).
    pub const LINUX_DATA: Guid = Guid::LINUX_DATA;
}

/// A partition to lay out: its name (PARTLABEL), type, minimum size and attributes; its GUID
/// is derived.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartSpec {
    pub label: String,
    pub type_guid: Guid,
    pub size_bytes: u64,
    pub attributes: u64,
}

/// Place `parts` in order ([`Layout::plan`]); the disk GUID and each partition's GUID are
/// derived from `seed` and the labels.
pub fn plan(parts: &[PartSpec], seed: &[u8]) -> Layout {
    let specs: Vec<oa_disk::gpt::PartSpec> = parts
        .iter()
        .map(|p| oa_disk::gpt::PartSpec {
            name: p.label.clone(),
            type_guid: p.type_guid,
            guid: derived_guid(seed, &format!("partition:{}", p.label)),
            size_bytes: p.size_bytes,
            attributes: p.attributes,
        })
        .collect();
    Layout::plan(derived_guid(seed, "disk"), &specs)
}

/// A version-4-style GUID from sha256(seed, what): stable for the same build inputs.
pub fn derived_guid(seed: &[u8], what: &str) -> Guid {
    let mut h = Sha256::new();
    h.update(b"oa-gpt-guid\0");
    h.update(seed);
    h.update(what.as_bytes());
    let d = h.finalize();
    let mut b = [0u8; 16];
    b.copy_from_slice(&d[..16]);
    Guid::v4_from_bytes(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layout() -> Layout {
        plan(
            &[
                PartSpec {
                    label: "oa-esp".into(),
                    type_guid: types::ESP,
                    size_bytes: 12 << 20,
                    attributes: ATTR_LEGACY_BIOS_BOOTABLE,
                },
                PartSpec {
                    label: "oa-root".into(),
                    type_guid: types::LINUX_DATA,
                    size_bytes: 1_000_000,
                    attributes: 0,
                },
                PartSpec {
                    label: "oa-persist".into(),
                    type_guid: types::LINUX_DATA,
                    size_bytes: 64 << 20,
                    attributes: 0,
                },
            ],
            b"seed",
        )
    }

    // The layout rules (alignment, rounding, table ranges) are tested in oa-disk's gpt.rs.

    #[test]
    fn guids_are_stable_and_distinct() {
        let (a, b) = (layout(), layout());
        assert_eq!(a, b);
        let mut all: Vec<Guid> = a.partitions.iter().map(|p| p.guid).collect();
        all.push(a.disk_guid);
        all.sort();
        all.dedup();
        assert_eq!(all.len(), 4);
        assert_eq!(&a.disk_guid.to_string()[14..15], "4", "version 4 nibble: {}", a.disk_guid);
        let other = plan(&[], b"other seed");
        assert_ne!(other.disk_guid, a.disk_guid);
    }

    #[test]
    fn guid_byte_order_is_mixed_endian() {
        // The ESP type GUID as it appears on disk (UEFI spec, table 5.7).
        assert_eq!(hex::encode(types::ESP.to_gpt_bytes()), "28732ac11ff8d211ba4b00a0c93ec93b");
    }

    /// The exact bytes of the table for a fixed layout: a change here changes every disk image
    /// (the image must stay byte-identical for the same inputs).
    #[test]
    fn table_bytes_are_pinned() {
        let mut h = Sha256::new();
        for (off, bytes) in layout().table_writes(&[0x90; 440]) {
            h.update(off.to_le_bytes());
            h.update(&bytes);
        }
        assert_eq!(hex::encode(h.finalize()), "8f160c8b4dd00870a8dd12eb83885ba69e1dafc24d479618b51f97a8981421ec");
        // The ESP's FAT serial is taken from a derived GUID's on-disk bytes.
        assert_eq!(derived_guid(b"seed", "esp-serial").to_gpt_bytes()[..4], [173, 31, 60, 5]);
    }
}
