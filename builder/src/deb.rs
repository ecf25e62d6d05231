//! Reading Debian binary packages (`.deb`) in Rust: an `ar` archive holding `control.tar.*`
//! and `data.tar.*` (xz, zstd, gzip or plain). No dpkg and no root needed: files are unpacked
//! with their modes and symlinks; ownership is left to mksquashfs (`-all-root`).

use crate::error::{Error, IoContext, Result};
use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufReader, Read};
use std::path::{Path, PathBuf};

/// The fields of a package's `control` file (`Package`, `Version`, `Depends`, ...).
#[derive(Debug, Clone, Default)]
pub struct Control {
    pub fields: BTreeMap<String, String>,
}

impl Control {
    pub fn parse(text: &str) -> Control {
        let mut fields = BTreeMap::new();
        let mut last: Option<String> = None;
        for line in text.lines() {
            if line.starts_with(' ') || line.starts_with('\t') {
                if let Some(k) = &last {
                    if let Some(v) = fields.get_mut(k) {
                        let v: &mut String = v;
                        v.push('\n');
                        v.push_str(line.trim());
                    }
                }
            } else if let Some((k, v)) = line.split_once(':') {
                fields.insert(k.trim().to_string(), v.trim().to_string());
                last = Some(k.trim().to_string());
            }
        }
        Control { fields }
    }

    pub fn get(&self, key: &str) -> Option<&str> {
        self.fields.get(key).map(|s| s.as_str())
    }

    /// Package names in `Depends` (alternatives and version constraints dropped).
    pub fn depends(&self) -> Vec<String> {
        self.get("Depends")
            .unwrap_or("")
            .split(',')
            .filter_map(|d| d.split('|').next())
            .map(|d| d.split(['(', ':']).next().unwrap_or("").trim().to_string())
            .filter(|d| !d.is_empty())
            .collect()
    }
}

fn deb_err(path: &Path, reason: impl Into<String>) -> Error {
    Error::Deb { path: path.to_path_buf(), reason: reason.into() }
}

/// Open the member of the .deb whose name starts with `prefix` and hand a decompressing reader
/// to `f`.
fn with_member<T>(path: &Path, prefix: &str, f: impl FnOnce(&mut dyn Read) -> Result<T>) -> Result<T> {
    let file = File::open(path).ctx("opening package", path)?;
    let mut archive = ar::Archive::new(BufReader::new(file));
    while let Some(entry) = archive.next_entry() {
        let entry = entry.map_err(|e| deb_err(path, format!("not a valid ar archive: {e}")))?;
        let name = String::from_utf8_lossy(entry.header().identifier()).trim_end_matches('/').to_string();
        if !name.starts_with(prefix) {
            continue;
        }
        let mut reader: Box<dyn Read> = match name.rsplit('.').next() {
            Some("xz") => Box::new(xz2::read::XzDecoder::new(entry)),
            Some("zst") => Box::new(zstd::stream::read::Decoder::new(entry).ctx("starting zstd decoder for", path)?),
            Some("gz") => Box::new(flate2::read::GzDecoder::new(entry)),
            Some("tar") => Box::new(entry),
            _ => return Err(deb_err(path, format!("member {name} has an unknown compression"))),
        };
        return f(&mut reader);
    }
    Err(deb_err(path, format!("no {prefix}* member: not a Debian binary package")))
}

/// Read the control file of a .deb.
pub fn control(path: &Path) -> Result<Control> {
    with_member(path, "control.tar", |r| {
        let mut tar = tar::Archive::new(r);
        for entry in tar.entries().map_err(|e| deb_err(path, e.to_string()))? {
            let mut entry = entry.map_err(|e| deb_err(path, e.to_string()))?;
            let p = entry.path().map_err(|e| deb_err(path, e.to_string()))?.to_path_buf();
            if p.file_name().is_some_and(|n| n == "control") {
                let mut s = String::new();
                entry.read_to_string(&mut s).map_err(|e| deb_err(path, format!("control file: {e}")))?;
                return Ok(Control::parse(&s));
            }
        }
        Err(deb_err(path, "control.tar has no control file"))
    })
}

/// What [`extract`] did.
#[derive(Debug, Default, Clone)]
pub struct Extracted {
    pub files: u64,
    pub bytes: u64,
    /// Paths (relative, without leading `./`) of the regular files and symlinks written.
    pub paths: Vec<PathBuf>,
}

/// Take the one file `file` (relative, as in the package) out of `deb` to `dst`, unpacking in
/// `work` (a folder of its own, removed after). Only a file the package has is written.
pub fn extract_file(deb: &Path, info: &crate::apt::PackageInfo, file: &str, work: &Path, dst: &Path) -> Result<()> {
    let fail = |reason: String| Error::Package { package: info.name.clone(), reason };
    std::fs::create_dir_all(work).map_err(|e| fail(format!("creating {}: {e}", work.display())))?;
    let want = Path::new(file);
    let got = extract(deb, work, &|p| p == want)?;
    if got.files != 1 {
        let _ = std::fs::remove_dir_all(work);
        return Err(fail(format!(
            "{} {} has no /{file}: Debian moved it; oa knows this package's layout of Debian 12",
            info.name, info.version
        )));
    }
    let moved =
        std::fs::rename(work.join(file), dst).map_err(|e| fail(format!("moving /{file} to {}: {e}", dst.display())));
    let _ = std::fs::remove_dir_all(work);
    moved
}

/// Unpack the data archive of a .deb into `dest` (which must exist). `keep` decides per
/// relative path; directories are created as needed. Paths escaping `dest` are refused by the
/// tar crate's `unpack_in`.
pub fn extract(path: &Path, dest: &Path, keep: &dyn Fn(&Path) -> bool) -> Result<Extracted> {
    with_member(path, "data.tar", |r| {
        let mut out = Extracted::default();
        let mut tar = tar::Archive::new(r);
        tar.set_preserve_permissions(true);
        tar.set_preserve_mtime(true);
        tar.set_overwrite(true);
        tar.set_unpack_xattrs(false);
        for entry in tar.entries().map_err(|e| deb_err(path, e.to_string()))? {
            let mut entry = entry.map_err(|e| deb_err(path, e.to_string()))?;
            let rel = entry.path().map_err(|e| deb_err(path, e.to_string()))?;
            let rel: PathBuf = rel.components().filter(|c| !matches!(c, std::path::Component::CurDir)).collect();
            if rel.as_os_str().is_empty() || !keep(&rel) {
                continue;
            }
            let is_dir = entry.header().entry_type().is_dir();
            let size = entry.header().size().unwrap_or(0);
            entry
                .unpack_in(dest)
                .map_err(|e| deb_err(path, format!("unpacking {} into {}: {e}", rel.display(), dest.display())))?;
            if !is_dir {
                out.files += 1;
                out.bytes += size;
                out.paths.push(rel);
            }
        }
        Ok(out)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_fields_and_depends() {
        let c = Control::parse("Package: linux-image-amd64\nVersion: 6.1\nDepends: linux-image-6.1.0-56-amd64 (= 6.1.192-2), foo | bar, baz:any\nDescription: x\n more\n");
        assert_eq!(c.get("Package"), Some("linux-image-amd64"));
        assert_eq!(c.depends(), vec!["linux-image-6.1.0-56-amd64", "foo", "baz"]);
        assert_eq!(c.get("Description"), Some("x\nmore"));
    }
}
