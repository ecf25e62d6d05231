//! Command-line definitions for `oa` (clap). Every option's doc comment is its `--help` text;
//! [`doc`] renders the same definitions as man pages and shell completions.

pub mod doc;

use clap::{Parser, Subcommand, ValueEnum};
use std::path::PathBuf;

/// oa (Orchestration Architect): turn a text profile into a bootable appliance.
///
/// A profile (profiles/NAME.toml) says which kernel, packages, overlays and services the
/// appliance has. `oa build` makes vmlinuz, initramfs.img and rootfs.squashfs from it,
/// `oa run` boots the result in QEMU.
#[derive(Debug, Parser)]
#[command(name = "oa", version, propagate_version = true, max_term_width = 100)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Cmd,
}

#[derive(Debug, Subcommand)]
pub enum Cmd {
    /// Build a profile into an output folder (vmlinuz, initramfs.img, rootfs.squashfs, manifest.json).
    Build(BuildArgs),
    /// Boot a profile (built first when needed) or an output folder in QEMU.
    Run(RunArgs),
    /// Netboot an output folder: proxyDHCP (or full DHCP), TFTP and HTTP in one process (docs/pxe.md).
    Serve(ServeArgs),
    /// Show the resolved profile and which file each value came from.
    Info(InfoArgs),
    /// Draw the include graph of a profile and the build pipeline (DOT or Mermaid).
    Graph(GraphArgs),
    /// Write a disk image to a USB stick or disk: checks, confirmation, progress, verify.
    ///
    /// Refuses a device that is mounted, used as swap, held by device-mapper/RAID or holds the
    /// running system, a partition (give the whole disk), a read-only device, a regular file
    /// (unless --allow-file) and a device smaller than the image; nothing is written then.
    /// Shows what is on the device and asks before writing. Writes only the ranges the block
    /// map lists, syncs, reads them back and compares checksums. If anything fails once writing
    /// has started, the first and last MiB are zeroed so that nothing half-written boots.
    Flash(FlashArgs),
    #[command(name = "__kvm-probe", hide = true)]
    KvmProbe,
    /// Generate the man pages or the shell completions of oa and oa-pxe (`make install` runs it).
    #[command(hide = true)]
    Doc(DocArgs),
}

#[derive(Debug, clap::Args)]
pub struct DocArgs {
    #[command(subcommand)]
    pub what: DocCmd,
}

#[derive(Debug, Subcommand)]
pub enum DocCmd {
    /// Write oa.1, one oa-SUBCOMMAND.1 per subcommand and oa-pxe.1 into DIR.
    Man {
        #[arg(value_name = "DIR")]
        dir: PathBuf,
    },
    /// Write the bash (NAME.bash), zsh (_NAME) and fish (NAME.fish) completions of oa and oa-pxe into DIR.
    Completions {
        #[arg(value_name = "DIR")]
        dir: PathBuf,
    },
}

#[derive(Debug, clap::Args)]
pub struct CommonBuild {
    /// Cache folder for downloaded packages and stage outputs [default: $XDG_CACHE_HOME/oa or ~/.cache/oa].
    #[arg(long, env = "OA_CACHE_DIR", value_name = "DIR")]
    pub cache: Option<PathBuf>,
    /// Rebuild every stage even when the cache holds it.
    #[arg(long)]
    pub no_cache: bool,
    /// Take new package versions from the mirrors without throwing the cache away: the
    /// packages stage asks apt again and the base tree is made again (mmdebstrap/pacman with
    /// the suite, -updates and -security); the stages after it are rebuilt only if the
    /// package list changed. --no-cache instead rebuilds every stage.
    #[arg(long)]
    pub refresh: bool,
    /// The oa-init binary to use [default: found next to `oa` or in the cargo target folder].
    #[arg(long, env = "OA_INIT_BIN", value_name = "PATH")]
    pub init: Option<PathBuf>,
}

#[derive(Debug, clap::Args)]
pub struct BuildArgs {
    /// Profile file, or a bare name for profiles/NAME.toml.
    pub profile: PathBuf,
    /// Output folder [default: out/<profile name>]. Replaced only when the build succeeds.
    #[arg(long, short, value_name = "DIR")]
    pub out: Option<PathBuf>,
    #[command(flatten)]
    pub common: CommonBuild,
    /// Print the build report as JSON on stdout.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum AccelArg {
    /// KVM when it really works here, else TCG.
    Auto,
    Kvm,
    Tcg,
}

