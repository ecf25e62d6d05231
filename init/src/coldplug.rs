//! Coldplug: load the drivers the hardware asks for, from the driver classes the initramfs
//! carries (`modules.alias` and `modules.dep` under `lib/modules/<release>/`, see
//! oa_contract::modules). There is no udev in the initramfs: oa-init does its job for stage 1.
//!
//! - [`Coldplug::open`] reads both files and opens a `NETLINK_KOBJECT_UEVENT` socket, before
//!   anything is walked, so no device added after the walk is missed;
//! - [`Coldplug::start`] walks `/sys/devices` once (every `modalias` file, symlinks not
//!   followed) and loads every module whose alias matches, dependencies first;
//! - [`Coldplug::poll`] drains the pending uevents (non-blocking) and handles `ACTION=add`
//!   with a `MODALIAS=`: a USB controller's driver brings up a hub, then the stick, then the
//!   SCSI disk behind it asks for `sd_mod`, one uevent after the other. On an overflow of the
//!   socket (`ENOBUFS`) it walks sysfs again. When nothing happened it costs one `recv`.
//!
//! A device's modalias is handled once; a module is tried once (loaded, already present, or
//! failed with a warning). `oa.blacklist=` keeps a module from being loaded when a device or
//! `oa.modules=` asks for it (like modprobe's blacklist, it does not apply to the dependencies
//! of another module).

use std::collections::{HashMap, HashSet};
use std::io::Read;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::sys::socket::{self, AddressFamily, NetlinkAddr, SockFlag, SockProtocol, SockType};
use oa_contract::cmdline;
use oa_contract::modules::{self as contract_modules, normalize, Alias, Dep};

use crate::console;
use crate::modules::{self, LoadError};

/// The kernel's uevent multicast group.
const UEVENT_GROUP: u32 = 1;
/// Receive buffer of the uevent socket: a USB hub or a SCSI host adds a burst of devices.
const RCVBUF: usize = 1 << 20;
/// One uevent: the kernel's environment buffer is 2 KiB (UEVENT_BUFFER_SIZE), plus the
/// `ACTION@DEVPATH` header. A message filling the whole buffer is taken as truncated.
const UEVENT_MAX: usize = 8192;
/// Uevents handled per [`Coldplug::poll`] call; the rest waits for the next call.
const DRAIN_MAX: usize = 4096;
/// A `modalias` file is one short line.
const MODALIAS_MAX: u64 = 4096;
/// `/sys/devices` is a tree of a few levels; deeper is not a device tree.
const WALK_DEPTH: usize = 48;
/// [`Coldplug::busy`]: the time between two loads while waiting for the root or the NIC.
const GAP: Duration = Duration::from_millis(20);
/// [`Coldplug::settle`]: no uevent for this long means the devices are all there.
const QUIET: Duration = Duration::from_millis(150);
/// [`Coldplug::settle`] gives up after this long (a device that keeps adding children).
const SETTLE_MAX: Duration = Duration::from_secs(5);
/// Without a uevent socket (it could not be opened), walk sysfs at most this often instead.
const REWALK_WITHOUT_SOCKET: Duration = Duration::from_millis(500);

const SYS: &str = "/sys";

/// Loads a module file given relative to a folder; [`modules::load_one`] outside the tests.
type Loader = Box<dyn FnMut(&Path, &str) -> Result<bool, LoadError>>;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Loaded now or found in the kernel already.
    Present,
    /// Could not be loaded (warned once), or is not carried.
    Failed,
}

/// The coldplug of stage 1: what the initramfs carries, what was loaded, the uevent socket.
pub struct Coldplug {
    /// The folder of `modules.dep` (dependency paths are relative to it).
    dir: PathBuf,
    sys: PathBuf,
    /// `modules.dep` by module name.
    deps: HashMap<String, Dep>,
    aliases: AliasIndex,
    blacklist: HashSet<String>,
    drivers: Vec<String>,
    state: HashMap<String, State>,
    /// Modalias strings handled already.
    seen: HashSet<String>,
    /// Blacklisted modules a device asked for (one debug line each).
    refused: HashSet<String>,
    /// Modules devices asked for, not tried yet: (bytes to load, module, why).
    queue: Vec<(u64, String, String)>,
    last_load: Option<Instant>,
    sock: Option<OwnedFd>,
    buf: Vec<u8>,
    last_walk: Option<Instant>,
    loader: Loader,
    loaded: usize,
    uevents: usize,
    rewalks: usize,
    spent: Duration,
}

impl Coldplug {
    /// Read `modules.dep` and `modules.alias` of `release` and open the uevent socket. Missing
    /// files mean an initramfs without driver classes: coldplug then does nothing.
    pub fn open(release: &str, blacklist: &[String], drivers: &[String]) -> Coldplug {
        // Stage 1 loads with synchronous probes: when a controller's driver is loaded, the
        // devices behind it are there (their uevents queued), so their cheap drivers are
        // costed before the next controller's (virtio_blk before libata for an empty IDE bus).
        let mut c = Coldplug::at(Path::new("/"), Path::new(SYS), release, blacklist, drivers, Box::new(sync_load));
        if c.active() {
            match uevent_socket() {
                Ok(fd) => c.sock = Some(fd),
                Err(e) => console::warn(&format!(
                    "coldplug: cannot open the uevent socket ({e}): walking sysfs every {} ms instead",
                    REWALK_WITHOUT_SOCKET.as_millis()
                )),
            }
        }
        c
    }

    /// Stage 2: coldplug from the driver image stage 1 moved to `dir` (oa_contract::mounts::
    /// MODULES), for the devices stage 1 left (it stops once the root is found) and those
    /// plugged in later. `None` when there is no such image.
    pub fn open_in(dir: &Path, blacklist: &[String], drivers: &[String]) -> Option<Coldplug> {
        if !dir.join(contract_modules::DEP_FILE).is_file() {
            return None;
        }
        let mut c = Coldplug::open_dir(dir, Path::new(SYS), blacklist, drivers, Box::new(async_load));
        c.sock = uevent_socket().ok();
        Some(c)
    }

