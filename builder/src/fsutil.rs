//! Small file-tree helpers with error context.

use crate::error::{IoContext, Result};
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::Path;

/// Copy the tree `src` into `dst` (merging), keeping modes and symlinks; later files replace
/// earlier ones (overlays are applied in profile order).
pub fn copy_tree(src: &Path, dst: &Path) -> Result<u64> {
    let mut n = 0;
    for entry in walkdir::WalkDir::new(src).sort_by_file_name() {
        let entry = entry.map_err(|e| crate::error::Error::Walk(format!("walking overlay {}: {e}", src.display())))?;
        let rel = entry.path().strip_prefix(src).unwrap_or(entry.path());
        let target = dst.join(rel);
        let md = entry.path().symlink_metadata().ctx("reading metadata of", entry.path())?;
        if md.is_dir() {
            if target.symlink_metadata().is_ok_and(|m| !m.is_dir()) {
                std::fs::remove_file(&target).ctx("replacing with a directory", &target)?;
            }
            std::fs::create_dir_all(&target).ctx("creating directory", &target)?;
            std::fs::set_permissions(&target, md.permissions()).ctx("setting mode of", &target)?;
            continue;
        }
        if target.symlink_metadata().is_ok() {
            if target.is_dir() && !target.symlink_metadata().map(|m| m.file_type().is_symlink()).unwrap_or(false) {
                std::fs::remove_dir_all(&target).ctx("replacing directory", &target)?;
            } else {
                std::fs::remove_file(&target).ctx("replacing file", &target)?;
            }
        }
        if md.file_type().is_symlink() {
            let t = std::fs::read_link(entry.path()).ctx("reading symlink", entry.path())?;
            symlink(&t, &target).ctx("creating symlink", &target)?;
        } else {
            std::fs::copy(entry.path(), &target).ctx("copying overlay file to", &target)?;
            std::fs::set_permissions(&target, std::fs::Permissions::from_mode(md.permissions().mode()))
                .ctx("setting mode of", &target)?;
        }
        n += 1;
    }
    Ok(n)
}

/// Write a file with a mode, creating parent directories.
pub fn write_file(path: &Path, data: &[u8], mode: u32) -> Result<()> {
    if let Some(p) = path.parent() {
        std::fs::create_dir_all(p).ctx("creating directory", p)?;
    }
    std::fs::write(path, data).ctx("writing", path)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).ctx("setting mode of", path)?;
    Ok(())
}

/// Size of a tree in bytes (regular files).
pub fn tree_size(root: &Path) -> u64 {
    walkdir::WalkDir::new(root)
        .into_iter()
        .flatten()
        .filter_map(|e| e.path().symlink_metadata().ok())
        .filter(|m| m.is_file())
        .map(|m| m.len())
        .sum()
}
