//! Files the builder writes for oa-init: what to do is decided at build time (plan), the init
//! only carries it out (act).

use serde::{Deserialize, Serialize};

/// `/etc/oa/initramfs.json` in the initramfs.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InitramfsConfig {
    /// Profile name, for messages.
    pub profile: String,
    /// Kernel release the modules are for (`uname -r`).
    pub kernel_release: String,
    /// Module files, relative to the initramfs root, in the order to load them (dependencies
    /// first, computed by the builder from modules.dep).
    pub modules: Vec<String>,
    /// Cmdline defaults baked in at build time; the kernel command line overrides them.
    #[serde(default)]
    pub default_cmdline: Vec<String>,
}

/// `/etc/oa/system.json` in the root filesystem: what stage 2 (PID 1) does.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SystemConfig {
    pub profile: String,
    pub hostname: String,
    /// `oa` (oa-init supervises `services`) or `systemd` (exec /sbin/init after switch_root).
    #[serde(default)]
    pub init: InitSystem,
    #[serde(default)]
    pub services: Vec<Service>,
    /// Start an interactive shell on the console (a service restarted when it exits).
    #[serde(default)]
    pub console_shell: bool,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum InitSystem {
    #[default]
    Oa,
    Systemd,
}

/// A supervised service.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Service {
    pub name: String,
    /// argv; `command[0]` is an absolute path inside the root filesystem.
    pub command: Vec<String>,
    #[serde(default)]
    pub restart: Restart,
    /// Extra environment, `KEY=VALUE`.
    #[serde(default)]
    pub env: Vec<String>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Restart {
    #[default]
    Always,
    OnFailure,
    Never,
}

/// `/etc/oa/persist.json` in the initramfs (and the root image): the profile's `[persistence]`
/// section as oa-init and `oa-storage` use it. The kernel command line (`oa.persist=`,
/// `oa.persist.key=`, `oa.rollback=`) overrides `device`, `key` and the rollback target.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PersistConfig {
    /// `PARTLABEL=..`, `LABEL=..` (LUKS2 label), `UUID=..` (LUKS2 UUID) or a `/dev/...` path.
    pub device: String,
    /// Key source: `passphrase` (typed at the console), `file:/path` (a file in the initramfs),
    /// `network` (not implemented yet).
    pub key: String,
    /// Passphrase attempts before giving up.
    #[serde(default = "default_retries")]
    pub retries: u32,
    /// Paths that persist; empty: the whole overlay upper layer.
    #[serde(default)]
    pub paths: Vec<String>,
    /// Boot snapshots kept (named snapshots are never pruned).
    #[serde(default = "default_keep")]
    pub snapshots_keep: u32,
    /// On failure (device missing, wrong key, refused device) boot on tmpfs instead of stopping.
    #[serde(default)]
    pub optional: bool,
    /// `never` or `if-blank`: consent to format a device that is blank (no signature at all).
    #[serde(default)]
    pub format: PersistFormat,
    /// Boots in a row that may fail to reach the ready line before the next boot rolls back to
    /// the last snapshot that did; 0 turns boot counting off.
    #[serde(default)]
    pub boot_attempts: u32,
    /// LUKS2 key slot PBKDF: `argon2id` or `pbkdf2`.
    #[serde(default = "default_pbkdf")]
    pub pbkdf: String,
    /// argon2 memory in KiB; 0: libcryptsetup's benchmark decides.
    #[serde(default)]
    pub pbkdf_memory_kib: u32,
    /// PBKDF iterations (argon2 time cost or pbkdf2 iterations); 0: benchmarked (2 s).
    #[serde(default)]
    pub pbkdf_iterations: u32,
}

fn default_retries() -> u32 {
    3
}
fn default_keep() -> u32 {
    5
}
fn default_pbkdf() -> String {
    "argon2id".into()
}

/// Formatting consent of [`PersistConfig::format`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PersistFormat {
    #[default]
    Never,
    IfBlank,
}

/// What `oa-storage setup` leaves in `/run/oa/persist.json` for oa-init, `oa-init status` and
/// the snapshot commands of the running system.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PersistRuntime {
    /// The device that was unlocked.
    pub device: String,
    /// The dm-crypt mapping (`/dev/mapper/<name>`).
    pub mapping: String,
    /// Mount point of the btrfs top level.
    pub top: String,
    /// Mount point of the state subvolume (holds `upper/` and `work/`).
    pub state: String,
    /// The snapshot this boot's state started from (for boot counting).
    pub current: Option<String>,
}

/// The per-machine run-time configuration named by `oa.config=` (JSON; `oa serve` serves the
/// machines folder's `config = "file"` at `/config/<mac>`). Stage 1 fetches or reads it,
/// checks it ([`RuntimeConfig::parse`]) and leaves it in [`crate::mounts::RUNTIME_CONFIG`];
/// stage 2 (or stage 1 itself, for `init = systemd` images) applies it over the profile.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuntimeConfig {
    /// Overrides the profile's hostname.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hostname: Option<String>,
    /// user name -> public keys, written to `~user/.ssh/authorized_keys` (home from
    /// /etc/passwd; the folder 0700, the file 0600, owned by the user).
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub ssh_authorized_keys: std::collections::BTreeMap<String, Vec<String>>,
    /// Files written into the root filesystem (parents created 0755, owned by root).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub files: Vec<RuntimeFile>,
}

/// One file of [`RuntimeConfig::files`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuntimeFile {
    /// Absolute path inside the root filesystem; no `.` or `..` components.
    pub path: String,
    /// The whole content (UTF-8 text).
    pub content: String,
    /// Permission bits as an octal string (`"0600"`); default `"0644"`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<String>,
}

