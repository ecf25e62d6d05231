//! oa-pxe: the netboot server (proxyDHCP/DHCP, TFTP, HTTP) that `oa serve` runs.
//!
//! Not built yet: this crate holds the place in the workspace for the PXE server issue.
