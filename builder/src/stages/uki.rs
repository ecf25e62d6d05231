//! Stage `uki` (when `[secure_boot] mode = "uki"`): the signed unified kernel images, one per
//! UEFI medium the profile makes (disk.img, oa.iso), each with that medium's command line inside
//! the signature (builder/src/image/uki.rs assembles and signs). The image and iso stages put
//! them on their ESP as `EFI/BOOT/BOOTX64.EFI`; a netboot profile's (`image.netboot`) goes into
//! the output folder for secure netboot ([`oa_contract::manifest::artifact::SB_UKI`]). With
//! disk.img it also signs systemd-boot for that ESP (its one entry starts the UKI).
//!
//! Nothing half-signed: a UKI is assembled and signed in the stage's scratch folder and only a
//! signed, `sbverify`-checked file is stored; a failure leaves no entry behind.

use crate::build::{need, Context, Stored};
use crate::error::{Error, Result};
use crate::hash::{self, Key};
use crate::image::{self, iso, uki};
use crate::pipeline::Outcome;
use oa_contract::manifest::iso_volume_id;

/// The signed UKIs of a build.
#[derive(Debug, Clone)]
pub struct UkiOut {
    /// For disk.img (the root by partition label).
    pub disk: Option<Stored>,
    /// For oa.iso (the root by volume label).
    pub iso: Option<Stored>,
    /// For secure netboot (`image.netboot`): the root over HTTP from the boot server
    /// ([`oa_contract::cmdline::netboot_root`]), checked by `oa.verity=`.
    pub net: Option<Stored>,
    /// systemd-boot signed with the same key, for the ESPs of disk.img and oa.iso (its entry
    /// starts the UKI).
    pub systemd_boot: Option<Stored>,
}

/// File names in the stage's cache entry.
const DISK: &str = "disk.efi";
const ISO: &str = "iso.efi";
const NET: &str = "net.efi";
const SYSTEMD_BOOT: &str = "systemd-boot.efi";

