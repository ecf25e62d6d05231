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
    /// Module files, relative to the initramfs root, loaded at the start of stage 1 in this
    /// order (dependencies first): what the boot needs whatever the hardware (squashfs,
    /// overlay, loop, the profile's `[kernel] modules`). Driver classes are not listed here:
    /// their modules are loaded by coldplug, when a device asks for them
    /// (`modules.alias`/`modules.dep`, see [`crate::modules`]).
    pub modules: Vec<String>,
    /// The driver classes the initramfs carries (`[kernel] drivers`), for messages.
    #[serde(default)]
    pub drivers: Vec<String>,
    /// Cmdline defaults baked in at build time; the kernel command line overrides them.
    #[serde(default)]
    pub default_cmdline: Vec<String>,
    /// Copy the root image into RAM (profile `[image] copytoram`); `oa.copytoram` on the
    /// command line overrides it.
    #[serde(default)]
    pub copytoram: CopyToRam,
    /// With [`CopyToRam::Auto`]: copy only when the machine's RAM is at least this many times
    /// the root image (profile `[image] copytoram_ram_factor`).
    #[serde(default = "default_copytoram_ram_factor")]
    pub copytoram_ram_factor: u32,
    /// The boot stops (FATAL) unless a run-time configuration (`oa.config=`) arrives and,
    /// when the initramfs holds [`crate::initramfs_paths::CONFIG_KEY`], is signed by that key
    /// (profile `[secure_boot] config_required`). Otherwise a missing or refused configuration
    /// is a warning and the boot goes on with the profile alone.
    #[serde(default)]
    pub config_required: bool,
}

/// Default of [`InitramfsConfig::copytoram_ram_factor`].
pub const DEFAULT_COPYTORAM_RAM_FACTOR: u32 = 4;

fn default_copytoram_ram_factor() -> u32 {
    DEFAULT_COPYTORAM_RAM_FACTOR
}

crate::arch::string_enum! {
    /// Whether oa-init copies the root image into RAM before mounting it, so that the boot
    /// medium can be removed (profile `[image] copytoram`, command line `oa.copytoram`).
    pub enum CopyToRam {
        /// When the root image is on removable or optical media (a USB stick, a CD, a BMC's
        /// virtual media) and RAM is at least `copytoram_ram_factor` times the image.
        Auto = "auto",
        /// Always (a boot fails when the image does not fit in RAM).
        Yes = "yes",
        /// Never: the image is used in place.
        No = "no",
    }
}

// string_enum! fixes the derive list, so Default is written out.
#[allow(clippy::derivable_impls)]
impl Default for CopyToRam {
    fn default() -> Self {
        CopyToRam::Auto
    }
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
    /// Keep [`crate::mounts::RUNTIME_CONFIG`] after it was applied (profile `[init]
    /// keep_runtime_config`); by default it is removed once applied, as it may hold secrets.
    #[serde(default)]
    pub keep_runtime_config: bool,
}

crate::arch::string_enum! {
    /// What runs as PID 1 after switch_root (profile `[init] system`).
    #[derive(Default)]
    pub enum InitSystem {
        /// oa-init supervises the profile's services.
        #[default]
        Oa = "oa",
        /// oa-init execs /sbin/init (systemd).
        Systemd = "systemd",
    }
}

/// The part of [`SystemConfig`] stage 1 needs to choose the next init: read leniently (other
/// keys are ignored), so that a system.json stage 2 would refuse still names its init.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
pub struct SystemInit {
    #[serde(default)]
    pub init: InitSystem,
    /// [`SystemConfig::keep_runtime_config`]: stage 1 applies the run-time configuration of
    /// a systemd root itself and removes it afterwards unless this is set.
    #[serde(default)]
    pub keep_runtime_config: bool,
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

crate::arch::string_enum! {
    /// When the supervisor restarts a service.
    #[derive(Default)]
    pub enum Restart {
        #[default]
        Always = "always",
        OnFailure = "on-failure",
        Never = "never",
    }
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
    pub key: KeySource,
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
    #[serde(default)]
    pub pbkdf: Pbkdf,
    /// argon2 memory in KiB; 0: libcryptsetup's benchmark decides.
    #[serde(default)]
    pub pbkdf_memory_kib: u32,
    /// PBKDF iterations (argon2 time cost or pbkdf2 iterations); 0: benchmarked (2 s).
    #[serde(default)]
    pub pbkdf_iterations: u32,
}

/// Passphrase attempts when the profile does not say ([`PersistConfig::retries`]).
pub const DEFAULT_RETRIES: u32 = 3;
/// Boot snapshots kept when the profile does not say ([`PersistConfig::snapshots_keep`]).
pub const DEFAULT_SNAPSHOTS_KEEP: u32 = 5;
/// The persistence device of a `disk.img` (its blank `oa-persist` partition), the example the
/// builder's messages give.
pub const DEFAULT_PERSIST_DEVICE: &str = "PARTLABEL=oa-persist";

fn default_retries() -> u32 {
    DEFAULT_RETRIES
}
fn default_keep() -> u32 {
    DEFAULT_SNAPSHOTS_KEEP
}

crate::arch::string_enum! {
    /// Formatting consent of [`PersistConfig::format`] (profile `[persistence] format`).
    #[derive(Default)]
    pub enum PersistFormat {
        /// Never format: the device must hold an oa volume already.
        #[default]
        Never = "never",
        /// Format it when it is blank (all zeros at its start and end).
        IfBlank = "if-blank",
    }
}

crate::arch::string_enum! {
    /// LUKS2 key slot PBKDF of [`PersistConfig::pbkdf`] (profile `[persistence] pbkdf`).
    #[derive(Default)]
    pub enum Pbkdf {
        #[default]
        Argon2id = "argon2id",
        Pbkdf2 = "pbkdf2",
    }
}

/// Where the persistence key comes from ([`PersistConfig::key`], `oa.persist.key=`), spelled
/// `passphrase`, `file:/path` or `network` in persist.json and on the command line.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum KeySource {
    /// Typed at the console at every boot.
    Passphrase,
    /// A file (absolute path; in the initramfs: only as secret as the image).
    File(String),
    /// Fetched over the network (not implemented yet).
    Network,
}

