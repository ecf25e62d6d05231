//! Shared-library closures of host binaries, and the persistence bundle built from them:
//! `oa-storage` (glibc, links libcryptsetup and libbtrfsutil) and `mkfs.btrfs` with every
//! library they load and the dynamic loader, under `/usr/lib/oa/` in the initramfs and the root
//! image. They run as `/usr/lib/oa/lib/ld.so --library-path /usr/lib/oa/lib BINARY`, so the
//! bundle never mixes with the root filesystem's own libraries (oa_contract::storage_paths).

use crate::error::{Error, IoContext, Result};
use crate::hash::Key;
use crate::initramfs::{Archive, Source};
use crate::profile::{KeySource, Persistence, Profile};
use oa_contract::config::{KeySource as ConfigKey, PersistConfig};
use oa_contract::{initramfs_paths, storage_paths};
use std::path::{Path, PathBuf};

/// Kernel modules persistence needs, loaded before the profile's own (dependencies are added
/// by the builder; `crc32c_generic` is btrfs's soft dependency, `ecb` + `xts` the dm-crypt mode (xts(ecb(aes))), AES and
/// SHA-256 are built into Debian's kernel).
pub const PERSIST_MODULES: &[&str] = &["crc32c_generic", "ecb", "xts", "af_alg", "algif_skcipher", "dm_crypt", "btrfs"];

/// One library of a closure: the name the binary asks for and the host file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lib {
    pub name: String,
    pub path: PathBuf,
}

/// Parse `ldd` output: `libx.so.1 => /lib/.../libx.so.1 (0x...)` and the loader line
/// `/lib64/ld-linux-x86-64.so.2 (0x...)`. Returns (libraries, loader).
pub fn parse_ldd(out: &str) -> std::result::Result<(Vec<Lib>, Option<PathBuf>), String> {
    let mut libs = Vec::new();
    let mut loader = None;
    for l in out.lines().map(str::trim).filter(|l| !l.is_empty()) {
        if l.starts_with("linux-vdso") || l.starts_with("linux-gate") {
            continue;
        }
        if let Some((name, rest)) = l.split_once(" => ") {
            if rest.starts_with("not found") {
                return Err(format!("library {name} not found"));
            }
            let path = rest.split(" (").next().unwrap_or("").trim();
            if path.is_empty() {
                continue;
            }
            libs.push(Lib { name: name.trim().to_string(), path: PathBuf::from(path) });
        } else if l.starts_with('/') {
            loader = Some(PathBuf::from(l.split(" (").next().unwrap_or(l).trim()));
        } else if l.contains("not a dynamic executable") {
            return Ok((vec![], None));
        }
    }
    Ok((libs, loader))
}

/// The library closure of a host binary (ldd resolves it the way the loader does).
pub fn closure(bin: &Path) -> Result<(Vec<Lib>, PathBuf)> {
    let out = std::process::Command::new("ldd")
        .arg(bin)
        .output()
        .map_err(|e| Error::Persistence(format!("running ldd {}: {e}", bin.display())))?;
    let text = String::from_utf8_lossy(&out.stdout);
    let (libs, loader) = parse_ldd(&text).map_err(|e| Error::Persistence(format!("{}: {e}", bin.display())))?;
    let loader = loader
        .ok_or_else(|| Error::Persistence(format!("{} has no dynamic loader (ldd: {})", bin.display(), text.trim())))?;
    Ok((libs, loader))
}

/// What persistence adds to the initramfs and the root image.
pub struct Bundle {
    /// (path inside, host file, mode)
    files: Vec<(String, PathBuf, u32)>,
    config: Vec<u8>,
    keyfile: Option<PathBuf>,
    /// Cache key part: digests of everything above.
    pub key: String,
}

fn find_tool(name: &str) -> Option<PathBuf> {
    ["/usr/sbin", "/sbin", "/usr/bin", "/bin"].iter().map(|d| Path::new(d).join(name)).find(|p| p.is_file())
}

/// oa-storage: `$OA_STORAGE_BIN`, else next to the running `oa` (`target/release/oa-storage`).
pub fn locate_storage() -> Result<PathBuf> {
    let mut c = Vec::new();
    if let Some(p) = std::env::var_os("OA_STORAGE_BIN") {
        c.push(PathBuf::from(p));
    } else if let Ok(exe) = std::env::current_exe() {
        if let Some(d) = exe.parent() {
            c.push(d.join("oa-storage"));
        }
    }
    c.iter().find(|p| p.is_file()).cloned().ok_or_else(|| {
        Error::Persistence(format!(
            "[persistence] needs oa-storage (looked at {}); build it with `cargo build --release -p oa-storage` (`make build` does it) or set OA_STORAGE_BIN",
            c.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", ")
        ))
    })
}

pub fn persist_config(x: &Persistence) -> PersistConfig {
    PersistConfig {
        device: x.device.clone(),
        key: match x.key {
            KeySource::Passphrase => ConfigKey::Passphrase,
            KeySource::Keyfile => ConfigKey::File(format!("/{}", initramfs_paths::PERSIST_KEYFILE)),
            KeySource::Network => ConfigKey::Network,
        },
        retries: x.passphrase_retries,
        paths: x.paths.clone(),
        snapshots_keep: x.snapshots_keep,
        optional: x.optional,
        format: x.format,
        boot_attempts: x.boot_attempts,
        pbkdf: x.pbkdf,
        pbkdf_memory_kib: x.pbkdf_memory_kib,
        pbkdf_iterations: x.pbkdf_iterations,
    }
}

