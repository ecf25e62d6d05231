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

/// One stage of the build.
pub struct Stage {
    pub name: &'static str,
    /// One line for `oa graph` and the docs.
    pub doc: &'static str,
    /// Is this stage part of the build of the profile?
    pub wanted: fn(&Profile) -> bool,
    /// What it reads: the names of earlier stages, or [`SOURCES`] outside the pipeline.
    pub reads: fn(&Profile) -> Vec<&'static str>,
    /// The files of the output folder it makes (copied there by the output stage).
    pub makes: fn(&Profile) -> Vec<&'static str>,
    pub run: fn(&mut Context) -> Result<Outcome>,
}

/// Inputs from outside the pipeline that stages read.
pub const SOURCES: &[&str] =
    &["profile", "apt", "overlays", "oa-init", "oa-storage", "mirror", "boot loaders", "raspi-firmware"];

fn always(_: &Profile) -> bool {
    true
}
fn nothing(_: &Profile) -> Vec<&'static str> {
    Vec::new()
}

/// Every stage, in the order they run.
pub const STAGES: &[Stage] = &[
    Stage {
        name: "packages",
        doc: "resolve and download the kernel and Debian packages (apt), verified by sha256",
        wanted: always,
        reads: |_| vec!["profile", "apt"],
        makes: nothing,
        run: stages::packages::run,
    },
    Stage {
        name: "base",
        doc: "the full-OS base tree: mmdebstrap (debian) or pacman (arch), kept as a tarball",
        wanted: |p| p.base != Base::Busybox,
        reads: |_| vec!["profile", "mirror"],
        makes: nothing,
        run: stages::base::run,
    },
    Stage {
        name: "kernel",
        doc: "unpack the kernel and index its modules",
        wanted: always,
        reads: |p| if p.base == Base::Arch { vec!["base"] } else { vec!["packages"] },
        makes: |_| vec![artifact::KERNEL],
        run: stages::kernel::run,
    },
    Stage {
        name: "rootfs",
        doc: "assemble the root tree (base or packages, overlays, oa-init, customisation) and pack it as squashfs",
        wanted: always,
        reads: |p| {
            let mut v = vec!["packages"];
            if p.base != Base::Busybox {
                v.push("base");
            }
            v.extend(["overlays", "oa-init"]);
            if p.persistence.is_some() {
                v.push("oa-storage");
            }
            v
        },
        makes: |_| vec![artifact::ROOTFS],
        run: stages::rootfs::run,
    },
    Stage {
        name: "initramfs",
        doc: "oa-init, the kernel modules it needs, busybox and oa-storage as a zstd cpio",
        wanted: always,
        reads: |p| {
            let mut v = vec!["kernel", "packages", "oa-init"];
            if p.persistence.is_some() {
                v.push("oa-storage");
            }
            v
        },
        makes: |_| vec![artifact::INITRAMFS],
        run: stages::initramfs::run,
    },
    Stage {
        name: "image",
        doc: "disk.img (GPT, BIOS + UEFI boot loaders, root partition) with its block map, and qcow2",
        wanted: |p| p.image.disk,
        reads: |_| vec!["kernel", "initramfs", "rootfs", "boot loaders"],
        makes: |p| {
            let mut v = vec![artifact::DISK_IMAGE, artifact::DISK_BMAP];
            if p.image.qcow2 {
                v.push(artifact::DISK_QCOW2);
            }
            v
        },
        run: stages::image::run,
    },
    Stage {
        name: "rpi",
        doc: "the Raspberry Pi boot tree rpi/ and the SD card image rpi.img",
        wanted: |p| p.rpi.enable,
        reads: |_| vec!["kernel", "initramfs", "rootfs", "raspi-firmware"],
        makes: |_| vec![artifact::RPI_TREE, artifact::RPI_IMAGE],
        run: stages::rpi::run,
    },
    Stage {
        name: "output",
        doc: "copy the artifacts into the output folder with manifest.json, swapped into place at once",
        wanted: always,
        reads: |p| {
            let mut v = vec!["kernel", "initramfs", "rootfs"];
            if p.image.disk {
                v.push("image");
            }
            if p.rpi.enable {
                v.push("rpi");
            }
            v
        },
        makes: |_| vec![oa_contract::manifest::FILE_NAME],
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
        for r in (s.reads)(p) {
            if SOURCES.contains(&r) && !g.sources.contains(&r) {
                g.sources.push(r);
            }
            g.edges.push((r, s.name));
        }
        for f in (s.makes)(p) {
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
                for r in (s.reads)(&p) {
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
                if !(s.makes)(&p).is_empty() && s.name != "output" {
                    assert!((out.reads)(&p).contains(&s.name), "{file}: the output stage does not read {}", s.name);
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
            assert!(g.files.contains(&artifact::ROOTFS) && g.files.contains(&oa_contract::manifest::FILE_NAME));
            assert_eq!(g.files.contains(&artifact::DISK_IMAGE), p.image.disk, "{file}");
            assert_eq!(g.files.contains(&artifact::RPI_IMAGE), p.rpi.enable, "{file}");
            assert_eq!(g.stages.contains(&"base"), p.base != Base::Busybox, "{file}");
        }
    }
}
