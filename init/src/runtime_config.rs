//! `oa.config=`: the per-machine run-time configuration ([`RuntimeConfig`], JSON).
//!
//! Stage 1 [`fetch`]es it (an `http://` URL, with the network brought up as for
//! `oa.root=http://`, bounded retries; or an absolute path inside the initramfs), checks it
//! strictly and leaves it in `/run/oa/config.json`. When the initramfs holds a minisign key
//! (`[secure_boot] config_key`) the configuration must come with a signature by it
//! (`<source>.minisig`, made for this machine's MAC by `oa serve --sign-key`), checked before
//! the configuration is parsed. Any failure is a warning naming the source and the error, and
//! the boot goes on with the profile alone, unless the profile requires a configuration
//! (`config_required`): then it is FATAL. Stage 2 [`load`]s it and [`apply`]s
//! it to `/` before the services start; for `init = systemd` images stage 1 applies it to
//! /sysroot before switch_root instead. [`apply`] takes the root folder, so it is tested on a
//! temporary folder.

use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::time::Instant;

use oa_contract::config::{AppliedFile, PreviousFile, RuntimeApplied, RuntimeConfig};
use oa_contract::{initramfs_paths, mounts as mp, rootfs_paths};

use crate::console;
use crate::safe_fs::{self, Dir, FsError};

/// A configuration larger than this is refused (it is held in RAM and is meant to be small).
pub const MAX_BYTES: u64 = 1 << 20;

/// What a configuration must be to be used: signed by the minisign key built into the
/// initramfs ([`initramfs_paths::CONFIG_KEY`], profile `[secure_boot] config_key`) when there
/// is one, and whether the boot may go on without one (`config_required`).
pub struct Trust {
    /// The key; `Err` when the file is there but unusable (then every configuration is refused).
    key: Option<Result<Key, String>>,
    required: bool,
    /// Where the machine's MAC addresses are read (`/sys/class/net`), for a signature's `mac:`.
    net_class: std::path::PathBuf,
}

struct Key {
    pk: minisign_verify::PublicKey,
    /// The key id as minisign prints it, for messages.
    id: String,
}

impl Trust {
    /// The initramfs's key (if any) and `[secure_boot] config_required`.
    pub fn from_initramfs(required: bool) -> Trust {
        let path = Path::new("/").join(initramfs_paths::CONFIG_KEY);
        let key = match std::fs::read_to_string(&path) {
            Ok(t) => Some(Self::key(&t).map_err(|e| format!("{}: {e}", path.display()))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => Some(Err(format!("read {}: {e}", path.display()))),
        };
        Trust { key, required, net_class: "/sys/class/net".into() }
    }

    fn key(text: &str) -> Result<Key, String> {
        let pk = minisign_verify::PublicKey::decode(text).map_err(|e| format!("not a minisign public key: {e}"))?;
        // "untrusted comment: minisign public key: <16 hex digits>", as minisign writes it.
        let id = text.lines().next().and_then(|l| l.rsplit(' ').next()).filter(|w| w.len() == 16).unwrap_or("?");
        Ok(Key { pk, id: id.to_string() })
    }

    /// The MAC addresses of this machine's interfaces (lower case), loopback's left out.
    fn macs(&self) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(&self.net_class)
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| std::fs::read_to_string(e.path().join("address")).ok())
            .map(|a| a.trim().to_ascii_lowercase())
            .filter(|a| !a.is_empty() && a != "00:00:00:00:00:00")
            .collect();
        v.sort();
        v.dedup();
        v
    }
}

/// Stage 1: get the configuration named by `oa.config=` (`source`), check it (its signature
/// too, when the initramfs holds a key) and write it (re-rendered) to `dest`. `Ok(None)`
/// (after a loud warning) when it cannot be had or is refused: the boot goes on without it;
/// an error when the profile requires a configuration (`config_required`).
pub fn fetch(
    source: Option<&str>,
    dest: &Path,
    coldplug: &mut crate::coldplug::Coldplug,
    trust: &Trust,
) -> crate::error::Result<Option<RuntimeConfig>> {
    fetch_with(source, dest, &mut || crate::net::up(coldplug), trust)
}

