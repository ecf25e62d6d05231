//! `oa-pxe-bench` (part of `make bench`): oa-pxe side by side with the servers it replaces, in
//! one run, with the same clients (testkit/src/bench): DHCP against kea-dhcp4 (memfile) under
//! perfdhcp, HTTP against nginx under wrk (4 KiB) and curl (64 MiB), TFTP lock-step against
//! dnsmasq under curl and atftp, and oa's RFC 7440 windowsize alone (dnsmasq has none). Prints
//! one table with the ratios (oa-pxe / peer) and the goals.
//!
//! `OA_BENCH_ONLY=pxe-dhcp` (or `pxe-http`, `pxe-tftp`) runs one protocol; `pxe` all of them.

use oa_testkit::bench::{self, Row};

fn main() {
    let exe = std::env::current_exe().expect("the benchmark's own path");
    let server = exe.parent().expect("target folder").join("oa-pxe");
    if !server.is_file() {
        eprintln!("error: {} is missing: run `make build` first", server.display());
        std::process::exit(2);
    }
    let only = std::env::var("OA_BENCH_ONLY").unwrap_or_default();
    let want = |p: &str| only.is_empty() || only == "pxe" || only == format!("pxe-{p}");
    let mut rows: Vec<Row> = Vec::new();
    if want("dhcp") {
        eprintln!("==> DHCP: oa-pxe and kea-dhcp4 under perfdhcp (network namespaces)");
        rows.extend(bench::dhcp::run(&server));
    }
    if want("http") {
        eprintln!("==> HTTP: oa-pxe and nginx under wrk and curl (loopback)");
        rows.extend(bench::http::run(&server));
    }
    if want("tftp") {
        eprintln!("==> TFTP: oa-pxe and dnsmasq under curl and atftp");
        rows.extend(bench::tftp::run(&server, 3));
    }
    println!();
    println!("oa-pxe benchmark (2 cores; peers started in the same run)");
    print!("{}", bench::table(&rows));
}
