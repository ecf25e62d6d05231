//! Running the standard external tools (mksquashfs, apt-get, qemu) with checked results.

use crate::error::{Error, Result};
use std::process::Command;

/// Run `cmd` to completion; a missing program or a non-zero exit is an error that shows the
/// command and its output.
pub fn run(cmd: &mut Command, tool: &str, install_hint: &str) -> Result<String> {
    let shown = format!("{cmd:?}").replace('"', "");
    let out = cmd.output().map_err(|e| Error::ToolMissing {
        tool: tool.into(),
        why: e.to_string(),
        hint: install_hint.into(),
    })?;
    let mut text = String::from_utf8_lossy(&out.stdout).to_string();
    text.push_str(&String::from_utf8_lossy(&out.stderr));
    if !out.status.success() {
        return Err(Error::ToolFailed {
            command: shown,
            status: out.status.to_string(),
            output: text.trim().to_string(),
        });
    }
    Ok(text)
}

/// Is `program` on PATH?
pub fn which(program: &str) -> Option<std::path::PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path).map(|d| d.join(program)).find(|p| p.is_file())
}

/// Let the child get SIGKILL when this process dies (prctl PR_SET_PDEATHSIG, kept across the
/// exec of a program that is not set-uid): machines and servers a command started do not
/// outlive it, even when it is killed. The signal comes when the *thread* that spawned the child
/// ends, so spawn from a thread that lives as long as the child should.
pub fn die_with_parent(c: &mut std::process::Command) {
    use std::os::unix::process::CommandExt;
    // SAFETY: prctl is async-signal-safe and touches only the child being set up.
    unsafe {
        c.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong, 0, 0, 0) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}
