//! The kernel: taken from a Debian package, unpacked once into the cache, with an index of its
//! modules (name -> file, dependencies from each module's `.modinfo`, like depmod) so the
//! initramfs can carry exactly the modules a profile asks for plus their dependency closure.

use crate::deb;
use crate::error::{Error, IoContext, Result};
use oa_contract::modules::{Alias, Dep};
use object::{Object, ObjectSection};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// An unpacked kernel package.
#[derive(Debug, Clone)]
pub struct Kernel {
    /// Root of the unpacked package (holds `boot/` and `lib/modules/`).
    pub root: PathBuf,
    /// `uname -r` of this kernel.
    pub release: String,
    pub vmlinuz: PathBuf,
    pub index: ModuleIndex,
}

impl Kernel {
    /// Device trees shipped with the kernel (`usr/lib/linux-image-<release>/<vendor>/*.dtb`),
    /// whose file name starts with `prefix` (`bcm2` for the Raspberry Pis: bcm2711, bcm2837).
    pub fn device_trees(&self, prefix: &str) -> Vec<PathBuf> {
        let dir = self.root.join(format!("usr/lib/linux-image-{}", self.release));
        let mut v: Vec<PathBuf> = walkdir::WalkDir::new(dir)
            .into_iter()
            .flatten()
            .map(|e| e.into_path())
            .filter(|p| {
                p.extension().is_some_and(|x| x == "dtb")
                    && p.file_name().is_some_and(|n| n.to_string_lossy().starts_with(prefix))
            })
            .collect();
        v.sort();
        v
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ModuleIndex {
    /// Module name (underscores) -> file relative to the package root, and its dependencies.
    pub modules: BTreeMap<String, ModuleInfo>,
    /// Names of modules built into the kernel (from modules.builtin).
    pub builtin: BTreeSet<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ModuleInfo {
    pub path: String,
    pub depends: Vec<String>,
    /// `softdep=pre: ...` modules (`btrfs` asks for `crc32c`): loaded before this one when the
    /// initramfs carries them.
    #[serde(default)]
    pub softdeps: Vec<String>,
    /// `alias=` patterns: the devices (modaliases) this module drives.
    #[serde(default)]
    pub aliases: Vec<String>,
}

pub use oa_contract::modules::normalize;

/// Named after what it holds: a kernel indexed by an older oa has no aliases and is indexed
/// again when opened.
const INDEX_FILE: &str = ".oa-modindex-v2.json";
/// Part of the cache key of an unpacked kernel: changes when what an unpack keeps changes.
const UNPACK_VERSION: &str = "v2";

impl Kernel {
    /// Unpack `deb_path` into a cache entry (once, keyed by the package file name, which names
    /// the package, version and architecture) and index its modules. `rebuild` unpacks again.
    pub fn from_deb(deb_path: &Path, cache_root: &Path, rebuild: bool) -> Result<(Kernel, bool)> {
        let store = crate::cache::Store::open_dir(&cache_root.join("kernels"))?;
        let mut key = crate::hash::Key::new("kernel");
        key.add("deb", deb_path.file_name().unwrap_or_default().as_encoded_bytes())
            .add("unpack", UNPACK_VERSION.as_bytes());
        let (entry, made) = store.get_or_build("kernel", &key.hex(), rebuild, |scratch| {
            eprintln!("    unpacking kernel package {}", deb_path.display());
            // Path::starts_with compares whole components, so the device-tree folder
            // (usr/lib/linux-image-<release>/) is matched on the string.
            let keep = |p: &Path| {
                p.starts_with("boot")
                    || p.starts_with("lib/modules")
                    || p.starts_with("usr/lib/modules")
                    || p.to_string_lossy().starts_with("usr/lib/linux-image-")
            };
            deb::extract(deb_path, scratch.path(), &keep)?;
            Self::index_tree(scratch.path())
        })?;
        Ok((Self::open(&entry.dir)?, made.is_none()))
    }

    /// Index the modules of an unpacked kernel tree (`boot/vmlinuz-<rel>` and
    /// `[usr/]lib/modules/<rel>/`, uncompressed `.ko`), from a .deb or another source (an Arch
    /// `linux` package: bases/arch.rs).
    pub fn index_tree(root: &Path) -> Result<()> {
        let index = build_index(root)?;
        let json = serde_json::to_vec(&index).map_err(|e| Error::Kernel(format!("encoding the module index: {e}")))?;
        std::fs::write(root.join(INDEX_FILE), json).ctx("writing module index in", root)
    }

    /// Open an unpacked kernel tree (made by [`Kernel::from_deb`]).
    pub fn open(root: &Path) -> Result<Kernel> {
        let release = find_release(root)?;
        let vmlinuz = root.join("boot").join(format!("vmlinuz-{release}"));
        if !vmlinuz.exists() {
            return Err(Error::Kernel(format!(
                "{} has modules for {release} but no boot/vmlinuz-{release}",
                root.display()
            )));
        }
        let idx_path = root.join(INDEX_FILE);
        let index: ModuleIndex = match std::fs::read(&idx_path) {
            Ok(b) => serde_json::from_slice(&b).map_err(|e| Error::Kernel(format!("{}: {e}", idx_path.display())))?,
            Err(_) => {
                // Unpacked by an older oa (its index has another name): index it once more and
                // keep the index, so the next build reads it.
                let index = build_index(root)?;
                if let Ok(json) = serde_json::to_vec(&index) {
                    let _ = std::fs::write(&idx_path, json);
                }
                index
            }
        };
        Ok(Kernel { root: root.to_path_buf(), release, vmlinuz, index })
    }

    /// The files (relative to [`Kernel::root`]) of `wanted` and their dependencies, in load
    /// order (dependencies first). Built-in modules are skipped; unknown names are an error.
    pub fn module_closure(&self, wanted: &[String]) -> Result<Vec<String>> {
        let mut order = Vec::new();
        let mut seen = BTreeSet::new();
        for w in wanted {
            let name = normalize(w);
            if self.index.builtin.contains(&name) {
                continue;
            }
            if !self.index.modules.contains_key(&name) {
                return Err(Error::Kernel(format!(
                    "module `{w}` is neither a module nor built into kernel {}; check [kernel] modules in the profile",
                    self.release
                )));
            }
            self.visit(&name, &mut seen, &mut order, &mut Vec::new())?;
        }
        Ok(order)
    }

    fn visit(
        &self,
        name: &str,
        seen: &mut BTreeSet<String>,
        order: &mut Vec<String>,
        stack: &mut Vec<String>,
    ) -> Result<()> {
        if seen.contains(name) || self.index.builtin.contains(name) {
            return Ok(());
        }
        if stack.iter().any(|s| s == name) {
            return Err(Error::Kernel(format!("module dependency cycle: {} -> {name}", stack.join(" -> "))));
        }
        let info = self.index.modules.get(name).ok_or_else(|| {
            Error::Kernel(format!(
                "module `{}` needs `{name}`, which kernel {} does not have",
                stack.last().map(String::as_str).unwrap_or("?"),
                self.release
            ))
        })?;
        stack.push(name.to_string());
        // Soft dependencies are loaded first when this kernel has them (as modules or built in).
        for d in info.softdeps.iter().filter(|d| self.index.modules.contains_key(*d)) {
            self.visit(d, seen, order, stack)?;
        }
        for d in &info.depends {
            self.visit(d, seen, order, stack)?;
        }
        stack.pop();
        seen.insert(name.to_string());
        order.push(info.path.clone());
        Ok(())
    }
}

/// What an initramfs carries of a kernel: module files and the `modules.dep`/`modules.alias`
/// lines for exactly those modules (oa_contract::modules).
#[derive(Debug, Default)]
pub struct Carried {
    /// Module files relative to [`Kernel::root`], dependencies first.
    pub files: Vec<String>,
    pub deps: Vec<Dep>,
    pub aliases: Vec<Alias>,
}

impl Kernel {
    /// Module names whose file lies under one of `prefixes`, paths below the module tree's
    /// `kernel/` folder compared by whole components (`drivers/ata`, `drivers/scsi/sd_mod.ko`).
    pub fn modules_under(&self, prefixes: &[&str]) -> Vec<String> {
        let marker = format!("modules/{}/kernel/", self.release);
        self.index
            .modules
            .iter()
            .filter(|(_, info)| {
                info.path.split_once(&marker).is_some_and(|(_, rest)| {
                    let rest = Path::new(rest);
                    prefixes.iter().any(|p| rest.starts_with(p))
                })
            })
            .map(|(name, _)| name.clone())
            .collect()
    }

    /// A module file's path inside the initramfs: `lib/modules/<release>/...` (`usr/lib` folded
    /// into `lib`).
    pub fn initramfs_path(rel: &str) -> String {
        rel.trim_start_matches("usr/").to_string()
    }

    /// A module file's path relative to `lib/modules/<release>/`, as modules.dep names it.
    pub fn moddir_path(&self, rel: &str) -> String {
        let moddir = format!("{}/", oa_contract::modules::dir(&self.release));
        Self::initramfs_path(rel).trim_start_matches(moddir.as_str()).to_string()
    }

    /// Everything an initramfs needs to carry `names` (and their dependencies).
    pub fn carry(&self, names: &[String]) -> Result<Carried> {
        let mut c = Carried { files: self.module_closure(names)?, ..Default::default() };
        let by_path: BTreeMap<&str, &str> =
            self.index.modules.iter().map(|(n, i)| (i.path.as_str(), n.as_str())).collect();
        for file in &c.files {
            let Some(name) = by_path.get(file.as_str()) else { continue };
            let info = &self.index.modules[*name];
            // modules.dep lists the dependencies that are loaded last first.
            let mut deps = self.module_closure(std::slice::from_ref(&name.to_string()))?;
            deps.pop(); // the module itself, last in load order
            deps.reverse();
            c.deps.push(Dep { path: self.moddir_path(file), deps: deps.iter().map(|d| self.moddir_path(d)).collect() });
            c.aliases.extend(info.aliases.iter().map(|a| Alias { pattern: a.clone(), module: name.to_string() }));
        }
        Ok(c)
    }
}

fn find_release(root: &Path) -> Result<String> {
    for base in ["lib/modules", "usr/lib/modules"] {
        let dir = root.join(base);
        if let Ok(rd) = std::fs::read_dir(&dir) {
            let mut rels: Vec<String> = rd
                .flatten()
                .filter(|e| e.path().is_dir())
                .map(|e| e.file_name().to_string_lossy().to_string())
                .collect();
            rels.sort();
            if let Some(r) = rels.pop() {
                return Ok(r);
            }
        }
    }
    Err(Error::Kernel(format!(
        "{} holds no lib/modules/<release>: the package is not a kernel image package",
        root.display()
    )))
}

fn build_index(root: &Path) -> Result<ModuleIndex> {
    let release = find_release(root)?;
    let base = if root.join("lib/modules").join(&release).exists() { "lib/modules" } else { "usr/lib/modules" };
    let moddir = root.join(base).join(&release);
    let mut index = ModuleIndex::default();
    if let Ok(s) = std::fs::read_to_string(moddir.join("modules.builtin")) {
        for line in s.lines() {
            if let Some(f) = Path::new(line.trim()).file_name() {
                index.builtin.insert(normalize(&f.to_string_lossy()));
            }
        }
    }
    for entry in walkdir::WalkDir::new(&moddir) {
        let entry = entry.map_err(|e| Error::Kernel(format!("walking {}: {e}", moddir.display())))?;
        let p = entry.path();
        let fname = p.file_name().map(|f| f.to_string_lossy().to_string()).unwrap_or_default();
        if !fname.ends_with(".ko") {
            continue; // compressed modules (.ko.xz/.ko.zst) are a later addition
        }
        let data = std::fs::read(p).ctx("reading module", p)?;
        let info = modinfo(&data).map_err(|e| Error::Kernel(format!("{}: {e}", p.display())))?;
        let name = info.name.unwrap_or_else(|| normalize(&fname));
        let rel = p.strip_prefix(root).unwrap_or(p).to_string_lossy().to_string();
        index.modules.insert(
            name,
            ModuleInfo { path: rel, depends: info.depends, softdeps: info.softdeps, aliases: info.aliases },
        );
    }
    Ok(index)
}

/// What a module's `.modinfo` section says about it.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct ModInfo {
    pub name: Option<String>,
    pub depends: Vec<String>,
    pub softdeps: Vec<String>,
    pub aliases: Vec<String>,
}

/// `name=`, `depends=`, `softdep=` (its `pre:` part) and `alias=` from a module's `.modinfo`.
pub fn modinfo(data: &[u8]) -> std::result::Result<ModInfo, String> {
    let file = object::File::parse(data).map_err(|e| format!("not an ELF module: {e}"))?;
    let sec = file.section_by_name(".modinfo").ok_or("no .modinfo section")?;
    let bytes = sec.data().map_err(|e| e.to_string())?;
    let mut m = ModInfo::default();
    for field in bytes.split(|b| *b == 0) {
        let f = String::from_utf8_lossy(field);
        if let Some(v) = f.strip_prefix("name=") {
            m.name = Some(normalize(v));
        } else if let Some(v) = f.strip_prefix("depends=") {
            m.depends.extend(v.split(',').filter(|s| !s.is_empty()).map(normalize));
        } else if let Some(v) = f.strip_prefix("softdep=") {
            m.softdeps.extend(softdep_pre(v));
        } else if let Some(v) = f.strip_prefix("alias=") {
            // Aliases without a bus (`alias=fs-btrfs`, `alias=char-major-10-234`) name the
            // module for request_module(); no device carries them.
            if v.contains(':') && !v.contains(char::is_whitespace) {
                m.aliases.push(v.to_string());
            }
        }
    }
    Ok(m)
}

/// The `pre:` modules of a `softdep=` value (`pre: crc32c post: foo`).
fn softdep_pre(v: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut pre = false;
    for w in v.split_whitespace() {
        match w {
            "pre:" => pre = true,
            "post:" => pre = false,
            w if pre => out.push(normalize(w)),
            _ => {}
        }
    }
    out
}
