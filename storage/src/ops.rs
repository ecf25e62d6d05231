//! The commands: `setup` (boot), `mark-good`, `status`, `snapshot ...`.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use oa_contract::config::{KeySource, PersistConfig, PersistRuntime};

use crate::error::{json_err, Error, IoContext, Result};
use crate::key::{self, Key};
use crate::layout::{self, BootMeta, RollbackError, RollbackReason};
use crate::state::{self, Expect, Info, Mapping, Mount, Step};
use crate::{btrfs, device, luks, say, warn};

/// Where things go; the defaults are the boot's, tests point them elsewhere.
#[derive(Debug, Clone)]
pub struct Places {
    pub top: PathBuf,
    pub state: PathBuf,
    pub runtime: PathBuf,
    pub mapping: String,
}

/// Overrides from the kernel command line.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    pub device: Option<String>,
    pub key: Option<String>,
    pub rollback: Option<String>,
}

/// The kernel's id of this boot: the key of the boot snapshot step.
pub const BOOT_ID: &str = "/proc/sys/kernel/random/boot_id";

/// This boot's id; without one (no /proc) a new id per run, so each run takes its snapshot,
/// as before boot ids.
pub fn boot_id() -> String {
    match std::fs::read_to_string(BOOT_ID) {
        Ok(s) if !s.trim().is_empty() => s.trim().to_string(),
        _ => {
            let t = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
            format!("unknown-{}-{}", t.as_nanos(), std::process::id())
        }
    }
}

fn ms(t: Instant) -> u128 {
    t.elapsed().as_millis()
}

/// The real objects of one boot: the device, its mapping and mount points, and how to get the
/// key. `info` and `apply` of [`state::Objects`]; [`state::converge`] drives them.
struct Boot<'a> {
    cfg: &'a PersistConfig,
    o: &'a Overrides,
    places: &'a Places,
    dev: PathBuf,
    mapping: PathBuf,
    source: KeySource,
    boot_id: &'a str,
    /// The key of a volume formatted in this run, to unlock it without asking again (zeroised
    /// when the unlock has used it).
    key: Option<Key>,
}

impl state::Objects for Boot<'_> {
    fn info(&mut self) -> Result<Info> {
        let expect = Expect { boot_id: self.boot_id, keep: Expect::keep(self.cfg) };
        state::info(&self.dev, &self.mapping, &self.places.top, &self.places.state, expect)
    }

    fn apply(&mut self, step: Step) -> Result<()> {
        let (cfg, places, dev, mapping) = (self.cfg, self.places, &self.dev, &self.mapping);
        let t = Instant::now();
        match step {
            Step::LuksFormat => {
                if luks::read_label(dev).ctx("read the LUKS2 header of", dev)? == crate::probe::LABEL_NEW {
                    say(&format!(
                        "{}: an oa LUKS2 header from a first format cut short (label {}, no key slot) holds nothing that can be opened: finishing the format (the header is made again)",
                        dev.display(),
                        crate::probe::LABEL_NEW
                    ));
                }
                let k = obtain_key(&self.source, dev, true)?;
                luks::format(dev, &k, cfg)?;
                say(&format!("formatted {} as LUKS2 (aes-xts-plain64, {}) in {} ms", dev.display(), cfg.pbkdf, ms(t)));
                self.key = Some(k);
            }
            Step::Unlock => {
                unlock(&self.source, dev, &places.mapping, cfg.retries.max(1), self.key.take())?;
                say(&format!("unlocked {} as {} in {} ms", dev.display(), mapping.display(), ms(t)));
            }
            Step::Mkfs => {
                // Whatever the filesystem probe said: only a volume whose header still says the
                // btrfs was never made gets one.
                luks::ensure_unfinished(dev)?;
                btrfs::mkfs(mapping, "oa-persist")?;
                luks::set_done(dev)?;
                say(&format!("made btrfs on {} in {} ms", mapping.display(), ms(t)));
            }
            Step::MarkDone => {
                luks::set_done(dev)?;
                say(&format!("{} holds a btrfs: LUKS2 label set to {}", dev.display(), crate::probe::LABEL_DONE));
            }
            Step::MountTop => btrfs::mount_top(mapping, &places.top)?,
            Step::FinishSwap => finish_swap(&places.top)?,
            Step::CreateSubvols => {
                btrfs::ensure_subvolume(&places.top.join(layout::STATE))?;
                for d in [layout::SNAPSHOTS, layout::META] {
                    std::fs::create_dir_all(places.top.join(d)).ctx("create", places.top.join(d))?;
                }
                say("created the state subvolume");
            }
            Step::BootSnapshot => boot_snapshot(cfg, self.o, &places.top, self.boot_id)?,
            Step::Prune => prune(cfg, &places.top)?,
            Step::MountState => {
                btrfs::mount(
                    mapping,
                    &places.state,
                    &format!("subvol=/{}", layout::STATE),
                    btrfs::MountFlags::empty(),
                )?;
                for d in ["upper", "work"] {
                    std::fs::create_dir_all(places.state.join(d)).ctx("create", places.state.join(d))?;
                }
            }
            Step::Done => {}
        }
        Ok(())
    }
}

