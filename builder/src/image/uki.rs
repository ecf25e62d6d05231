//! The unified kernel image (UKI): systemd's EFI stub (`linuxx64.efi.stub`, arm64
//! `linuxaa64.efi.stub`, package systemd-boot-efi) with the kernel, the initramfs, the command line and an os-release as PE
//! sections, so that one signature covers all four. Debian 12 has the stub but not `ukify`:
//! the sections are added with `objcopy` (binutils), each at a virtual address after the
//! stub's own sections, 4 KiB aligned (the Arch wiki's and systemd's documented recipe), then
//! the whole file is signed with `sbsign` (sbsigntool) and checked with `sbverify`.

use crate::error::{Error, IoContext, Result};
use oa_contract::Arch;
use std::path::{Path, PathBuf};
use std::process::Command;

const BINUTILS_HINT: &str = "install binutils: apt-get install binutils (`make deps` does it)";
const SBSIGN_HINT: &str = "install sbsigntool: apt-get install sbsigntool (`make deps` does it)";
/// Section addresses are aligned to this (at least the stub's SectionAlignment).
const ALIGN: u64 = 0x1000;

/// The end (VMA + size) of the last section `objdump -h` lists.
pub fn sections_end(objdump_h: &str) -> Option<u64> {
    objdump_h
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            // Idx Name Size VMA LMA File-off Algn
            if f.len() != 7 || f[0].parse::<u32>().is_err() {
                return None;
            }
            let size = u64::from_str_radix(f[2], 16).ok()?;
            let vma = u64::from_str_radix(f[3], 16).ok()?;
            Some(vma + size)
        })
        .max()
}