    /// Coldplug over an initramfs at `root` and a sysfs at `sys`, without a socket.
    fn at(root: &Path, sys: &Path, release: &str, blacklist: &[String], drivers: &[String], load: Loader) -> Coldplug {
        Coldplug::open_dir(&root.join(contract_modules::dir(release)), sys, blacklist, drivers, load)
    }

    fn open_dir(dir: &Path, sys: &Path, blacklist: &[String], drivers: &[String], load: Loader) -> Coldplug {
        let dir = dir.to_path_buf();
        let read = |name: &str| std::fs::read_to_string(dir.join(name));
        let (deps, aliases) = match (read(contract_modules::DEP_FILE), read(contract_modules::ALIAS_FILE)) {
            (Ok(d), Ok(a)) => (contract_modules::parse_deps(&d), contract_modules::parse_aliases(&a)),
            (d, a) => {
                console::debug(&format!(
                    "coldplug: off ({} in {}: {}; {}: {})",
                    contract_modules::DEP_FILE,
                    dir.display(),
                    d.err().map_or_else(|| "ok".to_string(), |e| e.to_string()),
                    contract_modules::ALIAS_FILE,
                    a.err().map_or_else(|| "ok".to_string(), |e| e.to_string()),
                ));
                (Vec::new(), Vec::new())
            }
        };
        // Modules in the kernel already (loaded by stage 1, or built in with parameters) are
        // not tried again: a load that ends in EEXIST still costs the signature check.
        let state = std::fs::read_dir(sys.join("module"))
            .map(|rd| rd.flatten().map(|e| (e.file_name().to_string_lossy().into_owned(), State::Present)).collect())
            .unwrap_or_default();
        Coldplug {
            dir,
            sys: sys.to_path_buf(),
            deps: deps.into_iter().map(|d| (d.name(), d)).collect(),
            aliases: AliasIndex::new(aliases),
            blacklist: blacklist.iter().map(|b| normalize(b)).collect(),
            drivers: drivers.to_vec(),
            state,
            seen: HashSet::new(),
            refused: HashSet::new(),
            queue: Vec::new(),
            last_load: None,
            sock: None,
            buf: vec![0; UEVENT_MAX],
            last_walk: None,
            loader: load,
            loaded: 0,
            uevents: 0,
            rewalks: 0,
            spent: Duration::ZERO,
        }
    }

    /// Whether the initramfs carries driver classes (modules.dep and modules.alias).
    pub fn active(&self) -> bool {
        !self.deps.is_empty()
    }

    /// Record module files loaded without coldplug (the initramfs list), so that coldplug does
    /// not try them again; those in `failed` (file, why) count as failed.
    pub fn note_listed(&mut self, files: &[String], failed: &[(String, String)]) {
        for f in files {
            let bad = failed.iter().any(|(g, _)| g == f);
            self.state.insert(normalize(f), if bad { State::Failed } else { State::Present });
        }
    }

    /// The first walk of sysfs.
    pub fn start(&mut self) {
        if self.active() {
            let t = Instant::now();
            self.walk();
            self.spent += t.elapsed();
        }
    }

    /// Load modules by name (`oa.modules=`), with their dependencies.
    pub fn load_named(&mut self, names: &[String]) {
        let t = Instant::now();
        let why = format!("{}=", cmdline::MODULES);
        for n in names.iter().map(|n| normalize(n)) {
            if self.blacklist.contains(&n) {
                console::warn(&format!("module {n} is in both {why} and {}=: not loaded", cmdline::BLACKLIST));
            } else if self.state.get(&n) == Some(&State::Present) {
                console::debug(&format!("modules: {n} ({why}) is loaded already"));
            } else if !self.deps.contains_key(&n) {
                console::warn(&format!(
                    "module {n} is not in this initramfs (carried driver classes: {})",
                    self.drivers()
                ));
            } else {
                self.load(&n, &why);
            }
        }
        self.spent += t.elapsed();
    }

    /// Load `name` (with its dependencies) for `why` (a filesystem to mount, ...); true when it
    /// is loaded now or was already. A module this initramfs does not carry is false (it may
    /// be built into the kernel: the caller's next step says).
    pub fn load_for(&mut self, name: &str, why: &str) -> bool {
        let t = Instant::now();
        let n = normalize(name);
        let ok = !self.blacklist.contains(&n) && self.deps.contains_key(&n) && self.load(&n, why);
        self.spent += t.elapsed();
        ok
    }

    /// Handle what happened since the last call (pending uevents, a rewalk after an
    /// overflow), then load the cheapest queued module, if any.
    pub fn poll(&mut self) {
        if !self.active() {
            return;
        }
        self.poll_events();
        let t = Instant::now();
        if self.busy() && self.step() {
            self.spent += t.elapsed();
        }
    }

    fn poll_events(&mut self) {
        let t = Instant::now();
        let Some(fd) = self.sock.as_ref().map(|s| s.as_raw_fd()) else {
            if self.last_walk.is_none_or(|w| w.elapsed() >= REWALK_WITHOUT_SOCKET) {
                self.walk();
                self.spent += t.elapsed();
            }
            return;
        };
        let mut overflow = false;
        for _ in 0..DRAIN_MAX {
            match socket::recvfrom::<NetlinkAddr>(fd, &mut self.buf) {
                Ok((n, from)) => {
                    // Only the kernel (port 0) sends uevents here; a full buffer is truncated.
                    if n >= self.buf.len() || from.is_some_and(|a| a.pid() != 0) {
                        continue;
                    }
                    self.uevents += 1;
                    if let Some(ev) = parse_uevent(&self.buf[..n]) {
                        if let (true, Some(m)) = (ev.action == "add", ev.modalias) {
                            self.handle(&m);
                        }
                    }
                }
                Err(Errno::EAGAIN) => break,
                Err(Errno::EINTR) => continue,
                Err(Errno::ENOBUFS) => overflow = true,
                Err(e) => {
                    console::warn(&format!("coldplug: reading uevents: {e}; walking sysfs instead"));
                    self.sock = None;
                    overflow = true;
                    break;
                }
            }
        }
        if overflow {
            console::debug("coldplug: uevents were lost (socket overflow): walking sysfs again");
            self.rewalks += 1;
            self.walk();
        }
        self.spent += t.elapsed();
    }

