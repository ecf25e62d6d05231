//! The hybrid ISO (`oa.iso`): one file that boots as a CD (BIOS and UEFI El Torito), as a
//! USB stick written with dd (BIOS through the isohybrid MBR, UEFI through the GPT's EFI
//! system partition) and as a BMC's virtual media. Written by `xorriso -as mkisofs`.
//!
//! ```text
//! ISO 9660 (+ Rock Ridge, Joliet), volume id OA_<PROFILE> (oa_contract::manifest::iso_volume_id)
//!   /isolinux/isolinux.bin   El Torito BIOS boot image (Debian's isolinux, boot-info-table)
//!   /isolinux/ldlinux.c32    isolinux's core module (syslinux-common)
//!   /isolinux/isolinux.cfg   LINUX /oa/vmlinuz, INITRD /oa/initrd.img, APPEND <command line>
//!   /isolinux/boot.cat       El Torito boot catalog
//!   /oa/vmlinuz, /oa/initrd.img
//!   /oa/rootfs.squashfs      the root image (oa_contract::media_paths::ROOT_IMAGE)
//! LBA 0          isohybrid MBR (isohdpfx.bin), protective partition marked bootable
//! LBA 1..        GPT: 1 the ISO filesystem (Linux data, from 16 sectors on), 2 the ESP
//! appended       GPT partition 2 = El Torito UEFI boot image: a FAT with systemd-boot as
//!                EFI/BOOT/BOOTX64.EFI, loader/loader.conf, loader/entries/oa.conf, vmlinuz,
//!                initramfs.img (systemd-boot reads only its own volume); with Secure Boot
//!                the same layout as disk.img's ESP ([`boot::UefiLoader`]): the signed UKI
//!                as BOOTX64.EFI and signed systemd-boot beside it, or shim, GRUB (reading
//!                EFI/debian/grub.cfg), the MOK manager, vmlinuz and initramfs.img
//! ```
//!
//! Both boot loaders pass the manifest's command line with `oa.root=LABEL=<volume id>`:
//! oa-init mounts the ISO filesystem by its label and loop-mounts the root image from it.
//! The same inputs and SOURCE_DATE_EPOCH give the same bytes: file dates are the epoch, the
//! volume's modification date (the ISO's UUID, and the seed of the GPT GUIDs xorriso derives
//! from it) the epoch plus an offset derived from the inputs, the FAT serial is
//! derived from the inputs.

use super::boot::{self, esp};
use super::{fat, gpt};
use crate::error::{Error, IoContext, Result};
use oa_contract::cmdline::{Cmdline, RootSpec};
use oa_contract::Arch;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The EFI system partition's GPT type (the appended partition 2).
pub const ESP_TYPE_GUID: &str = "C12A7328-F81F-11D2-BA4B-00A0C93EC93B";
/// "Linux filesystem data": the GPT/MBR type of the ISO filesystem's own partition.
pub const ISO_PART_TYPE_GUID: &str = "0FC63DAF-8483-4772-8E79-3D69D8477DE4";
const INSTALL_XORRISO: &str = "install the Debian package xorriso: apt-get install xorriso (`make deps` does it)";
/// Lines of xorriso's output kept in an error.
const ERROR_TAIL_LINES: usize = 25;

/// Paths inside the ISO filesystem.
pub mod paths {
    pub const ISOLINUX_BIN: &str = "isolinux/isolinux.bin";
    pub const LDLINUX_C32: &str = "isolinux/ldlinux.c32";
    pub const ISOLINUX_CFG: &str = "isolinux/isolinux.cfg";
    pub const BOOT_CATALOG: &str = "isolinux/boot.cat";
    pub const KERNEL: &str = "oa/vmlinuz";
    pub const INITRD: &str = "oa/initrd.img";
    pub const ROOT_IMAGE: &str = oa_contract::media_paths::ROOT_IMAGE;
    /// `mode = "shim"`: booted from a CD, Debian's signed GRUB finds no configuration on the
    /// El Torito image it came from; its built-in one then looks for the volume holding
    /// `/.disk/info` (as on Debian's own CDs) and reads `/boot/grub/grub.cfg` from it.
    pub const DISK_INFO: &str = ".disk/info";
    pub const GRUB_CFG: &str = "boot/grub/grub.cfg";
}

