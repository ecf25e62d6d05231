//! The profile model: per-file partial profiles, their composition, and the resolved,
//! validated [`Profile`] the builder works from.
//!
//! * [`load`] reads a top-level profile file, follows `include = [...]` depth-first (includes
//!   merged in order before the including file, each file once), validates every file
//!   strictly (unknown keys and wrong types are errors with `file:line:column`), merges the
//!   [`PartialProfile`]s with [`merge`], applies defaults and returns a [`Resolved`]: the typed
//!   [`Profile`], the files in merge order, the include edges and, for every leaf, the file(s)
//!   it came from.
//! * [`merge`] is associative and [`PartialProfile::default()`] (the empty file) is its
//!   identity; the rules are in [`merge`](self::merge) (module docs).
//!
//! Conventions chosen here:
//! * `name` is not inherited: only the top-level file's `name` counts (default: its file
//!   stem); an included file's `name` applies only when that file is built on its own.
//! * `include` is consumed by the loader; a resolved partial has no includes.
//! * `Profile::services` is sorted by service name (services are supervised concurrently; the
//!   order carries no meaning and sorting keeps hashes stable).
//! * Set-lists are deduplicated; an `env` entry cannot be overridden by a later file (env is a
//!   set-list), so two entries for the same variable are an error naming both files.
//! * Overlay paths are canonicalised (absolute, symlinks resolved) when their file is read.

#[macro_use]
pub mod merge;
mod error;
mod load;
mod render;
mod system;
mod validate;

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

pub use error::{Location, ProfileError};
pub use load::{find_profile, load, load_from};
pub use merge::{Empty, Leaf, Leaves, Merge, SetList};
/// The contract's enums, used by profiles as they are (same spellings in TOML and JSON).
pub use oa_contract::config::{CopyToRam, InitSystem, Pbkdf, PersistFormat, Restart};
pub use oa_contract::Arch;
pub use system::{
    Debian, File, Pacman, PacmanRepo, PartialDebian, PartialFile, PartialPacman, PartialPacmanRepo, PartialSystem,
    PartialUser, System, User, DEFAULT_SIG_LEVEL,
};
pub(crate) use validate::{Seg, Source as TomlSource};

// ---------------------------------------------------------------------------------------------
// Enumerations

