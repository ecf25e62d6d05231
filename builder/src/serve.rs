//! `oa serve`: netboot an output folder to machines on the network. A thin wrapper: the
//! server (proxyDHCP/DHCP, TFTP, HTTP) is the `oa-pxe` library; see docs/pxe.md.

use crate::error::{Error, Result};

/// Serve until interrupted. Exit code 0 after Ctrl-C/SIGTERM.
pub fn serve(a: crate::cli::ServeArgs) -> Result<i32> {
    oa_pxe::server::run_blocking(&a.options).map_err(|e| Error::Serve(format!("oa serve: {e:#}")))?;
    Ok(0)
}