/// Host files the ISO needs, found under a root (`/` in use; a test root in tests).
#[derive(Debug, Clone)]
pub struct IsoFiles {
    /// isolinux's El Torito boot image (package `isolinux`).
    pub isolinux_bin: PathBuf,
    /// isolinux's isohybrid MBR boot code (package `isolinux`).
    pub isohdpfx: PathBuf,
    /// The core module isolinux loads from its own folder (package `syslinux-common`).
    pub ldlinux_c32: PathBuf,
    /// systemd-boot for x86-64 UEFI (package `systemd-boot-efi`).
    pub systemd_boot: PathBuf,
}

impl IsoFiles {
    pub fn locate(arch: Arch) -> Result<IsoFiles> {
        Self::locate_in(Path::new("/"), arch)
    }

    /// Find the files under `root`; a missing one is a [`Error::ToolMissing`] naming the
    /// Debian package to install.
    pub fn locate_in(root: &Path, arch: Arch) -> Result<IsoFiles> {
        if arch != Arch::X86_64 {
            return Err(Error::Iso(format!(
                "the hybrid ISO (oa.iso) is made for x86_64 only (isolinux and the x86-64 systemd-boot); the profile's arch is {arch}: set [image] iso = false"
            )));
        }
        let find =
            |candidates: &[&str], package: &str, what: &str| boot::find_host_file(root, candidates, package, what);
        Ok(IsoFiles {
            isolinux_bin: find(
                &["usr/lib/ISOLINUX/isolinux.bin", "usr/share/syslinux/isolinux.bin"],
                "isolinux",
                "isolinux.bin (isolinux's El Torito boot image)",
            )?,
            isohdpfx: find(
                &["usr/lib/ISOLINUX/isohdpfx.bin", "usr/share/syslinux/isohdpfx.bin"],
                "isolinux",
                "isohdpfx.bin (isolinux's isohybrid MBR)",
            )?,
            ldlinux_c32: find(
                &["usr/lib/syslinux/modules/bios/ldlinux.c32", "usr/share/syslinux/ldlinux.c32"],
                "syslinux-common",
                "ldlinux.c32 (isolinux's core module)",
            )?,
            systemd_boot: find(
                &["usr/lib/systemd/boot/efi/systemd-bootx64.efi"],
                "systemd-boot-efi",
                "systemd-bootx64.efi (systemd-boot)",
            )?,
        })
    }

    /// Every file, for the stage's cache key.
    pub fn all(&self) -> [&Path; 4] {
        [&self.isolinux_bin, &self.isohdpfx, &self.ldlinux_c32, &self.systemd_boot]
    }
}

/// What goes into the ISO.
#[derive(Debug, Clone)]
pub struct IsoSpec<'a> {
    /// Shown in the boot menus (the profile name).
    pub title: &'a str,
    /// ISO 9660 volume id ([`oa_contract::manifest::iso_volume_id`]).
    pub volume_id: &'a str,
    pub kernel: &'a Path,
    pub initrd: &'a Path,
    pub rootfs: &'a Path,
    /// The whole kernel command line both boot loaders pass (see [`iso_cmdline`]).
    pub cmdline: &'a [String],
    /// Bytes the FAT serial is derived from (the inputs' digests).
    pub seed: &'a [u8],
    /// Seconds since 1970 for every date in the ISO and the FAT (SOURCE_DATE_EPOCH).
    pub epoch: u64,
    /// What UEFI boots from the ESP: systemd-boot, the signed UKI (built for the ISO's
    /// command line) with signed systemd-boot, or shim with GRUB.
    pub uefi: boot::UefiLoader<'a>,
}

/// A written ISO.
#[derive(Debug, Clone)]
pub struct Iso {
    pub size: u64,
    /// Size of the embedded EFI system partition image.
    pub esp_bytes: u64,
}

/// The boot loaders' command line: the manifest's (with `oa.sha256=`) plus where the root
/// image is, `oa.root=LABEL=<volume id>`.
pub fn iso_cmdline(manifest_cmdline: &[String], volume_id: &str) -> Vec<String> {
    let mut cl = Cmdline::from_words(manifest_cmdline.iter().cloned());
    cl.set_root(&RootSpec::Label(volume_id.to_string()));
    cl.into_words()
}

