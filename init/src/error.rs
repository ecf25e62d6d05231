//! The one error type of oa-init. Every variant says what was being done to which file or
//! device, so a FATAL line on the console is enough to understand a failed boot.

use nix::errno::Errno;
use oa_contract::cmdline::CmdlineError;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file operation (open, read, create, ...) on `path` failed.
    #[error("{op} {path}: {source}")]
    Io { op: &'static str, path: String, source: std::io::Error },

    /// A system call on `path` failed.
    #[error("{op} {path}: {source}")]
    Sys { op: &'static str, path: String, source: Errno },

    /// mount(2) failed.
    #[error("mount -t {fstype} {src} {target} (options {data:?}): {source}")]
    Mount { fstype: String, src: String, target: String, data: String, source: Errno },

    /// A config file is not valid JSON or does not match the schema.
    #[error("{path}: {source}")]
    Json { path: String, source: serde_json::Error },

    #[error(transparent)]
    Cmdline(#[from] CmdlineError),

    /// A feature the contract names but this version does not implement yet.
    #[error("{what} is not supported yet")]
    NotSupported { what: String },

    /// No device matched `oa.root=` in time.
    #[error("no block device matching {spec} appeared within {waited_ms} ms (block devices seen: {seen})")]
    RootNotFound { spec: String, waited_ms: u64, seen: String },

    /// The root image does not have the digest given by `oa.sha256=`.
    #[error("{device}: sha256 mismatch: expected {expected}, got {actual}")]
    HashMismatch { device: String, expected: String, actual: String },

    /// The root image is not a (complete) squashfs image.
    #[error("{device}: not a usable squashfs image: {why}")]
    NotSquashfs { device: String, why: String },

    /// A GPT on `device` is damaged.
    #[error("{device}: GPT: {why}")]
    Gpt { device: String, why: String },

    /// Something expected is missing (a file, a mount point).
    #[error("{what}: {why}")]
    Unexpected { what: String, why: String },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// What the user can do about it (the `oa-init: hint:` line), when the error knows better
    /// than the failed step.
    pub fn hint(&self) -> Option<String> {
        match self {
            Error::HashMismatch { .. } => Some(
                "the root image is corrupt or does not belong to this kernel/initramfs: rebuild it (oa build) or re-flash the medium; the oa.sha256= on the kernel command line must be the one from the same build's manifest.json".into(),
            ),
            Error::RootNotFound { .. } => Some(
                "check oa.root= on the kernel command line and that the initramfs carries the storage driver (e.g. virtio_blk, ahci, nvme, usb_storage); add oa.shell for a shell to look around".into(),
            ),
            Error::NotSquashfs { .. } => Some("oa.root= must point at the rootfs.squashfs of the build (a raw partition or device holding it)".into()),
            Error::Cmdline(_) => Some("fix the oa.* keys on the kernel command line (see docs/boot-contract.md)".into()),
            Error::NotSupported { .. } => Some("use a /dev path, PARTLABEL= or PARTUUID= for oa.root=, or leave it out to scan for the squashfs image".into()),
            Error::Json { .. } => Some("the file was not written by a matching oa build: rebuild the image".into()),
            Error::Mount { fstype, source: Errno::ENODEV, .. } => Some(format!(
                "the kernel does not know the filesystem {fstype}: the initramfs must load its module (check the modules in /etc/oa/initramfs.json)"
            )),
            _ => None,
        }
    }
}

/// Attach "what was done to which path" to std::io errors.
pub trait IoContext<T> {
    fn ctx(self, op: &'static str, path: impl AsRef<std::path::Path>) -> Result<T>;
}

impl<T> IoContext<T> for std::io::Result<T> {
    fn ctx(self, op: &'static str, path: impl AsRef<std::path::Path>) -> Result<T> {
        self.map_err(|source| Error::Io { op, path: path.as_ref().display().to_string(), source })
    }
}

/// Attach "which system call on which path" to nix errors.
pub trait SysContext<T> {
    fn sys(self, op: &'static str, path: impl AsRef<std::path::Path>) -> Result<T>;
}

impl<T> SysContext<T> for nix::Result<T> {
    fn sys(self, op: &'static str, path: impl AsRef<std::path::Path>) -> Result<T> {
        self.map_err(|source| Error::Sys { op, path: path.as_ref().display().to_string(), source })
    }
}
