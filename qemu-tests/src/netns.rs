//! Private networks for netboot tests: a network namespace with a bridge and a tap device,
//! made and removed by the test. Everything a test runs in it (QEMU, `oa serve`, dnsmasq)
//! is started with `ip netns exec`, so no packet reaches any other network.

use std::path::Path;
use std::process::{Child, Command, Stdio};

/// A network namespace, deleted (with its devices) when dropped.
pub struct Netns {
    pub name: String,
}

fn ip(args: &[&str]) {
    let o = Command::new("ip").args(args).output().expect("running ip (iproute2; `make deps`)");
    assert!(o.status.success(), "ip {}: {}", args.join(" "), String::from_utf8_lossy(&o.stderr));
}

impl Netns {
    /// `oa-<tag>-<pid>` with `lo` up and nothing else.
    pub fn new(tag: &str) -> Netns {
        let name = format!("oa-{tag}-{}", std::process::id());
        let _ = Command::new("ip").args(["netns", "del", &name]).stderr(Stdio::null()).status();
        ip(&["netns", "add", &name]);
        let ns = Netns { name };
        ns.ip(&["link", "set", "lo", "up"]);
        ns
    }

    /// `ip -n <ns> ...`
    pub fn ip(&self, args: &[&str]) {
        let mut a = vec!["-n", self.name.as_str()];
        a.extend_from_slice(args);
        ip(&a);
    }

    /// A bridge `br0` with `addr` (CIDR) and a tap `tap0` on it for QEMU.
    pub fn bridge_with_tap(&self, addr: &str) {
        self.ip(&["link", "add", "br0", "type", "bridge"]);
        self.ip(&["addr", "add", addr, "dev", "br0"]);
        self.ip(&["link", "set", "br0", "up"]);
        self.ip(&["tuntap", "add", "tap0", "mode", "tap"]);
        self.ip(&["link", "set", "tap0", "master", "br0"]);
        self.ip(&["link", "set", "tap0", "up"]);
    }

    /// A veth pair from this namespace's bridge into `other`, where it gets `addr` (CIDR).
    pub fn veth_to(&self, other: &Netns, addr: &str) {
        self.ip(&["link", "add", "vb0", "type", "veth", "peer", "name", "vo0"]);
        self.ip(&["link", "set", "vo0", "netns", &other.name]);
        self.ip(&["link", "set", "vb0", "master", "br0"]);
        self.ip(&["link", "set", "vb0", "up"]);
        other.ip(&["addr", "add", addr, "dev", "vo0"]);
        other.ip(&["link", "set", "vo0", "up"]);
    }

    /// A command run inside the namespace.
    pub fn command(&self, program: &str) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.name, program]);
        c
    }

    /// Start `program args` inside the namespace, stdout+stderr to `log`.
    pub fn spawn(&self, program: &str, args: &[String], log: &Path) -> Proc {
        let f = std::fs::File::create(log).expect("log file");
        let child = self
            .command(program)
            .args(args)
            .stdout(f.try_clone().expect("log"))
            .stderr(f)
            .stdin(Stdio::null())
            .spawn()
            .expect("ip netns exec");
        Proc(child)
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.name]).status();
    }
}

/// A process started for a test (`ip netns exec` execs it, so this is its own pid); killed
/// by its pid when dropped.
pub struct Proc(pub Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
