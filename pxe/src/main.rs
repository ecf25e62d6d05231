//! `oa-pxe`: the netboot server on its own (the same as `oa serve`).

use clap::Parser;
use oa_pxe::cli::Cli;

fn main() {
    let cli = Cli::parse();
    if let Err(e) = oa_pxe::server::run_blocking(&cli.options) {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}
