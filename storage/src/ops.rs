//! The commands: `setup` (boot), `mark-good`, `status`, `snapshot ...`.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use oa_contract::config::{KeySource, PersistConfig, PersistRuntime};

use crate::error::{json_err, Error, IoContext, Result};
use crate::key;
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
    /// The key of a volume formatted in this run, to unlock it without asking again.
    key: Option<Vec<u8>>,
}

impl state::Objects for Boot<'_> {
    fn info(&mut self) -> Result<Info> {
        let expect = Expect { boot_id: self.boot_id, keep: Expect::keep(self.cfg) };
        state::info(&self.dev, &self.mapping, &self.places.top, &self.places.state, expect).ctx("read", &self.dev)
    }

    fn apply(&mut self, step: Step) -> Result<()> {
        let (cfg, places, dev, mapping) = (self.cfg, self.places, &self.dev, &self.mapping);
        let t = Instant::now();
        match step {
            Step::LuksFormat => {
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
                btrfs::mkfs(mapping, "oa-persist")?;
                luks::set_done(dev)?;
                say(&format!("made btrfs on {} in {} ms", mapping.display(), ms(t)));
            }
            Step::MarkDone => {
                luks::set_done(dev)?;
                say(&format!("{} holds a btrfs: LUKS2 label set to {}", dev.display(), crate::probe::LABEL_DONE));
            }
            Step::MountTop => btrfs::mount(mapping, &places.top, "subvolid=5")?,
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
                btrfs::mount(mapping, &places.state, &format!("subvol=/{}", layout::STATE))?;
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
    let dev = device::find(&spec, Duration::from_secs(10)).ok_or_else(|| Error::Missing(spec.clone()))?;
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

fn obtain_key(source: &KeySource, dev: &Path, new: bool) -> Result<Vec<u8>> {
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
            if a == b {
                break Ok(a);
            }
            warn("the two passphrases differ; again");
        },
        KeySource::Passphrase => key::prompt(&format!("passphrase for {}", dev.display())),
    }
}

fn unlock(source: &KeySource, dev: &Path, name: &str, retries: u32, known: Option<Vec<u8>>) -> Result<()> {
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
            btrfs::delete(&state)?;
            btrfs::snapshot(&snaps.join(&rb.to), &state, false)?;
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
    let info = state::info(&dev, Path::new(&rt.mapping), &top, Path::new(&rt.state), expect).ctx("read", &dev)?;
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

pub fn rollback(rt_path: &Path, name: &str) -> Result<()> {
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
    let rt = runtime(rt_path)?;
    let p = Path::new(&rt.top).join(layout::SNAPSHOTS).join(name);
    if !btrfs::is_subvolume(&p) {
        return Err(Error::NoSnapshot(name.to_string()));
    }
    btrfs::delete(&p)?;
    println!("snapshot {name} deleted");
    Ok(())
}
