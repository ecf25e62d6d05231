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
