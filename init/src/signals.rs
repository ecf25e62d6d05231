//! Signals of PID 1, read synchronously through a signalfd (the signals are blocked).

use std::os::fd::AsFd;
use std::time::Duration;

use nix::poll::{PollFd, PollFlags, PollTimeout};
use nix::sys::signal::{SigSet, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};

use crate::error::{Result, SysContext};

/// What to do at the end (busybox conventions for the signals).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Poweroff,
    Halt,
    Reboot,
}

impl Action {
    pub fn name(self) -> &'static str {
        match self {
            Action::Poweroff => "poweroff",
            Action::Halt => "halt",
            Action::Reboot => "reboot",
        }
    }

    /// SIGUSR2 poweroff, SIGUSR1 halt, SIGTERM reboot, SIGINT (ctrl-alt-del) reboot.
    pub fn from_signal(s: Signal) -> Option<Action> {
        match s {
            Signal::SIGUSR2 | Signal::SIGPWR => Some(Action::Poweroff),
            Signal::SIGUSR1 => Some(Action::Halt),
            Signal::SIGTERM | Signal::SIGINT => Some(Action::Reboot),
            _ => None,
        }
    }
}

pub const HANDLED: [Signal; 7] = [
    Signal::SIGCHLD,
    Signal::SIGUSR1,
    Signal::SIGUSR2,
    Signal::SIGTERM,
    Signal::SIGINT,
    Signal::SIGHUP,
    Signal::SIGPWR,
];

pub struct Signals {
    fd: SignalFd,
}

impl Signals {
    /// Block the signals PID 1 handles and open a signalfd for them.
    pub fn install() -> Result<Signals> {
        let mut mask = SigSet::empty();
        for s in HANDLED {
            mask.add(s);
        }
        mask.thread_block().sys("block signals", "(pid 1)")?;
        let fd =
            SignalFd::with_flags(&mask, SfdFlags::SFD_NONBLOCK | SfdFlags::SFD_CLOEXEC).sys("signalfd", "(pid 1)")?;
        Ok(Signals { fd })
    }

    /// Wait up to `timeout` (forever when None) and return the signals that arrived.
    pub fn wait(&mut self, timeout: Option<Duration>) -> Vec<Signal> {
        let t = match timeout {
            None => PollTimeout::NONE,
            Some(d) => {
                PollTimeout::try_from(d.as_millis().max(1).min(i32::MAX as u128) as i32).unwrap_or(PollTimeout::MAX)
            }
        };
        let mut fds = [PollFd::new(self.fd.as_fd(), PollFlags::POLLIN)];
        let _ = nix::poll::poll(&mut fds, t);
        let mut out = Vec::new();
        while let Ok(Some(info)) = self.fd.read_signal() {
            if let Ok(s) = Signal::try_from(info.ssi_signo as i32) {
                out.push(s);
            }
        }
        out
    }
}
