//! `oa lab ENV`: an environment proved in a virtual lab (docs/environments.md).

use crate::cli::LabArgs;
use crate::error::{Error, Result};

pub fn lab(a: LabArgs) -> Result<i32> {
    let _ = a;
    Err(Error::Usage("oa lab: not written yet".into()))
}
