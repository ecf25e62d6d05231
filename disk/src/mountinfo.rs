//! `/proc/self/mountinfo`: one line per mount (proc(5)):
//!
//! ```text
//! 36 35 98:0 /mnt1 /mnt2 rw,noatime master:1 - ext3 /dev/root rw,errors=continue
//! (1)(2)(3)   (4)   (5)      (6)      (7)   (8) (9)    (10)         (11)
//! ```
//!
//! The kernel escapes space, tab, newline and backslash in paths as three octal digits
//! (`\040`, `\011`, `\012`, `\134`); [`parse`] undoes that, so mount points compare equal to the
//! paths they are.

use std::ffi::OsString;
use std::fmt;
use std::os::unix::ffi::OsStringExt;
use std::path::{Path, PathBuf};

/// Where the kernel lists this process's mounts.
pub const PATH: &str = "/proc/self/mountinfo";

/// One mount.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountInfo {
    pub mount_id: u32,
    pub parent_id: u32,
    /// The `st_dev` of files on it: major and minor device number.
    pub major: u32,
    pub minor: u32,
    /// The folder of the filesystem mounted here (`/` unless a bind mount or subvolume).
    pub root: PathBuf,
    pub mount_point: PathBuf,
    /// Per-mount options (`rw,noatime`).
    pub options: String,
    /// Optional fields (`shared:1`, `master:2`).
    pub optional: Vec<String>,
    pub fs_type: String,
    /// The mount source (`/dev/sdb1`, `proc`, ...), unescaped.
    pub source: String,
    /// Per-superblock options.
    pub super_options: String,
}

impl MountInfo {
    /// `major:minor`, as sysfs writes it in `dev` files.
    pub fn dev(&self) -> String {
        format!("{}:{}", self.major, self.minor)
    }
}

/// A line that is not a mountinfo entry, or the file could not be read.
#[derive(Debug)]
pub enum MountInfoError {
    Read { path: PathBuf, source: std::io::Error },
    Line { number: usize, reason: &'static str },
}

impl fmt::Display for MountInfoError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MountInfoError::Read { path, source } => write!(f, "reading {}: {source}", path.display()),
            MountInfoError::Line { number, reason } => write!(f, "{PATH} line {number}: {reason}"),
        }
    }
}

impl std::error::Error for MountInfoError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            MountInfoError::Read { source, .. } => Some(source),
            MountInfoError::Line { .. } => None,
        }
    }
}

/// Undo the kernel's octal escapes (`\040` is a space); other bytes are kept as they are.
pub fn unescape(field: &str) -> Vec<u8> {
    let b = field.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && i + 4 <= b.len() {
            let d = &b[i + 1..i + 4];
            if d.iter().all(|c| (b'0'..=b'7').contains(c)) && d[0] <= b'3' {
                out.push((d[0] - b'0') << 6 | (d[1] - b'0') << 3 | (d[2] - b'0'));
                i += 4;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    out
}

fn path(field: &str) -> PathBuf {
    PathBuf::from(OsString::from_vec(unescape(field)))
}

fn text(field: &str) -> String {
    String::from_utf8_lossy(&unescape(field)).into_owned()
}

/// Parse one line.
pub fn parse_line(line: &str) -> Result<MountInfo, &'static str> {
    let f: Vec<&str> = line.split(' ').collect();
    let sep = f.iter().position(|x| *x == "-").ok_or("no \" - \" separator")?;
    if sep < 6 || f.len() < sep + 3 {
        return Err("too few fields");
    }
    let num = |s: &str| s.parse::<u32>().map_err(|_| "a number field is not a number");
    let (major, minor) = f[2].split_once(':').ok_or("device is not major:minor")?;
    Ok(MountInfo {
        mount_id: num(f[0])?,
        parent_id: num(f[1])?,
        major: num(major)?,
        minor: num(minor)?,
        root: path(f[3]),
        mount_point: path(f[4]),
        options: f[5].to_string(),
        optional: f[6..sep].iter().map(|s| s.to_string()).collect(),
        fs_type: text(f[sep + 1]),
        source: text(f[sep + 2]),
        super_options: f.get(sep + 3).map(|s| text(s)).unwrap_or_default(),
    })
}

/// Parse the whole table (empty lines are skipped).
pub fn parse(table: &str) -> Result<Vec<MountInfo>, MountInfoError> {
    table
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.is_empty())
        .map(|(i, l)| parse_line(l).map_err(|reason| MountInfoError::Line { number: i + 1, reason }))
        .collect()
}

/// Read and parse this process's mount table ([`PATH`]).
pub fn read() -> Result<Vec<MountInfo>, MountInfoError> {
    read_from(Path::new(PATH))
}

/// Read and parse a mount table in mountinfo format.
pub fn read_from(p: &Path) -> Result<Vec<MountInfo>, MountInfoError> {
    let t = std::fs::read_to_string(p).map_err(|source| MountInfoError::Read { path: p.to_path_buf(), source })?;
    parse(&t)
}

#[cfg(test)]
mod tests {
    use super::*;

    const TABLE: &str = "22 1 0:21 / /proc rw,nosuid - proc proc rw\n\
        36 35 98:0 /mnt1 /mnt2 rw,noatime master:1 shared:7 - ext3 /dev/root rw,errors=continue\n\
        40 1 8:17 / /media/my\\040stick rw,relatime - vfat /dev/sdb1 rw\n\
        41 1 0:50 /sub\\134vol /data\\011tab\\012nl rw - btrfs /dev/disk/by-label/my\\040disk rw,space_cache\n";

    #[test]
    fn parses_fields_and_optional_fields() {
        let m = parse(TABLE).unwrap();
        assert_eq!(m.len(), 4);
        assert_eq!(
            m[1],
            MountInfo {
                mount_id: 36,
                parent_id: 35,
                major: 98,
                minor: 0,
                root: "/mnt1".into(),
                mount_point: "/mnt2".into(),
                options: "rw,noatime".into(),
                optional: vec!["master:1".into(), "shared:7".into()],
                fs_type: "ext3".into(),
                source: "/dev/root".into(),
                super_options: "rw,errors=continue".into(),
            }
        );
        assert_eq!(m[0].optional, Vec::<String>::new());
        assert_eq!(m[2].dev(), "8:17");
    }

    #[test]
    fn escapes_are_undone() {
        let m = parse(TABLE).unwrap();
        assert_eq!(m[2].mount_point, Path::new("/media/my stick"));
        assert_eq!(m[3].mount_point, Path::new("/data\ttab\nnl"));
        assert_eq!(m[3].root, Path::new("/sub\\vol"));
        assert_eq!(m[3].source, "/dev/disk/by-label/my disk");
        // Not an escape: kept as is.
        assert_eq!(unescape("a\\9b\\04"), b"a\\9b\\04");
        assert_eq!(unescape("\\377"), [0xff]);
        assert_eq!(unescape("\\400"), b"\\400");
    }

    #[test]
    fn bad_lines_are_errors() {
        for bad in ["", "1 2 3", "x 1 0:1 / / rw - proc proc rw", "1 1 01 / / rw - proc proc rw", "1 1 0:1 / / rw -"] {
            assert!(parse_line(bad).is_err(), "{bad:?}");
        }
        let e = parse("22 1 0:21 / /proc rw - proc proc rw\nbroken\n").unwrap_err();
        assert!(e.to_string().contains("line 2"), "{e}");
    }

    #[test]
    fn reads_this_process_table() {
        if Path::new(PATH).exists() {
            let m = read().unwrap();
            assert!(m.iter().any(|e| e.mount_point == Path::new("/")), "{m:?}");
        }
    }
}
