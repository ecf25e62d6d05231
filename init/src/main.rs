//! oa-init: `/init` of the oa initramfs (stage 1) and PID 1 of the booted system (stage 2).
//! When not PID 1 it is a small command line tool.

mod bootargs;
mod coldplug;
mod console;
mod devices;
mod dm;
mod emergency;
mod error;
mod loopdev;
mod media;
mod modules;
mod mounts;
mod net;
mod persist;
mod process;
mod rootimage;
mod runtime_config;
mod safe_fs;
mod shutdown;
mod signals;
mod stage1;
mod stage2;
mod supervisor;
mod switch_root;

use std::path::Path;

use oa_contract::{initramfs_paths, ConsoleLine};

const VERSION: &str = env!("CARGO_PKG_VERSION");

const HELP: &str = "\
oa-init: PID 1 of oa appliances

As PID 1 (started by the kernel):
  /init                 stage 1 in the initramfs: load modules, find and verify the root
                        image (oa.root=, oa.sha256=), mount squashfs + overlay, switch_root
  oa-init stage2        stage 2 in the root filesystem: supervise the services of
                        /etc/oa/system.json (stage 1 execs this)

As a command:
  oa-init help          this text
  oa-init version       print the version
  oa-init status        persistence: state of the device, mapping, btrfs, subvolumes, key slots,
                        snapshots, boot counting
  oa-init snapshot list | create NAME | rollback NAME|previous | delete NAME
                        snapshots of the persistent state (a rollback applies at the next boot)

Signals to PID 1: SIGUSR2 poweroff, SIGUSR1 halt, SIGTERM/SIGINT reboot.
";

enum Mode {
    Stage1,
    Stage2,
}

fn pid1_mode(args: &[String]) -> Mode {
    if args.get(1).map(String::as_str) == Some("stage2") {
        return Mode::Stage2;
    }
    if args.get(1).map(String::as_str) == Some("stage1") {
        return Mode::Stage1;
    }
    let argv0_init = args.first().is_some_and(|a| a == "/init");
    let initramfs = Path::new("/").join(initramfs_paths::CONFIG).exists();
    if argv0_init || initramfs {
        Mode::Stage1
    } else {
        // Started as init= of a root filesystem without the oa initramfs.
        Mode::Stage2
    }
}

fn cli(args: &[String]) -> i32 {
    match args.get(1).map(String::as_str) {
        None | Some("help") | Some("--help") | Some("-h") => {
            print!("{HELP}");
            0
        }
        Some("version") | Some("--version") | Some("-V") => {
            println!("oa-init {VERSION}");
            0
        }
        Some("status" | "snapshot") => persist::cli(&args[1..]),
        Some(s @ ("stage1" | "stage2")) => {
            eprintln!(
                "{}",
                ConsoleLine::Info(&format!("{s} runs only as PID 1 (started by the kernel or by stage 1)"))
            );
            2
        }
        Some(other) => {
            eprintln!("{}", ConsoleLine::Info(&format!("unknown command {other:?}; try `oa-init help`")));
            2
        }
    }
}

fn main() {
    let args: Vec<String> = std::env::args_os().map(|a| a.to_string_lossy().into_owned()).collect();
    if nix::unistd::getpid().as_raw() != 1 {
        std::process::exit(cli(&args));
    }
    emergency::install_panic_hook();
    match pid1_mode(&args) {
        Mode::Stage1 => stage1::run(),
        Mode::Stage2 => stage2::run(),
    }
}
