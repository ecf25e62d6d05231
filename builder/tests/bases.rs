//! Full-OS bases without QEMU (docs/bases.md): bad input stops the build at the base stage
//! naming the package or mirror and leaves nothing partial in the cache; the Arch base builds
//! from a local repository made here (Arch mirrors are not reachable), reuses its package
//! cache, and an overlay change rebuilds the rootfs but not the base; `--refresh` remakes the
//! base and rebuilds the rootfs only when a package version changed.
//!
//! These run the real tools (mmdebstrap against the host's Debian mirror, pacman, repo-add)
//! and need root, like `oa build` of a full-OS base.

use oa_builder::build::default_cache_root;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

mod common;
use common::{oa, stderr};

/// A scratch folder with a fresh cache whose downloaded packages and kernels are shared with
/// the user's cache (so the tests do not download kernels again).
fn scratch() -> (tempfile::TempDir, PathBuf) {
    let d = tempfile::tempdir().expect("temp dir");
    let cache = d.path().join("cache");
    std::fs::create_dir_all(&cache).unwrap();
    let shared = default_cache_root();
    for sub in ["debs", "kernels"] {
        std::fs::create_dir_all(shared.join(sub)).unwrap();
        std::os::unix::fs::symlink(shared.join(sub), cache.join(sub)).unwrap();
    }
    (d, cache)
}

/// Nothing in the cache's stage folder but finished stages with their digests.
fn assert_no_partial_stage(cache: &Path) {
    let stages = cache.join("stages");
    for e in std::fs::read_dir(&stages).into_iter().flatten().flatten() {
        let n = e.file_name().to_string_lossy().to_string();
        assert!(!n.starts_with("base-"), "a failed base stage left {n} in the cache");
        assert!(!n.starts_with('.'), "a failed stage left its temporary {n} in the cache");
    }
}

fn build(dir: &Path, cache: &Path, toml: &str) -> Output {
    std::fs::write(dir.join("p.toml"), toml).unwrap();
    let out = dir.join("out");
    oa(&["build", "p.toml", "--out", out.to_str().unwrap(), "--cache", cache.to_str().unwrap()], dir)
}

const DEBIAN: &str = "hostname = \"d\"\nbase = \"debian\"\n[init]\nemergency_shell = false\nsystem = \"systemd\"\n";

#[test]
fn debian_missing_package_is_named_and_nothing_is_cached() {
    let (d, cache) = scratch();
    let o =
        build(d.path(), &cache, &format!("{DEBIAN}[packages]\ndebian = [\"systemd-sysv\", \"oa-no-such-package\"]\n"));
    assert!(!o.status.success());
    let e = stderr(&o);
    assert!(e.contains("base: FAILED") || e.contains("base"), "fails in the base stage: {e}");
    assert!(e.contains("oa-no-such-package"), "names the package: {e}");
    assert_no_partial_stage(&cache);
    assert!(!d.path().join("out").exists());
}

#[test]
fn debian_unreachable_mirror_is_named() {
    let (d, cache) = scratch();
    let o = build(
        d.path(),
        &cache,
        &format!("{DEBIAN}[debian]\nmirror = \"http://127.0.0.1:9/debian\"\nsuite = \"bookworm\"\n"),
    );
    assert!(!o.status.success());
    let e = stderr(&o);
    assert!(e.contains("http://127.0.0.1:9/debian"), "names the mirror: {e}");
    assert!(e.contains("[2/") && e.contains("base: FAILED"), "stops at the base stage: {e}");
    assert_no_partial_stage(&cache);
}

/// A local repository with busybox + filesystem (and `linux` when asked).
fn local_repo(dir: &Path, cache: &Path, kernel: bool) -> PathBuf {
    let mods: Vec<String> =
        ["virtio_pci", "virtio_blk", "squashfs", "overlay", "loop"].iter().map(|s| s.to_string()).collect();
    oa_testkit::archrepo::demo_repo(&dir.join("repo"), "oa-local", cache, kernel.then_some(mods.as_slice()))
        .expect("making the local Arch repository")
}

fn arch_profile(repo: &Path, sig: &str, packages: &str, extra: &str) -> String {
    arch_profile_with(repo, sig, packages, "", extra)
}

