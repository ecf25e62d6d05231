//! Profile sections for full-OS bases and customisation (issue 6): `[debian]`, `[pacman]`,
//! `[users.<name>]`, `[system]`, `[files."<path>"]`. See docs/bases.md.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::merge::SetList;

partial_section! {
    /// `[debian]`: where `base = "debian"` comes from (mmdebstrap).
    #[serde(expecting = "a [debian] table")]
    pub struct PartialDebian {
        /// Release codename (default: the host's, from /etc/os-release).
        pub suite: Option<String>,
        /// Mirror URL (default: the host apt's Debian mirror).
        pub mirror: Option<String>,
        /// mmdebstrap variant (default `apt`: Essential + apt).
        pub variant: Option<String>,
        /// Archive components (default `["main"]`).
        pub components: SetList,
        /// Leave out /usr/share/{doc,man,info,locale} (default true).
        pub slim: Option<bool>,
        /// Also install from `<suite>-updates` (default true; false for a pinned build).
        pub updates: Option<bool>,
        /// Also install from the security suite `<suite>-security` (default true).
        pub security: Option<bool>,
        /// Mirror of the security suite (default: the host apt's, else
        /// http://deb.debian.org/debian-security).
        pub security_mirror: Option<String>,
    }
}

partial_section! {
    /// `[pacman.repos.<name>]`: one pacman repository.
    #[serde(expecting = "a repository table like { servers = [\"https://.../$repo/os/$arch\"] }")]
    pub struct PartialPacmanRepo {
        /// `Server =` lines (`https://`, `http://`, `file://`), tried in order.
        pub servers: SetList,
        /// `SigLevel` for this repository (default: `[pacman] sig_level`).
        pub sig_level: Option<String>,
    }
}

partial_section! {
    /// `[pacman]`: where `base = "arch"` comes from.
    #[serde(expecting = "a [pacman] table")]
    pub struct PartialPacman {
        /// Global `SigLevel` (default `Required DatabaseOptional`).
        pub sig_level: Option<String>,
        /// Package cache folder, reused across builds (default `<oa cache>/pacman/pkg`).
        pub cache_dir: Option<String>,
        /// Extra `[options]` lines for pacman.conf (`ParallelDownloads = 4`, `NoExtract = ...`).
        pub options: SetList,
        /// Repositories, in name order.
        pub repos: BTreeMap<String, PartialPacmanRepo>,
        /// Directory with a pacman keyring (`pacman-key --init` output) for signed repositories.
        pub gpg_dir: Option<String>,
    }
}

partial_section! {
    /// `[users.<name>]`: a user account in the root filesystem.
    #[serde(expecting = "a user table like { groups = [\"wheel\"], ssh_authorized_keys = [\"ssh-ed25519 ...\"] }")]
    pub struct PartialUser {
        /// Default: the first free uid from 1000.
        pub uid: Option<u32>,
        /// Supplementary groups (created when missing).
        pub groups: SetList,
        /// Login shell (default /bin/bash when present, else /bin/sh).
        pub shell: Option<String>,
        /// Home folder (default /home/<name>; /root for root).
        pub home: Option<String>,
        /// crypt(3) hash (`mkpasswd -m sha-512`, `openssl passwd -6`); none: no password login.
        pub password_hash: Option<String>,
        /// Lock the account entirely (`!` in /etc/shadow): no login at all.
        pub locked: Option<bool>,
        /// Lines of ~/.ssh/authorized_keys.
        pub ssh_authorized_keys: SetList,
    }
}

partial_section! {
    /// `[system]`: settings applied to any base.
    #[serde(expecting = "a [system] table")]
    pub struct PartialSystem {
        /// `Area/City` under /usr/share/zoneinfo, or `UTC`.
        pub timezone: Option<String>,
        /// `LANG` (`C.UTF-8`, `en_US.UTF-8` ...) written to /etc/locale.conf and /etc/default/locale.
        pub locale: Option<String>,
        /// systemd units to enable (their [Install] section is followed).
        pub enable_units: SetList,
        /// systemd units to mask (linked to /dev/null).
        pub mask_units: SetList,
        /// Configure every ethernet link with DHCP through systemd-networkd (default: true
        /// when systemd is the init).
        pub dhcp: Option<bool>,
    }
}

