//! One machine of a lab: its QEMU command line (from the environment and its output), its boot
//! and its checks, played on its serial console and over SSH.

use super::{Lab, Slots};
use crate::console_script::{find, tail, ConsoleIo};
use crate::env::outputs::Output;
use crate::env::{Boot, Check, CheckKind, Disk, Firmware, Machine};
use crate::error::{Error, IoContext, Result};
use crate::qemu::{self, Accel, Console, DiskBoot, Nic, Outcome, Spec};
use oa_contract::manifest::artifact;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// How one check went.
#[derive(Debug, Clone)]
pub enum Outcome2 {
    Passed(Duration),
    Failed { why: String, console: String },
    NotRun,
}

#[derive(Debug, Clone)]
pub struct CheckResult {
    /// `ready within 300 s`, `expect "hello"`, ...
    pub name: String,
    /// `file:line` of the check in the environment.
    pub at: String,
    pub outcome: Outcome2,
}

#[derive(Debug, Clone)]
pub struct MachineResult {
    pub name: String,
    /// `pxe bios on lan`, `usb uefi`.
    pub boot_path: String,
    /// Time to the first ready line.
    pub ready: Option<Duration>,
    pub checks: Vec<CheckResult>,
    pub log: PathBuf,
}

impl MachineResult {
    pub fn passed(&self) -> usize {
        self.checks.iter().filter(|c| matches!(c.outcome, Outcome2::Passed(_))).count()
    }

    pub fn ok(&self) -> bool {
        self.passed() == self.checks.len()
    }
}

/// The tap of machine number `mi`'s `ni`th NIC (at most 15 characters).
pub fn tap_name(mi: usize, ni: usize) -> String {
    format!("oa-m{mi}n{ni}")
}

/// The bridge of a network.
pub fn bridge_name(net: &str) -> String {
    format!("oa-{net}")
}

/// `qemu-img create -f qcow2 -b BASE`: the machine writes to its own overlay, never to BASE.
fn overlay(base: &Path, file: &Path) -> Result<DiskBoot> {
    let base = base.canonicalize().ctx("reading", base)?;
    let format = if qemu::DiskBoot::detect(&base, false)?.format == "qcow2" { "qcow2" } else { "raw" };
    let o = Command::new("qemu-img")
        .args(["create", "-q", "-f", "qcow2", "-F", format, "-b"])
        .arg(&base)
        .arg(file)
        .output()
        .map_err(|e| Error::ToolMissing {
            tool: "qemu-img".into(),
            why: e.to_string(),
            hint: "apt-get install qemu-utils (`make deps`)".into(),
        })?;
    if !o.status.success() {
        return Err(Error::ToolFailed {
            command: format!("qemu-img create -b {}", base.display()),
            status: o.status.to_string(),
            output: String::from_utf8_lossy(&o.stderr).trim().to_string(),
        });
    }
    Ok(DiskBoot { path: file.to_path_buf(), format: "qcow2".into(), snapshot: false, cdrom: false })
}

/// Everything a machine needs to boot, made once per lab run in its own folder (disks and the
/// UEFI variable store are kept across its reboots).
pub struct Prepared {
    pub spec: Spec,
    pub boot_path: String,
    _vars: Option<qemu::VarsCopy>,
}

