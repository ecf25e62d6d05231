//! `oa.iso` from a real build of profiles/tiny-iso.toml, checked from outside: two builds into
//! two fresh caches with the same SOURCE_DATE_EPOCH give the same bytes; xorriso reports a BIOS
//! and a UEFI El Torito boot image; the first sectors are an isohybrid MBR and a GPT whose
//! partition 2 is the ESP (oa_disk reads them); the root image on the ISO is the output's
//! rootfs.squashfs byte for byte; isolinux.cfg and the systemd-boot entry (read with mtools
//! from the ESP partition) boot with `oa.root=LABEL=OA_TINY_ISO`. No QEMU here: the boot tests
//! are in qemu-tests.

use oa_builder::build::default_cache_root;
use oa_contract::cmdline::{word, RootSpec, ROOT, SHA256};
use oa_contract::manifest::{artifact, iso_volume_id, Manifest};
use oa_disk::signature::{detect, Signature};
use std::path::{Path, PathBuf};
use std::process::Command;

const EPOCH: &str = "1700000000";

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

fn tool(cmd: &str, args: &[&str]) -> String {
    let o = Command::new(cmd).args(args).output().unwrap_or_else(|e| panic!("{cmd}: {e} (run `make deps`)"));
    assert!(o.status.success(), "{cmd} {args:?}: {}", String::from_utf8_lossy(&o.stderr));
    let mut s = String::from_utf8_lossy(&o.stdout).to_string();
    s.push_str(&String::from_utf8_lossy(&o.stderr));
    s
}

/// A fresh cache under `dir` sharing the downloaded packages and kernels with the user's cache.
fn cache(dir: &Path, name: &str) -> PathBuf {
    let cache = dir.join(name);
    std::fs::create_dir_all(&cache).unwrap();
    let shared = default_cache_root();
    for sub in ["debs", "kernels"] {
        std::fs::create_dir_all(shared.join(sub)).unwrap();
        std::os::unix::fs::symlink(shared.join(sub), cache.join(sub)).unwrap();
    }
    cache
}

/// `oa build profiles/tiny-iso.toml` into `out` with its own cache, SOURCE_DATE_EPOCH set.
fn build(dir: &Path, name: &str) -> PathBuf {
    let out = dir.join(format!("out-{name}"));
    let cache = cache(dir, &format!("cache-{name}"));
    let profile = workspace().join("profiles/tiny-iso.toml");
    let o = Command::new(env!("CARGO_BIN_EXE_oa"))
        .args(["build", profile.to_str().unwrap(), "--out", out.to_str().unwrap()])
        .args(["--cache", cache.to_str().unwrap()])
        .env("SOURCE_DATE_EPOCH", EPOCH)
        .current_dir(dir)
        .output()
        .expect("running oa");
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "oa build tiny-iso: {err}");
    assert!(err.contains("==> [6/7] iso") && err.contains("volume OA_TINY_ISO"), "the iso stage ran: {err}");
    out
}

