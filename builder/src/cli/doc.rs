//! Man pages and shell completions generated from the clap definitions of `oa` and `oa-pxe`,
//! so that `--help`, `man oa-build` and `oa <TAB>` say the same thing. `oa doc man DIR` and
//! `oa doc completions DIR` (hidden from `--help`) write them; `make install` runs both.
//!
//! Not for: documentation of profiles or the kernel command line (docs/ holds those).

use crate::error::{IoContext, Result};
use clap::{Command, CommandFactory};
use clap_complete::Shell;
use std::path::{Path, PathBuf};

/// The shells completions are generated for (the ones `make install` installs).
pub const SHELLS: [Shell; 3] = [Shell::Bash, Shell::Zsh, Shell::Fish];

/// The documented commands: `oa` and `oa-pxe`.
pub fn commands() -> Vec<Command> {
    vec![super::Cli::command(), oa_pxe::cli::Cli::command()]
}

/// One generated file: its name and contents.
#[derive(Debug, Clone)]
pub struct DocFile {
    pub name: String,
    pub contents: Vec<u8>,
}

/// The man pages (section 1) of `cmd`: `NAME.1`, and `NAME-SUB.1` for each subcommand that is
/// not hidden, recursively (`oa-build.1`, `oa-flash.1`, ...).
pub fn man_pages(cmd: Command) -> Result<Vec<DocFile>> {
    fn walk(cmd: Command, out: &mut Vec<DocFile>) -> Result<()> {
        let man =
            clap_mangen::Man::new(cmd.clone()).source(format!("oa {}", env!("CARGO_PKG_VERSION"))).manual("oa manual");
        let name = man.get_filename();
        let mut contents = Vec::new();
        man.render(&mut contents).ctx("rendering man page", &name)?;
        out.push(DocFile { name, contents });
        for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
            walk(sub.clone(), out)?;
        }
        Ok(())
    }
    // Built, the subcommands carry their display names (`oa-build`), bin names (`oa build`,
    // for the synopsis) and the propagated version.
    let mut cmd = cmd.disable_help_subcommand(true);
    cmd.build();
    let mut out = Vec::new();
    walk(cmd, &mut out)?;
    Ok(out)
}

/// The completion scripts of `cmd` for [`SHELLS`], named as each shell's generator names them
/// (`oa.bash`, `_oa`, `oa.fish`). Hidden subcommands and options are not offered.
pub fn completions(cmd: Command) -> Vec<DocFile> {
    let name = cmd.get_name().to_string();
    let version = cmd.get_version().map(str::to_string);
    let cmd = visible(&cmd, version.as_deref());
    SHELLS
        .iter()
        .map(|&shell| {
            let mut cmd = cmd.clone();
            let mut contents = Vec::new();
            clap_complete::generate(shell, &mut cmd, &name, &mut contents);
            DocFile { name: clap_complete::Generator::file_name(&shell, &name), contents }
        })
        .collect()
}

/// A copy of `cmd` without its hidden subcommands and arguments (the completion generators
/// list every subcommand): names, help texts, arguments and the version, which is all that
/// completions use. `cmd` is unbuilt, so clap adds `--help` (and `--version`) again. (clap's
/// `string` feature lets the copy own its names.)
fn visible(cmd: &Command, version: Option<&str>) -> Command {
    let mut out = Command::new(cmd.get_name().to_string())
        .args(cmd.get_arguments().filter(|a| !a.is_hide_set()).cloned())
        .subcommands(cmd.get_subcommands().filter(|s| !s.is_hide_set()).map(|s| visible(s, version)));
    if let Some(about) = cmd.get_about() {
        out = out.about(about.clone());
    }
    if let Some(v) = version {
        out = out.version(v.to_string());
    }
    out
}

/// Write `files` into `dir` (created when missing); returns the paths written.
pub fn write_all(dir: &Path, files: &[DocFile]) -> Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir).ctx("creating", dir)?;
    files
        .iter()
        .map(|f| {
            let path = dir.join(&f.name);
            std::fs::write(&path, &f.contents).ctx("writing", &path)?;
            Ok(path)
        })
        .collect()
}

/// `oa doc man DIR`: every man page of `oa` and `oa-pxe` into DIR.
pub fn write_man_pages(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    for cmd in commands() {
        files.extend(man_pages(cmd)?);
    }
    write_all(dir, &files)
}

/// `oa doc completions DIR`: the bash, zsh and fish completions of `oa` and `oa-pxe` into DIR.
pub fn write_completions(dir: &Path) -> Result<Vec<PathBuf>> {
    let files: Vec<DocFile> = commands().into_iter().flat_map(completions).collect();
    write_all(dir, &files)
}

/// `oa doc man DIR` / `oa doc completions DIR`: write, then say how many files went where.
pub fn run(a: super::DocArgs) -> Result<i32> {
    let (what, written, dir) = match a.what {
        super::DocCmd::Man { dir } => ("man pages", write_man_pages(&dir)?, dir),
        super::DocCmd::Completions { dir } => ("completion scripts", write_completions(&dir)?, dir),
    };
    println!("{} {what} in {}", written.len(), dir.display());
    Ok(0)
}