pub fn prepare(lab: &Lab, mi: usize, m: &Machine, out: &Output, accel: Accel) -> Result<Prepared> {
    let dir = lab.dir.join(&m.name);
    std::fs::create_dir_all(&dir).ctx("creating", &dir)?;
    let arch = out.manifest.arch;
    let (firmware, vars) = match m.firmware {
        Firmware::Bios => (qemu::Firmware::Bios, None),
        Firmware::Uefi => {
            let (fw, g) = qemu::UefiFiles::locate(arch)?.for_run(&dir)?;
            (fw, Some(g))
        }
        Firmware::UefiSecure => {
            let (fw, g) = qemu::UefiFiles::secure(qemu::SecureVars::Microsoft)?.for_run(&dir)?;
            (fw, Some(g))
        }
    };
    let mut spec = match m.boot {
        Boot::Kernel => {
            let mut s = Spec::from_output(&out.dir, &out.manifest, accel);
            s.append.extend(m.append.iter().cloned());
            s.firmware = firmware;
            s
        }
        Boot::Disk | Boot::Usb => {
            let d = overlay(&out.file(artifact::DISK_IMAGE), &dir.join("boot-disk.qcow2"))?;
            let mut s = Spec::from_disk(arch, d, firmware, accel);
            s.usb = m.boot == Boot::Usb;
            s
        }
        Boot::Iso => Spec::from_disk(arch, DiskBoot::cdrom(&out.file(artifact::ISO)), firmware, accel),
        Boot::Pxe => {
            let mut s = Spec::from_disk(arch, DiskBoot::cdrom(Path::new("/")), firmware, accel);
            s.disk = None;
            s.pxe = true;
            s
        }
    };
    if m.firmware == Firmware::UefiSecure {
        spec.extra.extend(qemu::SECURE_BOOT_ARGS.map(String::from));
    }
    spec.memory_mib = m.memory_mib.unwrap_or(spec.memory_mib);
    spec.cpus = m.cpus;
    for (i, d) in m.disks.iter().enumerate() {
        spec.drives.push(match d {
            Disk::Blank { size_mib } => {
                let p = dir.join(format!("disk{i}.raw"));
                let f = std::fs::File::create(&p).ctx("creating", &p)?;
                f.set_len(size_mib << 20).ctx("sizing", &p)?;
                DiskBoot { path: p, format: "raw".into(), snapshot: false, cdrom: false }
            }
            Disk::File(base) => overlay(base, &dir.join(format!("disk{i}.qcow2")))?,
        });
    }
    for (ni, _) in m.networks.iter().enumerate() {
        let mac = m.nic_mac_string(ni);
        // UEFI PXE: OVMF's own network stack, which fetches iPXE as a boot file.
        let no_rom = m.firmware != Firmware::Bios;
        spec.nics.push(Nic { tap: tap_name(mi, ni), mac, model: m.nic.clone(), no_rom });
    }
    spec.netns = Some(lab.ns.name.clone());
    let boot_path = match m.networks.first() {
        Some(n) if m.boot == Boot::Pxe => format!("pxe {} on {n}", m.firmware.as_str()),
        _ => format!("{} {}", m.boot.as_str(), m.firmware.as_str()),
    };
    Ok(Prepared { spec, boot_path, _vars: vars })
}

/// The console of the running boot and everything earlier boots showed.
struct Run<'a> {
    lab: &'a Lab,
    m: &'a Machine,
    spec: &'a Spec,
    console: Option<Console>,
    earlier: Vec<u8>,
    /// Where the next `expect` starts searching, in the running boot's console.
    from: usize,
    /// The console log, appended to as it arrives, over every boot.
    log: PathBuf,
}

