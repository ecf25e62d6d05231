//! `oa deploy ENV`: an environment realised on the physical network (docs/environments.md).

use crate::cli::DeployArgs;
use crate::error::{Error, Result};

pub fn deploy(a: DeployArgs) -> Result<i32> {
    let _ = a;
    Err(Error::Usage("oa deploy: not written yet".into()))
}
