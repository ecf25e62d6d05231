//! oa-testkit: test-only code shared by the tests and benchmarks of the other crates, kept out
//! of the production crates (`oa`, `oa-pxe`, `oa-init`, `oa-storage` do not contain it).
//!
//! - [`netboot`]: DHCP, TFTP and HTTP test clients, and oa-pxe options for a server on loopback
//!   (pxe/tests, the load test, the benchmark).
//! - [`load`]: the oa-pxe load test (`oa-pxe-load`; run by pxe/tests/server.rs).
//! - [`netns`]: private networks (namespaces, bridges, veths, taps) and sockets made in them.
//! - [`bench`]: the oa-pxe benchmark against Kea, nginx and dnsmasq (`oa-pxe-bench`).
//! - [`archrepo`]: a local Arch repository made from Debian binaries (builder/tests/bases.rs,
//!   qemu-tests/tests/bases.rs).
//!
//! Binaries: `oa-pxe-bench` (`make bench`) and `oa-pxe-load`. Not for: anything a production
//! binary links; the QEMU harness stays in qemu-tests.

pub mod archrepo;
pub mod bench;
pub mod load;
pub mod netboot;
pub mod netns;
