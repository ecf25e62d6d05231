//! `base = "arch"`: the base tree installed with pacman (Debian's `pacman-package-manager`)
//! from the profile's repositories into an empty root, with a package cache folder reused
//! across builds. The kernel is taken from the installed `linux` package
//! (`/usr/lib/modules/<release>/vmlinuz`).

use crate::error::{Error, IoContext, Result};
use crate::hash::Key;
use crate::kernel::Kernel;
use crate::profile::Profile;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// The package cache folder (`[pacman] cache_dir`, else `<cache>/pacman/pkg`).
pub fn cache_dir(p: &Profile, cache_root: &Path) -> PathBuf {
    p.pacman.cache_dir.as_ref().map(PathBuf::from).unwrap_or_else(|| cache_root.join("pacman/pkg"))
}

/// Everything the base tree depends on. A `file://` repository also contributes its
/// database file, so rebuilding a local repository invalidates the base.
pub fn add_to(k: &mut Key, p: &Profile) {
    k.add("arch", p.arch.as_str().as_bytes()).add("siglevel", p.pacman.sig_level.as_bytes());
    for o in &p.pacman.options {
        k.add("option", o.as_bytes());
    }
    for r in &p.pacman.repos {
        k.add("repo", r.name.as_bytes()).add("repo-siglevel", r.sig_level.as_deref().unwrap_or("").as_bytes());
        for s in &r.servers {
            k.add("server", s.as_bytes());
            if let Some(dir) = s.strip_prefix("file://") {
                let dir = dir.replace("$repo", &r.name).replace("$arch", p.arch.as_str());
                let db = Path::new(&dir).join(format!("{}.db", r.name));
                if let Ok(d) = crate::hash::sha256_file(&db) {
                    k.add("db", d.as_bytes());
                }
            }
        }
    }
    let mut pkgs = p.packages.arch.clone();
    pkgs.sort();
    for pk in &pkgs {
        k.add("package", pk.as_bytes());
    }
}

/// The pacman.conf for this profile.
pub fn pacman_conf(p: &Profile) -> String {
    let mut s = String::from("# written by oa build from the profile's [pacman] section\n[options]\n");
    s.push_str(&format!("Architecture = {}\nSigLevel = {}\n", p.arch.as_str(), p.pacman.sig_level));
    for o in &p.pacman.options {
        s.push_str(o);
        s.push('\n');
    }
    for r in &p.pacman.repos {
        s.push_str(&format!("\n[{}]\n", r.name));
        if let Some(l) = &r.sig_level {
            s.push_str(&format!("SigLevel = {l}\n"));
        }
        for srv in &r.servers {
            s.push_str(&format!("Server = {srv}\n"));
        }
    }
    s
}

/// Install the profile's packages into a fresh root, write it as the tarball `out` and the
/// installed packages to `packages` (`name version arch`, from pacman's local database).
pub fn install(p: &Profile, out: &Path, packages: &Path, cache_root: &Path) -> Result<()> {
    super::require_root("base = \"arch\" (pacman --root)")?;
    if crate::tool::which("pacman").is_none() {
        return Err(Error::ToolMissing {
            tool: "pacman".into(),
            why: "not on PATH".into(),
            hint: "install the Debian package pacman-package-manager (`make deps` does it)".into(),
        });
    }
    // Removed on return, whatever happens.
    let scratch = crate::cache::Store::open(cache_root)?.scratch()?;
    let work = scratch.path();
    {
        let root = work.join("root");
        let pkgcache = cache_dir(p, cache_root);
        for d in [root.join("var/lib/pacman"), root.join("var/log"), root.join("etc"), pkgcache.clone()] {
            std::fs::create_dir_all(&d).ctx("creating", &d)?;
        }
        let conf = work.join("pacman.conf");
        std::fs::write(&conf, pacman_conf(p)).ctx("writing", &conf)?;
        // The profile's keyring, else the host's pacman keyring, else an empty one (enough
        // for sig_level = "Never" or "Optional").
        let host_keyring = Path::new("/etc/pacman.d/gnupg");
        let gpg = match &p.pacman.gpg_dir {
            Some(g) => PathBuf::from(g),
            None if host_keyring.join("pubring.gpg").exists() => host_keyring.to_path_buf(),
            None => {
                let g = work.join("gnupg");
                std::fs::create_dir_all(&g).ctx("creating", &g)?;
                g
            }
        };
        let mut c = Command::new("pacman");
        c.arg("--root")
            .arg(&root)
            .arg("--dbpath")
            .arg(root.join("var/lib/pacman"))
            .arg("--cachedir")
            .arg(&pkgcache)
            .arg("--config")
            .arg(&conf)
            .arg("--gpgdir")
            .arg(&gpg)
            .arg("--logfile")
            .arg(root.join("var/log/pacman.log"))
            .args(["--noconfirm", "--noprogressbar", "--disable-download-timeout", "-Sy"])
            .args(&p.packages.arch)
            .stdin(Stdio::null());
        let o = c.output().map_err(|e| Error::ToolMissing {
            tool: "pacman".into(),
            why: e.to_string(),
            hint: "make deps".into(),
        })?;
        let mut text = String::from_utf8_lossy(&o.stdout).to_string();
        text.push_str(&String::from_utf8_lossy(&o.stderr));
        if !o.status.success() {
            return Err(classify(&text, p));
        }
        // Record where it came from, for people looking at the image.
        crate::fsutil::write_file(&root.join("etc/oa/pacman.conf"), pacman_conf(p).as_bytes(), 0o644)?;
        let list = installed(&root.join("var/lib/pacman/local"))?;
        std::fs::write(packages, list).ctx("writing", packages)?;
        super::pack_tar(&root, out)
    }
}

