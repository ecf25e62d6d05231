//! The storage objects as states and transitions (docs/persistence.md "The boot").
//!
//! ```text
//! header:    Absent | Foreign(signatures) | OaUnfinished | OaNew | OaDone
//!                                                  (the LUKS2 label and its key slots say which)
//! mapping:   Closed | Mapped                                   (/dev/mapper/oa-persist)
//! fs:        Unseen | Empty | Btrfs | Foreign(signatures)      (on the mapping; Unseen: closed)
//! top:       Unmounted | Mounted                               (/run/oa/persist, subvolid 5)
//! swap:      Clean | Leftover          (state.new / state.old of a rollback cut short)
//! subvols:   Missing | Present                                 (state, snapshots/, meta/)
//! snapshot:  NotTaken | Taken                                  (this boot's, by boot id)
//! prune:     Pending(names) | Pruned                           (boot snapshots beyond keep)
//! state:     Unmounted | Mounted                               (/run/oa/rw = subvolume state)
//! ```
//!
//! A field past the first layer that is not there yet (no mapping, top not mounted) reads as
//! "not done"; [`plan`] never looks at it before the layer under it is done.
//!
//! [`info`] reads the current state; [`plan`] is a pure function from the current state and the
//! policy to the next transition (or a refusal); [`converge`] applies transitions one at a time
//! through an [`Objects`] (the real device, or the in-memory model of the tests), re-reading the
//! state after each, and fails loudly when a step changes nothing or the plan does not reach
//! [`Step::Done`]. Running it twice changes nothing the second time.

use std::fmt;
use std::path::{Path, PathBuf};

use oa_contract::config::PersistConfig;
use oa_contract::config::PersistFormat;

use crate::btrfs::FileId;
use crate::error::{Error, Result};
use crate::layout;
use crate::probe::{self, Signature};

/// The LUKS2 header of the device (or what is there instead).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Header {
    /// All zeros at the start and the end: blank.
    Absent,
    /// Something oa did not make (another filesystem, a LUKS header of another subsystem, ...).
    Foreign(Vec<Signature>),
    /// An oa LUKS2 header still labelled `oa-persist-new` with no key slot that opens it: a
    /// first format cut between the header and its key slot. Nothing can ever be opened from
    /// it, so the format is finished (done again).
    OaUnfinished { uuid: String },
    /// An oa LUKS2 volume whose btrfs is not made yet (label `oa-persist-new`).
    OaNew { uuid: String },
    /// A finished oa LUKS2 volume (label `oa-persist`).
    OaDone { uuid: String },
}

/// The dm-crypt mapping.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mapping {
    Closed,
    Mapped,
}

/// What the decrypted mapping holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fs {
    /// The mapping is closed: not known.
    Unseen,
    Empty,
    Btrfs,
    Foreign(Vec<Signature>),
}

/// A mount point: the top level (subvolid 5) or the state subvolume.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mount {
    Unmounted,
    Mounted,
}

/// What a rollback cut short left beside `state` in the top level (`state.new`, `state.old`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Swap {
    Clean,
    Leftover,
}

/// The layout inside the btrfs: the `state` subvolume and the `snapshots/` and `meta/` folders.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Subvols {
    Missing,
    Present,
}

/// This boot's read-only snapshot of the state (with its rollback), keyed by the boot id that
/// `meta/boot.json` records once it is taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Snapshot {
    NotTaken,
    Taken,
}

/// Boot snapshots beyond `snapshots_keep` (never the last good one or the one booted).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Prune {
    Pending(Vec<String>),
    Pruned,
}

/// The state of every object: a product of the named states above.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Info {
    pub device: PathBuf,
    pub header: Header,
    pub mapping: Mapping,
    pub fs: Fs,
    pub top: Mount,
    pub swap: Swap,
    pub subvols: Subvols,
    pub snapshot: Snapshot,
    pub prune: Prune,
    pub state: Mount,
}