#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// A profile (file or bare name; built first, using the cache) or an output folder of `oa build`.
    pub target: PathBuf,
    /// Do not attach the terminal: watch the console until the ready line, then stop QEMU.
    /// Exit 0 when ready was reached, 1 on a boot failure, 2 on timeout. Implied when stdin is not a terminal.
    #[arg(long)]
    pub until_ready: bool,
    /// Deadline for --until-ready, in seconds.
    #[arg(long, default_value_t = 120, value_name = "SECS")]
    pub timeout: u64,
    /// Accelerator.
    #[arg(long, value_enum, default_value_t = AccelArg::Auto)]
    pub accel: AccelArg,
    /// Extra kernel command line words (e.g. `oa.shell`), appended.
    #[arg(long, value_name = "ARGS", allow_hyphen_values = true)]
    pub append: Vec<String>,
    /// Guest memory in MiB [default: from the profile, else 512].
    #[arg(long, value_name = "MIB")]
    pub memory: Option<u32>,
    /// Save the whole console output to this file.
    #[arg(long, value_name = "FILE")]
    pub log: Option<PathBuf>,
    /// Output folder when building a profile [default: out/<profile name>].
    #[arg(long, short, value_name = "DIR")]
    pub out: Option<PathBuf>,
    #[command(flatten)]
    pub common: CommonBuild,
    /// Boot the output's disk.img through the firmware and its boot loader (as a machine
    /// booting the USB stick does), instead of loading the kernel directly. Writes go to a
    /// temporary overlay: the built image is not changed. Implied when TARGET is a disk image
    /// file (raw or qcow2), which is then attached writable.
    #[arg(long)]
    pub disk: bool,
    /// Boot the output's oa.iso (or TARGET, an ISO file) as a CD-ROM through the firmware
    /// and its El Torito boot loader (isolinux under bios, systemd-boot under uefi), as a
    /// machine booting the disc or a BMC's virtual media does. Needs `[image] iso = true`.
    #[arg(long, conflicts_with = "disk")]
    pub iso: bool,
    /// Firmware: bios (SeaBIOS, QEMU's default) or uefi (OVMF from Debian's `ovmf`; each run
    /// gets its own copy of the variable store).
    #[arg(long, value_enum, default_value_t = FirmwareArg::Bios)]
    pub firmware: FirmwareArg,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum FirmwareArg {
    /// SeaBIOS (legacy BIOS boot: syslinux on the disk image).
    Bios,
    /// OVMF (UEFI boot: systemd-boot on the disk image).
    Uefi,
}

/// `oa flash IMAGE DEVICE` (the help text is on [`Cmd::Flash`]).
#[derive(Debug, clap::Args)]
pub struct FlashArgs {
    /// The disk image (e.g. out/tiny/disk.img), or an output folder of `oa build` (its disk.img).
    pub image: PathBuf,
    /// The whole disk to write, e.g. /dev/sdb (`lsblk` lists them); not a partition.
    pub device: PathBuf,
    /// Do not ask for confirmation (for scripts). Needed when stdin is not a terminal.
    #[arg(long, short = 'y')]
    pub yes: bool,
    /// Block map listing the ranges to write [default: IMAGE.bmap when it exists].
    #[arg(long, value_name = "FILE", conflicts_with = "no_bmap")]
    pub bmap: Option<PathBuf>,
    /// Write the whole image even when a block map is there.
    #[arg(long)]
    pub no_bmap: bool,
    /// Accept a regular file as DEVICE (tests, VM disks): an existing file keeps its size like
    /// a disk, a missing one is created with the image's size.
    #[arg(long)]
    pub allow_file: bool,
    /// Print the plan (what would be written where, with which checksums, after which checks)
    /// and write nothing; every refusal still applies.
    #[arg(long)]
    pub dry_run: bool,
}

#[derive(Debug, clap::Args)]
pub struct InfoArgs {
    /// Profile file, or a bare name for profiles/NAME.toml.
    pub profile: PathBuf,
    /// Print the resolved profile as TOML only.
    #[arg(long)]
    pub toml: bool,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum GraphFormat {
    /// Graphviz DOT (`oa graph tiny | dot -Tsvg > tiny.svg`).
    Dot,
    /// A Mermaid flowchart (renders in Markdown on GitHub and GitLab).
    Mermaid,
    /// The stage list, sources, output files and edges as JSON, for scripts and tests.
    Json,
}

#[derive(Debug, clap::Args)]
pub struct GraphArgs {
    /// Profile file, or a bare name for profiles/NAME.toml.
    pub profile: PathBuf,
    #[arg(long, value_enum, default_value_t = GraphFormat::Dot)]
    pub format: GraphFormat,
}

#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    #[command(flatten)]
    pub options: oa_pxe::cli::Options,
}