/// The packages in pacman's local database `local` (`<name>-<version>/desc`), as sorted
/// `name version arch` lines.
pub fn installed(local: &Path) -> Result<String> {
    let mut lines = Vec::new();
    for e in std::fs::read_dir(local).ctx("listing", local)?.flatten() {
        let Ok(desc) = std::fs::read_to_string(e.path().join("desc")) else { continue };
        let field = |name: &str| {
            let mut it = desc.lines();
            it.find(|l| l.trim() == name).and_then(|_| it.next()).map(|v| v.trim().to_string())
        };
        if let (Some(n), Some(v)) = (field("%NAME%"), field("%VERSION%")) {
            lines.push(format!("{n} {v} {}", field("%ARCH%").unwrap_or_else(|| "any".into())));
        }
    }
    lines.sort();
    Ok(lines.iter().map(|l| format!("{l}\n")).collect())
}

/// Turn pacman's output into an error naming the package or the mirror.
pub fn classify(text: &str, p: &Profile) -> Error {
    let servers: Vec<String> =
        p.pacman.repos.iter().flat_map(|r| r.servers.iter().map(move |s| format!("[{}] {s}", r.name))).collect();
    let line_with = |m: &str| text.lines().find(|l| l.contains(m)).map(str::trim).map(str::to_string);
    if let Some(l) = line_with("target not found:") {
        let name = l.rsplit(':').next().unwrap_or("?").trim().to_string();
        return Error::Base(format!(
            "Arch package `{name}`: not found in the repositories {} ({l})",
            servers.join(", ")
        ));
    }
    // A missing detached signature: `failed retrieving file 'x.db.sig'` / `'pkg-1.0-1-x86_64.pkg.tar.zst.sig'`.
    if let Some(l) = line_with(".sig'") {
        let file = l.split('\'').nth(1).unwrap_or("?");
        if let Some(repo) = file.strip_suffix(".db.sig") {
            return Error::Base(format!(
                "pacman repository `{repo}`: database signature check failed (SigLevel = {}): no {file}\n(sign the database, or use `Required DatabaseOptional`)",
                p.pacman.sig_level
            ));
        }
        let stem = file.trim_end_matches(".sig").split(".pkg.tar").next().unwrap_or(file);
        let name = stem.rsplitn(4, '-').nth(3).unwrap_or(stem);
        return Error::Base(format!(
            "Arch package `{name}`: signature check failed (SigLevel = {}): no signature {file}\n(sign the package, or relax sig_level for a trusted local repository)",
            p.pacman.sig_level
        ));
    }
    for m in ["signature", "PGP", "invalid or corrupted package", "unknown trust"] {
        if let Some(l) = line_with(m) {
            // "error: busybox: missing required signature"
            let name = l.trim_start_matches("error:").trim().split(':').next().unwrap_or("?").trim().to_string();
            return Error::Base(format!(
                "Arch package `{name}`: signature check failed (SigLevel = {}): {l}\n(sign the repository, give [pacman] gpg_dir with the signer's key, or relax sig_level for a trusted local repository)",
                p.pacman.sig_level
            ));
        }
    }
    for m in [
        "failed to synchronize",
        "failed retrieving file",
        "could not resolve host",
        "Could not connect",
        "failed to update",
    ] {
        if let Some(l) = line_with(m) {
            return Error::Base(format!(
                "pacman: a repository is unreachable ({l}); check the servers: {}\n{}",
                servers.join(", "),
                super::tail(text, 6)
            ));
        }
    }
    Error::Base(format!(
        "pacman failed installing {} from {}:\n{}",
        p.packages.arch.join(" "),
        servers.join(", "),
        super::tail(text, 12)
    ))
}