impl fmt::Display for Info {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let list = |v: &[Signature]| v.iter().map(|s| s.name()).collect::<Vec<_>>().join(", ");
        let header = match &self.header {
            Header::Absent => "blank".to_string(),
            Header::Foreign(s) => format!("foreign ({})", list(s)),
            Header::OaUnfinished { .. } => "oa LUKS2 without a key slot (format cut short)".to_string(),
            Header::OaNew { .. } => "oa LUKS2, btrfs not made".to_string(),
            Header::OaDone { .. } => "oa LUKS2".to_string(),
        };
        let fs = match &self.fs {
            Fs::Unseen => "not seen".to_string(),
            Fs::Empty => "empty".to_string(),
            Fs::Btrfs => "btrfs".to_string(),
            Fs::Foreign(s) => format!("foreign ({})", list(s)),
        };
        let mount = |m: Mount| if m == Mount::Mounted { "mounted" } else { "not mounted" };
        write!(
            f,
            "header {header}, mapping {}, filesystem {fs}, top level {}{}, subvolumes {}, boot snapshot {}, {}, state {}",
            if self.mapping == Mapping::Mapped { "open" } else { "closed" },
            mount(self.top),
            if self.swap == Swap::Leftover { " (a rollback cut short)" } else { "" },
            if self.subvols == Subvols::Present { "present" } else { "missing" },
            if self.snapshot == Snapshot::Taken { "taken" } else { "not taken" },
            match &self.prune {
                Prune::Pending(v) => format!("{} snapshot(s) to prune", v.len()),
                Prune::Pruned => "nothing to prune".to_string(),
            },
            mount(self.state),
        )
    }
}

/// The next transition.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Step {
    LuksFormat,
    Unlock,
    Mkfs,
    /// btrfs made but the LUKS label still says `oa-persist-new` (cut between mkfs and relabel).
    MarkDone,
    MountTop,
    /// A rollback was cut short (`state.new`/`state.old` are there): put `state` back (the old
    /// one when the new one is not in place yet) and remove the leftovers.
    FinishSwap,
    CreateSubvols,
    /// This boot's snapshot, the rollback (if any), boot counting; recorded by boot id.
    BootSnapshot,
    Prune,
    MountState,
    Done,
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

/// Refusals: the device holds something oa must not touch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    Foreign(Vec<Signature>),
    BlankNoConsent,
    /// An unfinished oa format (no key slot) but formatting is not allowed.
    UnfinishedNoConsent,
    InnerForeign(Vec<Signature>),
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let list = |v: &[Signature]| v.iter().map(|s| s.name()).collect::<Vec<_>>().join(", ");
        match self {
            Refusal::Foreign(s) => write!(f, "holds data oa did not make ({}); refusing to format it", list(s)),
            Refusal::BlankNoConsent => f.write_str("is blank but formatting is not allowed (profile [persistence] format = \"never\"); set format = \"if-blank\" to let oa format it"),
            Refusal::UnfinishedNoConsent => f.write_str("holds an oa LUKS2 header whose first format was cut short (label oa-persist-new, no key slot), but formatting is not allowed (profile [persistence] format = \"never\"); set format = \"if-blank\" to let oa finish it"),
            Refusal::InnerForeign(s) => write!(f, "is an oa LUKS2 volume but holds no btrfs ({}); refusing to format inside it", list(s)),
        }
    }
}

/// The next step from `info`, under the formatting policy.
pub fn plan(info: &Info, format: PersistFormat) -> std::result::Result<Step, Refusal> {
    let finished = match &info.header {
        Header::Foreign(s) => return Err(Refusal::Foreign(s.clone())),
        Header::Absent if format == PersistFormat::IfBlank => return Ok(Step::LuksFormat),
        Header::Absent => return Err(Refusal::BlankNoConsent),
        // Label `oa-persist-new` and no key slot: nothing there can ever be opened.
        Header::OaUnfinished { .. } if format == PersistFormat::IfBlank => return Ok(Step::LuksFormat),
        Header::OaUnfinished { .. } => return Err(Refusal::UnfinishedNoConsent),
        Header::OaNew { .. } => false,
        Header::OaDone { .. } => true,
    };
    if info.mapping == Mapping::Closed {
        return Ok(Step::Unlock);
    }
    match &info.fs {
        Fs::Btrfs if !finished => return Ok(Step::MarkDone),
        Fs::Btrfs => {}
        // Inside a fresh oa volume the decrypted bytes are noise: mkfs only while the LUKS label
        // still says the btrfs was never made.
        Fs::Empty | Fs::Foreign(_) if !finished => return Ok(Step::Mkfs),
        Fs::Foreign(s) => return Err(Refusal::InnerForeign(s.clone())),
        Fs::Empty | Fs::Unseen => return Err(Refusal::InnerForeign(vec![])),
    }
    Ok(if info.top == Mount::Unmounted {
        Step::MountTop
    } else if info.swap == Swap::Leftover {
        Step::FinishSwap
    } else if info.subvols == Subvols::Missing {
        Step::CreateSubvols
    } else if info.snapshot == Snapshot::NotTaken {
        Step::BootSnapshot
    } else if let Prune::Pending(_) = info.prune {
        Step::Prune
    } else if info.state == Mount::Unmounted {
        Step::MountState
    } else {
        Step::Done
    })
}