impl RuntimeFile {
    /// The permission bits ([`RuntimeFile::mode`], default 0644).
    pub fn mode_bits(&self) -> Result<u32, String> {
        match &self.mode {
            None => Ok(0o644),
            Some(m) => {
                let bits = u32::from_str_radix(m.trim_start_matches("0o"), 8)
                    .map_err(|_| format!("file {}: mode {m:?} is not an octal number such as \"0644\"", self.path))?;
                if bits > 0o7777 {
                    return Err(format!("file {}: mode {m:?} is more than 07777", self.path));
                }
                Ok(bits)
            }
        }
    }
}

impl RuntimeConfig {
    /// Parse the JSON strictly (unknown keys are errors) and check the values.
    pub fn parse(text: &str) -> Result<RuntimeConfig, String> {
        let c: RuntimeConfig = serde_json::from_str(text).map_err(|e| e.to_string())?;
        c.validate()?;
        Ok(c)
    }

    /// Check the values: a hostname of 1..=64 characters `[A-Za-z0-9.-]`, user names without
    /// `/` or `:`, keys on one line, file paths absolute and without `.`/`..`, octal modes.
    pub fn validate(&self) -> Result<(), String> {
        if let Some(h) = &self.hostname {
            if h.is_empty()
                || h.len() > 64
                || !h.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
                || h.starts_with(['-', '.'])
            {
                return Err(format!("hostname {h:?} is not valid (1 to 64 of A-Z a-z 0-9 - .)"));
            }
        }
        for (user, keys) in &self.ssh_authorized_keys {
            if user.is_empty() || user.contains(['/', ':', '\n', '\0']) || user == "." || user == ".." {
                return Err(format!("ssh_authorized_keys: user name {user:?} is not valid"));
            }
            for k in keys {
                if k.trim().is_empty() || k.contains(['\n', '\r', '\0']) {
                    return Err(format!("ssh_authorized_keys.{user}: a key must be one non-empty line"));
                }
            }
        }
        for f in &self.files {
            if !f.path.starts_with('/')
                || f.path.len() < 2
                || f.path.split('/').any(|c| c == "." || c == "..")
                || f.path.contains('\0')
                || f.path.ends_with('/')
            {
                return Err(format!(
                    "file {:?}: the path must be absolute, name a file, and have no . or .. components",
                    f.path
                ));
            }
            f.mode_bits()?;
        }
        Ok(())
    }

    /// One line for the console: what will be applied.
    pub fn summary(&self) -> String {
        let mut parts = Vec::new();
        if let Some(h) = &self.hostname {
            parts.push(format!("hostname={h}"));
        }
        for (u, k) in &self.ssh_authorized_keys {
            parts.push(format!("{} authorized key{} for {u}", k.len(), if k.len() == 1 { "" } else { "s" }));
        }
        if !self.files.is_empty() {
            parts.push(format!("files {}", self.files.iter().map(|f| f.path.as_str()).collect::<Vec<_>>().join(" ")));
        }
        if parts.is_empty() {
            "nothing to apply".into()
        } else {
            parts.join(", ")
        }
    }
}

#[cfg(test)]
mod runtime_tests {
    use super::*;

    #[test]
    fn parses_a_full_config() {
        let c = RuntimeConfig::parse(
            r#"{"hostname": "web1", "ssh_authorized_keys": {"root": ["ssh-ed25519 AAAA k@x"]},
                "files": [{"path": "/etc/motd", "content": "hi\n"}, {"path": "/etc/x", "content": "", "mode": "0600"}]}"#,
        )
        .unwrap();
        assert_eq!(c.hostname.as_deref(), Some("web1"));
        assert_eq!(c.ssh_authorized_keys["root"], vec!["ssh-ed25519 AAAA k@x".to_string()]);
        assert_eq!(c.files[0].mode_bits(), Ok(0o644));
        assert_eq!(c.files[1].mode_bits(), Ok(0o600));
        assert_eq!(c.summary(), "hostname=web1, 1 authorized key for root, files /etc/motd /etc/x");
        assert_eq!(RuntimeConfig::parse("{}").unwrap().summary(), "nothing to apply");
        // Round trip through the form stage 1 writes.
        assert_eq!(RuntimeConfig::parse(&serde_json::to_string(&c).unwrap()).unwrap(), c);
    }

    #[test]
    fn rejects_unknown_keys_and_bad_values() {
        assert!(RuntimeConfig::parse(r#"{"hostnam": "x"}"#).unwrap_err().contains("unknown field"));
        assert!(RuntimeConfig::parse(r#"{"hostname": "a b"}"#).is_err());
        assert!(RuntimeConfig::parse(r#"{"hostname": ""}"#).is_err());
        assert!(RuntimeConfig::parse(r#"{"ssh_authorized_keys": {"../x": ["k"]}}"#).is_err());
        assert!(RuntimeConfig::parse(r#"{"ssh_authorized_keys": {"root": ["a\nb"]}}"#).is_err());
        assert!(RuntimeConfig::parse(r#"{"files": [{"path": "etc/x", "content": ""}]}"#).is_err());
        assert!(RuntimeConfig::parse(r#"{"files": [{"path": "/etc/../x", "content": ""}]}"#).is_err());
        assert!(RuntimeConfig::parse(r#"{"files": [{"path": "/etc/x", "content": "", "mode": "9"}]}"#).is_err());
        assert!(RuntimeConfig::parse(r#"{"files": [{"path": "/etc/x", "content": "", "extra": 1}]}"#).is_err());
        assert!(RuntimeConfig::parse("not json").is_err());
    }
}
