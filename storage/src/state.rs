//! The storage objects as states and transitions (DESIGN.md "Objects, states and morphisms").
//!
//! ```text
//! device:   Missing | Blank | Foreign(signatures) | Luks{oa, finished}
//! mapping:  Closed | Open                       (/dev/mapper/oa-persist)
//! fs:       None | Btrfs | Foreign               (on the mapping)
//! top:      Unmounted | Mounted                  (/run/oa/persist, subvolid 5)
//! subvols:  state, snapshots/, meta/ present or not
//! state:    Unmounted | Mounted                  (/run/oa/rw)
//! ```
//!
//! [`info`] reads the current state; [`plan`] is a pure function from the current state and the
//! policy to the next transition (or a refusal); `setup` applies transitions one at a time,
//! re-reading the state after each, until there is nothing left to do. Running it twice
//! changes nothing the second time.

use std::path::{Path, PathBuf};

use oa_contract::config::PersistFormat;

use crate::probe::{self, Signature};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeviceState {
    Blank,
    Foreign(Vec<Signature>),
    /// An oa LUKS2 volume; `finished`: its btrfs was made (label `oa-persist`).
    OaLuks {
        finished: bool,
        uuid: String,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FsState {
    None,
    Btrfs,
    Foreign(Vec<Signature>),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Info {
    pub device: PathBuf,
    pub dev: DeviceState,
    pub mapping_open: bool,
    /// Only known when the mapping is open.
    pub fs: Option<FsState>,
    pub top_mounted: bool,
    pub subvols_present: bool,
    pub state_mounted: bool,
}

/// The next transition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    LuksFormat,
    Unlock,
    Mkfs,
    MountTop,
    CreateSubvols,
    MountState,
    Done,
}

/// Refusals: the device holds something oa must not touch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    Foreign(Vec<Signature>),
    BlankNoConsent,
    InnerForeign(Vec<Signature>),
}

impl Refusal {
    pub fn message(&self) -> String {
        let list = |v: &[Signature]| v.iter().map(|s| s.name()).collect::<Vec<_>>().join(", ");
        match self {
            Refusal::Foreign(s) => format!("holds data oa did not make ({}); refusing to format it", list(s)),
            Refusal::BlankNoConsent => "is blank but formatting is not allowed (profile [persistence] format = \"never\"); set format = \"if-blank\" to let oa format it".into(),
            Refusal::InnerForeign(s) => format!("is an oa LUKS2 volume but holds no btrfs ({}); refusing to format inside it", list(s)),
        }
    }
}

/// The next step from `info`, under the formatting policy.
pub fn plan(info: &Info, format: PersistFormat) -> Result<Step, Refusal> {
    match &info.dev {
        DeviceState::Foreign(s) => return Err(Refusal::Foreign(s.clone())),
        DeviceState::Blank if format == PersistFormat::IfBlank => return Ok(Step::LuksFormat),
        DeviceState::Blank => return Err(Refusal::BlankNoConsent),
        DeviceState::OaLuks { .. } => {}
    }
    if !info.mapping_open {
        return Ok(Step::Unlock);
    }
    let finished = matches!(info.dev, DeviceState::OaLuks { finished: true, .. });
    match &info.fs {
        Some(FsState::Btrfs) => {}
        // Inside a fresh oa volume the decrypted bytes are noise: mkfs only while the LUKS label
        // still says the btrfs was never made.
        Some(FsState::None) | Some(FsState::Foreign(_)) if !finished => return Ok(Step::Mkfs),
        Some(FsState::Foreign(s)) => return Err(Refusal::InnerForeign(s.clone())),
        Some(FsState::None) | None => return Err(Refusal::InnerForeign(vec![])),
    }
    if !info.top_mounted {
        return Ok(Step::MountTop);
    }
    if !info.subvols_present {
        return Ok(Step::CreateSubvols);
    }
    if !info.state_mounted {
        return Ok(Step::MountState);
    }
    Ok(Step::Done)
}

/// Read the current state of every object.
pub fn info(device: &Path, mapping: &Path, top: &Path, state_mnt: &Path) -> std::io::Result<Info> {
    let (head, tail) = probe::read_regions(device)?;
    let sigs = probe::detect(&head, &tail);
    let dev = if sigs.is_empty() {
        DeviceState::Blank
    } else if let Some(Signature::Luks { label, uuid, .. }) = sigs.iter().find(|s| s.is_oa_luks()) {
        DeviceState::OaLuks { finished: label == probe::LABEL_DONE, uuid: uuid.clone() }
    } else {
        DeviceState::Foreign(sigs)
    };
    let mapping_open = mapping.exists();
    let fs = if mapping_open {
        let (h, t) = probe::read_regions(mapping)?;
        let s = probe::detect(&h, &t);
        Some(if s.contains(&Signature::Btrfs) {
            FsState::Btrfs
        } else if s.is_empty() {
            FsState::None
        } else {
            FsState::Foreign(s)
        })
    } else {
        None
    };
    let top_mounted = crate::btrfs::is_mounted(top);
    let subvols_present = top_mounted
        && crate::btrfs::is_subvolume(&top.join(crate::layout::STATE))
        && top.join(crate::layout::SNAPSHOTS).is_dir()
        && top.join(crate::layout::META).is_dir();
    Ok(Info {
        device: device.to_path_buf(),
        dev,
        mapping_open,
        fs,
        top_mounted,
        subvols_present,
        state_mounted: crate::btrfs::is_mounted(state_mnt),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base() -> Info {
        Info {
            device: "/dev/vdb".into(),
            dev: DeviceState::OaLuks { finished: true, uuid: "u".into() },
            mapping_open: true,
            fs: Some(FsState::Btrfs),
            top_mounted: true,
            subvols_present: true,
            state_mounted: true,
        }
    }

    #[test]
    fn never_formats_foreign_or_without_consent() {
        let mut i = base();
        i.dev = DeviceState::Foreign(vec![Signature::Ext]);
        assert_eq!(plan(&i, PersistFormat::IfBlank), Err(Refusal::Foreign(vec![Signature::Ext])));
        i.dev = DeviceState::Blank;
        assert_eq!(plan(&i, PersistFormat::Never), Err(Refusal::BlankNoConsent));
        assert_eq!(plan(&i, PersistFormat::IfBlank), Ok(Step::LuksFormat));
    }

    #[test]
    fn walks_the_chain_in_order() {
        let mut i = base();
        i.dev = DeviceState::OaLuks { finished: false, uuid: "u".into() };
        i.mapping_open = false;
        i.fs = None;
        assert_eq!(plan(&i, PersistFormat::Never), Ok(Step::Unlock));
        i.mapping_open = true;
        i.fs = Some(FsState::Foreign(vec![Signature::UnknownData]));
        assert_eq!(plan(&i, PersistFormat::Never), Ok(Step::Mkfs));
        i.fs = Some(FsState::Btrfs);
        i.top_mounted = false;
        assert_eq!(plan(&i, PersistFormat::Never), Ok(Step::MountTop));
        i.top_mounted = true;
        i.subvols_present = false;
        assert_eq!(plan(&i, PersistFormat::Never), Ok(Step::CreateSubvols));
        i.subvols_present = true;
        i.state_mounted = false;
        assert_eq!(plan(&i, PersistFormat::Never), Ok(Step::MountState));
        i.state_mounted = true;
        assert_eq!(plan(&i, PersistFormat::Never), Ok(Step::Done));
    }

    #[test]
    fn finished_volume_without_btrfs_is_not_reformatted() {
        let mut i = base();
        i.fs = Some(FsState::Foreign(vec![Signature::UnknownData]));
        assert!(matches!(plan(&i, PersistFormat::IfBlank), Err(Refusal::InnerForeign(_))));
    }
}
