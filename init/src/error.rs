//! The one error type of oa-init, and [`Failure`]: a failed boot step of stage 1, stage 2 or
//! persistence, as the emergency path prints it. Every variant says what was being done to
//! which file or device, so a FATAL line on the console is enough to understand a failed boot.

// A failure is built once, on the cold path: its size does not matter.
#![allow(clippy::result_large_err)]

use nix::errno::Errno;
use oa_contract::cmdline::{self, CmdlineError};
use oa_contract::storage_paths;

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

    /// No device matched `oa.root=` in time. `drivers`: the devices no driver took and the
    /// driver classes the initramfs carries (crate::coldplug::Coldplug::report).
    #[error("no block device matching {spec} appeared within {waited_ms} ms (block devices seen: {seen}; {drivers})")]
    RootNotFound { spec: String, waited_ms: u64, seen: String, drivers: String },

    /// No Ethernet interface appeared in time (network boot).
    #[error("no Ethernet interface appeared within {waited_s} s (interfaces: {seen}; {drivers})")]
    NoNic { waited_s: u64, seen: String, drivers: String },

    /// Two devices carry the filesystem `oa.root=LABEL=`/`UUID=` names.
    #[error("{spec} names more than one device: {devices}")]
    AmbiguousRoot { spec: String, devices: String },

    /// The filesystem `oa.root=LABEL=`/`UUID=` found holds no root image.
    #[error("{device} ({fstype}) holds no root image at {path}")]
    NoImageOnMedium { device: String, fstype: String, path: String },

    /// Copy-to-RAM was asked for and cannot be done.
    #[error("copy the root image to RAM: {why}")]
    CopyToRam { why: String },

    /// The root image does not have the digest given by `oa.sha256=`.
    #[error("{device}: sha256 mismatch: expected {expected}, got {actual}")]
    HashMismatch { device: String, expected: String, actual: String },

    /// The root image is not a (complete) squashfs image.
    #[error("{device}: not a usable squashfs image: {why}")]
    NotSquashfs { device: String, why: String },

    /// A GPT on `device` is damaged.
    #[error("{device}: GPT: {why}")]
    Gpt { device: String, why: String },

    /// Persistence (`oa-storage setup`) failed and the profile does not make it optional.
    #[error("persistence: {0}")]
    Persist(PersistError),

    /// The root image mapped through dm-verity does not mount or read: a block does not match
    /// the root hash of `oa.verity=`.
    #[error("{device} (dm-verity {root_hash} over {over}): {why}")]
    Verity { device: String, root_hash: String, over: String, why: String },

    /// The profile requires a run-time configuration (`[secure_boot] config_required`) and
    /// `oa.config=` gave none that could be used (missing, unreachable, unsigned, signed by
    /// another key or for another machine).
    #[error("run-time configuration {from}: {why}")]
    Config { from: String, why: String },

    /// Something expected is missing (a file, a mount point).
    #[error("{what}: {why}")]
    Unexpected { what: String, why: String },
}

/// Why stage 1 could not set up persistence (the exit status of `oa-storage setup`, or why it
/// did not run).
#[derive(Debug, thiserror::Error)]
pub enum PersistError {
    /// Persistence was asked for but the initramfs has no oa-storage.
    #[error(
        "{}= is set but this initramfs has no {} (the profile has no [persistence] section)",
        cmdline::PERSIST,
        storage_paths::STORAGE
    )]
    NoStorage,
    #[error("the persistence device was not found")]
    Missing,
    #[error("the persistence device did not unlock with the key given")]
    WrongKey,
    #[error("the persistence device was refused (it holds data oa did not make, or formatting is not allowed)")]
    Refused,
    /// Any other exit status.
    #[error("oa-storage setup failed ({0})")]
    Failed(std::process::ExitStatus),
    #[error("cannot run {}: {0}", storage_paths::STORAGE)]
    Spawn(std::io::Error),
}

/// A failed boot step: what was being done, the error, and what to do when the error itself
/// has no better hint. Stage 1, stage 2 and persistence fail with it; the emergency path prints
/// it (`oa-init: FATAL <what>: <err>`, `oa-init: hint: <hint>`).
#[derive(Debug)]
pub struct Failure {
    pub what: &'static str,
    pub err: Error,
    pub default_hint: &'static str,
}

