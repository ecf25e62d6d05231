//! Debian packages from the host's apt: resolve a name to the exact version apt would install,
//! fetch it with `apt-get download` into the package cache (outside the repository), verify its
//! sha256 against apt's index, and reuse it on later builds.

use crate::cache::Store;
use crate::deb;
use crate::error::{Error, IoContext, Result};
use crate::hash;
use std::path::{Path, PathBuf};
use std::process::Command;

/// A package as apt's index describes it.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct PackageInfo {
    pub name: String,
    pub version: String,
    pub arch: String,
    /// File name in the pool (`busybox-static_1.35.0-4+b1_amd64.deb`).
    pub file_name: String,
    pub sha256: String,
    pub depends: Vec<String>,
}

/// A fingerprint of what `apt-cache show` answers from: the package lists and apt's config.
/// When it is unchanged, an earlier answer is still the answer.
fn apt_fingerprint() -> String {
    let mut k = hash::Key::new("apt-index");
    for dir in ["/var/lib/apt/lists", "/etc/apt", "/etc/apt/sources.list.d", "/etc/apt/apt.conf.d"] {
        let Ok(rd) = std::fs::read_dir(dir) else { continue };
        let mut entries: Vec<_> = rd.flatten().collect();
        entries.sort_by_key(|e| e.file_name());
        for e in entries {
            if let Ok(md) = e.metadata() {
                let mtime = md
                    .modified()
                    .ok()
                    .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                    .map(|d| d.as_nanos())
                    .unwrap_or(0);
                k.add("f", e.path().as_os_str().as_encoded_bytes())
                    .add("len", &md.len().to_le_bytes())
                    .add("mtime", &mtime.to_le_bytes());
            }
        }
    }
    k.hex()
}

/// [`show_uncached`], memoised in `memo_file` for as long as apt's index is unchanged.
/// With `fresh`, apt is asked again (and the memo updated) even when the memo has an answer.
pub fn show_memo(name: &str, arch: &str, memo_file: &Path, fresh: bool) -> Result<PackageInfo> {
    #[derive(serde::Serialize, serde::Deserialize, Default)]
    struct Memo {
        fingerprint: String,
        entries: std::collections::BTreeMap<String, PackageInfo>,
    }
    let fp = apt_fingerprint();
    let mut memo: Memo =
        std::fs::read(memo_file).ok().and_then(|b| serde_json::from_slice(&b).ok()).unwrap_or_default();
    if memo.fingerprint != fp {
        memo = Memo { fingerprint: fp, entries: Default::default() };
    }
    let key = format!("{name}:{arch}");
    if let Some(info) = memo.entries.get(&key).filter(|_| !fresh) {
        return Ok(info.clone());
    }
    let info = show_uncached(name, arch)?;
    memo.entries.insert(key, info.clone());
    if let Ok(json) = serde_json::to_vec(&memo) {
        let tmp = memo_file.with_extension(format!("tmp-{}", std::process::id()));
        if std::fs::write(&tmp, json).is_ok() {
            let _ = std::fs::rename(&tmp, memo_file);
        }
    }
    Ok(info)
}

/// Ask apt which version of `name` it would install for `arch` (Debian arch name).
pub fn show_uncached(name: &str, arch: &str) -> Result<PackageInfo> {
    let spec = format!("{name}:{arch}");
    let out = Command::new("apt-cache").args(["show", "--no-all-versions", &spec]).output().map_err(|e| {
        Error::ToolMissing {
            tool: "apt-cache".into(),
            why: e.to_string(),
            hint: "oa fetches Debian packages with apt; run it on Debian or Ubuntu (make deps)".into(),
        }
    })?;
    let text = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() || text.trim().is_empty() {
        return Err(Error::Package {
            package: spec,
            reason: format!(
                "apt does not know it ({}). Check the name in the profile; if it is right, run `apt-get update`{}",
                String::from_utf8_lossy(&out.stderr).trim(),
                if arch != "amd64" { format!(" after `dpkg --add-architecture {arch}`") } else { String::new() }
            ),
        });
    }
    let stanza = text.split("\n\n").next().unwrap_or("");
    let c = deb::Control::parse(stanza);
    let field = |k: &str| {
        c.get(k)
            .map(str::to_string)
            .ok_or_else(|| Error::Package { package: spec.clone(), reason: format!("apt-cache show has no {k} field") })
    };
    let filename = field("Filename")?;
    Ok(PackageInfo {
        name: field("Package")?,
        version: field("Version")?,
        arch: field("Architecture")?,
        file_name: filename.rsplit('/').next().unwrap_or(&filename).to_string(),
        sha256: field("SHA256")?,
        depends: c.depends(),
    })
}

/// The folder of downloaded .deb files.
pub struct PackageCache {
    pub dir: PathBuf,
    /// Ask apt again for every package instead of reusing remembered answers (`--refresh`).
    pub fresh: bool,
}

