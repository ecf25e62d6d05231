//! Packing the root filesystem tree as squashfs with `mksquashfs` (the standard tool users trust),
//! reproducibly: all files owned by root, fixed timestamps, no appending to an old image.

use crate::error::{Error, Result};
use std::path::Path;
use std::process::Command;

/// Who owns the files in the image.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Owners {
    /// Everything root's: a tree unpacked without root privileges (the busybox base).
    AllRoot,
    /// As in the tree, with extended attributes: a full OS has files owned by other users
    /// (/etc/shadow, home folders) and was assembled as root.
    Keep,
}

/// Pack `tree` into `out` (which must not exist yet; the caller renames it into place).
pub fn pack(tree: &Path, out: &Path, owners: Owners) -> Result<()> {
    pack_with(tree, out, owners, &[])
}

/// [`pack`] with extra mksquashfs options (block size, compression level).
pub fn pack_with(tree: &Path, out: &Path, owners: Owners, extra: &[&str]) -> Result<()> {
    let mut cmd = Command::new("mksquashfs");
    cmd.arg(tree).arg(out).args(["-noappend", "-comp", "zstd", "-quiet", "-no-progress"]).args(extra);
    match owners {
        Owners::AllRoot => cmd.arg("-all-root"),
        Owners::Keep => cmd.arg("-xattrs"),
    };
    cmd.args(["-mkfs-time", "0", "-all-time", "0"]).args(["-processors", "2"]);
    // The dates are fixed above; mksquashfs refuses SOURCE_DATE_EPOCH next to those options.
    cmd.env_remove("SOURCE_DATE_EPOCH");
    crate::tool::run(&mut cmd, "mksquashfs", "install squashfs-tools (`make deps` does it)")?;
    if !out.exists() {
        return Err(Error::Image(format!("mksquashfs succeeded but wrote no {}", out.display())));
    }
    Ok(())
}