/// `isolinux/isolinux.cfg`: boot the one entry at once, console on the first serial port too.
pub fn isolinux_cfg(title: &str, cmdline: &[String]) -> String {
    format!(
        "# Written by `oa build`. BIOS boot of oa.iso (isolinux); UEFI boots the same kernel with systemd-boot.\n\
         SERIAL 0 115200\n\
         DEFAULT oa\n\
         PROMPT 0\n\
         TIMEOUT 0\n\
         LABEL oa\n\
         \x20 MENU LABEL {title}\n\
         \x20 LINUX /{}\n\
         \x20 INITRD /{}\n\
         \x20 APPEND {}\n",
        paths::KERNEL,
        paths::INITRD,
        cmdline.join(" ")
    )
}

/// Seconds (less than a year) added to the epoch for the volume's modification date, from
/// `seed`: the ISO's UUID then follows the content, like disk.img's GUIDs.
pub fn volume_offset(seed: &[u8]) -> u64 {
    use sha2::{Digest, Sha256};
    let h = Sha256::digest(seed);
    u64::from(u32::from_le_bytes([h[0], h[1], h[2], h[3]])) % (365 * 86_400)
}

/// `epoch` as xorriso's 16-digit GMT time string `YYYYMMDDhhmmsscc`.
pub fn xorriso_date(epoch: u64) -> String {
    let (days, secs) = ((epoch / 86_400) as i64, epoch % 86_400);
    // Howard Hinnant's days-to-civil.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}{m:02}{d:02}{:02}{:02}{:02}00", secs / 3600, secs / 60 % 60, secs % 60)
}

/// A path for a `-graft-points` pathspec: `=` and `\` escaped.
fn graft_escape(p: &Path) -> String {
    p.display().to_string().replace('\\', "\\\\").replace('=', "\\=")
}

/// The inputs of one xorriso run: the generated files and where the ISO goes.
#[derive(Debug, Clone)]
pub struct XorrisoInputs<'a> {
    pub isolinux_cfg: &'a Path,
    /// `mode = "shim"`: [`paths::DISK_INFO`] and [`paths::GRUB_CFG`] for GRUB booted from a CD.
    pub grub_cd: Option<(&'a Path, &'a Path)>,
    pub efiboot: &'a Path,
    pub out: &'a Path,
}

/// The argument list of `xorriso` for `spec` (after the program name).
pub fn xorriso_args(spec: &IsoSpec<'_>, files: &IsoFiles, io: &XorrisoInputs<'_>) -> Vec<OsString> {
    let date = xorriso_date(spec.epoch);
    let mut a: Vec<OsString> = Vec::new();
    let mut push = |s: &[&str]| a.extend(s.iter().map(OsString::from));
    push(&["-no_rc", "-as", "mkisofs"]);
    // ISO 9660 level 3 (files over 4 GiB), Rock Ridge with root ownership, Joliet.
    push(&["-iso-level", "3", "-full-iso9660-filenames", "-rational-rock", "-joliet", "-joliet-long"]);
    push(&["-volid", spec.volume_id, "-appid", "oa", "-publisher", "oa", "-preparer", "oa build"]);
    // Every file's mtime/atime/ctime is the epoch. The volume's modification date is what
    // blkid (and oa.root=UUID=) reads as the ISO's UUID, and it seeds the GPT GUIDs: the epoch
    // plus up to a year derived from the inputs, so builds of other content do not share one.
    let modification = format!("--modification-date={}", xorriso_date(spec.epoch + volume_offset(spec.seed)));
    push(&[&modification, "--set_all_file_dates", &date]);
    // BIOS from a stick: isolinux's isohybrid MBR; the ISO partition starts 16 sectors in.
    let mbr = files.isohdpfx.display().to_string();
    push(&["-isohybrid-mbr", &mbr, "--mbr-force-bootable", "-partition_offset", "16"]);
    push(&["-iso_mbr_part_type", ISO_PART_TYPE_GUID]);
    // BIOS El Torito: isolinux, patched with the boot info table.
    push(&["-eltorito-boot", paths::ISOLINUX_BIN, "-eltorito-catalog", paths::BOOT_CATALOG]);
    push(&["-no-emul-boot", "-boot-load-size", "4", "-boot-info-table"]);
    // UEFI: the ESP appended as GPT partition 2, also the El Torito UEFI boot image.
    let esp_img = io.efiboot.display().to_string();
    push(&["-append_partition", "2", ESP_TYPE_GUID, &esp_img, "-appended_part_as_gpt"]);
    push(&["-eltorito-alt-boot", "-e", "--interval:appended_partition_2:all::", "-no-emul-boot"]);
    push(&["-graft-points", "-output"]);
    a.push(io.out.as_os_str().to_os_string());
    for (dst, src) in [
        (paths::ISOLINUX_BIN, files.isolinux_bin.as_path()),
        (paths::LDLINUX_C32, files.ldlinux_c32.as_path()),
        (paths::ISOLINUX_CFG, io.isolinux_cfg),
        (paths::KERNEL, spec.kernel),
        (paths::INITRD, spec.initrd),
        (paths::ROOT_IMAGE, spec.rootfs),
    ] {
        a.push(format!("/{dst}={}", graft_escape(src)).into());
    }
    if let Some((info, cfg)) = io.grub_cd {
        a.push(format!("/{}={}", paths::DISK_INFO, graft_escape(info)).into());
        a.push(format!("/{}={}", paths::GRUB_CFG, graft_escape(cfg)).into());
    }
    a
}

