//! `oa.config=`: the per-machine run-time configuration ([`RuntimeConfig`], JSON).
//!
//! Stage 1 [`fetch`]es it (an `http://` URL, with the network brought up as for
//! `oa.root=http://`, bounded retries; or an absolute path inside the initramfs), checks it
//! strictly and leaves it in `/run/oa/config.json`. Any failure is a warning naming the source
//! and the error: the boot goes on with the profile alone. Stage 2 [`load`]s it and [`apply`]s
//! it to `/` before the services start; for `init = systemd` images stage 1 applies it to
//! /sysroot before switch_root instead. [`apply`] takes the root folder, so it is tested on a
//! temporary folder.

use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::Instant;

use oa_contract::config::RuntimeConfig;
use oa_contract::mounts as mp;

use crate::console;

/// A configuration larger than this is refused (it is held in RAM and is meant to be small).
pub const MAX_BYTES: u64 = 1 << 20;

/// Stage 1: get the configuration named by `oa.config=`, check it and write it (re-rendered)
/// to `dest`. `None` (after a warning) when it cannot be had; the boot goes on without it.
pub fn fetch(source: &str, dest: &Path, coldplug: &mut crate::coldplug::Coldplug) -> Option<RuntimeConfig> {
    fetch_with(source, dest, &mut || crate::net::up(coldplug))
}

/// [`fetch`], with `net_up` to bring the network up (crate::net::up) for an `http://` source.
fn fetch_with(
    source: &str,
    dest: &Path,
    net_up: &mut dyn FnMut() -> crate::error::Result<()>,
) -> Option<RuntimeConfig> {
    let t = Instant::now();
    match fetch_inner(source, dest, net_up) {
        Ok(c) => {
            console::stage("config", &format!("{source}: will apply {} ({} ms)", c.summary(), t.elapsed().as_millis()));
            Some(c)
        }
        Err(e) => {
            let _ = std::fs::remove_file(dest);
            console::warn(&format!(
                "{}: {e}; booting without the run-time configuration (the profile's settings apply)",
                oa_contract::cmdline::word(oa_contract::cmdline::CONFIG, source)
            ));
            None
        }
    }
}

fn fetch_inner(
    source: &str,
    dest: &Path,
    net_up: &mut dyn FnMut() -> crate::error::Result<()>,
) -> Result<RuntimeConfig, String> {
    if let Some(parent) = dest.parent() {
        std::fs::create_dir_all(parent).map_err(|e| format!("create {}: {e}", parent.display()))?;
    }
    let text = if source.starts_with("http://") {
        let url = crate::net::http::Url::parse(source)?;
        net_up().map_err(|e| format!("bring the network up: {e}"))?;
        let partial = dest.with_extension("json.partial");
        let got = crate::net::http::download(&url, &partial).map_err(|e| e.to_string());
        let text = got.and_then(|got| {
            if got.bytes > MAX_BYTES {
                return Err(format!(
                    "{} bytes is more than the {MAX_BYTES} a run-time configuration may have",
                    got.bytes
                ));
            }
            std::fs::read_to_string(&partial).map_err(|e| format!("read {}: {e}", partial.display()))
        });
        let _ = std::fs::remove_file(&partial);
        text?
    } else if source.starts_with('/') {
        let len = std::fs::metadata(source).map_err(|e| format!("{source} (in the initramfs): {e}"))?.len();
        if len > MAX_BYTES {
            return Err(format!("{len} bytes is more than the {MAX_BYTES} a run-time configuration may have"));
        }
        std::fs::read_to_string(source).map_err(|e| format!("read {source} (in the initramfs): {e}"))?
    } else {
        return Err("expected an http:// URL (IPv4 address) or an absolute path inside the initramfs".into());
    };
    let cfg = RuntimeConfig::parse(&text).map_err(|e| format!("not a valid run-time configuration: {e}"))?;
    let json = serde_json::to_string_pretty(&cfg).map_err(|e| e.to_string())?;
    std::fs::write(dest, json + "\n").map_err(|e| format!("write {}: {e}", dest.display()))?;
    Ok(cfg)
}

/// Stage 2: the configuration stage 1 left, if any (a damaged file is warned about).
pub fn load() -> Option<RuntimeConfig> {
    let text = std::fs::read_to_string(mp::RUNTIME_CONFIG).ok()?;
    match RuntimeConfig::parse(&text) {
        Ok(c) => Some(c),
        Err(e) => {
            console::warn(&format!("{}: {e} (not applied)", mp::RUNTIME_CONFIG));
            None
        }
    }
}

/// What [`apply`] did, and what it could not do (each a warning; the boot goes on).
#[derive(Debug, Default)]
pub struct Applied {
    pub done: Vec<String>,
    pub failed: Vec<String>,
}