/// Bring the device to "state subvolume mounted at `places.state`" (with upper/ and work/),
/// taking this boot's snapshot (once per `boot_id`), applying a rollback and pruning on the way.
pub fn setup(cfg: &PersistConfig, o: &Overrides, places: &Places, boot_id: &str) -> Result<PersistRuntime> {
    let t0 = Instant::now();
    let spec = o.device.clone().unwrap_or_else(|| cfg.device.clone());
    let source = o
        .key
        .as_deref()
        .map_or_else(|| Ok(cfg.key.clone()), KeySource::parse)
        .map_err(|_| Error::KeySource(o.key.clone().unwrap_or_default()))?;
    let dev = device::find(&spec, Duration::from_secs(10))?;
    let mapping = luks::mapping_path(&places.mapping);
    say(&format!("{} is {} (key: {})", spec, dev.display(), source.describe()));
    if !cfg.paths.is_empty() {
        say(&format!("only {} persist; the rest of the root is tmpfs", cfg.paths.join(", ")));
    }
    let mut boot = Boot { cfg, o, places, dev, mapping, source, boot_id, key: None };
    state::converge(&mut boot, cfg.format)?;
    let rt = PersistRuntime {
        device: boot.dev.display().to_string(),
        mapping: boot.mapping.display().to_string(),
        top: places.top.display().to_string(),
        state: places.state.display().to_string(),
        current: read_meta(&places.top).current,
    };
    if let Some(parent) = places.runtime.parent() {
        let _ = std::fs::create_dir_all(parent);
    }
    let json = serde_json::to_vec_pretty(&rt).map_err(json_err(&places.runtime))?;
    std::fs::write(&places.runtime, json).ctx("write", &places.runtime)?;
    say(&format!("state subvolume mounted at {} ({} ms in all)", places.state.display(), ms(t0)));
    Ok(rt)
}

fn obtain_key(source: &KeySource, dev: &Path, new: bool) -> Result<Key> {
    match source {
        KeySource::File(p) => key::read_file(p),
        KeySource::Network => Err(Error::NotImplemented { what: "network" }),
        KeySource::Passphrase if new => loop {
            let a = key::prompt(&format!("new passphrase for {}", dev.display()))?;
            if a.is_empty() {
                warn("an empty passphrase is not accepted");
                continue;
            }
            let b = key::prompt("the same passphrase again")?;
            if *a == *b {
                break Ok(a);
            }
            warn("the two passphrases differ; again");
        },
        KeySource::Passphrase => key::prompt(&format!("passphrase for {}", dev.display())),
    }
}

fn unlock(source: &KeySource, dev: &Path, name: &str, retries: u32, known: Option<Key>) -> Result<()> {
    if let Some(k) = known {
        if luks::unlock(dev, name, &k)? {
            return Ok(());
        }
    }
    let attempts = if *source == KeySource::Passphrase { retries } else { 1 };
    for i in 1..=attempts {
        let k = obtain_key(source, dev, false)?;
        if luks::unlock(dev, name, &k)? {
            return Ok(());
        }
        warn(&format!("wrong {} for {} (attempt {i} of {attempts})", source.describe(), dev.display()));
    }
    Err(Error::WrongKey { device: dev.display().to_string(), source_: source.describe(), attempts })
}

pub fn read_meta(top: &Path) -> BootMeta {
    std::fs::read(top.join(layout::BOOT_JSON)).ok().and_then(|b| serde_json::from_slice(&b).ok()).unwrap_or_default()
}

