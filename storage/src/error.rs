//! Errors of oa-storage: each names the object, the step and, where it helps, what to do.

use oa_contract::cmdline;
use oa_contract::storage_paths::{EXIT_KEY, EXIT_MISSING, EXIT_REFUSED};

use crate::layout::RollbackError;
use crate::state::{Info, Refusal, Step};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("persistence device {0} not found")]
    Missing(String),
    #[error("no persistence device: give {}= or [persistence] device", cmdline::PERSIST)]
    NoDevice,
    #[error("{device}: {why}")]
    Refused { device: String, why: Refusal },
    #[error("{device}: no key slot opens with the {source_} (after {attempts} attempt(s))")]
    WrongKey { device: String, source_: String, attempts: u32 },
    #[error("key source {0:?}: expected passphrase, file:/path or network")]
    KeySource(String),
    #[error("{}={what} is not implemented yet; use passphrase or file:/path", cmdline::PERSIST_KEY)]
    NotImplemented { what: &'static str },
    #[error("key file {0} is empty")]
    EmptyKeyFile(String),
    #[error("the console closed while asking for the passphrase")]
    ConsoleClosed,
    #[error("{0}")]
    Rollback(#[from] RollbackError),
    #[error("{0:?} is not a valid snapshot name: letters, digits, . _ -; not boot-* or previous")]
    InvalidName(String),
    /// A name given to `snapshot delete/rollback/...` (or `oa.rollback=`) that is not one path
    /// component of the snapshot naming rules (`../state`, `a/b`, `.`).
    #[error("{0:?} is not a snapshot name: one path component of letters, digits, . _ - (boot-NNNNNN or a name given with `snapshot create`)")]
    InvalidSnapshotName(String),
    /// `LABEL=`/`UUID=`/`PARTLABEL=` matches more than one device: oa does not pick one.
    #[error("persistence device {spec} is ambiguous: it matches {}", devices.join(" and "))]
    Ambiguous { spec: String, devices: Vec<String> },
    /// The LUKS2 label did not read back as `oa-persist` after setting it.
    #[error("{device}: the LUKS2 label still reads {found:?} after {attempts} attempt(s) to set it to {want:?}")]
    LabelNotSet { device: String, found: String, want: &'static str, attempts: u32 },
    /// mkfs was about to run on a volume that is not (or no longer) an unfinished oa volume.
    #[error("{device}: refusing to make a btrfs: the LUKS2 header reads {header}, not an unfinished oa format (label oa-persist-new); a finished oa volume holds the state, whatever its filesystem probe says")]
    MkfsOnFinished { device: String, header: String },
    #[error("snapshot {0} exists already")]
    SnapshotExists(String),
    #[error("snapshot {0:?} does not exist")]
    NoSnapshot(String),
    #[error("{path}: {source}: persistence is not set up on this boot")]
    NotSetUp { path: String, source: std::io::Error },
    /// The plan stopped changing anything: `step` returned Ok but `info` read the same state.
    #[error("setup is stuck: step {step} succeeded but changed nothing (state: {state})")]
    NoProgress { step: Step, state: Box<Info> },
    /// The plan did not reach Done within `steps` steps.
    #[error("setup did not converge after {steps} steps: the next would be {step} (state: {state})")]
    NotConverged { steps: usize, step: Step, state: Box<Info> },
    #[error("running {what}: {source}")]
    Run { what: &'static str, source: std::io::Error },
    #[error("mkfs.btrfs {device} failed ({status}): {stderr}")]
    Mkfs { device: String, status: std::process::ExitStatus, stderr: String },
    #[error("mount {device} on {target} (btrfs, {options}): {source}")]
    Mount { device: String, target: String, options: String, source: nix::Error },
    #[error("{path}: {source}")]
    Json { path: String, source: serde_json::Error },
    #[error("{what} {path}: {source}")]
    Io { what: String, path: String, source: std::io::Error },
    #[error("libcryptsetup: {what} {device}: {source}")]
    Luks { what: String, device: String, source: libcryptsetup_rs::LibcryptErr },
    #[error("libbtrfsutil: {what} {path}: {source}")]
    Btrfs { what: String, path: String, source: btrfsutil::BtrfsUtilError },
}

impl Error {
    /// The process exit status oa-init reads (see `oa_contract::storage_paths`).
    pub fn exit_code(&self) -> i32 {
        match self {
            Error::Missing(_) => EXIT_MISSING,
            Error::WrongKey { .. } => EXIT_KEY,
            Error::Refused { .. } | Error::MkfsOnFinished { .. } | Error::Ambiguous { .. } => EXIT_REFUSED,
            _ => 1,
        }
    }

    /// What to do about it, for the console.
    pub fn hint(&self) -> &'static str {
        match self {
            Error::Missing(_) => "attach the device, or fix [persistence] device / oa.persist=",
            Error::WrongKey { .. } => "type the passphrase again on the next boot, or boot with oa.persist.key= pointing at the right key",
            Error::Refused { .. } => "oa formats only a blank device (all zeros at its start and end) and only with format = \"if-blank\"; wipe the device yourself if its data is not needed (wipefs -a DEVICE), or point oa.persist= at another device",
            Error::Ambiguous { .. } => "give the device by a path (oa.persist=/dev/...) or make its label unique",
            Error::MkfsOnFinished { .. } => "oa never makes a filesystem inside a finished volume; open it with cryptsetup from the emergency shell (oa.shell) to save its data, or wipe the device yourself (wipefs -a DEVICE) if it is not needed",
            Error::LabelNotSet { .. } => "the device did not keep what was written to it; check it (dmesg in oa.shell) and boot again: the next boot retries",
            Error::InvalidSnapshotName(_) => "see the names with `oa-init snapshot list`",
            Error::NoProgress { .. } | Error::NotConverged { .. } => "something else holds the device or its mount points (look with oa.shell: cat /proc/self/mountinfo, ls /dev/mapper); this is a bug in oa-storage if nothing does, please report it with these lines",
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

/// `serde_json` errors about the file `path`.
pub fn json_err(path: impl AsRef<std::path::Path>) -> impl FnOnce(serde_json::Error) -> Error {
    let path = path.as_ref().display().to_string();
    move |source| Error::Json { path, source }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The texts people and the QEMU tests read did not change with the types.
    #[test]
    fn messages_keep_their_words() {
        assert_eq!(
            Error::NotImplemented { what: "network" }.to_string(),
            format!("{}=network is not implemented yet; use passphrase or file:/path", cmdline::PERSIST_KEY)
        );
        assert_eq!(
            Error::NoDevice.to_string(),
            format!("no persistence device: give {}= or [persistence] device", cmdline::PERSIST)
        );
        let r = Error::Refused { device: "/dev/vdb".into(), why: Refusal::Foreign(vec![crate::probe::Signature::Ext]) };
        assert_eq!(r.to_string(), "/dev/vdb: holds data oa did not make (ext2/3/4 filesystem); refusing to format it");
        assert_eq!(r.exit_code(), EXIT_REFUSED);
        assert_eq!(
            Error::KeySource("x".into()).to_string(),
            "key source \"x\": expected passphrase, file:/path or network"
        );
    }
}
