//! The layout inside the btrfs and the pure decisions about it (unit-tested): snapshot names,
//! which snapshots to prune, which one a rollback means, boot counting.
//!
//! ```text
//! <top>/state            the writable state subvolume: upper/ and work/ of the overlay
//! <top>/snapshots/NAME   read-only snapshots of state: boot-000042 (one per boot), or a name
//! <top>/meta/boot.json   boot counter, boots pending since the last ready, last good snapshot
//! <top>/meta/rollback    a rollback requested from the running system, applied at next boot
//! ```

use std::fmt;

use oa_contract::cmdline;
use serde::{Deserialize, Serialize};

pub const STATE: &str = "state";
pub const SNAPSHOTS: &str = "snapshots";
pub const META: &str = "meta";
pub const BOOT_JSON: &str = "meta/boot.json";
pub const ROLLBACK_NEXT: &str = "meta/rollback";
pub const BOOT_PREFIX: &str = "boot-";
/// The new state of a rollback while it is made (a writable snapshot of the target), beside
/// `state`; renamed to `state` once the old one is out of the way.
pub const STATE_NEW: &str = "state.new";
/// The state a rollback replaces, between the two renames; deleted once the new one is `state`.
pub const STATE_OLD: &str = "state.old";

/// `meta/boot.json`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BootMeta {
    /// Number of the last boot snapshot taken.
    pub seq: u64,
    /// Boots started since one last reached the ready line.
    pub pending: u32,
    /// The snapshot the last boot that reached ready started from.
    pub last_good: Option<String>,
    /// The snapshot this boot's state started from.
    pub current: Option<String>,
    /// The boot (`/proc/sys/kernel/random/boot_id`) whose snapshot was taken last: that boot's
    /// snapshot step is done.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub boot_id: Option<String>,
}

impl BootMeta {
    /// The snapshots pruning never deletes: the last good one and the one booted.
    pub fn protected(&self) -> Vec<&str> {
        [self.last_good.as_deref(), self.current.as_deref()].into_iter().flatten().collect()
    }
}

pub fn boot_name(seq: u64) -> String {
    format!("{BOOT_PREFIX}{seq:06}")
}

/// The sequence number of a boot snapshot name.
pub fn boot_seq(name: &str) -> Option<u64> {
    name.strip_prefix(BOOT_PREFIX).and_then(|n| n.parse().ok())
}

/// A name the user may give a snapshot: a [`valid_snapshot_name`], not `boot-*`, not `previous`.
pub fn valid_user_name(name: &str) -> bool {
    valid_snapshot_name(name) && !name.starts_with(BOOT_PREFIX) && name != "previous"
}

/// A name that may designate a snapshot in a command: one path component (no `/`, not `.` or
/// `..`) of `[A-Za-z0-9][A-Za-z0-9._-]*`, at most 64 bytes: a user name or a boot snapshot.
pub fn valid_snapshot_name(name: &str) -> bool {
    let mut b = name.bytes();
    matches!(b.next(), Some(c) if c.is_ascii_alphanumeric())
        && name.len() <= 64
        && b.all(|c| c.is_ascii_alphanumeric() || matches!(c, b'.' | b'_' | b'-'))
}

/// Boot snapshots to delete so that `keep` remain (oldest first out); `protect` (last good,
/// the rollback target) are never deleted; named snapshots are not touched.
pub fn prune(existing: &[String], keep: usize, protect: &[&str]) -> Vec<String> {
    let mut boots: Vec<(u64, &String)> = existing.iter().filter_map(|n| boot_seq(n).map(|s| (s, n))).collect();
    boots.sort();
    let excess = boots.len().saturating_sub(keep);
    boots.iter().take(excess).map(|(_, n)| (*n).clone()).filter(|n| !protect.contains(&n.as_str())).collect()
}

/// Why the state is rolled back at this boot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RollbackReason {
    /// `oa.rollback=` on the kernel command line (its value).
    Cmdline(String),
    /// `oa-init snapshot rollback` in the running system (`meta/rollback`).
    Requested,
    /// `pending` boots in a row did not reach ready.
    BootCounting { pending: u32 },
}

