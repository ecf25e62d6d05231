//! Helpers shared by the pxe integration tests (`mod common;`): a real server on loopback.
#![allow(dead_code)]

use std::net::SocketAddr;

use oa_pxe::cli::Options;
use oa_pxe::{Config, Server};

/// A running server on loopback: the addresses it answers on, and the folder it serves
/// (removed when the test ends).
pub struct Env {
    pub _dir: tempfile::TempDir,
    pub dhcp: SocketAddr,
    pub tftp: SocketAddr,
    pub http: SocketAddr,
}

/// Start a server with `options` (from `oa_testkit::netboot::loopback_options`) on the
/// test's tokio runtime; `dir` holds what it serves.
pub fn serve(dir: tempfile::TempDir, options: &Options) -> Env {
    let s = Server::bind(Config::from_options(options).unwrap()).unwrap();
    let p = s.ports();
    tokio::spawn(s.run());
    let a = |port| SocketAddr::from(([127, 0, 0, 1], port));
    Env { dhcp: a(p.dhcp.unwrap()), tftp: a(p.tftp), http: a(p.http), _dir: dir }
}
