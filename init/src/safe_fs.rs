//! File operations inside a root folder that never follow a symbolic link: every component is
//! opened relative to its parent's file descriptor with `O_NOFOLLOW`, and ownership and modes
//! are changed on the opened descriptors, never by path. The run-time configuration
//! (runtime_config.rs) writes through these into a root whose users may own some folders
//! (a home, `~/.ssh`): a link planted there is refused, not followed out of the root or into
//! `/etc`.

use std::io::{Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

use nix::errno::Errno;
use nix::fcntl::{AtFlags, OFlag};
use nix::sys::stat::{Mode, SFlag};
use nix::unistd::{Gid, Uid};

/// What went wrong, naming the path (inside the root) and the operation.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FsError {
    /// A component is a symbolic link: refused, never followed.
    #[error("{0} is a symbolic link: refused (oa writes only through real folders and files)")]
    Symlink(String),
    /// A component exists but is not what was needed (a folder, a regular file).
    #[error("{path} is not a {expected}")]
    NotA { path: String, expected: &'static str },
    #[error("{op} {path}: {errno}")]
    Sys { op: &'static str, path: String, errno: Errno },
    /// A path that would leave the root (`..`, `.`, empty components).
    #[error("{0:?} is not a plain relative path (no ., .. or empty components)")]
    BadPath(String),
    #[error("{path} is larger than {max} bytes")]
    TooLarge { path: String, max: u64 },
}

pub type Result<T> = std::result::Result<T, FsError>;

fn sys<'a>(op: &'static str, path: &'a str) -> impl FnOnce(Errno) -> FsError + 'a {
    move |errno| FsError::Sys { op, path: path.to_string(), errno }
}

/// The owner and permission bits of a file or folder.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Meta {
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
}

/// An open folder; `path` is its path inside the root, for messages (`/` for the root).
#[derive(Debug)]
pub struct Dir {
    fd: OwnedFd,
    path: String,
}

fn own(fd: RawFd) -> OwnedFd {
    // SAFETY: `fd` was just returned by a successful openat and is owned by no one else.
    unsafe { OwnedFd::from_raw_fd(fd) }
}

/// The components of `rel` (a path relative to a root, leading `/` allowed), checked.
pub fn components(rel: &str) -> Result<Vec<&str>> {
    let t = rel.trim_start_matches('/');
    if t.is_empty() {
        return Ok(Vec::new());
    }
    let c: Vec<&str> = t.split('/').collect();
    if c.iter().any(|c| c.is_empty() || *c == "." || *c == ".." || c.contains('\0')) {
        return Err(FsError::BadPath(rel.to_string()));
    }
    Ok(c)
}

impl Dir {
    /// Open the root folder itself (the caller chose it: `/` or /sysroot; it may be a link).
    pub fn open_root(path: &std::path::Path) -> Result<Dir> {
        let shown = path.display().to_string();
        let fd = nix::fcntl::openat(None, path, OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC, Mode::empty())
            .map_err(sys("open", &shown))?;
        Ok(Dir { fd: own(fd), path: "/".into() })
    }

    #[cfg(test)]
    pub fn path(&self) -> &str {
        &self.path
    }

    fn child_path(&self, name: &str) -> String {
        if self.path == "/" {
            format!("/{name}")
        } else {
            format!("{}/{name}", self.path)
        }
    }

    /// lstat of `name` in this folder; None when it does not exist.
    fn lstat(&self, name: &str) -> Result<Option<nix::sys::stat::FileStat>> {
        match nix::sys::stat::fstatat(Some(self.fd.as_raw_fd()), name, AtFlags::AT_SYMLINK_NOFOLLOW) {
            Ok(st) => Ok(Some(st)),
            Err(Errno::ENOENT) => Ok(None),
            Err(e) => Err(sys("stat", &self.child_path(name))(e)),
        }
    }

    /// Open the folder `name` of this folder; a symbolic link is refused. None when missing.
    pub fn open_dir(&self, name: &str) -> Result<Option<Dir>> {
        let path = self.child_path(name);
        match self.lstat(name)? {
            None => return Ok(None),
            Some(st) if kind(st.st_mode) == SFlag::S_IFLNK => return Err(FsError::Symlink(path)),
            Some(st) if kind(st.st_mode) != SFlag::S_IFDIR => return Err(FsError::NotA { path, expected: "folder" }),
            Some(_) => {}
        }
        // O_NOFOLLOW again: a link swapped in after the lstat fails here (ELOOP/ENOTDIR).
        let flags = OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
        match nix::fcntl::openat(Some(self.fd.as_raw_fd()), name, flags, Mode::empty()) {
            Ok(fd) => Ok(Some(Dir { fd: own(fd), path })),
            Err(Errno::ELOOP | Errno::ENOTDIR) => Err(FsError::Symlink(path)),
            Err(Errno::ENOENT) => Ok(None),
            Err(e) => Err(sys("open", &path)(e)),
        }
    }

    /// [`Dir::open_dir`], creating the folder with `mode` (and `owner`, on its descriptor)
    /// when missing. Returns the folder and whether it was created.
    pub fn open_or_create_dir(&self, name: &str, mode: u32, owner: Option<(u32, u32)>) -> Result<(Dir, bool)> {
        if let Some(d) = self.open_dir(name)? {
            return Ok((d, false));
        }
        let path = self.child_path(name);
        match nix::sys::stat::mkdirat(Some(self.fd.as_raw_fd()), name, Mode::from_bits_truncate(mode)) {
            Ok(()) | Err(Errno::EEXIST) => {}
            Err(e) => return Err(sys("create folder", &path)(e)),
        }
        let d = self.open_dir(name)?.ok_or(FsError::Sys { op: "open", path, errno: Errno::ENOENT })?;
        // The umask may have taken bits away; the owner is set on the descriptor.
        d.set_meta(mode, owner)?;
        Ok((d, true))
    }

    /// Walk `rel` (folders below this one), each component through [`Dir::open_dir`];
    /// missing folders are created 0755 root-owned when `create`, else None.
    pub fn walk(&self, rel: &str, create: bool) -> Result<Option<Dir>> {
        let mut cur: Option<Dir> = None;
        for c in components(rel)? {
            let here = cur.as_ref().unwrap_or(self);
            let next = if create { Some(here.open_or_create_dir(c, 0o755, None)?.0) } else { here.open_dir(c)? };
            match next {
                Some(d) => cur = Some(d),
                None => return Ok(None),
            }
        }
        match cur {
            Some(d) => Ok(Some(d)),
            None => self.dup().map(Some),
        }
    }

    fn dup(&self) -> Result<Dir> {
        let fd = self.fd.try_clone().map_err(|e| FsError::Sys {
            op: "dup",
            path: self.path.clone(),
            errno: Errno::from_raw(e.raw_os_error().unwrap_or(0)),
        })?;
        Ok(Dir { fd, path: self.path.clone() })
    }

    /// Set the mode (and the owner) of this folder on its descriptor.
    pub fn set_meta(&self, mode: u32, owner: Option<(u32, u32)>) -> Result<()> {
        set_meta(self.fd.as_raw_fd(), &self.path, mode, owner)
    }

    /// Mode and owner of this folder.
    pub fn meta(&self) -> Result<Meta> {
        let st = nix::sys::stat::fstat(self.fd.as_raw_fd()).map_err(sys("stat", &self.path))?;
        Ok(meta_of(&st))
    }

    /// The regular file `name` of this folder (content, mode, owner), at most `max` bytes;
    /// None when missing; a symbolic link or anything but a regular file is refused.
    pub fn read_file(&self, name: &str, max: u64) -> Result<Option<(Vec<u8>, Meta)>> {
        let path = self.child_path(name);
        match self.lstat(name)? {
            None => return Ok(None),
            Some(st) if kind(st.st_mode) == SFlag::S_IFLNK => return Err(FsError::Symlink(path)),
            Some(st) if kind(st.st_mode) != SFlag::S_IFREG => {
                return Err(FsError::NotA { path, expected: "regular file" })
            }
            Some(_) => {}
        }
        let flags = OFlag::O_RDONLY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC | OFlag::O_NONBLOCK;
        let fd = match nix::fcntl::openat(Some(self.fd.as_raw_fd()), name, flags, Mode::empty()) {
            Ok(fd) => own(fd),
            Err(Errno::ELOOP) => return Err(FsError::Symlink(path)),
            Err(Errno::ENOENT) => return Ok(None),
            Err(e) => return Err(sys("open", &path)(e)),
        };
        let st = nix::sys::stat::fstat(fd.as_raw_fd()).map_err(sys("stat", &path))?;
        if kind(st.st_mode) != SFlag::S_IFREG {
            return Err(FsError::NotA { path, expected: "regular file" });
        }
        let mut data = Vec::new();
        std::fs::File::from(fd).take(max.saturating_add(1)).read_to_end(&mut data).map_err(|e| FsError::Sys {
            op: "read",
            path: path.clone(),
            errno: io_errno(&e),
        })?;
        if data.len() as u64 > max {
            return Err(FsError::TooLarge { path, max });
        }
        Ok(Some((data, meta_of(&st))))
    }

    /// Replace `name` in this folder with `data`: a temporary file created here with `mode`
    /// (O_CREAT|O_EXCL|O_NOFOLLOW, so nothing is written through a link), its mode and owner
    /// set on the descriptor, synced, then renamed over `name` inside this folder. A symbolic
    /// link at `name` is refused, not replaced.
    pub fn write_file(&self, name: &str, data: &[u8], mode: u32, owner: Option<(u32, u32)>) -> Result<()> {
        let path = self.child_path(name);
        if let Some(st) = self.lstat(name)? {
            if kind(st.st_mode) == SFlag::S_IFLNK {
                return Err(FsError::Symlink(path));
            }
            if kind(st.st_mode) != SFlag::S_IFREG {
                return Err(FsError::NotA { path, expected: "regular file" });
            }
        }
        let tmp = format!(".{name}.oa-tmp");
        let tmp_path = self.child_path(&tmp);
        let _ = nix::unistd::unlinkat(Some(self.fd.as_raw_fd()), tmp.as_str(), nix::unistd::UnlinkatFlags::NoRemoveDir);
        let flags = OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
        let fd = own(nix::fcntl::openat(
            Some(self.fd.as_raw_fd()),
            tmp.as_str(),
            flags,
            Mode::from_bits_truncate(mode & 0o777),
        )
        .map_err(sys("create", &tmp_path))?);
        let done = (|| {
            // Mode (the umask may have taken bits away; setuid bits need fchmod) and owner
            // before any byte is written.
            set_meta(fd.as_raw_fd(), &tmp_path, mode, owner)?;
            let mut f = std::fs::File::from(fd);
            f.write_all(data).map_err(|e| FsError::Sys { op: "write", path: tmp_path.clone(), errno: io_errno(&e) })?;
            f.sync_all().map_err(|e| FsError::Sys { op: "sync", path: tmp_path.clone(), errno: io_errno(&e) })?;
            nix::fcntl::renameat(Some(self.fd.as_raw_fd()), tmp.as_str(), Some(self.fd.as_raw_fd()), name)
                .map_err(sys("rename over", &path))
        })();
        if done.is_err() {
            let _ =
                nix::unistd::unlinkat(Some(self.fd.as_raw_fd()), tmp.as_str(), nix::unistd::UnlinkatFlags::NoRemoveDir);
        }
        done
    }

    /// Remove the file `name` of this folder (a link itself, never its target); missing is fine.
    pub fn remove_file(&self, name: &str) -> Result<()> {
        match nix::unistd::unlinkat(Some(self.fd.as_raw_fd()), name, nix::unistd::UnlinkatFlags::NoRemoveDir) {
            Ok(()) | Err(Errno::ENOENT) => Ok(()),
            Err(e) => Err(sys("remove", &self.child_path(name))(e)),
        }
    }
}

fn kind(mode: nix::libc::mode_t) -> SFlag {
    SFlag::from_bits_truncate(mode & SFlag::S_IFMT.bits())
}

fn meta_of(st: &nix::sys::stat::FileStat) -> Meta {
    Meta { mode: st.st_mode & 0o7777, uid: st.st_uid, gid: st.st_gid }
}

fn io_errno(e: &std::io::Error) -> Errno {
    Errno::from_raw(e.raw_os_error().unwrap_or(nix::libc::EIO))
}

fn set_meta(fd: RawFd, path: &str, mode: u32, owner: Option<(u32, u32)>) -> Result<()> {
    if let Some((uid, gid)) = owner {
        nix::unistd::fchown(fd, Some(Uid::from_raw(uid)), Some(Gid::from_raw(gid))).map_err(sys("chown", path))?;
    }
    // After fchown, which clears the setuid/setgid bits.
    nix::sys::stat::fchmod(fd, Mode::from_bits_truncate(mode)).map_err(sys("chmod", path))
}

/// The folder of `rel` (a file path inside the root) and the file's name: every folder opened
/// without following links, created 0755 root-owned when `create`. None when a folder is
/// missing and not `create`.
pub fn parent_of<'a>(root: &Dir, rel: &'a str, create: bool) -> Result<Option<(Dir, &'a str)>> {
    let c = components(rel)?;
    let Some((name, dirs)) = c.split_last() else { return Err(FsError::BadPath(rel.to_string())) };
    let dirs = dirs.join("/");
    Ok(root.walk(&dirs, create)?.map(|d| (d, *name)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    use std::path::PathBuf;

    fn tempdir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("oa-init-safefs-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn refuses_links_at_every_component() {
        let t = tempdir("links");
        let root = t.join("root");
        let outside = t.join("outside");
        std::fs::create_dir_all(root.join("etc")).unwrap();
        std::fs::create_dir_all(&outside).unwrap();
        std::fs::write(outside.join("f"), "outside\n").unwrap();
        std::os::unix::fs::symlink(&outside, root.join("etc/link")).unwrap();
        std::os::unix::fs::symlink(outside.join("f"), root.join("etc/file")).unwrap();
        let r = Dir::open_root(&root).unwrap();
        // A folder link in the middle, a file link at the end: refused, nothing written outside.
        let e = parent_of(&r, "/etc/link/x", true).unwrap_err();
        assert_eq!(e, FsError::Symlink("/etc/link".into()));
        let (etc, name) = parent_of(&r, "/etc/file", true).unwrap().unwrap();
        assert_eq!(etc.write_file(name, b"x", 0o644, None).unwrap_err(), FsError::Symlink("/etc/file".into()));
        assert_eq!(etc.read_file(name, 10).unwrap_err(), FsError::Symlink("/etc/file".into()));
        assert_eq!(std::fs::read_to_string(outside.join("f")).unwrap(), "outside\n");
        assert!(!outside.join("x").exists());
        assert!(components("/a/../b").is_err() && components("a//b").is_err() && components("/a/./b").is_err());
        std::fs::remove_dir_all(&t).unwrap();
    }

    #[test]
    fn writes_with_mode_and_replaces_atomically() {
        let t = tempdir("write");
        let r = Dir::open_root(&t).unwrap();
        let (d, name) = parent_of(&r, "/a/b/c.conf", true).unwrap().unwrap();
        assert_eq!(d.path(), "/a/b");
        let me = (nix::unistd::getuid().as_raw(), nix::unistd::getgid().as_raw());
        d.write_file(name, b"one", 0o600, Some(me)).unwrap();
        d.write_file(name, b"two", 0o640, None).unwrap();
        let p = t.join("a/b/c.conf");
        assert_eq!(std::fs::read(&p).unwrap(), b"two");
        assert_eq!(std::fs::metadata(&p).unwrap().permissions().mode() & 0o7777, 0o640);
        assert_eq!(std::fs::metadata(t.join("a/b")).unwrap().permissions().mode() & 0o777, 0o755);
        assert_eq!(std::fs::metadata(&p).unwrap().uid(), me.0);
        let (data, m) = d.read_file(name, 3).unwrap().unwrap();
        assert_eq!((data.as_slice(), m.mode), (&b"two"[..], 0o640));
        assert!(matches!(d.read_file(name, 2), Err(FsError::TooLarge { .. })));
        assert_eq!(std::fs::read_dir(t.join("a/b")).unwrap().count(), 1, "no temporary file left");
        d.remove_file(name).unwrap();
        d.remove_file(name).unwrap();
        assert!(!p.exists());
        assert!(parent_of(&r, "/missing/x", false).unwrap().is_none());
        std::fs::remove_dir_all(&t).unwrap();
    }
}
