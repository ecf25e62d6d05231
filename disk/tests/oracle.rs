//! oa-disk's writers checked against another implementation: util-linux's `partx` (which
//! parses with libblkid) reads the images and must see the same partitions that oa-disk wrote
//! and parses back: numbers, names, type GUIDs, unique GUIDs, first and last LBAs, attribute
//! flags, and the disk GUID through `blkid --probe` (GPT); type, bootable flag, start and end and the disk identifier (MBR). Skipped,
//! saying why, when partx is not installed.

use oa_disk::gpt::{self, Layout, PartSpec};
use oa_disk::mbr::{self, MbrPart};
use oa_disk::{Guid, SectorSize};
use proptest::prelude::*;
use std::collections::BTreeMap;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::process::Command;

/// One partition as the oracle reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Seen {
    number: u32,
    start: u64,
    end: u64,
    name: String,
    type_id: String,
    uuid: String,
    flags: u64,
}

fn have(tool: &str) -> bool {
    Command::new(tool).arg("--version").output().is_ok_and(|o| o.status.success())
}

/// `key="value" key="value"` (partx --pairs); values hold no quotes in these tests.
fn pairs(line: &str) -> BTreeMap<String, String> {
    let mut m = BTreeMap::new();
    let mut rest = line.trim();
    while let Some(eq) = rest.find("=\"") {
        let key = rest[..eq].trim().to_string();
        let after = &rest[eq + 2..];
        let end = after.find('"').expect("closing quote");
        m.insert(key, after[..end].to_string());
        rest = &after[end + 1..];
    }
    m
}

fn num(s: &str) -> u64 {
    match s.strip_prefix("0x") {
        Some(h) => u64::from_str_radix(h, 16).unwrap_or_else(|e| panic!("{s}: {e}")),
        None if s.is_empty() => 0,
        None => s.parse().unwrap_or_else(|e| panic!("{s}: {e}")),
    }
}

fn partx(img: &Path) -> (String, Vec<Seen>) {
    let o = Command::new("partx")
        .args(["--pairs", "--bytes", "--output", "NR,START,END,NAME,UUID,TYPE,FLAGS,SCHEME"])
        .arg(img)
        .output()
        .expect("running partx");
    assert!(o.status.success(), "partx: {}", String::from_utf8_lossy(&o.stderr));
    let mut scheme = String::new();
    let seen = String::from_utf8_lossy(&o.stdout)
        .lines()
        .map(|l| {
            let m = pairs(l);
            scheme = m["SCHEME"].clone();
            Seen {
                number: num(&m["NR"]) as u32,
                start: num(&m["START"]),
                end: num(&m["END"]),
                name: m["NAME"].clone(),
                type_id: m["TYPE"].to_lowercase(),
                uuid: m["UUID"].to_lowercase(),
                flags: num(&m["FLAGS"]),
            }
        })
        .collect();
    (scheme, seen)
}

/// The partitions the oracle sees in `img`, or `None` (and why, printed) without one.
fn oracle(img: &Path) -> Option<(&'static str, String, Vec<Seen>)> {
    if have("partx") {
        let (scheme, seen) = partx(img);
        Some(("partx", scheme, seen))
    } else {
        eprintln!("skipped: partx (util-linux) is not installed");
        None
    }
}

fn write_image(dir: &Path, layout: &Layout) -> std::path::PathBuf {
    let img = dir.join("disk.img");
    let f = std::fs::File::create(&img).unwrap();
    f.set_len(layout.size_bytes()).unwrap();
    for (off, bytes) in layout.table_writes(&[0x90; 440]) {
        f.write_all_at(&bytes, off).unwrap();
    }
    img
}

fn spec(i: usize, name: String, mib: u64, esp: bool) -> PartSpec {
    PartSpec {
        name,
        type_guid: if esp { Guid::ESP } else { Guid::LINUX_DATA },
        guid: Guid::v4_from_bytes([i as u8 + 1; 16]),
        size_bytes: mib << 20,
        attributes: if esp { gpt::ATTR_LEGACY_BIOS_BOOTABLE } else { 0 },
    }
}

