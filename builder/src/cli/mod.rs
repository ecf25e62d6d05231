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
    /// Draw the include graph of a profile and the build pipeline, or an environment's machines
    /// and networks (DOT, Mermaid or JSON).
    Graph(GraphArgs),
    /// Prove an environment in a virtual lab: its networks in a private network namespace,
    /// `oa serve` on them, every machine booted in QEMU, the checks run (docs/environments.md).
    Lab(LabArgs),
    /// Realise an environment on the physical network: per-machine files and `oa serve` for the
    /// machines that netboot, `oa flash` for those that boot from a stick or disk.
    Deploy(DeployArgs),
    /// Write a disk image to a USB stick or disk: checks, confirmation, progress, verify.
    ///
    /// Refuses a device that is mounted, used as swap, held by device-mapper/RAID or holds the
    /// running system, a partition (give the whole disk), a read-only device, a regular file
    /// (unless --allow-file) and a device smaller than the image; nothing is written then.
    /// Shows what is on the device and asks before writing. Writes only the ranges the block
    /// map lists, syncs, reads them back and compares checksums. If anything fails once writing
    /// has started, the first and last MiB are zeroed so that nothing half-written boots.
    Flash(FlashArgs),
    /// Make and manage Secure Boot keys (docs/secure-boot.md).
    Keys(KeysArgs),
    #[command(name = "__kvm-probe", hide = true)]
    KvmProbe,
    /// Generate the man pages or the shell completions of oa and oa-pxe (`make install` runs it).
    #[command(hide = true)]
    Doc(DocArgs),
}

#[derive(Debug, clap::Args)]
pub struct KeysArgs {
    #[command(subcommand)]
    pub what: KeysCmd,
}

#[derive(Debug, Subcommand)]
pub enum KeysCmd {
    /// Make a Secure Boot key set in DIR: PK, KEK and db, each a key (.key, kept 0600), a
    /// certificate (.crt, PEM) and its DER form (.cer, for firmware set-up screens).
    ///
    /// db signs boot files (sbsign --key DIR/db.key --cert DIR/db.crt). Enrol db.cer, KEK.cer
    /// and PK.cer (last) on each machine. Also a minisign key pair, minisign.key (0600) and minisign.pub:
    /// `[secure_boot] sign_key = "DIR/minisign.key"` signs manifest.json, `oa serve --sign-key
    /// DIR/minisign.key` signs each machine's oa.config, and images built with `[secure_boot]
    /// config_key = "DIR/minisign.pub"` accept only configurations signed so. DIR must not exist:
    /// keys are never overwritten.
    Init {
        /// The folder to create.
        dir: PathBuf,
        /// Who owns the keys, in each certificate's common name.
        #[arg(long, default_value = "oa")]
        owner: String,
    },
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
#[command(after_long_help = "Examples:
  # build (cached) and boot, the console in this terminal
  oa run tiny
  # an extra disk (/dev/vdb), SSH forwarded to a free port, the ssh command printed
  oa run out/tiny --drive data.qcow2 --ssh
  # host port 8080 to the guest's port 80
  oa run out/tiny --net user,hostfwd=tcp:127.0.0.1:8080-:80
  # a scripted check: exit 0 (passed), 1 (boot failed, QEMU exited) or 2 (timeout)
  oa run out/tiny --drive blank.raw --step-timeout 10 --expect 'hello from oa' \\
      --send 'cat /sys/block/vdb/size' --expect 2048")]
pub struct RunArgs {
    /// A profile (file or bare name; built first, using the cache) or an output folder of `oa build`.
    pub target: PathBuf,
    /// Do not attach the terminal: watch the console until the ready line, then stop QEMU.
    /// Exit 0 when ready was reached, 1 on a boot failure, 2 on timeout. Implied when stdin is not a terminal.
    #[arg(long)]
    pub until_ready: bool,
    /// Deadline for the ready line (--until-ready, --expect), in seconds.
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
    /// Attach FILE as an extra writable virtio disk (repeatable): raw or qcow2, told by its
    /// content. The first is /dev/vdb (/dev/vda is the root image or the booted disk; with
    /// --iso it is /dev/vda), the next /dev/vdc, ... What the guest writes stays in FILE. Make
    /// a blank one with `truncate -s 1G FILE` or `qemu-img create -f qcow2 FILE 1G`. (--disk,
    /// a flag, boots the output's disk.img; --drive adds disks.)
    #[arg(long = "drive", value_name = "FILE")]
    pub drives: Vec<PathBuf>,
    /// Give the guest a virtio network card on QEMU's user-mode network (NAT to the host's
    /// network, the guest is 10.0.2.15 by DHCP, the host 10.0.2.2): `user`, or `user,` and
    /// `-netdev user` options, e.g. `--net user,hostfwd=tcp:127.0.0.1:8080-:80` (host port
    /// 8080 to the guest's 80). Only the user backend; without --net (and --ssh) the guest has
    /// no network card.
    #[arg(long, value_name = "user[,OPTIONS]", value_parser = parse_net)]
    pub net: Option<UserNet>,
    /// Forward a port on 127.0.0.1 to the guest's SSH port (22) and print the command to log
    /// in (`ssh -p PORT root@127.0.0.1`) once QEMU has started. Implies --net user (its options
    /// are kept). `--ssh` takes a free port, `--ssh=2222` that one. The guest needs an SSH
    /// server and its network up (DHCP on the user network).
    #[arg(long, value_name = "PORT", num_args = 0..=1, require_equals = true, default_missing_value = "0")]
    pub ssh: Option<u16>,
    #[command(flatten)]
    pub script: Script,
    /// Deadline of each --expect, in seconds [default: --timeout].
    #[arg(long, value_name = "SECS")]
    pub step_timeout: Option<u64>,
}

/// `--net`: QEMU's user-mode network and the `-netdev user` options after `user`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserNet {
    /// `""` for plain `user`, else e.g. `hostfwd=tcp:127.0.0.1:2222-:22`.
    pub options: String,
}

