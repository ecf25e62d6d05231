//! `oa build`: a fold over the stages of the profile's plan ([`crate::pipeline`]) from a
//! resolved profile to an output folder (`vmlinuz`, `initramfs.img`, `rootfs.squashfs`,
//! `manifest.json`, and the images the profile asks for).
//!
//! Each stage's output is an entry of the cache ([`crate::cache`]) under a key made from
//! everything it was made from; an unchanged stage is reused. The output folder is written under
//! a temporary name and renamed into place at the end, so a failed build never leaves a folder
//! that looks finished.

use crate::cache::Store;
use crate::error::{Error, Result};
use crate::profile::{Profile, Resolved};
use crate::{bases, hash, initbin, pipeline, stages};
use oa_contract::manifest::{self, Manifest};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

#[derive(Debug, Clone)]
pub struct Options {
    /// Output folder; default `out/<profile name>`.
    pub out: Option<PathBuf>,
    pub cache_root: PathBuf,
    /// Rebuild every stage even when the cache has it.
    pub no_cache: bool,
    /// Take new package versions: ask apt again (packages stage) and remake the base tree
    /// from the mirrors; later stages are rebuilt only when what they got changed.
    pub refresh: bool,
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

/// An artifact in the cache with its digest.
#[derive(Debug, Clone)]
pub struct Stored {
    pub path: PathBuf,
    pub sha256: String,
}

/// What the stages of one build share: the inputs, and each stage's result for the stages
/// after it. A stage reads only what [`crate::pipeline::Stage::reads`] names; asking for a
/// result its stage has not produced is an [`Error::Pipeline`], never a panic.
pub struct Context<'a> {
    pub profile: &'a Profile,
    pub opts: &'a Options,
    pub store: Store,
    pub out: PathBuf,
    /// The oa-init binary for the profile's architecture, and its digest.
    pub init: Stored,
    /// `[persistence]`: oa-storage and mkfs.btrfs with their libraries.
    pub storage: Option<crate::elfdeps::Bundle>,
    pub packages: Option<stages::packages::Packages>,
    pub base: Option<bases::BaseTree>,
    pub kernel: Option<stages::kernel::KernelOut>,
    pub rootfs: Option<Stored>,
    /// `[secure_boot] verity`: the facts of the hash tree appended to the root image.
    pub verity: Option<stages::verity::Verity>,
    pub initramfs: Option<Stored>,
    pub uki: Option<stages::uki::UkiOut>,
    /// `[secure_boot] mode = "shim"`: Debian's signed shim, GRUB and MOK manager.
    pub shim: Option<stages::shim::ShimOut>,
    /// `[secure_boot] sign_key`, loaded before the first stage (the output stage signs with it).
    pub sign_key: Option<oa_pxe::sign::SigningKey>,
    /// `[secure_boot] config_key`, loaded before the first stage: its id and the public key
    /// file's text (the initramfs stage carries it).
    pub config_key: Option<(String, String)>,
    pub disk: Option<stages::image::DiskOut>,
    pub iso: Option<stages::iso::IsoOut>,
    pub rpi: Option<crate::rpi::RpiOut>,
    pub manifest: Option<Manifest>,
}

impl Context<'_> {
    /// The kernel command line of the build as the manifest records it: the profile's words and
    /// the digest of the root image (`oa.sha256=`), or with verity its root hash, salt and data
    /// blocks (`oa.verity=`) instead: verity checks every block as it is read, hashing the whole
    /// image first as well would only slow the boot. Boot loaders add where the root is.
    pub fn manifest_cmdline(&self, stage: &'static str) -> Result<Vec<String>> {
        let root = need(&self.rootfs, stage, "the root image")?;
        let mut cl = self.profile.kernel.cmdline.clone();
        match &self.verity {
            Some(v) => cl.push(oa_contract::cmdline::word(oa_contract::cmdline::VERITY, v)),
            None => cl.push(oa_contract::cmdline::word(oa_contract::cmdline::SHA256, &root.sha256)),
        }
        Ok(cl)
    }
}

/// The result of an earlier stage, or the error that says the pipeline is out of order.
pub fn need<'c, T>(v: &'c Option<T>, stage: &'static str, what: &'static str) -> Result<&'c T> {
    v.as_ref().ok_or(Error::Pipeline { stage, needs: what })
}

/// `oa build`: run the stages of the profile's plan, in order, with one progress line each.
pub fn build(resolved: &Resolved, opts: &Options) -> Result<Report> {
    let start = Instant::now();
    let p = &resolved.profile;
    let out = opts.out.clone().unwrap_or_else(|| PathBuf::from("out").join(&p.name));
    let store = Store::open(&opts.cache_root)?;
    check_out_writable(&out)?;
    let (sign_key, config_key) = load_keys(p)?;
    let init_path = initbin::locate(p.arch, opts.init_bin.as_deref())?;
    let init = Stored { sha256: hash::sha256_file(&init_path)?, path: init_path };
    let storage = crate::elfdeps::bundle(p)?;
    let mut cx = Context {
        profile: p,
        opts,
        store,
        out,
        init,
        storage,
        packages: None,
        base: None,
        kernel: None,
        rootfs: None,
        verity: None,
        initramfs: None,
        uki: None,
        shim: None,
        sign_key,
        config_key,
        disk: None,
        iso: None,
        rpi: None,
        manifest: None,
    };
    let plan = pipeline::plan(p);
    let mut reports = Vec::with_capacity(plan.len());
    for (i, stage) in plan.iter().enumerate() {
        let counter = format!("[{}/{}]", i + 1, plan.len());
        if opts.progress {
            eprintln!("==> {counter} {}", stage.name);
        }
        let t = Instant::now();
        let done = (stage.run)(&mut cx).inspect_err(|_| {
            if opts.progress {
                eprintln!("==> {counter} {}: FAILED after {:.1}s", stage.name, t.elapsed().as_secs_f64());
            }
        })?;
        let duration = t.elapsed();
        if opts.progress {
            let tag = if done.cached { " [cached]" } else { "" };
            eprintln!("    {}: {}{tag} ({:.2}s)", stage.name, done.detail, duration.as_secs_f64());
        }
        reports.push(StageReport { name: stage.name, duration, cached: done.cached, detail: done.detail });
    }
    let manifest =
        cx.manifest.take().ok_or(Error::Pipeline { stage: "build", needs: "the manifest of the output stage" })?;
    Ok(Report { out: cx.out, manifest, stages: reports, total: start.elapsed() })
}

/// The keys the profile names, loaded before any work, so that a bad one fails the build at
/// once: the signing key and certificate of `mode = "uki"` (readable; the uki stage checks
/// the pair when it signs), `sign_key` (an unencrypted minisign secret key) and `config_key`
/// (a minisign public key: its id and text).
type Keys = (Option<oa_pxe::sign::SigningKey>, Option<(String, String)>);

fn load_keys(p: &crate::profile::Profile) -> Result<Keys> {
    let sb = &p.secure_boot;
    if let (Some(key), Some(cert)) = (&sb.key, &sb.cert) {
        crate::keys::check_readable(key, cert)?;
    }
    let sign_key = match &sb.sign_key {
        Some(k) => {
            Some(oa_pxe::sign::SigningKey::load(k).map_err(|e| Error::Keys(format!("[secure_boot] sign_key: {e}")))?)
        }
        None => None,
    };
    let config_key = match &sb.config_key {
        Some(k) => {
            Some(oa_pxe::sign::load_public(k).map_err(|e| Error::Keys(format!("[secure_boot] config_key: {e}")))?)
        }
        None => None,
    };
    Ok((sign_key, config_key))
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
