//! Stage `base` (full-OS bases only): the mmdebstrap or pacman tree, kept as a tarball entry
//! of the cache keyed by the package set and the mirror (bases/mod.rs).

use crate::build::Context;
use crate::error::Result;
use crate::pipeline::Outcome;

pub fn run(cx: &mut Context) -> Result<Outcome> {
    let (base, outcome) = crate::bases::base_stage(cx.profile, &cx.store, &cx.opts.cache_root, cx.opts.no_cache)?;
    cx.base = Some(base);
    Ok(outcome)
}
