//! The oa builder: profile -> root filesystem -> squashfs, initramfs and kernel -> output
//! folder with a manifest; and the QEMU runner that boots it.
//!
//! Modules follow the build flow: [`profile`] (read, compose, validate), [`apt`] and [`deb`]
//! (packages), [`kernel`], [`rootfs`], [`squashfs`], [`initramfs`], [`image`], [`rpi`];
//! [`pipeline`] lists the stages, [`stages`] holds their bodies, [`build`] folds over them and
//! [`cache`] keeps what they made; [`qemu`] boots the result ([`console_script`]: `oa run --expect/--send`). [`commands`] holds one function per CLI subcommand.

pub mod apt;
pub mod bases;
pub mod build;
pub mod cache;
pub mod cli;
pub mod commands;
pub mod console_script;
pub mod deb;
pub mod deploy;
pub mod drivers;
pub mod elfdeps;
pub mod env;
pub mod error;
pub mod flash;
pub mod fsutil;
pub mod hash;
pub mod image;
pub mod initbin;
pub mod initramfs;
pub mod kernel;
pub mod keys;
pub mod lab;
pub mod pipeline;
pub mod profile;
pub mod qemu;
pub mod rootfs;
pub mod rpi;
pub mod serve;
pub mod squashfs;
pub mod stages;
pub mod tool;