/// [`fetch`], with `net_up` to bring the network up (crate::net::up) for an `http://` source.
fn fetch_with(
    source: Option<&str>,
    dest: &Path,
    net_up: &mut dyn FnMut() -> crate::error::Result<()>,
    trust: &Trust,
) -> crate::error::Result<Option<RuntimeConfig>> {
    let Some(source) = source else {
        if trust.required {
            return Err(crate::error::Error::Config {
                from: "-".into(),
                why: format!(
                    "no {}= on the kernel command line, and this image requires a run-time configuration",
                    oa_contract::cmdline::CONFIG
                ),
            });
        }
        return Ok(None);
    };
    let t = Instant::now();
    match fetch_inner(source, dest, net_up, trust) {
        Ok((c, signed)) => {
            console::stage(
                "config",
                &format!("{source}: {signed}will apply {} ({} ms)", c.summary(), t.elapsed().as_millis()),
            );
            Ok(Some(c))
        }
        Err(why) => {
            let _ = std::fs::remove_file(dest);
            if trust.required {
                return Err(crate::error::Error::Config { from: source.into(), why });
            }
            console::warn(&format!(
                "{}: REFUSED: {why}; booting without the run-time configuration (the profile's settings apply)",
                oa_contract::cmdline::word(oa_contract::cmdline::CONFIG, source)
            ));
            Ok(None)
        }
    }
}

/// Read at most `max` bytes of `source` (an http:// URL, the network brought up by `net_up`,
/// or an absolute path inside the initramfs), into `partial` while it downloads. `what`
/// names it in messages.
fn get(
    source: &str,
    partial: &Path,
    max: u64,
    what: &str,
    net_up: &mut dyn FnMut() -> crate::error::Result<()>,
) -> Result<String, String> {
    if source.starts_with("http://") {
        let url = crate::net::http::Url::parse(source)?;
        net_up().map_err(|e| format!("bring the network up: {e}"))?;
        let got = crate::net::http::download_at_most(&url, partial, max).map_err(|e| e.to_string());
        let text = got.and_then(|got| {
            if got.bytes > max {
                return Err(format!("{} bytes is more than the {max} {what} may have", got.bytes));
            }
            std::fs::read_to_string(partial).map_err(|e| format!("read {}: {e}", partial.display()))
        });
        let _ = std::fs::remove_file(partial);
        text
    } else if source.starts_with('/') {
        let len = std::fs::metadata(source).map_err(|e| format!("{source} (in the initramfs): {e}"))?.len();
        if len > max {
            return Err(format!("{len} bytes is more than the {max} {what} may have"));
        }
        std::fs::read_to_string(source).map_err(|e| format!("read {source} (in the initramfs): {e}"))
    } else {
        Err("expected an http:// URL (IPv4 address) or an absolute path inside the initramfs".into())
    }
}

/// The configuration and, when the initramfs holds a key, what its signature says
/// (`signed by key K for M; `), or why it is refused.
fn fetch_inner(
    source: &str,
    dest: &Path,
    net_up: &mut dyn FnMut() -> crate::error::Result<()>,
    trust: &Trust,
) -> Result<(RuntimeConfig, String), String> {
    if let Some(parent) = dest.parent() {
        std::fs::create_dir_all(parent).map_err(|e| format!("create {}: {e}", parent.display()))?;
    }
    let text = get(source, &dest.with_extension("json.partial"), MAX_BYTES, "a run-time configuration", net_up)?;
    // The signature is checked before the configuration is even parsed.
    let signed = match &trust.key {
        None => String::new(),
        Some(Err(e)) => {
            return Err(format!("the image's configuration key is unusable ({e}): every configuration is refused"))
        }
        Some(Ok(key)) => {
            let sig_source = format!("{source}{}", oa_contract::signature::SUFFIX);
            let sig = get(
                &sig_source,
                &dest.with_extension("minisig.partial"),
                oa_contract::signature::MAX_BYTES,
                "a signature",
                net_up,
            )
            .map_err(|e| {
                format!("unsigned: no usable signature at {sig_source} ({e}); this image accepts only configurations signed by minisign key {} ([secure_boot] config_key): serve them with oa serve --sign-key", key.id)
            })?;
            verify(key, text.as_bytes(), &sig, &trust.macs())?
        }
    };
    let cfg = RuntimeConfig::parse(&text).map_err(|e| format!("not a valid run-time configuration: {e}"))?;
    let json = serde_json::to_string_pretty(&cfg).map_err(|e| e.to_string())?;
    write_private(dest, (json + "\n").as_bytes())?;
    Ok((cfg, signed))
}