/// Write a file so that a power cut leaves the old or the new content: temp, fsync, rename, fsync dir.
fn write_atomic(path: &Path, data: &[u8]) -> Result<()> {
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::File::create(&tmp).ctx("create", &tmp)?;
    f.write_all(data).ctx("write", &tmp)?;
    f.sync_all().ctx("sync", &tmp)?;
    std::fs::rename(&tmp, path).ctx("rename to", path)?;
    if let Some(d) = path.parent() {
        if let Ok(d) = std::fs::File::open(d) {
            let _ = d.sync_all();
        }
    }
    Ok(())
}

fn write_meta(top: &Path, m: &BootMeta) -> Result<()> {
    let path = top.join(layout::BOOT_JSON);
    write_atomic(&path, &serde_json::to_vec_pretty(m).map_err(json_err(&path))?)
}

/// This boot's read-only snapshot, the rollback (if any), boot counting; recorded in
/// `meta/boot.json` with `boot_id`, so that the step is done once per boot.
fn boot_snapshot(cfg: &PersistConfig, o: &Overrides, top: &Path, boot_id: &str) -> Result<()> {
    let t = Instant::now();
    let snaps = top.join(layout::SNAPSHOTS);
    let state = top.join(layout::STATE);
    let existing = btrfs::list(&snaps)?;
    let mut meta = read_meta(top);
    let requested = std::fs::read_to_string(top.join(layout::ROLLBACK_NEXT))
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty());
    let rollback =
        match layout::decide_rollback(o.rollback.as_deref(), requested.as_deref(), &existing, &meta, cfg.boot_attempts)
        {
            Ok(r) => r,
            Err(why) if o.rollback.is_some() => return Err(why.into()),
            Err(why) => {
                warn(&format!("{why}; booting the current state"));
                None
            }
        };
    meta.seq = meta.seq.max(existing.iter().filter_map(|n| layout::boot_seq(n)).max().unwrap_or(0)) + 1;
    let snap = layout::boot_name(meta.seq);
    btrfs::snapshot(&state, &snaps.join(&snap), true)?;
    let current = match &rollback {
        Some(rb) => {
            swap_in(top, &snaps.join(&rb.to))?;
            let _ = std::fs::remove_file(top.join(layout::ROLLBACK_NEXT));
            say(&format!(
                "ROLLED BACK to snapshot {} ({}); the state before is kept as snapshot {snap}",
                rb.to, rb.why
            ));
            if let RollbackReason::BootCounting { .. } = rb.why {
                meta.pending = 0;
            }
            rb.to.clone()
        }
        None => snap.clone(),
    };
    meta.current = Some(current);
    meta.pending += 1;
    meta.boot_id = Some(boot_id.to_string());
    write_meta(top, &meta)?;
    btrfs::sync(top)?;
    let counting = if cfg.boot_attempts > 0 {
        format!(", boot {} of {} allowed before rollback", meta.pending, cfg.boot_attempts)
    } else {
        String::new()
    };
    say(&format!("snapshot {snap} taken{counting} in {} ms", ms(t)));
    Ok(())
}

/// `rename(2)` with its context, then the directory synced.
fn rename(from: &Path, to: &Path) -> Result<()> {
    std::fs::rename(from, to).map_err(|source| Error::Io {
        what: format!("rename {} to", from.display()),
        path: to.display().to_string(),
        source,
    })
}

/// Replace `top/state` by a writable snapshot of `target`, so that a power cut at any point
/// leaves the old state or the new one, never none: the new state is made first under
/// [`layout::STATE_NEW`], then the old one is renamed [`layout::STATE_OLD`], the new one
/// renamed `state`, and the old one deleted (it is kept as this boot's snapshot already).
/// Each point is committed before the next; [`finish_swap`] cleans up after a cut.
fn swap_in(top: &Path, target: &Path) -> Result<()> {
    let name = target.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let (state, new, old) = (top.join(layout::STATE), top.join(layout::STATE_NEW), top.join(layout::STATE_OLD));
    say(&format!("rolling back to snapshot {name}: making the new state as {}", layout::STATE_NEW));
    btrfs::snapshot(target, &new, false)?;
    btrfs::sync(top)?;
    say(&format!("rolling back to snapshot {name}: swapping {} in for {}", layout::STATE_NEW, layout::STATE));
    rename(&state, &old)?;
    rename(&new, &state)?;
    btrfs::sync(top)?;
    btrfs::delete(&old)?;
    btrfs::sync(top)
}

