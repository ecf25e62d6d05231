//! Stage 1, PID 1 in the initramfs: mounts, modules, find + verify the root image, assemble the
//! overlay root, switch_root, exec stage 2.

// A failure is built once, on the cold path: its size does not matter.
#![allow(clippy::result_large_err)]

use std::ffi::CString;
use std::path::{Path, PathBuf};
use std::time::Instant;

use nix::mount::MsFlags;
use oa_contract::cmdline::{self, BootArgs, VerityArgs};
use oa_contract::config::{CopyToRam, InitSystem, InitramfsConfig, SystemInit};
use oa_contract::modules::normalize;
use oa_contract::{initramfs_paths, mounts as mp, rootfs_paths};

use crate::bootargs;
use crate::coldplug::Coldplug;
use crate::console;
use crate::devices;
use crate::dm;
use crate::emergency;
use crate::error::{Error, Failure, IoContext, Result, Step, SysContext};
use crate::loopdev;
use crate::media;
use crate::modules;
use crate::mounts;
use crate::rootimage;
use crate::switch_root;

const HINT_REBUILD: &str = "the initramfs looks incomplete or damaged: rebuild it with oa build";
const HINT_SHELL: &str = "add oa.shell to the kernel command line to look around in an emergency shell";

pub fn run() -> ! {
    emergency::set_stage(1);
    match boot() {
        Ok(never) => match never {},
        Err(f) => emergency::fail(&f),
    }
}

fn ms(since: Instant) -> u128 {
    since.elapsed().as_millis()
}

fn read_config() -> Result<InitramfsConfig> {
    let path = Path::new("/").join(initramfs_paths::CONFIG);
    let text = std::fs::read_to_string(&path).ctx("read", &path)?;
    serde_json::from_str(&text).map_err(|source| Error::Json { path: path.display().to_string(), source })
}