/// Apply `cfg` to the root filesystem at `root` (`/` in stage 2, /sysroot in stage 1): the
/// hostname to `etc/hostname` (setting the kernel's hostname is the caller's job), each user's
/// `~/.ssh/authorized_keys` (home from `etc/passwd`), the files.
pub fn apply(root: &Path, cfg: &RuntimeConfig) -> Applied {
    let mut a = Applied::default();
    if let Some(h) = &cfg.hostname {
        match write_file(&root.join("etc/hostname"), format!("{h}\n").as_bytes(), 0o644) {
            Ok(()) => a.done.push(format!("hostname {h}")),
            Err(e) => a.failed.push(format!("hostname: {e}")),
        }
    }
    if !cfg.ssh_authorized_keys.is_empty() {
        let passwd = std::fs::read_to_string(root.join("etc/passwd")).unwrap_or_default();
        for (user, keys) in &cfg.ssh_authorized_keys {
            match authorized_keys(root, &passwd, user, keys) {
                Ok(p) => a.done.push(format!("{p} ({} key{})", keys.len(), if keys.len() == 1 { "" } else { "s" })),
                Err(e) => a.failed.push(format!("authorized keys of {user}: {e}")),
            }
        }
    }
    for f in &cfg.files {
        let r = f.mode_bits().and_then(|mode| write_file(&inside(root, &f.path), f.content.as_bytes(), mode));
        match r {
            Ok(()) => a.done.push(f.path.clone()),
            Err(e) => a.failed.push(format!("file {}: {e}", f.path)),
        }
    }
    a
}

/// `path` (absolute, checked by [`RuntimeConfig::validate`]) inside `root`.
fn inside(root: &Path, path: &str) -> PathBuf {
    root.join(path.trim_start_matches('/'))
}

/// A user's entry of /etc/passwd: uid, gid, home.
fn passwd_entry(passwd: &str, user: &str) -> Option<(u32, u32, String)> {
    passwd.lines().find_map(|l| {
        let f: Vec<&str> = l.split(':').collect();
        if f.len() >= 6 && f[0] == user {
            Some((f[2].parse().ok()?, f[3].parse().ok()?, f[5].to_string()))
        } else {
            None
        }
    })
}

fn authorized_keys(root: &Path, passwd: &str, user: &str, keys: &[String]) -> Result<String, String> {
    let (uid, gid, home) = passwd_entry(passwd, user).ok_or_else(|| format!("no user {user} in /etc/passwd"))?;
    if !home.starts_with('/') || home.split('/').any(|c| c == "..") {
        return Err(format!("home {home:?} of {user} is not an absolute path"));
    }
    let home_dir = inside(root, &home);
    let ssh = home_dir.join(".ssh");
    let chown = |p: &Path| {
        nix::unistd::chown(p, Some(uid.into()), Some(gid.into())).map_err(|e| format!("chown {}: {e}", p.display()))
    };
    if !home_dir.exists() {
        std::fs::create_dir_all(&home_dir).map_err(|e| format!("create {}: {e}", home_dir.display()))?;
        std::fs::set_permissions(&home_dir, std::fs::Permissions::from_mode(0o700))
            .map_err(|e| format!("chmod {}: {e}", home_dir.display()))?;
        chown(&home_dir)?;
    }
    std::fs::create_dir_all(&ssh).map_err(|e| format!("create {}: {e}", ssh.display()))?;
    std::fs::set_permissions(&ssh, std::fs::Permissions::from_mode(0o700))
        .map_err(|e| format!("chmod {}: {e}", ssh.display()))?;
    chown(&ssh)?;
    let file = ssh.join("authorized_keys");
    let text: String = keys.iter().map(|k| format!("{}\n", k.trim())).collect();
    write_file(&file, text.as_bytes(), 0o600)?;
    chown(&file)?;
    Ok(format!("{}/.ssh/authorized_keys", home.trim_end_matches('/')))
}

/// Write `data` to `path` with `mode` (parents created 0755): a temporary file renamed over it.
fn write_file(path: &Path, data: &[u8], mode: u32) -> Result<(), String> {
    use std::io::Write;
    let parent = path.parent().ok_or_else(|| format!("{} has no parent folder", path.display()))?;
    std::fs::create_dir_all(parent).map_err(|e| format!("create {}: {e}", parent.display()))?;
    let name = path.file_name().ok_or_else(|| format!("{} names no file", path.display()))?;
    let tmp = parent.join(format!(".{}.oa-tmp", name.to_string_lossy()));
    let _ = std::fs::remove_file(&tmp);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(&tmp)
        .map_err(|e| format!("create {}: {e}", tmp.display()))?;
    f.write_all(data).map_err(|e| format!("write {}: {e}", tmp.display()))?;
    // The umask may have taken bits away.
    f.set_permissions(std::fs::Permissions::from_mode(mode)).map_err(|e| format!("chmod {}: {e}", tmp.display()))?;
    drop(f);
    std::fs::rename(&tmp, path).map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        format!("rename to {}: {e}", path.display())
    })
}