/// After a rollback cut short (see [`swap_in`]): `state` is put back (the old one while the new
/// one is not in place, or the new one if only it is left) and the leftovers are deleted. The
/// rollback itself is decided again by this boot (its request is removed only once it is done).
fn finish_swap(top: &Path) -> Result<()> {
    let (state, new, old) = (top.join(layout::STATE), top.join(layout::STATE_NEW), top.join(layout::STATE_OLD));
    if !btrfs::is_subvolume(&state) {
        let back = if btrfs::is_subvolume(&old) { &old } else { &new };
        rename(back, &state)?;
        btrfs::sync(top)?;
        say(&format!(
            "a rollback was cut short between its renames: {} is {} again",
            layout::STATE,
            back.file_name().map(|n| n.to_string_lossy()).unwrap_or_default()
        ));
    }
    for (p, what) in [(&new, "the unfinished new state"), (&old, "the state it replaced (kept as a boot snapshot)")] {
        if p.symlink_metadata().is_ok() {
            btrfs::delete(p)?;
            say(&format!("a rollback was cut short: {what} {} removed", p.display()));
        }
    }
    btrfs::sync(top)
}

/// Delete the boot snapshots beyond `snapshots_keep` (never the last good one or the one
/// booted). Idempotent: a second run finds nothing more to delete.
fn prune(cfg: &PersistConfig, top: &Path) -> Result<()> {
    let snaps = top.join(layout::SNAPSHOTS);
    let meta = read_meta(top);
    let keep = Expect::keep(cfg);
    let gone = layout::prune(&btrfs::list(&snaps)?, keep, &meta.protected());
    for g in &gone {
        btrfs::delete(&snaps.join(g))?;
    }
    btrfs::sync(top)?;
    say(&format!("{} boot snapshot(s) pruned ({}), {keep} kept", gone.len(), gone.join(", ")));
    Ok(())
}

fn runtime(path: &Path) -> Result<PersistRuntime> {
    let b = std::fs::read(path).map_err(|source| Error::NotSetUp { path: path.display().to_string(), source })?;
    serde_json::from_slice(&b).map_err(json_err(path))
}

/// Stage 2 reached ready: this boot's starting snapshot is good; reset the count.
pub fn mark_good(rt_path: &Path) -> Result<()> {
    let rt = runtime(rt_path)?;
    let top = PathBuf::from(&rt.top);
    let mut m = read_meta(&top);
    m.pending = 0;
    m.last_good = m.current.clone();
    write_meta(&top, &m)?;
    say(&format!("boot reached ready; snapshot {} marked good", m.last_good.as_deref().unwrap_or("-")));
    Ok(())
}

pub fn status(rt_path: &Path) -> Result<()> {
    let rt = runtime(rt_path)?;
    let top = PathBuf::from(&rt.top);
    let dev = PathBuf::from(&rt.device);
    // Nothing to prune is asked of `info` here: status reports, it does not plan.
    let expect = Expect { boot_id: &boot_id(), keep: usize::MAX };
    let info = state::info(&dev, Path::new(&rt.mapping), &top, Path::new(&rt.state), expect)?;
    println!("device    {}: {:?}", rt.device, info.header);
    for k in luks::keyslots(&dev).unwrap_or_else(|e| vec![format!("key slots unreadable: {e}")]) {
        println!("  {k}");
    }
    println!("mapping   {}: {}", rt.mapping, if info.mapping == Mapping::Mapped { "unlocked" } else { "locked" });
    println!(
        "btrfs     {:?}, top level {} at {}",
        info.fs,
        if info.top == Mount::Mounted { "mounted" } else { "not mounted" },
        rt.top
    );
    println!(
        "state     subvolume {}, {} at {}",
        layout::STATE,
        if info.state == Mount::Mounted { "mounted (overlay upper)" } else { "not mounted" },
        rt.state
    );
    let m = read_meta(&top);
    println!(
        "boots     pending {} since the last ready; started from {}; last good {}",
        m.pending,
        m.current.as_deref().unwrap_or("-"),
        m.last_good.as_deref().unwrap_or("-")
    );
    if let Ok(r) = std::fs::read_to_string(top.join(layout::ROLLBACK_NEXT)) {
        println!("next boot rolls back to {}", r.trim());
    }
    list(rt_path)
}