impl PackageCache {
    pub fn new(cache_root: &Path) -> PackageCache {
        PackageCache { dir: cache_root.join("debs"), fresh: false }
    }

    /// The same cache, asking apt again for every package (`oa build --refresh`).
    pub fn refreshing(mut self, fresh: bool) -> PackageCache {
        self.fresh = fresh;
        self
    }

    /// The .deb for `name` (Debian arch `arch`), downloaded if not cached. Returns its path and
    /// apt's description of it.
    pub fn fetch(&self, name: &str, arch: &str) -> Result<(PathBuf, PackageInfo)> {
        std::fs::create_dir_all(&self.dir).ctx("creating package cache", &self.dir)?;
        let info = match show_memo(name, arch, &self.dir.join("apt-resolved.json"), self.fresh) {
            Ok(info) => info,
            Err(e) => {
                // Offline and apt has no index: a cached copy is still a valid, verified input.
                if let Some((path, info)) = self.newest_cached(name, arch) {
                    eprintln!("warning: {e}; using cached {}", path.display());
                    return Ok((path, info));
                }
                return Err(e);
            }
        };
        // Entries are named by the package's sha256 from apt's index: content-addressed, and
        // checked against the download before the entry exists.
        let store = Store::open_dir(&self.dir)?;
        let (entry, _) = store.get_or_build(DEB_ENTRY, &info.sha256, false, |scratch| {
            eprintln!("    downloading {} {} ({})", info.name, info.version, info.arch);
            let out = Command::new("apt-get")
                .current_dir(scratch.path())
                .args(["-q", "-o", "APT::Sandbox::User=root", "download"])
                .arg(format!("{}:{}={}", info.name, info.arch, info.version))
                .output()
                .map_err(|e| Error::ToolMissing {
                    tool: "apt-get".into(),
                    why: e.to_string(),
                    hint: "install apt".into(),
                })?;
            if !out.status.success() {
                return Err(Error::Package {
                    package: name.into(),
                    reason: format!("apt-get download failed: {}", String::from_utf8_lossy(&out.stderr).trim()),
                });
            }
            let got = std::fs::read_dir(scratch.path())
                .ctx("listing download folder", scratch.path())?
                .filter_map(|e| e.ok())
                .map(|e| e.path())
                .find(|p| p.extension().is_some_and(|x| x == "deb"))
                .ok_or_else(|| Error::Package {
                    package: name.into(),
                    reason: "apt-get download wrote no .deb file".into(),
                })?;
            let want = scratch.join(&info.file_name);
            std::fs::rename(&got, &want).ctx("naming the download", &want)?;
            let digest = scratch.seal(&info.file_name)?;
            if digest != info.sha256 {
                return Err(Error::Package {
                    package: name.into(),
                    reason: format!("downloaded file has sha256 {digest}, apt's index says {}", info.sha256),
                });
            }
            Ok(())
        })?;
        Ok((entry.file(&info.file_name), info))
    }

    /// The newest verified cached .deb of `name` for `arch`, when apt cannot be asked.
    fn newest_cached(&self, name: &str, arch: &str) -> Option<(PathBuf, PackageInfo)> {
        let store = Store::open_dir(&self.dir).ok()?;
        let mut best: Option<(std::time::SystemTime, PathBuf, String)> = None;
        for entry in store.entries(DEB_ENTRY) {
            for e in std::fs::read_dir(&entry.dir).ok()?.flatten() {
                let f = e.file_name().to_string_lossy().to_string();
                if f.starts_with(&format!("{name}_")) && f.ends_with(&format!("_{arch}.deb")) {
                    let (Ok(t), Ok(sha256)) = (e.metadata().and_then(|m| m.modified()), entry.digest(&f)) else {
                        continue;
                    };
                    if best.as_ref().is_none_or(|(bt, _, _)| t > *bt) {
                        best = Some((t, e.path(), sha256));
                    }
                }
            }
        }
        let (_, path, sha256) = best?;
        let c = deb::control(&path).ok()?;
        Some((
            path.clone(),
            PackageInfo {
                name: name.into(),
                version: c.get("Version")?.into(),
                arch: arch.into(),
                file_name: path.file_name()?.to_string_lossy().into(),
                sha256,
                depends: c.depends(),
            },
        ))
    }
}

/// The cache entries of downloaded packages: `<cache>/debs/deb-<sha256>/<file name>`.
const DEB_ENTRY: &str = "deb";

/// A fresh private directory inside `parent`.
pub fn tempfile_dir(parent: &Path) -> Result<PathBuf> {
    let p = parent.join(format!(".tmp-{}-{}", std::process::id(), hash::unique_suffix()));
    std::fs::create_dir_all(&p).ctx("creating temporary folder", &p)?;
    Ok(p)
}