/// Check `sig` (a `.minisig` file's text) over `data` with `key`; a `mac:` in its trusted
/// comment must be one of `macs` (this machine's). What it says for the stage line, or why not.
fn verify(key: &Key, data: &[u8], sig: &str, macs: &[String]) -> Result<String, String> {
    use oa_contract::signature::{field, MAC_FIELD};
    let s = minisign_verify::Signature::decode(sig)
        .map_err(|e| format!("the signature is not in minisign's format: {e}"))?;
    key.pk.verify(data, &s, false).map_err(|e| match e {
        minisign_verify::Error::UnexpectedKeyId => format!(
            "signed by another key ({}), not by minisign key {} that this image accepts ([secure_boot] config_key)",
            s.untrusted_comment().trim_start_matches("untrusted comment: "),
            key.id
        ),
        minisign_verify::Error::InvalidSignature => {
            format!(
                "the signature by minisign key {} does not match the configuration (changed after signing?)",
                key.id
            )
        }
        e => format!("the signature cannot be checked: {e}"),
    })?;
    let tc = s.trusted_comment().trim_start_matches("trusted comment: ");
    match field(tc, MAC_FIELD) {
        Some(m) if !macs.iter().any(|x| x.eq_ignore_ascii_case(m)) => Err(format!(
            "signed by minisign key {} for the machine {m}, not this one ({})",
            key.id,
            if macs.is_empty() { "no interfaces".to_string() } else { macs.join(" ") }
        )),
        Some(m) => Ok(format!("signed by minisign key {} for {m}; ", key.id)),
        None => Ok(format!("signed by minisign key {}; ", key.id)),
    }
}

/// Create `path` 0600 (root's, as oa-init runs as root) with `data`: the mode is given to
/// O_CREAT, so the content is never readable by others, not even for a moment.
fn write_private(path: &Path, data: &[u8]) -> Result<(), String> {
    use std::io::Write;
    match std::fs::remove_file(path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(format!("remove the old {}: {e}", path.display())),
    }
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(nix::libc::O_NOFOLLOW | nix::libc::O_CLOEXEC)
        .open(path)
        .map_err(|e| format!("create {}: {e}", path.display()))?;
    f.write_all(data).map_err(|e| format!("write {}: {e}", path.display()))
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
    /// What was written (or taken back) this time; empty when the root already matched.
    pub done: Vec<String>,
    /// What was already as asked.
    pub unchanged: usize,
    pub failed: Vec<String>,
}

/// A file the configuration asks for: its path inside the root, content, mode and owner.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Want {
    path: String,
    content: Vec<u8>,
    mode: u32,
    owner: (u32, u32),
    /// For messages (`hostname h`, `/home/u/.ssh/authorized_keys (2 keys)`, the path).
    what: String,
    /// An authorized_keys file: its home (created 0700 for the user when missing) and
    /// `~/.ssh` (0700, the user's) are set up first.
    ssh_home: Option<String>,
}

/// Apply `cfg` to the root filesystem at `root` (`/` in stage 2, /sysroot in stage 1): the
/// hostname to `etc/hostname` (setting the kernel's hostname is the caller's job), each user's
/// `~/.ssh/authorized_keys` (home from `etc/passwd`), the files. The configuration is the
/// desired state: what an earlier one wrote and this one no longer asks for is removed (or the
/// file that was there before is put back), as recorded in
/// [`rootfs_paths::RUNTIME_CONFIG_APPLIED`]; a file changed since oa wrote it is left alone.
/// Nothing is written through a symbolic link (see safe_fs.rs).
pub fn apply(root: &Path, cfg: &RuntimeConfig) -> Applied {
    let mut a = Applied::default();
    let dir = match Dir::open_root(root) {
        Ok(d) => d,
        Err(e) => {
            a.failed.push(e.to_string());
            return a;
        }
    };
    let mut applied = load_applied(&dir, &mut a);
    let before = applied.clone();
    let wants = wanted(&dir, cfg, &mut a);
    for w in &wants {
        match apply_one(&dir, w, applied.files.get(&w.path)) {
            Ok(None) => a.unchanged += 1,
            Ok(Some(entry)) => {
                applied.files.insert(w.path.clone(), entry);
                a.done.push(w.what.clone());
            }
            Err(e) => a.failed.push(format!("{}: {e}", w.what)),
        }
    }
    let gone: Vec<String> = applied.files.keys().filter(|p| !wants.iter().any(|w| &w.path == *p)).cloned().collect();
    for path in gone {
        let entry = applied.files.remove(&path).expect("a key of the map");
        match take_back(&dir, &path, &entry) {
            Ok(Some(done)) => a.done.push(done),
            Ok(None) => {}
            Err(e) => a.failed.push(format!("{path} (no longer in the configuration): {e}")),
        }
    }
    if applied != before {
        if let Err(e) = save_applied(&dir, &applied) {
            a.failed.push(format!("/{}: {e}", rootfs_paths::RUNTIME_CONFIG_APPLIED));
        }
    }
    a
}

