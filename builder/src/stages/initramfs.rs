//! Stage `initramfs`: oa-init as `/init`, the kernel modules the profile needs (with their
//! dependencies), busybox for the emergency shell and the persistence bundle, as a zstd cpio.

use crate::build::{need, Context, Stored};
use crate::deb;
use crate::drivers;
use crate::error::{Error, IoContext, Result};
use crate::hash::Key;
use crate::initramfs::{Archive, Member, Source};
use crate::kernel::Kernel;
use crate::pipeline::Outcome;
use oa_contract::config::InitramfsConfig;
use oa_contract::initramfs_paths;
use oa_contract::manifest::artifact;
use std::path::Path;

/// The driver image (initramfs_paths::DRIVERS_IMAGE): the carried modules at their paths below
/// `lib/modules/<release>/`, with `modules.dep` and `modules.alias`, as a zstd squashfs.
fn drivers_image(kernel: &Kernel, carried: &crate::kernel::Carried, scratch: &Path) -> Result<std::path::PathBuf> {
    let tree = scratch.join("drivers");
    for m in &carried.files {
        let dst = tree.join(kernel.moddir_path(m));
        if let Some(parent) = dst.parent() {
            std::fs::create_dir_all(parent).ctx("creating", parent)?;
        }
        let src = kernel.root.join(m);
        if std::fs::hard_link(&src, &dst).is_err() {
            std::fs::copy(&src, &dst).ctx("copying module", &src)?;
        }
    }
    std::fs::create_dir_all(&tree).ctx("creating", &tree)?;
    let dep = tree.join(oa_contract::modules::DEP_FILE);
    std::fs::write(&dep, oa_contract::modules::render_deps(&carried.deps)).ctx("writing", &dep)?;
    let alias = tree.join(oa_contract::modules::ALIAS_FILE);
    std::fs::write(&alias, oa_contract::modules::render_aliases(&carried.aliases)).ctx("writing", &alias)?;
    let img = scratch.join("drivers.squashfs");
    // Read once, a module at a time, and carried in every initramfs: large blocks and the
    // strongest zstd level give the smallest image (it is not compressed again usefully).
    crate::squashfs::pack_with(
        &tree,
        &img,
        crate::squashfs::Owners::AllRoot,
        &["-b", "1M", "-Xcompression-level", "19"],
    )?;
    std::fs::remove_dir_all(&tree).ctx("removing", &tree)?;
    Ok(img)
}

/// Whether the profile's initramfs carries secret key material (persistence with
/// `key = "keyfile"`: the key file is inside). Such an initramfs, and every image holding it,
/// is written 0600 and listed in the manifest's `key_material`.
pub fn carries_key(p: &crate::profile::Profile) -> bool {
    p.persistence.as_ref().is_some_and(|x| x.key == crate::profile::KeySource::Keyfile && x.keyfile.is_some())
}

/// Create (or truncate) `path` readable by its owner only, before anything is written to it.
pub fn create_private(path: &Path) -> Result<()> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let f = std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(path);
    let f = f.ctx("creating", path)?;
    // An existing file keeps its mode through open(2): set it.
    f.set_permissions(std::fs::Permissions::from_mode(0o600)).ctx("setting mode of", path)
}

/// Make an existing file (a cache entry made before key files were written 0600) readable by
/// its owner only.
pub fn make_private(path: &Path) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).ctx("setting mode of", path)
}