/// Accept `user` or `user,OPTIONS`; reject other QEMU backends and an `id=` (oa names the netdev).
pub fn parse_net(s: &str) -> Result<UserNet, String> {
    let (backend, options) = s.split_once(',').unwrap_or((s, ""));
    if backend != "user" {
        return Err(format!(
            "`{backend}` is not supported: only QEMU's user-mode network (`user` or `user,OPTIONS`, e.g. \
             `user,hostfwd=tcp:127.0.0.1:8080-:80`); for bridges and taps between machines see `oa lab`"
        ));
    }
    if options.split(',').any(|o| o.starts_with("id=")) {
        return Err("`id=` is set by oa (the netdev is n0); leave it out".into());
    }
    Ok(UserNet { options: options.trim_end_matches(',').to_string() })
}

/// The `--expect`/`--send` steps of `oa run`, in the order they are on the command line
/// (clap keeps each option's values apart; their indices give the order between them).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Script {
    pub steps: Vec<crate::console_script::Step>,
}

const EXPECT_HELP: &str = "Wait for PATTERN (a substring) on the console; a step of a script \
run after the ready line, with --send, in command-line order (repeatable). Exit 0 when every \
step passed, 1 on a boot failure or when QEMU exits first, 2 when a step is not met within \
--step-timeout (the step and the last 20 console lines are printed). The first --expect also \
sees the boot messages; each later one the console after the previous match or --send. \
Implies --until-ready (no terminal); QEMU is stopped after the last step. \
Example: oa run out/tiny --drive blank.raw --expect 'hello from oa' \
--send 'cat /sys/block/vdb/size' --expect 2048";

const SEND_HELP: &str = "Type TEXT and a newline into the serial console (a step of the \
script, see --expect; repeatable). Its answer is looked for by the next --expect, after what \
the console had shown when it was typed.";

impl clap::FromArgMatches for Script {
    fn from_arg_matches(m: &clap::ArgMatches) -> Result<Self, clap::Error> {
        use crate::console_script::Step;
        let mut steps: Vec<(usize, Step)> = Vec::new();
        for (id, step) in [("expect", Step::Expect as fn(String) -> Step), ("send", Step::Send)] {
            let values = m
                .try_get_many::<String>(id)
                .map_err(|e| clap::Error::raw(clap::error::ErrorKind::ValueValidation, format!("--{id}: {e}")))?;
            if let (Some(values), Some(indices)) = (values, m.indices_of(id)) {
                steps.extend(indices.zip(values).map(|(i, v)| (i, step(v.clone()))));
            }
        }
        steps.sort_by_key(|(i, _)| *i);
        Ok(Script { steps: steps.into_iter().map(|(_, s)| s).collect() })
    }

    fn update_from_arg_matches(&mut self, m: &clap::ArgMatches) -> Result<(), clap::Error> {
        *self = Self::from_arg_matches(m)?;
        Ok(())
    }
}

