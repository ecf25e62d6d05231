//! Mounts as objects with two states (mounted or not). `ensure_mounted` is idempotent: a mount
//! point that already holds a filesystem is left alone.

use std::os::unix::fs::{DirBuilderExt, MetadataExt};
use std::path::Path;

use nix::mount::MsFlags;

use crate::error::{Error, IoContext, Result};

/// Is `path` a mount point? (its device differs from its parent's, or it is `/`).
pub fn is_mountpoint(path: &Path) -> Result<bool> {
    let me = std::fs::symlink_metadata(path).ctx("stat", path)?;
    let parent = path.join("..");
    let up = std::fs::symlink_metadata(&parent).ctx("stat", &parent)?;
    Ok(me.dev() != up.dev() || me.ino() == up.ino())
}

/// Create a directory and its parents (mode 0755) if missing.
pub fn ensure_dir(path: &Path) -> Result<()> {
    std::fs::DirBuilder::new().recursive(true).mode(0o755).create(path).ctx("create directory", path)
}

/// mount(2) with context in the error.
pub fn mount(source: &str, target: &Path, fstype: &str, flags: MsFlags, data: Option<&str>) -> Result<()> {
    nix::mount::mount(Some(source), target, Some(fstype), flags, data).map_err(|e| Error::Mount {
        fstype: fstype.to_string(),
        src: source.to_string(),
        target: target.display().to_string(),
        data: data.unwrap_or("").to_string(),
        source: e,
    })
}

/// Mount `fstype` on `target` unless something is mounted there already. Returns whether it
/// mounted.
pub fn ensure_mounted(source: &str, target: &Path, fstype: &str, flags: MsFlags, data: Option<&str>) -> Result<bool> {
    ensure_dir(target)?;
    if is_mountpoint(target)? {
        return Ok(false);
    }
    mount(source, target, fstype, flags, data)?;
    Ok(true)
}

/// Move the mount at `from` (with everything below it) to `to`.
pub fn move_mount(from: &Path, to: &Path) -> Result<()> {
    ensure_dir(to)?;
    nix::mount::mount(Some(from), to, None::<&str>, MsFlags::MS_MOVE, None::<&str>).map_err(|e| Error::Mount {
        fstype: "(move)".into(),
        src: from.display().to_string(),
        target: to.display().to_string(),
        data: String::new(),
        source: e,
    })
}

/// Remount `target` read-only (used at shutdown, best effort by the caller).
pub fn remount_readonly(target: &Path) -> Result<()> {
    nix::mount::mount(None::<&str>, target, None::<&str>, MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY, None::<&str>)
        .map_err(|e| Error::Mount {
            fstype: "(remount,ro)".into(),
            src: String::new(),
            target: target.display().to_string(),
            data: String::new(),
            source: e,
        })
}

/// The API filesystems every stage needs: /proc, /sys, /dev (devtmpfs), /run (tmpfs).
pub fn mount_api_filesystems() -> Result<Vec<&'static str>> {
    let nosuid_noexec_nodev = MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC | MsFlags::MS_NODEV;
    let mut done = Vec::new();
    if ensure_mounted("proc", Path::new("/proc"), "proc", nosuid_noexec_nodev, None)? {
        done.push("/proc");
    }
    if ensure_mounted("sysfs", Path::new("/sys"), "sysfs", nosuid_noexec_nodev, None)? {
        done.push("/sys");
    }
    if ensure_mounted("devtmpfs", Path::new("/dev"), "devtmpfs", MsFlags::MS_NOSUID, Some("mode=0755"))? {
        done.push("/dev");
    }
    if ensure_mounted("tmpfs", Path::new("/run"), "tmpfs", MsFlags::MS_NOSUID | MsFlags::MS_NODEV, Some("mode=0755"))? {
        done.push("/run");
    }
    Ok(done)
}