pub fn list(rt_path: &Path) -> Result<()> {
    let rt = runtime(rt_path)?;
    let snaps = Path::new(&rt.top).join(layout::SNAPSHOTS);
    println!("snapshots ({}):", snaps.display());
    for n in btrfs::list(&snaps)? {
        let (t, ro) = btrfs::describe(&snaps.join(&n));
        println!(
            "  {n}  created {}  {}",
            t.map(|t| t.to_string()).unwrap_or_else(|| "?".into()),
            if ro { "read-only" } else { "writable" }
        );
    }
    Ok(())
}

pub fn create(rt_path: &Path, name: &str) -> Result<()> {
    if !layout::valid_user_name(name) {
        return Err(Error::InvalidName(name.to_string()));
    }
    let rt = runtime(rt_path)?;
    let top = PathBuf::from(&rt.top);
    let dst = top.join(layout::SNAPSHOTS).join(name);
    if dst.exists() {
        return Err(Error::SnapshotExists(name.to_string()));
    }
    btrfs::sync(&top)?;
    btrfs::snapshot(&top.join(layout::STATE), &dst, true)?;
    btrfs::sync(&top)?;
    println!("snapshot {name} created");
    Ok(())
}

/// A snapshot name given to a command: one path component of the naming rules.
fn checked(name: &str) -> Result<&str> {
    if layout::valid_snapshot_name(name) {
        Ok(name)
    } else {
        Err(Error::InvalidSnapshotName(name.to_string()))
    }
}

pub fn rollback(rt_path: &Path, name: &str) -> Result<()> {
    if name != "previous" {
        checked(name)?;
    }
    let rt = runtime(rt_path)?;
    let top = PathBuf::from(&rt.top);
    let existing = btrfs::list(&top.join(layout::SNAPSHOTS))?;
    let meta = read_meta(&top);
    // `previous` from the running system: the snapshot before the one this boot started from.
    let target = if name == "previous" {
        let cur = meta.current.as_deref().and_then(layout::boot_seq).unwrap_or(u64::MAX);
        existing
            .iter()
            .filter_map(|n| layout::boot_seq(n).filter(|s| *s < cur).map(|s| (s, n)))
            .max()
            .map(|(_, n)| n.clone())
            .ok_or(RollbackError::NothingEarlier)?
    } else if existing.iter().any(|n| n == name) {
        name.to_string()
    } else {
        return Err(RollbackError::Missing { name: name.to_string(), existing }.into());
    };
    write_atomic(&top.join(layout::ROLLBACK_NEXT), format!("{target}\n").as_bytes())?;
    btrfs::sync(&top)?;
    println!("the next boot rolls back to snapshot {target}; reboot to apply it (the current state is kept as a boot snapshot)");
    Ok(())
}

pub fn delete(rt_path: &Path, name: &str) -> Result<()> {
    checked(name)?;
    let rt = runtime(rt_path)?;
    let p = Path::new(&rt.top).join(layout::SNAPSHOTS).join(name);
    if !btrfs::is_subvolume(&p) {
        return Err(Error::NoSnapshot(name.to_string()));
    }
    btrfs::delete(&p)?;
    println!("snapshot {name} deleted");
    Ok(())
}

/// The rollback's swap on a real btrfs (a loop-mounted file on the host; skipped, saying so,
/// where the host cannot mount one).
#[cfg(test)]
mod tests {
    use std::process::{Command, Stdio};

    use super::*;

    /// A btrfs mounted (subvolid 5) at `dir/top`, unmounted on drop.
    struct Top {
        _dir: tempfile::TempDir,
        top: PathBuf,
    }

    impl Top {
        fn new() -> Option<Top> {
            let dir = tempfile::tempdir().unwrap();
            let img = dir.path().join("btrfs.img");
            std::fs::File::create(&img).unwrap().set_len(256 << 20).unwrap();
            let top = dir.path().join("top");
            std::fs::create_dir(&top).unwrap();
            let quiet = |c: &mut Command| c.stdout(Stdio::null()).stderr(Stdio::null()).status();
            let ok = quiet(Command::new("mkfs.btrfs").arg("-q").arg(&img)).is_ok_and(|s| s.success())
                && Command::new("mount").args(["-o", "loop"]).arg(&img).arg(&top).status().is_ok_and(|s| s.success());
            if !ok {
                eprintln!("no btrfs loop mount on this host: skipping");
                return None;
            }
            Some(Top { _dir: dir, top })
        }
    }

