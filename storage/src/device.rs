//! Finding the persistence device: `PARTLABEL=` (GPT name, from the kernel's uevent),
//! `LABEL=`/`UUID=` (of an oa LUKS2 header), or a path. Polled while the disks appear.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use crate::error::{Error, Result};
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

/// Does block device `dev` answer to `spec` (`PARTLABEL=`, `LABEL=`, `UUID=`)?
fn matches(spec: &str, dev: &str) -> bool {
    if let Some(want) = spec.strip_prefix("PARTLABEL=") {
        uevent(dev).lines().any(|l| l.strip_prefix("PARTNAME=") == Some(want))
    } else if let Some(want) = spec.strip_prefix("LABEL=") {
        matches!(luks_header(dev), Some(Signature::Luks { label, .. }) if label == want)
    } else if let Some(want) = spec.strip_prefix("UUID=") {
        matches!(luks_header(dev), Some(Signature::Luks { uuid, .. }) if uuid.eq_ignore_ascii_case(want))
    } else {
        false
    }
}

/// The one device among `hits` (the block devices that answer to `spec`); two or more is an
/// error naming them all: oa does not guess which disk holds the state.
fn choose(spec: &str, hits: Vec<String>) -> Result<Option<PathBuf>> {
    match hits.len() {
        0 => Ok(None),
        1 => Ok(hits.into_iter().next().map(|d| PathBuf::from(format!("/dev/{d}")))),
        _ => Err(Error::Ambiguous {
            spec: spec.to_string(),
            devices: hits.iter().map(|d| format!("/dev/{d}")).collect(),
        }),
    }
}

fn find_once(spec: &str) -> Result<Option<PathBuf>> {
    if spec.starts_with('/') {
        let p = PathBuf::from(spec);
        return Ok(p.exists().then_some(p));
    }
    choose(spec, block_devices().into_iter().filter(|d| matches(spec, d)).collect())
}

/// The device for `spec`, waiting up to `wait` for it to appear; [`Error::Missing`] when none
/// did, [`Error::Ambiguous`] when more than one answers to it.
pub fn find(spec: &str, wait: Duration) -> Result<PathBuf> {
    let end = Instant::now() + wait;
    loop {
        if let Some(p) = find_once(spec)? {
            return Ok(p);
        }
        if Instant::now() >= end {
            return Err(Error::Missing(spec.to_string()));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_label_on_two_devices_is_refused_by_name() {
        let one = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(choose("LABEL=x", vec![]).unwrap(), None);
        assert_eq!(choose("LABEL=x", one(&["vdb"])).unwrap(), Some(PathBuf::from("/dev/vdb")));
        let e = choose("PARTLABEL=oa-persist", one(&["vdb1", "vdc1"])).unwrap_err();
        assert_eq!(
            e.to_string(),
            "persistence device PARTLABEL=oa-persist is ambiguous: it matches /dev/vdb1 and /dev/vdc1"
        );
        assert_eq!(e.exit_code(), oa_contract::storage_paths::EXIT_REFUSED);
    }
}