impl KeySource {
    /// Parse `passphrase`, `file:/path` or `network`.
    pub fn parse(s: &str) -> Result<KeySource, String> {
        match s {
            "passphrase" => Ok(KeySource::Passphrase),
            "network" => Ok(KeySource::Network),
            _ => match s.strip_prefix("file:") {
                Some(p) if p.starts_with('/') => Ok(KeySource::File(p.to_string())),
                _ => Err(format!("key source {s:?}: expected passphrase, file:/path or network")),
            },
        }
    }

    /// For people: `passphrase`, `key file /path`, `network key`.
    pub fn describe(&self) -> String {
        match self {
            KeySource::Passphrase => "passphrase".into(),
            KeySource::File(p) => format!("key file {p}"),
            KeySource::Network => "network key".into(),
        }
    }
}

impl std::fmt::Display for KeySource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            KeySource::Passphrase => f.write_str("passphrase"),
            KeySource::File(p) => write!(f, "file:{p}"),
            KeySource::Network => f.write_str("network"),
        }
    }
}

impl std::str::FromStr for KeySource {
    type Err = String;

    fn from_str(s: &str) -> Result<KeySource, String> {
        KeySource::parse(s)
    }
}

impl TryFrom<String> for KeySource {
    type Error = String;

    fn try_from(s: String) -> Result<KeySource, String> {
        KeySource::parse(&s)
    }
}

impl From<KeySource> for String {
    fn from(k: KeySource) -> String {
        k.to_string()
    }
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

/// [`crate::rootfs_paths::RUNTIME_CONFIG_APPLIED`] in the root: what oa-init wrote from the
/// run-time configuration, so that what a later configuration no longer asks for is taken
/// back (the configuration is the desired state). Written and read by oa-init only.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuntimeApplied {
    /// Absolute path inside the root -> what oa-init wrote there.
    #[serde(default)]
    pub files: std::collections::BTreeMap<String, AppliedFile>,
}

/// One file of [`RuntimeApplied`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AppliedFile {
    /// sha256 (hex) of the content oa-init wrote: a file that no longer has it was changed
    /// by someone else and is left alone.
    pub sha256: String,
    /// The file that was there before oa-init first wrote it (restored when the path is no
    /// longer asked for); None: there was none (the file is removed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub before: Option<PreviousFile>,
}

/// A file as it was before oa-init replaced it ([`AppliedFile::before`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PreviousFile {
    /// sha256 (hex) of the content.
    pub sha256: String,
    /// The content, hex-encoded (it may not be text).
    pub content_hex: String,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
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
mod persist_tests {
    use super::*;

    #[test]
    fn persist_json_spellings() {
        let c: PersistConfig = serde_json::from_str(r#"{"device":"","key":"passphrase"}"#).unwrap();
        assert_eq!(
            (c.key.clone(), c.pbkdf, c.retries, c.snapshots_keep),
            (KeySource::Passphrase, Pbkdf::Argon2id, 3, 5)
        );
        let c: PersistConfig = serde_json::from_str(
            r#"{"device":"d","key":"file:/etc/oa/persist.key","pbkdf":"pbkdf2","format":"if-blank"}"#,
        )
        .unwrap();
        assert_eq!(c.key, KeySource::File("/etc/oa/persist.key".into()));
        assert_eq!((c.pbkdf, c.format), (Pbkdf::Pbkdf2, PersistFormat::IfBlank));
        let j = serde_json::to_string(&c).unwrap();
        assert!(j.contains(r#""key":"file:/etc/oa/persist.key""#) && j.contains(r#""pbkdf":"pbkdf2""#), "{j}");
        assert!(serde_json::from_str::<PersistConfig>(r#"{"device":"d","key":"passphrase","pbkdf":"argon"}"#).is_err());
        assert!(serde_json::from_str::<PersistConfig>(r#"{"device":"d","key":"file:rel"}"#).is_err());
        assert_eq!("network".parse::<KeySource>(), Ok(KeySource::Network));
    }

    #[test]
    fn system_init_reads_only_init() {
        let s: SystemInit = serde_json::from_str(r#"{"init":"systemd","other":1}"#).unwrap();
        assert_eq!(s.init, InitSystem::Systemd);
        assert_eq!(serde_json::from_str::<SystemInit>("{}").unwrap().init, InitSystem::Oa);
        assert_eq!(serde_json::to_string(&Restart::OnFailure).unwrap(), "\"on-failure\"");
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
