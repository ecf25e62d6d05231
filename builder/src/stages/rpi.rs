//! Stage `rpi` (when `[rpi] enable = true`): the Raspberry Pi boot tree `rpi/` and the SD card
//! image `rpi.img` (rpi.rs).

use crate::build::{need, Context};
use crate::error::Result;
use crate::pipeline::Outcome;

pub fn run(cx: &mut Context) -> Result<Outcome> {
    let k = need(&cx.kernel, "rpi", "the kernel")?;
    let initrd = need(&cx.initramfs, "rpi", "the initramfs")?;
    let rootfs = need(&cx.rootfs, "rpi", "the root image")?;
    let cmdline = cx.manifest_cmdline("rpi")?;
    let (out, outcome) = crate::rpi::stage(&crate::rpi::StageInputs {
        profile: cx.profile,
        cache_root: &cx.opts.cache_root,
        store: &cx.store,
        kernel: &k.kernel,
        kernel_sha: &k.vmlinuz_sha256,
        initrd: &initrd.path,
        initrd_sha: &initrd.sha256,
        rootfs: &rootfs.path,
        rootfs_sha: &rootfs.sha256,
        cmdline: &cmdline,
        no_cache: cx.opts.no_cache,
    })?;
    cx.rpi = Some(out);
    Ok(outcome)
}