pub fn run(cx: &mut Context) -> Result<Outcome> {
    let p = cx.profile;
    let k = need(&cx.kernel, "uki", "the kernel")?;
    let initrd = need(&cx.initramfs, "uki", "the initramfs")?;
    let (Some(key_file), Some(cert)) = (&p.secure_boot.key, &p.secure_boot.cert) else {
        return Err(Error::Keys("[secure_boot] mode = \"uki\" needs key and cert (`oa keys init DIR`)".into()));
    };
    // Both were found readable before the first stage (build::load_keys).
    let pkgs = crate::apt::PackageCache::new(&cx.opts.cache_root).refreshing(cx.opts.refresh);
    let stub = uki::Stub::fetch(&pkgs, p.arch)?;
    let manifest_cmdline = cx.manifest_cmdline("uki")?;
    let mut media: Vec<(&str, Vec<String>)> = Vec::new();
    if p.image.disk {
        media.push((DISK, image::disk_cmdline(&manifest_cmdline)));
    }
    if p.image.iso {
        media.push((ISO, iso::iso_cmdline(&manifest_cmdline, &iso_volume_id(&p.name))));
    }
    if p.image.netboot {
        let mut cl = oa_contract::cmdline::Cmdline::from_words(manifest_cmdline.iter().cloned());
        cl.set_root(&oa_contract::cmdline::netboot_root());
        media.push((NET, cl.into_words()));
    }
    let osrel = uki::os_release(&p.name, &p.hostname);
    // The ESPs of disk.img and oa.iso also get the host's systemd-boot (the one unsigned disks
    // boot), signed.
    let systemd_boot = match p.image.disk || p.image.iso {
        true => Some(image::boot::BootFiles::locate(p.arch)?.systemd_boot),
        false => None,
    };
    let mut key = Key::new("uki");
    key.add("kernel", k.vmlinuz_sha256.as_bytes())
        .add("initramfs", initrd.sha256.as_bytes())
        .add("stub", stub.info.sha256.as_bytes())
        .add("stub file", stub.file.as_bytes())
        .add("osrel", osrel.as_bytes())
        .add("key", hash::sha256_file(key_file)?.as_bytes())
        .add("cert", hash::sha256_file(cert)?.as_bytes());
    for (name, cl) in &media {
        key.add(name, cl.join(" ").as_bytes());
    }
    if let Some(sd) = &systemd_boot {
        key.add("systemd-boot", hash::sha256_file(sd)?.as_bytes());
    }
    let key = key.hex();
    // First of all: a key that cannot sign fails the stage before anything is made. A cached
    // entry was made with exactly this key and certificate (their digests are in its key), so
    // the pair was checked then: a warm build does not run openssl again.
    if cx.opts.no_cache || cx.store.lookup("uki", &key).is_none() {
        crate::keys::check_pair(key_file, cert)?;
    }
    let private = crate::stages::initramfs::carries_key(p);
    let (entry, made) = cx.store.get_or_build("uki", &key, cx.opts.no_cache, |scratch| {
        let osrel_file = scratch.join("os-release");
        std::fs::write(&osrel_file, &osrel).map_err(|e| Error::Io {
            action: "writing",
            path: osrel_file.clone(),
            source: e,
        })?;
        let stub_file = stub.extract(scratch.path())?;
        let mut sizes = Vec::new();
        for (name, cl) in &media {
            let cmdline_file = scratch.join(format!("{name}.cmdline"));
            // The stub hands the section to the kernel as it is; a NUL ends it.
            std::fs::write(&cmdline_file, format!("{}\0", cl.join(" "))).map_err(|e| Error::Io {
                action: "writing",
                path: cmdline_file.clone(),
                source: e,
            })?;
            let unsigned = scratch.join(format!("{name}.unsigned"));
            let spec = uki::UkiSpec {
                stub: &stub_file,
                binutils: stub.binutils,
                osrel: &osrel_file,
                cmdline: &cmdline_file,
                kernel: &k.kernel.vmlinuz,
                initrd: &initrd.path,
            };
            uki::assemble(&spec, &unsigned)?;
            let signed = scratch.join(name);
            uki::sign(key_file, cert, &unsigned, &signed)?;
            if private {
                // The initramfs inside holds the persistence key file.
                crate::stages::initramfs::make_private(&signed)?;
            }
            for f in [&unsigned, &cmdline_file] {
                let _ = std::fs::remove_file(f);
            }
            sizes.push(format!(
                "{name} {}",
                image::bmap::human(std::fs::metadata(&signed).map(|m| m.len()).unwrap_or(0))
            ));
            scratch.seal(name)?;
        }
        let _ = std::fs::remove_file(&stub_file);
        if let Some(sd) = &systemd_boot {
            uki::sign(key_file, cert, sd, &scratch.join(SYSTEMD_BOOT))?;
            scratch.seal(SYSTEMD_BOOT)?;
            sizes.push("systemd-boot".into());
        }
        let what = if sizes.is_empty() { String::new() } else { format!(" ({})", sizes.join(", ")) };
        Ok(format!("signed with {}{what}", cert.display()))
    })?;
    let stored = |name: &str| -> Result<Option<Stored>> {
        match media.iter().any(|(n, _)| *n == name) {
            true => Ok(Some(Stored { path: entry.file(name), sha256: entry.digest(name)? })),
            false => Ok(None),
        }
    };
    let systemd_boot = match systemd_boot {
        Some(_) => Some(Stored { path: entry.file(SYSTEMD_BOOT), sha256: entry.digest(SYSTEMD_BOOT)? }),
        None => None,
    };
    cx.uki = Some(UkiOut { disk: stored(DISK)?, iso: stored(ISO)?, net: stored(NET)?, systemd_boot });
    Ok(match made {
        Some(detail) => Outcome::made(detail),
        None => Outcome::cached("unchanged"),
    })
}
