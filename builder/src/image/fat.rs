//! The EFI system partition's FAT filesystem, made with mtools inside the image file
//! (`-i disk.img@@OFFSET`): no root, no loop device, no mount.

use crate::error::{Error, Result};
use std::path::{Path, PathBuf};
use std::process::Command;

const INSTALL_HINT: &str = "install mtools: apt-get install mtools (`make deps` does it)";

/// A FAT filesystem at a byte offset of an image file.
pub struct Fat {
    image: PathBuf,
    offset: u64,
    /// SOURCE_DATE_EPOCH for the timestamps mtools writes (reproducible images).
    epoch: u64,
}

/// FAT variant and cluster size for a partition of `sectors` 512-byte sectors.
/// FAT16 up to 256 MiB (the cluster count kept in FAT16's range, 4085..65525, so no tool
/// takes it for FAT12 or FAT32), FAT32 above, where the UEFI specification prefers it.
pub fn geometry(sectors: u64) -> (bool, u32) {
    if sectors > 256 * 2048 {
        return (true, 8);
    }
    let mut spc = 1u32;
    while sectors / spc as u64 > 65_000 {
        spc *= 2;
    }
    (false, spc)
}

impl Fat {
    pub fn new(image: &Path, offset: u64, epoch: u64) -> Fat {
        Fat { image: image.to_path_buf(), offset, epoch }
    }

    fn target(&self) -> String {
        format!("{}@@{}", self.image.display(), self.offset)
    }

    fn mtools(&self, program: &str) -> Command {
        let mut c = Command::new(program);
        // Ignore the user's ~/.mtoolsrc; skip the geometry sanity check (an image file has
        // none); fixed timestamps so the same inputs give the same bytes.
        c.env("MTOOLSRC", "/dev/null").env("MTOOLS_SKIP_CHECK", "1").env("SOURCE_DATE_EPOCH", self.epoch.to_string());
        c.arg("-i").arg(self.target());
        c
    }

    /// `mformat`: a FAT of `sectors` sectors whose boot sector records `hidden` sectors
    /// before it (the partition's start LBA, which syslinux's boot sector uses).
    pub fn format(&self, sectors: u64, hidden: u64, label: &str, serial: u32) -> Result<()> {
        let (fat32, spc) = geometry(sectors);
        let mut c = self.mtools("mformat");
        c.args(["-T", &sectors.to_string(), "-H", &hidden.to_string(), "-h", "64", "-s", "32"]);
        if fat32 {
            c.arg("-F");
        } else {
            c.args(["-c", &spc.to_string()]);
        }
        c.args(["-v", label, "-N", &format!("{serial:08x}"), "::"]);
        crate::tool::run(&mut c, "mformat", INSTALL_HINT).map(drop)
    }

    /// `mmd`: make folders (parents first).
    pub fn mkdirs(&self, dirs: &[&str]) -> Result<()> {
        if dirs.is_empty() {
            return Ok(());
        }
        let mut c = self.mtools("mmd");
        c.args(dirs.iter().map(|d| format!("::/{}", d.trim_start_matches('/'))));
        crate::tool::run(&mut c, "mmd", INSTALL_HINT).map(drop)
    }

    /// `mcopy`: copy a host file to `dst` (a path in the filesystem).
    pub fn copy(&self, src: &Path, dst: &str) -> Result<()> {
        if !src.is_file() {
            return Err(Error::Output {
                path: src.to_path_buf(),
                reason: "missing; it should be copied into the EFI system partition".into(),
            });
        }
        let mut c = self.mtools("mcopy");
        c.arg("-o").arg(src).arg(format!("::/{}", dst.trim_start_matches('/')));
        crate::tool::run(&mut c, "mcopy", INSTALL_HINT).map(drop)
    }

    /// `mdir -a -b`: every file and folder, recursively (for tests and `oa` messages).
    pub fn list(&self) -> Result<Vec<String>> {
        let mut c = self.mtools("mdir");
        c.args(["-a", "-b", "-/", "::/"]);
        let out = crate::tool::run(&mut c, "mdir", INSTALL_HINT)?;
        Ok(out.lines().map(|l| l.trim_start_matches("::").to_string()).filter(|l| !l.is_empty()).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fat16_cluster_counts_stay_in_range() {
        for mib in [8u64, 12, 31, 32, 100, 200, 256] {
            let sectors = mib * 2048;
            let (fat32, spc) = geometry(sectors);
            assert!(!fat32, "{mib} MiB");
            let clusters = sectors / spc as u64;
            assert!((4200..=65_000).contains(&clusters), "{mib} MiB: {clusters} clusters of {spc} sectors");
        }
        assert!(geometry(257 * 2048).0);
    }
}
