//! oa-storage: encrypted btrfs persistence for oa appliances.
//!
//! oa-init (static musl) runs this glibc binary as a child: `setup` in stage 1 (unlock or
//! create LUKS2 -> btrfs -> state subvolume, snapshot, rollback, prune, mount the state as the
//! overlay's upper layer), `mark-good` in stage 2 once the system is ready, and `status` /
//! `snapshot ...` for `oa-init status` and `oa-init snapshot` in the running system.
//! It is not for anything else: it never formats a device that holds data (see [`state::plan`]).

mod btrfs;
mod device;
mod error;
mod key;
mod layout;
mod luks;
mod ops;
mod probe;
mod state;

use std::io::Write;
use std::path::PathBuf;

use oa_contract::config::PersistConfig;
use oa_contract::{initramfs_paths, mounts, storage_paths, ConsoleLine};

const HELP: &str = "\
oa-storage: encrypted btrfs persistence for oa (run by oa-init)

  oa-storage setup [--config FILE] [--device SPEC] [--key SOURCE] [--rollback NAME|previous]
                   [--top DIR] [--state DIR] [--runtime FILE] [--mapping NAME] [--boot-id ID]
        unlock (or, on a blank device with format = \"if-blank\", create) LUKS2 + btrfs, take
        this boot's snapshot (once per boot id, default /proc/sys/kernel/random/boot_id),
        apply a rollback, prune, mount the state subvolume at --state
  oa-storage mark-good          this boot reached ready (boot counting)
  oa-storage status             state of each object, key slots, snapshots
  oa-storage snapshot list | create NAME | rollback NAME|previous | delete NAME

SPEC: PARTLABEL=.., LABEL=.., UUID=.. or /dev/...; SOURCE: passphrase, file:/path, network.
Exit status: 0 ok, 2 device missing, 3 wrong key, 4 device refused (holds data), 1 other.
";

/// `oa-init: stage persist: <msg>`
pub fn say(msg: &str) {
    line(&ConsoleLine::Stage { name: STAGE, text: msg }.to_string());
}

/// `oa-init: warning: persist: <msg>`
pub fn warn(msg: &str) {
    line(&ConsoleLine::Warning(&format!("{STAGE}: {msg}")).to_string());
}

/// The stage name of oa-storage's console lines.
const STAGE: &str = "persist";

fn line(s: &str) {
    let mut o = std::io::stdout().lock();
    let _ = o.write_all(format!("{s}\n").as_bytes());
    let _ = o.flush();
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    std::process::exit(run(&args));
}

fn flag(args: &[String], name: &str) -> Option<String> {
    args.iter().position(|a| a == name).and_then(|i| args.get(i + 1).cloned())
}

fn run(args: &[String]) -> i32 {
    let runtime = flag(args, "--runtime").map(PathBuf::from).unwrap_or_else(|| PathBuf::from(storage_paths::RUNTIME));
    let r = match args.first().map(String::as_str) {
        Some("setup") => setup(args),
        Some("mark-good") => ops::mark_good(&runtime),
        Some("status") => ops::status(&runtime),
        Some("snapshot") => match (args.get(1).map(String::as_str), args.get(2)) {
            (Some("list") | None, _) => ops::list(&runtime),
            (Some("create"), Some(n)) => ops::create(&runtime, n),
            (Some("rollback"), Some(n)) => ops::rollback(&runtime, n),
            (Some("delete"), Some(n)) => ops::delete(&runtime, n),
            _ => {
                eprint!("{HELP}");
                return 2;
            }
        },
        Some("help" | "--help" | "-h") | None => {
            print!("{HELP}");
            return 0;
        }
        Some(other) => {
            eprintln!("oa-storage: unknown command {other:?}\n{HELP}");
            return 2;
        }
    };
    match r {
        Ok(()) => 0,
        Err(e) => {
            let stage = args.first().is_some_and(|a| a == "setup");
            if stage {
                // oa-init decides between FATAL and the tmpfs fallback (`optional`).
                say(&format!("ERROR {e}"));
                say(&format!("hint: {}", e.hint()));
            } else {
                eprintln!("oa-storage: {e}");
            }
            e.exit_code()
        }
    }
}

fn setup(args: &[String]) -> error::Result<()> {
    let cfg_path = flag(args, "--config").unwrap_or_else(|| format!("/{}", initramfs_paths::PERSIST_CONFIG));
    let cfg: PersistConfig = match std::fs::read(&cfg_path) {
        Ok(b) => serde_json::from_slice(&b).map_err(error::json_err(&cfg_path))?,
        // Only the cmdline: the safe defaults (passphrase, never format).
        Err(_) => serde_json::from_str(r#"{"device":"","key":"passphrase"}"#)
            .map_err(error::json_err("the default configuration"))?,
    };
    let o =
        ops::Overrides { device: flag(args, "--device"), key: flag(args, "--key"), rollback: flag(args, "--rollback") };
    if cfg.device.is_empty() && o.device.is_none() {
        return Err(error::Error::NoDevice);
    }
    let places = ops::Places {
        top: flag(args, "--top").map(PathBuf::from).unwrap_or_else(|| PathBuf::from(storage_paths::TOP)),
        state: flag(args, "--state").map(PathBuf::from).unwrap_or_else(|| PathBuf::from(mounts::RW)),
        runtime: flag(args, "--runtime").map(PathBuf::from).unwrap_or_else(|| PathBuf::from(storage_paths::RUNTIME)),
        mapping: flag(args, "--mapping").unwrap_or_else(|| luks::MAPPING.to_string()),
    };
    let boot_id = flag(args, "--boot-id").unwrap_or_else(ops::boot_id);
    ops::setup(&cfg, &o, &places, &boot_id).map(|_| ())
}