    /// Modules loaded by coldplug (devices and `oa.modules=`), not counting those present.
    pub fn loaded(&self) -> usize {
        self.loaded
    }

    /// The driver classes the initramfs carries, for messages (`none` when it names none).
    pub fn drivers(&self) -> String {
        list_or_none(&self.drivers)
    }

    /// One line for the console: what coldplug did so far.
    pub fn summary(&self) -> String {
        format!(
            "coldplug: {} modules loaded for {} devices in {} ms ({} uevents, {} rewalks)",
            self.loaded,
            self.seen.len(),
            self.spent.as_millis(),
            self.uevents,
            self.rewalks
        )
    }

    /// Devices no driver took (PCI devices but bridges, USB interfaces), for the message when
    /// the root image or the NIC is not found.
    pub fn unclaimed(&self) -> Vec<String> {
        unclaimed_at(&self.sys)
    }

    /// For a "not found" error: the devices no driver took, the carried classes, the blacklist.
    pub fn report(&self) -> String {
        let mut s = format!(
            "devices without a driver: {}; driver classes carried: {}",
            list_or_none(&self.unclaimed()),
            self.drivers()
        );
        if !self.blacklist.is_empty() {
            let mut b: Vec<&str> = self.blacklist.iter().map(String::as_str).collect();
            b.sort_unstable();
            s.push_str(&format!("; {}={}", cmdline::BLACKLIST, b.join(",")));
        }
        s
    }

    /// Enumerate the devices of sysfs and handle every modalias found.
    fn walk(&mut self) {
        let t = Instant::now();
        // The devices of every bus (what `udevadm trigger` enumerates): one folder per bus and a
        // file per device, where the whole /sys/devices tree is thousands of folders (a third
        // of a second under TCG). The tree walk is the fallback (a sysfs without /sys/bus).
        let mut walked = self.sys.join("bus");
        let mut found = bus_modaliases(&walked);
        if found.is_empty() {
            walked = self.sys.join("devices");
            walk_modaliases(&walked, 0, &mut found);
        }
        for m in &found {
            self.handle(m);
        }
        self.last_walk = Some(Instant::now());
        console::debug(&format!(
            "coldplug: walked {} ({} modaliases) in {} ms",
            walked.display(),
            found.len(),
            t.elapsed().as_millis()
        ));
    }

    /// A device with this modalias exists: load the modules whose aliases match it.
    fn handle(&mut self, modalias: &str) {
        if self.seen.contains(modalias) {
            return;
        }
        self.seen.insert(modalias.to_string());
        for m in self.aliases.modules_for(modalias) {
            if self.blacklist.contains(&m) {
                if self.refused.insert(m.clone()) {
                    console::debug(&format!("modules: {m} not loaded for {modalias} ({}=)", cmdline::BLACKLIST));
                }
                continue;
            }
            self.enqueue(m, modalias);
        }
    }

    /// Queue `name` for loading, costed by the bytes of it and its dependencies not loaded
    /// yet: the cheapest goes first, so the small driver of the boot disk (virtio_blk, nvme)
    /// is not held up behind a big one (libata + scsi_mod for an empty IDE bus).
    fn enqueue(&mut self, name: String, why: &str) {
        if self.state.contains_key(&name) || self.queue.iter().any(|(_, n, _)| *n == name) {
            return;
        }
        let cost = self.deps.get(&name).map_or(0, |d| {
            load_order(d)
                .into_iter()
                .filter(|p| !self.state.contains_key(&normalize(p)))
                .map(|p| std::fs::metadata(self.dir.join(p)).map_or(0, |m| m.len()))
                .sum()
        });
        self.queue.push((cost, name, why.to_string()));
    }

    /// Load the cheapest queued module. Whether one was tried.
    fn step(&mut self) -> bool {
        let Some(i) = self.queue.iter().enumerate().min_by_key(|(_, q)| q.0).map(|(i, _)| i) else {
            return false;
        };
        self.last_load = Some(Instant::now());
        let (_, name, why) = self.queue.swap_remove(i);
        self.load(&name, &why);
        true
    }

    /// Modules queued, not tried yet.
    pub fn queued(&self) -> usize {
        self.queue.len()
    }

    /// Whether a module is waiting and may be loaded now: a wait loop polls again at once
    /// instead of sleeping. Between two loads [`GAP`] passes, so the uevents of the devices the
    /// last driver brought up are read and costed before the next one is chosen: virtio_pci
    /// brings up the virtio disk, whose small driver then goes before libata for an empty IDE
    /// bus.
    pub fn busy(&self) -> bool {
        !self.queue.is_empty() && self.last_load.is_none_or(|t| t.elapsed() >= GAP)
    }