/// Write `out` for `spec`: created, or truncated keeping its mode (so a file created 0600
/// first stays private); `work` is a folder for the generated files (the ESP image,
/// isolinux.cfg), removed again.
pub fn write_iso(spec: &IsoSpec<'_>, files: &IsoFiles, out: &Path, work: &Path) -> Result<Iso> {
    let tmp =
        tempfile::Builder::new().prefix(".oa-iso-").tempdir_in(work).ctx("creating a temporary folder in", work)?;
    let cfg = tmp.path().join("isolinux.cfg");
    std::fs::write(&cfg, isolinux_cfg(spec.title, spec.cmdline)).ctx("writing", &cfg)?;
    let efiboot = tmp.path().join("efiboot.img");
    let esp_bytes = write_esp_image(spec, files, &efiboot, tmp.path())?;
    let (info, grub_cfg) = (tmp.path().join("disk-info"), tmp.path().join("grub.cfg"));
    let grub_cd = match spec.uefi {
        boot::UefiLoader::Shim { .. } => {
            std::fs::write(&info, format!("oa {} ({})\n", spec.title, spec.volume_id)).ctx("writing", &info)?;
            let text = boot::grub_cfg_for(spec.title, spec.cmdline, paths::KERNEL, paths::INITRD);
            std::fs::write(&grub_cfg, text).ctx("writing", &grub_cfg)?;
            Some((info.as_path(), grub_cfg.as_path()))
        }
        _ => None,
    };
    let args = xorriso_args(spec, files, &XorrisoInputs { isolinux_cfg: &cfg, grub_cd, efiboot: &efiboot, out });
    run_xorriso(&args, spec.epoch)?;
    let size = std::fs::metadata(out).ctx("reading size of", out)?.len();
    Ok(Iso { size, esp_bytes })
}

/// The ESP image: FAT with the UEFI boot loader ([`IsoSpec::uefi`]), its configuration, and
/// the kernel and initramfs where the loader reads them (a signed UKI carries its own).
fn write_esp_image(spec: &IsoSpec<'_>, files: &IsoFiles, img: &Path, tmp: &Path) -> Result<u64> {
    let len = |p: &Path| -> Result<u64> { Ok(std::fs::metadata(p).ctx("reading size of", p)?.len()) };
    let uefi = spec.uefi.files(&files.systemd_boot, spec.title, spec.cmdline);
    let mut sizes = vec![4096; uefi.texts.len()];
    for (f, _) in &uefi.efi {
        sizes.push(len(f)?);
    }
    if uefi.needs_kernel {
        sizes.extend([len(spec.kernel)?, len(spec.initrd)?]);
    }
    let mib = super::esp_mib_for(&sizes) as u64;
    let bytes = mib << 20;
    let f = std::fs::File::create(img).ctx("creating", img)?;
    f.set_len(bytes).ctx("sizing", img)?;
    drop(f);
    let g = gpt::derived_guid(spec.seed, "iso-esp-serial").to_gpt_bytes();
    let serial = u32::from_le_bytes([g[0], g[1], g[2], g[3]]);
    let fat = fat::Fat::new(img, 0, spec.epoch);
    fat.format(bytes / 512, 0, "OA-ESP", serial)?;
    fat.mkdirs(esp::DIRS)?;
    fat.mkdirs(uefi.dirs)?;
    for (i, (dst, text)) in uefi.texts.iter().enumerate() {
        let t = tmp.join(format!("esp-{i}.conf"));
        std::fs::write(&t, text).ctx("writing", &t)?;
        fat.copy(&t, dst)?;
    }
    if uefi.needs_kernel {
        fat.copy(spec.kernel, esp::KERNEL)?;
        fat.copy(spec.initrd, esp::INITRD)?;
    }
    for (src, dst) in uefi.efi {
        fat.copy(src, dst)?;
    }
    Ok(bytes)
}