/// The virtual address of each added section, in order, after `end`.
pub fn layout(end: u64, sizes: &[(&'static str, u64)]) -> Vec<(&'static str, u64)> {
    let mut at = end.div_ceil(ALIGN) * ALIGN;
    sizes
        .iter()
        .map(|&(name, size)| {
            let vma = at;
            at = (at + size).div_ceil(ALIGN) * ALIGN;
            (name, vma)
        })
        .collect()
}

/// systemd's EFI stub for the profile's architecture (`linuxx64.efi.stub`,
/// `linuxaa64.efi.stub`), from Debian's systemd-boot-efi package of that architecture
/// (downloaded by apt and verified against its index like every package of the build), and the
/// binutils that know its PE flavour: the host's own for x86-64, the aarch64 cross binutils
/// (binutils-aarch64-linux-gnu) for arm64, whose `pei-aarch64-little` the host's lack.
#[derive(Debug, Clone)]
pub struct Stub {
    pub deb: PathBuf,
    pub info: crate::apt::PackageInfo,
    /// The stub's path in the package.
    pub file: &'static str,
    pub binutils: Binutils,
}

/// The `objdump` and `objcopy` for one architecture's PE files.
#[derive(Debug, Clone, Copy)]
pub struct Binutils {
    pub objdump: &'static str,
    pub objcopy: &'static str,
    pub hint: &'static str,
}

impl Binutils {
    pub fn of(arch: Arch) -> Binutils {
        match arch {
            Arch::X86_64 => Binutils { objdump: "objdump", objcopy: "objcopy", hint: BINUTILS_HINT },
            Arch::Aarch64 => Binutils {
                objdump: "aarch64-linux-gnu-objdump",
                objcopy: "aarch64-linux-gnu-objcopy",
                hint: "install the aarch64 binutils (they read arm64 PE files): apt-get install binutils-aarch64-linux-gnu (`make deps` does it)",
            },
        }
    }
}

impl Stub {
    /// Fetch the package (cached after the first build).
    pub fn fetch(pkgs: &crate::apt::PackageCache, arch: Arch) -> Result<Stub> {
        let file = match arch {
            Arch::X86_64 => "usr/lib/systemd/boot/efi/linuxx64.efi.stub",
            Arch::Aarch64 => "usr/lib/systemd/boot/efi/linuxaa64.efi.stub",
        };
        let (deb, info) = pkgs.fetch("systemd-boot-efi", arch.debian())?;
        Ok(Stub { deb, info, file, binutils: Binutils::of(arch) })
    }

    /// Take the stub out of its package into `dir`.
    pub fn extract(&self, dir: &Path) -> Result<PathBuf> {
        let dst = dir.join("stub.efi");
        crate::deb::extract_file(&self.deb, &self.info, self.file, &dir.join(".unpack-stub"), &dst)?;
        Ok(dst)
    }
}

/// The `.osrel` section: what a boot menu shows for the UKI.
pub fn os_release(name: &str, hostname: &str) -> String {
    format!("NAME=oa\nID=oa\nPRETTY_NAME=\"oa {name} ({hostname})\"\nIMAGE_ID={name}\n")
}

/// What goes into a UKI.
pub struct UkiSpec<'a> {
    pub stub: &'a Path,
    pub binutils: Binutils,
    pub osrel: &'a Path,
    pub cmdline: &'a Path,
    pub kernel: &'a Path,
    pub initrd: &'a Path,
}

fn size(p: &Path) -> Result<u64> {
    Ok(std::fs::metadata(p).ctx("reading size of", p)?.len())
}

/// Assemble the unsigned UKI at `out`.
pub fn assemble(spec: &UkiSpec<'_>, out: &Path) -> Result<()> {
    let tools = spec.binutils;
    let mut c = Command::new(tools.objdump);
    c.arg("-h").arg(spec.stub);
    let listing = crate::tool::run(&mut c, tools.objdump, tools.hint)?;
    let end = sections_end(&listing).ok_or_else(|| {
        Error::Image(format!("{}: objdump lists no sections; is it the EFI stub?", spec.stub.display()))
    })?;
    let parts = [(".osrel", spec.osrel), (".cmdline", spec.cmdline), (".linux", spec.kernel), (".initrd", spec.initrd)];
    let sizes: Vec<(&'static str, u64)> = parts.iter().map(|(n, p)| Ok((*n, size(p)?))).collect::<Result<_>>()?;
    let mut c = Command::new(tools.objcopy);
    for ((name, path), (_, vma)) in parts.iter().zip(layout(end, &sizes)) {
        c.arg("--add-section").arg(format!("{name}={}", path.display()));
        c.arg("--change-section-vma").arg(format!("{name}={vma:#x}"));
    }
    let _ = std::fs::remove_file(out);
    c.arg(spec.stub).arg(out);
    crate::tool::run(&mut c, tools.objcopy, tools.hint).map(drop)
}

/// `sbsign`: sign `input` with `key`/`cert` into `out`, then `sbverify` it against `cert`.
pub fn sign(key: &Path, cert: &Path, input: &Path, out: &Path) -> Result<()> {
    crate::keys::check_pair(key, cert)?;
    let _ = std::fs::remove_file(out);
    let mut c = Command::new("sbsign");
    c.arg("--key").arg(key).arg("--cert").arg(cert).arg("--output").arg(out).arg(input);
    crate::tool::run(&mut c, "sbsign", SBSIGN_HINT)?;
    let mut c = Command::new("sbverify");
    c.arg("--cert").arg(cert).arg(out);
    crate::tool::run(&mut c, "sbverify", SBSIGN_HINT).map(drop)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sections_go_after_the_stub_aligned() {
        let h = "\nlinuxx64.efi.stub:     file format pei-x86-64\n\nSections:\n\
                 Idx Name          Size      VMA               LMA               File off  Algn\n\
                 \x20 0 .text         0000b6e0  0000000000001000  0000000000001000  00000400  2**4\n\
                 \x20                 CONTENTS, ALLOC, LOAD, READONLY, CODE\n\
                 \x20 5 .sdmagic      00000030  0000000000014000  0000000000014000  0000f200  2**4\n";
        assert_eq!(sections_end(h), Some(0x14030));
        let l = layout(0x14030, &[(".osrel", 100), (".cmdline", 0x1000), (".linux", 1)]);
        assert_eq!(l, [(".osrel", 0x15000), (".cmdline", 0x16000), (".linux", 0x17000)]);
    }
}
