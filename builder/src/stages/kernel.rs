//! Stage `kernel`: the kernel package (or the Arch base's `linux`) unpacked into the cache with
//! an index of its modules.

use crate::bases::BaseTree;
use crate::build::{need, Context};
use crate::error::{Error, Result};
use crate::hash;
use crate::kernel::Kernel;
use crate::pipeline::Outcome;
use crate::stages::packages::KernelSource;

/// The kernel of the build, with the digests later stages key on.
#[derive(Debug, Clone)]
pub struct KernelOut {
    pub kernel: Kernel,
    /// What the initramfs key names the kernel by: the .deb's sha256, or vmlinuz's for Arch.
    pub id: String,
    /// sha256 of vmlinuz.
    pub vmlinuz_sha256: String,
}

pub fn run(cx: &mut Context) -> Result<Outcome> {
    let pkgs = need(&cx.packages, "kernel", "the packages")?;
    let (kernel, cached, id, what) = match &pkgs.kernel {
        KernelSource::Deb { path, info } => {
            let (k, cached) = Kernel::from_deb(path, &cx.opts.cache_root, cx.opts.no_cache)?;
            let what = k.release.clone();
            (k, cached, Some(info.sha256.clone()), what)
        }
        KernelSource::ArchBase => {
            let Some(BaseTree::Arch(tree)) = &cx.base else {
                return Err(Error::Pipeline { stage: "kernel", needs: "the Arch base tree" });
            };
            let (k, cached) = crate::bases::arch::kernel(tree, &cx.store, cx.opts.no_cache)?;
            let what = format!("{} from the `linux` package", k.release);
            (k, cached, None, what)
        }
    };
    let detail = format!("{what} ({} modules indexed)", kernel.index.modules.len());
    let vmlinuz_sha256 = hash::sha256_file(&kernel.vmlinuz)?;
    // The Arch kernel has no package digest: it is named by vmlinuz's, hashed once.
    let id = id.unwrap_or_else(|| vmlinuz_sha256.clone());
    cx.kernel = Some(KernelOut { kernel, id, vmlinuz_sha256 });
    Ok(Outcome { cached, detail })
}
