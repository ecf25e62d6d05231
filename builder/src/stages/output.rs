//! Stage `output`: the artifacts copied into a folder beside the output folder with
//! `manifest.json`, then swapped into place at once, so a failed build never leaves a folder
//! that looks finished.

use crate::build::{need, Context};
use crate::error::{Error, IoContext, Result};
use crate::hash;
use crate::pipeline::Outcome;
use oa_contract::manifest::{self, artifact, Artifact, Manifest};
use std::path::{Path, PathBuf};

/// The build's package list ([`artifact::PACKAGES`]): the base tree's, the unpacked .debs,
/// the kernel package and busybox-static, `name version arch` sorted without duplicates.
fn package_list(cx: &Context) -> Result<String> {
    let mut lines = std::collections::BTreeSet::new();
    if let Some(t) = cx.base.as_ref().and_then(|b| b.tree()) {
        let text = std::fs::read_to_string(&t.packages).ctx("reading", &t.packages)?;
        lines.extend(text.lines().filter(|l| !l.trim().is_empty()).map(str::to_string));
    }
    let pk = need(&cx.packages, "output", "the packages")?;
    let mut infos: Vec<&crate::apt::PackageInfo> = pk.debs.iter().map(|(_, i)| i).collect();
    if let crate::stages::packages::KernelSource::Deb { info, .. } = &pk.kernel {
        infos.push(info);
    }
    infos.extend(pk.busybox.as_ref().map(|(_, i)| i));
    lines.extend(infos.iter().map(|i| format!("{} {} {}", i.name, i.version, i.arch)));
    Ok(lines.into_iter().map(|l| l + "\n").collect())
}

/// A folder being assembled: removed on drop unless it was moved into place.
struct Partial(PathBuf);

