//! The bodies of the build stages, one module each, in pipeline order ([`crate::pipeline::STAGES`]
//! lists them with what they read and make). Each `run` takes the build [`crate::build::Context`],
//! reads the results of earlier stages from it, stores its own there, and says whether it came
//! from the cache. The work itself lives in the modules named after the thing (apt, bases,
//! kernel, rootfs, squashfs, initramfs, image, rpi; the ISO in image/iso.rs, the UKI in image/uki.rs).

pub mod base;
pub mod image;
pub mod initramfs;
pub mod iso;
pub mod kernel;
pub mod output;
pub mod packages;
pub mod rootfs;
pub mod rpi;
pub mod shim;
pub mod uki;
pub mod verity;
