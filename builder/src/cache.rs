//! The build cache: one store for everything a build makes and may reuse (docs/design.md,
//! "The cache").
//!
//! An entry is a folder `<cache>/stages/<stage>-<key>/` holding the files one stage made from
//! inputs whose digest is `<key>` (see [`crate::hash::Key`]). A stage builds into a private
//! [`Scratch`] folder, which is renamed into place when it is finished: an entry folder that
//! exists is complete, and a failed or interrupted stage leaves nothing that looks finished (the
//! scratch folder is removed when it is dropped). Files whose digest later stages or the
//! manifest need are sealed with a `<file>.sha256` beside them, computed once when the entry is
//! made.
//!
//! This is the only cache convention of the builder: stage outputs, unpacked kernels, base
//! trees, downloaded packages and the Raspberry Pi firmware all live in entries.

use crate::error::{Error, IoContext, Result};
use crate::hash;
use std::path::{Path, PathBuf};

/// The folder of cache entries (`<cache root>/stages`).
#[derive(Debug, Clone)]
pub struct Store {
    dir: PathBuf,
}

/// A finished cache entry.
#[derive(Debug, Clone)]
pub struct Entry {
    pub dir: PathBuf,
}

/// A private folder a stage builds into; removed on drop unless it became an entry.
#[derive(Debug)]
pub struct Scratch {
    path: PathBuf,
}

impl Store {
    /// The store of stage outputs under `cache_root` (created when missing).
    pub fn open(cache_root: &Path) -> Result<Store> {
        Self::open_dir(&cache_root.join("stages"))
    }

    /// A store in `dir`. Downloads and unpacked kernels have folders of their own
    /// (`<cache>/debs`, `<cache>/kernels`) so they can be shared between caches.
    pub fn open_dir(dir: &Path) -> Result<Store> {
        std::fs::create_dir_all(dir).ctx("creating cache folder", dir)?;
        Ok(Store { dir: dir.to_path_buf() })
    }

    /// Where the entry of `stage` with `key` lives (finished or not).
    fn entry_dir(&self, stage: &str, key: &str) -> PathBuf {
        self.dir.join(format!("{stage}-{key}"))
    }

    /// The finished entry of `stage` with `key`, if there is one.
    pub fn lookup(&self, stage: &str, key: &str) -> Option<Entry> {
        let dir = self.entry_dir(stage, key);
        dir.is_dir().then_some(Entry { dir })
    }

    /// Every finished entry of `stage` (for lookups by content when the key is not known).
    pub fn entries(&self, stage: &str) -> Vec<Entry> {
        let prefix = format!("{stage}-");
        let Ok(rd) = std::fs::read_dir(&self.dir) else { return Vec::new() };
        let mut v: Vec<Entry> = rd
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().starts_with(&prefix) && e.path().is_dir())
            .map(|e| Entry { dir: e.path() })
            .collect();
        v.sort_by(|a, b| a.dir.cmp(&b.dir));
        v
    }

    /// A fresh scratch folder inside the store (same filesystem, so entries are renamed into
    /// place).
    pub fn scratch(&self) -> Result<Scratch> {
        let path = self.dir.join(format!(".tmp-{}-{}", std::process::id(), hash::unique_suffix()));
        std::fs::create_dir_all(&path).ctx("creating temporary folder", &path)?;
        Ok(Scratch { path })
    }

    /// The entry of `stage` with `key`: reused when it exists (unless `rebuild`), else made by
    /// `make` in a scratch folder and stored. Returns the entry and, when it was made now, what
    /// `make` returned (`None` means it came from the cache).
    pub fn get_or_build<T>(
        &self,
        stage: &str,
        key: &str,
        rebuild: bool,
        make: impl FnOnce(&Scratch) -> Result<T>,
    ) -> Result<(Entry, Option<T>)> {
        if !rebuild {
            if let Some(e) = self.lookup(stage, key) {
                return Ok((e, None));
            }
        }
        let scratch = self.scratch()?;
        let made = make(&scratch)?;
        let dir = self.entry_dir(stage, key);
        if !rebuild {
            // Another build (a parallel `oa build`, a test) may have made the same entry in the
            // meantime: renaming onto a finished folder fails, and that entry is as good as ours,
            // so it stays (whoever uses it keeps reading it) and our scratch folder is dropped.
            if std::fs::rename(scratch.path(), &dir).is_ok() {
                return Ok((scratch.into_entry(dir), Some(made)));
            }
            if let Some(e) = self.lookup(stage, key) {
                return Ok((e, Some(made)));
            }
        }
        let entry = scratch.store(&dir)?;
        Ok((entry, Some(made)))
    }
}

impl Scratch {
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// `self.path().join(name)`.
    pub fn join(&self, name: impl AsRef<Path>) -> PathBuf {
        self.path.join(name)
    }

