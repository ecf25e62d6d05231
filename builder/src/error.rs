//! The builder's error type: every variant says what was being done to which thing, and the
//! CLI prints it for people (with a hint where there is something obvious to do).

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{action} {}: {source}", path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error(transparent)]
    Profile(#[from] crate::profile::ProfileError),

    /// An environment file (`oa lab`, `oa deploy`, `oa graph ENV`).
    #[error(transparent)]
    Env(#[from] crate::env::EnvError),

    #[error("`{tool}` is not installed ({why}); {hint}")]
    ToolMissing { tool: String, why: String, hint: String },

    #[error("`{command}` failed with {status}:\n{output}")]
    ToolFailed { command: String, status: String, output: String },

    #[error("Debian package `{package}`: {reason}")]
    Package { package: String, reason: String },

    #[error("reading .deb archive {}: {reason}", path.display())]
    Deb { path: PathBuf, reason: String },

    #[error("kernel: {0}")]
    Kernel(String),

    #[error("oa-init binary: {0}")]
    InitBinary(String),

    #[error("output directory {}: {reason}", path.display())]
    Output { path: PathBuf, reason: String },

    #[error("build pipeline: stage `{stage}` needs {needs}, which no earlier stage produced (a bug in oa: please report it)")]
    Pipeline { stage: &'static str, needs: &'static str },

    #[error("build cache {}: {reason}", path.display())]
    Cache { path: PathBuf, reason: String },

    #[error(transparent)]
    Flash(#[from] crate::flash::FlashError),

    /// A full-OS base (mmdebstrap, pacman) could not be made; the text names the mirror,
    /// repository or package and what to change.
    #[error("{0}")]
    Base(String),

    /// The assembled root filesystem lacks something the profile needs (a service's binary,
    /// a systemd unit, a time zone, /sbin/init).
    #[error("{0}")]
    RootContent(String),

    /// Writing a disk image or squashfs.
    #[error("{0}")]
    Image(String),

    /// Writing the hybrid ISO (`oa.iso`).
    #[error("hybrid ISO: {0}")]
    Iso(String),

    /// `[persistence]`: bundling oa-storage and mkfs.btrfs with their libraries.
    #[error("{0}")]
    Persistence(String),

    /// The Raspberry Pi outputs.
    #[error("{0}")]
    Rpi(String),

    /// Running QEMU.
    #[error("{0}")]
    Qemu(String),

    /// Options that do not go together.
    #[error("{0}")]
    Usage(String),

    /// `oa serve`.
    #[error("{0}")]
    Serve(String),

    /// Walking a folder (overlays, cache keys).
    #[error("{0}")]
    Walk(String),

    /// Secure Boot keys: making them (`oa keys init`) or signing with them.
    #[error("{0}")]
    Keys(String),

    /// Encoding a JSON file the builder writes.
    #[error("encoding JSON: {0}")]
    Encode(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Attach "what was done to which path" to an io::Error.
pub trait IoContext<T> {
    fn ctx(self, action: &'static str, path: impl Into<PathBuf>) -> Result<T>;
}

impl<T> IoContext<T> for std::io::Result<T> {
    fn ctx(self, action: &'static str, path: impl Into<PathBuf>) -> Result<T> {
        self.map_err(|source| Error::Io { action, path: path.into(), source })
    }
}
