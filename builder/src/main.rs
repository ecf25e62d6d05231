//! `oa`: the dispatch table from a parsed command to one function per subcommand.

use clap::Parser;
use oa_builder::cli::{Cli, Cmd};
use oa_builder::commands;

fn main() {
    let cli = Cli::parse();
    let result = match cli.command {
        Cmd::Build(a) => commands::build(a),
        Cmd::Run(a) => commands::run(a),
        Cmd::Serve(a) => oa_builder::serve::serve(a),
        Cmd::Info(a) => commands::info(a),
        Cmd::Graph(a) => commands::graph(a),
        Cmd::Lab(a) => oa_builder::lab::lab(a),
        Cmd::Deploy(a) => oa_builder::deploy::deploy(a),
        Cmd::Flash(a) => commands::flash(a),
        Cmd::Keys(a) => commands::keys(a),
        Cmd::Doc(a) => oa_builder::cli::doc::run(a),
        Cmd::KvmProbe => std::process::exit(if oa_builder::qemu::kvm_probe() { 0 } else { 1 }),
    };
    match result {
        Ok(code) => std::process::exit(code),
        Err(e) => {
            eprintln!("error: {e}");
            std::process::exit(1);
        }
    }
}