fn boot() -> std::result::Result<std::convert::Infallible, Failure> {
    let t0 = Instant::now();

    // 1. API filesystems and the console.
    let mounted = mounts::mount_api_filesystems().step("mount API filesystems", HINT_REBUILD)?;
    console::attach();
    if let Err(e) = nix::sys::reboot::set_cad_enabled(false) {
        console::warn(&format!("cannot disable ctrl-alt-del reboot: {e}"));
    }
    let what =
        if mounted.is_empty() { "already mounted".to_string() } else { format!("mounted {}", mounted.join(" ")) };
    console::stage("mounts", &what);

    // 2. Command line (oa.shell first, leniently, so a later failure knows) and the config.
    let raw = std::fs::read_to_string("/proc/cmdline")
        .ctx("read", "/proc/cmdline")
        .step("read the kernel command line", HINT_SHELL)?;
    emergency::allow_shell(bootargs::shell_requested(&raw));
    let cfg = read_config().step("read the initramfs configuration", HINT_REBUILD)?;
    let args = bootargs::merge(&cfg.default_cmdline, raw.trim())
        .map_err(Error::from)
        .step("parse the kernel command line", HINT_SHELL)?;
    emergency::allow_shell(args.shell);
    console::set_debug(args.debug);
    for u in &args.unknown {
        console::warn(&format!("unknown kernel command line key {u} (ignored)"));
    }
    let rendered = args.render().join(" ");
    console::stage(
        "cmdline",
        &format!("profile={} {}", cfg.profile, if rendered.is_empty() { "(no oa.* keys)" } else { &rendered }),
    );
    if let Ok(u) = nix::sys::utsname::uname() {
        let running = u.release().to_string_lossy();
        if !cfg.kernel_release.is_empty() && running != cfg.kernel_release.as_str() {
            console::warn(&format!(
                "kernel {running} is running but the initramfs modules are for {}",
                cfg.kernel_release
            ));
        }
    }

    // 3. Kernel modules: the initramfs list (squashfs, overlay, loop, the profile's modules),
    // then oa.modules=, then coldplug's first walk of sysfs (the driver classes the initramfs
    // carries); oa.blacklist= applies to all three.
    let t = Instant::now();
    let (listed, refused): (Vec<String>, Vec<String>) =
        cfg.modules.iter().cloned().partition(|m| !args.blacklist.contains(&normalize(m)));
    for m in &refused {
        console::info(&format!("module {} not loaded ({}=)", normalize(m), cmdline::BLACKLIST));
    }
    let r = modules::load_all(Path::new("/"), &listed);
    for (m, why) in &r.failed {
        console::warn(&format!("module {m} not loaded: {why}"));
    }
    if let Err(e) = crate::coldplug::mount_image(&cfg.kernel_release) {
        console::warn(&format!("cannot mount the driver image: {e} (only the listed modules are loaded)"));
    }
    let mut coldplug = Coldplug::open(&cfg.kernel_release, &args.blacklist, &cfg.drivers);
    coldplug.note_listed(&listed, &r.failed);
    coldplug.load_named(&args.modules);
    coldplug.start();
    let by_coldplug = if coldplug.active() {
        format!(
            " ({} listed, {} by name; coldplug: {} drivers asked for, cheapest first; driver classes: {})",
            r.loaded,
            coldplug.loaded(),
            coldplug.queued(),
            coldplug.drivers()
        )
    } else {
        String::new()
    };
    console::stage("modules", &format!("loaded {} modules in {} ms{by_coldplug}", r.loaded + coldplug.loaded(), ms(t)));
    if r.present > 0 || !r.failed.is_empty() {
        console::debug(&format!("modules: {} already present, {} failed", r.present, r.failed.len()));
    }

    // 4.+5. Find and verify the root image.
    let (root, tree) = find_and_verify(&args, &cfg, &mut coldplug)?;

    // 5a. oa.config=: fetched (the network is up already for oa.root=http://) or read, checked
    // (signature too, with a key in the initramfs), left in /run/oa/config.json. A failure is
    // a warning: the profile alone applies; FATAL when the profile requires a configuration.
    let trust = crate::runtime_config::Trust::from_initramfs(cfg.config_required);
    let runtime =
        crate::runtime_config::fetch(args.config.as_deref(), Path::new(mp::RUNTIME_CONFIG), &mut coldplug, &trust)
            .step("get the run-time configuration", HINT_SHELL)?;

    // 5b. Persistence (oa-storage, persist.rs): the state subvolume at /run/oa/rw, or tmpfs.
    // Its disk may be on another controller than the root: every driver first.
    if Path::new("/").join(initramfs_paths::PERSIST_CONFIG).exists() {
        coldplug.settle();
    }
    let upper = crate::persist::setup(&args).step("set up persistence", HINT_SHELL)?;
    let persistent = matches!(upper, crate::persist::Upper::Persistent);

    // 6. Mount lower (squashfs), rw (tmpfs unless persistent), overlay.
    let t = Instant::now();
    let mut paths = if persistent { crate::persist::persisted_paths() } else { Vec::new() };
    // What the run-time configuration wrote (var/lib/oa) persists whenever what it wrote can,
    // so that a key a later configuration drops is taken back.
    if !paths.is_empty() {
        paths.push(format!("/{}", rootfs_paths::OA_STATE));
    }
    let verity = args.verity.as_ref().map(|v| (v, tree.as_deref()));
    assemble(&root, verity, persistent, &paths).step("assemble the root filesystem", HINT_SHELL)?;
    let rw_kind = if persistent { "persistent state (btrfs on LUKS2)" } else { "tmpfs" };
    console::stage(
        "overlay",
        &format!("{} (squashfs, read-only) + {rw_kind} => {} in {} ms", root.display(), mp::SYSROOT, ms(t)),
    );
    save_bootargs(&args);

    // 7. switch_root and exec stage 2 (or systemd).
    let sysroot = Path::new(mp::SYSROOT);
    let system = system_init(sysroot);
    let (init, argv) =
        next_init(sysroot, system.as_ref()).step("choose the init of the root filesystem", HINT_REBUILD)?;
    // Coldplug stops here: oa-init's stage 2 goes on from the driver image after the ready
    // line (the devices left, and those plugged in later); systemd does not, so for it every
    // device gets its driver now.
    let systemd_root = init != format!("/{}", rootfs_paths::INIT);
    if systemd_root {
        coldplug.settle();
        // A netboot's DHCP lease: systemd's network configuration takes it from here.
        crate::net::lease::hand_over();
    }
    console::debug(&coldplug.summary());
    drop(coldplug);
    if let Err(e) = crate::coldplug::hand_over(&cfg.kernel_release) {
        console::warn(&format!("driver image not kept for stage 2: {e}"));
    }
    // systemd does not read /run/oa/config.json: apply it to the new root here.
    if let (Some(rc), true) = (&runtime, systemd_root) {
        crate::runtime_config::report(mp::SYSROOT, &crate::runtime_config::apply(sysroot, rc));
        crate::runtime_config::discard(system.as_ref().is_some_and(|s| s.keep_runtime_config));
    }
    switch_root::switch_root(sysroot).step("switch_root", HINT_SHELL)?;
    emergency::set_stage(2);
    console::stage(
        "switch_root",
        &format!("{} is now /, exec {} ({} ms since stage 1 started)", mp::SYSROOT, argv.join(" "), ms(t0)),
    );
    exec(&init, &argv).step("start the init of the root filesystem", HINT_REBUILD)
}

