//! Persistence from oa-init's side: oa-init stays a small static binary; the storage work
//! (libcryptsetup, libbtrfsutil) is the glibc program `oa-storage`, run as a child through its
//! bundled loader (oa_contract::storage_paths). Stage 1 runs `oa-storage setup`, which leaves
//! the state subvolume mounted at /run/oa/rw (upper/, work/); stage 2 runs `mark-good` once
//! the system is ready; `oa-init status` and `oa-init snapshot ...` exec it in the running system.

use std::path::Path;
use std::process::Command;

use oa_contract::cmdline::BootArgs;
use oa_contract::config::PersistConfig;
use oa_contract::{initramfs_paths, storage_paths, ConsoleLine};

use crate::console;
use crate::error::{Error, PersistError};

/// The profile's `[persistence]` as the builder wrote it, if any.
fn config() -> Option<PersistConfig> {
    let p = Path::new("/").join(initramfs_paths::PERSIST_CONFIG);
    std::fs::read(p).ok().and_then(|b| serde_json::from_slice(&b).ok())
}

/// The paths that persist when `[persistence] paths` lists some; empty: the whole upper layer.
pub fn persisted_paths() -> Vec<String> {
    config().map(|c| c.paths).unwrap_or_default()
}

/// `LOADER --library-path LIBDIR STORAGE args...`
pub fn storage_command(args: &[&str]) -> Command {
    let mut c = Command::new(storage_paths::LOADER);
    c.args(["--library-path", storage_paths::LIBDIR, storage_paths::STORAGE]).args(args);
    c
}

/// How stage 1 ended up.
pub enum Upper {
    /// No persistence asked for.
    Tmpfs,
    /// Persistence failed and the profile says it is optional.
    TmpfsFallback,
    /// The state subvolume is mounted at /run/oa/rw.
    Persistent,
}

/// Run `oa-storage setup` when persistence is configured. An error when it failed and
/// persistence is not optional.
pub fn setup(args: &BootArgs) -> Result<Upper, Error> {
    let cfg = config();
    if args.persist.is_none() && cfg.is_none() {
        return Ok(Upper::Tmpfs);
    }
    let optional = cfg.as_ref().is_some_and(|c| c.optional);
    let mut argv: Vec<String> = vec!["setup".into()];
    for (flag, v) in [("--device", &args.persist), ("--key", &args.persist_key), ("--rollback", &args.rollback)] {
        if let Some(v) = v {
            argv.push(flag.into());
            argv.push(v.clone());
        }
    }
    let refs: Vec<&str> = argv.iter().map(String::as_str).collect();
    if !Path::new(storage_paths::STORAGE).exists() {
        return fallback(optional, PersistError::NoStorage);
    }
    let why = match storage_command(&refs).status() {
        Ok(st) if st.success() => return Ok(Upper::Persistent),
        Ok(st) => match st.code() {
            Some(storage_paths::EXIT_MISSING) => PersistError::Missing,
            Some(storage_paths::EXIT_KEY) => PersistError::WrongKey,
            Some(storage_paths::EXIT_REFUSED) => PersistError::Refused,
            _ => PersistError::Failed(st),
        },
        Err(e) => PersistError::Spawn(e),
    };
    fallback(optional, why)
}

fn fallback(optional: bool, why: PersistError) -> Result<Upper, Error> {
    let e = Error::Persist(why);
    if optional {
        console::warn(&format!(
            "{e}; persistence is optional: booting with a tmpfs upper layer, CHANGES WILL BE LOST at shutdown"
        ));
        Ok(Upper::TmpfsFallback)
    } else {
        Err(e)
    }
}

/// Stage 2, after the ready line: tell oa-storage this boot was good (boot counting). Runs in
/// the background; the supervisor reaps it.
pub fn mark_good() {
    if !Path::new(storage_paths::RUNTIME).exists() || !Path::new(storage_paths::STORAGE).exists() {
        return;
    }
    if let Err(e) = storage_command(&["mark-good"]).spawn() {
        console::warn(&format!("persistence: cannot run {} mark-good: {e}", storage_paths::STORAGE));
    }
}

/// `oa-init status` / `oa-init snapshot ...` in the running system: exec oa-storage.
pub fn cli(args: &[String]) -> i32 {
    use std::os::unix::process::CommandExt;
    if !Path::new(storage_paths::STORAGE).exists() {
        eprintln!(
            "{}",
            ConsoleLine::Info(&format!(
                "this system has no persistence (no {}): the profile has no [persistence] section",
                storage_paths::STORAGE
            ))
        );
        return 1;
    }
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    let e = storage_command(&refs).exec();
    eprintln!("{}", ConsoleLine::Info(&format!("exec {}: {e}", storage_paths::LOADER)));
    1
}