/// The bundle for `p`, or `None` without `[persistence]`.
pub fn bundle(p: &Profile) -> Result<Option<Bundle>> {
    let Some(x) = &p.persistence else { return Ok(None) };
    if p.arch.as_str() != std::env::consts::ARCH {
        return Err(Error::Persistence(format!(
            "[persistence] on {} is not supported on a {} host yet (oa-storage and mkfs.btrfs are taken from the host)",
            p.arch,
            std::env::consts::ARCH
        )));
    }
    let storage = locate_storage()?;
    let mkfs = find_tool("mkfs.btrfs").ok_or_else(|| Error::ToolMissing {
        tool: "mkfs.btrfs".into(),
        why: "the initramfs carries it to format a blank persistence device".into(),
        hint: "apt-get install btrfs-progs (`make deps` does it)".into(),
    })?;
    let mut files: Vec<(String, PathBuf, u32)> = vec![
        (storage_paths::STORAGE.trim_start_matches('/').into(), storage.clone(), 0o755),
        (storage_paths::MKFS_BTRFS.trim_start_matches('/').into(), mkfs.clone(), 0o755),
    ];
    let libdir = storage_paths::LIBDIR.trim_start_matches('/');
    let mut loader_seen = None;
    for bin in [&storage, &mkfs] {
        let (libs, loader) = closure(bin)?;
        for l in libs {
            let inside = format!("{libdir}/{}", l.name);
            if !files.iter().any(|(i, _, _)| *i == inside) {
                files.push((inside, l.path.canonicalize().ctx("resolving", &l.path)?, 0o755));
            }
        }
        loader_seen.get_or_insert(loader);
    }
    let loader = loader_seen.ok_or_else(|| Error::Persistence("no dynamic loader found".into()))?;
    files.push((
        storage_paths::LOADER.trim_start_matches('/').into(),
        loader.canonicalize().ctx("resolving", &loader)?,
        0o755,
    ));
    let config = serde_json::to_vec_pretty(&persist_config(x)).map_err(|e| Error::Encode(e.to_string()))?;
    let keyfile = x.keyfile.clone().filter(|_| x.key == KeySource::Keyfile);
    if let Some(k) = &keyfile {
        eprintln!("WARNING: [persistence] key file {} is copied into the initramfs: the persistent data is ONLY AS SECRET AS THE IMAGE. Anyone with initramfs.img can unlock it. Use key = \"passphrase\" for real secrets.", k.display());
    }
    let mut key = Key::new("persistence");
    key.add("config", &config);
    for (inside, host, _) in &files {
        key.add(inside, crate::hash::sha256_file(host)?.as_bytes());
    }
    if let Some(k) = &keyfile {
        key.add("keyfile", crate::hash::sha256_file(k)?.as_bytes());
    }
    Ok(Some(Bundle { files, config, keyfile, key: key.hex() }))
}

impl Bundle {
    /// Everything: oa-storage, mkfs.btrfs, libraries, loader, persist.json, the key file.
    pub fn add_to_initramfs(&self, a: &mut Archive) -> Result<()> {
        for (inside, host, mode) in &self.files {
            a.add_file(inside, *mode, Source::Path(host.clone()));
        }
        a.add_file(initramfs_paths::PERSIST_CONFIG, 0o644, Source::Bytes(self.config.clone()));
        if let Some(k) = &self.keyfile {
            a.add_file(initramfs_paths::PERSIST_KEYFILE, 0o600, Source::Path(k.clone()));
        }
        Ok(())
    }

    /// oa-storage and its libraries (no key file, no mkfs.btrfs) for `oa-init status` and
    /// `oa-init snapshot` in the running system.
    pub fn install_rootfs(&self, root: &Path) -> Result<()> {
        for (inside, host, mode) in &self.files {
            if inside.as_str() == storage_paths::MKFS_BTRFS.trim_start_matches('/') {
                continue;
            }
            let data = std::fs::read(host).ctx("reading", host)?;
            crate::fsutil::write_file(&root.join(inside), &data, *mode)?;
        }
        crate::fsutil::write_file(&root.join(initramfs_paths::PERSIST_CONFIG), &self.config, 0o644)?;
        // `oa-init status` / `oa-init snapshot` from the shell.
        let link = root.join("usr/sbin/oa-init");
        if link.symlink_metadata().is_err() {
            std::fs::create_dir_all(root.join("usr/sbin")).ctx("creating", root.join("usr/sbin"))?;
            std::os::unix::fs::symlink(format!("/{}", oa_contract::rootfs_paths::INIT), &link)
                .ctx("creating", &link)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_ldd_output() {
        let out = "\tlinux-vdso.so.1 (0x00007ffd)\n\tlibcryptsetup.so.12 => /lib/x86_64-linux-gnu/libcryptsetup.so.12 (0x00007f)\n\tlibc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x00007f)\n\t/lib64/ld-linux-x86-64.so.2 (0x00007f)\n";
        let (libs, loader) = parse_ldd(out).unwrap();
        assert_eq!(libs.len(), 2);
        assert_eq!(libs[0].name, "libcryptsetup.so.12");
        assert_eq!(loader.unwrap(), Path::new("/lib64/ld-linux-x86-64.so.2"));
        assert!(parse_ldd("\tlibfoo.so => not found\n").is_err());
    }

    #[test]
    fn closure_of_a_host_binary_has_libc_and_loader() {
        let Some(sh) = find_tool("ls") else { return };
        let (libs, loader) = closure(&sh).unwrap();
        assert!(libs.iter().any(|l| l.name.starts_with("libc.so")));
        assert!(loader.is_file());
    }
}