pub fn run(cx: &mut Context) -> Result<Outcome> {
    let p = cx.profile;
    let k = need(&cx.kernel, "initramfs", "the kernel")?;
    let busybox = &need(&cx.packages, "initramfs", "the packages")?.busybox;
    let kernel = &k.kernel;
    // Loaded at the start of stage 1 (in this order), and carried for coldplug (by class).
    let always_names = drivers::always(p);
    let always = kernel.module_closure(&always_names)?;
    let mut names = always_names;
    names.extend(drivers::modules(kernel, &p.kernel.drivers));
    let carried = kernel.carry(&names)?;
    let classes: Vec<String> = p.kernel.drivers.iter().map(|c| c.to_string()).collect();
    let mut key = Key::new("initramfs");
    key.add("kernel", k.id.as_bytes()).add("init", cx.init.sha256.as_bytes()).add("profile", p.name.as_bytes());
    for m in &always {
        key.add("module", m.as_bytes());
    }
    for m in &carried.files {
        key.add("carried", m.as_bytes());
    }
    for c in &classes {
        key.add("class", c.as_bytes());
    }
    key.add("layout", b"drivers.squashfs");
    key.add("copytoram", p.image.copytoram.as_str().as_bytes())
        .add("copytoram_ram_factor", p.image.copytoram_ram_factor.to_string().as_bytes());
    if let Some((_, info)) = busybox {
        key.add("busybox", info.sha256.as_bytes());
    }
    if let Some(s) = &cx.storage {
        key.add("persistence", s.key.as_bytes());
    }
    // `[secure_boot] config_key` (loaded and checked before the first stage), carried as
    // etc/oa/config.pub.
    let config_key = cx.config_key.clone();
    if let Some((_, text)) = &config_key {
        key.add("config_key", text.as_bytes());
    }
    key.add("config_required", if p.secure_boot.config_required { b"1" } else { b"0" });
    let secret = carries_key(p);
    let (entry, made) = cx.store.get_or_build("initramfs", &key.hex(), cx.opts.no_cache, |scratch| {
        let mut a = Archive::new();
        a.add_file(initramfs_paths::INIT, 0o755, Source::Path(cx.init.path.clone()));
        for d in ["dev", "proc", "sys", "run", "sysroot", "tmp"] {
            a.add(d, Member::Dir { mode: 0o755 });
        }
        a.add("dev/console", Member::CharDev { mode: 0o600, major: 5, minor: 1 });
        a.add("dev/null", Member::CharDev { mode: 0o666, major: 1, minor: 3 });
        // Modules keep their path under lib/modules/<release>/ (usr/lib/... folded into lib/).
        // The modules loaded at the start are files of the archive; every carried module is
        // in the driver image too, with modules.dep and modules.alias (it is mounted over
        // their folder).
        for m in &always {
            a.add_file(&Kernel::initramfs_path(m), 0o644, Source::Path(kernel.root.join(m)));
        }
        if !p.kernel.drivers.is_empty() {
            let img = drivers_image(kernel, &carried, scratch.path())?;
            a.add_file(initramfs_paths::DRIVERS_IMAGE, 0o644, Source::Path(img));
        }
        let loaded: Vec<String> = always.iter().map(|m| Kernel::initramfs_path(m)).collect();
        let mut extra = String::new();
        if let Some((bb, _)) = busybox {
            let unpacked = scratch.join("busybox");
            std::fs::create_dir_all(&unpacked).ctx("creating", &unpacked)?;
            deb::extract(bb, &unpacked, &|p| p == Path::new("bin/busybox"))?;
            let bin = unpacked.join("bin/busybox");
            a.add_file(initramfs_paths::BUSYBOX, 0o755, Source::Bytes(std::fs::read(&bin).ctx("reading", &bin)?));
            a.add("bin/sh", Member::Symlink { target: "busybox".into() });
            std::fs::remove_dir_all(&unpacked).ctx("removing", &unpacked)?;
            extra = " + busybox".into();
        }
        if let Some(s) = &cx.storage {
            s.add_to_initramfs(&mut a)?;
            extra.push_str(" + oa-storage");
        }
        let cfg = InitramfsConfig {
            profile: p.name.clone(),
            kernel_release: kernel.release.clone(),
            modules: loaded,
            drivers: classes.clone(),
            default_cmdline: vec![],
            // Profile `[image] copytoram` and its RAM factor (both in the key above).
            copytoram: p.image.copytoram,
            copytoram_ram_factor: p.image.copytoram_ram_factor,
            config_required: p.secure_boot.config_required,
        };
        if let Some((id, text)) = &config_key {
            a.add_file(initramfs_paths::CONFIG_KEY, 0o644, Source::Bytes(text.clone().into_bytes()));
            extra.push_str(&format!(" + config key {id}"));
        }
        let json = serde_json::to_vec_pretty(&cfg)
            .map_err(|e| Error::Kernel(format!("encoding {}: {e}", initramfs_paths::CONFIG)))?;
        a.add_file(initramfs_paths::CONFIG, 0o644, Source::Bytes(json));
        let img = scratch.join(artifact::INITRAMFS);
        if secret {
            // The key file is inside: never readable by others, not even while it is written.
            create_private(&img)?;
        }
        a.write_zstd(&img)?;
        // Inside the archive now; the entry keeps only what later stages read.
        let _ = std::fs::remove_file(scratch.join("drivers.squashfs"));
        scratch.seal(artifact::INITRAMFS)?;
        let size = std::fs::metadata(&img).ctx("reading", &img)?.len();
        let classes = if classes.is_empty() { "no driver classes".to_string() } else { classes.join(" ") };
        Ok(format!(
            "oa-init + {} modules ({} loaded at start; {classes}){extra}, {} KiB zstd",
            carried.files.len(),
            always.len(),
            size / 1024
        ))
    })?;
    let path = entry.file(artifact::INITRAMFS);
    if secret {
        // Also an entry made before initramfs files with a key were written 0600.
        make_private(&path)?;
    }
    cx.initramfs = Some(Stored { path, sha256: entry.digest(artifact::INITRAMFS)? });
    Ok(match made {
        Some(detail) => Outcome::made(detail),
        None => Outcome::cached("unchanged"),
    })
}
