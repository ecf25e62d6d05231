//! The generated man pages and shell completions: one page per subcommand that `--help` lists,
//! every subcommand named in every completion script, every page renders. The lists of
//! subcommands come from the clap definitions themselves, so these tests follow the CLI.

use clap::Command;
use oa_builder::cli::doc;
use std::collections::HashSet;
use std::process::Command as Process;

/// The subcommands a user sees (`--help` lists them): not hidden, not clap's `help`.
fn visible_subcommands(cmd: &Command) -> Vec<String> {
    cmd.get_subcommands().filter(|s| !s.is_hide_set()).map(|s| s.get_name().to_string()).collect()
}

fn hidden_subcommands(cmd: &Command) -> Vec<String> {
    cmd.get_subcommands().filter(|s| s.is_hide_set()).map(|s| s.get_name().to_string()).collect()
}

/// The words of a script (runs of letters, digits, `-` and `_`), to look names up in it.
fn words(text: &str) -> HashSet<&str> {
    text.split(|c: char| !(c.is_ascii_alphanumeric() || c == '-' || c == '_')).filter(|w| !w.is_empty()).collect()
}

#[test]
fn the_documented_commands_are_oa_and_oa_pxe() {
    let names: Vec<String> = doc::commands().iter().map(|c| c.get_name().to_string()).collect();
    assert_eq!(names, ["oa", "oa-pxe"]);
    // oa has subcommands to document and hides its internal ones.
    let oa = &doc::commands()[0];
    assert!(visible_subcommands(oa).len() >= 6, "{:?}", visible_subcommands(oa));
    assert!(hidden_subcommands(oa).contains(&"doc".to_string()));
}

#[test]
fn one_man_page_per_command_and_subcommand() {
    for cmd in doc::commands() {
        let name = cmd.get_name().to_string();
        let pages = doc::man_pages(cmd.clone()).expect("rendering man pages");
        let mut got: Vec<String> = pages.iter().map(|p| p.name.clone()).collect();
        let mut want: Vec<String> = std::iter::once(format!("{name}.1"))
            .chain(visible_subcommands(&cmd).iter().flat_map(|s| {
                // A command with subcommands of its own (oa keys) gets a page for each of them too.
                let sub = cmd.find_subcommand(s).expect("listed subcommand");
                std::iter::once(format!("{name}-{s}.1"))
                    .chain(visible_subcommands(sub).into_iter().map(|t| format!("{name}-{s}-{t}.1")))
                    .collect::<Vec<_>>()
            }))
            .collect();
        got.sort();
        want.sort();
        assert_eq!(got, want, "man pages of {name}");
        let main = String::from_utf8(pages.iter().find(|p| p.name == format!("{name}.1")).unwrap().contents.clone())
            .expect("roff is UTF-8");
        for sub in visible_subcommands(&cmd) {
            assert!(main.contains(&format!("{name}\\-{sub}(1)")), "{name}.1 names {name}-{sub}(1)");
        }
        for sub in hidden_subcommands(&cmd) {
            assert!(!main.contains(&format!("{name}\\-{sub}")), "{name}.1 shows the hidden {sub}");
        }
    }
}

#[test]
fn every_man_page_renders() {
    let dir = tempfile::tempdir().expect("temp dir");
    let written = doc::write_man_pages(dir.path()).expect("writing man pages");
    let man = oa_builder::tool::which("man");
    for path in &written {
        let roff = std::fs::read_to_string(path).expect("reading man page");
        let title = path.file_stem().unwrap().to_string_lossy().to_string();
        assert!(roff.contains(&format!(".TH {title} 1 ")), "{}: no .TH line", path.display());
        assert!(roff.contains(".SH NAME") && roff.contains(".SH SYNOPSIS"), "{}", path.display());
        if man.is_some() {
            let o =
                Process::new("man").arg("-l").arg(path).env("MANWIDTH", "80").env("MANPAGER", "cat").output().unwrap();
            let text = String::from_utf8_lossy(&o.stdout);
            assert!(o.status.success(), "man -l {}: {}", path.display(), String::from_utf8_lossy(&o.stderr));
            assert!(text.contains("NAME") && text.contains(&title), "man -l {}:\n{text}", path.display());
        }
    }
}

#[test]
fn completions_name_every_subcommand_and_no_hidden_one() {
    for cmd in doc::commands() {
        let name = cmd.get_name().to_string();
        let scripts = doc::completions(cmd.clone());
        let mut files: Vec<String> = scripts.iter().map(|s| s.name.clone()).collect();
        files.sort();
        let mut want = vec![format!("{name}.bash"), format!("_{name}"), format!("{name}.fish")];
        want.sort();
        assert_eq!(files, want);
        for script in &scripts {
            let text = String::from_utf8(script.contents.clone()).expect("script is UTF-8");
            let words = words(&text);
            assert!(words.contains(name.as_str()), "{} names {name}", script.name);
            for sub in visible_subcommands(&cmd) {
                assert!(words.contains(sub.as_str()), "{} does not complete `{name} {sub}`", script.name);
            }
            for sub in hidden_subcommands(&cmd) {
                assert!(!words.contains(sub.as_str()), "{} offers the hidden `{name} {sub}`", script.name);
            }
        }
    }
}

#[test]
fn bash_completion_script_is_valid_bash() {
    let Some(bash) = oa_builder::tool::which("bash") else { return };
    for cmd in doc::commands() {
        let script = doc::completions(cmd).into_iter().find(|s| s.name.ends_with(".bash")).unwrap();
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join(&script.name);
        std::fs::write(&path, &script.contents).unwrap();
        let st = Process::new(&bash).arg("-n").arg(&path).status().unwrap();
        assert!(st.success(), "bash -n {}", script.name);
    }
}

#[test]
fn oa_doc_writes_the_files_and_is_hidden_from_help() {
    let dir = tempfile::tempdir().expect("temp dir");
    let oa = env!("CARGO_BIN_EXE_oa");
    for what in ["man", "completions"] {
        let o = Process::new(oa).args(["doc", what]).arg(dir.path().join(what)).output().unwrap();
        assert!(o.status.success(), "oa doc {what}: {}", String::from_utf8_lossy(&o.stderr));
    }
    assert!(dir.path().join("man/oa.1").is_file() && dir.path().join("man/oa-pxe.1").is_file());
    assert!(dir.path().join("completions/_oa").is_file() && dir.path().join("completions/oa-pxe.fish").is_file());
    let help = Process::new(oa).arg("--help").output().unwrap();
    let help = String::from_utf8_lossy(&help.stdout);
    assert!(help.lines().any(|l| l.trim_start().starts_with("build ")), "{help}");
    assert!(!help.lines().any(|l| l.trim_start().starts_with("doc ")), "{help}");
}
