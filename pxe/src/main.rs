//! `oa-pxe`: the netboot server on its own (the same as `oa serve`).

use clap::Parser;

/// oa-pxe: serve an `oa build` output folder to netbooting machines (proxyDHCP or DHCP, TFTP, HTTP).
#[derive(Parser)]
#[command(name = "oa-pxe", version, max_term_width = 100)]
struct Cli {
    #[command(flatten)]
    options: oa_pxe::cli::Options,
}

fn main() {
    let cli = Cli::parse();
    if let Err(e) = oa_pxe::server::run_blocking(&cli.options) {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}
