//! `oa build`: the pipeline from a resolved profile to an output folder
//! (`vmlinuz`, `initramfs.img`, `rootfs.squashfs`, `manifest.json`).
//!
//! Each stage's output is kept in the cache under a key made from everything it was made from;
//! an unchanged stage is reused. The output folder is written under a temporary name and
//! renamed into place at the end, so a failed build never leaves a folder that looks finished.

use crate::apt::{self, PackageCache};
use crate::error::{Error, IoContext, Result};
use crate::hash::{self, Key};
use crate::initramfs::{self, Member, Source};
use crate::kernel::Kernel;
use crate::profile::{Profile, Resolved};
use crate::{deb, fsutil, initbin, rootfs, squashfs};
use oa_contract::config::InitramfsConfig;
use oa_contract::manifest::{self, artifact, Artifact, Manifest};
use oa_contract::{cmdline, initramfs_paths};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

pub struct Options {
    /// Output folder; default `out/<profile name>`.
    pub out: Option<PathBuf>,
    pub cache_root: PathBuf,
    /// Rebuild every stage even when the cache has it.
    pub no_cache: bool,
    /// oa-init binary to use instead of the one found next to `oa`.
    pub init_bin: Option<PathBuf>,
    /// Print progress lines on stderr.
    pub progress: bool,
}

/// The cache folder: `$OA_CACHE_DIR`, else `$XDG_CACHE_HOME/oa`, else `~/.cache/oa`.
pub fn default_cache_root() -> PathBuf {
    if let Some(d) = std::env::var_os("OA_CACHE_DIR") {
        return PathBuf::from(d);
    }
    if let Some(d) = std::env::var_os("XDG_CACHE_HOME") {
        return PathBuf::from(d).join("oa");
    }
    let home = std::env::var_os("HOME").map(PathBuf::from).unwrap_or_else(|| PathBuf::from("/var/cache"));
    home.join(".cache/oa")
}

#[derive(Debug, Clone)]
pub struct StageReport {
    pub name: &'static str,
    pub duration: Duration,
    pub cached: bool,
    pub detail: String,
}

#[derive(Debug)]
pub struct Report {
    pub out: PathBuf,
    pub manifest: Manifest,
    pub stages: Vec<StageReport>,
    pub total: Duration,
}

struct Progress {
    on: bool,
    stages: Vec<StageReport>,
    n: usize,
}

impl Progress {
    fn run<T>(&mut self, name: &'static str, f: impl FnOnce() -> Result<(T, bool, String)>) -> Result<T> {
        self.n += 1;
        if self.on {
            eprintln!("==> [{}/{TOTAL_STAGES}] {name}", self.n);
        }
        let t = Instant::now();
        let (v, cached, detail) = f().inspect_err(|_| {
            if self.on {
                eprintln!("==> [{}/{TOTAL_STAGES}] {name}: FAILED after {:.1}s", self.n, t.elapsed().as_secs_f64());
            }
        })?;
        let d = t.elapsed();
        if self.on {
            eprintln!("    {name}: {detail}{} ({:.2}s)", if cached { " [cached]" } else { "" }, d.as_secs_f64());
        }
        self.stages.push(StageReport { name, duration: d, cached, detail });
        Ok(v)
    }
}

const TOTAL_STAGES: usize = 5;

/// A cached stage artifact: `cache/stages/<stage>-<key>.<ext>` plus its digest beside it.
struct Cached {
    path: PathBuf,
    sha256: PathBuf,
}

impl Cached {
    fn new(cache_root: &Path, stage: &str, key: &str, ext: &str) -> Cached {
        let dir = cache_root.join("stages");
        Cached { path: dir.join(format!("{stage}-{key}.{ext}")), sha256: dir.join(format!("{stage}-{key}.{ext}.sha256")) }
    }
    fn hit(&self) -> bool {
        self.path.is_file() && self.sha256.is_file()
    }
    /// Store `tmp` (a finished file) as this artifact, digest first so a crash in between
    /// leaves no artifact without a digest.
    fn store(&self, tmp: &Path) -> Result<()> {
        let d = hash::sha256_file(tmp)?;
        std::fs::write(&self.sha256, d).ctx("writing", &self.sha256)?;
        std::fs::rename(tmp, &self.path).ctx("storing stage output", &self.path)
    }
    fn digest(&self) -> Result<String> {
        Ok(std::fs::read_to_string(&self.sha256).ctx("reading", &self.sha256)?.trim().to_string())
    }
}

