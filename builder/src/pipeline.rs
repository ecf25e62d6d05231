//! The build pipeline as data (docs/design.md, "The stage pipeline").
//!
//! [`STAGES`] is the one list of stages: what each reads, which files of the output folder it
//! makes, when a profile wants it, and the function that runs it. [`plan`] picks the stages of
//! one profile; `oa build` folds over that plan ([`crate::build::build`]), its progress counter
//! counts it, and `oa graph` draws it ([`graph`]): the three can no longer drift apart.

use crate::build::Context;
use crate::error::Result;
use crate::profile::{Base, Profile};
use crate::stages;
use oa_contract::manifest::artifact;

/// What a stage did: whether it came from the cache, and one line for people.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub cached: bool,
    pub detail: String,
}

impl Outcome {
    pub fn made(detail: impl Into<String>) -> Outcome {
        Outcome { cached: false, detail: detail.into() }
    }
    pub fn cached(detail: impl Into<String>) -> Outcome {
        Outcome { cached: true, detail: detail.into() }
    }
}

/// A name (a stage, a source, a file) that holds for the profiles where `when` is true.
pub struct When(pub &'static str, pub fn(&Profile) -> bool);

/// One stage of the build.
pub struct Stage {
    pub name: &'static str,
    /// One line for `oa graph` and the docs.
    pub doc: &'static str,
    /// Is this stage part of the build of the profile?
    pub wanted: fn(&Profile) -> bool,
    /// What it reads: the names of earlier stages, or [`SOURCES`] outside the pipeline.
    pub reads: &'static [When],
    /// The files of the output folder it makes (copied there by the output stage).
    pub makes: &'static [When],
    pub run: fn(&mut Context) -> Result<Outcome>,
}

impl Stage {
    /// What the stage reads when building `p`.
    pub fn reads(&self, p: &Profile) -> Vec<&'static str> {
        self.reads.iter().filter(|w| (w.1)(p)).map(|w| w.0).collect()
    }
    /// The output files the stage makes when building `p`.
    pub fn makes(&self, p: &Profile) -> Vec<&'static str> {
        self.makes.iter().filter(|w| (w.1)(p)).map(|w| w.0).collect()
    }
}

/// Inputs from outside the pipeline that stages read.
pub const SOURCES: &[&str] =
    &["profile", "apt", "overlays", "oa-init", "oa-storage", "mirror", "boot loaders", "raspi-firmware", "signing key"];

fn always(_: &Profile) -> bool {
    true
}
fn full_os(p: &Profile) -> bool {
    p.base != Base::Busybox
}
fn arch_base(p: &Profile) -> bool {
    p.base == Base::Arch
}
fn deb_kernel(p: &Profile) -> bool {
    p.base != Base::Arch
}
fn persistent(p: &Profile) -> bool {
    p.persistence.is_some()
}
fn verity(p: &Profile) -> bool {
    p.secure_boot.verity
}
fn disk(p: &Profile) -> bool {
    p.image.disk
}
fn qcow2(p: &Profile) -> bool {
    p.image.disk && p.image.qcow2
}
fn iso(p: &Profile) -> bool {
    p.image.iso
}
fn uki(p: &Profile) -> bool {
    p.secure_boot.mode == crate::profile::SecureBootMode::Uki
}
fn shim(p: &Profile) -> bool {
    p.secure_boot.mode == crate::profile::SecureBootMode::Shim || secure_netboot(p)
}
/// A signed UKI for netboot: `oa serve` hands UEFI clients shim and GRUB in front of it.
pub fn secure_netboot(p: &Profile) -> bool {
    uki(p) && p.image.netboot
}
fn rpi(p: &Profile) -> bool {
    p.rpi.enable
}

