//! The oa.* boot arguments: kernel command line merged over the initramfs defaults.

use oa_contract::cmdline::{split, BootArgs, CmdlineError, SHELL};

/// Where stage 1 leaves the merged arguments for stage 2 (the defaults baked into the
/// initramfs are gone after switch_root).
pub const SAVED: &str = oa_contract::mounts::SAVED_CMDLINE;

fn quote(word: &str) -> String {
    if word.chars().any(char::is_whitespace) {
        match word.split_once('=') {
            Some((k, v)) => format!("{k}=\"{v}\""),
            None => format!("\"{word}\""),
        }
    } else {
        word.to_string()
    }
}

/// Parse `defaults` (from initramfs.json) and then the kernel command line; a key given on the
/// kernel command line wins (later words override earlier ones, flags included: `oa.shell=0`
/// turns off a default `oa.shell`).
pub fn merge(defaults: &[String], kernel: &str) -> Result<BootArgs, CmdlineError> {
    let mut line: String = defaults.iter().map(|w| quote(w)).collect::<Vec<_>>().join(" ");
    line.push(' ');
    line.push_str(kernel);
    let mut a = BootArgs::parse(&line)?;
    let mut seen = Vec::new();
    a.unknown.retain(|w| {
        let k = w.split_once('=').map(|(k, _)| k).unwrap_or(w).to_string();
        if seen.contains(&k) {
            false
        } else {
            seen.push(k);
            true
        }
    });
    Ok(a)
}

/// Lenient check for `oa.shell` on a command line that may not parse: the emergency path needs
/// to know even when the rest of the command line is broken.
pub fn shell_requested(cmdline: &str) -> bool {
    split(cmdline).iter().fold(false, |on, w| match w.split_once('=') {
        None if w == SHELL => true,
        Some((k, v)) if k == SHELL => matches!(v, "1" | "yes" | "true" | "on" | "y"),
        _ => on,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use oa_contract::cmdline::RootSpec;

    #[test]
    fn kernel_cmdline_wins() {
        let d =
            vec!["oa.root=PARTLABEL=oa-root".to_string(), "oa.shell".to_string(), "oa.config=/etc/my conf".to_string()];
        let a = merge(&d, "console=ttyS0 oa.root=/dev/vdb oa.shell=0").unwrap();
        assert_eq!(a.root, Some(RootSpec::Path("/dev/vdb".into())));
        assert!(!a.shell);
        assert_eq!(a.config.as_deref(), Some("/etc/my conf"));
    }

    #[test]
    fn defaults_apply_when_absent() {
        let a = merge(&["oa.shell".to_string(), "oa.root=/dev/vda".to_string()], "quiet").unwrap();
        assert!(a.shell);
        assert_eq!(a.root, Some(RootSpec::Path("/dev/vda".into())));
        assert_eq!(merge(&[], "").unwrap(), BootArgs::default());
    }

    #[test]
    fn unknown_keys_reported_once() {
        let a = merge(&["oa.frob=1".to_string()], "oa.frob=2 oa.zap").unwrap();
        assert_eq!(a.unknown, vec!["oa.frob=1".to_string(), "oa.zap".to_string()]);
    }

    #[test]
    fn shell_flag_lenient() {
        assert!(shell_requested("oa.sha256=bad oa.shell"));
        assert!(!shell_requested("oa.shell oa.shell=0"));
        assert!(!shell_requested("console=ttyS0"));
    }
}