    /// Load everything the devices ask for, and what the devices those drivers bring up ask
    /// for, until the queue is empty and no uevent came for `QUIET` (at most `SETTLE_MAX`):
    /// before persistence (its disk may be on another controller than the root) and before a
    /// systemd root (stage 2 of oa-init goes on with coldplug; systemd does not).
    pub fn settle(&mut self) {
        if !self.active() {
            return;
        }
        let start = Instant::now();
        let mut quiet_since = Instant::now();
        while start.elapsed() < SETTLE_MAX {
            let before = (self.uevents, self.loaded);
            self.poll_events();
            while self.step() {
                self.poll_events();
            }
            if (self.uevents, self.loaded) != before {
                quiet_since = Instant::now();
            } else if quiet_since.elapsed() >= QUIET {
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Load `name` and its dependencies; `why` names the device (or `oa.modules=`) in the
    /// console lines. Returns whether the module is in the kernel now.
    fn load(&mut self, name: &str, why: &str) -> bool {
        match self.state.get(name) {
            Some(State::Present) => return true,
            Some(State::Failed) => return false,
            None => {}
        }
        let Some(dep) = self.deps.get(name) else {
            console::debug(&format!("modules: {name} ({why}) is in modules.alias but not carried"));
            self.state.insert(name.to_string(), State::Failed);
            return false;
        };
        let order: Vec<String> = load_order(dep).into_iter().map(str::to_string).collect();
        // One console line per module a device asked for, naming the dependencies loaded for it.
        let mut fresh_deps: Vec<String> = Vec::new();
        let mut fresh_self = false;
        for path in order {
            let n = normalize(&path);
            match self.state.get(&n) {
                Some(State::Present) => continue,
                Some(State::Failed) => {
                    self.state.insert(name.to_string(), State::Failed);
                    return false;
                }
                None => {}
            }
            match (self.loader)(&self.dir, &path) {
                Ok(fresh) => {
                    self.state.insert(n.clone(), State::Present);
                    if fresh {
                        self.loaded += 1;
                        if n == name {
                            fresh_self = true;
                        } else {
                            fresh_deps.push(n);
                        }
                    }
                }
                Err(e) => {
                    console::warn(&format!("module {n} not loaded ({why}): {e}"));
                    self.state.insert(n, State::Failed);
                    self.state.insert(name.to_string(), State::Failed);
                    return false;
                }
            }
        }
        if fresh_self || !fresh_deps.is_empty() {
            let with = if fresh_deps.is_empty() { String::new() } else { format!("; with {}", fresh_deps.join(" ")) };
            console::stage("modules", &format!("{name} ({why}{with})"));
        }
        true
    }
}

fn list_or_none(v: &[String]) -> String {
    if v.is_empty() {
        "none".into()
    } else {
        v.join(", ")
    }
}

/// The module files to load for `dep`, in order: its dependencies from the last listed to the
/// first (modules.dep lists the ones loaded last first), then the module.
fn load_order(dep: &Dep) -> Vec<&str> {
    dep.deps.iter().rev().chain(std::iter::once(&dep.path)).map(String::as_str).collect()
}

fn sync_load(dir: &Path, rel: &str) -> Result<bool, LoadError> {
    modules::load_with(dir, rel, modules::Probe::Sync)
}

/// Stage 2 (after the ready line) loads with `async_probe`: the supervisor is not held up.
fn async_load(dir: &Path, rel: &str) -> Result<bool, LoadError> {
    modules::load_with(dir, rel, modules::Probe::Async)
}

/// Mount the driver image of the initramfs (initramfs_paths::DRIVERS_IMAGE) read-only over
/// `lib/modules/<release>/`, where [`Coldplug::open`] reads it. `Ok(false)` without an image.
pub fn mount_image(release: &str) -> crate::error::Result<bool> {
    let img = Path::new("/").join(oa_contract::initramfs_paths::DRIVERS_IMAGE);
    if !img.is_file() {
        return Ok(false);
    }
    let target = Path::new("/").join(contract_modules::dir(release));
    crate::mounts::ensure_dir(&target)?;
    let dev = crate::loopdev::attach_readonly(&img)?;
    let flags = nix::mount::MsFlags::MS_RDONLY | nix::mount::MsFlags::MS_NODEV | nix::mount::MsFlags::MS_NOSUID;
    crate::mounts::mount(&dev.path.display().to_string(), &target, "squashfs", flags, None)?;
    Ok(true)
}

/// Before switch_root: move the driver image to oa_contract::mounts::MODULES (under /run,
/// which moves into the new root), so stage 2 goes on with it.
pub fn hand_over(release: &str) -> crate::error::Result<()> {
    let from = Path::new("/").join(contract_modules::dir(release));
    if crate::mounts::is_mountpoint(&from)? {
        crate::mounts::move_mount(&from, Path::new(oa_contract::mounts::MODULES))?;
    }
    Ok(())
}

/// A NETLINK_KOBJECT_UEVENT socket bound to the kernel's group, non-blocking, close-on-exec.
fn uevent_socket() -> nix::Result<OwnedFd> {
    let fd = socket::socket(
        AddressFamily::Netlink,
        SockType::Datagram,
        SockFlag::SOCK_NONBLOCK | SockFlag::SOCK_CLOEXEC,
        SockProtocol::NetlinkKObjectUEvent,
    )?;
    // SO_RCVBUFFORCE goes past net.core.rmem_max (PID 1 has CAP_NET_ADMIN); else what the
    // limit allows.
    if socket::setsockopt(&fd, socket::sockopt::RcvBufForce, &RCVBUF).is_err() {
        let _ = socket::setsockopt(&fd, socket::sockopt::RcvBuf, &RCVBUF);
    }
    socket::bind(fd.as_raw_fd(), &NetlinkAddr::new(0, UEVENT_GROUP))?;
    Ok(fd)
}

/// The `modalias` of every device of every bus: `<bus>/*/devices/*/modalias` (the device
/// entries are symlinks into /sys/devices).
fn bus_modaliases(bus: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let Ok(buses) = std::fs::read_dir(bus) else { return out };
    let mut buses: Vec<PathBuf> = buses.flatten().map(|e| e.path().join("devices")).collect();
    buses.sort();
    for b in buses {
        let Ok(devs) = std::fs::read_dir(&b) else { continue };
        let mut devs: Vec<PathBuf> = devs.flatten().map(|e| e.path().join("modalias")).collect();
        devs.sort();
        out.extend(devs.iter().filter_map(|p| read_modalias(p)));
    }
    out
}

/// Every `modalias` under `dir` (not following symlinks), in walk order.
fn walk_modaliases(dir: &Path, depth: usize, out: &mut Vec<String>) {
    if depth > WALK_DEPTH {
        return;
    }
    let Ok(rd) = std::fs::read_dir(dir) else { return };
    for e in rd.flatten() {
        let Ok(ty) = e.file_type() else { continue };
        if ty.is_dir() {
            walk_modaliases(&e.path(), depth + 1, out);
        } else if ty.is_file() && e.file_name() == "modalias" {
            if let Some(m) = read_modalias(&e.path()) {
                out.push(m);
            }
        }
    }
}

fn read_modalias(p: &Path) -> Option<String> {
    let mut s = String::new();
    std::fs::File::open(p).ok()?.take(MODALIAS_MAX).read_to_string(&mut s).ok()?;
    let s = s.trim();
    (!s.is_empty()).then(|| s.to_string())
}

/// A uevent, the fields coldplug uses (DEVPATH is not needed: the modalias says it all).
#[derive(Debug, PartialEq, Eq)]
struct Uevent {
    action: String,
    modalias: Option<String>,
}

/// Parse a kernel uevent: `ACTION@DEVPATH`, then NUL-separated `KEY=VALUE` fields. Messages
/// without the kernel's header (udev's `libudev` ones) or without ACTION are ignored; fields
/// that are not UTF-8 or not `KEY=VALUE` are skipped.
fn parse_uevent(msg: &[u8]) -> Option<Uevent> {
    let mut fields = msg.split(|&b| b == 0);
    let header = std::str::from_utf8(fields.next()?).ok()?;
    header.split_once('@')?;
    let mut ev = Uevent { action: String::new(), modalias: None };
    for f in fields {
        let Some((k, v)) = std::str::from_utf8(f).ok().and_then(|f| f.split_once('=')) else { continue };
        match k {
            "ACTION" => ev.action = v.to_string(),
            "MODALIAS" if !v.is_empty() => ev.modalias = Some(v.to_string()),
            _ => {}
        }
    }
    (!ev.action.is_empty()).then_some(ev)
}

/// modules.alias, indexed by the part of a pattern before its first `:` (the bus: `pci`,
/// `usb`, `scsi`, ...) so a modalias is matched against its bus's patterns only. Patterns
/// whose bus part has a glob character are matched against every modalias.
struct AliasIndex {
    by_bus: HashMap<String, Vec<Alias>>,
    any: Vec<Alias>,
}

fn bus(s: &str) -> &str {
    s.split_once(':').map_or(s, |(b, _)| b)
}

impl AliasIndex {
    fn new(aliases: Vec<Alias>) -> AliasIndex {
        let mut ix = AliasIndex { by_bus: HashMap::new(), any: Vec::new() };
        for a in aliases {
            let b = bus(&a.pattern);
            if b.contains(['*', '?', '[', '\\']) {
                ix.any.push(a);
            } else {
                ix.by_bus.entry(b.to_string()).or_default().push(a);
            }
        }
        ix
    }

    /// The modules whose alias matches `modalias`, each once, in modules.alias order.
    fn modules_for(&self, modalias: &str) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        let bucket = self.by_bus.get(bus(modalias)).map(Vec::as_slice).unwrap_or_default();
        for a in bucket.iter().chain(&self.any) {
            if glob_match(a.pattern.as_bytes(), modalias.as_bytes()) && !out.contains(&a.module) {
                out.push(a.module.clone());
            }
        }
        out
    }
}

/// fnmatch(3) without flags, which is what kmod matches modules.alias patterns with: `*` any
/// sequence (`/` included), `?` one byte, `[...]` a set with ranges, `!` or `^` negating it and
/// `]` first taken literally, `\` quoting the next character; a `[` without its `]` is itself.
/// Character classes (`[:alpha:]`) are not supported: modaliases are ASCII and no alias uses
/// them. Written here because no small, well-kept crate without dependencies matches fnmatch
/// exactly (glob crates follow shell or path rules: `/`, `**`, `{a,b}`), and this is 60 lines.
fn glob_match(pat: &[u8], s: &[u8]) -> bool {
    let (mut p, mut i) = (0, 0);
    // Where to resume after the last `*`: (pattern index after it, string index it took up to).
    let mut star: Option<(usize, usize)> = None;
    while i < s.len() {
        if p < pat.len() && pat[p] == b'*' {
            star = Some((p + 1, i));
            p += 1;
            continue;
        }
        if p < pat.len() {
            if let Some(next) = one(pat, p, s[i]) {
                p = next;
                i += 1;
                continue;
            }
        }
        match star {
            Some((sp, si)) => {
                star = Some((sp, si + 1));
                p = sp;
                i = si + 1;
            }
            None => return false,
        }
    }
    pat[p..].iter().all(|&c| c == b'*')
}

/// Whether the token at `pat[p]` (not `*`) matches `c`; the index after the token if so.
fn one(pat: &[u8], p: usize, c: u8) -> Option<usize> {
    match pat[p] {
        b'?' => Some(p + 1),
        b'[' => match bracket(pat, p + 1, c) {
            Some((true, next)) => Some(next),
            Some((false, _)) => None,
            None => (c == b'[').then_some(p + 1),
        },
        b'\\' if p + 1 < pat.len() => (pat[p + 1] == c).then_some(p + 2),
        x => (x == c).then_some(p + 1),
    }
}

/// The set starting at `pat[q]` (after `[`): whether it matches `c` and the index after its
/// `]`, or `None` when it has no `]`.
fn bracket(pat: &[u8], mut q: usize, c: u8) -> Option<(bool, usize)> {
    let negate = matches!(pat.get(q), Some(b'!' | b'^'));
    if negate {
        q += 1;
    }
    let (mut hit, mut first) = (false, true);
    loop {
        let mut lo = *pat.get(q)?;
        if lo == b']' && !first {
            return Some((hit != negate, q + 1));
        }
        first = false;
        if lo == b'\\' {
            q += 1;
            lo = *pat.get(q)?;
        }
        q += 1;
        if pat.get(q) == Some(&b'-') && pat.get(q + 1).is_some_and(|&h| h != b']') {
            let mut hi = pat[q + 1];
            q += 2;
            if hi == b'\\' {
                hi = *pat.get(q)?;
                q += 1;
            }
            hit |= lo <= c && c <= hi;
        } else {
            hit |= lo == c;
        }
    }
}

fn read_small(p: &Path) -> Option<String> {
    let mut s = String::new();
    std::fs::File::open(p).ok()?.take(256).read_to_string(&mut s).ok()?;
    Some(s.trim().to_string())
}

fn hex(p: &Path) -> Option<u32> {
    let s = read_small(p)?;
    u32::from_str_radix(s.trim_start_matches("0x"), 16).ok()
}

fn has_driver(dev: &Path) -> bool {
    std::fs::symlink_metadata(dev.join("driver")).is_ok()
}

fn sorted_entries(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> =
        std::fs::read_dir(dir).map(|rd| rd.flatten().map(|e| e.path()).collect()).unwrap_or_default();
    v.sort();
    v
}

/// PCI devices without a driver (bridges left out) and USB interfaces without a driver.
fn unclaimed_at(sys: &Path) -> Vec<String> {
    let mut out = Vec::new();
    for d in sorted_entries(&sys.join("bus/pci/devices")) {
        let Some(class) = hex(&d.join("class")) else { continue };
        if class >> 16 == 0x06 || has_driver(&d) {
            continue;
        }
        let (v, p) = (hex(&d.join("vendor")).unwrap_or(0), hex(&d.join("device")).unwrap_or(0));
        out.push(match pci_class_name(class) {
            Some(n) => format!("pci {v:04x}:{p:04x} {n} (class 0x{class:06x})"),
            None => format!("pci {v:04x}:{p:04x} (class 0x{class:06x})"),
        });
    }
    for d in sorted_entries(&sys.join("bus/usb/devices")) {
        let is_interface = d.file_name().is_some_and(|n| n.to_string_lossy().contains(':'));
        if !is_interface || has_driver(&d) {
            continue;
        }
        let Some(class) = hex(&d.join("bInterfaceClass")) else { continue };
        let parent = std::fs::canonicalize(&d).ok().and_then(|c| c.parent().map(Path::to_path_buf));
        let id = |f: &str| parent.as_ref().and_then(|p| hex(&p.join(f))).unwrap_or(0);
        let name = usb_class_name(class).map(|n| format!("{n} ")).unwrap_or_default();
        out.push(format!("usb {:04x}:{:04x} {name}(interface class {class:02x})", id("idVendor"), id("idProduct")));
    }
    out
}

/// Names of the PCI classes a boot may need a driver for (class, subclass, prog-if).
fn pci_class_name(class: u32) -> Option<&'static str> {
    Some(match (class >> 8, class & 0xff) {
        (0x0100, _) => "SCSI controller",
        (0x0101, _) => "IDE controller",
        (0x0104, _) => "RAID controller",
        (0x0106, _) => "SATA controller",
        (0x0107, _) => "SAS controller",
        (0x0108, _) => "NVMe controller",
        (0x0200, _) => "Ethernet controller",
        (0x0280, _) => "network controller",
        (0x0300, _) => "VGA controller",
        (0x0403, _) => "audio device",
        (0x0780, _) => "communication controller",
        (0x0805, _) => "SD host controller",
        (0x0c03, 0x00) => "USB controller (UHCI)",
        (0x0c03, 0x10) => "USB controller (OHCI)",
        (0x0c03, 0x20) => "USB controller (EHCI)",
        (0x0c03, 0x30) => "USB controller (xHCI)",
        (0x0c03, _) => "USB controller",
        (0x0c05, _) => "SMBus controller",
        _ => return None,
    })
}

fn usb_class_name(class: u32) -> Option<&'static str> {
    Some(match class {
        0x01 => "audio",
        0x02 => "communications",
        0x03 => "HID",
        0x06 => "imaging",
        0x07 => "printer",
        0x08 => "mass storage",
        0x09 => "hub",
        0x0a => "CDC data",
        0x0b => "smart card",
        0x0e => "video",
        0xe0 => "wireless",
        0xff => "vendor specific",
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::RefCell;
    use std::rc::Rc;

    fn m(p: &str, s: &str) -> bool {
        glob_match(p.as_bytes(), s.as_bytes())
    }

    #[test]
    fn real_aliases() {
        let e1000e = "pci:v00008086d000010D3sv*sd*bc*sc*i*";
        assert!(m(e1000e, "pci:v00008086d000010D3sv00008086sd0000A01Fbc02sc00i00"));
        assert!(!m(e1000e, "pci:v00008086d000010D4sv00008086sd0000A01Fbc02sc00i00"));
        assert!(!m(e1000e, "pci:v00008086d000010D3"));
        let usb_storage = "usb:v*p*d*dc*dsc*dp*ic08isc06ip50in*";
        assert!(m(usb_storage, "usb:v46F4p0001d0000dc00dsc00dp00ic08isc06ip50in00"));
        assert!(!m(usb_storage, "usb:v46F4p0001d0000dc00dsc00dp00ic08isc06ip62in00"));
        let nvme = "pci:v*d*sv*sd*bc01sc08i02*";
        assert!(m(nvme, "pci:v00001B36d00000010sv00001AF4sd00001100bc01sc08i02"));
        // sd_mod: disks, optical-as-disk, RBC.
        for (p, yes) in [("scsi:t-0x00*", true), ("scsi:t-0x07*", false), ("scsi:t-0x0e*", false)] {
            assert_eq!(m(p, "scsi:t-0x00"), yes, "{p}");
        }
        assert!(!m("scsi:t-0x00*", "scsi:t-0x05"));
        assert!(m("virtio:d00000002v*", "virtio:d00000002v00001AF4"));
        assert!(!m("virtio:d00000002v*", "virtio:d00000001v00001AF4"));
        assert!(m("usb:v0BC2p2[0-9A-F]*d*dc*", "usb:v0BC2p2A00d0100dc00"));
        assert!(!m("usb:v0BC2p2[0-9A-F]*d*dc*", "usb:v0BC2p2G00d0100dc00"));
        assert!(m("fs-squashfs", "fs-squashfs"));
    }

    #[test]
    fn globs() {
        assert!(m("*", ""));
        assert!(m("a*b*c", "axxbyyc"));
        assert!(m("a*b*c", "abcbc"));
        assert!(!m("a*b*c", "abcb"));
        assert!(m("a?c", "abc"));
        assert!(!m("a?c", "ac"));
        assert!(m("[a-c]x", "bx"));
        assert!(!m("[a-c]x", "dx"));
        assert!(m("[!a-c]x", "dx"));
        assert!(!m("[!a-c]x", "ax"));
        assert!(m("[^0-9]", "z"));
        assert!(!m("[^0-9]", "5"));
        assert!(m("[]]", "]"));
        assert!(m("[!]]", "a"));
        assert!(m("[a-]", "-"));
        assert!(m("[ab", "[ab"));
        assert!(!m("[ab", "a"));
        assert!(m("\\*", "*"));
        assert!(!m("\\*", "x"));
        assert!(m("[\\]]", "]"));
        assert!(m("*[0-9]", "abc7"));
    }

    #[test]
    fn uevents() {
        let msg = b"add@/devices/pci0000:00/0000:00:04.0/usb1/1-1\0ACTION=add\0DEVPATH=/devices/pci0000:00/0000:00:04.0/usb1/1-1\0SUBSYSTEM=usb\0MODALIAS=usb:v46F4p0001d0000dc00dsc00dp00ic08isc06ip50in00\0SEQNUM=1234\0";
        let ev = parse_uevent(msg).unwrap();
        assert_eq!(ev.action, "add");
        assert_eq!(ev.modalias.as_deref(), Some("usb:v46F4p0001d0000dc00dsc00dp00ic08isc06ip50in00"));
        let ev = parse_uevent(b"bind@/devices/x\0ACTION=bind\0garbage\0\xff\xfe=1\0").unwrap();
        assert_eq!((ev.action.as_str(), ev.modalias), ("bind", None));
        assert_eq!(parse_uevent(b"libudev\0\xfe\xed\xca\xfe"), None);
        assert_eq!(parse_uevent(b"add@/devices/x"), None);
        assert_eq!(parse_uevent(b""), None);
    }

    #[test]
    fn dependencies_load_first_from_the_end() {
        let d = Dep {
            path: "kernel/drivers/usb/host/xhci-pci.ko".into(),
            deps: vec!["kernel/drivers/usb/host/xhci-hcd.ko".into(), "kernel/drivers/usb/core/usbcore.ko".into()],
        };
        assert_eq!(
            load_order(&d),
            [
                "kernel/drivers/usb/core/usbcore.ko",
                "kernel/drivers/usb/host/xhci-hcd.ko",
                "kernel/drivers/usb/host/xhci-pci.ko"
            ]
        );
    }

    fn write(p: &Path, s: &str) {
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, s).unwrap();
    }

    fn tmp(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("oa-coldplug-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn unclaimed_devices_are_named() {
        let sys = tmp("unclaimed");
        let pci = sys.join("bus/pci/devices");
        let dev = |n: &str, class: &str, v: &str, d: &str, driver: bool| {
            let p = pci.join(n);
            write(&p.join("class"), &format!("{class}\n"));
            write(&p.join("vendor"), &format!("{v}\n"));
            write(&p.join("device"), &format!("{d}\n"));
            if driver {
                std::os::unix::fs::symlink("/nowhere", p.join("driver")).unwrap();
            }
        };
        dev("0000:00:00.0", "0x060000", "0x8086", "0x29c0", false);
        dev("0000:00:1f.2", "0x010601", "0x8086", "0x2922", false);
        dev("0000:00:02.0", "0x030000", "0x1234", "0x1111", true);
        dev("0000:00:04.0", "0x0c0330", "0x1b36", "0x000d", true);
        dev("0000:00:05.0", "0xff0000", "0x1af4", "0x1234", false);
        // A USB stick whose interface no driver took, and its hub's, which hub did.
        let usbdev = sys.join("devices/pci0000:00/0000:00:04.0/usb1/1-1");
        write(&usbdev.join("idVendor"), "46f4\n");
        write(&usbdev.join("idProduct"), "0001\n");
        write(&usbdev.join("1-1:1.0/bInterfaceClass"), "08\n");
        write(&usbdev.join("../1-0:1.0/bInterfaceClass"), "09\n");
        std::os::unix::fs::symlink("/nowhere", usbdev.join("../1-0:1.0/driver")).unwrap();
        let links = sys.join("bus/usb/devices");
        std::fs::create_dir_all(&links).unwrap();
        std::os::unix::fs::symlink(&usbdev, links.join("1-1")).unwrap();
        std::os::unix::fs::symlink(usbdev.join("1-1:1.0"), links.join("1-1:1.0")).unwrap();
        std::os::unix::fs::symlink(usbdev.join("../1-0:1.0"), links.join("1-0:1.0")).unwrap();
        assert_eq!(
            unclaimed_at(&sys),
            [
                "pci 1af4:1234 (class 0xff0000)",
                "pci 8086:2922 SATA controller (class 0x010601)",
                "usb 46f4:0001 mass storage (interface class 08)",
            ]
        );
        assert_eq!(pci_class_name(0x0c0320), Some("USB controller (EHCI)"));
        assert_eq!(pci_class_name(0x010802), Some("NVMe controller"));
        let _ = std::fs::remove_dir_all(&sys);
    }

    /// A coldplug over a fake initramfs and sysfs; the loader records instead of loading.
    fn fake(name: &str, blacklist: &[&str]) -> (Coldplug, Rc<RefCell<Vec<String>>>, PathBuf) {
        let d = tmp(name);
        let (root, sys) = (d.join("root"), d.join("sys"));
        let mods = root.join(contract_modules::dir("6.1.0-test"));
        write(
            &mods.join(contract_modules::DEP_FILE),
            "kernel/drivers/usb/host/xhci-pci.ko: kernel/drivers/usb/host/xhci-hcd.ko kernel/drivers/usb/core/usbcore.ko\n\
             kernel/drivers/usb/host/xhci-hcd.ko: kernel/drivers/usb/core/usbcore.ko\n\
             kernel/drivers/usb/core/usbcore.ko:\n\
             kernel/drivers/usb/storage/usb-storage.ko: kernel/drivers/scsi/scsi_mod.ko kernel/drivers/usb/core/usbcore.ko\n\
             kernel/drivers/scsi/scsi_mod.ko:\n\
             kernel/drivers/scsi/sd_mod.ko: kernel/drivers/scsi/scsi_mod.ko\n\
             kernel/drivers/ata/ahci.ko:\n",
        );
        write(
            &mods.join(contract_modules::ALIAS_FILE),
            "alias pci:v*d*sv*sd*bc0Csc03i30* xhci_pci\n\
             alias usb:v*p*d*dc*dsc*dp*ic08isc06ip50in* usb_storage\n\
             alias scsi:t-0x00* sd_mod\n\
             alias pci:v*d*sv*sd*bc01sc06i01* ahci\n\
             alias pci:v00001AF4d*sv*sd*bc*sc*i* virtio_pci\n",
        );
        let dev = sys.join("devices/pci0000:00");
        write(&dev.join("0000:00:04.0/modalias"), "pci:v00001B36d0000000Dsv00001AF4sd00001100bc0Csc03i30\n");
        write(&dev.join("0000:00:1f.2/modalias"), "pci:v00008086d00002922sv00001AF4sd00001100bc01sc06i01\n");
        // A symlink loop: not followed.
        std::os::unix::fs::symlink("..", dev.join("0000:00:04.0/subsystem")).unwrap();
        let log = Rc::new(RefCell::new(Vec::new()));
        let l = log.clone();
        let load: Loader = Box::new(move |_dir, rel| {
            l.borrow_mut().push(normalize(rel));
            Ok(true)
        });
        let bl: Vec<String> = blacklist.iter().map(|s| s.to_string()).collect();
        let c = Coldplug::at(&root, &sys, "6.1.0-test", &bl, &["usb".into(), "storage".into()], load);
        (c, log, d)
    }

    #[test]
    fn the_walk_loads_what_devices_ask_for_dependencies_first() {
        let (mut c, log, d) = fake("walk", &["ahci"]);
        assert!(c.active());
        c.note_listed(&["lib/modules/6.1.0-test/kernel/drivers/usb/core/usbcore.ko".into()], &[]);
        c.start();
        // The walk queues; loading is one module per step, the cheapest first.
        assert!(log.borrow().is_empty() && c.queued() == 1);
        while c.step() {}
        assert_eq!(*log.borrow(), ["xhci_hcd", "xhci_pci"]);
        // The stick, then its SCSI disk, as uevents would bring them.
        c.handle("usb:v46F4p0001d0000dc00dsc00dp00ic08isc06ip50in00");
        while c.step() {}
        c.handle("scsi:t-0x00");
        c.handle("scsi:t-0x00");
        while c.step() {}
        assert_eq!(*log.borrow(), ["xhci_hcd", "xhci_pci", "scsi_mod", "usb_storage", "sd_mod"]);
        assert_eq!(c.loaded(), 5);
        // A rewalk loads nothing twice.
        c.walk();
        assert_eq!(log.borrow().len(), 5);
        c.load_named(&["ahci".into(), "nvme".into(), "sd-mod".into()]);
        assert_eq!(log.borrow().len(), 5);
        assert!(c.report().ends_with("driver classes carried: usb, storage; oa.blacklist=ahci"), "{}", c.report());
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn named_modules_and_failures() {
        let (mut c, log, d) = fake("named", &[]);
        c.loader = Box::new({
            let l = log.clone();
            move |_dir, rel| {
                let n = normalize(rel);
                l.borrow_mut().push(n.clone());
                if n == "scsi_mod" {
                    Err(LoadError::Init { path: rel.into(), source: Errno::ENOEXEC })
                } else {
                    Ok(n != "usbcore")
                }
            }
        });
        c.load_named(&["sd_mod".into(), "usb_storage".into(), "xhci_pci".into()]);
        // scsi_mod failed once: neither sd_mod nor usb_storage tries it again.
        assert_eq!(*log.borrow(), ["scsi_mod", "usbcore", "xhci_hcd", "xhci_pci"]);
        assert_eq!(c.loaded(), 2, "usbcore was present already");
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn without_the_files_coldplug_is_off() {
        let d = tmp("off");
        let mut c = Coldplug::at(&d, &d, "6.1.0-test", &[], &[], Box::new(|_, _| panic!("nothing to load")));
        assert!(!c.active());
        c.start();
        c.poll();
        c.load_named(&["e1000e".into()]);
        let _ = std::fs::remove_dir_all(&d);
    }
}