    impl Drop for Top {
        fn drop(&mut self) {
            let _ = Command::new("umount").arg("-d").arg(&self.top).status();
        }
    }

    fn content(p: &Path) -> String {
        std::fs::read_to_string(p.join("data")).unwrap_or_else(|e| format!("<{}: {e}>", p.display()))
    }

    /// A writable subvolume at `p` holding `data`.
    fn subvol(p: &Path, data: &str) {
        btrfs::ensure_subvolume(p).unwrap();
        std::fs::write(p.join("data"), data).unwrap();
    }

    fn leftovers(top: &Path) -> Vec<&'static str> {
        [layout::STATE_NEW, layout::STATE_OLD].into_iter().filter(|n| top.join(n).symlink_metadata().is_ok()).collect()
    }

    /// Issue 15: the rollback makes the new state before the old one goes, and after a cut at
    /// any point of it the next boot finds `state` holding the old or the new content, never
    /// an empty or missing one, and no leftovers.
    #[test]
    fn a_rollback_swaps_and_every_cut_inside_it_is_finished_to_old_or_new() {
        let Some(t) = Top::new() else { return };
        let top = &t.top;
        let (state, new, old) = (top.join(layout::STATE), top.join(layout::STATE_NEW), top.join(layout::STATE_OLD));
        std::fs::create_dir(top.join(layout::SNAPSHOTS)).unwrap();
        let target = top.join(layout::SNAPSHOTS).join("before-change");
        subvol(&target, "old-content");
        subvol(&state, "current-content");

        swap_in(top, &target).unwrap();
        assert_eq!(content(&state), "old-content");
        assert!(btrfs::is_subvolume(&state) && leftovers(top).is_empty(), "{:?}", leftovers(top));
        assert_eq!(content(&target), "old-content", "the target is kept");

        // What a cut leaves, at each point of swap_in (and the one the old code reached first).
        type Make = fn(&Path, &Path, &Path);
        let cuts: [(&str, Make, &[&str]); 4] = [
            (
                "new made",
                |s, n, _| {
                    subvol(s, "A");
                    subvol(n, "B")
                },
                &["A"],
            ),
            (
                "between the renames",
                |_, n, o| {
                    subvol(o, "A");
                    subvol(n, "B")
                },
                &["A"],
            ),
            (
                "before the old is deleted",
                |s, _, o| {
                    subvol(s, "B");
                    subvol(o, "A")
                },
                &["B"],
            ),
            ("only the new one left", |_, n, _| subvol(n, "B"), &["B"]),
        ];
        for (what, make, want) in cuts {
            for p in [&state, &new, &old] {
                if btrfs::is_subvolume(p) {
                    btrfs::delete(p).unwrap();
                }
            }
            make(&state, &new, &old);
            finish_swap(top).unwrap();
            assert!(btrfs::is_subvolume(&state), "{what}: no state");
            assert!(want.contains(&content(&state).as_str()), "{what}: {}", content(&state));
            assert!(leftovers(top).is_empty(), "{what}: {:?}", leftovers(top));
            // Finishing again changes nothing.
            finish_swap(top).unwrap();
            assert!(want.contains(&content(&state).as_str()), "{what}");
        }
    }

    /// Issue 15: the top level is root's alone and nothing in old snapshots runs from it.
    #[test]
    fn the_top_level_is_mounted_0700_nosuid_nodev_noexec() {
        use std::os::unix::fs::PermissionsExt;
        let Some(t) = Top::new() else { return };
        let dev = oa_disk::mountinfo::read()
            .unwrap()
            .into_iter()
            .find(|m| m.mount_point == t.top)
            .map(|m| PathBuf::from(m.source))
            .expect("the loop device of the test mount");
        let again = t.top.parent().unwrap().join("persist");
        btrfs::mount_top(&dev, &again).unwrap();
        let mode = std::fs::metadata(&again).unwrap().permissions().mode() & 0o7777;
        let m = oa_disk::mountinfo::read().unwrap().into_iter().find(|m| m.mount_point == again).expect("mounted");
        let _ = Command::new("umount").arg(&again).status();
        assert_eq!(mode, 0o700);
        for f in ["nosuid", "nodev", "noexec"] {
            assert!(m.options.split(',').any(|o| o == f), "{f} missing in {}", m.options);
        }
    }
}
