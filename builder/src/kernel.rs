//! The kernel: taken from a Debian package, unpacked once into the cache, with an index of its
//! modules (name -> file, dependencies from each module's `.modinfo`, like depmod) so the
//! initramfs can carry exactly the modules a profile asks for plus their dependency closure.

use crate::deb;
use crate::error::{Error, IoContext, Result};
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
}

/// Module names use `_` and `-` interchangeably; the kernel reports `_`.
pub fn normalize(name: &str) -> String {
    name.trim().trim_end_matches(".ko").replace('-', "_")
}

const INDEX_FILE: &str = ".oa-modindex.json";
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
            Err(_) => build_index(root)?,
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
        for d in &info.depends {
            self.visit(d, seen, order, stack)?;
        }
        stack.pop();
        seen.insert(name.to_string());
        order.push(info.path.clone());
        Ok(())
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
        let (name, depends) = modinfo(&data).map_err(|e| Error::Kernel(format!("{}: {e}", p.display())))?;
        let name = name.unwrap_or_else(|| normalize(&fname));
        let rel = p.strip_prefix(root).unwrap_or(p).to_string_lossy().to_string();
        index.modules.insert(name, ModuleInfo { path: rel, depends });
    }
    Ok(index)
}

/// `name=` and `depends=` from a module's `.modinfo` section.
pub fn modinfo(data: &[u8]) -> std::result::Result<(Option<String>, Vec<String>), String> {
    let file = object::File::parse(data).map_err(|e| format!("not an ELF module: {e}"))?;
    let sec = file.section_by_name(".modinfo").ok_or("no .modinfo section")?;
    let bytes = sec.data().map_err(|e| e.to_string())?;
    let mut name = None;
    let mut depends = Vec::new();
    for field in bytes.split(|b| *b == 0) {
        let f = String::from_utf8_lossy(field);
        if let Some(v) = f.strip_prefix("name=") {
            name = Some(normalize(v));
        } else if let Some(v) = f.strip_prefix("depends=") {
            depends.extend(v.split(',').filter(|s| !s.is_empty()).map(normalize));
        }
    }
    Ok((name, depends))
}