/// The kernel of an Arch base tree: `/usr/lib/modules/<release>/vmlinuz` and its modules,
/// unpacked once into a cache entry keyed by the base tree (compressed `.ko.zst`/`.ko.xz`
/// modules are decompressed there) and indexed. Returns whether it came from the cache.
pub fn kernel(base: &super::Tree, store: &crate::cache::Store, no_cache: bool) -> Result<(Kernel, bool)> {
    let mut key = crate::hash::Key::new("kernel-arch");
    key.add("base", base.content.as_bytes());
    let (entry, made) = store.get_or_build("kernel", &key.hex(), no_cache, |scratch| {
        let tmp = scratch.path();
        let mut c = Command::new("tar");
        c.arg("-C").arg(tmp).args(["--wildcards", "-xf"]).arg(&base.tar).arg("./usr/lib/modules/*");
        crate::tool::run(&mut c, "tar", "install tar").map_err(|_| {
            Error::Kernel(
                "the Arch base has no /usr/lib/modules: add the kernel package (`linux`) to [packages] arch".into(),
            )
        })?;
        let moddir = tmp.join("usr/lib/modules");
        let mut rels: Vec<String> = std::fs::read_dir(&moddir)
            .ctx("listing", &moddir)?
            .flatten()
            .filter(|e| e.path().join("vmlinuz").is_file())
            .map(|e| e.file_name().to_string_lossy().to_string())
            .collect();
        rels.sort();
        let rel = rels.pop().ok_or_else(|| {
            Error::Kernel(
                "no /usr/lib/modules/<release>/vmlinuz in the Arch base: add `linux` to [packages] arch".into(),
            )
        })?;
        // Keep only the release that has a vmlinuz (Kernel::open picks the last release dir).
        for e in std::fs::read_dir(&moddir).ctx("listing", &moddir)?.flatten() {
            if e.file_name().to_string_lossy() != rel {
                let _ = std::fs::remove_dir_all(e.path());
            }
        }
        let boot = tmp.join("boot");
        std::fs::create_dir_all(&boot).ctx("creating", &boot)?;
        std::fs::rename(moddir.join(&rel).join("vmlinuz"), boot.join(format!("vmlinuz-{rel}")))
            .ctx("moving vmlinuz", &boot)?;
        decompress_modules(&moddir.join(&rel))?;
        Kernel::index_tree(tmp)
    })?;
    Ok((Kernel::open(&entry.dir)?, made.is_none()))
}

/// `.ko.zst` / `.ko.xz` / `.ko.gz` -> `.ko` (the initramfs loader reads plain modules).
fn decompress_modules(dir: &Path) -> Result<()> {
    use std::io::Read;
    for entry in walkdir::WalkDir::new(dir) {
        let entry = entry.map_err(|e| Error::Kernel(format!("walking {}: {e}", dir.display())))?;
        let p = entry.path();
        let name = p.file_name().map(|n| n.to_string_lossy().to_string()).unwrap_or_default();
        let (stem, kind) = if let Some(s) = name.strip_suffix(".ko.zst") {
            (s, "zst")
        } else if let Some(s) = name.strip_suffix(".ko.xz") {
            (s, "xz")
        } else if let Some(s) = name.strip_suffix(".ko.gz") {
            (s, "gz")
        } else {
            continue;
        };
        let f = std::fs::File::open(p).ctx("opening module", p)?;
        let mut r: Box<dyn Read> = match kind {
            "zst" => Box::new(zstd::stream::read::Decoder::new(f).ctx("decompressing", p)?),
            "xz" => Box::new(xz2::read::XzDecoder::new(f)),
            _ => Box::new(flate2::read::GzDecoder::new(f)),
        };
        let mut data = Vec::new();
        r.read_to_end(&mut data).ctx("decompressing module", p)?;
        let dst = p.with_file_name(format!("{stem}.ko"));
        std::fs::write(&dst, data).ctx("writing", &dst)?;
        std::fs::remove_file(p).ctx("removing", p)?;
    }
    Ok(())
}
