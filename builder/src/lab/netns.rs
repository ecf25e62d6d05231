//! The lab's private network: one network namespace holding a bridge per environment network
//! (with the lab host's address, where `oa serve` listens) and a tap per machine NIC. QEMU and
//! `oa serve` run inside it, so no packet of the lab reaches any other network. Made with
//! iproute2's `ip` (the standard tool), deleted with everything in it when dropped; a
//! namespace left by a lab whose process is gone (killed) is deleted by the next lab.

use crate::error::{Error, Result};
use std::process::{Command, Stdio};

/// Namespace names: `oa-lab-<pid>`.
const PREFIX: &str = "oa-lab-";

pub struct LabNetns {
    pub name: String,
}

fn ip(args: &[&str]) -> Result<()> {
    let o = Command::new("ip").args(args).stdin(Stdio::null()).output().map_err(|e| Error::ToolMissing {
        tool: "ip".into(),
        why: e.to_string(),
        hint: "install iproute2 (`make deps`)".into(),
    })?;
    if !o.status.success() {
        return Err(Error::ToolFailed {
            command: format!("ip {}", args.join(" ")),
            status: o.status.to_string(),
            output: String::from_utf8_lossy(&o.stderr).trim().to_string(),
        });
    }
    Ok(())
}

impl LabNetns {
    /// A fresh namespace for this process, `lo` up; stale lab namespaces removed first.
    pub fn new() -> Result<LabNetns> {
        remove_stale();
        let name = format!("{PREFIX}{}", std::process::id());
        let _ = Command::new("ip").args(["netns", "del", &name]).stderr(Stdio::null()).status();
        ip(&["netns", "add", &name])?;
        let ns = LabNetns { name };
        ns.ip(&["link", "set", "lo", "up"])?;
        Ok(ns)
    }

    /// A second namespace of this lab (`oa-lab-<pid>-<tag>`), for a server that must not
    /// share the lab's ports (dnsmasq next to oa serve's proxyDHCP).
    pub fn side(lab: &LabNetns, tag: &str) -> Result<LabNetns> {
        let name = format!("{}-{tag}", lab.name);
        let _ = Command::new("ip").args(["netns", "del", &name]).stderr(Stdio::null()).status();
        ip(&["netns", "add", &name])?;
        let ns = LabNetns { name };
        ns.ip(&["link", "set", "lo", "up"])?;
        Ok(ns)
    }

    /// `ip -n <ns> ...`
    pub fn ip(&self, args: &[&str]) -> Result<()> {
        let mut a = vec!["-n", self.name.as_str()];
        a.extend_from_slice(args);
        ip(&a)
    }

    /// A bridge with the lab host's address `cidr` (e.g. `10.90.0.1/24`).
    pub fn bridge(&self, name: &str, cidr: &str) -> Result<()> {
        self.ip(&["link", "add", name, "type", "bridge"])?;
        // No STP wait: a port forwards at once (a PXE ROM does not wait 30 s).
        self.ip(&["link", "set", name, "type", "bridge", "forward_delay", "0", "stp_state", "0"])?;
        self.ip(&["addr", "add", cidr, "dev", name])?;
        self.ip(&["link", "set", name, "up"])
    }

    /// A tap on `bridge`, for one QEMU NIC.
    pub fn tap(&self, tap: &str, bridge: &str) -> Result<()> {
        self.ip(&["tuntap", "add", tap, "mode", "tap"])?;
        self.ip(&["link", "set", tap, "master", bridge])?;
        self.ip(&["link", "set", tap, "up"])
    }

    /// A command run inside the namespace.
    pub fn command(&self, program: &str) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.name, program]);
        c
    }
}

impl Drop for LabNetns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.name]).stderr(Stdio::null()).status();
    }
}

/// Delete `oa-lab-<pid>` namespaces whose process is gone.
fn remove_stale() {
    let Ok(dir) = std::fs::read_dir("/run/netns") else { return };
    for e in dir.flatten() {
        let name = e.file_name().to_string_lossy().to_string();
        let Some(pid) = name.strip_prefix(PREFIX).and_then(|p| p.split('-').next()).and_then(|p| p.parse::<u32>().ok())
        else {
            continue;
        };
        if !std::path::Path::new(&format!("/proc/{pid}")).exists() {
            eprintln!("oa lab: removing network namespace {name} left by a lab that is gone");
            let _ = Command::new("ip").args(["netns", "del", &name]).status();
        }
    }
}
