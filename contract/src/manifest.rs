//! `manifest.json`: what a build produced, for people, `oa run`, `oa serve` and the tests.

use serde::{Deserialize, Serialize};

pub const FILE_NAME: &str = "manifest.json";
pub const SCHEMA_VERSION: u32 = 1;

/// Artifact names (also the file names in the output directory).
pub mod artifact {
    pub const KERNEL: &str = "vmlinuz";
    pub const INITRAMFS: &str = "initramfs.img";
    pub const ROOTFS: &str = "rootfs.squashfs";
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    pub schema: u32,
    pub profile: String,
    pub arch: String,
    pub kernel_release: String,
    /// The kernel command line to boot this output with (oa.* keys included, console not).
    pub cmdline: Vec<String>,
    pub artifacts: Vec<Artifact>,
    /// Builder version that made this output.
    pub builder: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Artifact {
    pub name: String,
    /// File name relative to the output directory.
    pub path: String,
    pub size: u64,
    pub sha256: String,
}

impl Manifest {
    pub fn artifact(&self, name: &str) -> Option<&Artifact> {
        self.artifacts.iter().find(|a| a.name == name)
    }
}
