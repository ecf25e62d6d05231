//! The layout inside the btrfs and the pure decisions about it (unit-tested): snapshot names,
//! which snapshots to prune, which one a rollback means, boot counting.
//!
//! ```text
//! <top>/state            the writable state subvolume: upper/ and work/ of the overlay
//! <top>/snapshots/NAME   read-only snapshots of state: boot-000042 (one per boot), or a name
//! <top>/meta/boot.json   boot counter, boots pending since the last ready, last good snapshot
//! <top>/meta/rollback    a rollback requested from the running system, applied at next boot
//! ```

use oa_contract::cmdline;
use serde::{Deserialize, Serialize};

pub const STATE: &str = "state";
pub const SNAPSHOTS: &str = "snapshots";
pub const META: &str = "meta";
pub const BOOT_JSON: &str = "meta/boot.json";
pub const ROLLBACK_NEXT: &str = "meta/rollback";
pub const BOOT_PREFIX: &str = "boot-";

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
}

pub fn boot_name(seq: u64) -> String {
    format!("{BOOT_PREFIX}{seq:06}")
}

/// The sequence number of a boot snapshot name.
pub fn boot_seq(name: &str) -> Option<u64> {
    name.strip_prefix(BOOT_PREFIX).and_then(|n| n.parse().ok())
}

/// A name the user may give a snapshot: `[A-Za-z0-9][A-Za-z0-9._-]*`, not `boot-*`, not `previous`.
pub fn valid_user_name(name: &str) -> bool {
    let mut b = name.bytes();
    matches!(b.next(), Some(c) if c.is_ascii_alphanumeric())
        && name.len() <= 64
        && b.all(|c| c.is_ascii_alphanumeric() || matches!(c, b'.' | b'_' | b'-'))
        && !name.starts_with(BOOT_PREFIX)
        && name != "previous"
}

/// Boot snapshots to delete so that `keep` remain (oldest first out); `protect` (last good,
/// the rollback target) are never deleted; named snapshots are not touched.
pub fn prune(existing: &[String], keep: usize, protect: &[&str]) -> Vec<String> {
    let mut boots: Vec<(u64, &String)> = existing.iter().filter_map(|n| boot_seq(n).map(|s| (s, n))).collect();
    boots.sort();
    let excess = boots.len().saturating_sub(keep);
    boots.iter().take(excess).map(|(_, n)| (*n).clone()).filter(|n| !protect.contains(&n.as_str())).collect()
}

/// Why and to what the state is rolled back at this boot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rollback {
    pub to: String,
    pub why: String,
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
) -> Result<Option<Rollback>, String> {
    let resolve = |want: &str| -> Result<String, String> {
        if want == "previous" {
            existing
                .iter()
                .filter_map(|n| boot_seq(n).map(|s| (s, n)))
                .max()
                .map(|(_, n)| n.clone())
                .ok_or_else(|| format!("{}=previous: there is no boot snapshot yet", cmdline::ROLLBACK))
        } else if existing.iter().any(|n| n == want) {
            Ok(want.to_string())
        } else {
            Err(format!("snapshot {want:?} does not exist (there are: {})", existing.join(", ")))
        }
    };
    if let Some(c) = cmdline {
        return Ok(Some(Rollback { to: resolve(c)?, why: cmdline::word(cmdline::ROLLBACK, c) }));
    }
    if let Some(r) = requested {
        return Ok(Some(Rollback { to: resolve(r)?, why: "requested with `oa-init snapshot rollback`".into() }));
    }
    if attempts > 0 && meta.pending >= attempts {
        return match &meta.last_good {
            Some(g) if existing.contains(g) => Ok(Some(Rollback {
                to: g.clone(),
                why: format!("boot counting: {} boot(s) in a row did not reach ready", meta.pending),
            })),
            _ => Err(format!(
                "boot counting: {} boot(s) in a row did not reach ready and no snapshot of a good boot is left",
                meta.pending
            )),
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
        assert!(decide_rollback(Some("nope"), None, &ex, &m, 0).is_err());
        assert_eq!(decide_rollback(None, None, &ex, &m, 3).unwrap(), None);
    }

    #[test]
    fn boot_counting_rolls_back_to_last_good() {
        let ex = names(&["boot-000001", "boot-000002"]);
        let m = BootMeta { seq: 2, pending: 2, last_good: Some("boot-000001".into()), current: None };
        let r = decide_rollback(None, None, &ex, &m, 2).unwrap().unwrap();
        assert_eq!(r.to, "boot-000001");
        assert!(r.why.contains("2 boot(s)"));
        assert_eq!(decide_rollback(None, None, &ex, &m, 3).unwrap(), None);
        assert_eq!(decide_rollback(None, None, &ex, &m, 0).unwrap(), None);
    }

    #[test]
    fn user_names() {
        assert!(valid_user_name("before-upgrade"));
        assert!(!valid_user_name("boot-000001"));
        assert!(!valid_user_name("../x"));
        assert!(!valid_user_name("previous"));
    }
}