impl Drop for Partial {
    fn drop(&mut self) {
        if !self.0.as_os_str().is_empty() {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

/// GRUB's configuration for secure netboot: chain-load the signed UKI from the server GRUB
/// came from (`$root` is `tftp,SERVER`). GRUB checks it through shim (db, MOK, or shim's
/// built-in certificate); the UKI's stub then ignores any command line but its own signed one.
/// Nothing here needs trust: a changed file can only stop the boot.
pub fn grub_cfg(profile: &str) -> String {
    format!(
        "# oa: secure netboot of {profile}: shim -> GRUB -> the signed UKI (its command line is inside its signature)\n\
         set timeout=0\n\
         menuentry \"oa {profile} (signed UKI)\" {{\n\
         \techo \"oa: loading /{uki} from $root\"\n\
         \tchainloader /{uki}\n\
         \tboot\n\
         }}\n",
        uki = artifact::SB_UKI
    )
}

pub fn run(cx: &mut Context) -> Result<Outcome> {
    let p = cx.profile;
    let out = &cx.out;
    let k = need(&cx.kernel, "output", "the kernel")?;
    let initrd = need(&cx.initramfs, "output", "the initramfs")?;
    let rootfs = need(&cx.rootfs, "output", "the root image")?;
    let parent = out.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    std::fs::create_dir_all(parent).ctx("creating output folder", parent)?;
    let name = out.file_name().map(|s| s.to_string_lossy().to_string()).unwrap_or_else(|| p.name.clone());
    let mut partial = Partial(parent.join(format!(".{name}.partial-{}", std::process::id())));
    let _ = std::fs::remove_dir_all(&partial.0);
    std::fs::create_dir_all(&partial.0).ctx("creating", &partial.0)?;
    if crate::stages::initramfs::carries_key(p) {
        // Nobody else may look in while the secret artifacts are copied and restricted.
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&partial.0, std::fs::Permissions::from_mode(0o700))
            .ctx("setting mode of", &partial.0)?;
    }
    let dir = partial.0.clone();

    let mut artifacts = Vec::new();
    let mut copy = |aname: &str, src: &Path, digest: String, sparse: bool| -> Result<()> {
        let dst = dir.join(aname);
        let size = if sparse {
            // Disk images keep their holes (the blank parts take no space).
            crate::image::copy_sparse(src, &dst)?;
            std::fs::metadata(src).ctx("reading", src)?.len()
        } else {
            std::fs::copy(src, &dst).ctx("copying artifact to", &dst)?
        };
        artifacts.push(Artifact { name: aname.into(), path: aname.into(), size, sha256: digest });
        Ok(())
    };
    copy(artifact::KERNEL, &k.kernel.vmlinuz, k.vmlinuz_sha256.clone(), false)?;
    copy(artifact::INITRAMFS, &initrd.path, initrd.sha256.clone(), false)?;
    copy(artifact::ROOTFS, &rootfs.path, rootfs.sha256.clone(), false)?;
    if let Some(d) = &cx.disk {
        copy(artifact::DISK_IMAGE, &d.img, d.img_sha256.clone(), true)?;
        copy(artifact::DISK_BMAP, &d.bmap, hash::sha256_file(&d.bmap)?, false)?;
        if let Some((q, sha)) = &d.qcow2 {
            copy(artifact::DISK_QCOW2, q, sha.clone(), false)?;
        }
    }
    if let Some(i) = &cx.iso {
        copy(artifact::ISO, &i.path, i.sha256.clone(), false)?;
    }
    // Secure netboot: shim -> GRUB -> the signed UKI, all from the TFTP server.
    if let (true, Some(s), Some(u)) =
        (crate::pipeline::secure_netboot(p), &cx.shim, cx.uki.as_ref().and_then(|u| u.net.as_ref()))
    {
        let sb = artifact::SecureNetboot::of(p.arch);
        for sub in [sb.shim, artifact::SB_GRUB_CFG] {
            if let Some(d) = Path::new(sub).parent() {
                let d = dir.join(d);
                std::fs::create_dir_all(&d).ctx("creating", &d)?;
            }
        }
        copy(sb.shim, &s.shim.path, s.shim.sha256.clone(), false)?;
        copy(sb.grub, &s.grub_net.path, s.grub_net.sha256.clone(), false)?;
        copy(sb.mok_manager, &s.mok_manager.path, s.mok_manager.sha256.clone(), false)?;
        copy(artifact::SB_UKI, &u.path, u.sha256.clone(), false)?;
        let cfg = grub_cfg(&p.name);
        // Written beside, then copied in like every artifact (and listed with its digest).
        let src = dir.join(".grub.cfg");
        std::fs::write(&src, &cfg).ctx("writing", &src)?;
        copy(artifact::SB_GRUB_CFG, &src, hash::sha256_hex(cfg.as_bytes()), false)?;
        std::fs::remove_file(&src).ctx("removing", &src)?;
    }
    if let Some(r) = &cx.rpi {
        r.copy_into(&dir, &mut artifacts)?;
    }
    {
        let list = package_list(cx)?;
        let dst = dir.join(artifact::PACKAGES);
        std::fs::write(&dst, &list).ctx("writing", &dst)?;
        artifacts.push(Artifact {
            name: artifact::PACKAGES.into(),
            path: artifact::PACKAGES.into(),
            size: list.len() as u64,
            sha256: hash::sha256_hex(list.as_bytes()),
        });
    }
    // With a key file in the initramfs, it and every image holding it are secret: 0600, and
    // listed so that `oa serve` refuses to publish them unless told.
    let key_material: Vec<String> = if crate::stages::initramfs::carries_key(p) {
        let holds_initramfs =
            [artifact::INITRAMFS, artifact::DISK_IMAGE, artifact::DISK_QCOW2, artifact::ISO, artifact::RPI_IMAGE];
        artifacts.iter().filter(|a| holds_initramfs.contains(&a.name.as_str())).map(|a| a.name.clone()).collect()
    } else {
        vec![]
    };
    for name in &key_material {
        use std::os::unix::fs::PermissionsExt;
        let f = dir.join(name);
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o600)).ctx("setting mode of", &f)?;
    }
    if key_material.iter().any(|n| n == artifact::RPI_IMAGE) {
        // The Pi boot tree holds the initramfs too: its folder is for the owner only.
        use std::os::unix::fs::PermissionsExt;
        let tree = dir.join(artifact::RPI_TREE);
        std::fs::set_permissions(&tree, std::fs::Permissions::from_mode(0o700)).ctx("setting mode of", &tree)?;
    }
    let m = Manifest {
        schema: manifest::SCHEMA_VERSION,
        profile: p.name.clone(),
        arch: p.arch,
        kernel_release: k.kernel.release.clone(),
        cmdline: cx.manifest_cmdline("output")?,
        artifacts,
        builder: format!("oa {}", env!("CARGO_PKG_VERSION")),
        key_material,
    };
    let json = serde_json::to_vec_pretty(&m)
        .map_err(|e| Error::Output { path: dir.clone(), reason: format!("encoding the manifest: {e}") })?;
    // Signed in the partial folder: the output appears with its signature or not at all.
    // `[secure_boot] sign_key`, loaded before the first stage.
    let signed = match &cx.sign_key {
        Some(k) => {
            let comment = oa_contract::signature::trusted_comment_now(manifest::FILE_NAME, None);
            let sig = k.sign(&json, &comment).map_err(|e| Error::Keys(format!("[secure_boot] sign_key: {e}")))?;
            let f = dir.join(format!("{}{}", manifest::FILE_NAME, oa_contract::signature::SUFFIX));
            std::fs::write(&f, sig).ctx("writing", &f)?;
            format!(", manifest signed by {}", k.id())
        }
        None => String::new(),
    };
    std::fs::write(dir.join(manifest::FILE_NAME), json).ctx("writing manifest in", &dir)?;
    // Swap the finished folder into place.
    let old = parent.join(format!(".{name}.old-{}", std::process::id()));
    if out.exists() {
        std::fs::rename(out, &old).ctx("moving previous output aside", out)?;
    }
    std::fs::rename(&dir, out).ctx("moving finished output into place", out)?;
    partial.0 = PathBuf::new();
    let _ = std::fs::remove_dir_all(&old);
    let total: u64 = m.artifacts.iter().map(|a| a.size).sum();
    let detail = format!("{} ({} KiB){signed}", out.display(), total / 1024);
    cx.manifest = Some(m);
    Ok(Outcome::made(detail))
}
