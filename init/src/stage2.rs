//! Stage 2, PID 1 in the real root: hostname, /dev/pts and /dev/shm, services, console shell,
//! the ready line, then supervise until a shutdown signal.

// A failure is built once, on the cold path: its size does not matter.
#![allow(clippy::result_large_err)]

use std::path::Path;

use nix::mount::MsFlags;
use oa_contract::config::{InitSystem, SystemConfig};
use oa_contract::rootfs_paths;

use crate::bootargs;
use crate::coldplug::Coldplug;
use crate::console;
use crate::emergency;
use crate::error::{Error, Failure, IoContext, Result, Step, SysContext};
use crate::mounts;
use crate::signals::Signals;
use crate::supervisor::{Supervisor, Unit};

/// What to do when a step of stage 2 fails and its error has no better hint.
const HINT: &str =
    "add oa.shell to the kernel command line to look around in an emergency shell; rebuild the image if the file is wrong";

pub fn run() -> ! {
    emergency::set_stage(2);
    if let Err(f) = boot() {
        emergency::fail(&f);
    }
    unreachable_pid1()
}

fn unreachable_pid1() -> ! {
    // boot() only returns on error; keep PID 1 alive regardless.
    crate::shutdown::pause_forever()
}

fn read_system_config() -> Result<SystemConfig> {
    let path = Path::new("/").join(rootfs_paths::SYSTEM_CONFIG);
    let text = std::fs::read_to_string(&path).ctx("read", &path)?;
    serde_json::from_str(&text).map_err(|source| Error::Json { path: path.display().to_string(), source })
}

fn boot() -> std::result::Result<(), Failure> {
    // Normally moved in from stage 1; mounted here when booted without the oa initramfs.
    mounts::mount_api_filesystems().step("mount API filesystems", HINT)?;
    console::attach();
    let cmdline = std::fs::read_to_string(bootargs::SAVED)
        .or_else(|_| std::fs::read_to_string("/proc/cmdline"))
        .unwrap_or_default();
    emergency::allow_shell(bootargs::shell_requested(&cmdline));
    let args = bootargs::merge(&[], cmdline.trim()).unwrap_or_default();
    console::set_debug(args.debug);
    let _ = nix::sys::reboot::set_cad_enabled(false);

    let cfg = read_system_config().step("read the system configuration", HINT)?;
    if cfg.init == InitSystem::Systemd {
        let never = nix::unistd::execv(c"/sbin/init", &[c"/sbin/init"])
            .sys("exec", "/sbin/init")
            .step("start systemd", HINT)?;
        match never {}
    }
    // From here on PID 1 is oa-init for good: the signals are read through a signalfd from
    // now, before anything is forked, so that a shutdown signal sent early is not lost.
    let signals = Signals::install().step("install signal handling", HINT)?;
    // A netboot's DHCP lease, kept by stage 1 until its exec: renewed from here on (a thread,
    // started after the signals are blocked so that it inherits the mask).
    crate::net::lease::resume();
    mount_dev_extras().step("mount /dev/pts and /dev/shm", HINT)?;
    let mut cfg = cfg;
    // oa.config= (left by stage 1): applied over the profile before the services start, then
    // removed (it may hold secrets) unless the profile keeps it.
    if let Some(rc) = crate::runtime_config::load() {
        crate::runtime_config::report("/", &crate::runtime_config::apply(Path::new("/"), &rc));
        crate::runtime_config::discard(cfg.keep_runtime_config);
        if let Some(h) = rc.hostname {
            cfg.hostname = h;
        }
    }
    if !cfg.hostname.is_empty() {
        nix::unistd::sethostname(&cfg.hostname).sys("sethostname", &cfg.hostname).step("set the hostname", HINT)?;
    }

    let mut units = Vec::new();
    for s in &cfg.services {
        units.push(Unit::service(s).step("prepare a service", HINT)?);
    }
    if cfg.console_shell {
        units.push(Unit::console_shell(&cfg.hostname).step("prepare the console shell", HINT)?);
    }
    let n = units.len();
    let mut sup = Supervisor::new(units, signals);
    sup.start_all();
    console::stage("services", &format!("started {n} (uptime {})", uptime()));
    console::ready(&cfg.hostname, &cfg.profile);
    crate::persist::mark_good();
    // The drivers stage 1 did not need for the root (it stops once the root is found), then
    // hotplug: the supervisor polls the uevents for as long as the system runs.
    if let Some(mut c) = Coldplug::open_in(Path::new(oa_contract::mounts::MODULES), &args.blacklist, &[]) {
        c.start();
        sup.set_coldplug(c);
    }
    sup.run()
}

fn mount_dev_extras() -> Result<()> {
    mounts::ensure_mounted(
        "devpts",
        Path::new("/dev/pts"),
        "devpts",
        MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC,
        Some("mode=0620,ptmxmode=0666"),
    )?;
    mounts::ensure_mounted(
        "shm",
        Path::new("/dev/shm"),
        "tmpfs",
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
        Some("mode=1777"),
    )?;
    Ok(())
}

fn uptime() -> String {
    std::fs::read_to_string("/proc/uptime")
        .ok()
        .and_then(|s| s.split_whitespace().next().map(|u| format!("{u} s")))
        .unwrap_or_else(|| "unknown".into())
}
