//! Boot loaders for the disk image, from Debian's packages on the build host:
//!
//! * BIOS: syslinux. `gptmbr.bin` (package `syslinux`) is the MBR boot code; it boots the GPT
//!   partition marked "legacy BIOS bootable", the ESP, whose boot sector and `ldlinux.sys` /
//!   `ldlinux.c32` are written by the mtools-based installer `syslinux --install --offset`
//!   (package `syslinux`), working on the image file. `/syslinux.cfg` names the kernel.
//! * UEFI: systemd-boot (`systemd-bootx64.efi` from `systemd-boot-efi`) as the removable-media
//!   path `EFI/BOOT/BOOTX64.EFI`, with `loader/loader.conf` and `loader/entries/oa.conf`.
//!
//! Why systemd-boot and not a unified kernel image: both loaders then read the *same*
//! `vmlinuz` and `initramfs.img` from the ESP (a UKI would carry a second copy of both, and
//! syslinux cannot load a PE binary), and Debian 12 ships the stub but not `ukify`, so a UKI
//! would mean assembling PE sections with objcopy at hand-computed addresses. The command
//! line is the same text in `syslinux.cfg` and in the loader entry; a test checks it.

use crate::error::{Error, Result};
use oa_contract::Arch;
use std::path::{Path, PathBuf};

/// Host files the disk image needs, found under a root (`/` in use; a test root in tests).
#[derive(Debug, Clone)]
pub struct BootFiles {
    /// syslinux's MBR boot code for GPT disks (440 bytes).
    pub gptmbr: PathBuf,
    /// The syslinux installer (mtools flavour: works on an image file).
    pub syslinux: PathBuf,
    /// systemd-boot for x86-64 UEFI.
    pub systemd_boot: PathBuf,
}

/// The first of `candidates` (paths below `root`) that is a file; none is a
/// [`Error::ToolMissing`] naming `what` and the Debian `package` to install.
pub fn find_host_file(root: &Path, candidates: &[&str], package: &str, what: &str) -> Result<PathBuf> {
    let full: Vec<PathBuf> = candidates.iter().map(|c| root.join(c.trim_start_matches('/'))).collect();
    full.iter().find(|p| p.is_file()).cloned().ok_or_else(|| Error::ToolMissing {
        tool: what.to_string(),
        why: format!("none of {} exists", full.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", ")),
        hint: format!("install the Debian package: apt-get install {package} (`make deps` does it)"),
    })
}

impl BootFiles {
    pub fn locate(arch: Arch) -> Result<BootFiles> {
        Self::locate_in(Path::new("/"), arch)
    }

    /// Find the files under `root`; a missing one is a [`Error::ToolMissing`] naming the
    /// Debian package to install.
    pub fn locate_in(root: &Path, arch: Arch) -> Result<BootFiles> {
        if arch != Arch::X86_64 {
            return Err(Error::Image(format!(
                "disk images are made for x86_64 only (syslinux and the x86-64 systemd-boot); the profile's arch is {arch}: set [image] disk = false"
            )));
        }
        let find = |candidates: &[&str], package: &str, what: &str| find_host_file(root, candidates, package, what);
        Ok(BootFiles {
            gptmbr: find(
                &["usr/lib/SYSLINUX/gptmbr.bin", "usr/lib/syslinux/mbr/gptmbr.bin", "usr/share/syslinux/gptmbr.bin"],
                "syslinux",
                "gptmbr.bin (syslinux's GPT MBR)",
            )?,
            syslinux: find(&["usr/bin/syslinux"], "syslinux", "syslinux (the boot loader installer)")?,
            systemd_boot: find(
                &["usr/lib/systemd/boot/efi/systemd-bootx64.efi"],
                "systemd-boot-efi",
                "systemd-bootx64.efi (systemd-boot)",
            )?,
        })
    }

    /// The MBR boot code, checked to fit the 440 bytes before the disk signature.
    pub fn mbr_code(&self) -> Result<Vec<u8>> {
        let code = std::fs::read(&self.gptmbr).map_err(|e| Error::Io {
            action: "reading",
            path: self.gptmbr.clone(),
            source: e,
        })?;
        if code.is_empty() || code.len() > 440 {
            return Err(Error::Image(format!(
                "{} is {} bytes; MBR boot code must be 1 to 440 bytes",
                self.gptmbr.display(),
                code.len()
            )));
        }
        Ok(code)
    }
}

