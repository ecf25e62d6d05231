//! A small local Arch repository made from Debian binaries, for the tests (Arch mirrors are
//! not reachable from here): builder/tests/bases.rs and qemu-tests/tests/bases.rs build Arch
//! bases from it. Packages are made with the builder's own `bases::archpkg`.

use oa_builder::bases::archpkg::{build_package, repo_add, PkgSpec};
use oa_builder::error::{Error, IoContext, Result};
use std::path::{Path, PathBuf};
use std::process::Command;

/// A small local Arch repository made from Debian binaries, for offline use and the tests:
/// `filesystem` (the directory layout, /etc/passwd ...), `busybox` (Debian's busybox-static
/// with a link per applet) and, with `kernel_modules`, `linux` (a Debian kernel's vmlinuz at
/// `/usr/lib/modules/<release>/vmlinuz` and those modules with their dependencies).
/// Returns the repository folder (holding `<repo>.db`), ready for `file://`.
pub fn demo_repo(dir: &Path, repo: &str, cache_root: &Path, kernel_modules: Option<&[String]>) -> Result<PathBuf> {
    use std::os::unix::fs::symlink;
    let _ = std::fs::remove_dir_all(dir);
    let work = dir.join(".work");
    let repo_dir = dir.join(repo);
    std::fs::create_dir_all(&work).ctx("creating", &work)?;
    let spec = |name: &str, version: &str, desc: &str, depends: &[&str]| PkgSpec {
        name: name.into(),
        version: version.into(),
        description: desc.into(),
        arch: "x86_64".into(),
        depends: depends.iter().map(|s| s.to_string()).collect(),
    };
    let mut pkgs = Vec::new();

    // filesystem
    let fs = work.join("filesystem");
    for d in ["usr/bin", "usr/lib", "etc", "var/log", "tmp", "root", "home", "proc", "sys", "dev", "run", "mnt"] {
        std::fs::create_dir_all(fs.join(d)).ctx("creating", fs.join(d))?;
    }
    for (l, t) in
        [("bin", "usr/bin"), ("sbin", "usr/bin"), ("lib", "usr/lib"), ("lib64", "usr/lib"), ("usr/sbin", "bin")]
    {
        symlink(t, fs.join(l)).ctx("creating symlink", fs.join(l))?;
    }
    for (f, c, m) in [
        ("etc/passwd", "root:x:0:0:root:/root:/bin/sh\n", 0o644),
        ("etc/group", "root:x:0:\n", 0o644),
        ("etc/shadow", "root:*:19000:0:99999:7:::\n", 0o600),
        ("etc/hosts", "127.0.0.1 localhost\n::1 localhost\n", 0o644),
        ("etc/profile", "export PATH=/usr/bin\n", 0o644),
        ("etc/os-release", "NAME=\"oa local Arch repository\"\nID=arch\n", 0o644),
    ] {
        oa_builder::fsutil::write_file(&fs.join(f), c.as_bytes(), m)?;
    }
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(fs.join("tmp"), std::fs::Permissions::from_mode(0o1777))
            .ctx("chmod", fs.join("tmp"))?;
        std::fs::set_permissions(fs.join("root"), std::fs::Permissions::from_mode(0o700))
            .ctx("chmod", fs.join("root"))?;
    }
    pkgs.push(build_package(&spec("filesystem", "2024.01-1", "oa: base directory layout", &[]), &fs, &repo_dir)?);

    // busybox, from Debian's busybox-static.
    let apt = oa_builder::apt::PackageCache::new(cache_root);
    let (deb, info) = apt.fetch("busybox-static", "amd64")?;
    let bb = work.join("busybox");
    let unpacked = work.join("busybox-deb");
    std::fs::create_dir_all(&unpacked).ctx("creating", &unpacked)?;
    oa_builder::deb::extract(&deb, &unpacked, &|p| p == Path::new("bin/busybox"))?;
    std::fs::create_dir_all(bb.join("usr/bin")).ctx("creating", bb.join("usr/bin"))?;
    std::fs::rename(unpacked.join("bin/busybox"), bb.join("usr/bin/busybox"))
        .ctx("moving", bb.join("usr/bin/busybox"))?;
    let list = oa_builder::tool::run(Command::new(bb.join("usr/bin/busybox")).arg("--list"), "busybox", "")?;
    for applet in list.lines().map(str::trim).filter(|a| !a.is_empty() && *a != "busybox") {
        let _ = symlink("busybox", bb.join("usr/bin").join(applet));
    }
    let version = info.version.split(':').next_back().unwrap_or("1").replace('-', ".") + "-1";
    pkgs.push(build_package(
        &spec("busybox", &version, "oa: Debian's busybox-static", &["filesystem"]),
        &bb,
        &repo_dir,
    )?);

    // linux, from the Debian kernel the builder uses.
    if let Some(mods) = kernel_modules {
        let mut name = "linux-image-amd64".to_string();
        let mut kdeb = None;
        for _ in 0..4 {
            let (path, info) = apt.fetch(&name, "amd64")?;
            match info.depends.iter().find(|d| d.starts_with("linux-image-")) {
                Some(real) => name = real.clone(),
                None => {
                    kdeb = Some((path, info));
                    break;
                }
            }
        }
        let (kpath, kinfo) = kdeb.ok_or_else(|| Error::Base("no Debian kernel image package".into()))?;
        let (k, _) = oa_builder::kernel::Kernel::from_deb(&kpath, cache_root, false)?;
        let lx = work.join("linux");
        let moddir = lx.join("usr/lib/modules").join(&k.release);
        std::fs::create_dir_all(&moddir).ctx("creating", &moddir)?;
        std::fs::copy(&k.vmlinuz, moddir.join("vmlinuz")).ctx("copying vmlinuz", &moddir)?;
        for f in ["modules.builtin", "modules.order"] {
            let src = k.root.join("lib/modules").join(&k.release).join(f);
            if src.exists() {
                std::fs::copy(&src, moddir.join(f)).ctx("copying", &src)?;
            }
        }
        for m in k.module_closure(mods)? {
            // lib/modules/<rel>/kernel/... -> usr/lib/modules/<rel>/kernel/...
            let rel = m.trim_start_matches("usr/").to_string();
            let dst = lx.join("usr").join(&rel);
            if let Some(parent) = dst.parent() {
                std::fs::create_dir_all(parent).ctx("creating", parent)?;
            }
            std::fs::copy(k.root.join(&m), &dst).ctx("copying module", &dst)?;
        }
        let v = kinfo.version.replace(['-', '+', '~'], ".") + "-1";
        pkgs.push(build_package(&spec("linux", &v, "oa: a Debian kernel as an Arch package", &[]), &lx, &repo_dir)?);
    }
    repo_add(&repo_dir.join(format!("{repo}.db.tar.gz")), &pkgs)?;
    let _ = std::fs::remove_dir_all(&work);
    Ok(repo_dir)
}