/// The root image, and the partition holding its verity hash tree when `oa.verity.hash=`
/// puts it on one (`None` once both are copied into RAM as one image).
fn find_and_verify(
    args: &BootArgs,
    cfg: &InitramfsConfig,
    coldplug: &mut Coldplug,
) -> std::result::Result<(PathBuf, Option<PathBuf>), Failure> {
    let t = Instant::now();
    let found = devices::find_root(args.root.as_ref(), args.sha256.as_deref(), coldplug)
        .step("find the root image", HINT_SHELL)?;
    let how = match &args.root {
        Some(s) => cmdline::word(cmdline::ROOT, s),
        None => "scan for a squashfs image".to_string(),
    };
    console::stage("root", &format!("found {} ({how}) in {} ms", found.path.display(), ms(t)));
    let tree = match (&args.verity, &args.verity_hash) {
        (Some(_), Some(spec)) => {
            let t = devices::find_root(Some(spec), None, coldplug).step("find the verity hash tree", HINT_SHELL)?;
            console::debug(&format!(
                "verity hash tree on {} ({})",
                t.path.display(),
                cmdline::word(cmdline::VERITY_HASH, spec)
            ));
            Some(t.path)
        }
        _ => None,
    };

    // 4a. Copy-to-RAM: the copy is hashed on the way, which is then the verification.
    let mode = args.copytoram.unwrap_or(cfg.copytoram);
    if found.device.is_none() {
        if mode == CopyToRam::Yes {
            console::info(&format!(
                "{}: the root image is not on a block device (downloaded into RAM): nothing to copy",
                cmdline::COPYTORAM
            ));
        }
    } else if mode != CopyToRam::No {
        // With dm-verity the image is the data and the hash tree (after it, or on its own
        // partition): copy both, into one image with the tree after the data.
        let parts = match &args.verity {
            None => rootimage::len(&found.path).map(|l| vec![(found.path.clone(), l)]),
            Some(v) => verity_parts(&found.path, tree.as_deref(), v),
        }
        .step("size the root image", HINT_SHELL)?;
        let len: u64 = parts.iter().map(|(_, l)| l).sum();
        let (copy, why) =
            media::decide(mode, cfg.copytoram_ram_factor, len, found.device.as_ref(), media::meminfo("MemTotal"));
        if copy {
            let t = Instant::now();
            let parts: Vec<(&Path, u64)> = parts.iter().map(|(p, l)| (p.as_path(), *l)).collect();
            let (ram, _) =
                media::copy_to_ram(&parts, args.sha256.as_deref()).step("copy the root image to RAM", HINT_SHELL)?;
            console::stage(
                "copytoram",
                &format!(
                    "{} MiB from {} into RAM in {} ms ({why})",
                    len.div_ceil(1 << 20),
                    found.path.display(),
                    ms(t)
                ),
            );
            if let Some(m) = &found.medium {
                if let Err(e) = media::release(m) {
                    console::warn(&format!("the medium stays in use: {e}"));
                }
            }
            match &args.sha256 {
                _ if args.verity.is_some() => {} // mapped through dm-verity when it is mounted
                Some(_) => console::stage("verify", "sha256 matches (checked while copying to RAM)"),
                None => console::stage("verify", "skipped (no oa.sha256= given)"),
            }
            return Ok((ram, None));
        }
        console::debug(&format!("{}: not copied ({why})", cmdline::COPYTORAM));
    }
    match (&args.sha256, &found.verified_sha256) {
        // dm-verity checks each block when it is read (assemble): no hashing of the whole image.
        _ if args.verity.is_some() => {}
        (Some(_), Some(_)) => console::stage("verify", "sha256 matches (checked while scanning)"),
        (Some(want), None) => {
            let t = Instant::now();
            let (got, len) = rootimage::hash(&found.path).step("verify the root image", HINT_SHELL)?;
            if &got != want {
                return Err(Failure {
                    what: "verify the root image",
                    err: Error::HashMismatch {
                        device: found.path.display().to_string(),
                        expected: want.clone(),
                        actual: got,
                    },
                    default_hint: "",
                });
            }
            console::stage(
                "verify",
                &format!("sha256 matches ({len} bytes of {} in {} ms)", found.path.display(), ms(t)),
            );
        }
        (None, _) => console::stage("verify", "skipped (no oa.sha256= given)"),
    }
    Ok((found.path, tree))
}