pub fn build(resolved: &Resolved, opts: &Options) -> Result<Report> {
    let start = Instant::now();
    let p = &resolved.profile;
    let out = opts.out.clone().unwrap_or_else(|| PathBuf::from("out").join(&p.name));
    let mut prog = Progress { on: opts.progress, stages: Vec::new(), n: 0 };
    let stage_dir = opts.cache_root.join("stages");
    std::fs::create_dir_all(&stage_dir).ctx("creating cache folder", &stage_dir)?;
    check_out_writable(&out)?;
    let darch = p.arch.debian().to_string();
    let arch = p.arch.as_str();
    let init_bin = initbin::locate(arch, opts.init_bin.as_deref())?;
    let init_sha = hash::sha256_file(&init_bin)?;

    // 1. packages
    let pkgs = PackageCache::new(&opts.cache_root);
    let (kernel_deb, debs, busybox_deb) = prog.run("packages", || {
        let mut name = p.kernel.package.clone();
        let mut kernel = None;
        for _ in 0..4 {
            let (path, info) = pkgs.fetch(&name, &darch)?;
            // A metapackage (linux-image-amd64) depends on the real image package.
            match info.depends.iter().find(|d| d.starts_with("linux-image-")) {
                Some(real) => name = real.clone(),
                None => {
                    kernel = Some((path, info));
                    break;
                }
            }
        }
        let (kpath, kinfo) = kernel.ok_or_else(|| Error::Package { package: p.kernel.package.clone(), reason: "no kernel image package found behind it".into() })?;
        let mut debs = Vec::new();
        for d in &p.packages.debian {
            debs.push(pkgs.fetch(d, &darch)?);
        }
        let busybox = if p.init.emergency_shell { Some(pkgs.fetch("busybox-static", &darch)?) } else { None };
        let detail = format!("kernel {} {}, {} package(s)", kinfo.name, kinfo.version, debs.len());
        Ok((((kpath, kinfo), debs, busybox), false, detail))
    })?;

    // 2. kernel
    let kernel = prog.run("kernel", || {
        let cached = opts.cache_root.join("kernels").join(kernel_deb.0.file_stem().unwrap_or_default()).join(".oa-complete").exists();
        if opts.no_cache {
            let dir = opts.cache_root.join("kernels").join(kernel_deb.0.file_stem().unwrap_or_default());
            let _ = std::fs::remove_file(dir.join(".oa-complete"));
        }
        let k = Kernel::from_deb(&kernel_deb.0, &opts.cache_root)?;
        let detail = format!("{} ({} modules indexed)", k.release, k.index.modules.len());
        Ok((k, cached && !opts.no_cache, detail))
    })?;

    // 3. rootfs
    let rootfs = prog.run("rootfs", || {
        let mut key = Key::new("rootfs");
        key.add("profile", &serde_json::to_vec(&rootfs::system_config(p)).unwrap_or_default());
        key.add("base", p.base.as_str().as_bytes()).add("arch", arch.as_bytes()).add("hostname", p.hostname.as_bytes());
        for (_, info) in &debs {
            key.add("deb", info.sha256.as_bytes());
        }
        for o in &p.overlays {
            key.add_tree("overlay", o)?;
        }
        key.add("init", init_sha.as_bytes());
        let c = Cached::new(&opts.cache_root, "rootfs", &key.hex(), "squashfs");
        if c.hit() && !opts.no_cache {
            return Ok((c, true, "unchanged".to_string()));
        }
        let tree = apt::tempfile_dir(&stage_dir)?;
        let result = (|| -> Result<_> {
            let deb_paths: Vec<PathBuf> = debs.iter().map(|(p, _)| p.clone()).collect();
            rootfs::assemble(&tree, &rootfs::Inputs { profile: p, debs: &deb_paths, init_bin: &init_bin })?;
            let size = fsutil::tree_size(&tree);
            let tmp = stage_dir.join(format!(".rootfs-{}.tmp", hash::unique_suffix()));
            squashfs::pack(&tree, &tmp)?;
            let packed = std::fs::metadata(&tmp).ctx("reading", &tmp)?.len();
            c.store(&tmp)?;
            Ok(format!("{} KiB of files packed to {} KiB", size / 1024, packed / 1024))
        })();
        let _ = std::fs::remove_dir_all(&tree);
        let detail = result?;
        Ok((c, false, detail))
    })?;

    // 4. initramfs
    let default_cmdline = p.kernel.cmdline.clone();
    let initrd = prog.run("initramfs", || {
        let modules = kernel.module_closure(&p.kernel.modules)?;
        let mut key = Key::new("initramfs");
        key.add("kernel", kernel_deb.1.sha256.as_bytes()).add("init", init_sha.as_bytes()).add("profile", p.name.as_bytes());
        for m in &modules {
            key.add("module", m.as_bytes());
        }
        if let Some((_, info)) = &busybox_deb {
            key.add("busybox", info.sha256.as_bytes());
        }
        let c = Cached::new(&opts.cache_root, "initramfs", &key.hex(), "img");
        if c.hit() && !opts.no_cache {
            return Ok((c, true, "unchanged".to_string()));
        }
        let mut a = initramfs::Archive::new();
        a.add_file(initramfs_paths::INIT, 0o755, Source::Path(init_bin.clone()));
        for d in ["dev", "proc", "sys", "run", "sysroot", "tmp"] {
            a.add(d, Member::Dir { mode: 0o755 });
        }
        a.add("dev/console", Member::CharDev { mode: 0o600, major: 5, minor: 1 });
        a.add("dev/null", Member::CharDev { mode: 0o666, major: 1, minor: 3 });
        // Modules keep their path under lib/modules/<release>/ (usr/lib/... folded into lib/).
        let mut loaded = Vec::new();
        for m in &modules {
            let inside = m.trim_start_matches("usr/").to_string();
            a.add_file(&inside, 0o644, Source::Path(kernel.root.join(m)));
            loaded.push(inside);
        }
        let mut extra = String::new();
        let tmpdir = apt::tempfile_dir(&stage_dir)?;
        if let Some((bb, _)) = &busybox_deb {
            deb::extract(bb, &tmpdir, &|p| p == Path::new("bin/busybox"))?;
            a.add_file(initramfs_paths::BUSYBOX, 0o755, Source::Bytes(std::fs::read(tmpdir.join("bin/busybox")).ctx("reading", tmpdir.join("bin/busybox"))?));
            a.add("bin/sh", Member::Symlink { target: "busybox".into() });
            extra = " + busybox".into();
        }
        let _ = std::fs::remove_dir_all(&tmpdir);
        let cfg = InitramfsConfig { profile: p.name.clone(), kernel_release: kernel.release.clone(), modules: loaded, default_cmdline: vec![] };
        a.add_file(initramfs_paths::CONFIG, 0o644, Source::Bytes(serde_json::to_vec_pretty(&cfg).map_err(|e| Error::Other(e.to_string()))?));
        let tmp = stage_dir.join(format!(".initramfs-{}.tmp", hash::unique_suffix()));
        a.write_zstd(&tmp)?;
        let size = std::fs::metadata(&tmp).ctx("reading", &tmp)?.len();
        c.store(&tmp)?;
        Ok((c, false, format!("oa-init + {} modules{extra}, {} KiB zstd", modules.len(), size / 1024)))
    })?;

    // 5. output
    let manifest = prog.run("output", || {
        let parent = out.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
        std::fs::create_dir_all(parent).ctx("creating output folder", parent)?;
        let name = out.file_name().map(|s| s.to_string_lossy().to_string()).unwrap_or_else(|| p.name.clone());
        let partial = parent.join(format!(".{name}.partial-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&partial);
        std::fs::create_dir_all(&partial).ctx("creating", &partial)?;
        let result = (|| -> Result<_> {
            let mut artifacts = Vec::new();
            let kernel_sha = hash::sha256_file(&kernel.vmlinuz)?;
            for (aname, src, digest) in [
                (artifact::KERNEL, kernel.vmlinuz.clone(), kernel_sha),
                (artifact::INITRAMFS, initrd.path.clone(), initrd.digest()?),
                (artifact::ROOTFS, rootfs.path.clone(), rootfs.digest()?),
            ] {
                let dst = partial.join(aname);
                let size = std::fs::copy(&src, &dst).ctx("copying artifact to", &dst)?;
                artifacts.push(Artifact { name: aname.into(), path: aname.into(), size, sha256: digest });
            }
            let root_sha = artifacts.iter().find(|a| a.name == artifact::ROOTFS).map(|a| a.sha256.clone());
            let mut cl = default_cmdline.clone();
            cl.push(format!("{}={}", cmdline::SHA256, root_sha.unwrap_or_default()));
            let m = Manifest {
                schema: manifest::SCHEMA_VERSION,
                profile: p.name.clone(),
                arch: arch.to_string(),
                kernel_release: kernel.release.clone(),
                cmdline: cl,
                artifacts,
                builder: format!("oa {}", env!("CARGO_PKG_VERSION")),
            };
            let json = serde_json::to_vec_pretty(&m).map_err(|e| Error::Other(e.to_string()))?;
            std::fs::write(partial.join(manifest::FILE_NAME), json).ctx("writing manifest in", &partial)?;
            // Swap the finished folder into place.
            let old = parent.join(format!(".{name}.old-{}", std::process::id()));
            if out.exists() {
                std::fs::rename(&out, &old).ctx("moving previous output aside", &out)?;
            }
            std::fs::rename(&partial, &out).ctx("moving finished output into place", &out)?;
            let _ = std::fs::remove_dir_all(&old);
            Ok(m)
        })();
        if result.is_err() {
            let _ = std::fs::remove_dir_all(&partial);
        }
        let m = result?;
        let total: u64 = m.artifacts.iter().map(|a| a.size).sum();
        Ok((m, false, format!("{} ({} KiB)", out.display(), total / 1024)))
    })?;

    Ok(Report { out, manifest, stages: prog.stages, total: start.elapsed() })
}

/// Fail early, before any work, when the output folder cannot be written.
fn check_out_writable(out: &Path) -> Result<()> {
    let parent = out.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let mut probe_dir = parent.to_path_buf();
    while !probe_dir.exists() {
        match probe_dir.parent() {
            Some(p) if !p.as_os_str().is_empty() => probe_dir = p.to_path_buf(),
            _ => {
                probe_dir = PathBuf::from(".");
                break;
            }
        }
    }
    let probe = probe_dir.join(format!(".oa-write-test-{}", std::process::id()));
    match std::fs::write(&probe, b"") {
        Ok(()) => {
            let _ = std::fs::remove_file(&probe);
            Ok(())
        }
        Err(e) => Err(Error::Output {
            path: out.to_path_buf(),
            reason: format!("cannot write in {} ({e}); choose another folder with --out", probe_dir.display()),
        }),
    }
}

/// Read an output folder's manifest.
pub fn read_manifest(dir: &Path) -> Result<Manifest> {
    let path = dir.join(manifest::FILE_NAME);
    let data = std::fs::read(&path).map_err(|e| Error::Output {
        path: dir.to_path_buf(),
        reason: format!("no readable {} ({e}); is it the output of `oa build`?", manifest::FILE_NAME),
    })?;
    serde_json::from_slice(&data).map_err(|e| Error::Output { path: path.clone(), reason: format!("not a valid manifest: {e}") })
}

#[allow(unused)]
fn _profile_type_check(p: &Profile) -> &str {
    &p.name
}