/// The objects `converge` works on: `info` reads their state, `apply` takes one step. The real
/// device is `ops::Boot`; the tests have an in-memory model.
pub trait Objects {
    fn info(&mut self) -> Result<Info>;
    fn apply(&mut self, step: Step) -> Result<()>;
}

/// More steps than a run can need (each kind of step is taken at most once).
pub const MAX_STEPS: usize = 16;

/// Apply the plan until it says [`Step::Done`]; the steps taken, in order. Fails with
/// [`Error::Refused`] on a refusal, [`Error::NoProgress`] when a step returned Ok but the state
/// read afterwards is the same, [`Error::NotConverged`] after [`MAX_STEPS`].
pub fn converge(objects: &mut impl Objects, format: PersistFormat) -> Result<Vec<Step>> {
    let mut info = objects.info()?;
    let mut taken = Vec::new();
    loop {
        let step =
            plan(&info, format).map_err(|why| Error::Refused { device: info.device.display().to_string(), why })?;
        if step == Step::Done {
            return Ok(taken);
        }
        if taken.len() == MAX_STEPS {
            return Err(Error::NotConverged { steps: MAX_STEPS, step, state: Box::new(info) });
        }
        objects.apply(step)?;
        taken.push(step);
        let next = objects.info()?;
        if next == info {
            return Err(Error::NoProgress { step, state: Box::new(info) });
        }
        info = next;
    }
}

/// What `info` needs besides the places: this boot's id and how many boot snapshots to keep.
#[derive(Debug, Clone, Copy)]
pub struct Expect<'a> {
    pub boot_id: &'a str,
    pub keep: usize,
}

impl Expect<'_> {
    pub fn keep(cfg: &PersistConfig) -> usize {
        cfg.snapshots_keep.max(1) as usize
    }
}

/// `top` holds the top level of a btrfs: a mount root (its device differs from its parent's)
/// that is subvolume 5.
fn top_mount(top: Option<FileId>, parent: Option<FileId>, subvol_id: Option<u64>) -> Mount {
    match (top, parent) {
        (Some(t), Some(p)) if t.dev != p.dev && subvol_id == Some(5) => Mount::Mounted,
        _ => Mount::Unmounted,
    }
}

/// The state mount point shows the very subvolume `top/state` is (same device and inode).
fn state_mount(mount_point: Option<FileId>, subvolume: Option<FileId>) -> Mount {
    match (mount_point, subvolume) {
        (Some(m), Some(s)) if m == s => Mount::Mounted,
        _ => Mount::Unmounted,
    }
}

fn fs_of(sigs: Vec<Signature>) -> Fs {
    if sigs.contains(&Signature::Btrfs) {
        Fs::Btrfs
    } else if sigs.is_empty() {
        Fs::Empty
    } else {
        Fs::Foreign(sigs)
    }
}

/// The header from its signatures and, for an unfinished oa header (label not `oa-persist`),
/// its number of usable key slots (asked only then).
fn header_of(sigs: Vec<Signature>, keyslots: impl FnOnce() -> Result<usize>) -> Result<Header> {
    if sigs.is_empty() {
        return Ok(Header::Absent);
    }
    Ok(match sigs.iter().find(|s| s.is_oa_luks()) {
        Some(Signature::Luks { label, uuid, .. }) if label == probe::LABEL_DONE => {
            Header::OaDone { uuid: uuid.clone() }
        }
        Some(Signature::Luks { uuid, .. }) if keyslots()? == 0 => Header::OaUnfinished { uuid: uuid.clone() },
        Some(Signature::Luks { uuid, .. }) => Header::OaNew { uuid: uuid.clone() },
        _ => Header::Foreign(sigs),
    })
}

