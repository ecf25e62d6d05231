//! Errors of oa-storage: each names the object, the step and, where it helps, what to do.

use oa_contract::storage_paths::{EXIT_KEY, EXIT_MISSING, EXIT_REFUSED};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("persistence device {0} not found")]
    Missing(String),
    #[error("{device}: {why}")]
    Refused { device: String, why: String },
    #[error("{device}: no key slot opens with the {source_} (after {attempts} attempt(s))")]
    WrongKey { device: String, source_: String, attempts: u32 },
    #[error("{what} {path}: {source}")]
    Io { what: String, path: String, source: std::io::Error },
    #[error("libcryptsetup: {what} {device}: {source}")]
    Luks { what: String, device: String, source: libcryptsetup_rs::LibcryptErr },
    #[error("libbtrfsutil: {what} {path}: {source}")]
    Btrfs { what: String, path: String, source: btrfsutil::BtrfsUtilError },
    #[error("{0}")]
    Other(String),
}

impl Error {
    /// The process exit status oa-init reads (see `oa_contract::storage_paths`).
    pub fn exit_code(&self) -> i32 {
        match self {
            Error::Missing(_) => EXIT_MISSING,
            Error::WrongKey { .. } => EXIT_KEY,
            Error::Refused { .. } => EXIT_REFUSED,
            _ => 1,
        }
    }

    /// What to do about it, for the console.
    pub fn hint(&self) -> &'static str {
        match self {
            Error::Missing(_) => "attach the device, or fix [persistence] device / oa.persist=",
            Error::WrongKey { .. } => "type the passphrase again on the next boot, or boot with oa.persist.key= pointing at the right key",
            Error::Refused { .. } => "oa formats only a blank device (all zeros at its start and end) and only with format = \"if-blank\"; wipe the device yourself if its data is not needed (wipefs -a DEVICE), or point oa.persist= at another device",
            _ => "add oa.shell to the kernel command line to look around in an emergency shell",
        }
    }
}

pub type Result<T> = std::result::Result<T, Error>;

pub trait IoContext<T> {
    fn ctx(self, what: &str, path: impl AsRef<std::path::Path>) -> Result<T>;
}

impl<T> IoContext<T> for std::io::Result<T> {
    fn ctx(self, what: &str, path: impl AsRef<std::path::Path>) -> Result<T> {
        self.map_err(|source| Error::Io { what: what.into(), path: path.as_ref().display().to_string(), source })
    }
}

pub fn btrfs_err(what: &str, path: &std::path::Path) -> impl FnOnce(btrfsutil::BtrfsUtilError) -> Error {
    let (what, path) = (what.to_string(), path.display().to_string());
    move |source| Error::Btrfs { what, path, source }
}
