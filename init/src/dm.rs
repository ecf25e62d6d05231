//! Device-mapper: map a root image through the `verity` target (`oa.verity=`).
//!
//! A small hand-written wrapper over the ioctls of /dev/mapper/control (linux/dm-ioctl.h,
//! interface version 4): DM_DEV_CREATE, DM_TABLE_LOAD with one target, DM_DEV_SUSPEND to resume
//! (activate) it, DM_DEV_REMOVE when a step after the create fails. No kept crate covers it:
//! devicemapper-rs is big and pulls in much more than these four calls.

use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::time::Instant;

use nix::sys::stat::{major, makedev, minor, mknod, Mode, SFlag};
use oa_contract::cmdline::{VerityArgs, VERITY_BLOCK_SIZE};

use crate::devices::{POLL, WAIT};
use crate::error::{Error, IoContext, Result, SysContext};

const CONTROL: &str = "/dev/mapper/control";
/// misc major 10, minor 236 (MAPPER_CTRL_MINOR).
const CONTROL_MAJOR: u64 = 10;
const CONTROL_MINOR: u64 = 236;

const DM_NAME_LEN: usize = 128;
const DM_UUID_LEN: usize = 129;
const DM_MAX_TYPE_NAME: usize = 16;
const DM_READONLY_FLAG: u32 = 1 << 0;

/// `struct dm_ioctl` from <linux/dm-ioctl.h>; its size is 312 bytes.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct DmIoctl {
    version: [u32; 3],
    data_size: u32,
    data_start: u32,
    target_count: u32,
    open_count: i32,
    flags: u32,
    event_nr: u32,
    padding: u32,
    dev: u64,
    name: [u8; DM_NAME_LEN],
    uuid: [u8; DM_UUID_LEN],
    data: [u8; 7],
}

/// `struct dm_target_spec` from <linux/dm-ioctl.h>, followed by its NUL-terminated params.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct DmTargetSpec {
    sector_start: u64,
    length: u64,
    status: i32,
    next: u32,
    target_type: [u8; DM_MAX_TYPE_NAME],
}

mod ioctls {
    use super::DmIoctl;
    const DM_IOCTL: u8 = 0xfd;
    nix::ioctl_readwrite!(dm_dev_create, DM_IOCTL, 3, DmIoctl);
    nix::ioctl_readwrite!(dm_dev_remove, DM_IOCTL, 4, DmIoctl);
    nix::ioctl_readwrite!(dm_dev_suspend, DM_IOCTL, 6, DmIoctl);
    nix::ioctl_readwrite!(dm_table_load, DM_IOCTL, 9, DmIoctl);
}

/// The `verity` target's parameters: format 1, data and hash on `dev` (the tree right after
/// the data blocks), 4 KiB blocks, sha256.
/// The verity target's parameters: the hash tree after the data on `dev`, or on `tree` from
/// its first block (`oa.verity.hash=`).
pub fn verity_params(dev: &str, tree: Option<&str>, v: &VerityArgs) -> String {
    let salt = if v.salt.is_empty() { "-" } else { v.salt.as_str() };
    let bs = VERITY_BLOCK_SIZE;
    let (hash_dev, hash_start) = match tree {
        Some(t) => (t, 0),
        None => (dev, v.data_blocks),
    };
    format!("1 {dev} {hash_dev} {bs} {bs} {n} {hash_start} sha256 {} {salt}", v.root_hash, n = v.data_blocks)
}

/// The length of the mapped device in 512-byte sectors.
pub fn verity_sectors(v: &VerityArgs) -> u64 {
    v.data_blocks * (VERITY_BLOCK_SIZE / 512)
}

/// An ioctl buffer: the header, then (for a table load) the target specs; 8-byte aligned.
struct Buf {
    words: Vec<u64>,
}