impl clap::Args for Script {
    fn augment_args(cmd: clap::Command) -> clap::Command {
        use clap::{builder::NonEmptyStringValueParser, Arg, ArgAction};
        cmd.arg(
            Arg::new("expect")
                .long("expect")
                .value_name("PATTERN")
                .action(ArgAction::Append)
                .allow_hyphen_values(true)
                .value_parser(NonEmptyStringValueParser::new())
                .help(EXPECT_HELP),
        )
        .arg(
            Arg::new("send")
                .long("send")
                .value_name("TEXT")
                .action(ArgAction::Append)
                .allow_hyphen_values(true)
                .help(SEND_HELP),
        )
    }

    fn augment_args_for_update(cmd: clap::Command) -> clap::Command {
        Self::augment_args(cmd)
    }
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
    /// Profile file, or a bare name for profiles/NAME.toml; or an environment file (a TOML
    /// file with `[machines]` or `[networks]`), drawn as machines and networks.
    pub profile: PathBuf,
    #[arg(long, value_enum, default_value_t = GraphFormat::Dot)]
    pub format: GraphFormat,
}

#[derive(Debug, clap::Args)]
#[command(after_long_help = "Examples:
  # the two-network example: build, boot, check, print the table
  oa lab examples/two-networks.toml
  # leave it running afterwards and print how to reach each machine; Ctrl-C ends it
  oa lab examples/two-networks.toml --keep
  # for CI: JUnit XML of every check
  oa lab examples/two-networks.toml --junit lab.xml

Exit status: 0 when every check of every machine passed, 1 when one failed (the table and the
error name the machine, the check and the console lines around it), 2 for a bad environment
file or a lab that could not be set up. Needs root (network namespaces, taps).")]
pub struct LabArgs {
    /// The environment file (TOML; see examples/ and docs/environments.md).
    pub env: PathBuf,
    /// Machines booting at the same time [default: the number of CPUs]. Booted machines stay up
    /// (for other machines' checks) without holding a slot.
    #[arg(long, short, value_name = "N")]
    pub jobs: Option<usize>,
    /// Leave the lab up after the checks and print how to reach each machine (console socket,
    /// SSH); Ctrl-C tears it down.
    #[arg(long)]
    pub keep: bool,
    /// Write the results as JUnit XML (one test case per check) to this file.
    #[arg(long, value_name = "FILE")]
    pub junit: Option<PathBuf>,
    /// Folder for this lab's console logs, disks and server files [default: target/lab/<env name>
    /// when run in a cargo workspace, else $XDG_STATE_HOME/oa/lab/<env name>]. Emptied at start.
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
    /// Build the machines' profiles into DIR/<profile name> [default: out/<profile name>].
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// Accelerator for every machine.
    #[arg(long, value_enum, default_value_t = AccelArg::Auto)]
    pub accel: AccelArg,
    /// Print the results as JSON on stdout (the table goes to stderr then).
    #[arg(long)]
    pub json: bool,
    /// Boot only this machine (repeatable); the networks and servers are made as usual, and a
    /// `reach` check of a machine left out is dropped (with a note).
    #[arg(long, value_name = "MACHINE")]
    pub only: Vec<String>,
    #[command(flatten)]
    pub common: CommonBuild,
}

#[derive(Debug, clap::Args)]
#[command(after_long_help = "Examples:
  # write the per-machine files, flash the USB machine, then serve the netbooting ones on eth1
  oa deploy examples/two-networks.toml --interface eth1 --device usb1=/dev/sdb
  # only look: what would be written, flashed and served
  oa deploy examples/two-networks.toml --interface eth1 --dry-run")]
pub struct DeployArgs {
    /// The environment file (TOML; see examples/ and docs/environments.md).
    pub env: PathBuf,
    /// The interface of this host on the environment's netboot network (passed to `oa serve`).
    #[arg(long, value_name = "IFACE")]
    pub interface: Option<String>,
    /// Which network of the environment the interface is on [default: the only network with
    /// `serve`].
    #[arg(long, value_name = "NAME")]
    pub network: Option<String>,
    /// Flash machine MACHINE (boot `usb` or `disk`) onto DEVICE; repeat for each machine. A
    /// machine without one is listed, not flashed.
    #[arg(long = "device", value_name = "MACHINE=DEVICE")]
    pub devices: Vec<String>,
    /// Do not ask before flashing (the device checks still apply).
    #[arg(long, short)]
    pub yes: bool,
    /// Write a regular file given as DEVICE (for tests and image pipelines).
    #[arg(long)]
    pub allow_file: bool,
    /// Write the per-machine files and flash, but do not start `oa serve`.
    #[arg(long)]
    pub no_serve: bool,
    /// Print what would be done and change nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Folder for the per-machine files (`oa serve --machines`) and leases [default:
    /// $XDG_STATE_HOME/oa/deploy/<env name>].
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
    /// Build the machines' profiles into DIR/<profile name> [default: out/<profile name>].
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    #[command(flatten)]
    pub common: CommonBuild,
}

