//! What each machine of an environment boots: its profile built (through the cache, each
//! profile once) or its output folder read, and checked against how the machine boots.

use super::{Boot, Env, Machine, Source};
use crate::build::{self, Options};
use crate::error::{Error, Result};
use oa_contract::manifest::{artifact, Manifest};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// One machine's output folder and manifest.
#[derive(Debug, Clone)]
pub struct Output {
    pub dir: PathBuf,
    pub manifest: Manifest,
}

impl Output {
    /// A file of the output by artifact name.
    pub fn file(&self, name: &str) -> PathBuf {
        self.dir.join(self.manifest.artifact(name).map(|a| a.path.as_str()).unwrap_or(name))
    }
}

/// Build or read the output of every machine (in machine order; a profile used by several
/// machines is built once). Builds go to `out_root/<profile name>` (default `out/`).
pub fn outputs(env: &Env, opts: &Options, out_root: Option<&Path>) -> Result<BTreeMap<String, Output>> {
    let mut built: BTreeMap<PathBuf, Output> = BTreeMap::new();
    let mut out = BTreeMap::new();
    for m in &env.machines {
        let o = match &m.source {
            Source::Profile(p) => {
                if let Some(o) = built.get(p) {
                    o.clone()
                } else {
                    let resolved = crate::profile::load(p)?;
                    let mut opts = opts.clone();
                    opts.out = out_root.map(|r| r.join(&resolved.profile.name));
                    eprintln!("==> machine {}: building {}", m.name, p.display());
                    let report = build::build(&resolved, &opts)?;
                    let o = Output { dir: report.out.clone(), manifest: report.manifest };
                    built.insert(p.clone(), o.clone());
                    o
                }
            }
            Source::Output(dir) => read(m, dir)?,
        };
        // Absolute, for the servers and per-machine files that name it.
        let o = Output { dir: o.dir.canonicalize().unwrap_or(o.dir), manifest: o.manifest };
        check(m, &o)?;
        out.insert(m.name.clone(), o);
    }
    Ok(out)
}

/// The output folder `dir` of machine `m` (its manifest read and checked against the machine).
pub fn read(m: &Machine, dir: &Path) -> Result<Output> {
    let manifest = build::read_manifest(dir).map_err(|e| {
        Error::Usage(format!(
            "machine `{}`: output {} cannot be read ({e}); build it first with `oa build PROFILE --out {}`, or give the machine a `profile`",
            m.name,
            dir.display(),
            dir.display()
        ))
    })?;
    let o = Output { dir: dir.to_path_buf(), manifest };
    check(m, &o)?;
    Ok(o)
}

/// The output has what the machine's boot needs, for the machine's arch.
pub fn check(m: &Machine, o: &Output) -> Result<()> {
    if let Some(a) = m.arch {
        if a != o.manifest.arch {
            return Err(Error::Usage(format!(
                "machine `{}` is {a} but its output {} is {}; set `arch = \"{}\"` or give it a profile for {a}",
                m.name,
                o.dir.display(),
                o.manifest.arch,
                o.manifest.arch
            )));
        }
    }
    let (need, setting) = match m.boot {
        Boot::Disk | Boot::Usb => (artifact::DISK_IMAGE, "[image] disk = true"),
        Boot::Iso => (artifact::ISO, "[image] iso = true"),
        Boot::Pxe | Boot::Kernel => (artifact::ROOTFS, "a build"),
    };
    if o.manifest.artifact(need).is_none() || !o.file(need).is_file() {
        return Err(Error::Usage(format!(
            "machine `{}` boots `{}` but its output {} has no {need}; add `{setting}` to its profile and build again",
            m.name,
            m.boot.as_str(),
            o.dir.display()
        )));
    }
    Ok(())
}
