//! `oa lab ENV`: an environment proved in a virtual lab (docs/environments.md).
//!
//! The flow: load the environment; build (cached) or read each machine's output; make the
//! lab's network namespace ([`netns`]) with a bridge per network and a tap per NIC; start `oa
//! serve` on each network that has one (its per-machine files written from the environment)
//! and dnsmasq where a network has a DHCP server of its own; boot every machine on a thread of
//! its own, at most `--jobs` booting at once ([`Slots`]: a machine holds a slot from QEMU's
//! start to its ready line); play each machine's checks ([`machine`]); keep every machine up
//! until all are done (a `reach` check needs the other machine running); print the table
//! ([`report`]) and JUnit XML. Everything is torn down on the way out, also on Ctrl-C: QEMU and
//! the servers get SIGKILL when oa ends (PR_SET_PDEATHSIG), the namespace is deleted.

pub mod machine;
pub mod netns;
pub mod report;

use crate::cli::{AccelArg, LabArgs};
use crate::env::{self, CheckKind, Env, ServeMode};
use crate::error::{Error, IoContext, Result};
use crate::qemu::{self, Accel};
use machine::MachineResult;
use netns::LabNetns;
use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

/// Set by SIGINT/SIGTERM.
static INTERRUPTED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    INTERRUPTED.store(true, Ordering::SeqCst);
}

fn install_signals() {
    use nix::sys::signal::{sigaction, SaFlags, SigAction, SigHandler, SigSet, Signal};
    let a = SigAction::new(SigHandler::Handler(on_signal), SaFlags::empty(), SigSet::empty());
    for s in [Signal::SIGINT, Signal::SIGTERM] {
        // SAFETY: the handler only stores to an atomic.
        let _ = unsafe { sigaction(s, &a) };
    }
}

/// Boot slots: at most `n` machines between QEMU's start and their ready line.
pub struct Slots {
    free: Mutex<usize>,
    cv: Condvar,
}

pub struct SlotGuard<'a>(&'a Slots);

impl Slots {
    pub fn new(n: usize) -> Slots {
        Slots { free: Mutex::new(n.max(1)), cv: Condvar::new() }
    }

    pub fn take(&self) -> SlotGuard<'_> {
        let mut f = self.free.lock().unwrap_or_else(|e| e.into_inner());
        while *f == 0 {
            f = self.cv.wait(f).unwrap_or_else(|e| e.into_inner());
        }
        *f -= 1;
        SlotGuard(self)
    }
}

impl Drop for SlotGuard<'_> {
    fn drop(&mut self) {
        *self.0.free.lock().unwrap_or_else(|e| e.into_inner()) += 1;
        self.0.cv.notify_one();
    }
}

#[derive(Default)]
struct State {
    /// Machines that reached ready (true) or failed to (false).
    ready: BTreeMap<String, bool>,
    /// Machines still playing their checks.
    running: usize,
    /// Running QEMU processes, by machine.
    pids: BTreeMap<String, u32>,
}

/// What every machine thread shares.
pub struct Lab {
    pub env: Env,
    pub ns: LabNetns,
    pub dir: PathBuf,
    keep: bool,
    state: Mutex<State>,
    cv: Condvar,
    /// The leases file of each network's DHCP server, by network name.
    leases: BTreeMap<String, Lease>,
    /// The lab's SSH key (private key path), when a check uses SSH.
    pub ssh_key: Option<PathBuf>,
}

/// Where a network's DHCP server keeps its leases.
#[derive(Debug, Clone)]
enum Lease {
    /// `oa serve --mode dhcp`: its journal (JSON lines `{"mac","ip","expires"}`).
    Oa(PathBuf),
    /// dnsmasq's lease file (`expiry mac ip name id` lines).
    Dnsmasq(PathBuf),
}

