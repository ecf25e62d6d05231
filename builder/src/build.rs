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
use crate::profile::{Base, Profile, Resolved};
use crate::{bases, deb, fsutil, initbin, rootfs, squashfs};
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
    /// Stages this build runs (the image stage only when the profile asks for a disk).
    total: usize,
}

impl Progress {
    fn run<T>(&mut self, name: &'static str, f: impl FnOnce() -> Result<(T, bool, String)>) -> Result<T> {
        self.n += 1;
        if self.on {
            eprintln!("==> [{}/{}] {name}", self.n, self.total);
        }
        let t = Instant::now();
        let (v, cached, detail) = f().inspect_err(|_| {
            if self.on {
                eprintln!("==> [{}/{}] {name}: FAILED after {:.1}s", self.n, self.total, t.elapsed().as_secs_f64());
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
        Cached {
            path: dir.join(format!("{stage}-{key}.{ext}")),
            sha256: dir.join(format!("{stage}-{key}.{ext}.sha256")),
        }
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
    let mut prog = Progress {
        on: opts.progress,
        stages: Vec::new(),
        n: 0,
        total: TOTAL_STAGES
            + usize::from(p.image.disk)
            + usize::from(p.rpi.enable)
            + usize::from(p.base != Base::Busybox),
    };
    let stage_dir = opts.cache_root.join("stages");
    std::fs::create_dir_all(&stage_dir).ctx("creating cache folder", &stage_dir)?;
    check_out_writable(&out)?;
    let darch = p.arch.debian().to_string();
    let arch = p.arch;
    let init_bin = initbin::locate(arch, opts.init_bin.as_deref())?;
    let init_sha = hash::sha256_file(&init_bin)?;
    // [persistence]: oa-storage + mkfs.btrfs with their libraries (elfdeps.rs).
    let storage = crate::elfdeps::bundle(p)?;

    // 1. packages
    let pkgs = PackageCache::new(&opts.cache_root);
    let (kernel_deb, debs, busybox_deb) = prog.run("packages", || {
        let mut name = p.kernel.package.clone();
        let mut kernel = None;
        for _ in 0..if p.base == Base::Arch { 0 } else { 4 } {
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
        // base = "arch": the kernel comes from the installed `linux` package (bases/arch.rs).
        let kernel_deb = if p.base == Base::Arch {
            None
        } else {
            Some(kernel.ok_or_else(|| Error::Package {
                package: p.kernel.package.clone(),
                reason: "no kernel image package found behind it".into(),
            })?)
        };
        let mut debs = Vec::new();
        // base = "debian": [packages] debian goes to mmdebstrap in the base stage instead.
        if p.base == Base::Busybox {
            for d in &p.packages.debian {
                debs.push(pkgs.fetch(d, &darch)?);
            }
        }
        let busybox = if p.init.emergency_shell { Some(pkgs.fetch("busybox-static", &darch)?) } else { None };
        let detail = match &kernel_deb {
            Some((_, kinfo)) => format!("kernel {} {}, {} package(s)", kinfo.name, kinfo.version, debs.len()),
            None => format!("kernel from the Arch base, {} package(s)", debs.len()),
        };
        Ok(((kernel_deb, debs, busybox), false, detail))
    })?;

    // 1b. base tree (base = "debian" | "arch"): mmdebstrap / pacman output, cached as a tarball
    // keyed by package set + mirror (bases/mod.rs).
    let base_tree = if p.base == Base::Busybox {
        None
    } else {
        prog.run("base", || {
            let (t, cached, detail) = bases::base_stage(p, &opts.cache_root, opts.no_cache)?.expect("a full-OS base");
            Ok((t, cached, detail))
        })
        .map(Some)?
    };

    // 2. kernel
    let kernel = prog.run("kernel", || {
        let Some(kernel_deb) = &kernel_deb else {
            let base = base_tree.as_ref().expect("base = arch has a base tree");
            let (k, cached) = bases::arch::kernel(base, &opts.cache_root, opts.no_cache)?;
            let detail = format!("{} from the `linux` package ({} modules indexed)", k.release, k.index.modules.len());
            return Ok((k, cached, detail));
        };
        let dir = opts.cache_root.join("kernels").join(kernel_deb.0.file_stem().unwrap_or_default());
        let cached = Kernel::tree_complete(&dir);
        if opts.no_cache {
            let _ = std::fs::remove_file(dir.join(crate::kernel::COMPLETE));
        }
        let k = Kernel::from_deb(&kernel_deb.0, &opts.cache_root)?;
        let detail = format!("{} ({} modules indexed)", k.release, k.index.modules.len());
        Ok((k, cached && !opts.no_cache, detail))
    })?;

    // 3. rootfs
    let rootfs = prog.run("rootfs", || {
        let mut key = Key::new("rootfs");
        key.add("profile", &serde_json::to_vec(&rootfs::system_config(p)).unwrap_or_default());
        key.add("base", p.base.as_str().as_bytes())
            .add("arch", arch.as_str().as_bytes())
            .add("hostname", p.hostname.as_bytes());
        for (_, info) in &debs {
            key.add("deb", info.sha256.as_bytes());
        }
        for o in &p.overlays {
            key.add_tree("overlay", o)?;
        }
        key.add("init", init_sha.as_bytes());
        if let Some(s) = &storage {
            key.add("persistence", s.key.as_bytes());
        }
        if let Some(b) = &base_tree {
            key.add("base-tree", b.key.as_bytes());
        }
        let customisation = serde_json::json!([p.name, p.init.system, p.users, p.system, p.files]);
        key.add("customisation", customisation.to_string().as_bytes());
        let c = Cached::new(&opts.cache_root, "rootfs", &key.hex(), "squashfs");
        if c.hit() && !opts.no_cache {
            return Ok((c, true, "unchanged".to_string()));
        }
        let tree = apt::tempfile_dir(&stage_dir)?;
        let result = (|| -> Result<_> {
            let deb_paths: Vec<PathBuf> = debs.iter().map(|(p, _)| p.clone()).collect();
            if let Some(b) = &base_tree {
                bases::unpack(&b.tar, &tree)?;
            }
            rootfs::assemble(&tree, &rootfs::Inputs { profile: p, debs: &deb_paths, init_bin: &init_bin })?;
            if let Some(s) = &storage {
                s.install_rootfs(&tree)?;
            }
            bases::customize::apply(&tree, p)?;
            bases::customize::write_files(&tree, p)?;
            let size = fsutil::tree_size(&tree);
            let tmp = stage_dir.join(format!(".rootfs-{}.tmp", hash::unique_suffix()));
            // A full OS keeps its file owners (/etc/shadow, home folders); busybox is all root.
            let owners = if p.base != Base::Busybox || !p.users.is_empty() {
                squashfs::Owners::Keep
            } else {
                squashfs::Owners::AllRoot
            };
            let packed = squashfs::pack(&tree, &tmp, owners);
            if let Err(e) = packed {
                let _ = std::fs::remove_file(&tmp);
                return Err(e);
            }
            let packed = std::fs::metadata(&tmp).ctx("reading", &tmp)?.len();
            c.store(&tmp)?;
            Ok(format!("{} KiB of files packed to {} KiB", size / 1024, packed / 1024))
        })();
        let _ = std::fs::remove_dir_all(&tree);
        let detail = result?;
        Ok((c, false, detail))
    })?;

    // 4. initramfs
    let kernel_id = match &kernel_deb {
        Some((_, info)) => info.sha256.clone(),
        None => hash::sha256_file(&kernel.vmlinuz)?,
    };
    let default_cmdline = p.kernel.cmdline.clone();
    let initrd = prog.run("initramfs", || {
        let modules = kernel.module_closure(&crate::elfdeps::modules(p))?;
        let mut key = Key::new("initramfs");
        key.add("kernel", kernel_id.as_bytes()).add("init", init_sha.as_bytes()).add("profile", p.name.as_bytes());
        for m in &modules {
            key.add("module", m.as_bytes());
        }
        if let Some((_, info)) = &busybox_deb {
            key.add("busybox", info.sha256.as_bytes());
        }
        if let Some(s) = &storage {
            key.add("persistence", s.key.as_bytes());
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
            a.add_file(
                initramfs_paths::BUSYBOX,
                0o755,
                Source::Bytes(std::fs::read(tmpdir.join("bin/busybox")).ctx("reading", tmpdir.join("bin/busybox"))?),
            );
            a.add("bin/sh", Member::Symlink { target: "busybox".into() });
            extra = " + busybox".into();
        }
        let _ = std::fs::remove_dir_all(&tmpdir);
        if let Some(s) = &storage {
            s.add_to_initramfs(&mut a)?;
            extra.push_str(" + oa-storage");
        }
        let cfg = InitramfsConfig {
            profile: p.name.clone(),
            kernel_release: kernel.release.clone(),
            modules: loaded,
            default_cmdline: vec![],
        };
        a.add_file(
            initramfs_paths::CONFIG,
            0o644,
            Source::Bytes(serde_json::to_vec_pretty(&cfg).map_err(|e| Error::Other(e.to_string()))?),
        );
        let tmp = stage_dir.join(format!(".initramfs-{}.tmp", hash::unique_suffix()));
        a.write_zstd(&tmp)?;
        let size = std::fs::metadata(&tmp).ctx("reading", &tmp)?.len();
        c.store(&tmp)?;
        Ok((c, false, format!("oa-init + {} modules{extra}, {} KiB zstd", modules.len(), size / 1024)))
    })?;

    // 5. disk image (when the profile asks): disk.img + bmap (+ qcow2), cached like the rest.
    let root_sha = rootfs.digest()?;
    let initrd_sha = initrd.digest()?;
    let mut manifest_cmdline = default_cmdline.clone();
    manifest_cmdline.push(format!("{}={root_sha}", cmdline::SHA256));
    let kernel_sha = hash::sha256_file(&kernel.vmlinuz)?;
    let disk = if p.image.disk {
        Some(prog.run("image", || {
            disk_stage(
                p,
                opts,
                &stage_dir,
                &kernel.vmlinuz,
                &kernel_sha,
                &initrd,
                &rootfs,
                &root_sha,
                &manifest_cmdline,
            )
        })?)
    } else {
        None
    };

    // Raspberry Pi boot tree and SD image (when the profile asks), cached like the rest.
    let rpi = if p.rpi.enable {
        Some(prog.run("rpi", || {
            crate::rpi::stage(&crate::rpi::StageInputs {
                profile: p,
                cache_root: &opts.cache_root,
                kernel: &kernel,
                kernel_sha: &kernel_sha,
                initrd: &initrd.path,
                initrd_sha: &initrd_sha,
                rootfs: &rootfs.path,
                rootfs_sha: &root_sha,
                cmdline: &manifest_cmdline,
                no_cache: opts.no_cache,
            })
        })?)
    } else {
        None
    };

    // 6. output
    let manifest = prog.run("output", || {
        let parent = out.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
        std::fs::create_dir_all(parent).ctx("creating output folder", parent)?;
        let name = out.file_name().map(|s| s.to_string_lossy().to_string()).unwrap_or_else(|| p.name.clone());
        let partial = parent.join(format!(".{name}.partial-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&partial);
        std::fs::create_dir_all(&partial).ctx("creating", &partial)?;
        let result = (|| -> Result<_> {
            let mut artifacts = Vec::new();
            for (aname, src, digest) in [
                (artifact::KERNEL, kernel.vmlinuz.clone(), kernel_sha.clone()),
                (artifact::INITRAMFS, initrd.path.clone(), initrd_sha.clone()),
                (artifact::ROOTFS, rootfs.path.clone(), root_sha.clone()),
            ] {
                let dst = partial.join(aname);
                let size = std::fs::copy(&src, &dst).ctx("copying artifact to", &dst)?;
                artifacts.push(Artifact { name: aname.into(), path: aname.into(), size, sha256: digest });
            }
            if let Some(d) = &disk {
                // disk.img keeps its holes (the blank parts take no space).
                let dst = partial.join(artifact::DISK_IMAGE);
                crate::image::copy_sparse(&d.img.path, &dst)?;
                artifacts.push(Artifact {
                    name: artifact::DISK_IMAGE.into(),
                    path: artifact::DISK_IMAGE.into(),
                    size: d.size,
                    sha256: d.img.digest()?,
                });
                let dst = partial.join(artifact::DISK_BMAP);
                let size = std::fs::copy(&d.bmap, &dst).ctx("copying artifact to", &dst)?;
                artifacts.push(Artifact {
                    name: artifact::DISK_BMAP.into(),
                    path: artifact::DISK_BMAP.into(),
                    size,
                    sha256: hash::sha256_file(&dst)?,
                });
                if let Some(q) = &d.qcow2 {
                    let dst = partial.join(artifact::DISK_QCOW2);
                    let size = std::fs::copy(&q.path, &dst).ctx("copying artifact to", &dst)?;
                    artifacts.push(Artifact {
                        name: artifact::DISK_QCOW2.into(),
                        path: artifact::DISK_QCOW2.into(),
                        size,
                        sha256: q.digest()?,
                    });
                }
            }
            if let Some(r) = &rpi {
                r.copy_into(&partial, &mut artifacts)?;
            }
            let cl = manifest_cmdline.clone();
            let m = Manifest {
                schema: manifest::SCHEMA_VERSION,
                profile: p.name.clone(),
                arch,
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

/// The cached outputs of the image stage.
struct DiskOut {
    img: Cached,
    /// Logical size of disk.img (its holes included).
    size: u64,
    bmap: PathBuf,
    qcow2: Option<Cached>,
}

/// The image stage: `disk.img` with its block map, and `disk.qcow2` when asked, from the
/// kernel, initramfs and root image of the earlier stages.
#[allow(clippy::too_many_arguments)]
fn disk_stage(
    p: &Profile,
    opts: &Options,
    stage_dir: &Path,
    vmlinuz: &Path,
    kernel_sha: &str,
    initrd: &Cached,
    rootfs: &Cached,
    root_sha: &str,
    manifest_cmdline: &[String],
) -> Result<(DiskOut, bool, String)> {
    use crate::image::{self, boot::BootFiles};
    let files = BootFiles::locate(p.arch)?;
    let boot_cmdline = image::disk_cmdline(manifest_cmdline);
    let mut key = Key::new("image");
    key.add("kernel", kernel_sha.as_bytes())
        .add("initramfs", initrd.digest()?.as_bytes())
        .add("rootfs", root_sha.as_bytes());
    key.add("title", p.name.as_bytes()).add("cmdline", boot_cmdline.join(" ").as_bytes());
    key.add("image", &serde_json::to_vec(&p.image).unwrap_or_default());
    for f in [&files.gptmbr, &files.syslinux, &files.systemd_boot] {
        key.add("bootfile", hash::sha256_file(f)?.as_bytes());
    }
    key.add("epoch", std::env::var("SOURCE_DATE_EPOCH").unwrap_or_default().as_bytes());
    let key = key.hex();
    let img = Cached::new(&opts.cache_root, "image", &key, "img");
    let bmap = img.path.with_extension("img.bmap");
    let qcow2 = p.image.qcow2.then(|| Cached::new(&opts.cache_root, "image", &key, "qcow2"));
    let hit = img.hit() && bmap.is_file() && qcow2.iter().all(|q| q.hit());
    if hit && !opts.no_cache {
        let size = std::fs::metadata(&img.path).ctx("reading", &img.path)?.len();
        return Ok((DiskOut { img, size, bmap, qcow2 }, true, "unchanged".to_string()));
    }
    let tmp = stage_dir.join(format!(".image-{}.tmp", hash::unique_suffix()));
    let spec = image::DiskSpec {
        title: &p.name,
        arch: p.arch,
        kernel: vmlinuz,
        initrd: &initrd.path,
        rootfs: &rootfs.path,
        cmdline: &boot_cmdline,
        persistence_mib: p.image.persistence_mib,
        esp_mib: p.image.esp_mib,
        seed: key.as_bytes(),
    };
    let result = (|| -> Result<String> {
        let disk = image::write_disk(&spec, &files, &tmp)?;
        let tmp_bmap = tmp.with_extension("bmap.tmp");
        std::fs::write(&tmp_bmap, disk.bmap.to_xml()).ctx("writing", &tmp_bmap)?;
        std::fs::rename(&tmp_bmap, &bmap).ctx("storing stage output", &bmap)?;
        let mut detail = format!(
            "{} (ESP {} MiB, root {} MiB{}), {} mapped",
            image::bmap::human(disk.layout.size_bytes()),
            disk.layout.partitions[0].size() >> 20,
            disk.layout.partitions[1].size() >> 20,
            disk.layout.partitions.get(2).map(|q| format!(", persistence {} MiB", q.size() >> 20)).unwrap_or_default(),
            image::bmap::human(disk.bmap.mapped_bytes()),
        );
        img.store(&tmp)?;
        if let Some(q) = &qcow2 {
            let qtmp = stage_dir.join(format!(".image-{}.qcow2.tmp", hash::unique_suffix()));
            let r = image::write_qcow2(&img.path, &qtmp).and_then(|_| q.store(&qtmp));
            let _ = std::fs::remove_file(&qtmp);
            r?;
            let qsize = std::fs::metadata(&q.path).ctx("reading", &q.path)?.len();
            detail.push_str(&format!(", qcow2 {}", image::bmap::human(qsize)));
        }
        Ok(detail)
    })();
    let _ = std::fs::remove_file(&tmp);
    let detail = result?;
    let size = std::fs::metadata(&img.path).ctx("reading", &img.path)?.len();
    Ok((DiskOut { img, size, bmap, qcow2 }, false, detail))
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
    serde_json::from_slice(&data)
        .map_err(|e| Error::Output { path: path.clone(), reason: format!("not a valid manifest: {e}") })
}