/// Every stage, in the order they run.
pub const STAGES: &[Stage] = &[
    Stage {
        name: "packages",
        doc: "resolve and download the kernel and Debian packages (apt), verified by sha256",
        wanted: always,
        reads: &[When("profile", always), When("apt", always)],
        makes: &[],
        run: stages::packages::run,
    },
    Stage {
        name: "base",
        doc: "the full-OS base tree: mmdebstrap (debian) or pacman (arch), kept as a tarball",
        wanted: full_os,
        reads: &[When("profile", always), When("mirror", always)],
        makes: &[],
        run: stages::base::run,
    },
    Stage {
        name: "kernel",
        doc: "unpack the kernel and index its modules",
        wanted: always,
        reads: &[When("packages", deb_kernel), When("base", arch_base)],
        makes: &[When(artifact::KERNEL, always)],
        run: stages::kernel::run,
    },
    Stage {
        name: "rootfs",
        doc: "assemble the root tree (base or packages, overlays, oa-init, customisation) and pack it as squashfs",
        wanted: always,
        reads: &[
            When("packages", always),
            When("base", full_os),
            When("overlays", always),
            When("oa-init", always),
            When("oa-storage", persistent),
        ],
        makes: &[When(artifact::ROOTFS, always)],
        run: stages::rootfs::run,
    },
    Stage {
        name: "verity",
        doc: "append a dm-verity hash tree (sha256, 4 KiB blocks) to the root image; its root hash goes on the command line (oa.verity=)",
        wanted: verity,
        reads: &[When("rootfs", always)],
        makes: &[],
        run: stages::verity::run,
    },
    Stage {
        name: "initramfs",
        doc: "oa-init, the kernel modules it needs, busybox, oa-storage and the config signing key as a zstd cpio",
        wanted: always,
        reads: &[
            When("kernel", always),
            When("packages", always),
            When("oa-init", always),
            When("oa-storage", persistent),
        ],
        makes: &[When(artifact::INITRAMFS, always)],
        run: stages::initramfs::run,
    },
    Stage {
        name: "uki",
        doc: "the unified kernel images (systemd's EFI stub + kernel, initramfs, command line) for disk.img, oa.iso and secure netboot, signed with sbsign",
        wanted: uki,
        reads: &[
            When("kernel", always),
            When("initramfs", always),
            When("rootfs", always),
            When("boot loaders", always),
            When("signing key", always),
        ],
        makes: &[],
        run: stages::uki::run,
    },
    Stage {
        name: "shim",
        doc: "Debian's Microsoft-signed shim, its signed GRUB (disk and network builds) and MOK manager (shim-signed, grub-efi-amd64-signed, shim-helpers-amd64-signed), fetched by apt and verified; for mode = \"shim\" and for secure netboot",
        wanted: shim,
        reads: &[When("apt", always)],
        makes: &[],
        run: stages::shim::run,
    },
    Stage {
        name: "image",
        doc: "disk.img (GPT, BIOS + UEFI boot loaders, root partition) with its block map, and qcow2",
        wanted: disk,
        reads: &[
            When("kernel", always),
            When("initramfs", always),
            When("rootfs", always),
            When("uki", uki),
            When("shim", shim),
            When("boot loaders", always),
        ],
        makes: &[
            When(artifact::DISK_IMAGE, always),
            When(artifact::DISK_BMAP, always),
            When(artifact::DISK_QCOW2, qcow2),
        ],
        run: stages::image::run,
    },
    Stage {
        name: "iso",
        doc: "the hybrid ISO (oa.iso): ISO 9660 (El Torito BIOS isolinux + UEFI systemd-boot ESP, isohybrid MBR + GPT), the root image as a file",
        wanted: iso,
        reads: &[
            When("kernel", always),
            When("initramfs", always),
            When("rootfs", always),
            When("uki", uki),
            When("boot loaders", always),
        ],
        makes: &[When(artifact::ISO, always)],
        run: stages::iso::run,
    },
    Stage {
        name: "rpi",
        doc: "the Raspberry Pi boot tree rpi/ and the SD card image rpi.img",
        wanted: rpi,
        reads: &[
            When("kernel", always),
            When("initramfs", always),
            When("rootfs", always),
            When("raspi-firmware", always),
        ],
        // The tree is a folder: drawn as `rpi/` so it is not the stage `rpi`.
        makes: &[When("rpi/", always), When(artifact::RPI_IMAGE, always)],
        run: stages::rpi::run,
    },
    Stage {
        name: "output",
        doc: "copy the artifacts into the output folder with manifest.json, swapped into place at once",
        wanted: always,
        reads: &[
            When("kernel", always),
            When("initramfs", always),
            When("rootfs", always),
            When("verity", verity),
            When("image", disk),
            When("iso", iso),
            When("rpi", rpi),
            When("packages", always),
            When("base", full_os),
        ],
        makes: &[When(oa_contract::manifest::FILE_NAME, always), When(artifact::PACKAGES, always)],
        run: stages::output::run,
    },
];