/// The files `cfg` asks for, in order (a later one for the same path wins); what cannot be
/// had (an unknown user, a bad home) is a failure.
fn wanted(dir: &Dir, cfg: &RuntimeConfig, a: &mut Applied) -> Vec<Want> {
    let mut w = Vec::new();
    if let Some(h) = &cfg.hostname {
        w.push(Want {
            path: "/etc/hostname".into(),
            content: format!("{h}\n").into_bytes(),
            mode: 0o644,
            owner: (0, 0),
            what: format!("hostname {h}"),
            ssh_home: None,
        });
    }
    if !cfg.ssh_authorized_keys.is_empty() {
        let passwd = match safe_fs::parent_of(dir, "/etc/passwd", false) {
            Ok(Some((etc, name))) => etc.read_file(name, MAX_BYTES).map(|f| f.map(|(d, _)| d)),
            Ok(None) => Ok(None),
            Err(e) => Err(e),
        };
        let passwd = match passwd {
            Ok(p) => String::from_utf8_lossy(&p.unwrap_or_default()).into_owned(),
            Err(e) => {
                a.failed.push(format!("authorized keys: {e}"));
                String::new()
            }
        };
        for (user, keys) in &cfg.ssh_authorized_keys {
            let Some((uid, gid, home)) = passwd_entry(&passwd, user) else {
                a.failed.push(format!("authorized keys of {user}: no user {user} in /etc/passwd"));
                continue;
            };
            if safe_fs::components(&home).is_err() || !home.starts_with('/') {
                a.failed.push(format!("authorized keys of {user}: home {home:?} is not a plain absolute path"));
                continue;
            }
            let home = format!("/{}", safe_fs::components(&home).unwrap_or_default().join("/"));
            let path = format!("{}/.ssh/authorized_keys", home.trim_end_matches('/'));
            let n = keys.len();
            w.push(Want {
                path: path.clone(),
                content: keys.iter().map(|k| format!("{}\n", k.trim())).collect::<String>().into_bytes(),
                mode: 0o600,
                owner: (uid, gid),
                what: format!("{path} ({n} key{})", if n == 1 { "" } else { "s" }),
                ssh_home: Some(home),
            });
        }
    }
    for f in &cfg.files {
        match f.mode_bits() {
            Ok(mode) => w.push(Want {
                path: f.path.clone(),
                content: f.content.clone().into_bytes(),
                mode,
                owner: (0, 0),
                what: f.path.clone(),
                ssh_home: None,
            }),
            Err(e) => a.failed.push(format!("file {}: {e}", f.path)),
        }
    }
    // A later entry for the same path wins.
    let mut out: Vec<Want> = Vec::new();
    for x in w {
        out.retain(|o| o.path != x.path);
        out.push(x);
    }
    out
}

/// Make `w.path` hold what is wanted. None: it already did (and the record says oa wrote it);
/// else the record of what was written.
fn apply_one(dir: &Dir, w: &Want, prev: Option<&AppliedFile>) -> Result<Option<AppliedFile>, FsError> {
    let folder = match &w.ssh_home {
        Some(home) => ssh_dir(dir, home, w.owner)?,
        None => {
            safe_fs::parent_of(dir, &w.path, true)?.map(|(d, _)| d).ok_or_else(|| FsError::BadPath(w.path.clone()))?
        }
    };
    let name = w.path.rsplit('/').next().unwrap_or_default();
    let current = folder.read_file(name, MAX_BYTES)?;
    let sha = sha256_hex(&w.content);
    if let (Some((data, meta)), Some(p)) = (&current, prev) {
        if data == &w.content && p.sha256 == sha && meta.mode == w.mode && (meta.uid, meta.gid) == w.owner {
            return Ok(None);
        }
    }
    // What was there before oa first wrote this path: kept from the record, else read now.
    let before = match prev {
        Some(p) => p.before.clone(),
        None => current.map(|(data, m)| PreviousFile {
            sha256: sha256_hex(&data),
            content_hex: crate::rootimage::hex(&data),
            mode: m.mode,
            uid: m.uid,
            gid: m.gid,
        }),
    };
    folder.write_file(name, &w.content, w.mode, Some(w.owner))?;
    Ok(Some(AppliedFile { sha256: sha, before }))
}

