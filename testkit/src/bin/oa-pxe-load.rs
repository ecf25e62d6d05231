//! `oa-pxe-load`: the oa-pxe load test from the command line ([`oa_testkit::load`]). Exit
//! status 0 only when all clients got correct bytes and the peak RSS stayed under the bound.
//!
//! Usage: oa-pxe-load [--clients N] [--size BYTES] [--max-rss-mib M] [--server PATH-TO-oa-pxe]

use oa_testkit::load::{self, LoadOptions};
use std::path::PathBuf;

fn main() {
    let mut o = LoadOptions::default();
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut i = 0;
    while i < args.len() {
        let v = args.get(i + 1).cloned().unwrap_or_default();
        match args[i].as_str() {
            "--clients" => o.clients = v.parse().expect("--clients N"),
            "--size" => o.size = v.parse().expect("--size BYTES"),
            "--max-rss-mib" => o.max_rss_mib = v.parse().expect("--max-rss-mib M"),
            "--server" => o.server = PathBuf::from(v),
            a => panic!("unknown argument {a}"),
        }
        i += 2;
    }
    let report = load::run(&o);
    println!("{report}");
    std::process::exit(if report.passed() { 0 } else { 1 });
}
