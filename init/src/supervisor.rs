//! The service supervisor of stage 2: start services, reap every child (PID 1 adopts orphans),
//! restart by policy with back-off, shut down on signals.

use std::time::{Duration, Instant};

use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;
use oa_contract::config::{Restart, Service};

use crate::coldplug::Coldplug;
use crate::console;
use crate::process::{self, Command, Stdio};
use crate::shutdown;
use crate::signals::{Action, Signals};

pub const BACKOFF_INITIAL: Duration = Duration::from_millis(100);
pub const BACKOFF_MAX: Duration = Duration::from_secs(30);
/// A run longer than this resets the back-off.
pub const BACKOFF_RESET_AFTER: Duration = Duration::from_secs(10);

/// Restart delay: 100 ms doubling up to 30 s, reset after a run of more than 10 s.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Backoff {
    next: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff { next: BACKOFF_INITIAL }
    }
}

impl Backoff {
    /// The delay before the next start, after a run that lasted `ran`.
    pub fn on_exit(&mut self, ran: Duration) -> Duration {
        if ran > BACKOFF_RESET_AFTER {
            self.next = BACKOFF_INITIAL;
        }
        let d = self.next;
        self.next = (self.next * 2).min(BACKOFF_MAX);
        d
    }
}

/// How a process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    Status(i32),
    Signal(nix::sys::signal::Signal),
}

impl Exit {
    pub fn success(self) -> bool {
        self == Exit::Status(0)
    }
}

impl std::fmt::Display for Exit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Exit::Status(c) => write!(f, "status {c}"),
            Exit::Signal(s) => write!(f, "signal {}", s.as_str()),
        }
    }
}

pub fn should_restart(policy: Restart, exit: Exit) -> bool {
    match policy {
        Restart::Always => true,
        Restart::OnFailure => !exit.success(),
        Restart::Never => false,
    }
}

fn policy_name(p: Restart) -> &'static str {
    match p {
        Restart::Always => "always",
        Restart::OnFailure => "on-failure",
        Restart::Never => "never",
    }
}

/// A supervised process: a service or the console shell.
pub struct Unit {
    pub name: String,
    cmd: Command,
    restart: Restart,
    pid: Option<Pid>,
    started: Instant,
    backoff: Backoff,
    restart_at: Option<Instant>,
}

impl Unit {
    pub fn service(s: &Service) -> crate::error::Result<Unit> {
        Ok(Unit::new(&s.name, Command::new(&s.command, &s.env, Stdio::Console)?, s.restart))
    }

    /// `/bin/sh` on the console as a session leader with the console as controlling terminal.
    pub fn console_shell(hostname: &str) -> crate::error::Result<Unit> {
        let env = ["HOME=/root".to_string(), "TERM=linux".to_string(), format!("PS1={hostname}# ")];
        let mut cmd = Command::new(&["/bin/sh".to_string()], &env, Stdio::Terminal(process::console_tty()))?;
        cmd.cwd = std::ffi::CString::new("/root").ok().filter(|_| std::path::Path::new("/root").is_dir());
        Ok(Unit::new("console-shell", cmd, Restart::Always))
    }

    fn new(name: &str, cmd: Command, restart: Restart) -> Unit {
        Unit {
            name: name.to_string(),
            cmd,
            restart,
            pid: None,
            started: Instant::now(),
            backoff: Backoff::default(),
            restart_at: None,
        }
    }
}

pub struct Supervisor {
    units: Vec<Unit>,
    signals: Signals,
    /// Drivers for devices found after stage 1 (crate::coldplug), polled on every wake-up.
    coldplug: Option<Coldplug>,
}

/// With coldplug, how long the main loop sleeps at most between two looks at the uevents.
const COLDPLUG_TICK: Duration = Duration::from_millis(250);

impl Supervisor {
    pub fn new(units: Vec<Unit>, signals: Signals) -> Supervisor {
        Supervisor { units, signals, coldplug: None }
    }

    pub fn set_coldplug(&mut self, c: Coldplug) {
        self.coldplug = Some(c);
    }

    fn start(&mut self, i: usize) {
        let u = &mut self.units[i];
        u.restart_at = None;
        u.started = Instant::now();
        match process::spawn(&u.cmd) {
            Ok(pid) => {
                u.pid = Some(pid);
                console::info(&format!("service {} started pid={pid}", u.name));
            }
            Err(e) => {
                // fork failed: try again later like a crash.
                let d = u.backoff.on_exit(Duration::ZERO);
                console::warn(&format!("service {}: {e}; retrying in {} ms", u.name, d.as_millis()));
                u.restart_at = Some(Instant::now() + d);
            }
        }
    }