fn arch_profile_with(repo: &Path, sig: &str, packages: &str, pacman_extra: &str, extra: &str) -> String {
    format!(
        "hostname = \"a\"\nbase = \"arch\"\n[init]\nemergency_shell = false\n[packages]\narch = [{packages}]\n\
         [kernel]\nmodules = [\"virtio_blk\", \"squashfs\", \"overlay\"]\n\
         [pacman]\nsig_level = \"{sig}\"\n{pacman_extra}[pacman.repos.oa-local]\nservers = [\"file://{}\"]\n{extra}",
        repo.display()
    )
}

#[test]
fn arch_missing_package_is_named() {
    let (d, cache) = scratch();
    let repo = local_repo(d.path(), &cache, false);
    let o = build(d.path(), &cache, &arch_profile(&repo, "Never", "\"busybox\", \"oa-no-such-package\"", ""));
    assert!(!o.status.success());
    let e = stderr(&o);
    assert!(e.contains("Arch package `oa-no-such-package`"), "names the package: {e}");
    assert!(e.contains("base: FAILED"), "stops at the base stage: {e}");
    assert_no_partial_stage(&cache);
}

#[test]
fn arch_signature_failure_is_named() {
    let (d, cache) = scratch();
    let repo = local_repo(d.path(), &cache, false);
    // The local packages are not signed: `Required` must refuse them.
    let o = build(d.path(), &cache, &arch_profile(&repo, "Required DatabaseOptional", "\"busybox\"", ""));
    assert!(!o.status.success());
    let e = stderr(&o);
    assert!(e.contains("signature"), "says it is the signature: {e}");
    assert!(
        e.contains("busybox") || e.contains("filesystem") || e.contains("oa-local"),
        "names the package or repository: {e}"
    );
    assert_no_partial_stage(&cache);
}

#[test]
fn arch_unreachable_mirror_is_named() {
    let (d, cache) = scratch();
    let o = build(d.path(), &cache, &arch_profile(Path::new("/nonexistent/oa-repo"), "Never", "\"busybox\"", ""));
    assert!(!o.status.success());
    let e = stderr(&o);
    assert!(e.contains("file:///nonexistent/oa-repo"), "names the mirror: {e}");
    assert!(e.contains("base: FAILED"), "stops at the base stage: {e}");
    assert_no_partial_stage(&cache);
}