/// Run xorriso with a fixed environment (SOURCE_DATE_EPOCH, UTC); a failure carries the
/// command and the tail of its output.
fn run_xorriso(args: &[OsString], epoch: u64) -> Result<()> {
    let mut c = Command::new("xorriso");
    c.args(args).env("SOURCE_DATE_EPOCH", epoch.to_string()).env("TZ", "UTC");
    let out = c.output().map_err(|e| Error::ToolMissing {
        tool: "xorriso".into(),
        why: e.to_string(),
        hint: INSTALL_XORRISO.into(),
    })?;
    if !out.status.success() {
        let mut text = String::from_utf8_lossy(&out.stdout).to_string();
        text.push_str(&String::from_utf8_lossy(&out.stderr));
        let lines: Vec<&str> = text.trim().lines().collect();
        let tail = lines[lines.len().saturating_sub(ERROR_TAIL_LINES)..].join("\n");
        let shown: Vec<String> = args.iter().map(|a| a.to_string_lossy().into_owned()).collect();
        return Err(Error::ToolFailed {
            command: format!("xorriso {}", shown.join(" ")),
            status: out.status.to_string(),
            output: tail,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use oa_contract::cmdline::{word, ROOT, SHA256};

    fn files() -> IsoFiles {
        IsoFiles {
            isolinux_bin: "/l/isolinux.bin".into(),
            isohdpfx: "/l/isohdpfx.bin".into(),
            ldlinux_c32: "/m/ldlinux.c32".into(),
            systemd_boot: "/s/systemd-bootx64.efi".into(),
        }
    }

    #[test]
    fn the_command_line_names_the_volume() {
        let cl = ["console=ttyS0".to_string(), word(SHA256, "ab"), word(ROOT, "/dev/vda")];
        let v = oa_contract::manifest::iso_volume_id("tiny-iso");
        assert_eq!(v, "OA_TINY_ISO");
        assert_eq!(iso_cmdline(&cl, &v).join(" "), "console=ttyS0 oa.sha256=ab oa.root=LABEL=OA_TINY_ISO");
        let cfg = isolinux_cfg("tiny-iso", &iso_cmdline(&cl, &v));
        assert_eq!(
            boot::config_cmdline(&cfg).unwrap(),
            "console=ttyS0 oa.sha256=ab oa.root=LABEL=OA_TINY_ISO",
            "{cfg}"
        );
        assert!(cfg.contains("LINUX /oa/vmlinuz") && cfg.contains("INITRD /oa/initrd.img"), "{cfg}");
        assert!(cfg.contains("TIMEOUT 0") && cfg.contains("SERIAL 0 115200"), "{cfg}");
    }

    #[test]
    fn dates_are_gmt_strings() {
        assert_eq!(xorriso_date(0), "1970010100000000");
        assert_eq!(xorriso_date(1_700_000_000), "2023111422132000");
        assert_eq!(xorriso_date(951_782_400), "2000022900000000");
        assert_eq!(xorriso_date(315_532_800), "1980010100000000");
    }

    #[test]
    fn xorriso_arguments() {
        let cl = vec!["console=ttyS0".to_string()];
        let spec = IsoSpec {
            title: "t",
            volume_id: "OA_T",
            kernel: Path::new("/c/vmlinuz"),
            initrd: Path::new("/c/initramfs.img"),
            rootfs: Path::new("/c/a=b/rootfs.squashfs"),
            cmdline: &cl,
            seed: b"s",
            epoch: 1_700_000_000,
            uefi: boot::UefiLoader::SystemdBoot,
        };
        let io = XorrisoInputs {
            isolinux_cfg: Path::new("/w/isolinux.cfg"),
            grub_cd: None,
            efiboot: Path::new("/w/efiboot.img"),
            out: Path::new("/o/oa.iso"),
        };
        let a: Vec<String> =
            xorriso_args(&spec, &files(), &io).iter().map(|s| s.to_string_lossy().into_owned()).collect();
        let s = a.join(" ");
        assert!(s.starts_with("-no_rc -as mkisofs "), "{s}");
        assert!(s.contains("-volid OA_T "), "{s}");
        let modified = xorriso_date(1_700_000_000 + volume_offset(b"s"));
        assert_ne!(modified, xorriso_date(1_700_000_000), "the volume date follows the seed");
        assert_ne!(volume_offset(b"s"), volume_offset(b"t"));
        assert!(s.contains(&format!("--modification-date={modified} --set_all_file_dates 2023111422132000")), "{s}");
        assert!(s.contains("-isohybrid-mbr /l/isohdpfx.bin --mbr-force-bootable -partition_offset 16"), "{s}");
        assert!(s.contains(
            "-eltorito-boot isolinux/isolinux.bin -eltorito-catalog isolinux/boot.cat -no-emul-boot -boot-load-size 4 -boot-info-table"
        ), "{s}");
        assert!(
            s.contains("-append_partition 2 C12A7328-F81F-11D2-BA4B-00A0C93EC93B /w/efiboot.img -appended_part_as_gpt"),
            "{s}"
        );
        assert!(s.contains("-eltorito-alt-boot -e --interval:appended_partition_2:all:: -no-emul-boot"), "{s}");
        assert!(s.contains("-output /o/oa.iso "), "{s}");
        // The El Torito BIOS image is named before the UEFI one (catalog order: BIOS first).
        assert!(s.find("-eltorito-boot").unwrap() < s.find("-eltorito-alt-boot").unwrap());
        let grafts: Vec<&String> = a.iter().filter(|x| x.starts_with('/') && x.contains('=')).collect();
        assert_eq!(
            grafts,
            [
                "/isolinux/isolinux.bin=/l/isolinux.bin",
                "/isolinux/ldlinux.c32=/m/ldlinux.c32",
                "/isolinux/isolinux.cfg=/w/isolinux.cfg",
                "/oa/vmlinuz=/c/vmlinuz",
                "/oa/initrd.img=/c/initramfs.img",
                "/oa/rootfs.squashfs=/c/a\\=b/rootfs.squashfs",
            ]
        );
        // Shim's GRUB booted from a CD reads its configuration from the ISO filesystem.
        let shim_io = XorrisoInputs { grub_cd: Some((Path::new("/w/info"), Path::new("/w/grub.cfg"))), ..io };
        let a: Vec<String> =
            xorriso_args(&spec, &files(), &shim_io).iter().map(|s| s.to_string_lossy().into_owned()).collect();
        assert!(
            a.ends_with(&["/.disk/info=/w/info".to_string(), "/boot/grub/grub.cfg=/w/grub.cfg".to_string()]),
            "{a:?}"
        );
    }

    #[test]
    fn missing_packages_are_named() {
        let root = tempfile::tempdir().unwrap();
        let e = IsoFiles::locate_in(root.path(), Arch::X86_64).unwrap_err().to_string();
        assert!(e.contains("isolinux.bin") && e.contains("apt-get install isolinux"), "{e}");
        std::fs::create_dir_all(root.path().join("usr/lib/ISOLINUX")).unwrap();
        for f in ["isolinux.bin", "isohdpfx.bin"] {
            std::fs::write(root.path().join("usr/lib/ISOLINUX").join(f), b"x").unwrap();
        }
        let e = IsoFiles::locate_in(root.path(), Arch::X86_64).unwrap_err().to_string();
        assert!(e.contains("ldlinux.c32") && e.contains("apt-get install syslinux-common"), "{e}");
        let e = IsoFiles::locate_in(root.path(), Arch::Aarch64).unwrap_err().to_string();
        assert!(e.contains("x86_64 only") && e.contains("iso = false"), "{e}");
    }
}