/// `home` (created 0700 for the user when missing) and its `.ssh` (0700, the user's), every
/// component opened without following links; the mode and owner of `.ssh` are set on its
/// descriptor.
fn ssh_dir(dir: &Dir, home: &str, owner: (u32, u32)) -> Result<Dir, FsError> {
    let comps = safe_fs::components(home)?;
    let (last, parents) = comps.split_last().ok_or_else(|| FsError::BadPath(home.to_string()))?;
    let parent = dir.walk(&parents.join("/"), true)?.ok_or_else(|| FsError::BadPath(home.to_string()))?;
    let (home, _) = parent.open_or_create_dir(last, 0o700, Some(owner))?;
    let (ssh, _) = home.open_or_create_dir(".ssh", 0o700, Some(owner))?;
    let m = ssh.meta()?;
    if m.mode != 0o700 || (m.uid, m.gid) != owner {
        ssh.set_meta(0o700, Some(owner))?;
    }
    Ok(ssh)
}

/// A path an earlier configuration wrote and this one does not ask for: remove it, or put
/// back the file that was there, when it still holds what oa wrote; else leave it (warned).
fn take_back(dir: &Dir, path: &str, entry: &AppliedFile) -> Result<Option<String>, String> {
    let Some((folder, name)) = safe_fs::parent_of(dir, path, false).map_err(|e| e.to_string())? else {
        return Ok(None);
    };
    let current = folder.read_file(name, MAX_BYTES).map_err(|e| format!("{e}; left as it is"))?;
    let Some((data, _)) = current else { return Ok(None) };
    if sha256_hex(&data) != entry.sha256 {
        return Err("changed since oa-init wrote it; left as it is".into());
    }
    match &entry.before {
        None => {
            folder.remove_file(name).map_err(|e| e.to_string())?;
            Ok(Some(format!("removed {path}")))
        }
        Some(b) => {
            let content = unhex(&b.content_hex).filter(|c| sha256_hex(c) == b.sha256).ok_or_else(|| {
                format!(
                    "the previous content recorded in /{} is damaged; left as it is",
                    rootfs_paths::RUNTIME_CONFIG_APPLIED
                )
            })?;
            folder.write_file(name, &content, b.mode, Some((b.uid, b.gid))).map_err(|e| e.to_string())?;
            Ok(Some(format!("restored {path}")))
        }
    }
}

fn load_applied(dir: &Dir, a: &mut Applied) -> RuntimeApplied {
    let shown = format!("/{}", rootfs_paths::RUNTIME_CONFIG_APPLIED);
    let read = safe_fs::parent_of(dir, rootfs_paths::RUNTIME_CONFIG_APPLIED, false)
        .and_then(|p| p.map(|(d, name)| d.read_file(name, 4 * MAX_BYTES)).transpose());
    match read {
        Ok(Some(Some((data, _)))) => match serde_json::from_slice(&data) {
            Ok(m) => m,
            Err(e) => {
                a.failed.push(format!("{shown}: {e} (what earlier configurations wrote is not taken back)"));
                RuntimeApplied::default()
            }
        },
        Ok(_) => RuntimeApplied::default(),
        Err(e) => {
            a.failed.push(format!("{shown}: {e}"));
            RuntimeApplied::default()
        }
    }
}

fn save_applied(dir: &Dir, m: &RuntimeApplied) -> Result<(), String> {
    let (d, name) = safe_fs::parent_of(dir, rootfs_paths::RUNTIME_CONFIG_APPLIED, true)
        .map_err(|e| e.to_string())?
        .ok_or("no folder")?;
    if m.files.is_empty() {
        return d.remove_file(name).map_err(|e| e.to_string());
    }
    let json = serde_json::to_string_pretty(m).map_err(|e| e.to_string())? + "\n";
    d.write_file(name, json.as_bytes(), 0o600, Some((0, 0))).map_err(|e| e.to_string())
}

fn sha256_hex(data: &[u8]) -> String {
    use sha2::Digest;
    crate::rootimage::hex(&sha2::Sha256::digest(data))
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    if s.len() & 1 != 0 {
        return None;
    }
    (0..s.len()).step_by(2).map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok()).collect()
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

