//! The btrfs object: mkfs (the mkfs.btrfs tool, exit status checked), mounts (syscalls), and
//! subvolumes and snapshots through libbtrfsutil.

use std::path::Path;
use std::process::Command;

use btrfsutil::subvolume::{DeleteFlags, SnapshotFlags, Subvolume};
use nix::mount::MsFlags;
use oa_contract::storage_paths;

use crate::error::{btrfs_err, Error, IoContext, Result};

/// The mkfs.btrfs to run: the bundled one (through the bundled loader) or the host's.
fn mkfs_command() -> Command {
    if let Some(p) = std::env::var_os("OA_MKFS_BTRFS") {
        return Command::new(p);
    }
    if Path::new(storage_paths::MKFS_BTRFS).exists() && Path::new(storage_paths::LOADER).exists() {
        let mut c = Command::new(storage_paths::LOADER);
        c.args(["--library-path", storage_paths::LIBDIR, storage_paths::MKFS_BTRFS]);
        return c;
    }
    Command::new("mkfs.btrfs")
}

/// unlocked (no filesystem) -> btrfs.
pub fn mkfs(dev: &Path, label: &str) -> Result<()> {
    let mut c = mkfs_command();
    c.args(["-q", "-L", label]).arg(dev);
    let out = c.output().map_err(|source| Error::Run { what: "mkfs.btrfs", source })?;
    if !out.status.success() {
        return Err(Error::Mkfs {
            device: dev.display().to_string(),
            status: out.status,
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        });
    }
    Ok(())
}

/// The mount point `target` has something mounted on it (per /proc/self/mountinfo).
pub fn is_mounted(target: &Path) -> bool {
    oa_disk::mountinfo::read().map(|m| m.iter().any(|e| e.mount_point == target)).unwrap_or(false)
}

pub use nix::mount::MsFlags as MountFlags;

/// Mount (idempotent: an existing mount is kept), with `flags` besides `noatime`.
pub fn mount(dev: &Path, target: &Path, options: &str, flags: MsFlags) -> Result<()> {
    if is_mounted(target) {
        return Ok(());
    }
    std::fs::create_dir_all(target).ctx("create", target)?;
    nix::mount::mount(Some(dev), target, Some("btrfs"), MsFlags::MS_NOATIME | flags, Some(options)).map_err(|source| {
        Error::Mount {
            device: dev.display().to_string(),
            target: target.display().to_string(),
            options: options.to_string(),
            source,
        }
    })
}

/// The flags of the top-level mount: old snapshots keep setuid binaries, device nodes and
/// programs of states long gone; none of them is usable from there.
pub const TOP_FLAGS: MsFlags = MsFlags::MS_NOSUID.union(MsFlags::MS_NODEV).union(MsFlags::MS_NOEXEC);

/// The top level (subvolume 5) at `target`, for root only: the mount point and the top level's
/// root directory are 0700, and the mount is nosuid,nodev,noexec ([`TOP_FLAGS`]).
pub fn mount_top(dev: &Path, target: &Path) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let private = |p: &Path| std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o700)).ctx("chmod 0700", p);
    if !is_mounted(target) {
        std::fs::create_dir_all(target).ctx("create", target)?;
        private(target)?;
    }
    mount(dev, target, "subvolid=5", TOP_FLAGS)?;
    private(target)
}

/// A file's identity: its device and inode number (what `stat` says), so that two paths are
/// compared as objects, not as text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileId {
    pub dev: u64,
    pub ino: u64,
}

/// The identity of `p` (following symlinks), if it exists.
pub fn id(p: &Path) -> Option<FileId> {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(p).ok().map(|m| FileId { dev: m.dev(), ino: m.ino() })
}

/// The id of the subvolume whose root `p` is (5: the top level), if it is one.
pub fn subvolume_id(p: &Path) -> Option<u64> {
    Subvolume::get(p).ok().map(|s| s.id())
}

pub fn is_subvolume(p: &Path) -> bool {
    Subvolume::is_subvolume(p).is_ok()
}

/// Create the subvolume `p` unless it exists (idempotent).
pub fn ensure_subvolume(p: &Path) -> Result<()> {
    if is_subvolume(p) {
        return Ok(());
    }
    Subvolume::create(p, None).map(|_| ()).map_err(btrfs_err("create subvolume", p))
}

/// A snapshot of `src` at `dst` (read-only or writable).
pub fn snapshot(src: &Path, dst: &Path, readonly: bool) -> Result<()> {
    let sv = Subvolume::get(src).map_err(btrfs_err("open subvolume", src))?;
    let flags = if readonly { SnapshotFlags::READ_ONLY } else { SnapshotFlags::empty() };
    sv.snapshot(dst, flags, None).map(|_| ()).map_err(btrfs_err("snapshot to", dst))
}

pub fn delete(p: &Path) -> Result<()> {
    let sv = Subvolume::get(p).map_err(btrfs_err("open subvolume", p))?;
    sv.delete(DeleteFlags::empty()).map_err(btrfs_err("delete subvolume", p))
}

/// Names of the subvolumes in `dir`, sorted.
pub fn list(dir: &Path) -> Result<Vec<String>> {
    let mut v = Vec::new();
    for e in std::fs::read_dir(dir).ctx("list", dir)? {
        let e = e.ctx("list", dir)?;
        if is_subvolume(&e.path()) {
            v.push(e.file_name().to_string_lossy().into_owned());
        }
    }
    v.sort();
    Ok(v)
}

/// Creation time (seconds since the epoch) and read-only flag of a subvolume.
pub fn describe(p: &Path) -> (Option<i64>, bool) {
    match Subvolume::get(p) {
        Ok(sv) => {
            let ro = sv.is_ro().unwrap_or(false);
            let t = sv.info().ok().map(|i| i.otime.timestamp());
            (t, ro)
        }
        Err(_) => (None, false),
    }
}

/// Flush the filesystem holding `p` (a btrfs transaction commit).
pub fn sync(p: &Path) -> Result<()> {
    btrfsutil::sync::sync(p).map_err(btrfs_err("sync", p))
}