/// Where a verity root image's bytes are: data + hash tree on `path`, or the data on `path`
/// and the tree on `tree`; each checked against what its device or file holds.
fn verity_parts(path: &Path, tree: Option<&Path>, v: &VerityArgs) -> Result<Vec<(PathBuf, u64)>> {
    let data = v.data_blocks * oa_contract::cmdline::VERITY_BLOCK_SIZE;
    let parts = match tree {
        None => vec![(path.to_path_buf(), v.image_bytes(), "data and hash tree")],
        Some(t) => {
            vec![(path.to_path_buf(), data, "the data"), (t.to_path_buf(), v.image_bytes() - data, "the hash tree")]
        }
    };
    for (p, want, what) in &parts {
        let have = rootimage::device_size(p)?;
        if have < *want {
            return Err(Error::Verity {
                device: p.display().to_string(),
                root_hash: v.root_hash.clone(),
                over: format!("{} data blocks", v.data_blocks),
                why: format!("it is truncated: {what} need {want} bytes, it has {have}"),
            });
        }
    }
    Ok(parts.into_iter().map(|(p, l, _)| (p, l)).collect())
}

/// Mount the root image read-only at LOWER, a tmpfs at RW, the overlay of both at SYSROOT.
fn assemble(
    image: &Path,
    verity: Option<(&VerityArgs, Option<&Path>)>,
    persistent: bool,
    paths: &[String],
) -> Result<()> {
    let md = std::fs::metadata(image).ctx("stat", image)?;
    // Keep the loop device open until it is mounted (it is set up with autoclear).
    let attached = if md.is_file() {
        let a = loopdev::attach_readonly(image)?;
        console::debug(&format!("{} attached to {}", image.display(), a.path.display()));
        Some(a)
    } else {
        None
    };
    let dev = attached.as_ref().map_or_else(|| image.to_path_buf(), |a| a.path.clone());
    let lower = Path::new(mp::LOWER);
    let rw = Path::new(mp::RW);
    let sysroot = Path::new(mp::SYSROOT);
    mounts::ensure_dir(lower)?;
    match verity {
        None => mounts::mount(&dev.display().to_string(), lower, "squashfs", MsFlags::MS_RDONLY, None)?,
        Some((v, tree)) => {
            verity_parts(&dev, tree, v)?; // a clear error before the kernel's -E2BIG
            let mapped = dm::map_verity(VERITY_NAME, &dev, tree, v)?;
            console::stage(
                "verify",
                &oa_contract::console::verity_stage_text(&v.root_hash, &dev.display().to_string(), v.data_blocks),
            );
            let m = mapped.path.display().to_string();
            let bad = |why: String| Error::Verity {
                device: m.clone(),
                root_hash: v.root_hash.clone(),
                over: dev.display().to_string(),
                why,
            };
            // A block that does not match reads as an I/O error: the superblock on mount.
            mounts::mount(&m, lower, "squashfs", MsFlags::MS_RDONLY, None).map_err(|e| bad(e.to_string()))?;
            // ... and a changed block elsewhere when it is read; check the root directory now.
            std::fs::read_dir(lower).map_err(|e| bad(format!("reading {}: {e}", lower.display())))?;
        }
    }
    drop(attached);
    mounts::ensure_dir(rw)?;
    if !persistent {
        mounts::mount("tmpfs", rw, "tmpfs", MsFlags::MS_NOSUID | MsFlags::MS_NODEV, Some("mode=0755"))?;
    }
    // With `[persistence] paths`, only those paths persist: the root's upper layer is a tmpfs
    // and each path gets an overlay of its own whose upper layer is in the state subvolume.
    let root_rw = if paths.is_empty() {
        rw.to_path_buf()
    } else {
        let v = Path::new(VOLATILE);
        mounts::ensure_dir(v)?;
        mounts::mount("tmpfs", v, "tmpfs", MsFlags::MS_NOSUID | MsFlags::MS_NODEV, Some("mode=0755"))?;
        v.to_path_buf()
    };
    let upper = root_rw.join("upper");
    let work = root_rw.join("work");
    mounts::ensure_dir(&upper)?;
    mounts::ensure_dir(&work)?;
    mounts::ensure_dir(sysroot)?;
    let data = format!("lowerdir={},upperdir={},workdir={}", lower.display(), upper.display(), work.display());
    mounts::mount("overlay", sysroot, "overlay", MsFlags::empty(), Some(&data))?;
    for m in path_mounts(paths) {
        let state = rw.join("paths").join(&m.key);
        let (up, wk) = (state.join("upper"), state.join("work"));
        mounts::ensure_dir(&up)?;
        mounts::ensure_dir(&wk)?;
        let target = sysroot.join(&m.rel);
        mounts::ensure_dir(&target)?;
        let low = lower.join(&m.rel);
        if low.is_dir() {
            let data = format!("lowerdir={},upperdir={},workdir={}", low.display(), up.display(), wk.display());
            mounts::mount("overlay", &target, "overlay", MsFlags::empty(), Some(&data))?;
        } else {
            // Not in the image: the persistent folder itself.
            mounts::mount(&up.display().to_string(), &target, "", MsFlags::MS_BIND, None)?;
        }
        console::stage(
            "persist",
            &format!("/{} persists ({})", m.rel, if low.is_dir() { "overlay on the image" } else { "bind" }),
        );
    }
    Ok(())
}