#[test]
fn arch_base_is_cached_and_an_overlay_change_rebuilds_only_the_rootfs() {
    let (d, cache) = scratch();
    let repo = local_repo(d.path(), &cache, true);
    let overlay = d.path().join("overlay/etc");
    std::fs::create_dir_all(&overlay).unwrap();
    std::fs::write(overlay.join("motd"), "one\n").unwrap();
    let pkgcache = d.path().join("pkgcache");
    let extra = "[users.admin]\nssh_authorized_keys = [\"ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOaTestKeyOnly test\"]\n";
    let cache_dir = format!("cache_dir = \"{}\"\n", pkgcache.display());
    let toml = arch_profile_with(&repo, "Never", "\"busybox\", \"linux\"", &cache_dir, extra)
        .replace("[init]", "overlays = [\"overlay\"]\n[init]");
    let o = build(d.path(), &cache, &toml);
    assert!(o.status.success(), "{}", stderr(&o));
    let e = stderr(&o);
    assert!(e.contains("from the `linux` package"), "the kernel comes from the Arch base: {e}");
    // The package cache folder holds the packages for the next build.
    let cached: Vec<_> =
        std::fs::read_dir(&pkgcache).unwrap().flatten().map(|e| e.file_name().to_string_lossy().to_string()).collect();
    assert!(
        cached.iter().any(|n| n.starts_with("busybox-") && n.ends_with(".pkg.tar.zst")),
        "package cache: {cached:?}"
    );

    let line = |e: &str, stage: &str| {
        e.lines().find(|l| l.trim_start().starts_with(&format!("{stage}:"))).unwrap_or_default().to_string()
    };
    // Nothing changed: every stage from the cache.
    let o = build(d.path(), &cache, &toml);
    let e = stderr(&o);
    assert!(o.status.success(), "{e}");
    for s in ["base", "kernel", "rootfs", "initramfs"] {
        assert!(line(&e, s).contains("[cached]"), "{s} reused: {e}");
    }
    // One overlay file changed: the rootfs is rebuilt, the base tree and kernel are not.
    std::fs::write(overlay.join("motd"), "two\n").unwrap();
    let o = build(d.path(), &cache, &toml);
    let e = stderr(&o);
    assert!(o.status.success(), "{e}");
    assert!(line(&e, "base").contains("[cached]"), "base reused: {e}");
    assert!(line(&e, "kernel").contains("[cached]"), "kernel reused: {e}");
    assert!(!line(&e, "rootfs").contains("[cached]"), "rootfs rebuilt: {e}");
    assert!(line(&e, "initramfs").contains("[cached]"), "initramfs reused: {e}");
    // The user and the key are in the image, owned by the user.
    let list = Command::new("unsquashfs").args(["-lln"]).arg(d.path().join("out/rootfs.squashfs")).output().unwrap();
    let list = String::from_utf8_lossy(&list.stdout).to_string();
    let keys = list
        .lines()
        .find(|l| l.ends_with("/home/admin/.ssh/authorized_keys"))
        .unwrap_or_else(|| panic!("no authorized_keys in {list}"));
    assert!(keys.starts_with("-rw-------") && keys.contains(" 1000/1000 "), "{keys}");
    // The build's package list, from pacman's database in the base tree.
    let packages = std::fs::read_to_string(d.path().join("out/packages.txt")).unwrap();
    assert!(packages.contains("filesystem 2024.01-1 x86_64\n") && packages.contains("\nlinux "), "{packages}");
    let out = d.path().join("out");
    let refresh = || {
        let o = oa(
            &["build", "p.toml", "--refresh", "--out", out.to_str().unwrap(), "--cache", cache.to_str().unwrap()],
            d.path(),
        );
        let e = stderr(&o);
        assert!(o.status.success(), "{e}");
        e
    };
    // --refresh with nothing new in the repository: the base is made again, and as its
    // package list is the same, the stages after it stay cached.
    let e = refresh();
    assert!(!line(&e, "base").contains("[cached]"), "base remade with --refresh: {e}");
    assert!(line(&e, "base").contains(", 0 package version(s) changed"), "{e}");
    for s in ["kernel", "rootfs", "initramfs"] {
        assert!(line(&e, s).contains("[cached]"), "{s} reused after a refresh that found nothing new: {e}");
    }
    // A new version of `filesystem` in the repository: --refresh takes it and rebuilds the rootfs.
    let old = std::fs::read_dir(&repo)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .find(|p| p.file_name().unwrap().to_string_lossy().starts_with("filesystem-2024.01-1"))
        .expect("the filesystem package in the repository");
    let tree = d.path().join("filesystem-tree");
    std::fs::create_dir_all(&tree).unwrap();
    let st = Command::new("tar").arg("-C").arg(&tree).args(["--zstd", "-xpf"]).arg(&old).status().unwrap();
    assert!(st.success());
    for meta in [".PKGINFO", ".MTREE", ".BUILDINFO"] {
        let _ = std::fs::remove_file(tree.join(meta));
    }
    let spec = oa_builder::bases::archpkg::PkgSpec {
        name: "filesystem".into(),
        version: "2024.02-1".into(),
        description: "oa: base directory layout".into(),
        arch: "x86_64".into(),
        depends: vec![],
    };
    let new = oa_builder::bases::archpkg::build_package(&spec, &tree, &repo).unwrap();
    oa_builder::bases::archpkg::repo_add(&repo.join("oa-local.db.tar.gz"), &[new]).unwrap();
    // (A `file://` repository's database is part of the base key, so this is a new base entry
    // even without --refresh; with a remote mirror the key stays and --refresh finds it.)
    let e = refresh();
    assert!(!line(&e, "base").contains("[cached]"), "{e}");
    assert!(!line(&e, "rootfs").contains("[cached]"), "rootfs rebuilt for the new version: {e}");
    let packages = std::fs::read_to_string(d.path().join("out/packages.txt")).unwrap();
    assert!(packages.contains("filesystem 2024.02-1 x86_64\n"), "{packages}");
    // --no-cache redoes every stage.
    let o = oa(
        &["build", "p.toml", "--no-cache", "--out", out.to_str().unwrap(), "--cache", cache.to_str().unwrap()],
        d.path(),
    );
    let e = stderr(&o);
    assert!(o.status.success(), "{e}");
    for s in ["base", "kernel", "rootfs", "initramfs"] {
        assert!(!line(&e, s).contains("[cached]"), "{s} redone with --no-cache: {e}");
    }
}