impl Lab {
    pub fn interrupted(&self) -> bool {
        INTERRUPTED.load(Ordering::SeqCst)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn register(&self, machine: &str, pid: Option<u32>) {
        let mut s = self.lock();
        match pid {
            Some(p) => s.pids.insert(machine.to_string(), p),
            None => s.pids.remove(machine),
        };
    }

    pub fn set_ready(&self, machine: &str, ok: bool) {
        self.lock().ready.insert(machine.to_string(), ok);
        self.cv.notify_all();
    }

    pub fn machine_done(&self, _machine: &str) {
        let mut s = self.lock();
        s.running = s.running.saturating_sub(1);
        self.cv.notify_all();
    }

    /// Until every machine is done (with `--keep`: until Ctrl-C).
    pub fn wait_all_done(&self) {
        let mut s = self.lock();
        loop {
            if self.interrupted() || (s.running == 0 && !self.keep) {
                return;
            }
            s = self.cv.wait_timeout(s, Duration::from_millis(200)).unwrap_or_else(|e| e.into_inner()).0;
        }
    }

    /// Kill every running machine (Ctrl-C).
    fn kill_all(&self) {
        for pid in self.lock().pids.values() {
            let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(*pid as i32), nix::sys::signal::Signal::SIGKILL);
        }
    }

