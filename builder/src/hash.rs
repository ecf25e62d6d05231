//! Hashing: file digests for the manifest and content keys for the build cache.

use crate::error::{IoContext, Result};
use sha2::{Digest, Sha256};
use std::io::Read;
use std::path::Path;

/// sha256 of a file, hex.
pub fn sha256_file(path: &Path) -> Result<String> {
    let mut f = std::fs::File::open(path).ctx("opening for hashing", path)?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf).ctx("reading for hashing", path)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(hex::encode(h.finalize()))
}

/// sha256 of bytes, hex.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// A cache key built from labelled parts: the same parts give the same key.
#[derive(Default)]
pub struct Key(Sha256);

impl Key {
    pub fn new(stage: &str) -> Key {
        let mut k = Key(Sha256::new());
        k.add("stage", stage.as_bytes());
        k.add("builder", env!("CARGO_PKG_VERSION").as_bytes());
        k
    }
    pub fn add(&mut self, label: &str, bytes: &[u8]) -> &mut Key {
        self.0.update((label.len() as u64).to_le_bytes());
        self.0.update(label.as_bytes());
        self.0.update((bytes.len() as u64).to_le_bytes());
        self.0.update(bytes);
        self
    }
    /// Add a whole directory tree: relative paths, modes, symlink targets, file contents.
    pub fn add_tree(&mut self, label: &str, root: &Path) -> Result<&mut Key> {
        use std::os::unix::fs::PermissionsExt;
        self.add("tree", label.as_bytes());
        for entry in walkdir::WalkDir::new(root).sort_by_file_name() {
            let entry = entry.map_err(|e| crate::error::Error::Walk(format!("walking {}: {e}", root.display())))?;
            let rel = entry.path().strip_prefix(root).unwrap_or(entry.path());
            let md = entry.path().symlink_metadata().ctx("reading metadata of", entry.path())?;
            self.add("path", rel.as_os_str().as_encoded_bytes());
            self.add("mode", &md.permissions().mode().to_le_bytes());
            if md.file_type().is_symlink() {
                let t = std::fs::read_link(entry.path()).ctx("reading symlink", entry.path())?;
                self.add("link", t.as_os_str().as_encoded_bytes());
            } else if md.is_file() {
                let d = sha256_file(entry.path())?;
                self.add("file", d.as_bytes());
            }
        }
        Ok(self)
    }
    pub fn hex(&self) -> String {
        hex::encode(self.0.clone().finalize())
    }
}

/// A short suffix that differs between calls in one process.
pub fn unique_suffix() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    let t = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.subsec_nanos()).unwrap_or(0);
    format!("{t:x}{}", N.fetch_add(1, Ordering::Relaxed))
}
