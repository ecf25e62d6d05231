//! What is written: the image file, its block map and the digests that vouch for them.

use super::plan::Sha256;
use super::{io_ctx, FlashError, Options, Result};
use crate::image::bmap::Bmap;
use oa_contract::manifest::{self, artifact, Manifest};
use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};

/// The image side of the plan.
#[derive(Debug, Clone)]
pub struct Source {
    pub path: PathBuf,
    pub size: u64,
    pub bmap: Option<(PathBuf, Bmap)>,
    /// From the manifest beside the image, when it lists the image.
    pub sha256: Option<Sha256>,
    /// The checks that passed, for the plan ("block map matches the manifest", ...).
    pub checks: Vec<String>,
}

/// Resolve the image, its block map and its expected digest.
pub fn source(opts: &Options) -> Result<Source> {
    let (path, folder) = if opts.image.is_dir() {
        (opts.image.join(artifact::DISK_IMAGE), Some(opts.image.clone()))
    } else {
        (opts.image.clone(), opts.image.parent().map(Path::to_path_buf))
    };
    let md = std::fs::metadata(&path).map_err(|e| FlashError::Image {
        path: path.clone(),
        reason: if opts.image.is_dir() {
            format!("not readable ({e}); build it with `[image] disk = true` in the profile")
        } else {
            format!("not readable ({e})")
        },
    })?;
    if !md.is_file() {
        return Err(FlashError::Image { path, reason: "not a regular file".into() });
    }
    let mut head = [0u8; 4];
    let mut f = io_ctx(File::open(&path), "opening", &path)?;
    let _ = f.read(&mut head);
    if &head == b"QFI\xfb" {
        return Err(FlashError::Image { path, reason: "is a qcow2 image (for VMs); flash the raw disk.img".into() });
    }
    let mut checks = vec![format!("the image is a regular file of {} bytes, not qcow2", md.len())];
    // The manifest beside it names its digest (and the bmap's).
    let m: Option<Manifest> = folder
        .as_ref()
        .and_then(|d| std::fs::read(d.join(manifest::FILE_NAME)).ok())
        .and_then(|b| serde_json::from_slice(&b).ok());
    let file_name = path.file_name().map(|n| n.to_string_lossy().to_string()).unwrap_or_default();
    let listed = |name: &str| {
        m.as_ref().and_then(|m| m.artifacts.iter().find(|a| a.path == name)).map(|a| (a.size, a.sha256.clone()))
    };
    let sha256 = match listed(&file_name) {
        Some((size, _)) if size != md.len() => {
            return Err(FlashError::Image {
                path,
                reason: format!(
                    "is {} bytes but its manifest says {size}: the file was changed or truncated",
                    md.len()
                ),
            })
        }
        Some((_, d)) => {
            let d: Sha256 = d.parse().map_err(|e| FlashError::Image {
                path: path.clone(),
                reason: format!("its manifest's sha256 is not usable: {e}"),
            })?;
            checks.push(format!("its size is the one {} lists (with sha256 {d})", manifest::FILE_NAME));
            Some(d)
        }
        None => None,
    };
    let bmap_path = if opts.no_bmap {
        None
    } else if let Some(b) = &opts.bmap {
        Some(b.clone())
    } else {
        let beside = PathBuf::from(format!("{}.bmap", path.display()));
        let stem = path.with_extension("bmap");
        [beside, stem].into_iter().find(|p| p.is_file())
    };
    let bmap = match bmap_path {
        None => None,
        Some(bp) => {
            let text = std::fs::read_to_string(&bp)
                .map_err(|e| FlashError::Bmap { path: bp.clone(), reason: format!("not readable ({e})") })?;
            let b = Bmap::parse(&text).map_err(|reason| FlashError::Bmap { path: bp.clone(), reason })?;
            if b.image_size != md.len() {
                return Err(FlashError::Bmap {
                    path: bp,
                    reason: format!(
                        "is for an image of {} bytes, but {} has {}; give the matching bmap or --no-bmap",
                        b.image_size,
                        path.display(),
                        md.len()
                    ),
                });
            }
            checks.push(format!("the block map {} is valid and for an image of this size", bp.display()));
            let bname = bp.file_name().map(|n| n.to_string_lossy().to_string()).unwrap_or_default();
            if let (Some((_, want)), true) = (listed(&bname), bp.parent() == path.parent()) {
                let got = Sha256::of(text.as_bytes());
                if got.to_string() != want {
                    return Err(FlashError::Bmap {
                        path: bp,
                        reason: format!("its sha256 {got} is not the manifest's {want}"),
                    });
                }
                checks.push(format!("the block map's sha256 is the one {} lists", manifest::FILE_NAME));
            }
            Some((bp, b))
        }
    };
    Ok(Source { path, size: md.len(), bmap, sha256, checks })
}
