//! Starting child processes from PID 1: fork + exec with a clean signal state, a new session,
//! and the console as stdio.

use std::ffi::CString;
use std::os::fd::AsRawFd;
use std::path::PathBuf;

use nix::sys::signal::{SigSet, SigmaskHow, Signal};
use nix::unistd::{ForkResult, Pid};

use crate::console::CONSOLE;
use crate::error::{Error, Result, SysContext};

/// The PATH every child gets unless its env overrides it.
pub const DEFAULT_PATH: &str = "PATH=/usr/sbin:/usr/bin:/sbin:/bin";

/// Where a child's stdin/stdout/stderr go.
#[derive(Debug, Clone)]
pub enum Stdio {
    /// stdin /dev/null, stdout+stderr /dev/console (not the controlling terminal).
    Console,
    /// stdin+stdout+stderr this terminal, which becomes the session's controlling terminal.
    Terminal(PathBuf),
}

/// A prepared command: all allocation happens before fork.
#[derive(Debug, Clone)]
pub struct Command {
    pub argv: Vec<CString>,
    pub env: Vec<CString>,
    pub stdio: Stdio,
    pub cwd: Option<CString>,
}

fn cstring(what: &str, s: &str) -> Result<CString> {
    CString::new(s).map_err(|_| Error::Unexpected { what: what.to_string(), why: format!("{s:?} contains a NUL byte") })
}

impl Command {
    /// `env` entries are `KEY=VALUE`; they override the defaults (PATH) with the same key.
    pub fn new(argv: &[String], env: &[String], stdio: Stdio) -> Result<Command> {
        if argv.is_empty() {
            return Err(Error::Unexpected { what: "command".into(), why: "empty argv".into() });
        }
        let mut vars: Vec<String> = vec![DEFAULT_PATH.to_string()];
        for e in env {
            let key = e.split_once('=').map(|(k, _)| k).unwrap_or(e.as_str());
            vars.retain(|v| v.split_once('=').map(|(k, _)| k) != Some(key));
            vars.push(e.clone());
        }
        Ok(Command {
            argv: argv.iter().map(|a| cstring("argument", a)).collect::<Result<_>>()?,
            env: vars.iter().map(|v| cstring("environment variable", v)).collect::<Result<_>>()?,
            stdio,
            cwd: None,
        })
    }

    pub fn program(&self) -> String {
        self.argv[0].to_string_lossy().into_owned()
    }
}

mod ioctls {
    nix::ioctl_write_int_bad!(tiocsctty, nix::libc::TIOCSCTTY);
}

/// What a forked child must not inherit from PID 1, undone before exec: PID 1's panic hook
/// (it would open the emergency shell in the child), the blocked signals PID 1 reads through
/// its signalfd, and the dispositions exec keeps (an ignored signal stays ignored: Rust
/// ignores SIGPIPE).
pub fn reset_inherited_state() {
    let _ = std::panic::take_hook();
    let _ = nix::sys::signal::sigprocmask(SigmaskHow::SIG_SETMASK, Some(&SigSet::empty()), None);
    for s in crate::signals::HANDLED.iter().chain(&[Signal::SIGPIPE]) {
        // SAFETY: a default disposition installs no handler (no code of ours runs on it).
        let _ = unsafe { nix::sys::signal::signal(*s, nix::sys::signal::SigHandler::SigDfl) };
    }
}

