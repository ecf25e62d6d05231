//! Finding the persistence device: `PARTLABEL=` (GPT name, from the kernel's uevent),
//! `LABEL=`/`UUID=` (of an oa LUKS2 header), or a path. Polled while the disks appear.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use crate::probe::{self, Signature};

fn uevent(dev: &str) -> String {
    std::fs::read_to_string(format!("/sys/class/block/{dev}/uevent")).unwrap_or_default()
}

fn block_devices() -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir("/sys/class/block")
        .map(|rd| rd.flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect())
        .unwrap_or_default();
    v.sort();
    v
}

fn luks_header(dev: &str) -> Option<Signature> {
    use std::io::Read;
    let mut f = std::fs::File::open(format!("/dev/{dev}")).ok()?;
    let mut h = vec![0u8; 4096];
    f.read_exact(&mut h).ok()?;
    probe::detect(&h, &[]).into_iter().find(|s| matches!(s, Signature::Luks { .. }))
}

fn find_once(spec: &str) -> Option<PathBuf> {
    if spec.starts_with('/') {
        let p = PathBuf::from(spec);
        return p.exists().then_some(p);
    }
    for dev in block_devices() {
        let hit = if let Some(want) = spec.strip_prefix("PARTLABEL=") {
            uevent(&dev).lines().any(|l| l.strip_prefix("PARTNAME=") == Some(want))
        } else if let Some(want) = spec.strip_prefix("LABEL=") {
            matches!(luks_header(&dev), Some(Signature::Luks { label, .. }) if label == want)
        } else if let Some(want) = spec.strip_prefix("UUID=") {
            matches!(luks_header(&dev), Some(Signature::Luks { uuid, .. }) if uuid.eq_ignore_ascii_case(want))
        } else {
            false
        };
        if hit {
            return Some(PathBuf::from(format!("/dev/{dev}")));
        }
    }
    None
}

/// The device for `spec`, waiting up to `wait` for it to appear.
pub fn find(spec: &str, wait: Duration) -> Option<PathBuf> {
    let end = Instant::now() + wait;
    loop {
        if let Some(p) = find_once(spec) {
            return Some(p);
        }
        if Instant::now() >= end {
            return None;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}
