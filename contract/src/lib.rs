//! The contract between the builder (`oa`) and the init (`oa-init`).
//!
//! Everything both sides must agree on lives here and nowhere else: the kernel command line
//! keys, the well-known console lines the tests wait for, the paths of the files the builder
//! writes for the init, and the schema of those files and of `manifest.json`.
//!
//! This crate is not for logic: it holds names, types and their parsing/rendering only, so that
//! it builds for every target the init is built for (musl, aarch64) without extra dependencies.

pub mod cmdline;
pub mod config;
pub mod manifest;

/// The line oa-init prints on the console when the system is up. `oa run --until-ready` and
/// the QEMU tests wait for it. Followed by ` host=<hostname>` on the same line.
pub const READY_LINE: &str = "oa-init: ready";

/// Prefix of the one line per stage that oa-init prints (`oa-init: stage <name>: ...`).
pub const STAGE_PREFIX: &str = "oa-init: stage";

/// Prefix of every fatal error line oa-init prints before the emergency path.
pub const FATAL_PREFIX: &str = "oa-init: FATAL";

/// Paths inside the initramfs.
pub mod initramfs_paths {
    /// oa-init itself: the kernel runs `/init` from the initramfs.
    pub const INIT: &str = "init";
    /// JSON [`crate::config::InitramfsConfig`] written by the builder.
    pub const CONFIG: &str = "etc/oa/initramfs.json";
    /// Where the kernel modules live (`lib/modules/<release>/...`).
    pub const MODULES_DIR: &str = "lib/modules";
    /// Optional busybox for the emergency shell.
    pub const BUSYBOX: &str = "bin/busybox";
}

/// Paths inside the root filesystem.
pub mod rootfs_paths {
    /// oa-init inside the root image: stage 1 execs it as PID 1 after switch_root.
    pub const INIT: &str = "usr/lib/oa/oa-init";
    /// JSON [`crate::config::SystemConfig`] written by the builder (hostname, services).
    pub const SYSTEM_CONFIG: &str = "etc/oa/system.json";
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
}