/// In the child: set up and exec. Never returns.
fn child(cmd: &Command) -> ! {
    reset_inherited_state();
    let _ = nix::unistd::setsid();
    match &cmd.stdio {
        Stdio::Console => {
            use std::os::unix::fs::OpenOptionsExt;
            if let Ok(null) = std::fs::File::open("/dev/null") {
                let _ = nix::unistd::dup2(null.as_raw_fd(), 0);
            }
            if let Ok(con) = std::fs::OpenOptions::new().write(true).custom_flags(nix::libc::O_NOCTTY).open(CONSOLE) {
                let _ = nix::unistd::dup2(con.as_raw_fd(), 1);
                let _ = nix::unistd::dup2(con.as_raw_fd(), 2);
            }
        }
        Stdio::Terminal(tty) => {
            if let Ok(t) = std::fs::OpenOptions::new().read(true).write(true).open(tty) {
                for fd in 0..=2 {
                    let _ = nix::unistd::dup2(t.as_raw_fd(), fd);
                }
                // SAFETY: TIOCSCTTY takes an int (1 = steal from another session if needed);
                // fd 0 is the terminal opened above.
                let _ = unsafe { ioctls::tiocsctty(0, 1) };
            }
        }
    }
    if let Some(dir) = &cmd.cwd {
        let _ = nix::unistd::chdir(dir.as_c_str());
    }
    let err = match nix::unistd::execve(&cmd.argv[0], &cmd.argv, &cmd.env) {
        Err(e) => e,
        Ok(never) => match never {},
    };
    crate::console::info(&format!("exec {}: {err}", cmd.program()));
    // SAFETY: _exit is always safe to call; it skips destructors, which belong to the parent.
    unsafe { nix::libc::_exit(127) }
}

/// Fork and exec `cmd`; returns the child's pid (which is also its session and process group).
pub fn spawn(cmd: &Command) -> Result<Pid> {
    // SAFETY: oa-init's only other thread (the DHCP lease, net::lease) holds no lock the child
    // needs (it writes the console without the stdout lock), and musl's fork leaves malloc
    // usable in the child, so the child may allocate and run arbitrary code before exec.
    match unsafe { nix::unistd::fork() }.sys("fork for", cmd.program())? {
        ForkResult::Parent { child: pid } => Ok(pid),
        ForkResult::Child => child(cmd),
    }
}

/// The real terminal behind /dev/console (`/sys/class/tty/console/active`, last entry), so a
/// shell can have it as its controlling terminal; /dev/console itself when unknown.
pub fn console_tty() -> PathBuf {
    std::fs::read_to_string("/sys/class/tty/console/active")
        .ok()
        .and_then(|s| s.split_whitespace().last().map(|n| PathBuf::from("/dev").join(n)))
        .filter(|p| p.exists())
        .unwrap_or_else(|| PathBuf::from(CONSOLE))
}

#[cfg(test)]
mod tests {
    use super::*;
    use nix::sys::signal::SigHandler;
    use std::sync::atomic::{AtomicBool, Ordering};

    static HOOK_RAN: AtomicBool = AtomicBool::new(false);

    /// The reset a child does before exec: PID 1's panic hook is gone, no signal is blocked,
    /// SIGPIPE (ignored by Rust) is back to its default. Run on this test's own thread (the
    /// signal mask is per thread).
    #[test]
    fn children_do_not_inherit_the_hook_the_mask_or_ignored_signals() {
        std::panic::set_hook(Box::new(|_| HOOK_RAN.store(true, Ordering::SeqCst)));
        let mut m = SigSet::empty();
        m.add(Signal::SIGUSR1);
        m.add(Signal::SIGTERM);
        m.thread_block().unwrap();
        // SAFETY: SIG_IGN installs no handler.
        unsafe { nix::sys::signal::signal(Signal::SIGPIPE, SigHandler::SigIgn) }.unwrap();

        reset_inherited_state();

        let blocked = SigSet::thread_get_mask().unwrap();
        assert!(!blocked.contains(Signal::SIGUSR1) && !blocked.contains(Signal::SIGTERM));
        // SAFETY: SIG_DFL installs no handler; the previous disposition is what is checked.
        let prev = unsafe { nix::sys::signal::signal(Signal::SIGPIPE, SigHandler::SigDfl) }.unwrap();
        assert_eq!(prev, SigHandler::SigDfl);
        assert!(std::panic::catch_unwind(|| panic!("in a child")).is_err());
        assert!(!HOOK_RAN.load(Ordering::SeqCst), "PID 1's panic hook ran after the reset");
        // SAFETY: as above; the test binary ignores SIGPIPE again as Rust set it up.
        let _ = unsafe { nix::sys::signal::signal(Signal::SIGPIPE, SigHandler::SigIgn) };
    }
}