/// Read the current state of every object.
pub fn info(device: &Path, mapping: &Path, top: &Path, state_mnt: &Path, expect: Expect<'_>) -> Result<Info> {
    use crate::btrfs;
    use crate::error::IoContext;
    let (head, tail) = probe::read_regions(device).ctx("read", device)?;
    let header = header_of(probe::detect(&head, &tail), || crate::luks::usable_keyslots(device))?;
    let (mapping, fs) = if mapping.exists() {
        let (h, t) = probe::read_regions(mapping).ctx("read", mapping)?;
        (Mapping::Mapped, fs_of(probe::detect(&h, &t)))
    } else {
        (Mapping::Closed, Fs::Unseen)
    };
    let top_state = match fs {
        Fs::Btrfs => top_mount(btrfs::id(top), top.parent().and_then(btrfs::id), btrfs::subvolume_id(top)),
        _ => Mount::Unmounted,
    };
    let leftover = |n: &str| top.join(n).symlink_metadata().is_ok();
    let swap = if top_state == Mount::Mounted && (leftover(layout::STATE_NEW) || leftover(layout::STATE_OLD)) {
        Swap::Leftover
    } else {
        Swap::Clean
    };
    let subvols = if top_state == Mount::Mounted
        && btrfs::is_subvolume(&top.join(layout::STATE))
        && top.join(layout::SNAPSHOTS).is_dir()
        && top.join(layout::META).is_dir()
    {
        Subvols::Present
    } else {
        Subvols::Missing
    };
    let (mut snapshot, mut prune, mut state) = (Snapshot::NotTaken, Prune::Pruned, Mount::Unmounted);
    if subvols == Subvols::Present {
        let meta = crate::ops::read_meta(top);
        if meta.boot_id.as_deref() == Some(expect.boot_id) {
            snapshot = Snapshot::Taken;
        }
        let existing = btrfs::list(&top.join(layout::SNAPSHOTS))?;
        let gone = layout::prune(&existing, expect.keep, &meta.protected());
        if !gone.is_empty() {
            prune = Prune::Pending(gone);
        }
        state = state_mount(btrfs::id(state_mnt), btrfs::id(&top.join(layout::STATE)));
    }
    Ok(Info {
        device: device.to_path_buf(),
        header,
        mapping,
        fs,
        top: top_state,
        swap,
        subvols,
        snapshot,
        prune,
        state,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base() -> Info {
        Info {
            device: "/dev/vdb".into(),
            header: Header::OaDone { uuid: "u".into() },
            mapping: Mapping::Mapped,
            fs: Fs::Btrfs,
            top: Mount::Mounted,
            swap: Swap::Clean,
            subvols: Subvols::Present,
            snapshot: Snapshot::Taken,
            prune: Prune::Pruned,
            state: Mount::Mounted,
        }
    }

    #[test]
    fn never_formats_foreign_or_without_consent() {
        let mut i = base();
        i.header = Header::Foreign(vec![Signature::Ext]);
        assert_eq!(plan(&i, PersistFormat::IfBlank), Err(Refusal::Foreign(vec![Signature::Ext])));
        i.header = Header::Absent;
        assert_eq!(plan(&i, PersistFormat::Never), Err(Refusal::BlankNoConsent));
        assert_eq!(plan(&i, PersistFormat::IfBlank), Ok(Step::LuksFormat));
    }

    #[test]
    fn walks_the_chain_in_order() {
        let mut i = base();
        i.header = Header::OaNew { uuid: "u".into() };
        i.mapping = Mapping::Closed;
        i.fs = Fs::Unseen;
        assert_eq!(plan(&i, PersistFormat::Never), Ok(Step::Unlock));
        i.mapping = Mapping::Mapped;
        i.fs = Fs::Foreign(vec![Signature::UnknownData]);
        assert_eq!(plan(&i, PersistFormat::Never), Ok(Step::Mkfs));
        i.fs = Fs::Btrfs;
        assert_eq!(plan(&i, PersistFormat::Never), Ok(Step::MarkDone));
        i.header = Header::OaDone { uuid: "u".into() };
        i.top = Mount::Unmounted;
        assert_eq!(plan(&i, PersistFormat::Never), Ok(Step::MountTop));
        i.top = Mount::Mounted;
        i.subvols = Subvols::Missing;
        assert_eq!(plan(&i, PersistFormat::Never), Ok(Step::CreateSubvols));
        i.subvols = Subvols::Present;
        i.snapshot = Snapshot::NotTaken;
        assert_eq!(plan(&i, PersistFormat::Never), Ok(Step::BootSnapshot));
        i.snapshot = Snapshot::Taken;
        i.prune = Prune::Pending(vec!["boot-000001".into()]);
        assert_eq!(plan(&i, PersistFormat::Never), Ok(Step::Prune));
        i.prune = Prune::Pruned;
        i.state = Mount::Unmounted;
        assert_eq!(plan(&i, PersistFormat::Never), Ok(Step::MountState));
        i.state = Mount::Mounted;
        assert_eq!(plan(&i, PersistFormat::Never), Ok(Step::Done));
    }

    /// Issue 15: a first format cut between the header and its key slot is finished (format
    /// again), with consent; a finished volume is never given to mkfs, whatever its probe says.
    #[test]
    fn an_unfinished_format_is_finished_and_a_done_volume_never_gets_mkfs() {
        let mut i = base();
        (i.header, i.mapping, i.fs) = (Header::OaUnfinished { uuid: "u".into() }, Mapping::Closed, Fs::Unseen);
        assert_eq!(plan(&i, PersistFormat::IfBlank), Ok(Step::LuksFormat));
        assert_eq!(plan(&i, PersistFormat::Never), Err(Refusal::UnfinishedNoConsent));
        i.header = Header::OaDone { uuid: "u".into() };
        i.mapping = Mapping::Mapped;
        for fs in [Fs::Empty, Fs::Unseen, Fs::Foreign(vec![Signature::UnknownData]), Fs::Foreign(vec![Signature::Ext])]
        {
            i.fs = fs;
            for format in [PersistFormat::IfBlank, PersistFormat::Never] {
                assert!(matches!(plan(&i, format), Err(Refusal::InnerForeign(_))), "{:?}", i.fs);
            }
        }
    }

    #[test]
    fn a_rollback_cut_short_is_finished_before_anything_else_in_the_top_level() {
        let mut i = base();
        (i.swap, i.subvols, i.snapshot) = (Swap::Leftover, Subvols::Missing, Snapshot::NotTaken);
        assert_eq!(plan(&i, PersistFormat::IfBlank), Ok(Step::FinishSwap), "never CreateSubvols: an empty state");
        i.top = Mount::Unmounted;
        assert_eq!(plan(&i, PersistFormat::IfBlank), Ok(Step::MountTop));
    }

    #[test]
    fn finished_volume_without_btrfs_is_not_reformatted() {
        let mut i = base();
        i.fs = Fs::Foreign(vec![Signature::UnknownData]);
        assert!(matches!(plan(&i, PersistFormat::IfBlank), Err(Refusal::InnerForeign(_))));
        i.fs = Fs::Empty;
        assert!(matches!(plan(&i, PersistFormat::IfBlank), Err(Refusal::InnerForeign(_))));
    }

    #[test]
    fn mounts_are_compared_by_device_and_inode() {
        let id = |dev, ino| Some(FileId { dev, ino });
        // the top level: a mount root that is subvolume 5
        assert_eq!(top_mount(id(40, 256), id(20, 7), Some(5)), Mount::Mounted);
        assert_eq!(top_mount(id(20, 9), id(20, 7), Some(5)), Mount::Unmounted, "a plain folder");
        assert_eq!(top_mount(id(40, 256), id(20, 7), Some(257)), Mount::Unmounted, "another subvolume");
        assert_eq!(top_mount(None, id(20, 7), Some(5)), Mount::Unmounted, "missing");
        // the state: the mount point is the state subvolume itself, whatever its path says
        assert_eq!(state_mount(id(41, 256), id(41, 256)), Mount::Mounted);
        assert_eq!(state_mount(id(20, 12), id(41, 256)), Mount::Unmounted, "an empty folder");
        assert_eq!(state_mount(id(42, 256), id(41, 256)), Mount::Unmounted, "another subvolume there");
        assert_eq!(state_mount(None, None), Mount::Unmounted);
    }

    #[test]
    fn headers_and_filesystems_are_named() {
        let luks = |label: &str, subsystem: &str| Signature::Luks {
            version: 2,
            label: label.into(),
            subsystem: subsystem.into(),
            uuid: "u".into(),
        };
        let one = || Ok(1);
        let no_slot_asked = || -> Result<usize> { panic!("key slots are asked of unfinished oa headers only") };
        assert_eq!(header_of(vec![], no_slot_asked).unwrap(), Header::Absent);
        assert_eq!(
            header_of(vec![luks(probe::LABEL_DONE, probe::OA_SUBSYSTEM)], no_slot_asked).unwrap(),
            Header::OaDone { uuid: "u".into() }
        );
        assert_eq!(
            header_of(vec![luks(probe::LABEL_NEW, probe::OA_SUBSYSTEM)], one).unwrap(),
            Header::OaNew { uuid: "u".into() }
        );
        assert_eq!(
            header_of(vec![luks(probe::LABEL_NEW, probe::OA_SUBSYSTEM)], || Ok(0)).unwrap(),
            Header::OaUnfinished { uuid: "u".into() }
        );
        assert!(matches!(
            header_of(vec![luks(probe::LABEL_DONE, "other")], no_slot_asked).unwrap(),
            Header::Foreign(_)
        ));
        assert_eq!(fs_of(vec![]), Fs::Empty);
        assert_eq!(fs_of(vec![Signature::Btrfs]), Fs::Btrfs);
        assert_eq!(fs_of(vec![Signature::Ext]), Fs::Foreign(vec![Signature::Ext]));
    }
}

/// The model test: an in-memory device with the same [`Objects`] interface, and [`converge`]
/// run from every reachable state of it.
#[cfg(test)]
mod model {
    use std::collections::{BTreeSet, HashSet, VecDeque};

    use super::*;

    const KEEP: usize = 2;
    /// Boot snapshots are counted up to this many, meaning "this many or more": every boot cut
    /// inside its snapshot step leaves one more, so the real count has no bound.
    const MAX_BOOTS: usize = KEEP + 3;

    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
    enum H {
        Blank,
        Ext,
        /// Label `oa-persist-new`, no key slot: a LuksFormat cut before its key slot.
        Unfinished,
        New,
        Done,
    }

    /// What a rollback cut short leaves in the top level.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
    enum Left {
        None,
        /// `state` and `state.new` (cut before the first rename).
        New,
        /// `state.old` and `state.new`, no `state` (cut between the renames).
        OldNew,
        /// `state` (the new one) and `state.old` (cut before the old one was deleted).
        Old,
    }

    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
    enum Inner {
        /// Decrypted noise of a fresh volume (probes as unknown data).
        Noise,
        Ext,
        Btrfs {
            subvols: bool,
            boots: usize,
            this_boot: bool,
            left: Left,
        },
    }

    /// What is on the disk and what is open or mounted in this boot.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
    struct Dev {
        header: H,
        inner: Inner,
        mapped: bool,
        top: bool,
        state: bool,
    }

    impl Dev {
        fn fresh(header: H, inner: Inner) -> Dev {
            Dev { header, inner, mapped: false, top: false, state: false }
        }

        /// A reboot (or power cut): nothing is open or mounted, a new boot id.
        fn reboot(mut self) -> Dev {
            (self.mapped, self.top, self.state) = (false, false, false);
            if let Inner::Btrfs { this_boot, .. } = &mut self.inner {
                *this_boot = false;
            }
            self
        }
    }

    fn fail(step: Step, d: &Dev) -> Error {
        Error::NoProgress { step, state: Box::new(observe(d)) }
    }

    /// What `info` reads from the model: the same rules as the real one.
    fn observe(d: &Dev) -> Info {
        let header = match d.header {
            H::Blank => Header::Absent,
            H::Ext => Header::Foreign(vec![Signature::Ext]),
            H::Unfinished => Header::OaUnfinished { uuid: "u".into() },
            H::New => Header::OaNew { uuid: "u".into() },
            H::Done => Header::OaDone { uuid: "u".into() },
        };
        let (mapping, fs) = match (d.mapped, d.inner) {
            (false, _) => (Mapping::Closed, Fs::Unseen),
            (true, Inner::Noise) => (Mapping::Mapped, Fs::Foreign(vec![Signature::UnknownData])),
            (true, Inner::Ext) => (Mapping::Mapped, Fs::Foreign(vec![Signature::Ext])),
            (true, Inner::Btrfs { .. }) => (Mapping::Mapped, Fs::Btrfs),
        };
        let mut i = Info {
            device: "/dev/model".into(),
            header,
            mapping,
            fs,
            top: Mount::Unmounted,
            swap: Swap::Clean,
            subvols: Subvols::Missing,
            snapshot: Snapshot::NotTaken,
            prune: Prune::Pruned,
            state: Mount::Unmounted,
        };
        if let (true, true, Inner::Btrfs { subvols, boots, this_boot, left }) = (d.mapped, d.top, d.inner) {
            i.top = Mount::Mounted;
            if left != Left::None {
                i.swap = Swap::Leftover;
            }
            // Between the renames there is no `state`: the subvolumes read as missing.
            if subvols && left != Left::OldNew {
                i.subvols = Subvols::Present;
                if this_boot {
                    i.snapshot = Snapshot::Taken;
                }
                if boots > KEEP {
                    i.prune = Prune::Pending((0..boots - KEEP).map(|n| layout::boot_name(n as u64)).collect());
                }
                if d.state {
                    i.state = Mount::Mounted;
                }
            }
        }
        i
    }

    /// The model device; `cut` makes the next step stop half-way (power cut inside it), at the
    /// point it names for a step with several (the boot snapshot with its rollback).
    struct Model {
        dev: Dev,
        cut: Option<u8>,
    }

    /// The cut points of a step: a boot snapshot (and rollback) can stop after the snapshot, after
    /// `state.new` is made, between the renames, or before `state.old` is deleted.
    const CUTS: u8 = 4;

    impl Objects for Model {
        fn info(&mut self) -> Result<Info> {
            Ok(observe(&self.dev))
        }

        fn apply(&mut self, step: Step) -> Result<()> {
            let d = &mut self.dev;
            let point = self.cut.take();
            let cut = point.is_some();
            match (step, d.inner) {
                (Step::LuksFormat, _) if matches!(d.header, H::Blank | H::Unfinished) => {
                    // cut: the header was written, its key slot not yet
                    (d.header, d.inner) = (if cut { H::Unfinished } else { H::New }, Inner::Noise)
                }
                (Step::Unlock, _) if matches!(d.header, H::New | H::Done) => d.mapped = true,
                (Step::Mkfs, _) if d.mapped && d.header == H::New => {
                    d.inner = Inner::Btrfs { subvols: false, boots: 0, this_boot: false, left: Left::None };
                    if !cut {
                        d.header = H::Done;
                    }
                }
                (Step::MarkDone, Inner::Btrfs { .. }) if d.header == H::New => d.header = H::Done,
                (Step::MountTop, Inner::Btrfs { .. }) if d.mapped => d.top = true,
                (Step::FinishSwap, Inner::Btrfs { subvols, boots, this_boot, left }) if d.top && left != Left::None => {
                    // cut: the old state was renamed back, `state.new` not deleted yet
                    let left = if cut && left == Left::OldNew { Left::New } else { Left::None };
                    d.inner = Inner::Btrfs { subvols, boots, this_boot, left }
                }
                (Step::CreateSubvols, Inner::Btrfs { boots, this_boot, left, .. }) if d.top => {
                    d.inner = Inner::Btrfs { subvols: !cut, boots, this_boot, left }
                }
                (Step::BootSnapshot, Inner::Btrfs { subvols: true, boots, left: Left::None, .. }) if d.top => {
                    // cut: the snapshot was taken but boot.json not written yet, and the rollback
                    // (if any) stopped at one of its points
                    let left = match point {
                        Some(1) => Left::New,
                        Some(2) => Left::OldNew,
                        Some(3) => Left::Old,
                        _ => Left::None,
                    };
                    d.inner = Inner::Btrfs { subvols: true, boots: (boots + 1).min(MAX_BOOTS), this_boot: !cut, left }
                }
                (Step::Prune, Inner::Btrfs { subvols: true, boots, this_boot, left }) if d.top => {
                    let left_boots = if cut { boots - 1 } else { boots.min(KEEP) };
                    d.inner = Inner::Btrfs { subvols: true, boots: left_boots, this_boot, left };
                }
                (Step::MountState, Inner::Btrfs { subvols: true, .. }) if d.top => d.state = true,
                _ => return Err(fail(step, d)),
            }
            Ok(())
        }
    }

    /// Starting points: what a disk can hold when a boot begins.
    fn starts() -> Vec<Dev> {
        let mut v = vec![
            Dev::fresh(H::Blank, Inner::Noise),
            Dev::fresh(H::Ext, Inner::Noise),
            Dev::fresh(H::Unfinished, Inner::Noise),
            Dev::fresh(H::New, Inner::Noise),
            Dev::fresh(H::New, Inner::Ext),
            Dev::fresh(H::Done, Inner::Noise),
            Dev::fresh(H::Done, Inner::Ext),
        ];
        // Boot snapshots up to two beyond `keep` (the profile lowered snapshots_keep).
        for subvols in [false, true] {
            for boots in 0..=KEEP + 2 {
                v.push(Dev::fresh(H::Done, Inner::Btrfs { subvols, boots, this_boot: false, left: Left::None }));
            }
        }
        v
    }

    /// Every state reachable from the starting points by a step of the plan, a reboot, or a
    /// step cut half-way by a power cut (then the next boot goes on).
    fn reachable(format: PersistFormat) -> BTreeSet<Dev> {
        let mut seen: HashSet<Dev> = HashSet::new();
        let mut todo: VecDeque<Dev> = starts().into_iter().collect();
        while let Some(d) = todo.pop_front() {
            if !seen.insert(d) {
                continue;
            }
            todo.push_back(d.reboot());
            if let Ok(step) = plan(&observe(&d), format) {
                if step != Step::Done {
                    let mut m = Model { dev: d, cut: None };
                    m.apply(step).expect("the plan's step applies in the model");
                    todo.push_back(m.dev);
                    // A power cut inside the step: what it left, found by the next boot.
                    for point in 0..CUTS {
                        let mut m = Model { dev: d, cut: Some(point) };
                        m.apply(step).expect("the plan's step applies in the model");
                        todo.push_back(m.dev.reboot());
                    }
                }
            }
        }
        seen.into_iter().collect()
    }

    /// The longest run: LuksFormat, Unlock, Mkfs, MountTop, CreateSubvols, BootSnapshot,
    /// MountState (a volume formatted in this run has nothing to prune; Mkfs and MarkDone
    /// exclude each other).
    const N: usize = 7;

    #[test]
    fn from_every_reachable_state_setup_reaches_done_and_a_second_setup_does_nothing() {
        for format in [PersistFormat::IfBlank, PersistFormat::Never] {
            let states = reachable(format);
            let (mut done, mut refused, mut longest) = (0, 0, 0);
            for d in &states {
                // A finished volume is never given to mkfs, whatever it holds (issue 15).
                if d.header == H::Done {
                    assert_ne!(plan(&observe(d), format), Ok(Step::Mkfs), "{d:?}");
                }
                let mut m = Model { dev: *d, cut: None };
                match converge(&mut m, format) {
                    Ok(steps) => {
                        assert!(steps.len() <= N, "{d:?}: {steps:?}");
                        let kinds: HashSet<Step> = steps.iter().copied().collect();
                        assert_eq!(kinds.len(), steps.len(), "{d:?}: a step taken twice: {steps:?}");
                        assert_eq!(plan(&observe(&m.dev), format), Ok(Step::Done));
                        let again = converge(&mut m, format).expect("a second setup");
                        assert!(again.is_empty(), "{d:?}: a second setup took {again:?}");
                        longest = longest.max(steps.len());
                        done += 1;
                    }
                    Err(Error::Refused { .. }) => {
                        // A refusal writes nothing: the disk is as it was (an unlock may be open).
                        assert_eq!((m.dev.header, m.dev.inner), (d.header, d.inner), "{d:?}");
                        refused += 1;
                    }
                    Err(e) => panic!("{d:?}: {e}"),
                }
            }
            // Without consent to format, the longest run is the one without LuksFormat.
            let bound = if format == PersistFormat::IfBlank { N } else { N - 1 };
            assert_eq!(longest, bound, "{format:?}");
            assert_eq!(done + refused, states.len());
            eprintln!("{format:?}: {} reachable states, {done} reach Done, {refused} refused", states.len());
            assert!(done > 0 && refused > 0);
        }
    }

    #[test]
    fn the_reachable_states_cover_the_named_cases() {
        let s = reachable(PersistFormat::IfBlank);
        let has = |f: &dyn Fn(&Dev) -> bool| s.iter().any(f);
        assert!(has(&|d| d.header == H::Blank), "blank device");
        assert!(has(&|d| d.header == H::New && !d.mapped), "half-formatted header");
        assert!(has(&|d| d.header == H::Unfinished), "a header without a key slot");
        for left in [Left::New, Left::OldNew, Left::Old] {
            assert!(has(&|d| matches!(d.inner, Inner::Btrfs { left: l, .. } if l == left) && !d.top), "{left:?}");
        }
        assert!(has(&|d| d.header == H::New && matches!(d.inner, Inner::Btrfs { .. })), "mkfs cut before the label");
        assert!(has(&|d| d.header == H::Done && d.mapped && !d.top), "btrfs, top not mounted");
        assert!(has(&|d| matches!(d.inner, Inner::Btrfs { subvols: false, .. }) && d.top), "no state subvolume");
        assert!(has(&|d| matches!(d.inner, Inner::Btrfs { boots, .. } if boots > KEEP) && d.top), "to prune");
        assert!(has(&|d| d.state), "done, mounted");
        assert_eq!(s.len(), 98, "the reachable-state count changed: {}", s.len());
    }

    /// The loop's own laws, with objects that misbehave.
    #[test]
    fn a_step_that_changes_nothing_or_a_plan_that_never_ends_fails_loudly() {
        struct Stuck;
        impl Objects for Stuck {
            fn info(&mut self) -> Result<Info> {
                let mut i = observe(&Dev::fresh(
                    H::Done,
                    Inner::Btrfs { subvols: true, boots: 0, this_boot: true, left: Left::None },
                ));
                (i.mapping, i.fs) = (Mapping::Mapped, Fs::Btrfs);
                Ok(i)
            }
            fn apply(&mut self, _: Step) -> Result<()> {
                Ok(())
            }
        }
        match converge(&mut Stuck, PersistFormat::Never) {
            Err(Error::NoProgress { step: Step::MountTop, state }) => assert_eq!(state.top, Mount::Unmounted),
            other => panic!("{other:?}"),
        }

        /// Flips the top mount forever: always a change, never Done.
        struct Flip(bool);
        impl Objects for Flip {
            fn info(&mut self) -> Result<Info> {
                let mut i = Stuck.info()?;
                if self.0 {
                    (i.top, i.subvols) = (Mount::Mounted, Subvols::Missing);
                }
                Ok(i)
            }
            fn apply(&mut self, _: Step) -> Result<()> {
                self.0 = !self.0;
                Ok(())
            }
        }
        let e = converge(&mut Flip(false), PersistFormat::Never).unwrap_err();
        assert!(matches!(e, Error::NotConverged { steps: MAX_STEPS, .. }), "{e:?}");
        assert!(e.to_string().contains("top level"), "names the state: {e}");
    }
}