partial_section! {
    /// `[files."/etc/motd"]`: a file generated from the profile.
    #[serde(expecting = "a file table like { content = \"...\", mode = 0o644 }")]
    pub struct PartialFile {
        pub content: Option<String>,
        /// Default 0o644.
        pub mode: Option<u32>,
    }
}

// ---------------------------------------------------------------------------------------------
// Resolved forms.

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Debian {
    pub suite: Option<String>,
    pub mirror: Option<String>,
    pub variant: String,
    pub components: Vec<String>,
    pub slim: bool,
    pub updates: bool,
    pub security: bool,
    pub security_mirror: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PacmanRepo {
    pub name: String,
    pub servers: Vec<String>,
    pub sig_level: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pacman {
    pub sig_level: String,
    pub cache_dir: Option<String>,
    pub options: Vec<String>,
    pub repos: Vec<PacmanRepo>,
    pub gpg_dir: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct User {
    pub name: String,
    pub uid: Option<u32>,
    pub groups: Vec<String>,
    pub shell: Option<String>,
    pub home: Option<String>,
    pub password_hash: Option<String>,
    pub locked: bool,
    pub ssh_authorized_keys: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct System {
    pub timezone: Option<String>,
    pub locale: Option<String>,
    pub enable_units: Vec<String>,
    pub mask_units: Vec<String>,
    pub dhcp: Option<bool>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct File {
    /// Absolute path in the root filesystem.
    pub path: String,
    pub content: String,
    pub mode: u32,
}

/// Default `[pacman] sig_level` (pacman's own default).
pub const DEFAULT_SIG_LEVEL: &str = "Required DatabaseOptional";

fn v(s: &SetList) -> Vec<String> {
    s.as_slice().to_vec()
}

pub(crate) fn finalize_debian(d: &PartialDebian) -> Debian {
    let components = if d.components.as_slice().is_empty() { vec!["main".to_string()] } else { v(&d.components) };
    Debian {
        suite: d.suite.clone(),
        mirror: d.mirror.clone(),
        variant: d.variant.clone().unwrap_or_else(|| "apt".into()),
        components,
        slim: d.slim.unwrap_or(true),
        updates: d.updates.unwrap_or(true),
        security: d.security.unwrap_or(true),
        security_mirror: d.security_mirror.clone(),
    }
}

pub(crate) fn finalize_pacman(p: &PartialPacman) -> Result<Pacman, String> {
    let mut repos = Vec::new();
    for (name, r) in &p.repos {
        if r.servers.as_slice().is_empty() {
            return Err(format!("pacman repository `{name}` has no servers; add `servers = [\"https://mirror/$repo/os/$arch\"]` under [pacman.repos.{name}]"));
        }
        repos.push(PacmanRepo { name: name.clone(), servers: v(&r.servers), sig_level: r.sig_level.clone() });
    }
    Ok(Pacman {
        sig_level: p.sig_level.clone().unwrap_or_else(|| DEFAULT_SIG_LEVEL.into()),
        cache_dir: p.cache_dir.clone(),
        options: v(&p.options),
        repos,
        gpg_dir: p.gpg_dir.clone(),
    })
}

pub(crate) fn finalize_users(users: &BTreeMap<String, PartialUser>) -> Result<Vec<User>, String> {
    let mut out = Vec::new();
    for (name, u) in users {
        let ok = !name.is_empty()
            && name.len() <= 32
            && name.chars().next().is_some_and(|c| c.is_ascii_lowercase() || c == '_')
            && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-');
        if !ok {
            return Err(format!(
                "invalid user name `{name}`: lower-case letters, digits, `_` and `-`, starting with a letter or `_`"
            ));
        }
        let locked = u.locked.unwrap_or(false);
        if locked && u.password_hash.is_some() {
            return Err(format!("user `{name}` has both `locked = true` and a `password_hash`; keep one"));
        }
        if let Some(h) = &u.password_hash {
            if h.contains(':') || h.contains('\n') {
                return Err(format!("user `{name}`: password_hash must be a crypt(3) hash without `:` or newlines"));
            }
        }
        for k in u.ssh_authorized_keys.iter() {
            if k.contains('\n') {
                return Err(format!("user `{name}`: one authorized key per list entry (no newlines)"));
            }
        }
        for g in u.groups.iter() {
            if g.is_empty() || g.contains([':', ',', '\n', ' ']) {
                return Err(format!("user `{name}`: invalid group name `{g}`"));
            }
        }
        out.push(User {
            name: name.clone(),
            uid: u.uid,
            groups: v(&u.groups),
            shell: u.shell.clone(),
            home: u.home.clone(),
            password_hash: u.password_hash.clone(),
            locked,
            ssh_authorized_keys: v(&u.ssh_authorized_keys),
        });
    }
    Ok(out)
}

pub(crate) fn finalize_system(s: &PartialSystem) -> Result<System, String> {
    if let Some(tz) = &s.timezone {
        if tz.is_empty() || tz.starts_with('/') || tz.contains("..") {
            return Err(format!("system.timezone `{tz}`: give a zoneinfo name such as `Europe/Berlin` or `UTC`"));
        }
    }
    for u in s.enable_units.iter().chain(s.mask_units.iter()) {
        if u.contains('/') || !u.contains('.') {
            return Err(format!("systemd unit `{u}`: give a unit name with its type, e.g. `ssh.service`"));
        }
    }
    Ok(System {
        timezone: s.timezone.clone(),
        locale: s.locale.clone(),
        enable_units: v(&s.enable_units),
        mask_units: v(&s.mask_units),
        dhcp: s.dhcp,
    })
}

pub(crate) fn finalize_files(files: &BTreeMap<String, PartialFile>) -> Result<Vec<File>, String> {
    let mut out = Vec::new();
    for (path, f) in files {
        if !path.starts_with('/') || path.split('/').any(|c| c == "..") || path.ends_with('/') {
            return Err(format!(
                "[files.\"{path}\"]: give an absolute file path inside the root filesystem, without `..`"
            ));
        }
        let Some(content) = f.content.clone() else {
            return Err(format!("[files.\"{path}\"] has no `content`"));
        };
        let mode = f.mode.unwrap_or(0o644);
        if mode > 0o7777 {
            return Err(format!("[files.\"{path}\"]: mode {mode:o} is not a file mode; write it as 0o644"));
        }
        out.push(File { path: path.clone(), content, mode });
    }
    Ok(out)
}

// Back to partial form (`Profile::to_toml`).

pub(crate) fn partial_debian(d: &Debian) -> PartialDebian {
    PartialDebian {
        suite: d.suite.clone(),
        mirror: d.mirror.clone(),
        variant: Some(d.variant.clone()),
        components: SetList::from(d.components.clone()),
        slim: Some(d.slim),
        updates: Some(d.updates),
        security: Some(d.security),
        security_mirror: d.security_mirror.clone(),
    }
}

pub(crate) fn partial_pacman(p: &Pacman) -> PartialPacman {
    PartialPacman {
        sig_level: Some(p.sig_level.clone()),
        cache_dir: p.cache_dir.clone(),
        options: SetList::from(p.options.clone()),
        repos: p
            .repos
            .iter()
            .map(|r| {
                (
                    r.name.clone(),
                    PartialPacmanRepo { servers: SetList::from(r.servers.clone()), sig_level: r.sig_level.clone() },
                )
            })
            .collect(),
        gpg_dir: p.gpg_dir.clone(),
    }
}

pub(crate) fn partial_users(users: &[User]) -> BTreeMap<String, PartialUser> {
    users
        .iter()
        .map(|u| {
            (
                u.name.clone(),
                PartialUser {
                    uid: u.uid,
                    groups: SetList::from(u.groups.clone()),
                    shell: u.shell.clone(),
                    home: u.home.clone(),
                    password_hash: u.password_hash.clone(),
                    locked: Some(u.locked),
                    ssh_authorized_keys: SetList::from(u.ssh_authorized_keys.clone()),
                },
            )
        })
        .collect()
}

pub(crate) fn partial_system(s: &System) -> PartialSystem {
    PartialSystem {
        timezone: s.timezone.clone(),
        locale: s.locale.clone(),
        enable_units: SetList::from(s.enable_units.clone()),
        mask_units: SetList::from(s.mask_units.clone()),
        dhcp: s.dhcp,
    }
}

pub(crate) fn partial_files(files: &[File]) -> BTreeMap<String, PartialFile> {
    files
        .iter()
        .map(|f| (f.path.clone(), PartialFile { content: Some(f.content.clone()), mode: Some(f.mode) }))
        .collect()
}
