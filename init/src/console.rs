//! Console output: one line per stage, the ready line, FATAL lines. Every line is written with
//! a single write so that lines from oa-init and its children do not interleave mid-line.

use std::io::Write;
use std::os::fd::{AsRawFd, IntoRawFd};
use std::sync::atomic::{AtomicBool, Ordering};

use oa_contract::ConsoleLine;

static DEBUG: AtomicBool = AtomicBool::new(false);

pub const CONSOLE: &str = "/dev/console";

pub fn set_debug(on: bool) {
    DEBUG.store(on, Ordering::Relaxed);
}

/// Write one line (a newline is added) to stdout, which is the console when running as PID 1.
pub fn line(s: &str) {
    let mut buf = String::with_capacity(s.len() + 1);
    buf.push_str(s);
    buf.push('\n');
    let out = std::io::stdout();
    let mut lock = out.lock();
    // Nothing sensible can be done if the console is gone: ignore write errors.
    let _ = lock.write_all(buf.as_bytes());
    let _ = lock.flush();
}

/// Write one [`ConsoleLine`].
pub fn print(l: ConsoleLine<'_>) {
    line(&l.to_string());
}

/// `oa-init: <msg>`
pub fn info(msg: &str) {
    print(ConsoleLine::Info(msg));
}

/// `oa-init: warning: <msg>`
pub fn warn(msg: &str) {
    print(ConsoleLine::Warning(msg));
}

/// `oa-init: debug: <msg>`, only with `oa.debug`.
pub fn debug(msg: &str) {
    if DEBUG.load(Ordering::Relaxed) {
        print(ConsoleLine::Debug(msg));
    }
}

/// `oa-init: stage <name>: <msg>`
pub fn stage(name: &str, msg: &str) {
    print(ConsoleLine::Stage { name, text: msg });
}

/// `oa-init: FATAL <what>: <why>` and `oa-init: hint: <hint>`
pub fn fatal(what: &str, why: &str, hint: &str) {
    print(ConsoleLine::Fatal { what, why });
    print(ConsoleLine::Hint(hint));
}

/// `oa-init: ready host=<hostname> profile=<profile>`
pub fn ready(hostname: &str, profile: &str) {
    print(ConsoleLine::Ready { host: hostname, profile });
}

/// Point stdin, stdout and stderr at /dev/console. Best effort: when the console cannot be
/// opened the inherited descriptors are kept.
pub fn attach() {
    let f = match std::fs::OpenOptions::new().read(true).write(true).custom_flags_noctty().open(CONSOLE) {
        Ok(f) => f,
        Err(_) => return,
    };
    let fd = f.as_raw_fd();
    for target in 0..=2 {
        if fd != target {
            let _ = nix::unistd::dup2(fd, target);
        }
    }
    if fd > 2 {
        drop(f);
    } else {
        // The console landed on 0..2 itself: keep it open.
        let _ = f.into_raw_fd();
    }
}

trait NoCtty {
    fn custom_flags_noctty(&mut self) -> &mut Self;
}

impl NoCtty for std::fs::OpenOptions {
    fn custom_flags_noctty(&mut self) -> &mut Self {
        use std::os::unix::fs::OpenOptionsExt;
        self.custom_flags(nix::libc::O_NOCTTY)
    }
}
