//! Resolving a client's path inside the served root, and nowhere else.
//!
//! A request path is split on `/` (and `\`, which some TFTP clients send); empty and `.`
//! components are skipped; `..`, NUL bytes and anything that would make the path absolute are
//! refused outright. The joined path is then canonicalised (symlinks followed) and must still
//! be inside the canonical root, so a symlink pointing out of the root is refused too.

use std::path::{Component, Path, PathBuf};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    #[error("path {0:?} climbs out of the root (`..`)")]
    DotDot(String),
    #[error("path {0:?} holds a NUL byte or a drive prefix")]
    BadChar(String),
    #[error("path {0:?} leads out of the served root (symlink)")]
    Escapes(String),
    #[error("path {0:?} names no file")]
    Empty(String),
    #[error("{0:?}: not found")]
    NotFound(String),
    #[error("{0:?}: not a regular file")]
    NotAFile(String),
}

/// The served root, canonicalised once.
#[derive(Debug, Clone)]
pub struct Root {
    canonical: PathBuf,
}

impl Root {
    pub fn new(dir: &Path) -> std::io::Result<Root> {
        Ok(Root { canonical: std::fs::canonicalize(dir)? })
    }

    pub fn path(&self) -> &Path {
        &self.canonical
    }

    /// The relative, cleaned path of a request (`a/b/c`), or why it is refused. Pure: no
    /// file system access.
    pub fn clean(request: &str) -> Result<PathBuf, Refused> {
        if request.contains('\0') {
            return Err(Refused::BadChar(request.into()));
        }
        let mut out = PathBuf::new();
        for part in request.split(['/', '\\']) {
            match part {
                "" | "." => continue,
                ".." => return Err(Refused::DotDot(request.into())),
                p if p.contains(':') && p.len() == 2 && out.as_os_str().is_empty() => {
                    return Err(Refused::BadChar(request.into())); // `C:` drive prefixes
                }
                p => out.push(p),
            }
        }
        // Belt and braces: what is left must be plain components.
        if out.as_os_str().is_empty() {
            return Err(Refused::Empty(request.into()));
        }
        if !out.components().all(|c| matches!(c, Component::Normal(_))) {
            return Err(Refused::DotDot(request.into()));
        }
        Ok(out)
    }

    /// The regular file `request` names inside the root (symlinks followed, but only within it).
    pub fn resolve(&self, request: &str) -> Result<PathBuf, Refused> {
        let rel = Self::clean(request)?;
        let joined = self.canonical.join(&rel);
        let real = std::fs::canonicalize(&joined).map_err(|_| Refused::NotFound(request.into()))?;
        if !real.starts_with(&self.canonical) {
            return Err(Refused::Escapes(request.into()));
        }
        let md = std::fs::metadata(&real).map_err(|_| Refused::NotFound(request.into()))?;
        if !md.is_file() {
            return Err(Refused::NotAFile(request.into()));
        }
        Ok(real)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clean_refuses_traversal() {
        assert_eq!(Root::clean("/vmlinuz").unwrap(), PathBuf::from("vmlinuz"));
        assert_eq!(Root::clean("a/./b//c").unwrap(), PathBuf::from("a/b/c"));
        assert!(matches!(Root::clean("../etc/passwd"), Err(Refused::DotDot(_))));
        assert!(matches!(Root::clean("a/../../b"), Err(Refused::DotDot(_))));
        assert!(matches!(Root::clean("a\\..\\b"), Err(Refused::DotDot(_))));
        assert!(matches!(Root::clean("a\0b"), Err(Refused::BadChar(_))));
        assert!(matches!(Root::clean("C:/x"), Err(Refused::BadChar(_))));
        assert!(matches!(Root::clean("/"), Err(Refused::Empty(_))));
        // An absolute path is taken relative to the root, never as a host path.
        assert_eq!(Root::clean("/etc/passwd").unwrap(), PathBuf::from("etc/passwd"));
    }

    #[test]
    fn resolve_stays_inside() {
        let t = tempfile::tempdir().unwrap();
        let root = t.path().join("root");
        std::fs::create_dir_all(root.join("sub")).unwrap();
        std::fs::write(root.join("sub/f"), b"x").unwrap();
        std::fs::write(t.path().join("secret"), b"s").unwrap();
        std::os::unix::fs::symlink(t.path().join("secret"), root.join("out")).unwrap();
        std::os::unix::fs::symlink("sub/f", root.join("in")).unwrap();
        let r = Root::new(&root).unwrap();
        assert!(r.resolve("sub/f").is_ok());
        assert!(r.resolve("in").is_ok(), "a symlink within the root is fine");
        assert!(matches!(r.resolve("out"), Err(Refused::Escapes(_))));
        assert!(matches!(r.resolve("sub"), Err(Refused::NotAFile(_))));
        assert!(matches!(r.resolve("nope"), Err(Refused::NotFound(_))));
        assert!(matches!(r.resolve("/etc/passwd"), Err(Refused::NotFound(_))));
        assert!(matches!(r.resolve("sub/../../secret"), Err(Refused::DotDot(_))));
    }
}