/// The tmpfs upper layer of the root when only some paths persist.
/// The device-mapper name of the verity-mapped root image.
const VERITY_NAME: &str = "oa-root";
const VOLATILE: &str = "/run/oa/volatile";

/// One persisted path: relative to the root, and its folder name in the state subvolume.
#[derive(Debug, PartialEq, Eq)]
struct PathMount {
    rel: String,
    key: String,
}

/// The mounts for `[persistence] paths`, parents before children, each path once; its folder
/// in the state is the path with `%` and `/` escaped, so distinct paths never share one.
fn path_mounts(paths: &[String]) -> Vec<PathMount> {
    let mut rels: Vec<String> = paths
        .iter()
        .map(|p| p.trim_matches('/').to_string())
        .filter(|p| !p.is_empty() && !p.split('/').any(|c| c == ".." || c == "."))
        .collect();
    rels.sort_by_key(|r| (r.matches('/').count(), r.clone()));
    rels.dedup();
    rels.into_iter().map(|rel| PathMount { key: rel.replace('%', "%25").replace('/', "%2f"), rel }).collect()
}

fn save_bootargs(args: &BootArgs) {
    if let Err(e) = std::fs::write(bootargs::SAVED, args.render().join(" ") + "\n") {
        console::warn(&format!("write {}: {e} (stage 2 will read /proc/cmdline only)", bootargs::SAVED));
    }
}

/// What stage 1 needs of the new root's system.json (`init`, `keep_runtime_config`), read
/// once and leniently: stage 2 reads the whole file strictly (and fails with a hint).
fn system_init(sysroot: &Path) -> Option<SystemInit> {
    std::fs::read_to_string(sysroot.join(rootfs_paths::SYSTEM_CONFIG))
        .ok()
        .and_then(|t| serde_json::from_str::<SystemInit>(&t).ok())
}

/// The init to exec in the new root: oa-init stage2, or /sbin/init when system.json says
/// `"init": "systemd"`. Checked before switch_root, while the emergency shell still exists.
fn next_init(sysroot: &Path, system: Option<&SystemInit>) -> Result<(String, Vec<String>)> {
    let systemd = system.is_some_and(|s| s.init == InitSystem::Systemd);
    let (init, argv) = if systemd {
        ("/sbin/init".to_string(), vec!["/sbin/init".to_string()])
    } else {
        let p = format!("/{}", rootfs_paths::INIT);
        (p.clone(), vec![p, "stage2".to_string()])
    };
    let inside = sysroot.join(init.trim_start_matches('/'));
    // symlink_metadata is not enough (/sbin/init is usually a symlink): follow it.
    if std::fs::metadata(&inside).is_err() && std::fs::symlink_metadata(&inside).is_err() {
        return Err(Error::Unexpected { what: inside.display().to_string(), why: "missing in the root image".into() });
    }
    Ok((init, argv))
}

fn exec(init: &str, argv: &[String]) -> Result<std::convert::Infallible> {
    let c =
        |s: &str| CString::new(s).map_err(|_| Error::Unexpected { what: s.into(), why: "contains a NUL byte".into() });
    let path = c(init)?;
    let argv: Vec<CString> = argv.iter().map(|a| c(a)).collect::<Result<_>>()?;
    nix::unistd::execv(&path, &argv).sys("exec", init)
}

#[cfg(test)]
mod path_tests {
    use super::*;

    #[test]
    fn parents_first_escaped_and_unique() {
        let v = path_mounts(&[
            "/etc/ssh".into(),
            "/etc".into(),
            "/var/lib/".into(),
            "/etc".into(),
            "/../x".into(),
            "/".into(),
        ]);
        let rels: Vec<&str> = v.iter().map(|m| m.rel.as_str()).collect();
        assert_eq!(rels, ["etc", "etc/ssh", "var/lib"]);
        assert_eq!(v[1].key, "etc%2fssh");
    }
}