macro_rules! string_enum {
    ($(#[$meta:meta])* pub enum $name:ident { $( $(#[$vmeta:meta])* $variant:ident = $text:literal, )* }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        pub enum $name {
            $( $(#[$vmeta])* #[serde(rename = $text)] $variant, )*
        }

        impl $name {
            /// Every value, in declaration order.
            pub const ALL: &'static [$name] = &[$($name::$variant),*];

            /// The spelling used in profiles.
            pub fn as_str(self) -> &'static str {
                match self { $( $name::$variant => $text, )* }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

string_enum! {
    /// What the root filesystem is built from.
    pub enum Base {
        Busybox = "busybox",
        Debian = "debian",
        Arch = "arch",
    }
}

string_enum! {
    /// A class of kernel drivers the initramfs carries (`[kernel] drivers`), defined by folders
    /// of the kernel's own module tree (builder/src/drivers.rs); oa-init loads what the hardware
    /// asks for.
    pub enum DriverClass {
        /// SATA/AHCI, IDE, NVMe, SCSI disks and CD-ROMs, SD/MMC.
        Storage = "storage",
        /// USB host controllers (xHCI, EHCI, OHCI, UHCI, DWC2/3) and USB mass storage (UAS).
        UsbStorage = "usb-storage",
        /// QEMU and cloud machines: virtio PCI/MMIO, block, SCSI, network, RNG.
        Virtio = "virtio",
        /// USB keyboards (HID), for the emergency shell on a real machine.
        Keyboard = "keyboard",
        /// Wired Ethernet NICs (PCI and USB), for netboot (`oa.root=http://`).
        Net = "net",
        /// SAS/RAID/Fibre Channel host bus adapters of servers.
        Hba = "hba",
    }
}

// ---------------------------------------------------------------------------------------------
// Partial profiles: what one file says. Everything optional; unknown keys are errors.

partial_section! {
    /// One profile file as written (or several merged): every field optional.
    /// `PartialProfile::default()` is the empty profile, the identity of [`merge`].
    #[serde(expecting = "a profile table")]
    pub struct PartialProfile {
        /// Profile name (top-level file only; default: the top-level file's stem).
        pub name: Option<String>,
        pub description: Option<String>,
        /// Other profile files, relative to this file's directory (consumed by the loader).
        pub include: SetList,
        pub arch: Option<Arch>,
        pub base: Option<Base>,
        pub hostname: Option<String>,
        /// Overlay directories (absolute after loading).
        pub overlays: SetList,
        pub kernel: PartialKernel,
        pub packages: PartialPackages,
        pub init: PartialInit,
        pub services: BTreeMap<String, PartialService>,
        pub qemu: PartialQemu,
        pub image: PartialImage,
        /// `[rpi]`: Raspberry Pi boot tree and SD card image (docs/rpi.md).
        pub rpi: PartialRpi,
        /// `[debian]`: mmdebstrap source for `base = "debian"` (docs/bases.md).
        pub debian: PartialDebian,
        /// `[pacman]`: repositories for `base = "arch"`.
        pub pacman: PartialPacman,
        /// `[users.<name>]`
        pub users: BTreeMap<String, PartialUser>,
        /// `[system]`: timezone, locale, systemd units.
        pub system: PartialSystem,
        /// `[files."<absolute path>"]`: files generated from the profile.
        pub files: BTreeMap<String, PartialFile>,
        /// `[persistence]`: encrypted btrfs persistence (docs/persistence.md).
        pub persistence: PartialPersistence,
        /// `[secure_boot]`: a UEFI boot chain Secure Boot accepts (docs/secure-boot.md).
        pub secure_boot: PartialSecureBoot,
    }
}

partial_section! {
    /// `[kernel]`
    #[serde(expecting = "a [kernel] table")]
    pub struct PartialKernel {
        pub package: Option<String>,
        pub cmdline: SetList,
        pub modules: SetList,
        /// Driver classes; a later file replaces the list whole. Unset: chosen by the outputs.
        pub drivers: Option<Vec<DriverClass>>,
    }
}

partial_section! {
    /// `[packages]`
    #[serde(expecting = "a [packages] table")]
    pub struct PartialPackages {
        pub debian: SetList,
        /// Arch packages installed with pacman (`base = "arch"`).
        pub arch: SetList,
    }
}

partial_section! {
    /// `[init]`
    #[serde(expecting = "an [init] table")]
    pub struct PartialInit {
        pub system: Option<InitSystem>,
        pub console_shell: Option<bool>,
        pub emergency_shell: Option<bool>,
        pub keep_runtime_config: Option<bool>,
    }
}

partial_section! {
    /// `[services.<name>]`
    #[serde(expecting = "a service table like { command = [\"/bin/prog\"] }")]
    pub struct PartialService {
        /// argv; replaced whole by a later file.
        pub command: Option<Vec<String>>,
        pub restart: Option<Restart>,
        pub env: SetList,
    }
}

partial_section! {
    /// `[qemu]`
    #[serde(expecting = "a [qemu] table")]
    pub struct PartialQemu {
        pub memory_mib: Option<u32>,
        pub cpus: Option<u32>,
    }
}

partial_section! {
    /// `[rpi]`: the Raspberry Pi outputs (see docs/rpi.md).
    #[serde(expecting = "an [rpi] table")]
    pub struct PartialRpi {
        /// Write the `rpi/` boot tree and `rpi.img` (needs `arch = "aarch64"`).
        pub enable: Option<bool>,
        /// `"package"` (Debian's raspi-firmware, non-free-firmware) or an absolute folder
        /// holding bootcode.bin, start*.elf, fixup*.dat.
        pub firmware: Option<String>,
        /// Extra lines for config.txt, after the generated ones.
        pub config: SetList,
    }
}

partial_section! {
    /// `[image]`: the disk image outputs (see docs/disk-image.md).
    #[serde(expecting = "an [image] table")]
    pub struct PartialImage {
        /// Write `disk.img` (GPT, BIOS + UEFI bootable) and its `.bmap`.
        pub disk: Option<bool>,
        /// Also write `disk.qcow2` (needs `disk = true`).
        pub qcow2: Option<bool>,
        /// Size of the blank `oa-persist` partition in MiB; 0: none.
        pub persistence_mib: Option<u32>,
        /// Size of the EFI system partition in MiB (default: fitted to its files).
        pub esp_mib: Option<u32>,
        /// Meant to be netbooted (`oa serve`): the initramfs carries the `net` drivers.
        pub netboot: Option<bool>,
        /// Write `oa.iso`, a hybrid ISO (CD, USB stick, BMC virtual media; BIOS + UEFI).
        pub iso: Option<bool>,
        /// Copy the root image into RAM at boot: `auto` (from removable or optical media
        /// with enough RAM), `yes` or `no`.
        pub copytoram: Option<CopyToRam>,
        /// With `copytoram = "auto"`: copy only when RAM is at least this many times the image.
        pub copytoram_ram_factor: Option<u32>,
    }
}

string_enum! {
    /// How the UEFI boot path is signed (`[secure_boot] mode`).
    pub enum SecureBootMode {
        /// Unsigned systemd-boot (firmware with Secure Boot on refuses it).
        Off = "off",
        /// Debian's Microsoft-signed shim, signed grub and signed kernel: stock PCs accept it.
        Shim = "shim",
        /// One unified kernel image (kernel, initramfs, command line) signed with the user's key.
        Uki = "uki",
    }
}

partial_section! {
    /// `[secure_boot]`: the signed boot chain (see docs/secure-boot.md).
    #[serde(expecting = "a [secure_boot] table")]
    pub struct PartialSecureBoot {
        pub mode: Option<SecureBootMode>,
        /// With `mode = "uki"`: the db signing key (PEM), relative to the file naming it
        /// (`oa keys init DIR` makes one: DIR/db.key).
        pub key: Option<String>,
        /// With `mode = "uki"`: the key's certificate (PEM), e.g. DIR/db.crt.
        pub cert: Option<String>,
        /// A dm-verity hash tree for the root image, its root hash in the signed command line
        /// (default: on with `mode = "uki"`; needs it).
        pub verity: Option<bool>,
        /// A minisign public key (`oa keys init DIR` makes DIR/minisign.pub), built into the
        /// initramfs: the run-time configuration (`oa.config=`) must be signed by it
        /// (`oa serve --sign-key DIR/minisign.key` signs what it serves), else it is refused.
        pub config_key: Option<String>,
        /// The boot stops (FATAL) unless a run-time configuration arrives (signed by
        /// `config_key` when that is set); default false: a refused one is a loud warning.
        pub config_required: Option<bool>,
        /// A minisign secret key (DIR/minisign.key): `oa build` signs `manifest.json` with it
        /// (`manifest.json.minisig`; check with `minisign -Vm manifest.json -p DIR/minisign.pub`).
        pub sign_key: Option<String>,
    }
}

string_enum! {
    /// Where the persistence key comes from.
    pub enum KeySource {
        /// Typed at the console at every boot.
        Passphrase = "passphrase",
        /// A file shipped in the initramfs: only as secret as the image.
        Keyfile = "keyfile",
        /// Fetched over the network (not implemented yet).
        Network = "network",
    }
}

partial_section! {
    /// `[persistence]`: encrypted btrfs persistence (see docs/persistence.md).
    #[serde(expecting = "a [persistence] table")]
    pub struct PartialPersistence {
        /// `PARTLABEL=..`, `LABEL=..`, `UUID=..` or `/dev/...`.
        pub device: Option<String>,
        pub key: Option<KeySource>,
        /// With `key = "keyfile"`: the file, relative to the profile file naming it.
        pub keyfile: Option<String>,
        pub passphrase_retries: Option<u32>,
        /// Paths that persist (default: the whole overlay upper layer).
        pub paths: SetList,
        pub snapshots_keep: Option<u32>,
        pub optional: Option<bool>,
        pub format: Option<PersistFormat>,
        pub boot_attempts: Option<u32>,
        pub pbkdf: Option<Pbkdf>,
        pub pbkdf_memory_kib: Option<u32>,
        pub pbkdf_iterations: Option<u32>,
    }
}

/// Layer `b` on top of `a`. Associative; `PartialProfile::default()` is a two-sided identity.
pub fn merge(a: &PartialProfile, b: &PartialProfile) -> PartialProfile {
    a.merge(b)
}

impl PartialProfile {
    /// Parse one profile file's text strictly (no includes followed, no paths resolved).
    /// Errors carry `file:line:column`; `file` is only used in messages.
    pub fn from_toml_str(file: &std::path::Path, text: &str) -> Result<Self, ProfileError> {
        toml::from_str(text).map_err(|e| ProfileError::Invalid {
            at: Location::from_span(file, text, e.span()),
            message: humane(e.message()),
        })
    }

    /// The partial as TOML (empty parts left out).
    pub fn to_toml_string(&self) -> String {
        toml::to_string(self).unwrap_or_else(|e| format!("# cannot render profile: {e}\n"))
    }
}

/// serde/toml wording, put the way a profile author thinks about it.
fn humane(message: &str) -> String {
    let one_line = message.trim_end().lines().map(str::trim).collect::<Vec<_>>().join("; ");
    one_line
        .replace("expected a sequence", "expected an array")
        .replace("expected u32", "expected a whole number from 0 to 4294967295")
        .replace("expected a boolean", "expected true or false")
}

// ---------------------------------------------------------------------------------------------
// The resolved profile: typed, validated, defaults applied.

/// Smallest accepted `image.esp_mib` (a FAT16 ESP with room for its files).
pub const MIN_ESP_MIB: u32 = 8;
/// Largest accepted `image.esp_mib` and `image.persistence_mib` (4 TiB).
pub const MAX_PARTITION_MIB: u32 = 4 * 1024 * 1024;

/// Default `qemu.memory_mib`.
pub const DEFAULT_MEMORY_MIB: u32 = 512;
/// Smallest accepted `qemu.memory_mib`.
pub const MIN_MEMORY_MIB: u32 = 128;

/// The validated profile with defaults applied. `Serialize` is deterministic (no maps), so
/// it can be hashed for cache keys: see [`Profile::content_hash`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Profile {
    pub name: String,
    pub description: Option<String>,
    pub arch: Arch,
    pub base: Base,
    pub hostname: String,
    /// Overlay directories, absolute and canonical, in first-occurrence order.
    pub overlays: Vec<PathBuf>,
    pub kernel: Kernel,
    pub packages: Packages,
    pub init: Init,
    /// Sorted by name.
    pub services: Vec<Service>,
    pub qemu: Qemu,
    pub image: Image,
    pub rpi: Rpi,
    pub debian: Debian,
    pub pacman: Pacman,
    /// Sorted by name.
    pub users: Vec<User>,
    pub system: System,
    /// Sorted by path.
    pub files: Vec<File>,
    /// `[persistence]`, when the profile has a `device`.
    pub persistence: Option<Persistence>,
    pub secure_boot: SecureBoot,
}

/// `[secure_boot]` resolved.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SecureBoot {
    /// Default `off`.
    pub mode: SecureBootMode,
    /// Absolute path of the signing key (`mode = "uki"`); checked when the build signs.
    pub key: Option<PathBuf>,
    /// Absolute path of its certificate.
    pub cert: Option<PathBuf>,
    /// dm-verity root: the hash tree after the root image, `oa.verity=` on the signed command line.
    pub verity: bool,
    /// Absolute path of the minisign public key run-time configurations must be signed by.
    pub config_key: Option<PathBuf>,
    /// A boot without a (verified) run-time configuration stops.
    pub config_required: bool,
    /// Absolute path of the minisign secret key that signs `manifest.json`.
    pub sign_key: Option<PathBuf>,
}

impl SecureBoot {
    /// Is anything signed with the user's own key?
    pub fn signs(&self) -> bool {
        self.mode == SecureBootMode::Uki
    }
}

/// `[persistence]` resolved, defaults applied.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Persistence {
    pub device: String,
    pub key: KeySource,
    /// Absolute path of the key file (with `key = "keyfile"`).
    pub keyfile: Option<PathBuf>,
    /// Default 3.
    pub passphrase_retries: u32,
    /// Default empty: the whole upper layer.
    pub paths: Vec<String>,
    /// Default 5.
    pub snapshots_keep: u32,
    /// Default false.
    pub optional: bool,
    /// Default `never`.
    pub format: PersistFormat,
    /// Default 0 (off).
    pub boot_attempts: u32,
    /// Default `argon2id`.
    pub pbkdf: Pbkdf,
    /// Default 0: benchmarked by libcryptsetup.
    pub pbkdf_memory_kib: u32,
    /// Default 0: benchmarked by libcryptsetup (2 s).
    pub pbkdf_iterations: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Kernel {
    /// Debian package holding the kernel (default: `linux-image-amd64` / `linux-image-arm64`).
    pub package: String,
    /// Extra kernel command line parameters (default none).
    pub cmdline: Vec<String>,
    /// Modules the initramfs carries and loads, in this order (default none: the builder adds
    /// what it needs for booting itself).
    pub modules: Vec<String>,
    /// Driver classes the initramfs carries, loaded by oa-init's coldplug when a device asks
    /// (default: storage, usb-storage, virtio, keyboard, and net for `[image] netboot` or
    /// `[rpi]`).
    pub drivers: Vec<DriverClass>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Packages {
    /// Debian packages extracted into the rootfs (`base = "busybox"`) or installed by
    /// mmdebstrap (`base = "debian"`).
    pub debian: Vec<String>,
    /// Arch packages installed with pacman (`base = "arch"`).
    pub arch: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Init {
    pub system: InitSystem,
    pub console_shell: bool,
    pub emergency_shell: bool,
    /// Keep /run/oa/config.json after applying it (default: removed, it may hold secrets).
    pub keep_runtime_config: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Service {
    pub name: String,
    /// argv; `command[0]` is absolute.
    pub command: Vec<String>,
    pub restart: Restart,
    /// `KEY=VALUE` entries, at most one per KEY.
    pub env: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Qemu {
    pub memory_mib: u32,
    pub cpus: u32,
}

/// `[rpi]`: Raspberry Pi outputs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rpi {
    /// `rpi/` tree + `rpi.img` (default false).
    pub enable: bool,
    /// `package` (default) or an absolute firmware folder.
    pub firmware: String,
    /// Extra config.txt lines.
    pub config: Vec<String>,
}

/// `[image]`: which disk image outputs to make.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Image {
    /// `disk.img` + `disk.img.bmap` (default false).
    pub disk: bool,
    /// `disk.qcow2` (default false; only with `disk`).
    pub qcow2: bool,
    /// Blank `oa-persist` partition size in MiB (default 0: none).
    pub persistence_mib: u32,
    /// ESP size in MiB; `None`: fitted to the files it holds.
    pub esp_mib: Option<u32>,
    /// Meant to be netbooted (default false): the default drivers include `net`.
    pub netboot: bool,
    /// `oa.iso`, the hybrid ISO (default false; x86_64 only).
    pub iso: bool,
    /// Copy the root image into RAM at boot (default auto).
    pub copytoram: CopyToRam,
    /// RAM-to-image ratio for `copytoram = "auto"` (default
    /// [`oa_contract::config::DEFAULT_COPYTORAM_RAM_FACTOR`], at least 1).
    pub copytoram_ram_factor: u32,
}

impl Profile {
    /// Hex SHA-256 of the profile's canonical JSON form: equal profiles, equal hashes.
    /// Covers overlay *paths*, not the files in them.
    pub fn content_hash(&self) -> String {
        use sha2::{Digest, Sha256};
        let json = serde_json::to_vec(self).expect("a Profile always serialises");
        hex::encode(Sha256::digest(json))
    }

    /// The service called `name`.
    pub fn service(&self, name: &str) -> Option<&Service> {
        self.services.iter().find(|s| s.name == name)
    }

    /// The profile as a fully specified, self-contained profile file: loading it gives back
    /// an equal `Profile` (overlay paths are absolute).
    pub fn to_toml(&self) -> String {
        PartialProfile::from(self).to_toml_string()
    }
}

impl From<&Profile> for PartialProfile {
    /// Every field set: the profile as one file.
    fn from(p: &Profile) -> Self {
        let strings = |v: &[String]| SetList::from(v.to_vec());
        PartialProfile {
            name: Some(p.name.clone()),
            description: p.description.clone(),
            include: SetList::new(),
            arch: Some(p.arch),
            base: Some(p.base),
            hostname: Some(p.hostname.clone()),
            overlays: p.overlays.iter().map(|o| o.to_string_lossy().into_owned()).collect(),
            kernel: PartialKernel {
                package: Some(p.kernel.package.clone()),
                cmdline: strings(&p.kernel.cmdline),
                modules: strings(&p.kernel.modules),
                drivers: Some(p.kernel.drivers.clone()),
            },
            packages: PartialPackages { debian: strings(&p.packages.debian), arch: strings(&p.packages.arch) },
            init: PartialInit {
                system: Some(p.init.system),
                console_shell: Some(p.init.console_shell),
                emergency_shell: Some(p.init.emergency_shell),
                keep_runtime_config: Some(p.init.keep_runtime_config),
            },
            services: p
                .services
                .iter()
                .map(|s| {
                    (
                        s.name.clone(),
                        PartialService {
                            command: Some(s.command.clone()),
                            restart: Some(s.restart),
                            env: strings(&s.env),
                        },
                    )
                })
                .collect(),
            qemu: PartialQemu { memory_mib: Some(p.qemu.memory_mib), cpus: Some(p.qemu.cpus) },
            image: PartialImage {
                disk: Some(p.image.disk),
                qcow2: Some(p.image.qcow2),
                persistence_mib: Some(p.image.persistence_mib),
                esp_mib: p.image.esp_mib,
                netboot: Some(p.image.netboot),
                iso: Some(p.image.iso),
                copytoram: Some(p.image.copytoram),
                copytoram_ram_factor: Some(p.image.copytoram_ram_factor),
            },
            rpi: PartialRpi {
                enable: Some(p.rpi.enable),
                firmware: Some(p.rpi.firmware.clone()),
                config: SetList::from(p.rpi.config.clone()),
            },
            debian: system::partial_debian(&p.debian),
            pacman: system::partial_pacman(&p.pacman),
            users: system::partial_users(&p.users),
            system: system::partial_system(&p.system),
            files: system::partial_files(&p.files),
            persistence: match &p.persistence {
                None => PartialPersistence::default(),
                Some(x) => PartialPersistence {
                    device: Some(x.device.clone()),
                    key: Some(x.key),
                    keyfile: x.keyfile.as_ref().map(|k| k.to_string_lossy().into_owned()),
                    passphrase_retries: Some(x.passphrase_retries),
                    paths: strings(&x.paths),
                    snapshots_keep: Some(x.snapshots_keep),
                    optional: Some(x.optional),
                    format: Some(x.format),
                    boot_attempts: Some(x.boot_attempts),
                    pbkdf: Some(x.pbkdf),
                    pbkdf_memory_kib: Some(x.pbkdf_memory_kib),
                    pbkdf_iterations: Some(x.pbkdf_iterations),
                },
            },
            secure_boot: PartialSecureBoot {
                mode: Some(p.secure_boot.mode),
                key: p.secure_boot.key.as_ref().map(|k| k.to_string_lossy().into_owned()),
                cert: p.secure_boot.cert.as_ref().map(|k| k.to_string_lossy().into_owned()),
                verity: Some(p.secure_boot.verity),
                config_key: p.secure_boot.config_key.as_ref().map(|k| k.to_string_lossy().into_owned()),
                config_required: Some(p.secure_boot.config_required),
                sign_key: p.secure_boot.sign_key.as_ref().map(|k| k.to_string_lossy().into_owned()),
            },
        }
    }
}

/// A loaded profile: the typed result plus where everything came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolved {
    pub profile: Profile,
    /// Every file read, canonical paths, in merge order (the top-level file last).
    pub files: Vec<PathBuf>,
    /// Include edges `(includer, included)`, canonical paths, in the order they were met
    /// (an edge to a file already merged is listed too: diamonds show as two edges).
    pub includes: Vec<(PathBuf, PathBuf)>,
    /// For each leaf that some file set, by dotted key (`hostname`, `kernel.cmdline`,
    /// `services.hello.command`): for a scalar, the one file whose value won; for a set-list,
    /// one file per element of the resolved list (the file that first added it), parallel to
    /// the list. Keys left at their defaults are absent.
    pub origins: BTreeMap<String, Vec<PathBuf>>,
    /// The merged partial profile (before defaults), for tools that want it.
    pub merged: PartialProfile,
}

impl Resolved {
    /// The top-level file.
    pub fn top(&self) -> &std::path::Path {
        self.files.last().expect("a resolved profile has at least one file")
    }

    /// The files (set of) that the value at `key` came from, if any file set it.
    pub fn origin_files(&self, key: &str) -> Vec<PathBuf> {
        let mut out: Vec<PathBuf> = Vec::new();
        for f in self.origins.get(key).into_iter().flatten() {
            if !out.contains(f) {
                out.push(f.clone());
            }
        }
        out
    }
}

#[cfg(test)]
mod tests;