impl Buf {
    fn new(name: &str, extra: usize, flags: u32) -> Result<Buf> {
        let hdr = std::mem::size_of::<DmIoctl>();
        let len = (hdr + extra).div_ceil(8) * 8;
        let mut b = Buf { words: vec![0u64; len / 8] };
        if name.is_empty() || name.len() >= DM_NAME_LEN || name.contains('/') {
            return Err(Error::Unexpected { what: "device-mapper name".into(), why: format!("{name:?} is not valid") });
        }
        let h = b.header();
        h.version = [4, 0, 0];
        h.data_size = len as u32;
        h.data_start = hdr as u32;
        h.flags = flags;
        h.name[..name.len()].copy_from_slice(name.as_bytes());
        Ok(b)
    }
    fn header(&mut self) -> &mut DmIoctl {
        // SAFETY: the buffer is at least size_of::<DmIoctl>() bytes, 8-byte aligned, and every
        // bit pattern is a valid DmIoctl (integers and byte arrays).
        unsafe { &mut *(self.words.as_mut_ptr() as *mut DmIoctl) }
    }
    fn bytes(&mut self) -> &mut [u8] {
        let n = self.words.len() * 8;
        // SAFETY: the u64 buffer viewed as its n bytes.
        unsafe { std::slice::from_raw_parts_mut(self.words.as_mut_ptr() as *mut u8, n) }
    }
}

/// The DM_TABLE_LOAD buffer of one target: header, spec, params (NUL-terminated).
fn table_buf(name: &str, target: &str, length: u64, params: &str) -> Result<Buf> {
    let hdr = std::mem::size_of::<DmIoctl>();
    let spec = std::mem::size_of::<DmTargetSpec>();
    let body = (spec + params.len() + 1).div_ceil(8) * 8;
    let mut b = Buf::new(name, body, DM_READONLY_FLAG)?;
    b.header().target_count = 1;
    let s = DmTargetSpec {
        sector_start: 0,
        length,
        status: 0,
        next: body as u32,
        target_type: {
            let mut t = [0u8; DM_MAX_TYPE_NAME];
            t[..target.len()].copy_from_slice(target.as_bytes());
            t
        },
    };
    let bytes = b.bytes();
    // SAFETY: DmTargetSpec is plain old data; its bytes are copied into the buffer at hdr,
    // which holds `body` >= spec bytes from there.
    let sb = unsafe { std::slice::from_raw_parts(&s as *const DmTargetSpec as *const u8, spec) };
    bytes[hdr..hdr + spec].copy_from_slice(sb);
    bytes[hdr + spec..hdr + spec + params.len()].copy_from_slice(params.as_bytes());
    Ok(b)
}

fn control() -> Result<std::fs::File> {
    if !Path::new(CONTROL).exists() {
        // devtmpfs usually has it; make it when it does not (the module loaded late).
        let _ = std::fs::create_dir_all("/dev/mapper");
        mknod(CONTROL, SFlag::S_IFCHR, Mode::from_bits_truncate(0o600), makedev(CONTROL_MAJOR, CONTROL_MINOR))
            .sys("mknod", CONTROL)?;
    }
    std::fs::OpenOptions::new().read(true).write(true).open(CONTROL).ctx("open", CONTROL)
}

/// A device-mapper device made by [`map_verity`]. Not removed on drop: the root stays mounted.
pub struct Mapped {
    pub path: PathBuf,
}

/// Map `dev` (a block device holding the data, and the hash tree after it unless `tree` is
/// given) through dm-verity as `/dev/dm-N`.
pub fn map_verity(name: &str, dev: &Path, tree: Option<&Path>, v: &VerityArgs) -> Result<Mapped> {
    let ctl = control()?;
    let fd = ctl.as_raw_fd();
    let mut create = Buf::new(name, 0, DM_READONLY_FLAG)?;
    // SAFETY: the buffer is a dm_ioctl header with data_size set to its length; it lives
    // across the call, and the kernel writes at most data_size bytes.
    unsafe { ioctls::dm_dev_create(fd, create.header()) }.sys("DM_DEV_CREATE", name)?;
    let devno = create.header().dev;
    let done = (|| -> Result<PathBuf> {
        let tree = tree.map(|t| t.display().to_string());
        let params = verity_params(&dev.display().to_string(), tree.as_deref(), v);
        let mut t = table_buf(name, "verity", verity_sectors(v), &params)?;
        // SAFETY: as above; the target spec and its params lie within data_size.
        unsafe { ioctls::dm_table_load(fd, t.header()) }
            .sys("DM_TABLE_LOAD (verity) on", format!("{name}: {params}"))?;
        // DM_DEV_SUSPEND without DM_SUSPEND_FLAG resumes: the loaded table becomes live.
        let mut r = Buf::new(name, 0, 0)?;
        // SAFETY: as above.
        unsafe { ioctls::dm_dev_suspend(fd, r.header()) }.sys("DM_DEV_SUSPEND (resume)", name)?;
        node(devno)
    })();
    match done {
        Ok(path) => Ok(Mapped { path }),
        Err(e) => {
            if let Ok(mut rm) = Buf::new(name, 0, 0) {
                // SAFETY: as above.
                let _ = unsafe { ioctls::dm_dev_remove(fd, rm.header()) };
            }
            Err(e)
        }
    }
}