    /// Write the digest of the finished file `name` beside it (`<name>.sha256`) and return it.
    pub fn seal(&self, name: &str) -> Result<String> {
        let file = self.path.join(name);
        let d = hash::sha256_file(&file)?;
        let side = self.path.join(format!("{name}.sha256"));
        std::fs::write(&side, &d).ctx("writing digest", &side)?;
        Ok(d)
    }

    /// The scratch folder was renamed to `dir` by the caller: it is an entry now.
    fn into_entry(mut self, dir: PathBuf) -> Entry {
        self.path = PathBuf::new();
        Entry { dir }
    }

    /// Rename the finished folder to `dir`, replacing an earlier entry there.
    fn store(mut self, dir: &Path) -> Result<Entry> {
        if dir.exists() {
            let old = dir.with_extension(format!("old-{}", hash::unique_suffix()));
            std::fs::rename(dir, &old).ctx("moving an earlier cache entry aside", dir)?;
            let _ = std::fs::remove_dir_all(&old);
        }
        std::fs::rename(&self.path, dir).ctx("storing stage output in the cache", dir)?;
        // The folder is the entry now: nothing to remove on drop.
        self.path = PathBuf::new();
        Ok(Entry { dir: dir.to_path_buf() })
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        if !self.path.as_os_str().is_empty() {
            let _ = std::fs::remove_dir_all(&self.path);
        }
    }
}

impl Entry {
    /// A file of the entry.
    pub fn file(&self, name: impl AsRef<Path>) -> PathBuf {
        self.dir.join(name)
    }

    /// The sealed digest of the entry's file `name` (see [`Scratch::seal`]).
    pub fn digest(&self, name: &str) -> Result<String> {
        let side = self.dir.join(format!("{name}.sha256"));
        let d = std::fs::read_to_string(&side).ctx("reading digest", &side)?;
        let d = d.trim();
        if d.len() != 64 || !d.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(Error::Cache {
                path: side,
                reason: "not a sha256 digest; remove the entry or build with --no-cache".into(),
            });
        }
        Ok(d.to_string())
    }

    /// The size in bytes of the entry's file `name`.
    pub fn size(&self, name: &str) -> Result<u64> {
        let f = self.dir.join(name);
        Ok(std::fs::metadata(&f).ctx("reading", &f)?.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_entry_is_made_once_and_reused() {
        let d = tempfile::tempdir().unwrap();
        let s = Store::open(d.path()).unwrap();
        let mut runs = 0;
        for round in 0..2 {
            let (e, made) = s
                .get_or_build("t", "k1", false, |sc| {
                    runs += 1;
                    std::fs::write(sc.join("a"), b"x").unwrap();
                    sc.seal("a")
                })
                .unwrap();
            assert_eq!(std::fs::read(e.file("a")).unwrap(), b"x");
            assert_eq!(e.digest("a").unwrap(), "2d711642b726b04401627ca9fbac32f5c8530fb1903cc4db02258717921a4881");
            assert_eq!(made.is_some(), round == 0, "made in the first round only");
        }
        assert_eq!(runs, 1);
        // rebuild replaces the entry
        let (e, made) = s
            .get_or_build("t", "k1", true, |sc| {
                std::fs::write(sc.join("a"), b"y").unwrap();
                Ok(())
            })
            .unwrap();
        assert!(made.is_some());
        assert_eq!(std::fs::read(e.file("a")).unwrap(), b"y");
        assert_eq!(s.entries("t").len(), 1);
    }

    #[test]
    fn a_failed_stage_leaves_nothing() {
        let d = tempfile::tempdir().unwrap();
        let s = Store::open(d.path()).unwrap();
        let r: Result<(Entry, Option<()>)> = s.get_or_build("t", "k", false, |sc| {
            std::fs::write(sc.join("half"), b"x").unwrap();
            Err(Error::Cache { path: sc.join("half"), reason: "stage failed".into() })
        });
        assert!(r.is_err());
        assert!(s.lookup("t", "k").is_none());
        assert_eq!(std::fs::read_dir(d.path().join("stages")).unwrap().count(), 0, "scratch folder removed");
    }

    #[test]
    fn an_entry_made_meanwhile_by_another_build_is_kept() {
        let d = tempfile::tempdir().unwrap();
        let s = Store::open(d.path()).unwrap();
        let (e, made) = s
            .get_or_build("t", "k", false, |sc| {
                // The other build finishes first.
                s.get_or_build("t", "k", false, |other| std::fs::write(other.join("a"), b"first").ctx("writing", "a"))
                    .unwrap();
                std::fs::write(sc.join("a"), b"second").ctx("writing", "a")
            })
            .unwrap();
        assert!(made.is_some());
        assert_eq!(std::fs::read(e.file("a")).unwrap(), b"first", "the finished entry stays");
        assert_eq!(s.entries("t").len(), 1);
        assert_eq!(std::fs::read_dir(d.path().join("stages")).unwrap().count(), 1, "our scratch folder removed");
    }
}