/// Where the files are on the ESP (FAT paths).
pub mod esp {
    pub const KERNEL: &str = "vmlinuz";
    pub const INITRD: &str = "initramfs.img";
    pub const SYSLINUX_CFG: &str = "syslinux.cfg";
    pub const EFI_BOOT: &str = "EFI/BOOT/BOOTX64.EFI";
    pub const LOADER_CONF: &str = "loader/loader.conf";
    /// `mode = "shim"`: GRUB and the MOK manager next to shim (where shim looks for them).
    pub const GRUB: &str = "EFI/BOOT/grubx64.efi";
    pub const MOK_MANAGER: &str = "EFI/BOOT/mmx64.efi";
    /// Where Debian's signed GRUB reads its configuration (its built-in prefix, /EFI/debian).
    pub const GRUB_CFG: &str = "EFI/debian/grub.cfg";
    pub const GRUB_DIRS: &[&str] = &["EFI/debian"];
    pub const ENTRY: &str = "loader/entries/oa.conf";
    /// `mode = "uki"`: systemd-boot, signed with the same key as the UKI, where systemd-boot
    /// installs itself (a boot entry of the machine's firmware can name it).
    pub const SYSTEMD_BOOT: &str = "EFI/systemd/systemd-bootx64.efi";
    pub const SYSTEMD_DIRS: &[&str] = &["EFI/systemd"];
    /// Folders to create, parents first.
    pub const DIRS: &[&str] = &["EFI", "EFI/BOOT", "loader", "loader/entries"];
}

/// `syslinux.cfg`: boot the one entry at once, console on the first serial port too.
pub fn syslinux_cfg(title: &str, cmdline: &[String]) -> String {
    format!(
        "# Written by `oa build`. BIOS boot (syslinux); UEFI boots the same files with systemd-boot.\n\
         SERIAL 0 115200\n\
         DEFAULT oa\n\
         PROMPT 0\n\
         TIMEOUT 0\n\
         LABEL oa\n\
         \x20 MENU LABEL {title}\n\
         \x20 LINUX /{}\n\
         \x20 INITRD /{}\n\
         \x20 APPEND {}\n",
        esp::KERNEL,
        esp::INITRD,
        cmdline.join(" ")
    )
}

/// What UEFI boots from an ESP.
#[derive(Debug, Clone, Copy)]
pub enum UefiLoader<'a> {
    /// systemd-boot with its entry for the kernel and initramfs (unsigned).
    SystemdBoot,
    /// `[secure_boot] mode = "uki"`: the signed UKI itself as BOOTX64.EFI, and systemd-boot,
    /// signed too, beside it with an entry that starts the UKI.
    Uki { uki: &'a Path, systemd_boot: &'a Path },
    /// `[secure_boot] mode = "shim"`: shim as BOOTX64.EFI, GRUB and the MOK manager beside it,
    /// GRUB's configuration for the kernel and initramfs.
    Shim { shim: &'a Path, grub: &'a Path, mok_manager: &'a Path },
}

/// What a [`UefiLoader`] puts on an ESP, disk.img's and oa.iso's alike.
#[derive(Debug)]
pub struct UefiFiles<'a> {
    /// Folders beyond [`esp::DIRS`], parents first.
    pub dirs: &'static [&'static str],
    /// Generated texts: (path on the ESP, content).
    pub texts: Vec<(&'static str, String)>,
    /// EFI binaries: (file, path on the ESP).
    pub efi: Vec<(&'a Path, &'static str)>,
    /// The loader reads the kernel and initramfs from the ESP (a UKI carries its own).
    pub needs_kernel: bool,
}

