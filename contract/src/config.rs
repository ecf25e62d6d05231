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