    /// The address `machine` got from the DHCP server of its first network: waits for the
    /// machine to be ready and its lease to be on file.
    pub fn address_of(&self, machine: &str, within: Duration) -> std::result::Result<Ipv4Addr, String> {
        let start = Instant::now();
        let m = self.env.machine(machine).ok_or_else(|| format!("no machine `{machine}`"))?;
        let net = env::addressed_by(&self.env.networks, m)
            .ok_or_else(|| format!("{machine} has no address the lab knows"))?;
        let lease = self.leases.get(&net.name).ok_or_else(|| format!("network {} has no DHCP server", net.name))?;
        let mac = m.nic_mac_string(0);
        loop {
            let ready = self.lock().ready.get(machine).copied();
            if ready == Some(false) {
                return Err(format!("{machine} did not reach ready"));
            }
            if ready == Some(true) {
                if let Some(ip) = read_lease(lease, &mac) {
                    return Ok(ip);
                }
            }
            if start.elapsed() > within || self.interrupted() {
                return Err(format!(
                    "no lease for {machine} ({mac}) on {} within {:.0} s",
                    net.name,
                    within.as_secs_f64()
                ));
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// `ssh user@ip command` from the lab's side of the network, retried until `within`.
    pub fn ssh(
        &self,
        ip: &Ipv4Addr,
        user: &str,
        command: &str,
        output: Option<&str>,
        exit: i32,
        within: Duration,
    ) -> std::result::Result<(), String> {
        let key = self.ssh_key.as_ref().ok_or("the lab has no SSH key")?;
        let start = Instant::now();
        loop {
            let o = self
                .ns
                .command("ssh")
                .arg("-i")
                .arg(key)
                .args(["-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null", "-o", "BatchMode=yes"])
                .args(["-o", "ConnectTimeout=5", "-o", "LogLevel=ERROR"])
                .arg(format!("{user}@{ip}"))
                .arg(command)
                .stdin(Stdio::null())
                .output()
                .map_err(|e| format!("running ssh (install openssh-client): {e}"))?;
            let code = o.status.code().unwrap_or(-1);
            let stdout = String::from_utf8_lossy(&o.stdout).to_string();
            // 255: ssh itself failed (not up yet): try again.
            if code != 255 {
                if code != exit {
                    return Err(format!(
                        "ssh {user}@{ip} {command:?} exited {code}, expected {exit}: {}",
                        stdout.trim()
                    ));
                }
                if let Some(want) = output {
                    if !stdout.contains(want) {
                        return Err(format!("ssh {user}@{ip} {command:?} printed {:?}, not {want:?}", stdout.trim()));
                    }
                }
                return Ok(());
            }
            if start.elapsed() > within || self.interrupted() {
                return Err(format!(
                    "no SSH login to {user}@{ip} within {:.0} s: {}",
                    within.as_secs_f64(),
                    String::from_utf8_lossy(&o.stderr).trim()
                ));
            }
            std::thread::sleep(Duration::from_secs(2));
        }
    }
}

/// The address leased to `mac`, from a DHCP server's lease file.
fn read_lease(lease: &Lease, mac: &str) -> Option<Ipv4Addr> {
    match lease {
        Lease::Oa(p) => {
            let text = std::fs::read_to_string(p).ok()?;
            let mut found = None;
            for line in text.lines() {
                let Ok(v) = serde_json::from_str::<serde_json::Value>(line) else { continue };
                if v["mac"].as_str().is_some_and(|m| m.eq_ignore_ascii_case(mac)) {
                    found = if v["expires"].as_u64() == Some(0) {
                        None
                    } else {
                        v["ip"].as_str().and_then(|s| s.parse().ok())
                    };
                }
            }
            found
        }
        Lease::Dnsmasq(p) => {
            let text = std::fs::read_to_string(p).ok()?;
            text.lines().rev().find_map(|l| {
                let w: Vec<&str> = l.split_whitespace().collect();
                (w.len() >= 3 && w[1].eq_ignore_ascii_case(mac)).then(|| w[2].parse().ok()).flatten()
            })
        }
    }
}

/// A server process of the lab, killed when dropped.
struct Server {
    what: String,
    child: Child,
    log: PathBuf,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn spawn_server(
    ns: &LabNetns,
    what: &str,
    program: &Path,
    args: &[String],
    env: &[(&str, &str)],
    log: &Path,
) -> Result<Server> {
    let f = std::fs::File::create(log).ctx("creating", log)?;
    let mut c = ns.command(&program.display().to_string());
    c.args(args).envs(env.iter().copied()).stdin(Stdio::null()).stdout(f.try_clone().ctx("opening", log)?).stderr(f);
    crate::tool::die_with_parent(&mut c);
    let child = c.spawn().map_err(|e| Error::ToolFailed {
        command: what.into(),
        status: "could not start".into(),
        output: e.to_string(),
    })?;
    Ok(Server { what: what.into(), child, log: log.to_path_buf() })
}

impl Server {
    /// Wait until the log shows `marker`; an exit first is an error with the log's end.
    fn wait_for(&mut self, marker: &str, within: Duration) -> Result<()> {
        let start = Instant::now();
        loop {
            let text = std::fs::read_to_string(&self.log).unwrap_or_default();
            if text.contains(marker) {
                return Ok(());
            }
            let exited = self.child.try_wait().ok().flatten();
            if exited.is_some() || start.elapsed() > within {
                return Err(Error::Serve(format!(
                    "{} did not start ({}); its log {}:\n{}",
                    self.what,
                    exited.map_or("no start line".to_string(), |s| s.to_string()),
                    self.log.display(),
                    crate::console_script::tail(text.as_bytes(), 15)
                )));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// The lab's folder: emptied, then `<machine>/`, `<machine>.log`, `net-<network>/`.
fn lab_dir(a: &LabArgs, env: &Env) -> PathBuf {
    a.dir.clone().unwrap_or_else(|| {
        let state = std::env::var_os("XDG_STATE_HOME")
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/state")))
            .unwrap_or_else(|| PathBuf::from("/var/tmp"));
        state.join("oa/lab").join(&env.name)
    })
}

/// An ed25519 key pair for the lab's SSH checks, made with ssh-keygen.
fn ssh_key(dir: &Path) -> Result<(PathBuf, String)> {
    let key = dir.join("ssh/id_ed25519");
    std::fs::create_dir_all(dir.join("ssh")).ctx("creating", dir.join("ssh"))?;
    let st = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", "oa-lab", "-f"])
        .arg(&key)
        .stdin(Stdio::null())
        .status()
        .map_err(|e| Error::ToolMissing {
            tool: "ssh-keygen".into(),
            why: e.to_string(),
            hint: "apt-get install openssh-client (`make deps`)".into(),
        })?;
    if !st.success() {
        return Err(Error::ToolFailed { command: "ssh-keygen".into(), status: st.to_string(), output: String::new() });
    }
    let public = std::fs::read_to_string(key.with_extension("pub")).ctx("reading", key.with_extension("pub"))?;
    Ok((key, public.trim().to_string()))
}

/// `oa lab`: 0 all checks passed, 1 a check failed, 2 the lab could not be set up.
pub fn lab(a: LabArgs) -> Result<i32> {
    match run_lab(&a) {
        Ok(results) => {
            let failed = results.iter().any(|r| !r.ok());
            // With --keep, Ctrl-C is how the lab ends: the checks decide.
            Ok(if failed || (INTERRUPTED.load(Ordering::SeqCst) && !a.keep) { 1 } else { 0 })
        }
        Err(e) => {
            eprintln!("error: {e}");
            Ok(2)
        }
    }
}

fn run_lab(a: &LabArgs) -> Result<Vec<MachineResult>> {
    let started = Instant::now();
    let mut env = env::load(&a.env)?;
    if !a.only.is_empty() {
        only(&mut env, &a.only)?;
    }
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Err(Error::Usage(
            "oa lab needs root: it makes a network namespace with bridges and taps for the machines; run it with sudo"
                .into(),
        ));
    }
    if env.machines.is_empty() {
        return Err(Error::Usage(format!(
            "{}: the environment has no machines; add a [machines.NAME] table",
            a.env.display()
        )));
    }
    install_signals();
    let opts = crate::commands::options(&a.common, None);
    let outputs = env::outputs::outputs(&env, &opts, a.out.as_deref())?;
    let dir = lab_dir(a, &env);
    if dir.exists() {
        std::fs::remove_dir_all(&dir).ctx("emptying the lab folder", &dir)?;
    }
    std::fs::create_dir_all(&dir).ctx("creating", &dir)?;
    let built = started.elapsed();

    eprintln!(
        "==> lab {}: {} networks, {} machines, folder {}",
        env.name,
        env.networks.len(),
        env.machines.len(),
        dir.display()
    );
    let ns = LabNetns::new()?;
    for n in &env.networks {
        ns.bridge(&machine::bridge_name(&n.name), &format!("{}/{}", n.server(), n.prefix))?;
    }
    for (mi, m) in env.machines.iter().enumerate() {
        for (ni, net) in m.networks.iter().enumerate() {
            ns.tap(&machine::tap_name(mi, ni), &machine::bridge_name(net))?;
        }
    }
    let needs_ssh = env.machines.iter().any(|m| m.checks.iter().any(|c| matches!(c.kind, CheckKind::Ssh { .. })));
    let key = if needs_ssh { Some(ssh_key(&dir)?) } else { None };

    // The servers of each network.
    let oa = std::env::current_exe().ctx("finding the oa binary", "/proc/self/exe")?;
    let mut servers = Vec::new();
    let mut sides: Vec<LabNetns> = Vec::new();
    let mut leases = BTreeMap::new();
    for n in &env.networks {
        let ndir = dir.join(format!("net-{}", n.name));
        let machines_dir = ndir.join("machines");
        std::fs::create_dir_all(&machines_dir).ctx("creating", &machines_dir)?;
        if n.dhcp_server {
            // The network's own DHCP server (dnsmasq), in a namespace of its own on the bridge
            // (oa serve's proxyDHCP holds port 67 in the lab's), at the second host address.
            let side = LabNetns::side(&ns, &format!("d{}", sides.len()))?;
            let veth = format!("oa-d{}", sides.len());
            ns.ip(&["link", "add", &veth, "type", "veth", "peer", "name", "eth0", "netns", &side.name])?;
            ns.ip(&["link", "set", &veth, "master", &machine::bridge_name(&n.name)])?;
            ns.ip(&["link", "set", &veth, "up"])?;
            side.ip(&["addr", "add", &format!("{}/{}", n.host(2), n.prefix), "dev", "eth0"])?;
            side.ip(&["link", "set", "eth0", "up"])?;
            let (lo, hi) = n.plain_dhcp_range();
            let lf = ndir.join("dnsmasq.leases");
            let args = vec![
                "--no-daemon".to_string(),
                "--conf-file=/dev/null".into(),
                "--port=0".into(),
                "--user=root".into(),
                "--interface=eth0".into(),
                "--bind-interfaces".into(),
                format!("--dhcp-range={lo},{hi},{},1h", n.netmask()),
                format!("--dhcp-leasefile={}", lf.display()),
                format!("--pid-file={}", ndir.join("dnsmasq.pid").display()),
                "--log-dhcp".into(),
            ];
            let mut s = spawn_server(
                &side,
                &format!("dnsmasq on {}", n.name),
                Path::new("dnsmasq"),
                &args,
                &[],
                &ndir.join("dnsmasq.log"),
            )?;
            s.wait_for("DHCP, IP range", Duration::from_secs(20))?;
            servers.push(s);
            sides.push(side);
            leases.insert(n.name.clone(), Lease::Dnsmasq(lf));
        }
        let Some(mode) = n.serve else { continue };
        // The machines this server netboots, each with its own output and settings.
        let netbooted: Vec<&env::Machine> =
            env.machines.iter().filter(|m| env.netboot_network(m).is_some_and(|x| x.name == n.name)).collect();
        let default_out = netbooted
            .first()
            .map(|m| outputs[&m.name].dir.clone())
            .or_else(|| outputs.values().next().map(|o| o.dir.clone()));
        let Some(default_out) = default_out else { continue };
        for m in &netbooted {
            write_machine_file(&machines_dir, m, &outputs[&m.name].dir, key.as_ref().map(|k| k.1.as_str()))?;
        }
        let mut args: Vec<String> = vec![
            "serve".into(),
            default_out.display().to_string(),
            "--interface".into(),
            machine::bridge_name(&n.name),
            "--address".into(),
            n.server().to_string(),
            "--bind".into(),
            n.server().to_string(),
            "--mode".into(),
            mode.as_str().into(),
            "--machines".into(),
            machines_dir.display().to_string(),
        ];
        if mode == ServeMode::Dhcp {
            let (lo, hi) = n.dhcp_range();
            let lf = ndir.join("leases.json");
            args.extend(["--range".into(), format!("{lo}-{hi}"), "--netmask".into(), n.netmask().to_string()]);
            args.extend(["--leases".into(), lf.display().to_string()]);
            leases.insert(n.name.clone(), Lease::Oa(lf));
        }
        let mut s = spawn_server(
            &ns,
            &format!("oa serve on {}", n.name),
            &oa,
            &args,
            &[("RUST_LOG", "info")],
            &ndir.join("serve.log"),
        )?;
        s.wait_for("serving ", Duration::from_secs(20))?;
        servers.push(s);
    }

    let accel = match a.accel {
        AccelArg::Kvm => Accel::Kvm,
        AccelArg::Tcg => Accel::Tcg,
        AccelArg::Auto => qemu::detect_accel(oa_contract::Arch::X86_64),
    };
    let lab = Lab {
        env: env.clone(),
        ns,
        dir: dir.clone(),
        keep: a.keep,
        state: Mutex::new(State { running: env.machines.len(), ..State::default() }),
        cv: Condvar::new(),
        leases,
        ssh_key: key.map(|k| k.0),
    };
    let mut prepared = Vec::new();
    for (mi, m) in env.machines.iter().enumerate() {
        let o = &outputs[&m.name];
        let accel =
            if o.manifest.arch == oa_contract::Arch::X86_64 { accel } else { qemu::detect_accel(o.manifest.arch) };
        prepared.push(machine::prepare(&lab, mi, m, o, accel)?);
    }
    let jobs = a.jobs.unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    let slots = Slots::new(jobs);
    eprintln!("==> booting {} machines, at most {jobs} at once", env.machines.len());
    let boot_start = Instant::now();
    let results: Vec<MachineResult> = std::thread::scope(|s| {
        let handles: Vec<_> =
            env.machines.iter().zip(&prepared).map(|(m, p)| s.spawn(|| machine::run(&lab, m, p, &slots))).collect();
        if a.keep {
            s.spawn(|| keep_notice(&lab, &servers));
        }
        // Ctrl-C: stop every machine so each thread's wait ends at once.
        while !handles.iter().all(|h| h.is_finished()) {
            if INTERRUPTED.load(Ordering::SeqCst) {
                lab.kill_all();
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        handles.into_iter().map(|h| h.join().expect("machine thread")).collect()
    });
    let booted = boot_start.elapsed();
    drop(servers);
    drop(sides);
    drop(lab);
    let summary =
        report::Summary { env: env.name.clone(), build: built, machines: booted, total: started.elapsed(), jobs };
    let table = report::table(&results, &summary);
    if a.json {
        eprint!("{table}");
        println!("{}", serde_json::to_string_pretty(&report::json(&results, &summary)).unwrap_or_default());
    } else {
        print!("{table}");
    }
    if let Some(j) = &a.junit {
        std::fs::write(j, report::junit(&results, &summary)).ctx("writing JUnit XML to", j)?;
    }
    for r in &results {
        for c in &r.checks {
            if let machine::Outcome2::Failed { why, console } = &c.outcome {
                eprintln!(
                    "\nFAILED: machine {}: check `{}` ({}): {why}\n--- console of {} ({}), last lines ---\n{console}",
                    r.name,
                    c.name,
                    c.at,
                    r.name,
                    r.log.display()
                );
            }
        }
    }
    Ok(results)
}

/// `--only`: keep the named machines (and drop their `reach` checks of machines left out).
fn only(env: &mut Env, names: &[String]) -> Result<()> {
    for n in names {
        if env.machine(n).is_none() {
            let all = env.machines.iter().map(|m| m.name.as_str()).collect::<Vec<_>>().join(", ");
            return Err(Error::Usage(format!(
                "--only {n}: no such machine in {} (machines: {all})",
                env.file.display()
            )));
        }
    }
    env.machines.retain(|m| names.contains(&m.name));
    for m in &mut env.machines {
        m.checks.retain(|c| match &c.kind {
            CheckKind::Reach(o) if !names.contains(o) => {
                eprintln!(
                    "oa lab: --only: leaving out the check of {} ({}) that it reaches {o}, which is left out",
                    m.name, c.at
                );
                false
            }
            _ => true,
        });
    }
    Ok(())
}

/// `oa serve`'s per-machine file for `m`: its own output, its extra command-line words, and
/// its configuration (with the lab's SSH key for root and the checks' users added).
fn write_machine_file(machines_dir: &Path, m: &env::Machine, out: &Path, ssh_public: Option<&str>) -> Result<()> {
    let stem = m.mac_file_stem();
    let mut toml = format!("# written by oa lab for machine {}\noutput = {:?}\n", m.name, out.display().to_string());
    if !m.append.is_empty() {
        toml.push_str(&format!(
            "append = [{}]\n",
            m.append.iter().map(|w| format!("{w:?}")).collect::<Vec<_>>().join(", ")
        ));
    }
    let users: Vec<String> = m
        .checks
        .iter()
        .filter_map(|c| match &c.kind {
            CheckKind::Ssh { user, .. } => Some(user.clone()),
            _ => None,
        })
        .collect();
    let mut config: Option<oa_contract::config::RuntimeConfig> = match &m.config {
        Some(p) => {
            let text = std::fs::read_to_string(p).ctx("reading", p)?;
            Some(
                serde_json::from_str(&text)
                    .map_err(|e| Error::Usage(format!("{}: not a run-time configuration: {e}", p.display())))?,
            )
        }
        None => None,
    };
    if let (Some(k), false) = (ssh_public, users.is_empty()) {
        let c = config.get_or_insert_with(Default::default);
        for u in users {
            let keys = c.ssh_authorized_keys.entry(u).or_default();
            if !keys.iter().any(|x| x == k) {
                keys.push(k.to_string());
            }
        }
    }
    if let Some(c) = config {
        let file = format!("{stem}.json");
        let p = machines_dir.join(&file);
        std::fs::write(&p, serde_json::to_string_pretty(&c).map_err(|e| Error::Encode(e.to_string()))?)
            .ctx("writing", &p)?;
        toml.push_str(&format!("config = {file:?}\n"));
    }
    let p = machines_dir.join(format!("{stem}.toml"));
    std::fs::write(&p, toml).ctx("writing", &p)
}

/// `--keep`: once every machine is done, how to reach each one.
fn keep_notice(lab: &Lab, servers: &[Server]) {
    loop {
        if lab.interrupted() {
            return;
        }
        if lab.lock().running == 0 {
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    eprintln!("\n==> the lab is up (Ctrl-C tears it down). Network namespace {}:", lab.ns.name);
    for s in servers {
        eprintln!("  {}: log {}", s.what, s.log.display());
    }
    for m in &lab.env.machines {
        let addr = env::addressed_by(&lab.env.networks, m)
            .and_then(|n| lab.leases.get(&n.name))
            .and_then(|l| read_lease(l, &m.nic_mac_string(0)));
        let mut line = format!("  {}: console log {}", m.name, lab.dir.join(format!("{}.log", m.name)).display());
        if let Some(ip) = addr {
            line.push_str(&format!(
                "; address {ip}; from the lab side: sudo ip netns exec {} ping {ip} (or ssh root@{ip} if it runs sshd)",
                lab.ns.name
            ));
            if let Some(k) = &lab.ssh_key {
                line.push_str(&format!(" -i {}", k.display()));
            }
        }
        eprintln!("{line}");
    }
}
