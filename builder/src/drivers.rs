//! Driver classes (`[kernel] drivers`): which of the kernel package's modules an initramfs
//! carries so that it boots on hardware nobody listed. A class is a set of folders of the
//! kernel's own module tree (below `lib/modules/<release>/kernel/`), not a hand-kept list of
//! module names: a new kernel's new drivers come with it. The modules' dependencies are added
//! by [`crate::kernel::Kernel::carry`]; oa-init loads only what the hardware asks for
//! (coldplug, by `modules.alias`), so carrying a class costs initramfs size, not boot time.
//!
//! The folder lists follow what dracut (without host-only) and archiso carry for the same
//! hardware. Measured sizes are in docs/profiles.md.

use crate::elfdeps::PERSIST_MODULES;
use crate::kernel::Kernel;
use crate::profile::{DriverClass, Profile};

/// What every boot needs whatever the hardware: the root image is a squashfs, on a loop device
/// when it is a file (netboot, copy-to-RAM), under an overlay.
pub const BOOT_MODULES: &[&str] = &["squashfs", "overlay", "loop"];

/// `[secure_boot] verity`: device-mapper and its verity target (dm-bufio comes as a dependency),
/// to map the root image before it is mounted.
pub const VERITY_MODULES: &[&str] = &["dm_mod", "dm_verity"];

/// The modules oa-init loads at the start of stage 1, in this order: [`BOOT_MODULES`],
/// [`VERITY_MODULES`] with verity, [`PERSIST_MODULES`] with `[persistence]`, then the profile's `[kernel] modules`.
pub fn always(p: &Profile) -> Vec<String> {
    let mut v: Vec<String> = BOOT_MODULES.iter().map(|s| s.to_string()).collect();
    if p.secure_boot.verity {
        v.extend(VERITY_MODULES.iter().map(|s| s.to_string()));
    }
    if p.persistence.is_some() {
        v.extend(PERSIST_MODULES.iter().map(|s| s.to_string()));
    }
    for m in &p.kernel.modules {
        if !v.contains(m) {
            v.push(m.clone());
        }
    }
    v
}

/// The folders and files (below `kernel/`) that make a class.
pub fn paths(class: DriverClass) -> &'static [&'static str] {
    match class {
        DriverClass::Storage => &[
            "drivers/ata",
            "drivers/nvme/host",
            "drivers/scsi/sd_mod.ko",
            "drivers/scsi/sr_mod.ko",
            "drivers/cdrom",
            "drivers/mmc",
            // The filesystems of boot media that hold the root image as a file (oa.iso, a FAT
            // or ext4 stick: `oa.root=LABEL=`/`UUID=`); oa-init loads them when it mounts one.
            "fs/isofs",
            "fs/fat",
            "fs/nls/nls_cp437.ko",
            "fs/nls/nls_utf8.ko",
            "fs/nls/nls_ascii.ko",
            "fs/ext4",
            "fs/jbd2",
            "fs/mbcache.ko",
            // ext4's metadata checksums: the kernel asks for "crc32c" by name at mount time.
            "crypto/crc32c_generic.ko",
        ],
        DriverClass::UsbStorage => &[
            "drivers/usb/host",
            "drivers/usb/dwc2",
            "drivers/usb/dwc3",
            "drivers/usb/storage",
            "drivers/scsi/sd_mod.ko",
            "drivers/scsi/sr_mod.ko",
            "drivers/cdrom",
            "fs/isofs",
            "fs/fat",
            "fs/nls/nls_cp437.ko",
            "fs/nls/nls_utf8.ko",
            "fs/nls/nls_ascii.ko",
        ],
        DriverClass::Virtio => &[
            "drivers/virtio",
            "drivers/block/virtio_blk.ko",
            "drivers/scsi/virtio_scsi.ko",
            "drivers/net/virtio_net.ko",
            "drivers/char/hw_random/virtio-rng.ko",
        ],
        DriverClass::Keyboard => {
            &["drivers/usb/host", "drivers/hid/usbhid", "drivers/hid/hid-generic.ko", "drivers/input/keyboard/atkbd.ko"]
        }
        DriverClass::Net => &["drivers/net/ethernet", "drivers/net/usb", "drivers/net/phy", "drivers/net/mdio"],
        DriverClass::Hba => &["drivers/scsi", "drivers/message/fusion"],
    }
}

/// The classes a profile carries when it names none: what a USB stick or a disk needs on any
/// PC, and the NIC drivers when the profile is meant to be netbooted.
pub fn defaults(netboot: bool) -> Vec<DriverClass> {
    let mut v = vec![DriverClass::Storage, DriverClass::UsbStorage, DriverClass::Virtio, DriverClass::Keyboard];
    if netboot {
        v.push(DriverClass::Net);
    }
    v
}

/// The module names of `classes` in this kernel (sorted, each once). A class with no module in
/// this kernel (built in, or a kernel without that subsystem) adds nothing.
pub fn modules(kernel: &Kernel, classes: &[DriverClass]) -> Vec<String> {
    let mut names: Vec<String> = classes.iter().flat_map(|c| kernel.modules_under(paths(*c))).collect();
    names.sort();
    names.dedup();
    names
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernel::{ModuleIndex, ModuleInfo};

    fn kernel(files: &[&str]) -> Kernel {
        let mut index = ModuleIndex::default();
        for f in files {
            let path = format!("lib/modules/6.1.0-9-amd64/kernel/{f}");
            index.modules.insert(crate::kernel::normalize(f), ModuleInfo { path, ..Default::default() });
        }
        Kernel { root: "/k".into(), release: "6.1.0-9-amd64".into(), vmlinuz: "/k/vmlinuz".into(), index }
    }

    #[test]
    fn classes_are_folders_of_the_module_tree() {
        let k = kernel(&[
            "drivers/ata/ahci.ko",
            "drivers/scsi/sd_mod.ko",
            "drivers/scsi/sd_modx.ko",
            "drivers/scsi/megaraid/megaraid_sas.ko",
            "drivers/usb/host/xhci-pci.ko",
            "drivers/net/ethernet/intel/e1000e/e1000e.ko",
            "drivers/hostx/nothing.ko",
        ]);
        assert_eq!(modules(&k, &[DriverClass::Storage]), ["ahci", "sd_mod"]);
        assert_eq!(modules(&k, &[DriverClass::UsbStorage]), ["sd_mod", "xhci_pci"]);
        assert_eq!(modules(&k, &[DriverClass::Net]), ["e1000e"]);
        assert_eq!(modules(&k, &[DriverClass::Hba]), ["megaraid_sas", "sd_mod", "sd_modx"]);
        assert!(modules(&k, &[]).is_empty());
    }

    #[test]
    fn netboot_adds_the_nics() {
        assert!(!defaults(false).contains(&DriverClass::Net));
        assert!(defaults(true).contains(&DriverClass::Net));
    }
}