impl<'a> UefiLoader<'a> {
    /// The loader of a build: the signed UKI and signed systemd-boot (`mode = "uki"`), else
    /// shim's chain (`mode = "shim"`), else plain systemd-boot.
    pub fn of(uki: Option<(&'a Path, &'a Path)>, shim: Option<&'a crate::stages::shim::ShimOut>) -> UefiLoader<'a> {
        match (uki, shim) {
            (Some((uki, systemd_boot)), _) => UefiLoader::Uki { uki, systemd_boot },
            (None, Some(s)) => {
                UefiLoader::Shim { shim: &s.shim.path, grub: &s.grub.path, mok_manager: &s.mok_manager.path }
            }
            (None, None) => UefiLoader::SystemdBoot,
        }
    }

    /// For progress lines.
    pub fn name(&self) -> &'static str {
        match self {
            UefiLoader::SystemdBoot => "systemd-boot",
            UefiLoader::Uki { .. } => "signed UKI + systemd-boot",
            UefiLoader::Shim { .. } => "shim + GRUB",
        }
    }

    /// The files for this loader; `systemd_boot` is the unsigned one of [`Self::SystemdBoot`],
    /// `title` and `cmdline` go into its entry or GRUB's.
    pub fn files(&self, systemd_boot: &'a Path, title: &str, cmdline: &[String]) -> UefiFiles<'a> {
        match *self {
            UefiLoader::SystemdBoot => UefiFiles {
                dirs: &[],
                texts: vec![(esp::LOADER_CONF, loader_conf()), (esp::ENTRY, loader_entry(title, cmdline))],
                efi: vec![(systemd_boot, esp::EFI_BOOT)],
                needs_kernel: true,
            },
            UefiLoader::Uki { uki, systemd_boot } => UefiFiles {
                dirs: esp::SYSTEMD_DIRS,
                texts: vec![(esp::LOADER_CONF, uki_loader_conf()), (esp::ENTRY, uki_loader_entry(title))],
                efi: vec![(uki, esp::EFI_BOOT), (systemd_boot, esp::SYSTEMD_BOOT)],
                needs_kernel: false,
            },
            UefiLoader::Shim { shim, grub, mok_manager } => UefiFiles {
                dirs: esp::GRUB_DIRS,
                texts: vec![(esp::GRUB_CFG, grub_cfg(title, cmdline))],
                efi: vec![(shim, esp::EFI_BOOT), (grub, esp::GRUB), (mok_manager, esp::MOK_MANAGER)],
                needs_kernel: true,
            },
        }
    }
}

/// A word of a GRUB command, quoted when GRUB would read it otherwise (`'...'`, with `'\''`
/// for a quote): GRUB's script syntax treats `$ ; { } " ' \ #` and blanks specially.
fn grub_word(w: &str) -> String {
    let plain = !w.is_empty() && w.bytes().all(|b| b.is_ascii_alphanumeric() || b"=,._-/:@+%^".contains(&b));
    if plain {
        w.to_string()
    } else {
        format!("'{}'", w.replace('\'', "'\\''"))
    }
}

/// `EFI/debian/grub.cfg`: GRUB (behind shim) boots the one entry at once; `linux` has shim
/// check the kernel's signature (Secure Boot lockdown), the initramfs and this file are not
/// checked by anything.
pub fn grub_cfg(title: &str, cmdline: &[String]) -> String {
    grub_cfg_for(title, cmdline, esp::KERNEL, esp::INITRD)
}

/// [`grub_cfg`] with the kernel and initramfs at `kernel` and `initrd` (paths on GRUB's root).
pub fn grub_cfg_for(title: &str, cmdline: &[String], kernel: &str, initrd: &str) -> String {
    let words: Vec<String> = cmdline.iter().map(|w| grub_word(w)).collect();
    [
        "# Written by `oa build`. UEFI Secure Boot: shim -> this GRUB -> the kernel, each signed; BIOS boots syslinux.",
        "set timeout=0",
        "set default=0",
        &format!("menuentry {} {{", grub_word(title)),
        &format!("  linux /{kernel} {}", words.join(" ")),
        &format!("  initrd /{initrd}"),
        "}",
        "",
    ]
    .join("\n")
}

/// `loader/loader.conf`: the oa entry, no menu (hold a key at start to see it), no editor.
pub fn loader_conf() -> String {
    "# Written by `oa build`.\ndefault oa.conf\ntimeout 0\neditor no\nconsole-mode keep\n".to_string()
}

/// `loader/entries/oa.conf` with `mode = "uki"`: systemd-boot starts the signed UKI (the
/// firmware checks its signature; its stub ignores any other command line), and lists
/// nothing else.
pub fn uki_loader_entry(title: &str) -> String {
    format!(
        "# Written by `oa build`. The signed UKI, the same file UEFI boots directly.
title {title} (signed UKI)
efi /{}
",
        esp::EFI_BOOT
    )
}

/// `loader/loader.conf` with `mode = "uki"`: [`loader_conf`] without the entries systemd-boot
/// would find itself (BOOTX64.EFI again as "EFI Default Loader").
pub fn uki_loader_conf() -> String {
    format!(
        "{}auto-entries no
",
        loader_conf()
    )
}

/// `loader/entries/oa.conf`: the systemd-boot entry (Boot Loader Specification type #1).
pub fn loader_entry(title: &str, cmdline: &[String]) -> String {
    format!(
        "# Written by `oa build`. The same kernel, initramfs and command line as syslinux.cfg.\n\
         title {title}\n\
         linux /{}\n\
         initrd /{}\n\
         options {}\n",
        esp::KERNEL,
        esp::INITRD,
        cmdline.join(" ")
    )
}

/// The command line a boot loader config holds: the `APPEND` or `options` line.
pub fn config_cmdline(config: &str) -> Option<String> {
    config.lines().find_map(|l| {
        let l = l.trim();
        l.strip_prefix("APPEND ").or_else(|| l.strip_prefix("options ")).map(str::to_string)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_loaders_get_the_same_command_line() {
        use oa_contract::cmdline::{disk_root, word, ROOT, SHA256};
        let cl = ["console=ttyS0".to_string(), word(SHA256, "ab"), word(ROOT, disk_root())];
        let s = syslinux_cfg("tiny", &cl);
        let e = loader_entry("tiny", &cl);
        assert_eq!(config_cmdline(&s), config_cmdline(&e));
        assert_eq!(config_cmdline(&s).unwrap(), "console=ttyS0 oa.sha256=ab oa.root=PARTLABEL=oa-root");
        assert!(s.contains("LINUX /vmlinuz") && s.contains("INITRD /initramfs.img") && s.contains("TIMEOUT 0"));
        assert!(e.contains("linux /vmlinuz") && e.contains("initrd /initramfs.img"));
        assert!(loader_conf().contains("default oa.conf"));
    }

    #[test]
    fn grub_gets_the_command_line_word_for_word() {
        use oa_contract::cmdline::{disk_root, word, ROOT};
        let cl = ["console=ttyS0".to_string(), word(ROOT, disk_root()), "x=a b".into(), "q='$".into()];
        let g = grub_cfg("tiny box", &cl);
        assert!(g.contains("menuentry 'tiny box' {"), "{g}");
        let root = word(ROOT, disk_root());
        assert!(g.contains(&format!("  linux /vmlinuz console=ttyS0 {root} 'x=a b' 'q='\\''$'\n")), "{g}");
        assert!(g.contains("  initrd /initramfs.img\n}\n") && g.contains("set timeout=0"), "{g}");
    }

    #[test]
    fn missing_packages_are_named() {
        let root = tempfile::tempdir().unwrap();
        let e = BootFiles::locate_in(root.path(), Arch::X86_64).unwrap_err().to_string();
        assert!(e.contains("gptmbr.bin") && e.contains("apt-get install syslinux"), "{e}");
        std::fs::create_dir_all(root.path().join("usr/lib/SYSLINUX")).unwrap();
        std::fs::write(root.path().join("usr/lib/SYSLINUX/gptmbr.bin"), [0u8; 440]).unwrap();
        std::fs::create_dir_all(root.path().join("usr/bin")).unwrap();
        std::fs::write(root.path().join("usr/bin/syslinux"), b"").unwrap();
        let e = BootFiles::locate_in(root.path(), Arch::X86_64).unwrap_err().to_string();
        assert!(e.contains("systemd-bootx64.efi") && e.contains("apt-get install systemd-boot-efi"), "{e}");
        let e = BootFiles::locate_in(root.path(), Arch::Aarch64).unwrap_err().to_string();
        assert!(e.contains("x86_64 only") && e.contains("disk = false"), "{e}");
    }
}
