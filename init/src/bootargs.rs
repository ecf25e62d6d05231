//! The oa.* boot arguments: kernel command line merged over the initramfs defaults.

use oa_contract::cmdline::{quote, split, BootArgs, CmdlineError, SHELL};

/// Where stage 1 leaves the merged arguments for stage 2 (the defaults baked into the
/// initramfs are gone after switch_root).
pub const SAVED: &str = oa_contract::mounts::SAVED_CMDLINE;

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
    use oa_contract::cmdline::{disk_root, word, RootSpec, CONFIG, PREFIX, ROOT, SHA256};

    #[test]
    fn kernel_cmdline_wins() {
        let d = vec![word(ROOT, disk_root()), SHELL.to_string(), word(CONFIG, "/etc/my conf")];
        let a = merge(&d, &format!("console=ttyS0 {} {}", word(ROOT, "/dev/vdb"), word(SHELL, 0))).unwrap();
        assert_eq!(a.root, Some(RootSpec::Path("/dev/vdb".into())));
        assert!(!a.shell);
        assert_eq!(a.config.as_deref(), Some("/etc/my conf"));
    }

    #[test]
    fn defaults_apply_when_absent() {
        let a = merge(&[SHELL.to_string(), word(ROOT, "/dev/vda")], "quiet").unwrap();
        assert!(a.shell);
        assert_eq!(a.root, Some(RootSpec::Path("/dev/vda".into())));
        assert_eq!(merge(&[], "").unwrap(), BootArgs::default());
    }

    #[test]
    fn unknown_keys_reported_once() {
        // Keys this version does not know, spelled as a newer builder would.
        let (frob, zap) = (format!("{PREFIX}frob"), format!("{PREFIX}zap"));
        let a = merge(&[word(&frob, 1)], &format!("{} {zap}", word(&frob, 2))).unwrap();
        assert_eq!(a.unknown, vec![word(&frob, 1), zap]);
    }

    #[test]
    fn shell_flag_lenient() {
        assert!(shell_requested(&format!("{} {SHELL}", word(SHA256, "bad"))));
        assert!(!shell_requested(&format!("{SHELL} {}", word(SHELL, 0))));
        assert!(!shell_requested("console=ttyS0"));
    }
}
