//! Loop devices: attach a regular file (a root image in RAM or on a filesystem) read-only.

use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::time::Instant;

use nix::errno::Errno;

use crate::devices::{POLL, WAIT};
use crate::error::{Error, IoContext, Result, SysContext};

const LOOP_CONTROL: &str = "/dev/loop-control";
const LO_FLAGS_READ_ONLY: u32 = 1;
const LO_FLAGS_AUTOCLEAR: u32 = 4;
const LO_NAME_SIZE: usize = 64;

/// `struct loop_info64` from <linux/loop.h>.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct LoopInfo64 {
    lo_device: u64,
    lo_inode: u64,
    lo_rdevice: u64,
    lo_offset: u64,
    lo_sizelimit: u64,
    lo_number: u32,
    lo_encrypt_type: u32,
    lo_encrypt_key_size: u32,
    lo_flags: u32,
    lo_file_name: [u8; LO_NAME_SIZE],
    lo_crypt_name: [u8; LO_NAME_SIZE],
    lo_encrypt_key: [u8; 32],
    lo_init: [u64; 2],
}

/// `struct loop_config` from <linux/loop.h> (LOOP_CONFIGURE, Linux >= 5.8).
#[repr(C)]
pub struct LoopConfig {
    fd: u32,
    block_size: u32,
    info: LoopInfo64,
    reserved: [u64; 8],
}

mod ioctls {
    use super::{LoopConfig, LoopInfo64};
    nix::ioctl_none_bad!(loop_ctl_get_free, 0x4C82);
    nix::ioctl_write_ptr_bad!(loop_configure, 0x4C0A, LoopConfig);
    nix::ioctl_write_int_bad!(loop_set_fd, 0x4C00);
    nix::ioctl_write_ptr_bad!(loop_set_status64, 0x4C04, LoopInfo64);
}

fn info_for(file: &Path) -> LoopInfo64 {
    let mut info = LoopInfo64 {
        lo_device: 0,
        lo_inode: 0,
        lo_rdevice: 0,
        lo_offset: 0,
        lo_sizelimit: 0,
        lo_number: 0,
        lo_encrypt_type: 0,
        lo_encrypt_key_size: 0,
        lo_flags: LO_FLAGS_READ_ONLY | LO_FLAGS_AUTOCLEAR,
        lo_file_name: [0; LO_NAME_SIZE],
        lo_crypt_name: [0; LO_NAME_SIZE],
        lo_encrypt_key: [0; 32],
        lo_init: [0; 2],
    };
    let name = file.as_os_str().as_encoded_bytes();
    let n = name.len().min(LO_NAME_SIZE - 1);
    info.lo_file_name[..n].copy_from_slice(&name[..n]);
    info
}

/// An attached loop device. The device is set up with autoclear: it detaches when its last
/// user goes away, so keep this (the open device) until the device is mounted.
pub struct Attached {
    pub path: PathBuf,
    _open: std::fs::File,
}

/// Attach `file` read-only to a free loop device.
pub fn attach_readonly(file: &Path) -> Result<Attached> {
    // /dev/loop-control appears once the loop module is loaded.
    let start = Instant::now();
    while !Path::new(LOOP_CONTROL).exists() && start.elapsed() < WAIT {
        std::thread::sleep(POLL);
    }
    let ctl = std::fs::OpenOptions::new().read(true).write(true).open(LOOP_CONTROL).ctx("open", LOOP_CONTROL)?;
    let backing = std::fs::File::open(file).ctx("open", file)?;
    // SAFETY: LOOP_CTL_GET_FREE takes no argument; the fd is a valid open /dev/loop-control.
    let n = unsafe { ioctls::loop_ctl_get_free(ctl.as_raw_fd()) }.sys("LOOP_CTL_GET_FREE on", LOOP_CONTROL)?;
    let dev = PathBuf::from(format!("/dev/loop{n}"));
    let start = Instant::now();
    while !dev.exists() && start.elapsed() < WAIT {
        std::thread::sleep(POLL);
    }
    let loopf = std::fs::OpenOptions::new().read(true).open(&dev).ctx("open", &dev)?;
    let cfg = LoopConfig { fd: backing.as_raw_fd() as u32, block_size: 0, info: info_for(file), reserved: [0; 8] };
    // SAFETY: cfg is a fully initialised struct loop_config that lives across the call; both
    // fds are open.
    match unsafe { ioctls::loop_configure(loopf.as_raw_fd(), &cfg) } {
        Ok(_) => return Ok(Attached { path: dev, _open: loopf }),
        Err(Errno::EINVAL) | Err(Errno::ENOTTY) => {} // kernel older than 5.8: fall back
        Err(e) => {
            return Err(Error::Sys {
                op: "LOOP_CONFIGURE",
                path: format!("{} with {}", dev.display(), file.display()),
                source: e,
            })
        }
    }
    // SAFETY: LOOP_SET_FD takes the backing fd as an integer argument; both fds are open.
    unsafe { ioctls::loop_set_fd(loopf.as_raw_fd(), backing.as_raw_fd()) }.sys("LOOP_SET_FD on", &dev)?;
    let info = info_for(file);
    // SAFETY: info is a fully initialised struct loop_info64 that lives across the call.
    unsafe { ioctls::loop_set_status64(loopf.as_raw_fd(), &info) }.sys("LOOP_SET_STATUS64 on", &dev)?;
    Ok(Attached { path: dev, _open: loopf })
}
