//! switch_root: make the assembled root (/sysroot) the new `/`, freeing the initramfs.

use std::os::unix::fs::MetadataExt;
use std::path::Path;

use nix::mount::MsFlags;

use crate::console;
use crate::error::{Error, IoContext, Result, SysContext};
use crate::mounts;

const RAMFS_MAGIC: i64 = 0x8584_58f6;
const TMPFS_MAGIC: i64 = 0x0102_1994;

/// The API filesystems that move along into the new root.
pub const MOVED: [&str; 4] = ["/dev", "/proc", "/sys", "/run"];

/// Move the API filesystems, empty the initramfs, and chroot into `new_root`. On return the
/// process is in the new root (cwd `/`); the caller execs the next init.
pub fn switch_root(new_root: &Path) -> Result<()> {
    // Fail fast: only ever delete the contents of an initramfs.
    let fs = nix::sys::statfs::statfs("/").sys("statfs", "/")?;
    let magic = fs.filesystem_type().0 as i64;
    if magic != RAMFS_MAGIC && magic != TMPFS_MAGIC {
        return Err(Error::Unexpected {
            what: "switch_root".into(),
            why: format!("/ is not an initramfs (filesystem type {magic:#x}); refusing to delete its contents"),
        });
    }
    if !mounts::is_mountpoint(new_root)? {
        return Err(Error::Unexpected {
            what: "switch_root".into(),
            why: format!("{} is not a mount point", new_root.display()),
        });
    }
    for m in MOVED {
        let target = new_root.join(m.trim_start_matches('/'));
        mounts::move_mount(Path::new(m), &target)?;
    }
    let root_dev = std::fs::symlink_metadata("/").ctx("stat", "/")?.dev();
    let mut failed = 0usize;
    remove_contents(Path::new("/"), root_dev, &mut failed);
    if failed > 0 {
        console::warn(&format!("switch_root: {failed} files of the initramfs could not be removed"));
    }
    nix::unistd::chdir(new_root).sys("chdir", new_root)?;
    nix::mount::mount(Some("."), "/", None::<&str>, MsFlags::MS_MOVE, None::<&str>).map_err(|e| Error::Mount {
        fstype: "(move)".into(),
        src: new_root.display().to_string(),
        target: "/".into(),
        data: String::new(),
        source: e,
    })?;
    nix::unistd::chroot(".").sys("chroot", new_root)?;
    nix::unistd::chdir("/").sys("chdir", "/")?;
    Ok(())
}

/// Delete everything below `dir` that is on the device `dev`, without crossing into other
/// filesystems (mount points are left alone).
fn remove_contents(dir: &Path, dev: u64, failed: &mut usize) {
    let Ok(rd) = std::fs::read_dir(dir) else {
        *failed += 1;
        return;
    };
    for e in rd.flatten() {
        let p = e.path();
        let Ok(md) = std::fs::symlink_metadata(&p) else {
            *failed += 1;
            continue;
        };
        if md.dev() != dev {
            continue;
        }
        if md.is_dir() {
            remove_contents(&p, dev, failed);
            // A directory that is a mount point (different dev) was skipped above; an empty
            // directory on the initramfs goes now.
            if std::fs::remove_dir(&p).is_err() {
                *failed += 1;
            }
        } else if std::fs::remove_file(&p).is_err() {
            *failed += 1;
        }
    }
}
