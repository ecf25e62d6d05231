//! The oa-pxe benchmark (`oa-pxe-bench`, run by `make bench`): each protocol measured side by
//! side with the real server it replaces, started in the same run with the same clients:
//! DHCP against kea-dhcp4 (memfile) under perfdhcp, HTTP against nginx under wrk and curl, TFTP
//! against dnsmasq (lock-step: dnsmasq has no RFC 7440 windowsize). Each module returns its
//! [`Row`]s; the binary prints them as one table.

/// One measured figure: oa-pxe's, the peer's where there is one, and the goal for the ratio.
#[derive(Debug, Clone)]
pub struct Row {
    /// What was measured, with the client and load ("HTTP 4 KiB, wrk 32 connections").
    pub what: String,
    /// Unit of `oa` and the peer's figure ("req/s", "MiB/s", "exchanges/s").
    pub unit: &'static str,
    pub oa: f64,
    /// The peer's name and figure, measured in the same run.
    pub peer: Option<(&'static str, f64)>,
    /// The goal for oa / peer, where it sets one.
    pub goal: Option<f64>,
}

impl Row {
    /// oa / peer, when there is a peer that measured more than nothing.
    pub fn ratio(&self) -> Option<f64> {
        self.peer.and_then(|(_, p)| (p > 0.0).then(|| self.oa / p))
    }
}

/// The rows as a Markdown table (what | oa-pxe | peer | ratio | goal).
pub fn table(rows: &[Row]) -> String {
    let mut t = String::from("| what | oa-pxe | peer | ratio | goal |\n|---|---|---|---|---|\n");
    for r in rows {
        let peer = r.peer.map(|(n, v)| format!("{n}: {v:.1} {}", r.unit)).unwrap_or_else(|| "-".into());
        let ratio = r.ratio().map(|x| format!("{x:.2}")).unwrap_or_else(|| "-".into());
        let goal = match (r.goal, r.ratio()) {
            (Some(g), Some(x)) => format!(">= {g:.2} {}", if x >= g { "met" } else { "NOT met" }),
            (Some(g), None) => format!(">= {g:.2}"),
            _ => "-".into(),
        };
        t.push_str(&format!("| {} | {:.1} {} | {peer} | {ratio} | {goal} |\n", r.what, r.oa, r.unit));
    }
    t
}

/// Peer processes die with the benchmark (release builds abort on panic, so Drop may not run).
pub fn tied(mut c: std::process::Command) -> std::process::Command {
    use std::os::unix::process::CommandExt;
    // SAFETY: prctl is async-signal-safe; nothing else runs between fork and exec here.
    unsafe {
        c.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            Ok(())
        });
    }
    c
}

/// A server with worker processes (nginx), stopped with SIGTERM when dropped so that it takes
/// its workers down (SIGKILL to the master leaves them running), then killed if it has not
/// exited within 5 s.
pub struct Stop(pub std::process::Child);
impl Drop for Stop {
    fn drop(&mut self) {
        // SAFETY: kill(2) with the pid of a child we have not reaped yet.
        unsafe { libc::kill(self.0.id() as libc::pid_t, libc::SIGTERM) };
        let t = std::time::Instant::now();
        while t.elapsed() < std::time::Duration::from_secs(5) {
            if let Ok(Some(_)) = self.0.try_wait() {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A child process killed and reaped when dropped.
pub struct Kill(pub std::process::Child);
impl Drop for Kill {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

// One module per protocol, each with its peer.
pub mod dhcp;
pub mod http;
pub mod tftp;