#[test]
fn tiny_iso_is_reproducible_hybrid_and_carries_the_root_image() {
    let d = tempfile::tempdir().unwrap();
    let a = build(d.path(), "a");
    let b = build(d.path(), "b");
    let iso = a.join(artifact::ISO);
    let bytes = std::fs::read(&iso).unwrap();
    assert_eq!(bytes, std::fs::read(b.join(artifact::ISO)).unwrap(), "two builds, the same oa.iso");

    // The manifest lists it with its digest and size.
    let m: Manifest = serde_json::from_slice(&std::fs::read(a.join("manifest.json")).unwrap()).unwrap();
    let listed = m.artifact(artifact::ISO).expect("the ISO in manifest.json");
    assert_eq!(listed.size, bytes.len() as u64);
    assert_eq!(listed.sha256, oa_builder::hash::sha256_file(&iso).unwrap());

    // El Torito: a BIOS and a UEFI boot image.
    let p = iso.to_str().unwrap();
    let report = tool("xorriso", &["-indev", p, "-report_el_torito", "plain"]);
    let imgs: Vec<&str> = report.lines().filter(|l| l.starts_with("El Torito boot img :")).collect();
    assert_eq!(imgs.len(), 2, "{report}");
    assert!(imgs[0].contains("BIOS") && imgs[1].contains("UEFI"), "{report}");
    assert!(report.contains("/isolinux/isolinux.bin"), "{report}");

    // Hybrid: isolinux's isohybrid MBR code, a GPT, and the ISO filesystem.
    let mbr = std::fs::read("/usr/lib/ISOLINUX/isohdpfx.bin").expect("isohdpfx.bin (make deps)");
    assert_eq!(&bytes[..432], &mbr[..432], "the boot code is isohdpfx.bin's");
    assert_eq!(&bytes[510..512], &[0x55, 0xaa]);
    let sigs = detect(&bytes[..64 * 1024], &bytes[bytes.len() - 64 * 1024..]);
    assert!(sigs.contains(&Signature::Gpt) && sigs.contains(&Signature::Iso9660), "{sigs:?}");
    let (_, parts) =
        oa_disk::gpt::parse_image(&bytes, oa_disk::units::SectorSize::B512).unwrap().expect("a GPT in oa.iso");
    let esp = parts.iter().find(|q| q.number == 2).expect("partition 2");
    assert_eq!(esp.type_guid, oa_disk::guid::Guid::ESP, "{parts:?}");
    assert!(esp.last_lba.0 * 512 < bytes.len() as u64);
    let blkid = tool("blkid", &["-p", "-o", "export", p]);
    assert!(blkid.contains("LABEL=OA_TINY_ISO") && blkid.contains("TYPE=iso9660"), "{blkid}");

    // The root image on the ISO is the output's rootfs.squashfs.
    let x = d.path().join("x");
    std::fs::create_dir(&x).unwrap();
    for (src, dst) in [("/oa/rootfs.squashfs", "rootfs.squashfs"), ("/isolinux/isolinux.cfg", "isolinux.cfg")] {
        let to = x.join(dst);
        tool("xorriso", &["-osirrox", "on", "-indev", p, "-extract", src, to.to_str().unwrap()]);
    }
    assert_eq!(
        std::fs::read(x.join("rootfs.squashfs")).unwrap(),
        std::fs::read(a.join(artifact::ROOTFS)).unwrap(),
        "{} is the root image",
        oa_contract::media_paths::ROOT_IMAGE
    );

    // Both boot loaders: the manifest's command line with the root by the ISO's label.
    let root = word(ROOT, RootSpec::Label(iso_volume_id("tiny-iso")));
    assert_eq!(root, format!("{ROOT}=LABEL=OA_TINY_ISO"));
    let sha = m.cmdline.iter().find(|w| w.starts_with(&format!("{SHA256}="))).expect("the root digest in the manifest");
    let cfg = std::fs::read_to_string(x.join("isolinux.cfg")).unwrap();
    let append = oa_builder::image::boot::config_cmdline(&cfg).expect("APPEND line");
    let words: Vec<&str> = append.split_whitespace().collect();
    assert!(words.contains(&root.as_str()) && words.contains(&sha.as_str()), "{cfg}");
    assert!(cfg.contains("LINUX /oa/vmlinuz") && cfg.contains("INITRD /oa/initrd.img"), "{cfg}");
    let target = format!("{p}@@{}", esp.first_lba.0 * 512);
    let entry = Command::new("mtype")
        .env("MTOOLSRC", "/dev/null")
        .env("MTOOLS_SKIP_CHECK", "1")
        .args(["-i", &target, "::/loader/entries/oa.conf"])
        .output()
        .expect("mtype (make deps)");
    let entry = String::from_utf8_lossy(&entry.stdout).to_string();
    assert_eq!(oa_builder::image::boot::config_cmdline(&entry), Some(append.clone()), "{entry}");
    let files = Command::new("mdir")
        .env("MTOOLSRC", "/dev/null")
        .env("MTOOLS_SKIP_CHECK", "1")
        .args(["-i", &target, "-b", "-/", "::/"])
        .output()
        .unwrap();
    let files = String::from_utf8_lossy(&files.stdout).to_lowercase();
    for f in ["efi/boot/bootx64.efi", "loader/loader.conf", "vmlinuz", "initramfs.img"] {
        assert!(files.contains(f), "{f} on the ESP: {files}");
    }
}