/// The stages of the build of `p`, in order.
pub fn plan(p: &Profile) -> Vec<&'static Stage> {
    STAGES.iter().filter(|s| (s.wanted)(p)).collect()
}

/// The pipeline of one profile as a graph: its stages, and edges from what each reads to it
/// and from it to the files it makes.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Graph {
    pub stages: Vec<&'static str>,
    pub sources: Vec<&'static str>,
    pub files: Vec<&'static str>,
    pub edges: Vec<(&'static str, &'static str)>,
}

pub fn graph(p: &Profile) -> Graph {
    let plan = plan(p);
    let mut g = Graph { stages: Vec::new(), sources: Vec::new(), files: Vec::new(), edges: Vec::new() };
    for s in &plan {
        g.stages.push(s.name);
        for r in s.reads(p) {
            if SOURCES.contains(&r) && !g.sources.contains(&r) {
                g.sources.push(r);
            }
            g.edges.push((r, s.name));
        }
        for f in s.makes(p) {
            g.files.push(f);
            g.edges.push((s.name, f));
        }
    }
    g
}

#[cfg(test)]
mod tests {
    use super::*;

    fn profiles() -> Vec<(String, Profile)> {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../profiles");
        let mut v = Vec::new();
        for e in std::fs::read_dir(&dir).unwrap().flatten() {
            let path = e.path();
            if path.extension().is_some_and(|x| x == "toml") {
                let r = crate::profile::load(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
                v.push((path.display().to_string(), r.profile));
            }
        }
        assert!(v.len() >= 5, "shipped profiles found in {}", dir.display());
        v
    }

    #[test]
    fn every_stage_reads_only_earlier_stages_or_sources() {
        for (file, p) in profiles() {
            let plan = plan(&p);
            for (i, s) in plan.iter().enumerate() {
                for r in s.reads(&p) {
                    let earlier = plan[..i].iter().any(|e| e.name == r);
                    assert!(
                        earlier || SOURCES.contains(&r),
                        "{file}: stage {} reads {r}, which is neither an earlier stage nor a source",
                        s.name
                    );
                }
            }
            // Every stage that makes files is read by the output stage.
            let out = plan.last().unwrap();
            assert_eq!(out.name, "output", "{file}");
            for s in &plan {
                if !s.makes(&p).is_empty() && s.name != "output" {
                    assert!(out.reads(&p).contains(&s.name), "{file}: the output stage does not read {}", s.name);
                }
            }
        }
    }

    #[test]
    fn the_graph_is_the_plan() {
        for (file, p) in profiles() {
            let g = graph(&p);
            let names: Vec<_> = plan(&p).iter().map(|s| s.name).collect();
            assert_eq!(g.stages, names, "{file}");
            let mut files = g.files.clone();
            files.sort();
            files.dedup();
            assert_eq!(files.len(), g.files.len(), "{file}: a file is made by two stages");
            for f in &g.files {
                assert!(
                    !g.stages.contains(f) && !SOURCES.contains(f),
                    "{file}: output file {f} has the name of a stage or source"
                );
            }
            assert!(g.files.contains(&artifact::ROOTFS) && g.files.contains(&oa_contract::manifest::FILE_NAME));
            assert_eq!(g.files.contains(&artifact::DISK_IMAGE), p.image.disk, "{file}");
            assert_eq!(g.files.contains(&artifact::RPI_IMAGE), p.rpi.enable, "{file}");
            assert_eq!(g.files.contains(&artifact::ISO), p.image.iso, "{file}");
            assert_eq!(g.stages.contains(&"base"), p.base != Base::Busybox, "{file}");
        }
    }
}
