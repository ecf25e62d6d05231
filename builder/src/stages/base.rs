//! Stage `base` (full-OS bases only): the mmdebstrap or pacman tree, kept as a tarball entry
//! of the cache keyed by the package set and the mirrors (bases/mod.rs), with the list of
//! installed packages; `--refresh` makes it again.

use crate::build::Context;
use crate::error::Result;
use crate::pipeline::Outcome;

pub fn run(cx: &mut Context) -> Result<Outcome> {
    let o = cx.opts;
    let (base, outcome) = crate::bases::base_stage(cx.profile, &cx.store, &o.cache_root, o.no_cache, o.refresh)?;
    cx.base = Some(base);
    Ok(outcome)
}