#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    #[command(flatten)]
    pub options: oa_pxe::cli::Options,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::console_script::Step;

    fn run_args(words: &[&str]) -> Result<RunArgs, clap::Error> {
        let cli = Cli::try_parse_from(["oa", "run"].iter().chain(words))?;
        match cli.command {
            Cmd::Run(a) => Ok(a),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn expect_and_send_keep_their_command_line_order() {
        let a = run_args(&[
            "out/tiny",
            "--send",
            "first",
            "--expect",
            "one",
            "--expect",
            "two",
            "--drive",
            "b.raw",
            "--send",
            "-n looks like a flag",
            "--expect",
            "three",
        ])
        .unwrap();
        assert_eq!(
            a.script.steps,
            [
                Step::Send("first".into()),
                Step::Expect("one".into()),
                Step::Expect("two".into()),
                Step::Send("-n looks like a flag".into()),
                Step::Expect("three".into()),
            ]
        );
        assert_eq!(a.drives, [PathBuf::from("b.raw")]);
        assert!(run_args(&["out/tiny"]).unwrap().script.steps.is_empty());
        let e = run_args(&["out/tiny", "--expect", ""]).unwrap_err().to_string();
        assert!(e.contains("--expect"), "{e}");
    }

    #[test]
    fn drives_repeat_and_keep_their_order() {
        let a = run_args(&["out/tiny", "--drive", "a.raw", "--drive", "b.qcow2"]).unwrap();
        assert_eq!(a.drives, [PathBuf::from("a.raw"), PathBuf::from("b.qcow2")]);
        assert!(!a.disk, "--drive is not --disk");
    }

    #[test]
    fn net_takes_only_the_user_backend() {
        assert_eq!(parse_net("user").unwrap().options, "");
        assert_eq!(parse_net("user,").unwrap().options, "");
        assert_eq!(parse_net("user,hostfwd=tcp:127.0.0.1:8080-:80").unwrap().options, "hostfwd=tcp:127.0.0.1:8080-:80");
        for bad in ["tap,ifname=tap0", "bridge", "userx", "", "socket,listen=:1234"] {
            let e = parse_net(bad).unwrap_err();
            assert!(e.contains("only QEMU's user-mode network"), "{bad}: {e}");
        }
        assert!(parse_net("user,id=x").unwrap_err().contains("id="));
        let e = run_args(&["out/tiny", "--net", "tap"]).unwrap_err().to_string();
        assert!(e.contains("--net") && e.contains("`tap` is not supported"), "{e}");
    }

    #[test]
    fn ssh_takes_an_optional_port_after_an_equals_sign() {
        assert_eq!(run_args(&["out/tiny"]).unwrap().ssh, None);
        // `--ssh TARGET` must not read TARGET as the port.
        let a = run_args(&["--ssh", "out/tiny"]).unwrap();
        assert_eq!((a.ssh, a.target), (Some(0), PathBuf::from("out/tiny")));
        assert_eq!(run_args(&["out/tiny", "--ssh=2222"]).unwrap().ssh, Some(2222));
        assert!(run_args(&["out/tiny", "--ssh=nope"]).is_err());
    }

    #[test]
    fn run_help_has_an_example_of_a_script() {
        use clap::CommandFactory;
        let mut cmd = Cli::command();
        let run = cmd.find_subcommand_mut("run").unwrap();
        let help = run.render_long_help().to_string();
        for want in [
            "--drive <FILE>",
            "--net <user[,OPTIONS]>",
            "--ssh[=<PORT>]",
            "--expect <PATTERN>",
            "--send <TEXT>",
            "--step-timeout",
            "Examples:",
            "--send 'cat /sys/block/vdb/size'",
        ] {
            assert!(help.contains(want), "`{want}` not in:\n{help}");
        }
    }
}