impl fmt::Display for RollbackReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RollbackReason::Cmdline(c) => write!(f, "{}={c}", cmdline::ROLLBACK),
            RollbackReason::Requested => f.write_str("requested with `oa-init snapshot rollback`"),
            RollbackReason::BootCounting { pending } => {
                write!(f, "boot counting: {pending} boot(s) in a row did not reach ready")
            }
        }
    }
}

/// Why and to what the state is rolled back at this boot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rollback {
    pub to: String,
    pub why: RollbackReason,
}

/// A rollback that cannot be done.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RollbackError {
    #[error("{}=previous: there is no boot snapshot yet", cmdline::ROLLBACK)]
    NoBootYet,
    #[error("no earlier boot snapshot")]
    NothingEarlier,
    #[error("snapshot {name:?} does not exist (there are: {})", existing.join(", "))]
    Missing { name: String, existing: Vec<String> },
    #[error("{0:?} is not a snapshot name: one path component of letters, digits, . _ -")]
    InvalidName(String),
    #[error("boot counting: {pending} boot(s) in a row did not reach ready and no snapshot of a good boot is left")]
    NoGoodLeft { pending: u32 },
}

/// Decide the rollback of this boot, before this boot's snapshot is taken. In order: the
/// cmdline (`previous` = the newest boot snapshot, the state as the previous boot started), a
/// rollback requested from the running system, then boot counting.
pub fn decide_rollback(
    cmdline: Option<&str>,
    requested: Option<&str>,
    existing: &[String],
    meta: &BootMeta,
    attempts: u32,
) -> Result<Option<Rollback>, RollbackError> {
    let resolve = |want: &str| -> Result<String, RollbackError> {
        if want != "previous" && !valid_snapshot_name(want) {
            return Err(RollbackError::InvalidName(want.to_string()));
        }
        if want == "previous" {
            existing
                .iter()
                .filter_map(|n| boot_seq(n).map(|s| (s, n)))
                .max()
                .map(|(_, n)| n.clone())
                .ok_or(RollbackError::NoBootYet)
        } else if existing.iter().any(|n| n == want) {
            Ok(want.to_string())
        } else {
            Err(RollbackError::Missing { name: want.to_string(), existing: existing.to_vec() })
        }
    };
    if let Some(c) = cmdline {
        return Ok(Some(Rollback { to: resolve(c)?, why: RollbackReason::Cmdline(c.to_string()) }));
    }
    if let Some(r) = requested {
        return Ok(Some(Rollback { to: resolve(r)?, why: RollbackReason::Requested }));
    }
    if attempts > 0 && meta.pending >= attempts {
        return match &meta.last_good {
            Some(g) if existing.contains(g) => {
                Ok(Some(Rollback { to: g.clone(), why: RollbackReason::BootCounting { pending: meta.pending } }))
            }
            _ => Err(RollbackError::NoGoodLeft { pending: meta.pending }),
        };
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn prune_keeps_newest_boots_and_named_ones() {
        let ex = names(&["boot-000003", "keep-me", "boot-000001", "boot-000004", "boot-000002"]);
        assert_eq!(prune(&ex, 2, &[]), names(&["boot-000001", "boot-000002"]));
        assert_eq!(prune(&ex, 2, &["boot-000001"]), names(&["boot-000002"]));
        assert!(prune(&ex, 10, &[]).is_empty());
        // idempotent: pruning what is left removes nothing more
        let left: Vec<String> = ex.iter().filter(|n| !prune(&ex, 2, &[]).contains(n)).cloned().collect();
        assert!(prune(&left, 2, &[]).is_empty());
    }

    #[test]
    fn rollback_order_and_previous() {
        let ex = names(&["boot-000001", "boot-000002", "mine"]);
        let m = BootMeta::default();
        assert_eq!(decide_rollback(Some("previous"), None, &ex, &m, 0).unwrap().unwrap().to, "boot-000002");
        assert_eq!(decide_rollback(Some("mine"), Some("boot-000001"), &ex, &m, 0).unwrap().unwrap().to, "mine");
        assert_eq!(decide_rollback(None, Some("boot-000001"), &ex, &m, 0).unwrap().unwrap().to, "boot-000001");
        assert!(matches!(
            decide_rollback(Some("nope"), None, &ex, &m, 0),
            Err(RollbackError::Missing { name, .. }) if name == "nope"
        ));
        let r = decide_rollback(Some("mine"), None, &ex, &m, 0).unwrap().unwrap();
        assert_eq!(r.why.to_string(), format!("{}=mine", cmdline::ROLLBACK));
        assert_eq!(
            decide_rollback(Some("previous"), None, &[], &m, 0).unwrap_err().to_string(),
            format!("{}=previous: there is no boot snapshot yet", cmdline::ROLLBACK)
        );
        assert_eq!(decide_rollback(None, None, &ex, &m, 3).unwrap(), None);
    }

    #[test]
    fn boot_counting_rolls_back_to_last_good() {
        let ex = names(&["boot-000001", "boot-000002"]);
        let m = BootMeta { seq: 2, pending: 2, last_good: Some("boot-000001".into()), ..BootMeta::default() };
        let r = decide_rollback(None, None, &ex, &m, 2).unwrap().unwrap();
        assert_eq!(r.to, "boot-000001");
        assert_eq!(r.why, RollbackReason::BootCounting { pending: 2 });
        assert_eq!(r.why.to_string(), "boot counting: 2 boot(s) in a row did not reach ready");
        assert_eq!(decide_rollback(None, None, &ex, &m, 3).unwrap(), None);
        assert_eq!(decide_rollback(None, None, &ex, &m, 0).unwrap(), None);
    }

    /// Pruning is idempotent: what is left after pruning has nothing more to prune, whatever is
    /// protected (every subset of up to six boot snapshots, every keep, every protected pair).
    #[test]
    fn prune_twice_prunes_nothing_more() {
        let all: Vec<String> = (1..=6).map(boot_name).collect();
        for mask in 0u32..(1 << all.len()) {
            let ex: Vec<String> =
                all.iter().enumerate().filter(|(i, _)| mask & (1 << i) != 0).map(|(_, n)| n.clone()).collect();
            for keep in 1..=4 {
                for a in 0..=all.len() {
                    for b in a..=all.len() {
                        let protect: Vec<&str> =
                            [all.get(a), all.get(b)].into_iter().flatten().map(String::as_str).collect();
                        let gone = prune(&ex, keep, &protect);
                        assert!(gone.iter().all(|g| !protect.contains(&g.as_str())));
                        let left: Vec<String> = ex.iter().filter(|n| !gone.contains(n)).cloned().collect();
                        assert!(prune(&left, keep, &protect).is_empty(), "{ex:?} keep {keep} protect {protect:?}");
                    }
                }
            }
        }
    }

    #[test]
    fn boot_meta_without_a_boot_id_still_reads() {
        let m: BootMeta =
            serde_json::from_str(r#"{"seq":3,"pending":1,"last_good":null,"current":"boot-000003"}"#).unwrap();
        assert_eq!(m.boot_id, None);
        let with = BootMeta { boot_id: Some("b".into()), ..m };
        let back: BootMeta = serde_json::from_slice(&serde_json::to_vec(&with).unwrap()).unwrap();
        assert_eq!(back, with);
    }

    #[test]
    fn user_names() {
        assert!(valid_user_name("before-upgrade"));
        assert!(!valid_user_name("boot-000001"));
        assert!(!valid_user_name("../x"));
        assert!(!valid_user_name("previous"));
    }

    /// Every command's name is one path component of the naming rules (issue 15).
    #[test]
    fn snapshot_names_are_one_path_component() {
        for bad in ["../state", "..", ".", "", "a/b", "/state", "state/..", "x\0", " a", "-a", &"a".repeat(65)] {
            assert!(!valid_snapshot_name(bad), "{bad:?}");
        }
        for good in ["boot-000001", "before-upgrade", "v1.2_3", "state"] {
            assert!(valid_snapshot_name(good), "{good:?}");
        }
        // A rollback named on the cmdline or in meta/rollback is checked before it is looked up.
        let ex = names(&["boot-000001"]);
        let m = BootMeta::default();
        for bad in ["../state", "../snapshots/boot-000001"] {
            assert_eq!(decide_rollback(Some(bad), None, &ex, &m, 0), Err(RollbackError::InvalidName(bad.into())));
            assert_eq!(decide_rollback(None, Some(bad), &ex, &m, 0), Err(RollbackError::InvalidName(bad.into())));
        }
    }
}
