//! The initramfs: a compressed cpio (newc) archive written by the builder from a sorted map of
//! members, creating parent directories as it goes (the shape of coreos-installer's
//! `io/initrd.rs`).
//!
//! The newc writer is our own (about 60 lines) rather than the `cpio` crate because we need
//! device nodes (`/dev/console` must exist before the kernel runs `/init`, and we build as an
//! unprivileged user), fixed ownership and timestamps for reproducible output, and nothing else.

use crate::error::{IoContext, Result};
use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

#[derive(Debug, Clone)]
pub enum Member {
    Dir { mode: u32 },
    File { mode: u32, source: Source },
    Symlink { target: String },
    CharDev { mode: u32, major: u32, minor: u32 },
}

#[derive(Debug, Clone)]
pub enum Source {
    Path(PathBuf),
    Bytes(Vec<u8>),
}

/// Members keyed by their path inside the archive (relative, no leading `/`).
#[derive(Debug, Default)]
pub struct Archive {
    members: BTreeMap<String, Member>,
}

impl Archive {
    pub fn new() -> Archive {
        Archive::default()
    }

    /// Add a member, creating its parent directories (mode 0755) if missing.
    pub fn add(&mut self, path: &str, member: Member) {
        let path = path.trim_start_matches('/').to_string();
        let mut parent = Path::new(&path).parent();
        while let Some(p) = parent {
            let s = p.to_string_lossy().to_string();
            if s.is_empty() {
                break;
            }
            self.members.entry(s).or_insert(Member::Dir { mode: 0o755 });
            parent = p.parent();
        }
        self.members.insert(path, member);
    }

    pub fn add_file(&mut self, path: &str, mode: u32, source: Source) {
        self.add(path, Member::File { mode, source });
    }

    pub fn len(&self) -> usize {
        self.members.len()
    }

    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    /// Write the uncompressed newc stream. Parents sort before their children (BTreeMap order
    /// of `a` < `a/b`), as the kernel's unpacker needs.
    pub fn write_cpio(&self, out: &mut dyn Write) -> Result<()> {
        let w = |out: &mut dyn Write, b: &[u8]| out.write_all(b).ctx("writing initramfs", "<cpio stream>");
        for (ino, (name, m)) in (1u32..).zip(&self.members) {
            let (mode, data, rdev): (u32, std::borrow::Cow<[u8]>, (u32, u32)) = match m {
                Member::Dir { mode } => (0o040000 | mode, (&[][..]).into(), (0, 0)),
                Member::File { mode, source } => {
                    let data = match source {
                        Source::Path(p) => std::fs::read(p).ctx("reading initramfs member", p)?.into(),
                        Source::Bytes(b) => b.as_slice().into(),
                    };
                    (0o100000 | mode, data, (0, 0))
                }
                Member::Symlink { target } => (0o120777, target.as_bytes().into(), (0, 0)),
                Member::CharDev { mode, major, minor } => (0o020000 | mode, (&[][..]).into(), (*major, *minor)),
            };
            w(out, header(ino, mode, data.len() as u32, rdev, name.len() as u32 + 1).as_bytes())?;
            w(out, name.as_bytes())?;
            w(out, &[0])?;
            w(out, &[0u8; 3][..pad4(110 + name.len() + 1)])?;
            w(out, &data)?;
            w(out, &[0u8; 3][..pad4(data.len())])?;
        }
        let trailer = "TRAILER!!!";
        w(out, header(0, 0, 0, (0, 0), trailer.len() as u32 + 1).as_bytes())?;
        w(out, trailer.as_bytes())?;
        w(out, &[0])?;
        w(out, &[0u8; 3][..pad4(110 + trailer.len() + 1)])?;
        Ok(())
    }

    /// Write the archive zstd-compressed to `path` (the Debian kernel has CONFIG_RD_ZSTD, and
    /// zstd unpacks several times faster than gzip, which matters under TCG).
    pub fn write_zstd(&self, path: &Path) -> Result<()> {
        let f = std::fs::File::create(path).ctx("creating", path)?;
        let mut enc =
            zstd::stream::write::Encoder::new(std::io::BufWriter::new(f), 15).ctx("starting zstd for", path)?;
        self.write_cpio(&mut enc)?;
        let mut bw = enc.finish().ctx("finishing zstd stream of", path)?;
        bw.flush().ctx("writing", path)?;
        bw.get_ref().sync_all().ctx("syncing", path)?;
        Ok(())
    }
}

fn pad4(n: usize) -> usize {
    (4 - n % 4) % 4
}

fn header(ino: u32, mode: u32, size: u32, rdev: (u32, u32), namesize: u32) -> String {
    // magic ino mode uid gid nlink mtime filesize devmajor devminor rdevmajor rdevminor namesize check
    let nlink = if mode & 0o170000 == 0o040000 { 2 } else { 1 };
    format!(
        "070701{ino:08x}{mode:08x}{:08x}{:08x}{nlink:08x}{:08x}{size:08x}{:08x}{:08x}{:08x}{:08x}{namesize:08x}{:08x}",
        0, 0, 0, 0, 0, rdev.0, rdev.1, 0
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn newc_layout_and_parents() {
        let mut a = Archive::new();
        a.add_file("etc/oa/x.json", 0o644, Source::Bytes(b"{}".to_vec()));
        a.add("dev/console", Member::CharDev { mode: 0o600, major: 5, minor: 1 });
        let mut out = Vec::new();
        a.write_cpio(&mut out).unwrap();
        assert_eq!(out.len() % 4, 0);
        let s = String::from_utf8_lossy(&out);
        // parents were created, in order before children
        let (d, e, f) = (s.find("etc\0").unwrap(), s.find("etc/oa\0").unwrap(), s.find("etc/oa/x.json\0").unwrap());
        assert!(d < e && e < f);
        assert!(s.contains("TRAILER!!!"));
        // every header starts with the newc magic
        assert_eq!(s.matches("070701").count(), 6);
        // the char device carries rdev 5:1
        let h = &s[s.find("dev/console").unwrap() - 110..];
        assert_eq!(&h[78..94], "0000000500000001");
    }

    #[test]
    fn unpacks_with_cpio_tool() {
        // The real cpio(1) must read what we write; skip when it is not installed.
        if std::process::Command::new("cpio").arg("--version").output().is_err() {
            return;
        }
        let mut a = Archive::new();
        a.add_file("bin/hello", 0o755, Source::Bytes(b"hi\n".to_vec()));
        a.add("bin/link", Member::Symlink { target: "hello".into() });
        let mut out = Vec::new();
        a.write_cpio(&mut out).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let mut child = std::process::Command::new("cpio")
            .args(["-i", "-d", "--quiet"])
            .current_dir(dir.path())
            .stdin(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        child.stdin.take().unwrap().write_all(&out).unwrap();
        assert!(child.wait().unwrap().success());
        assert_eq!(std::fs::read(dir.path().join("bin/hello")).unwrap(), b"hi\n");
        assert_eq!(std::fs::read_link(dir.path().join("bin/link")).unwrap(), Path::new("hello"));
    }
}