/// `/dev/dm-<minor>`: devtmpfs makes it; waited for (bounded), else made here.
fn node(devno: u64) -> Result<PathBuf> {
    let path = PathBuf::from(format!("/dev/dm-{}", minor(devno)));
    let start = Instant::now();
    while !path.exists() && start.elapsed() < WAIT {
        std::thread::sleep(POLL);
    }
    if !path.exists() {
        mknod(&path, SFlag::S_IFBLK, Mode::from_bits_truncate(0o600), makedev(major(devno), minor(devno)))
            .sys("mknod", &path)?;
    }
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts() -> VerityArgs {
        VerityArgs { root_hash: "ab".repeat(32), salt: "01".repeat(32), data_blocks: 1234 }
    }

    #[test]
    fn layout_matches_dm_ioctl_h() {
        assert_eq!(std::mem::size_of::<DmIoctl>(), 312);
        assert_eq!(std::mem::size_of::<DmTargetSpec>(), 40);
        assert_eq!(std::mem::offset_of!(DmIoctl, data_size), 12);
        assert_eq!(std::mem::offset_of!(DmIoctl, target_count), 20);
        assert_eq!(std::mem::offset_of!(DmIoctl, flags), 28);
        assert_eq!(std::mem::offset_of!(DmIoctl, dev), 40);
        assert_eq!(std::mem::offset_of!(DmIoctl, name), 48);
        assert_eq!(std::mem::offset_of!(DmIoctl, uuid), 176);
        assert_eq!(std::mem::offset_of!(DmTargetSpec, next), 20);
        assert_eq!(std::mem::offset_of!(DmTargetSpec, target_type), 24);
    }

    #[test]
    fn verity_table() {
        let v = facts();
        assert_eq!(
            verity_params("/dev/loop0", None, &v),
            format!("1 /dev/loop0 /dev/loop0 4096 4096 1234 1234 sha256 {} {}", v.root_hash, v.salt)
        );
        assert_eq!(
            verity_params("/dev/vda2", Some("/dev/vda3"), &v),
            format!("1 /dev/vda2 /dev/vda3 4096 4096 1234 0 sha256 {} {}", v.root_hash, v.salt)
        );
        assert_eq!(verity_sectors(&v), 1234 * 8);
        let no_salt = VerityArgs { salt: String::new(), ..v };
        assert!(verity_params("/dev/vda2", None, &no_salt).ends_with(" -"));
    }

    #[test]
    fn table_buffer() {
        let params = verity_params("/dev/loop0", None, &facts());
        let mut b = table_buf("oa-root", "verity", 80, &params).unwrap();
        let h = *b.header();
        assert_eq!(h.version[0], 4);
        assert_eq!(h.data_start, 312);
        assert_eq!(h.target_count, 1);
        assert_eq!(h.data_size as usize, b.words.len() * 8);
        assert_eq!(h.data_size % 8, 0);
        assert_eq!(&h.name[..8], b"oa-root\0");
        let bytes = b.bytes().to_vec();
        assert_eq!(u64::from_ne_bytes(bytes[320..328].try_into().unwrap()), 80, "length");
        assert_eq!(&bytes[336..343], b"verity\0");
        let p = &bytes[352..];
        assert_eq!(&p[..params.len()], params.as_bytes());
        assert_eq!(p[params.len()], 0, "NUL-terminated");
        assert!(Buf::new("a/b", 0, 0).is_err());
        assert!(Buf::new("", 0, 0).is_err());
    }
}
