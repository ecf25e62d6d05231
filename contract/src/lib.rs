//! The contract between the builder (`oa`) and the init (`oa-init`).
//!
//! Everything both sides must agree on lives here and nowhere else: the kernel command line
//! keys, the well-known console lines the tests wait for, the paths of the files the builder
//! writes for the init, and the schema of those files and of `manifest.json`.
//!
//! This crate is not for logic: it holds names, types and their parsing/rendering only, so that
//! it builds for every target the init is built for (musl, aarch64) without extra dependencies.

pub mod arch;
pub mod cmdline;
pub mod config;
pub mod console;
pub mod dhcp;
pub mod manifest;
pub mod modules;
pub mod signature;

pub use arch::Arch;
pub use console::{ConsoleLine, FATAL_PREFIX, READY_LINE, STAGE_PREFIX};

/// Paths inside the initramfs.
pub mod initramfs_paths {
    /// oa-init itself: the kernel runs `/init` from the initramfs.
    pub const INIT: &str = "init";
    /// JSON [`crate::config::InitramfsConfig`] written by the builder.
    pub const CONFIG: &str = "etc/oa/initramfs.json";
    /// Where the kernel modules live (`lib/modules/<release>/...`).
    pub const MODULES_DIR: &str = "lib/modules";
    /// The driver classes' modules (with `modules.dep` and `modules.alias`) as a squashfs
    /// image: the kernel unpacks it as one file, oa-init mounts it read-only over
    /// `lib/modules/<release>/` and reads a module only when a device asks for it.
    pub const DRIVERS_IMAGE: &str = "lib/oa/drivers.squashfs";
    /// Optional busybox for the emergency shell.
    pub const BUSYBOX: &str = "bin/busybox";
    /// JSON [`crate::config::PersistConfig`], present when the profile has `[persistence]`.
    pub const PERSIST_CONFIG: &str = "etc/oa/persist.json";
    /// Where a `keyfile` of the profile is put (only as secret as the image).
    pub const PERSIST_KEYFILE: &str = "etc/oa/persist.key";
    /// The minisign public key (profile `[secure_boot] config_key`) that the run-time
    /// configuration (`oa.config=`) must be signed with; absent: configurations are unsigned.
    pub const CONFIG_KEY: &str = "etc/oa/config.pub";
}

/// `oa-storage` (glibc, dynamic) and the tools it runs, with their shared libraries, at the same
/// paths in the initramfs and the root image. They run through the bundled dynamic loader:
/// `<LOADER> --library-path <LIBDIR> <STORAGE> ...`, so they never mix with the root's own libs.
pub mod storage_paths {
    pub const STORAGE: &str = "/usr/lib/oa/oa-storage";
    pub const MKFS_BTRFS: &str = "/usr/lib/oa/mkfs.btrfs";
    pub const LIBDIR: &str = "/usr/lib/oa/lib";
    pub const LOADER: &str = "/usr/lib/oa/lib/ld.so";
    /// Mount point of the btrfs top level (subvolid 5): `state`, `snapshots/`, `meta/`.
    pub const TOP: &str = "/run/oa/persist";
    /// [`crate::config::PersistRuntime`] written by `oa-storage setup`.
    pub const RUNTIME: &str = "/run/oa/persist.json";
    /// Exit status of `oa-storage setup`: the device was not found.
    pub const EXIT_MISSING: i32 = 2;
    /// Exit status: the key was wrong (after the retries).
    pub const EXIT_KEY: i32 = 3;
    /// Exit status: the device holds data oa did not make, or formatting is not allowed.
    pub const EXIT_REFUSED: i32 = 4;
}

/// Paths on boot media that hold the root image as a file (the ISO, or any filesystem found by
/// `oa.root=LABEL=`/`UUID=`): oa-init mounts the filesystem read-only and loop-mounts the
/// image from it.
pub mod media_paths {
    /// The root image (squashfs) on the medium.
    pub const ROOT_IMAGE: &str = "oa/rootfs.squashfs";
}

/// Paths inside the root filesystem.
pub mod rootfs_paths {
    /// oa-init inside the root image: stage 1 execs it as PID 1 after switch_root.
    pub const INIT: &str = "usr/lib/oa/oa-init";
    /// JSON [`crate::config::SystemConfig`] written by the builder (hostname, services).
    pub const SYSTEM_CONFIG: &str = "etc/oa/system.json";
    /// oa-init's own state in the root; it persists whenever persistence is on (stage 1 adds
    /// it to `[persistence] paths` when the profile lists some).
    pub const OA_STATE: &str = "var/lib/oa";
    /// JSON [`crate::config::RuntimeApplied`]: what the run-time configuration wrote, so that
    /// what a later configuration drops is removed (or the previous file restored).
    pub const RUNTIME_CONFIG_APPLIED: &str = "var/lib/oa/runtime-config.applied.json";
}

/// Mount points oa-init uses; they stay visible after switch_root under `/run/oa`.
pub mod mounts {
    /// The read-only root image (squashfs).
    pub const LOWER: &str = "/run/oa/lower";
    /// The writable layer (tmpfs, or persistent storage).
    pub const RW: &str = "/run/oa/rw";
    /// Where the overlay is assembled before switch_root.
    pub const SYSROOT: &str = "/sysroot";
    /// The merged oa.* arguments stage 1 hands to stage 2 (the initramfs defaults are gone
    /// after switch_root).
    pub const SAVED_CMDLINE: &str = "/run/oa/cmdline";
    /// The driver image (initramfs_paths::DRIVERS_IMAGE), moved here by stage 1 so that
    /// stage 2 loads the drivers of devices found late or plugged in later.
    pub const MODULES: &str = "/run/oa/modules";
    /// The checked per-machine run-time configuration (`oa.config=`), JSON
    /// [`crate::config::RuntimeConfig`], left by stage 1 for stage 2.
    pub const RUNTIME_CONFIG: &str = "/run/oa/config.json";
    /// The filesystem found by `oa.root=LABEL=`/`UUID=` (an ISO, a FAT/ext4/btrfs stick),
    /// mounted read-only when the root image is a file on it
    /// ([`crate::media_paths::ROOT_IMAGE`]); unmounted again after copy-to-RAM.
    pub const MEDIA: &str = "/run/oa/media";
    /// The tmpfs that holds the root image after copy-to-RAM (`oa.copytoram`).
    pub const RAM: &str = "/run/oa/ram";
}
