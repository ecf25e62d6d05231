//! Shutdown: stop every process, sync, remount / read-only, and power off / halt / reboot.
//! PID 1 never exits: every path ends in reboot(2) or an endless pause().

use std::path::Path;
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::sys::reboot::RebootMode;
use nix::sys::signal::{kill, killpg, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;

use crate::console;
use crate::mounts;
use crate::signals::Action;

const GRACE: Duration = Duration::from_secs(3);

/// Reap children until none is left or `within` has passed. Returns whether all are gone.
fn reap_all(within: Duration) -> bool {
    let start = Instant::now();
    loop {
        match waitpid(Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::StillAlive) => {
                if start.elapsed() >= within {
                    return false;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            Ok(_) => {}
            Err(Errno::EINTR) => {}
            Err(_) => return true, // ECHILD: no children left
        }
    }
}

/// Stop all processes (the service process groups first) and carry out `action`.
pub fn shutdown(action: Action, groups: &[Pid]) -> ! {
    console::info(&format!("shutdown: {}", action.name()));
    for &g in groups {
        let _ = killpg(g, Signal::SIGTERM);
        // Interactive shells ignore SIGTERM but exit on hangup; stopped jobs need SIGCONT.
        let _ = killpg(g, Signal::SIGHUP);
        let _ = killpg(g, Signal::SIGCONT);
    }
    // Everything else (orphans adopted by PID 1); kill(-1) spares PID 1 itself.
    let _ = kill(Pid::from_raw(-1), Signal::SIGTERM);
    if !reap_all(GRACE) {
        console::info(&format!("shutdown: processes still running after {} s, killing them", GRACE.as_secs()));
        for &g in groups {
            let _ = killpg(g, Signal::SIGKILL);
        }
        let _ = kill(Pid::from_raw(-1), Signal::SIGKILL);
        reap_all(Duration::from_secs(1));
    }
    nix::unistd::sync();
    if let Err(e) = mounts::remount_readonly(Path::new("/")) {
        console::debug(&format!("shutdown: {e}"));
    }
    final_action(action)
}

/// sync and reboot(2). If the kernel refuses, wait forever.
pub fn final_action(action: Action) -> ! {
    nix::unistd::sync();
    let mode = match action {
        Action::Poweroff => RebootMode::RB_POWER_OFF,
        Action::Halt => RebootMode::RB_HALT_SYSTEM,
        Action::Reboot => RebootMode::RB_AUTOBOOT,
    };
    let Err(e) = nix::sys::reboot::reboot(mode);
    console::info(&format!("reboot({}) failed: {e}; waiting forever", action.name()));
    pause_forever()
}

pub fn pause_forever() -> ! {
    loop {
        nix::unistd::pause();
    }
}