impl Run<'_> {
    fn console(&mut self) -> &mut Console {
        self.console.as_mut().expect("a running boot")
    }

    fn whole(&self) -> Vec<u8> {
        let mut v = self.earlier.clone();
        if let Some(c) = &self.console {
            v.extend_from_slice(c.text());
        }
        v
    }

    fn tail(&self) -> String {
        tail(&self.whole(), 20)
    }

    /// Start QEMU and wait for the ready line, holding a boot slot meanwhile.
    fn boot(&mut self, slots: &Slots, within: Duration) -> std::result::Result<Duration, String> {
        if let Some(mut c) = self.console.take() {
            c.finish(None);
            self.earlier.extend_from_slice(c.text());
        }
        let _slot = slots.take();
        let mut c = Console::start(self.spec, false).map_err(|e| e.to_string())?;
        // The log grows as the console does (`--keep`, or a look while the lab runs).
        if let Ok(f) = std::fs::OpenOptions::new().create(true).append(true).open(&self.log) {
            c.tee(f);
        }
        self.lab.register(&self.m.name, Some(c.pid()));
        let r = c.wait_ready(within);
        // The first `expect` after a boot searches that boot's whole console (boot messages
        // can be checked too), as `oa run --expect` does.
        self.from = 0;
        self.console = Some(c);
        match r {
            Ok(Outcome::Ready(t, _)) => Ok(t),
            Ok(Outcome::Fatal(l)) => Err(format!("boot failed: {l}")),
            Ok(Outcome::Exited(st)) => Err(format!("QEMU exited ({st}) before the ready line")),
            Ok(Outcome::TimedOut(t)) => Err(format!("no ready line within {:.0} s", t.as_secs_f64())),
            Err(e) => Err(e.to_string()),
        }
    }

    /// Wait until one of `needles` appears after `self.from`; which one.
    fn wait_any(&mut self, needles: &[&str], within: Duration) -> std::result::Result<usize, String> {
        let start = Instant::now();
        loop {
            let from = self.from;
            let text = self.console().text()[from..].to_vec();
            if let Some((i, at, n)) = needles
                .iter()
                .enumerate()
                .filter_map(|(i, n)| find(&text, n.as_bytes()).map(|at| (i, at, n.len())))
                .min_by_key(|x| x.1)
            {
                self.from += at + n;
                return Ok(i);
            }
            if self.lab.interrupted() {
                return Err("interrupted".into());
            }
            let waited = start.elapsed();
            if waited >= within {
                return Err(format!(
                    "no {} on the console within {:.0} s",
                    needles.iter().map(|n| format!("{n:?}")).collect::<Vec<_>>().join(" or "),
                    within.as_secs_f64()
                ));
            }
            if !self.console().pump((within - waited).min(Duration::from_millis(100))) {
                let from = self.from;
                let text = self.console().text()[from..].to_vec();
                if let Some(i) = needles.iter().position(|n| find(&text, n.as_bytes()).is_some()) {
                    return Ok(i);
                }
                return Err("QEMU exited".into());
            }
        }
    }

    fn send(&mut self, line: &str) -> std::result::Result<(), String> {
        self.from = self.console().text().len();
        self.console().send_line(line).map_err(|e| format!("typing into the console: {e}"))
    }

    /// Run a shell line on the console whose last word prints `OACHK<n>=$((40+$?))`: the
    /// typed text shows `$((...))`, the answer shows the number, so an echo never matches.
    fn shell_status(&mut self, n: usize, cmd: &str, within: Duration) -> std::result::Result<i32, String> {
        self.send(&format!("{cmd}; echo OACHK{n}=$((40+$?))"))?;
        let needles: Vec<String> = (0..=9).map(|k| format!("OACHK{n}={}", 40 + k)).collect();
        let refs: Vec<&str> = needles.iter().map(String::as_str).collect();
        self.wait_any(&refs, within).map(|k| k as i32)
    }

    fn run_check(&mut self, ci: usize, c: &Check, slots: &Slots) -> std::result::Result<(), String> {
        match &c.kind {
            CheckKind::Send(t) => self.send(t),
            CheckKind::Expect(p) => self.wait_any(&[p], c.within).map(|_| ()),
            CheckKind::File(p) => match self.shell_status(ci, &format!("test -e '{p}'"), c.within)? {
                0 => Ok(()),
                _ => Err(format!("{p} does not exist")),
            },
            CheckKind::Reach(other) => {
                let ip = self.lab.address_of(other, c.within)?;
                let cmd = format!("for i in 1 2 3 4 5; do ping -c 1 -W 2 {ip} >/dev/null 2>&1 && break; done");
                match self.shell_status(ci, &cmd, c.within)? {
                    0 => Ok(()),
                    _ => Err(format!("{other} ({ip}) does not answer ping")),
                }
            }
            CheckKind::Ssh { command, user, output, exit } => {
                let ip = self.lab.address_of(&self.m.name, c.within)?;
                self.lab.ssh(&ip, user, command, output.as_deref(), *exit, c.within)
            }
            CheckKind::Reboot => {
                self.send("reboot")?;
                let start = Instant::now();
                while self.console().pump(Duration::from_millis(200)) {
                    if start.elapsed() > c.within {
                        return Err(format!(
                            "the machine did not go down within {:.0} s of `reboot`",
                            c.within.as_secs_f64()
                        ));
                    }
                }
                self.boot(slots, self.m.ready_within).map(|_| ())
            }
            CheckKind::PowerCut => {
                self.console().finish(None);
                self.boot(slots, self.m.ready_within).map(|_| ())
            }
        }
    }
}

/// Boot `m` and run its checks; then wait (the machine up, for other machines' checks) until
/// the lab says everything is done.
pub fn run(lab: &Lab, m: &Machine, p: &Prepared, slots: &Slots) -> MachineResult {
    let log = lab.dir.join(format!("{}.log", m.name));
    let mut r = Run { lab, m, spec: &p.spec, console: None, earlier: Vec::new(), from: 0, log: log.clone() };
    let mut checks = vec![CheckResult {
        name: format!("ready within {} s", m.ready_within.as_secs()),
        at: lab.env.file.display().to_string(),
        outcome: Outcome2::NotRun,
    }];
    checks.extend(m.checks.iter().map(|c| CheckResult {
        name: c.kind.describe(),
        at: c.at.clone(),
        outcome: Outcome2::NotRun,
    }));
    let ready = match r.boot(slots, m.ready_within) {
        Ok(t) => {
            checks[0].outcome = Outcome2::Passed(t);
            lab.set_ready(&m.name, true);
            Some(t)
        }
        Err(why) => {
            checks[0].outcome = Outcome2::Failed { why, console: r.tail() };
            lab.set_ready(&m.name, false);
            None
        }
    };
    if ready.is_some() {
        for (ci, c) in m.checks.iter().enumerate() {
            let t = Instant::now();
            match r.run_check(ci + 1, c, slots) {
                Ok(()) => checks[ci + 1].outcome = Outcome2::Passed(t.elapsed()),
                Err(why) => {
                    checks[ci + 1].outcome = Outcome2::Failed { why, console: r.tail() };
                    break;
                }
            }
        }
    }
    lab.machine_done(&m.name);
    lab.wait_all_done();
    if let Some(mut c) = r.console.take() {
        c.finish(None);
        r.earlier.extend_from_slice(c.text());
    }
    lab.register(&m.name, None);
    MachineResult { name: m.name.clone(), boot_path: p.boot_path.clone(), ready, checks, log }
}