impl Failure {
    /// The error's own hint, else the step's.
    pub fn hint(&self) -> String {
        self.err.hint().unwrap_or_else(|| self.default_hint.to_string())
    }
}

/// Name the step a result belongs to: `op().step("find the root image", HINT)?`.
pub trait Step<T> {
    fn step(self, what: &'static str, default_hint: &'static str) -> std::result::Result<T, Failure>;
}

impl<T> Step<T> for Result<T> {
    fn step(self, what: &'static str, default_hint: &'static str) -> std::result::Result<T, Failure> {
        self.map_err(|err| Failure { what, err, default_hint })
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What to do about a device without a driver (root disk or NIC not found).
fn driver_hint() -> String {
    format!(
        "for a device without a driver, add its driver class to [kernel] drivers (storage, usb-storage, virtio, net, ...) or its module to [kernel] modules in the profile and rebuild with oa build, or load a carried module with {}=<name> on the kernel command line; {}= may be what keeps it out",
        cmdline::MODULES,
        cmdline::BLACKLIST
    )
}

impl Error {
    /// What the user can do about it (the `oa-init: hint:` line), when the error knows better
    /// than the failed step.
    pub fn hint(&self) -> Option<String> {
        match self {
            Error::Verity { .. } => Some(format!(
                "dm-verity: the root image does not match its signed root hash ({}=): it is corrupt or was changed; rebuild it (oa build) or re-flash the medium with the same build's image and kernel command line",
                cmdline::VERITY
            )),
            Error::HashMismatch { .. } => Some(
                "the root image is corrupt or does not belong to this kernel/initramfs: rebuild it (oa build) or re-flash the medium; the oa.sha256= on the kernel command line must be the one from the same build's manifest.json".into(),
            ),
            Error::RootNotFound { .. } => Some(format!(
                "check {}= on the kernel command line; {}; add {} for a shell to look around",
                cmdline::ROOT,
                driver_hint(),
                cmdline::SHELL
            )),
            Error::NoNic { .. } => Some(format!("the NIC needs its driver: {}", driver_hint())),
            Error::NotSquashfs { .. } => Some(format!("{}= must point at the rootfs.squashfs of the build (a raw partition or device holding it)", cmdline::ROOT)),
            Error::Cmdline(_) => Some("fix the oa.* keys on the kernel command line (see docs/boot-contract.md)".into()),
            Error::AmbiguousRoot { .. } => Some(format!(
                "give the label to one filesystem only (remove the other medium), or name the root by {}=PARTUUID= or a /dev path",
                cmdline::ROOT
            )),
            Error::NoImageOnMedium { path, .. } => Some(format!(
                "the medium is not an oa build's: write oa.iso (or put the build's rootfs.squashfs at {path}) or fix {}=",
                cmdline::ROOT
            )),
            Error::CopyToRam { .. } => Some(format!(
                "boot with {}=no to use the image in place, or give the machine more RAM",
                cmdline::COPYTORAM
            )),
            Error::Config { .. } => Some(format!(
                "this image requires a run-time configuration ([secure_boot] config_required): give {}= on the kernel command line; with [secure_boot] config_key it must be signed by that key (oa serve --machines DIR --sign-key DIR/minisign.key signs what it serves, minisign -S signs a file)",
                cmdline::CONFIG
            )),
            Error::Json { .. } => Some("the file was not written by a matching oa build: rebuild the image".into()),
            Error::Mount { fstype, source: Errno::ENODEV, .. } => Some(format!(
                "the kernel does not know the filesystem {fstype}: the initramfs must load its module (check the modules in /etc/oa/initramfs.json)"
            )),
            Error::Persist(PersistError::NoStorage) => Some("add a [persistence] section to the profile and rebuild with oa build".into()),
            Error::Persist(_) => Some("see the persist lines above; add oa.shell to look around, or set [persistence] optional = true to boot on tmpfs instead".into()),
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