/// Remove [`mp::RUNTIME_CONFIG`] once it was applied, unless the profile keeps it
/// (`[init] keep_runtime_config`): it may hold secrets.
pub fn discard(keep: bool) {
    if keep {
        return;
    }
    match std::fs::remove_file(mp::RUNTIME_CONFIG) {
        Ok(()) => console::debug(&format!("{} removed (applied)", mp::RUNTIME_CONFIG)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => console::warn(&format!("remove {}: {e} (it stays readable by root only)", mp::RUNTIME_CONFIG)),
    }
}

/// Print what [`apply`] did: one stage line, a warning per failure.
pub fn report(where_: &str, a: &Applied) {
    for f in &a.failed {
        console::warn(&format!("run-time configuration: {f}"));
    }
    let what = match (a.done.is_empty(), a.unchanged) {
        (true, 0) => "nothing".to_string(),
        (true, n) => format!("nothing changed ({n} already as asked)"),
        (false, 0) => a.done.join(", "),
        (false, n) => format!("{} ({n} already as asked)", a.done.join(", ")),
    };
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
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    use std::path::PathBuf;

    fn no_network() -> crate::error::Result<()> {
        panic!("these tests do not bring the network up")
    }

    fn tempdir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("oa-init-rc-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(d.join("etc")).unwrap();
        d
    }

    /// No key in the initramfs, no configuration required.
    fn open() -> Trust {
        Trust { key: None, required: false, net_class: "/nonexistent".into() }
    }

    /// A minisign key pair: (public key file text, secret key).
    fn keypair() -> (String, minisign::SecretKey) {
        let kp = minisign::KeyPair::generate_unencrypted_keypair().unwrap();
        (kp.pk.to_box().unwrap().into_string(), kp.sk)
    }

    fn sign(sk: &minisign::SecretKey, data: &str, trusted: &str) -> String {
        minisign::sign(None, sk, data.as_bytes(), Some(trusted), None).unwrap().into_string()
    }

    /// A trust with `public` as the key, for a machine whose one NIC has `mac`.
    fn trusting(public: &str, required: bool, root: &Path, mac: &str) -> Trust {
        let class = root.join("sys-class-net");
        std::fs::create_dir_all(class.join("eth0")).unwrap();
        std::fs::write(class.join("eth0/address"), format!("{mac}\n")).unwrap();
        Trust { key: Some(Trust::key(public)), required, net_class: class }
    }

    #[test]
    fn a_key_in_the_initramfs_takes_only_configurations_it_signed_for_this_machine() {
        let root = tempdir("signed");
        let dest = root.join("run/config.json");
        let src = root.join("machine.json");
        let sig = root.join("machine.json.minisig");
        let json = r#"{"hostname": "signed-host"}"#;
        std::fs::write(&src, json).unwrap();
        let (public, sk) = keypair();
        let (_, other) = keypair();
        let t = trusting(&public, false, &root, "52:54:00:0A:00:04");
        let id = public.lines().next().unwrap().rsplit(' ').next().unwrap().to_string();
        let inner = |t: &Trust| fetch_inner(src.to_str().unwrap(), &dest, &mut no_network, t);
        // Unsigned: refused, naming the key it wants and how to sign.
        let e = inner(&t).unwrap_err();
        assert!(e.contains("unsigned") && e.contains(&id) && e.contains("--sign-key"), "{e}");
        // Signed for this machine (the MAC in any case): accepted and said so.
        std::fs::write(&sig, sign(&sk, json, "timestamp:1\tfile:machine.json\tmac:52:54:00:0a:00:04")).unwrap();
        let (c, said) = inner(&t).unwrap();
        assert_eq!(c.hostname.as_deref(), Some("signed-host"));
        assert_eq!(said, format!("signed by minisign key {id} for 52:54:00:0a:00:04; "));
        // minisign's own trusted comment (no mac): accepted.
        std::fs::write(&sig, sign(&sk, json, "timestamp:1\tfile:machine.json\thashed")).unwrap();
        assert_eq!(inner(&t).unwrap().1, format!("signed by minisign key {id}; "));
        // For another machine: refused.
        std::fs::write(&sig, sign(&sk, json, "timestamp:1\tmac:52:54:00:0a:00:05")).unwrap();
        let e = inner(&t).unwrap_err();
        assert!(e.contains("for the machine 52:54:00:0a:00:05, not this one (52:54:00:0a:00:04)"), "{e}");
        // By another key: refused.
        std::fs::write(&sig, sign(&other, json, "timestamp:1")).unwrap();
        let e = inner(&t).unwrap_err();
        assert!(e.contains("signed by another key") && e.contains(&id), "{e}");
        // The configuration changed after signing: refused.
        std::fs::write(&sig, sign(&sk, json, "timestamp:1")).unwrap();
        std::fs::write(&src, r#"{"hostname": "evil-host"}"#).unwrap();
        let e = inner(&t).unwrap_err();
        assert!(e.contains("does not match the configuration"), "{e}");
        // Garbage for a signature, and one too large to be one.
        std::fs::write(&sig, "hello\n").unwrap();
        assert!(inner(&t).unwrap_err().contains("not in minisign's format"));
        std::fs::write(&sig, "x".repeat(5000)).unwrap();
        assert!(inner(&t).unwrap_err().contains("more than the 4096"));
        std::fs::write(&sig, "hello\n").unwrap();
        // Not required: a refusal is a warning (None); required: an error naming the source.
        assert!(fetch_with(Some(src.to_str().unwrap()), &dest, &mut no_network, &t).unwrap().is_none());
        assert!(!dest.exists(), "nothing refused is left for stage 2");
        let req = trusting(&public, true, &root, "52:54:00:0a:00:04");
        let e = fetch_with(Some(src.to_str().unwrap()), &dest, &mut no_network, &req).unwrap_err().to_string();
        assert!(e.contains("machine.json") && e.contains("not in minisign's format"), "{e}");
        let e = fetch_with(None, &dest, &mut no_network, &req).unwrap_err().to_string();
        assert!(e.contains("no oa.config= on the kernel command line"), "{e}");
        assert!(fetch_with(None, &dest, &mut no_network, &t).unwrap().is_none());
        // An unusable key refuses everything.
        let bad = Trust { key: Some(Trust::key("junk")), required: false, net_class: root.clone() };
        assert!(inner(&bad).unwrap_err().contains("unusable"));
        std::fs::remove_dir_all(&root).unwrap();
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
        // Applying again changes nothing, and says so (no leftovers).
        let a = apply(&root, &cfg);
        assert!(a.done.is_empty(), "{:?}", a.done);
        assert_eq!(a.unchanged, 4);
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
        let c = fetch_with(Some(src.to_str().unwrap()), &dest, &mut no_network, &open()).unwrap().unwrap();
        assert_eq!(c.hostname.as_deref(), Some("h1"));
        // What stage 1 leaves parses back to the same configuration.
        assert_eq!(RuntimeConfig::parse(&std::fs::read_to_string(&dest).unwrap()).unwrap(), c);
        // A strictly parsed file: an unknown key is refused and nothing is left behind.
        std::fs::write(&src, r#"{"hostname": "h1", "users": {}}"#).unwrap();
        assert!(fetch_inner(src.to_str().unwrap(), &dest, &mut no_network, &open())
            .unwrap_err()
            .contains("unknown field `users`"));
        assert!(fetch_with(Some(src.to_str().unwrap()), &dest, &mut no_network, &open()).unwrap().is_none());
        assert!(!dest.exists());
        assert!(fetch_inner("relative.json", &dest, &mut no_network, &open()).is_err());
        assert!(fetch_inner("https://10.0.0.1/x", &dest, &mut no_network, &open()).is_err());
        assert!(fetch_inner(root.join("missing.json").to_str().unwrap(), &dest, &mut no_network, &open())
            .unwrap_err()
            .contains("missing.json"));
        std::fs::remove_dir_all(&root).unwrap();
    }

    fn user_root(name: &str) -> PathBuf {
        let root = tempdir(name);
        std::fs::write(root.join("etc/passwd"), "root:x:0:0:root:/root:/bin/sh\nweb:x:1000:1000::/home/web:/bin/sh\n")
            .unwrap();
        std::fs::write(root.join("etc/hostname"), "image\n").unwrap();
        std::fs::write(root.join("etc/motd"), "from the image\n").unwrap();
        root
    }

    /// Every regular file under `root` (path, content, mode, owner), the comparison of trees.
    fn tree(root: &Path) -> Vec<(String, Vec<u8>, u32, u32)> {
        fn walk(root: &Path, d: &Path, out: &mut Vec<(String, Vec<u8>, u32, u32)>) {
            for e in std::fs::read_dir(d).unwrap() {
                let p = e.unwrap().path();
                let m = std::fs::symlink_metadata(&p).unwrap();
                if m.is_dir() {
                    walk(root, &p, out);
                } else {
                    let rel = p.strip_prefix(root).unwrap().display().to_string();
                    out.push((rel, std::fs::read(&p).unwrap(), m.mode() & 0o7777, m.uid()));
                }
            }
        }
        let mut out = Vec::new();
        walk(root, root, &mut out);
        out.sort();
        out
    }

    fn cfg(json: &str) -> RuntimeConfig {
        RuntimeConfig::parse(json).unwrap()
    }

    #[test]
    fn a_linked_ssh_folder_is_refused_and_its_target_untouched() {
        let root = user_root("sshlink");
        std::fs::create_dir_all(root.join("home/web")).unwrap();
        std::os::unix::fs::symlink("/etc", root.join("home/web/.ssh")).unwrap();
        let before = std::fs::metadata("/etc").unwrap();
        let a = apply(&root, &cfg(r#"{"ssh_authorized_keys": {"web": ["ssh-ed25519 AAAA k"]}}"#));
        assert_eq!(a.failed.len(), 1, "{:?}", a);
        assert!(a.failed[0].contains("/home/web/.ssh is a symbolic link: refused"), "{:?}", a.failed);
        let after = std::fs::metadata("/etc").unwrap();
        assert_eq!((after.uid(), after.mode()), (before.uid(), before.mode()));
        assert!(!Path::new("/etc/authorized_keys").exists());
        // A file entry through a linked folder, or a link as the file, is refused as well.
        std::os::unix::fs::symlink(std::env::temp_dir(), root.join("etc/out")).unwrap();
        let a = apply(&root, &cfg(r#"{"files": [{"path": "/etc/out/x", "content": "x"}]}"#));
        assert!(a.failed[0].contains("/etc/out is a symbolic link"), "{:?}", a.failed);
        std::fs::remove_file(root.join("etc/hostname")).unwrap();
        std::os::unix::fs::symlink(root.join("etc/motd"), root.join("etc/hostname")).unwrap();
        let a = apply(&root, &cfg(r#"{"hostname": "h"}"#));
        assert!(a.failed[0].contains("/etc/hostname is a symbolic link"), "{:?}", a.failed);
        assert_eq!(std::fs::read_to_string(root.join("etc/motd")).unwrap(), "from the image\n");
        std::fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn the_config_is_the_desired_state() {
        let old = cfg(r#"{"hostname": "h1", "ssh_authorized_keys": {"web": ["k1", "k2"]},
                "files": [{"path": "/etc/motd", "content": "old\n"}, {"path": "/etc/app.conf", "content": "a\n", "mode": "0600"}]}"#);
        let new =
            cfg(r#"{"ssh_authorized_keys": {"web": ["k2"]}, "files": [{"path": "/etc/app.conf", "content": "b\n"}]}"#);
        let empty = cfg("{}");
        let pristine = user_root("pristine");
        let image = tree(&pristine);
        // apply(new) after apply(old) = apply(new) on a fresh root.
        let r1 = user_root("old-new");
        apply(&r1, &old);
        let a = apply(&r1, &new);
        assert!(a.failed.is_empty(), "{:?}", a.failed);
        assert!(a.done.contains(&"restored /etc/hostname".to_string()), "{:?}", a.done);
        assert!(a.done.contains(&"restored /etc/motd".to_string()), "{:?}", a.done);
        let r2 = user_root("new");
        apply(&r2, &new);
        assert_eq!(tree(&r1), tree(&r2));
        assert_eq!(std::fs::read_to_string(r1.join("home/web/.ssh/authorized_keys")).unwrap(), "k2\n");
        // Twice = once: the second reports nothing changed.
        let a = apply(&r1, &new);
        assert!(a.done.is_empty() && a.failed.is_empty(), "{a:?}");
        // Dropping everything gives the image back (files only: folders oa made stay).
        let a = apply(&r1, &empty);
        assert!(a.done.contains(&"removed /home/web/.ssh/authorized_keys".to_string()), "{:?}", a.done);
        assert_eq!(tree(&r1), image);
        // A file changed since oa wrote it is left alone (with a warning).
        apply(&r2, &old);
        std::fs::write(r2.join("etc/app.conf"), "mine\n").unwrap();
        let a = apply(&r2, &empty);
        assert_eq!(a.failed.len(), 1, "{a:?}");
        assert!(a.failed[0].contains("/etc/app.conf") && a.failed[0].contains("changed since"), "{:?}", a.failed);
        assert_eq!(std::fs::read_to_string(r2.join("etc/app.conf")).unwrap(), "mine\n");
        // The record is root's and private.
        apply(&r2, &old);
        assert_eq!(mode(&r2.join(rootfs_paths::RUNTIME_CONFIG_APPLIED)), 0o600);
        for r in [pristine, r1, r2] {
            std::fs::remove_dir_all(&r).unwrap();
        }
    }

    #[test]
    fn what_stage_1_leaves_is_private() {
        let root = tempdir("private");
        let dest = root.join("run/config.json");
        let src = root.join("machine.json");
        std::fs::write(&src, r#"{"files": [{"path": "/etc/secret", "content": "s", "mode": "0600"}]}"#).unwrap();
        // An old world-readable file is not reused.
        std::fs::create_dir_all(dest.parent().unwrap()).unwrap();
        std::fs::write(&dest, "old").unwrap();
        std::fs::set_permissions(&dest, std::fs::Permissions::from_mode(0o644)).unwrap();
        fetch_with(Some(src.to_str().unwrap()), &dest, &mut no_network, &open()).unwrap().unwrap();
        assert_eq!(mode(&dest), 0o600);
        assert_eq!(std::fs::metadata(&dest).unwrap().uid(), nix::unistd::getuid().as_raw());
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
