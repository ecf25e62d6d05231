//! The failure path: a FATAL line, a hint, then an emergency shell (with `oa.shell`) or a halt.
//! Never a bare kernel panic: PID 1 does not exit.

use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};

use nix::sys::signal::Signal;
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;

use crate::console;
use crate::error::Failure;
use crate::process::{self, Command, Stdio};
use crate::shutdown;
use crate::signals::{Action, Signals};

static SHELL_ALLOWED: AtomicBool = AtomicBool::new(false);
static STAGE: AtomicU8 = AtomicU8::new(0);
static ENTERED: AtomicBool = AtomicBool::new(false);

/// Which stage runs: decides which shell is used (busybox of the initramfs, /bin/sh of the root).
pub fn set_stage(stage: u8) {
    STAGE.store(stage, Ordering::Relaxed);
}

/// `oa.shell` was given.
pub fn allow_shell(on: bool) {
    SHELL_ALLOWED.store(on, Ordering::Relaxed);
}

/// Print `FATAL <what>: <err>` and the failure's hint, then enter the emergency path.
pub fn fail(f: &Failure) -> ! {
    console::fatal(f.what, &f.err.to_string(), &f.hint());
    enter()
}

fn shell_argv() -> Option<Vec<String>> {
    let candidates: &[&[&str]] = if STAGE.load(Ordering::Relaxed) == 1 {
        &[&["/bin/busybox", "sh"]]
    } else {
        &[&["/bin/sh"], &["/bin/busybox", "sh"]]
    };
    candidates.iter().find(|c| Path::new(c[0]).exists()).map(|c| c.iter().map(|s| s.to_string()).collect())
}

/// The emergency path. With `oa.shell` and a shell present: run it on the console; when it
/// exits the machine powers off (`poweroff`, `reboot`, `halt` in the shell work as usual).
/// Otherwise: sync and halt.
pub fn enter() -> ! {
    if ENTERED.swap(true, Ordering::SeqCst) {
        // Failed again while already handling a failure: just stop.
        halt();
    }
    if SHELL_ALLOWED.load(Ordering::Relaxed) {
        match shell_argv() {
            Some(argv) => run_shell(&argv),
            None => console::info(&format!(
                "{} is set but no shell is present (the initramfs has no /bin/busybox)",
                oa_contract::cmdline::SHELL
            )),
        }
    }
    console::info("halting (add oa.shell to the kernel command line for an emergency shell)");
    halt()
}

fn halt() -> ! {
    nix::unistd::sync();
    let _ = nix::sys::reboot::reboot(nix::sys::reboot::RebootMode::RB_HALT_SYSTEM);
    shutdown::pause_forever()
}

fn run_shell(argv: &[String]) -> ! {
    let mut signals = match Signals::install() {
        Ok(s) => Some(s),
        Err(e) => {
            console::warn(&format!("emergency shell: {e}"));
            None
        }
    };
    let env = ["HOME=/".to_string(), "TERM=linux".to_string(), "PS1=(oa emergency) # ".to_string()];
    let tty = process::console_tty();
    let cmd = match Command::new(argv, &env, Stdio::Terminal(tty)) {
        Ok(c) => c,
        Err(e) => {
            console::warn(&format!("emergency shell: {e}"));
            halt()
        }
    };
    console::info(&format!(
        "starting an emergency shell ({}) on the console; the machine powers off when it exits",
        argv.join(" ")
    ));
    let pid = match process::spawn(&cmd) {
        Ok(p) => p,
        Err(e) => {
            console::warn(&format!("emergency shell: {e}"));
            halt()
        }
    };
    loop {
        let sigs = match signals.as_mut() {
            Some(s) => s.wait(None),
            None => vec![Signal::SIGCHLD],
        };
        for s in sigs {
            if let Some(a) = Action::from_signal(s) {
                shutdown::shutdown(a, &[pid]);
            }
        }
        let flags = if signals.is_some() { Some(WaitPidFlag::WNOHANG) } else { None };
        loop {
            match waitpid(Pid::from_raw(-1), flags) {
                Ok(WaitStatus::Exited(p, _)) | Ok(WaitStatus::Signaled(p, _, _)) if p == pid => {
                    console::info("emergency shell exited: powering off");
                    shutdown::shutdown(Action::Poweroff, &[]);
                }
                Ok(WaitStatus::StillAlive) | Err(_) => break,
                Ok(_) => {}
            }
        }
    }
}

/// Panic hook for PID 1: a FATAL line, then the emergency path. The work happens in the hook,
/// which never returns: PID 1 neither unwinds out of main nor aborts (either would be a
/// kernel panic).
pub fn install_panic_hook() {
    std::panic::set_hook(Box::new(|info| {
        let msg = info.to_string().replace('\n', " ");
        console::fatal("oa-init crashed", &msg, "this is a bug in oa-init; please report it with the console log");
        enter();
    }));
}
