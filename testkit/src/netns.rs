//! Private networks for netboot tests: a network namespace with a bridge and a tap device,
//! made and removed by the test. Everything a test runs in it (QEMU, `oa serve`, dnsmasq)
//! is started with `ip netns exec`, so no packet reaches any other network; sockets a test
//! makes itself are made inside with [`Netns::run_in`].

use std::path::Path;
use std::process::{Child, Command, Stdio};

/// A network namespace, deleted (with its devices) when dropped.
pub struct Netns {
    pub name: String,
    veths: std::cell::Cell<u32>,
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
        let ns = Netns { name, veths: std::cell::Cell::new(0) };
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
        self.bridge(addr);
        self.ip(&["tuntap", "add", "tap0", "mode", "tap"]);
        self.ip(&["link", "set", "tap0", "master", "br0"]);
        self.ip(&["link", "set", "tap0", "up"]);
    }

    /// A bridge `br0` with `addr` (CIDR), for veths ([`Netns::veth_to`]).
    pub fn bridge(&self, addr: &str) {
        self.ip(&["link", "add", "br0", "type", "bridge"]);
        self.ip(&["addr", "add", addr, "dev", "br0"]);
        self.ip(&["link", "set", "br0", "up"]);
    }

    /// A veth pair from this namespace's bridge (`vb0`, `vb1`, ...) into `other`, where it is
    /// `vo0` with `addr` (CIDR).
    pub fn veth_to(&self, other: &Netns, addr: &str) {
        let n = self.veths.get();
        self.veths.set(n + 1);
        let vb = format!("vb{n}");
        self.ip(&["link", "add", &vb, "type", "veth", "peer", "name", "vo0", "netns", &other.name]);
        self.ip(&["link", "set", &vb, "master", "br0"]);
        self.ip(&["link", "set", &vb, "up"]);
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
        self.spawn_env(program, args, &[], log)
    }

    /// [`Netns::spawn`] with environment variables set (e.g. `RUST_LOG`).
    pub fn spawn_env(&self, program: &str, args: &[String], env: &[(&str, &str)], log: &Path) -> Proc {
        let f = std::fs::File::create(log).expect("log file");
        let child = self
            .command(program)
            .args(args)
            .envs(env.iter().copied())
            .stdout(f.try_clone().expect("log"))
            .stderr(f)
            .stdin(Stdio::null())
            .spawn()
            .expect("ip netns exec");
        Proc(child)
    }
}

impl Netns {
    /// Run `f` on a thread of its own that has entered the namespace (setns(2)): sockets it
    /// makes belong to the namespace for good, wherever they are used afterwards.
    pub fn run_in<T: Send + 'static>(&self, f: impl FnOnce() -> T + Send + 'static) -> T {
        self.thread_in(f).join().expect("thread in the namespace")
    }

    /// [`Netns::run_in`] without waiting: the thread's handle.
    pub fn thread_in<T: Send + 'static>(&self, f: impl FnOnce() -> T + Send + 'static) -> std::thread::JoinHandle<T> {
        use std::os::fd::AsRawFd;
        let path = format!("/run/netns/{}", self.name);
        std::thread::spawn(move || {
            let ns = std::fs::File::open(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
            // SAFETY: setns on an open namespace file; it changes only this thread's namespace.
            let r = unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) };
            assert_eq!(r, 0, "setns {path}: {}", std::io::Error::last_os_error());
            f()
        })
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
