//! `manifest.json`: what a build produced, for people, `oa run`, `oa serve` and the tests.

use serde::{Deserialize, Serialize};

pub const FILE_NAME: &str = "manifest.json";
pub const SCHEMA_VERSION: u32 = 1;

/// Artifact names (also the file names in the output directory).
pub mod artifact {
    /// Raspberry Pi boot tree (a folder) and SD card image.
    pub const RPI_TREE: &str = "rpi";
    pub const RPI_IMAGE: &str = "rpi.img";
    pub const KERNEL: &str = "vmlinuz";
    pub const INITRAMFS: &str = "initramfs.img";
    pub const ROOTFS: &str = "rootfs.squashfs";
    /// The bootable GPT disk image (BIOS and UEFI), when the profile asks for one.
    pub const DISK_IMAGE: &str = "disk.img";
    /// The block map of [`DISK_IMAGE`] (bmaptool's XML format): the ranges `oa flash` and
    /// `bmaptool copy` must write; the rest of the device is don't-care.
    pub const DISK_BMAP: &str = "disk.img.bmap";
    /// [`DISK_IMAGE`] converted to qcow2, for VM users, when the profile asks for it.
    pub const DISK_QCOW2: &str = "disk.qcow2";
    /// The hybrid ISO (CD, USB stick, BMC virtual media), when the profile asks for one.
    pub const ISO: &str = "oa.iso";
    /// The packages the build ships, one `name version arch` line each (sorted): those of the
    /// root filesystem (dpkg's database of a Debian base, pacman's of an Arch base, the
    /// unpacked .debs of a busybox base), the kernel package and busybox-static.
    pub const PACKAGES: &str = "packages.txt";
    /// Secure netboot (`[secure_boot] mode = "uki"` with `image.netboot`) for x86-64: what
    /// `oa serve` hands UEFI x64 PXE clients ([`SecureNetboot::of`] names each architecture's).
    pub const SB_X64: SecureNetboot =
        SecureNetboot { shim: "sb/shimx64.efi", grub: "sb/grubx64.efi", mok_manager: "sb/mmx64.efi" };
    /// The same for arm64 UEFI clients (client architecture 11, HTTP 19).
    pub const SB_AA64: SecureNetboot =
        SecureNetboot { shim: "sb/shimaa64.efi", grub: "sb/grubaa64.efi", mok_manager: "sb/mmaa64.efi" };

    /// One architecture's Debian-signed secure netboot chain in the output folder. shim asks
    /// for GRUB and its MOK manager beside itself, under the names it was built with.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub struct SecureNetboot {
        /// Debian's Microsoft-signed shim; it fetches [`SecureNetboot::grub`] from the same
        /// folder of the same TFTP server.
        pub shim: &'static str,
        /// Debian's signed network GRUB (`grubnet{x64,aa64}.efi.signed`), under the name shim
        /// asks for. It reads [`SB_GRUB_CFG`] (its built-in prefix is `(tftp,SERVER)/grub`).
        pub grub: &'static str,
        /// shim's MOK manager, which shim starts when a signature does not verify.
        pub mok_manager: &'static str,
    }

    impl SecureNetboot {
        pub fn of(arch: crate::Arch) -> SecureNetboot {
            match arch {
                crate::Arch::X86_64 => SB_X64,
                crate::Arch::Aarch64 => SB_AA64,
            }
        }
    }
    /// The signed UKI GRUB chain-loads; its command line (inside the signature) fetches the
    /// root from [`crate::cmdline::netboot_root`] and checks it with `oa.verity=`.
    pub const SB_UKI: &str = "sb/oa.efi";
    /// GRUB's configuration: chain-load [`SB_UKI`].
    pub const SB_GRUB_CFG: &str = "grub/grub.cfg";
}

/// The ISO 9660 volume identifier of a profile's `oa.iso`: `OA_` and the profile name in
/// upper case, characters outside `A-Z0-9_` as `_`, at most 32 characters (ISO 9660's limit).
/// Its boot loaders pass `oa.root=LABEL=<this>`; oa-init finds the ISO filesystem by it and
/// loop-mounts [`crate::media_paths::ROOT_IMAGE`] from it.
pub fn iso_volume_id(profile: &str) -> String {
    let mut v: String = "OA_".into();
    v.extend(profile.chars().map(|c| match c.to_ascii_uppercase() {
        c @ ('A'..='Z' | '0'..='9' | '_') => c,
        _ => '_',
    }));
    v.truncate(32);
    v
}

/// GPT partition names (PARTLABEL) in `disk.img`. oa-init finds the root image by
/// `oa.root=PARTLABEL=oa-root`; the persistence partition is created empty (no signature).
pub mod partlabel {
    /// The EFI system partition (FAT): kernel, initramfs, systemd-boot and syslinux.
    pub const ESP: &str = "oa-esp";
    /// The root image (squashfs), written at the start of the partition.
    pub const ROOT: &str = "oa-root";
    /// Reserved for persistence, left blank (all zeros) for oa-init to format.
    pub const PERSIST: &str = "oa-persist";
    /// With dm-verity: the root image's hash tree, from the partition's first byte
    /// (`oa.verity.hash=PARTLABEL=oa-verity`); the root partition then holds the data only.
    pub const VERITY: &str = "oa-verity";
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    pub schema: u32,
    pub profile: String,
    pub arch: crate::arch::Arch,
    pub kernel_release: String,
    /// The kernel command line to boot this output with (oa.* keys included, console not).
    pub cmdline: Vec<String>,
    pub artifacts: Vec<Artifact>,
    /// Builder version that made this output.
    pub builder: String,
    /// The artifacts (by name) that carry secret key material: with persistence
    /// `key = "keyfile"` the key file is inside the initramfs, and so inside every image that
    /// holds the initramfs (disk.img, disk.qcow2, rpi.img). Anyone who can read one of them
    /// can unlock the persistent data: the builder writes them 0600 and `oa serve` refuses
    /// such an output unless told `--serve-key-material`. Empty, and absent from the JSON,
    /// when nothing secret is inside.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub key_material: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Artifact {
    pub name: String,
    /// File name relative to the output directory.
    pub path: String,
    pub size: u64,
    pub sha256: String,
}

impl Manifest {
    pub fn artifact(&self, name: &str) -> Option<&Artifact> {
        self.artifacts.iter().find(|a| a.name == name)
    }
}

#[cfg(test)]
mod volume_id_tests {
    #[test]
    fn volume_id_is_iso9660_d_characters() {
        assert_eq!(super::iso_volume_id("tiny"), "OA_TINY");
        assert_eq!(super::iso_volume_id("debian-ssh"), "OA_DEBIAN_SSH");
        assert_eq!(super::iso_volume_id(&"x".repeat(40)).len(), 32);
    }
}