    pub fn start_all(&mut self) {
        for i in 0..self.units.len() {
            self.start(i);
        }
    }

    fn exited(&mut self, pid: Pid, exit: Exit) {
        let Some(u) = self.units.iter_mut().find(|u| u.pid == Some(pid)) else {
            console::debug(&format!("reaped pid {pid} ({exit})"));
            return;
        };
        u.pid = None;
        let ran = u.started.elapsed();
        console::info(&format!("service {} exited ({exit}) after {:.1} s", u.name, ran.as_secs_f64()));
        if should_restart(u.restart, exit) {
            let d = u.backoff.on_exit(ran);
            console::info(&format!("service {} restarting in {} ms", u.name, d.as_millis()));
            u.restart_at = Some(Instant::now() + d);
        } else {
            console::info(&format!("service {} stays stopped (restart={})", u.name, policy_name(u.restart)));
        }
    }

    fn reap(&mut self) {
        loop {
            match waitpid(Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::Exited(pid, code)) => self.exited(pid, Exit::Status(code)),
                Ok(WaitStatus::Signaled(pid, sig, _)) => self.exited(pid, Exit::Signal(sig)),
                Ok(WaitStatus::StillAlive) => break,
                Ok(_) => {}
                Err(nix::errno::Errno::EINTR) => {}
                Err(_) => break, // ECHILD
            }
        }
    }

    /// The main loop of PID 1. Never returns: shutdown ends in reboot(2).
    pub fn run(&mut self) -> ! {
        loop {
            let now = Instant::now();
            let next = self.units.iter().filter_map(|u| u.restart_at).min();
            let mut timeout = next.map(|t| t.saturating_duration_since(now));
            if let Some(c) = &self.coldplug {
                let tick = match (c.busy(), c.queued()) {
                    (true, _) => Duration::ZERO,
                    (false, 0) => COLDPLUG_TICK,
                    (false, _) => Duration::from_millis(50),
                };
                timeout = Some(timeout.map_or(tick, |t| t.min(tick)));
            }
            let sigs = self.signals.wait(timeout);
            for s in &sigs {
                if let Some(a) = Action::from_signal(*s) {
                    self.shutdown(a);
                }
            }
            // Reap on every wake-up (SIGCHLD can coalesce).
            self.reap();
            if let Some(c) = &mut self.coldplug {
                c.poll();
            }
            let now = Instant::now();
            for i in 0..self.units.len() {
                if self.units[i].restart_at.is_some_and(|t| t <= now) {
                    self.start(i);
                }
            }
        }
    }

    fn shutdown(&mut self, a: Action) -> ! {
        let groups: Vec<Pid> = self.units.iter().filter_map(|u| u.pid).collect();
        shutdown::shutdown(a, &groups)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_and_caps() {
        let mut b = Backoff::default();
        let quick = Duration::from_millis(5);
        let seq: Vec<u128> = (0..12).map(|_| b.on_exit(quick).as_millis()).collect();
        assert_eq!(seq, vec![100, 200, 400, 800, 1600, 3200, 6400, 12800, 25600, 30000, 30000, 30000]);
    }

    #[test]
    fn backoff_resets_after_a_long_run() {
        let mut b = Backoff::default();
        for _ in 0..5 {
            b.on_exit(Duration::from_secs(1));
        }
        assert_eq!(b.on_exit(Duration::from_secs(11)), BACKOFF_INITIAL);
        assert_eq!(b.on_exit(Duration::from_secs(1)).as_millis(), 200);
        // exactly 10 s is not "more than 10 s"
        assert_eq!(b.on_exit(BACKOFF_RESET_AFTER).as_millis(), 400);
    }

    #[test]
    fn restart_policy() {
        use nix::sys::signal::Signal;
        assert!(should_restart(Restart::Always, Exit::Status(0)));
        assert!(!should_restart(Restart::OnFailure, Exit::Status(0)));
        assert!(should_restart(Restart::OnFailure, Exit::Status(1)));
        assert!(should_restart(Restart::OnFailure, Exit::Signal(Signal::SIGKILL)));
        assert!(!should_restart(Restart::Never, Exit::Status(1)));
    }
}