/// Write `parts`, check the oracle and oa-disk's own parser agree with the layout.
fn check_gpt(parts: &[PartSpec]) {
    let dir = tempfile::tempdir().unwrap();
    let layout = Layout::plan(Guid::v4_from_bytes([0xd1; 16]), parts);
    let img = write_image(dir.path(), &layout);
    // oa-disk's own parser: exactly the layout.
    let disk = std::fs::read(&img).unwrap();
    let (_, parsed) = gpt::parse_image(&disk, SectorSize::B512).unwrap().expect("a GPT");
    assert_eq!(parsed, layout.partitions);
    let Some((tool, scheme, seen)) = oracle(&img) else { return };
    assert_eq!(scheme, "gpt", "{tool}");
    let want: Vec<Seen> = layout
        .partitions
        .iter()
        .map(|p| Seen {
            number: p.number,
            start: p.first_lba.0,
            end: p.last_lba.0,
            name: p.name.clone(),
            type_id: p.type_guid.to_string(),
            uuid: p.guid.to_string(),
            flags: p.attributes,
        })
        .collect();
    assert_eq!(seen, want, "{tool} reads what oa-disk wrote");
    // And the disk GUID, from libblkid's low-level probe (PTUUID).
    if let Ok(o) = Command::new("blkid").args(["--probe", "--output", "export"]).arg(&img).output() {
        let out = String::from_utf8_lossy(&o.stdout);
        let ptuuid = out.lines().find_map(|l| l.strip_prefix("PTUUID=")).map(str::to_lowercase);
        assert_eq!(ptuuid, Some(layout.disk_guid.to_string()), "blkid: {out}");
    }
}

#[test]
fn gpt_of_an_oa_disk_image_reads_the_same_in_util_linux() {
    check_gpt(&[
        spec(0, "oa-esp".into(), 12, true),
        spec(1, "oa-root".into(), 3, false),
        spec(2, "oa-persist".into(), 8, false),
    ]);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 12, ..ProptestConfig::default() })]

    /// Several layouts: 1 to 6 partitions of 1 to 9 MiB, names of up to 36 characters.
    #[test]
    fn gpt_layouts_read_the_same_in_util_linux(
        parts in proptest::collection::vec(("[a-z][a-z0-9_-]{0,35}", 1u64..10, any::<bool>()), 1..7)
    ) {
        let specs: Vec<PartSpec> =
            parts.into_iter().enumerate().map(|(i, (n, mib, esp))| spec(i, n, mib, esp)).collect();
        check_gpt(&specs);
    }
}

#[test]
fn dos_mbr_of_rpi_img_reads_the_same_in_util_linux() {
    let dir = tempfile::tempdir().unwrap();
    let parts = vec![
        MbrPart { bootable: true, kind: mbr::TYPE_FAT32_LBA, start_lba: 2048, sectors: 8192 },
        MbrPart { bootable: false, kind: mbr::TYPE_LINUX, start_lba: 10240, sectors: 4096 },
    ];
    let img = dir.path().join("rpi.img");
    let f = std::fs::File::create(&img).unwrap();
    f.set_len((10240 + 4096) * 512).unwrap();
    f.write_all_at(&mbr::dos(0x1234abcd, &parts), 0).unwrap();
    drop(f);
    let m = mbr::parse(&std::fs::read(&img).unwrap()).unwrap();
    assert_eq!((m.disk_id, &m.partitions), (0x1234abcd, &parts));
    let Some((tool, scheme, seen)) = oracle(&img) else { return };
    assert_eq!(scheme, "dos", "{tool}");
    let got: Vec<_> = seen.iter().map(|s| (s.number, s.start, s.end, num_type(&s.type_id), s.flags)).collect();
    assert_eq!(got, vec![(1, 2048, 10239, 0x0c, 0x80), (2, 10240, 14335, 0x83, 0)], "{tool}: {seen:?}");
    // partx names a dos partition by the disk identifier and its number (the Pi's PARTUUID).
    assert_eq!((seen[0].uuid.as_str(), seen[1].uuid.as_str()), ("1234abcd-01", "1234abcd-02"), "{tool}");
}

fn num_type(t: &str) -> u64 {
    u64::from_str_radix(t.trim_start_matches("0x"), 16).unwrap_or_else(|e| panic!("type {t}: {e}"))
}