/// Print what [`apply`] did: one stage line, a warning per failure.
pub fn report(where_: &str, a: &Applied) {
    for f in &a.failed {
        console::warn(&format!("run-time configuration: {f}"));
    }
    let what = if a.done.is_empty() { "nothing".to_string() } else { a.done.join(", ") };
    console::stage(
        "config",
        &format!(
            "applied to {where_}: {what}{}",
            if a.failed.is_empty() { String::new() } else { format!(" ({} failed)", a.failed.len()) }
        ),
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    fn no_network() -> crate::error::Result<()> {
        panic!("these tests do not bring the network up")
    }

    fn tempdir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("oa-init-rc-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(d.join("etc")).unwrap();
        d
    }

    fn mode(p: &Path) -> u32 {
        std::fs::metadata(p).unwrap().permissions().mode() & 0o7777
    }

    #[test]
    fn applies_hostname_keys_and_files() {
        let root = tempdir("apply");
        let (uid, gid) = (nix::unistd::getuid().as_raw(), nix::unistd::getgid().as_raw());
        std::fs::write(
            root.join("etc/passwd"),
            format!("root:x:0:0:root:/root:/bin/sh\nweb:x:{uid}:{gid}::/home/web:/bin/sh\n"),
        )
        .unwrap();
        let cfg = RuntimeConfig::parse(
            r#"{"hostname": "from-config",
                "ssh_authorized_keys": {"web": ["ssh-ed25519 AAAA one", " ssh-rsa BBBB two "], "nobody": ["k"]},
                "files": [{"path": "/etc/app/app.conf", "content": "a=1\n", "mode": "0640"}, {"path": "/etc/motd", "content": "hi\n"}]}"#
        )
        .unwrap();
        let a = apply(&root, &cfg);
        assert_eq!(a.failed, vec!["authorized keys of nobody: no user nobody in /etc/passwd".to_string()]);
        assert_eq!(
            a.done,
            ["hostname from-config", "/home/web/.ssh/authorized_keys (2 keys)", "/etc/app/app.conf", "/etc/motd"]
        );
        assert_eq!(std::fs::read_to_string(root.join("etc/hostname")).unwrap(), "from-config\n");
        let ak = root.join("home/web/.ssh/authorized_keys");
        assert_eq!(std::fs::read_to_string(&ak).unwrap(), "ssh-ed25519 AAAA one\nssh-rsa BBBB two\n");
        assert_eq!(mode(&ak), 0o600);
        assert_eq!(mode(&root.join("home/web/.ssh")), 0o700);
        assert_eq!(std::fs::metadata(&ak).unwrap().uid(), uid);
        assert_eq!(std::fs::read_to_string(root.join("etc/app/app.conf")).unwrap(), "a=1\n");
        assert_eq!(mode(&root.join("etc/app/app.conf")), 0o640);
        assert_eq!(mode(&root.join("etc/motd")), 0o644);
        // Applying again replaces the files (no leftovers).
        let a = apply(&root, &cfg);
        assert_eq!(a.done.len(), 4);
        assert_eq!(
            std::fs::read_dir(root.join("etc"))
                .unwrap()
                .filter(|e| e.as_ref().unwrap().file_name().to_string_lossy().ends_with(".oa-tmp"))
                .count(),
            0
        );
        std::fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn fetch_reads_a_path_checks_it_and_warns_on_errors() {
        let root = tempdir("fetch");
        let dest = root.join("run/config.json");
        let src = root.join("machine.json");
        std::fs::write(&src, r#"{"hostname": "h1", "ssh_authorized_keys": {"root": ["ssh-ed25519 AAAA"]}}"#).unwrap();
        let c = fetch_with(src.to_str().unwrap(), &dest, &mut no_network).unwrap();
        assert_eq!(c.hostname.as_deref(), Some("h1"));
        // What stage 1 leaves parses back to the same configuration.
        assert_eq!(RuntimeConfig::parse(&std::fs::read_to_string(&dest).unwrap()).unwrap(), c);
        // A strictly parsed file: an unknown key is refused and nothing is left behind.
        std::fs::write(&src, r#"{"hostname": "h1", "users": {}}"#).unwrap();
        assert!(fetch_inner(src.to_str().unwrap(), &dest, &mut no_network)
            .unwrap_err()
            .contains("unknown field `users`"));
        assert!(fetch_with(src.to_str().unwrap(), &dest, &mut no_network).is_none());
        assert!(!dest.exists());
        assert!(fetch_inner("relative.json", &dest, &mut no_network).is_err());
        assert!(fetch_inner("https://10.0.0.1/x", &dest, &mut no_network).is_err());
        assert!(fetch_inner(root.join("missing.json").to_str().unwrap(), &dest, &mut no_network)
            .unwrap_err()
            .contains("missing.json"));
        std::fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn passwd_entries() {
        let p = "root:x:0:0:root:/root:/bin/sh\nbad line\nu:x:1000:100:U:/home/u:/bin/sh\n";
        assert_eq!(passwd_entry(p, "u"), Some((1000, 100, "/home/u".into())));
        assert_eq!(passwd_entry(p, "root"), Some((0, 0, "/root".into())));
        assert_eq!(passwd_entry(p, "x"), None);
    }
}
