//! Booting an output in QEMU: the command line (a pure function, unit-tested), choosing KVM
//! only when it really works, and watching the serial console for the ready line.
//!
//! Two ways to boot: the kernel and initramfs loaded by QEMU (`-kernel`, the root image as
//! `/dev/vda`), or a disk image (`disk.img`, qcow2) started by the firmware and its boot
//! loader, as a real machine does. The firmware is SeaBIOS (QEMU's default) or OVMF (UEFI,
//! Debian's `ovmf`): its code read-only and a copy of the variable store per run. Extra
//! writable drives (`oa run --drive`) and user-mode networking on a virtio NIC (`--net`,
//! `--ssh`) go on either. [`Console`] reads and types into the serial console: the ready
//! check and `oa run --expect/--send` ([`crate::console_script`]).

use crate::error::{Error, Result};
use oa_contract::cmdline::{self, Cmdline, RootSpec};
use oa_contract::manifest::{artifact, Manifest};
use oa_contract::{Arch, ConsoleLine};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Accel {
    Kvm,
    Tcg,
}

/// What to boot and how.
#[derive(Debug, Clone)]
pub struct Spec {
    pub arch: Arch,
    pub kernel: PathBuf,
    pub initrd: PathBuf,
    /// The root image, attached read-only as the first virtio disk (`/dev/vda`).
    pub root_image: Option<PathBuf>,
    /// Kernel command line words.
    pub append: Vec<String>,
    pub memory_mib: u32,
    pub cpus: u32,
    pub accel: Accel,
    /// Serial console multiplexed with the QEMU monitor (Ctrl-A X quits): for a terminal.
    pub interactive: bool,
    /// Extra QEMU arguments, appended as given.
    pub extra: Vec<String>,
    /// Boot this disk image through the firmware instead of `kernel`/`initrd`/`root_image`/`append`.
    pub disk: Option<DiskBoot>,
    /// SeaBIOS or OVMF.
    pub firmware: Firmware,
    /// Extra writable virtio disks (`oa run --drive`), after the boot disk or root image.
    pub drives: Vec<DiskBoot>,
    /// QEMU user-mode networking on a virtio NIC: the `-netdev user` options after `user`
    /// (`""`, or e.g. `hostfwd=tcp:127.0.0.1:2222-:22`). None: no network device.
    pub net: Option<String>,
    /// The boot disk is a USB stick (usb-storage on an xHCI controller) instead of virtio.
    pub usb: bool,
    /// NICs on tap devices (`oa lab`), in this order.
    pub nics: Vec<Nic>,
    /// Boot from the first NIC (the firmware's PXE) instead of a disk or a kernel.
    pub pxe: bool,
    /// Run QEMU inside this network namespace (`ip netns exec`), where the taps are.
    pub netns: Option<String>,
}

/// A NIC on a tap device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Nic {
    pub tap: String,
    /// `aa:bb:cc:dd:ee:ff`.
    pub mac: String,
    /// QEMU device model (`virtio-net-pci`, `e1000e`).
    pub model: String,
    /// Without an option ROM (so OVMF's own PXE client boots, not iPXE's).
    pub no_rom: bool,
}

/// The firmware QEMU starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Firmware {
    /// SeaBIOS, QEMU's default for x86.
    Bios,
    /// UEFI: the firmware code (read-only) and this run's own copy of the variable store.
    Uefi { code: PathBuf, vars: PathBuf },
}

/// A disk image attached as the first virtio disk (or an ISO as a CD-ROM) and booted by the
/// firmware.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiskBoot {
    pub path: PathBuf,
    /// QEMU's format name: `raw` or `qcow2`.
    pub format: String,
    /// Writes go to a temporary overlay that QEMU drops at exit; the file is not changed.
    pub snapshot: bool,
    /// A read-only CD-ROM on the machine's AHCI (q35) controller instead of a virtio disk.
    pub cdrom: bool,
}

impl DiskBoot {
    /// An ISO (`oa.iso`) in a CD-ROM drive: read-only, booted through El Torito.
    pub fn cdrom(path: &Path) -> DiskBoot {
        DiskBoot { path: path.to_path_buf(), format: "raw".into(), snapshot: false, cdrom: true }
    }

    /// `path` with its format read from its first bytes (qcow2's magic, else raw).
    pub fn detect(path: &Path, snapshot: bool) -> Result<DiskBoot> {
        let mut magic = [0u8; 4];
        let mut f = std::fs::File::open(path).map_err(|e| Error::Io {
            action: "opening disk image",
            path: path.to_path_buf(),
            source: e,
        })?;
        let n = f.read(&mut magic).map_err(|e| Error::Io {
            action: "reading disk image",
            path: path.to_path_buf(),
            source: e,
        })?;
        let format = if n == 4 && &magic == b"QFI\xfb" { "qcow2" } else { "raw" };
        Ok(DiskBoot { path: path.to_path_buf(), format: format.into(), snapshot, cdrom: false })
    }
}

/// Is `path` a disk image `oa run` can boot (a raw disk with an MBR/GPT boot signature, or qcow2)?
pub fn is_disk_image(path: &Path) -> bool {
    let mut head = [0u8; 512];
    let Ok(mut f) = std::fs::File::open(path) else { return false };
    let n = f.read(&mut head).unwrap_or(0);
    (n >= 4 && &head[..4] == b"QFI\xfb") || (n == 512 && head[510] == 0x55 && head[511] == 0xaa)
}

/// The UEFI firmware files of a Debian host: OVMF (x86_64, package `ovmf`) or AAVMF
/// (aarch64, package `qemu-efi-aarch64`).
#[derive(Debug, Clone)]
pub struct UefiFiles {
    pub code: PathBuf,
    /// The pristine variable store, copied for each run.
    pub vars_template: PathBuf,
}

/// The keys enrolled in the variable store of OVMF's Secure Boot build (package `ovmf`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SecureVars {
    /// Microsoft's keys, as on stock PCs (`OVMF_VARS_4M.ms.fd`).
    Microsoft,
    /// Debian's snakeoil test key (`OVMF_VARS_4M.snakeoil.fd`; its key pair is
    /// /usr/share/ovmf/PkKek-1-snakeoil.{key,pem}).
    Snakeoil,
}

/// QEMU flags OVMF's Secure Boot build needs: SMM, and its variable flash writable only from SMM.
pub const SECURE_BOOT_ARGS: [&str; 4] =
    ["-global", "driver=cfi.pflash01,property=secure,value=on", "-machine", "smm=on"];

impl UefiFiles {
    /// OVMF's Secure Boot build with `vars` enrolled (x86_64; add [`SECURE_BOOT_ARGS`]).
    pub fn secure(vars: SecureVars) -> Result<UefiFiles> {
        let vars_template = match vars {
            SecureVars::Microsoft => "/usr/share/OVMF/OVMF_VARS_4M.ms.fd",
            SecureVars::Snakeoil => "/usr/share/OVMF/OVMF_VARS_4M.snakeoil.fd",
        };
        let files =
            UefiFiles { code: "/usr/share/OVMF/OVMF_CODE_4M.secboot.fd".into(), vars_template: vars_template.into() };
        for f in [&files.code, &files.vars_template] {
            if !f.is_file() {
                return Err(Error::ToolMissing {
                    tool: "OVMF with Secure Boot".into(),
                    why: format!("{} not found", f.display()),
                    hint: "install it: apt-get install ovmf (`make deps` does it)".into(),
                });
            }
        }
        Ok(files)
    }

    pub fn locate(arch: Arch) -> Result<UefiFiles> {
        Self::locate_in(Path::new("/"), arch)
    }

    pub fn locate_in(root: &Path, arch: Arch) -> Result<UefiFiles> {
        let (pairs, package): (&[(&str, &str)], &str) = match arch {
            Arch::Aarch64 => {
                (&[("usr/share/AAVMF/AAVMF_CODE.fd", "usr/share/AAVMF/AAVMF_VARS.fd")], "qemu-efi-aarch64")
            }
            _ => (
                &[
                    ("usr/share/OVMF/OVMF_CODE_4M.fd", "usr/share/OVMF/OVMF_VARS_4M.fd"),
                    ("usr/share/OVMF/OVMF_CODE.fd", "usr/share/OVMF/OVMF_VARS.fd"),
                ],
                "ovmf",
            ),
        };
        for (code, vars) in pairs {
            let (code, vars) = (root.join(code), root.join(vars));
            if code.is_file() && vars.is_file() {
                return Ok(UefiFiles { code, vars_template: vars });
            }
        }
        Err(Error::ToolMissing {
            tool: format!("UEFI firmware for {arch}"),
            why: format!("{} not found", root.join(pairs[0].0).display()),
            hint: format!("install it: apt-get install {package} (`make deps` does it), or boot with --firmware bios"),
        })
    }

    /// Copy the variable store for one run into `dir`: the [`Firmware`] for the [`Spec`] and
    /// a guard that deletes the copy when dropped (keep it alive while QEMU runs).
    pub fn for_run(&self, dir: &Path) -> Result<(Firmware, VarsCopy)> {
        std::fs::create_dir_all(dir).map_err(|e| Error::Io {
            action: "creating",
            path: dir.to_path_buf(),
            source: e,
        })?;
        let vars = dir.join(format!("oa-uefi-vars-{}-{}.fd", std::process::id(), crate::hash::unique_suffix()));
        std::fs::copy(&self.vars_template, &vars).map_err(|e| Error::Io {
            action: "copying the UEFI variable store to",
            path: vars.clone(),
            source: e,
        })?;
        Ok((Firmware::Uefi { code: self.code.clone(), vars: vars.clone() }, VarsCopy(vars)))
    }
}

/// One run's UEFI variable store; removed when dropped.
#[derive(Debug)]
pub struct VarsCopy(pub PathBuf);

impl Drop for VarsCopy {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

impl Spec {
    /// Boot the output folder `dir` described by `m`: its kernel and initramfs, its root
    /// image as /dev/vda, and the manifest's command line.
    pub fn from_output(dir: &Path, m: &Manifest, accel: Accel) -> Spec {
        let file = |n: &str| dir.join(m.artifact(n).map(|a| a.path.as_str()).unwrap_or(n));
        let mut append = Cmdline::from_words(m.cmdline.iter().cloned());
        append.set_root(&RootSpec::Path(cmdline::RUN_ROOT_DEVICE.into()));
        let append = append.into_words();
        Spec {
            arch: m.arch,
            kernel: file(artifact::KERNEL),
            initrd: file(artifact::INITRAMFS),
            root_image: Some(file(artifact::ROOTFS)),
            append,
            memory_mib: 512,
            cpus: 1,
            accel,
            interactive: false,
            extra: Vec::new(),
            disk: None,
            firmware: Firmware::Bios,
            drives: Vec::new(),
            net: None,
            usb: false,
            nics: Vec::new(),
            pxe: false,
            netns: None,
        }
    }

    /// Boot the disk image `disk` through `firmware` (its boot loader holds the command line).
    pub fn from_disk(arch: Arch, disk: DiskBoot, firmware: Firmware, accel: Accel) -> Spec {
        Spec {
            arch,
            kernel: PathBuf::new(),
            initrd: PathBuf::new(),
            root_image: None,
            append: Vec::new(),
            memory_mib: 512,
            cpus: 1,
            accel,
            interactive: false,
            extra: Vec::new(),
            disk: Some(disk),
            firmware,
            drives: Vec::new(),
            net: None,
            usb: false,
            nics: Vec::new(),
            pxe: false,
            netns: None,
        }
    }

    pub fn binary(&self) -> String {
        format!("qemu-system-{}", self.arch)
    }

    /// The QEMU argument list.
    pub fn args(&self) -> Vec<String> {
        let mut a: Vec<String> = Vec::new();
        let mut push = |s: &[&str]| a.extend(s.iter().map(|x| x.to_string()));
        match self.arch {
            Arch::Aarch64 => {
                push(&["-M", "virt", "-cpu", if self.accel == Accel::Kvm { "host" } else { "cortex-a57" }])
            }
            Arch::X86_64 => push(&["-M", "q35"]),
        }
        push(&["-accel", if self.accel == Accel::Kvm { "kvm" } else { "tcg" }]);
        let mem = self.memory_mib.to_string();
        let cpus = self.cpus.to_string();
        push(&["-m", &mem, "-smp", &cpus]);
        push(&["-nodefaults", "-no-user-config", "-display", "none", "-no-reboot"]);
        push(&["-serial", if self.interactive { "mon:stdio" } else { "stdio" }]);
        if let Firmware::Uefi { code, vars } = &self.firmware {
            let c = format!("if=pflash,format=raw,unit=0,readonly=on,file={}", code.display());
            let v = format!("if=pflash,format=raw,unit=1,file={}", vars.display());
            push(&["-drive", &c, "-drive", &v]);
        }
        if let Some(d) = self.disk.as_ref().filter(|d| d.cdrom) {
            // q35's built-in AHCI controller (ide.0 is its first port); aarch64's virt has
            // none, so a SCSI CD-ROM there.
            let drive = format!("file={},format=raw,if=none,id=cd0,media=cdrom,readonly=on", d.path.display());
            push(&["-drive", &drive]);
            match self.arch {
                Arch::X86_64 => push(&["-device", "ide-cd,drive=cd0,bus=ide.0,bootindex=0"]),
                Arch::Aarch64 => push(&[
                    "-device",
                    "virtio-scsi-pci,id=scsi0",
                    "-device",
                    "scsi-cd,drive=cd0,bus=scsi0.0,bootindex=0",
                ]),
            }
        } else if let Some(d) = &self.disk {
            let drive = format!(
                "file={},format={},if=none,id=disk0{}",
                d.path.display(),
                d.format,
                if d.snapshot { ",snapshot=on" } else { "" }
            );
            if self.usb {
                push(&["-drive", &drive, "-device", "qemu-xhci,id=xhci"]);
                push(&["-device", "usb-storage,bus=xhci.0,drive=disk0,bootindex=0,removable=on"]);
            } else {
                push(&["-drive", &drive, "-device", "virtio-blk-pci,drive=disk0,bootindex=0"]);
            }
        } else if self.pxe {
            // Booted from the first NIC (bootindex below).
        } else {
            let k = self.kernel.display().to_string();
            let i = self.initrd.display().to_string();
            push(&["-kernel", &k, "-initrd", &i]);
            if let Some(r) = &self.root_image {
                let d = format!("file={},format=raw,if=virtio,readonly=on", r.display());
                push(&["-drive", &d]);
            }
            let append = self.append.join(" ");
            push(&["-append", &append]);
        }
        // `if=virtio`, like the root image: QEMU creates these after every `-device`, in the
        // order given, so the boot disk or root image stays /dev/vda and the extra drives
        // follow it (/dev/vdb, ...).
        for d in &self.drives {
            let drive = format!("file={},format={},if=virtio", qemu_opt_value(&d.path.display().to_string()), d.format);
            push(&["-drive", &drive]);
        }
        if let Some(opts) = &self.net {
            let netdev = if opts.is_empty() { "user,id=n0".to_string() } else { format!("user,id=n0,{opts}") };
            push(&["-netdev", &netdev, "-device", "virtio-net-pci,netdev=n0"]);
        }
        for (i, n) in self.nics.iter().enumerate() {
            let netdev = format!("tap,id=t{i},ifname={},script=no,downscript=no", n.tap);
            let boot = if self.pxe && i == 0 { ",bootindex=0" } else { "" };
            let rom = if n.no_rom { ",romfile=" } else { "" };
            let device = format!("{},netdev=t{i},mac={}{boot}{rom}", n.model, n.mac);
            push(&["-netdev", &netdev, "-device", &device]);
        }
        a.extend(self.extra.iter().cloned());
        a
    }

    /// The command that starts QEMU: inside [`Spec::netns`] when set. QEMU gets SIGKILL when
    /// the process that started it dies, so a killed `oa` leaves no machine running.
    pub fn command(&self) -> Command {
        let mut c = match &self.netns {
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns, &self.binary()]);
                c
            }
            None => Command::new(self.binary()),
        };
        c.args(self.args());
        crate::tool::die_with_parent(&mut c);
        c
    }
}

/// A value inside a QEMU option list (`file=...`): commas doubled, as QEMU reads them.
fn qemu_opt_value(v: &str) -> String {
    v.replace(',', ",,")
}

/// KVM when it works, else TCG. `/dev/kvm` may exist while guests hang (no nested
/// virtualisation): require the vmx/svm CPU flag, then prove it by running one `hlt`
/// instruction in a throw-away VM in a child process that is killed if it does not finish.
pub fn detect_accel(arch: Arch) -> Accel {
    if let Ok(v) = std::env::var("OA_ACCEL") {
        return if v == "kvm" { Accel::Kvm } else { Accel::Tcg };
    }
    if Arch::host() != Some(arch) {
        return Accel::Tcg;
    }
    let flags = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let has_virt = flags
        .lines()
        .filter(|l| l.starts_with("flags") || l.starts_with("Features"))
        .any(|l| l.split_whitespace().any(|f| f == "vmx" || f == "svm"));
    if !has_virt && arch == Arch::X86_64 {
        return Accel::Tcg;
    }
    if std::fs::OpenOptions::new().read(true).write(true).open("/dev/kvm").is_err() {
        return Accel::Tcg;
    }
    // The probe runs in a child (`oa __kvm-probe`): a hung KVM_RUN cannot be interrupted from
    // the same thread, but a child process can be killed.
    let Ok(exe) = std::env::current_exe() else { return Accel::Tcg };
    let Ok(mut child) = Command::new(exe).arg("__kvm-probe").stdout(Stdio::null()).stderr(Stdio::null()).spawn() else {
        return Accel::Tcg;
    };
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        match child.try_wait() {
            Ok(Some(st)) => return if st.success() { Accel::Kvm } else { Accel::Tcg },
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(20)),
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                return Accel::Tcg;
            }
        }
    }
}

/// The body of `oa __kvm-probe`: exit 0 when a one-instruction guest halts under KVM.
#[cfg(target_arch = "x86_64")]
pub fn kvm_probe() -> bool {
    use kvm_ioctls::{Kvm, VcpuExit};
    let run = || -> std::result::Result<bool, Box<dyn std::error::Error>> {
        let kvm = Kvm::new()?;
        let vm = kvm.create_vm()?;
        let size = 0x1000usize;
        // SAFETY: an anonymous private mapping of one page, owned by this short-lived process.
        let mem = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                size,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_ANONYMOUS | libc::MAP_PRIVATE,
                -1,
                0,
            )
        };
        if mem == libc::MAP_FAILED {
            return Ok(false);
        }
        // SAFETY: `mem` is a valid writable mapping of `size` bytes.
        unsafe { *(mem as *mut u8) = 0xf4 }; // hlt
        let region = kvm_bindings::kvm_userspace_memory_region {
            slot: 0,
            guest_phys_addr: 0x1000,
            memory_size: size as u64,
            userspace_addr: mem as u64,
            flags: 0,
        };
        // SAFETY: the region points at the mapping above, which outlives the VM.
        unsafe { vm.set_user_memory_region(region)? };
        let mut vcpu = vm.create_vcpu(0)?;
        let mut sregs = vcpu.get_sregs()?;
        sregs.cs.base = 0;
        sregs.cs.selector = 0;
        vcpu.set_sregs(&sregs)?;
        let mut regs = vcpu.get_regs()?;
        regs.rip = 0x1000;
        regs.rflags = 2;
        vcpu.set_regs(&regs)?;
        Ok(matches!(vcpu.run()?, VcpuExit::Hlt))
    };
    run().unwrap_or(false)
}

#[cfg(not(target_arch = "x86_64"))]
pub fn kvm_probe() -> bool {
    false
}

/// How a watched boot ended.
#[derive(Debug)]
pub enum Outcome {
    /// The ready line appeared after this long.
    Ready(Duration, String),
    /// oa-init printed a FATAL line.
    Fatal(String),
    /// QEMU exited before the ready line.
    Exited(std::process::ExitStatus),
    TimedOut(Duration),
}

/// Spawn QEMU for `spec` with the console piped, echoing it to `echo` and saving it to `log`.
pub fn spawn(spec: &Spec) -> Result<Child> {
    let bin = spec.binary();
    if crate::tool::which(&bin).is_none() {
        return Err(Error::ToolMissing {
            tool: bin.clone(),
            why: "not on PATH".into(),
            hint: format!(
                "install it: apt-get install {} (`make deps` does it)",
                if spec.arch == Arch::Aarch64 { "qemu-system-arm" } else { "qemu-system-x86" }
            ),
        });
    }
    let files = match &spec.disk {
        Some(d) => vec![&d.path],
        None if spec.pxe => vec![],
        None => vec![&spec.kernel, &spec.initrd],
    };
    for f in files {
        if !f.is_file() {
            return Err(Error::Output { path: f.clone(), reason: "missing; rebuild with `oa build`".into() });
        }
    }
    if let Some(d) = spec.drives.iter().find(|d| !d.path.is_file()) {
        return Err(Error::Usage(format!("--drive {}: no such file", d.path.display())));
    }
    spec.command()
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .map_err(|e| Error::ToolFailed { command: bin, status: "could not start".into(), output: e.to_string() })
}

/// Run interactively: the terminal is the serial console. `notice` (e.g. the ssh command of
/// a port forward) is printed once QEMU has started. Returns QEMU's exit status.
pub fn run_interactive(spec: &Spec, notice: Option<&str>) -> Result<std::process::ExitStatus> {
    let mut s = spec.clone();
    s.interactive = true;
    let bin = s.binary();
    if crate::tool::which(&bin).is_none() {
        return Err(Error::ToolMissing {
            tool: bin,
            why: "not on PATH".into(),
            hint: "apt-get install qemu-system-x86 (`make deps`)".into(),
        });
    }
    eprintln!("oa: booting in QEMU ({:?}); the console is this terminal, Ctrl-A X quits", s.accel);
    let failed = |e: std::io::Error| Error::ToolFailed {
        command: bin.clone(),
        status: "could not start".into(),
        output: e.to_string(),
    };
    let mut child = s.command().spawn().map_err(failed)?;
    if let Some(n) = notice {
        // QEMU may have put the terminal in raw mode already: end the line with \r\n.
        eprint!("oa: {n}\r\n");
    }
    child.wait().map_err(failed)
}

/// Watch a boot until the ready line (then stop QEMU), a FATAL line, QEMU's exit or the
/// deadline. The console goes to `echo` as it arrives and, whole, to `log`.
pub fn run_until_ready(spec: &Spec, timeout: Duration, echo: bool, log: Option<&Path>) -> Result<Outcome> {
    let mut console = Console::start(spec, echo)?;
    let outcome = console.wait_ready(timeout);
    console.finish(log);
    outcome
}

/// A running QEMU whose serial console is piped: its output read as it arrives (echoed to
/// stdout when asked, kept whole), its input typed into. QEMU is stopped by [`Console::finish`]
/// or when this is dropped.
pub struct Console {
    child: Child,
    stdin: Option<ChildStdin>,
    rx: mpsc::Receiver<Vec<u8>>,
    text: Vec<u8>,
    /// The line being read, for the ready and FATAL checks.
    line: Vec<u8>,
    echo: bool,
    /// Where the console also goes as it arrives (`oa lab`'s per-machine log).
    tee: Option<std::fs::File>,
    started: Instant,
    status: Option<std::process::ExitStatus>,
}

impl Console {
    /// Start QEMU for `spec` (see [`spawn`]).
    pub fn start(spec: &Spec, echo: bool) -> Result<Console> {
        let mut child = spawn(spec)?;
        let mut stdout = child.stdout.take().ok_or_else(|| Error::Qemu("QEMU has no stdout pipe".into()))?;
        let stdin = child.stdin.take();
        let (tx, rx) = mpsc::channel::<Vec<u8>>();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = stdout.read(&mut buf) {
                if n == 0 || tx.send(buf[..n].to_vec()).is_err() {
                    break;
                }
            }
        });
        Ok(Console {
            child,
            stdin,
            rx,
            text: Vec::new(),
            line: Vec::new(),
            echo,
            tee: None,
            started: Instant::now(),
            status: None,
        })
    }

    /// QEMU's process id (`ip netns exec` execs QEMU, so it is QEMU's own).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Time since QEMU was started.
    pub fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }

    /// Also append the console to `file` as it arrives.
    pub fn tee(&mut self, file: std::fs::File) {
        self.tee = Some(file);
    }

    fn take(&mut self, chunk: &[u8]) {
        if self.echo {
            let _ = std::io::stdout().write_all(chunk);
            let _ = std::io::stdout().flush();
        }
        if let Some(f) = &mut self.tee {
            let _ = f.write_all(chunk);
        }
        self.text.extend_from_slice(chunk);
    }

    /// Wait until the ready line, a FATAL line, QEMU's exit or `timeout` after the start.
    pub fn wait_ready(&mut self, timeout: Duration) -> Result<Outcome> {
        loop {
            let left = timeout.saturating_sub(self.started.elapsed());
            if left.is_zero() {
                return Ok(Outcome::TimedOut(self.started.elapsed()));
            }
            match self.rx.recv_timeout(left.min(Duration::from_millis(100))) {
                Ok(chunk) => {
                    self.take(&chunk);
                    let mut found = None;
                    for b in chunk {
                        if b == b'\n' {
                            let l = String::from_utf8_lossy(&self.line).trim_end().to_string();
                            match ConsoleLine::parse(&l) {
                                Some(c) if c.is_ready() && found.is_none() => {
                                    found = Some(Outcome::Ready(self.started.elapsed(), l.clone()))
                                }
                                Some(c) if c.is_fatal() && found.is_none() => found = Some(Outcome::Fatal(l.clone())),
                                _ => {}
                            }
                            self.line.clear();
                        } else {
                            self.line.push(b);
                        }
                    }
                    if let Some(o) = found {
                        return Ok(o);
                    }
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    if let Ok(Some(st)) = self.child.try_wait() {
                        self.status = Some(st);
                        return Ok(Outcome::Exited(st));
                    }
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    let st = self.child.wait().map_err(|e| Error::Qemu(format!("waiting for QEMU: {e}")))?;
                    self.status = Some(st);
                    return Ok(Outcome::Exited(st));
                }
            }
        }
    }

    /// QEMU's exit status once it has exited by itself (waits for it up to 2 s).
    pub fn exit_status(&mut self) -> Option<std::process::ExitStatus> {
        let end = Instant::now() + Duration::from_secs(2);
        while self.status.is_none() && Instant::now() < end {
            match self.child.try_wait() {
                Ok(Some(st)) => self.status = Some(st),
                Ok(None) => std::thread::sleep(Duration::from_millis(20)),
                Err(_) => break,
            }
        }
        self.status
    }

    /// Stop QEMU, collect what it printed last and save the whole console to `log`.
    pub fn finish(&mut self, log: Option<&Path>) {
        self.stop();
        // The reader thread ends at the pipe's end, which QEMU's exit closes.
        let end = Instant::now() + Duration::from_millis(500);
        while Instant::now() < end {
            match self.rx.recv_timeout(Duration::from_millis(20)) {
                Ok(c) => self.take(&c),
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => break,
            }
        }
        if let Some(log) = log {
            if let Err(e) = std::fs::write(log, &self.text) {
                eprintln!("oa: could not save the console to {}: {e}", log.display());
            }
        }
    }

    fn stop(&mut self) {
        self.stdin = None;
        if self.status.is_none() {
            let _ = self.child.kill();
            if let Ok(st) = self.child.wait() {
                self.status = Some(st);
            }
        }
    }
}

impl crate::console_script::ConsoleIo for Console {
    fn text(&self) -> &[u8] {
        &self.text
    }

    fn pump(&mut self, wait: Duration) -> bool {
        match self.rx.recv_timeout(wait) {
            Ok(chunk) => {
                self.take(&chunk);
                while let Ok(more) = self.rx.try_recv() {
                    self.take(&more);
                }
                true
            }
            Err(mpsc::RecvTimeoutError::Timeout) => true,
            Err(mpsc::RecvTimeoutError::Disconnected) => false,
        }
    }

    fn send_line(&mut self, text: &str) -> std::io::Result<()> {
        let stdin = self.stdin.as_mut().ok_or(std::io::ErrorKind::BrokenPipe)?;
        stdin.write_all(format!("{text}\n").as_bytes())?;
        stdin.flush()
    }
}

impl Drop for Console {
    fn drop(&mut self) {
        self.stop();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn x86_args_boot_kernel_initrd_and_root_disk() {
        let m = Manifest {
            schema: 1,
            profile: "tiny".into(),
            arch: Arch::X86_64,
            kernel_release: "6.1".into(),
            cmdline: vec!["console=ttyS0".into()],
            artifacts: vec![],
            builder: "oa".into(),
            key_material: vec![],
        };
        let s = Spec::from_output(Path::new("/o"), &m, Accel::Tcg);
        let a = s.args().join(" ");
        assert!(a.contains("-accel tcg"));
        assert!(a.contains("-kernel /o/vmlinuz -initrd /o/initramfs.img"));
        assert!(a.contains("-drive file=/o/rootfs.squashfs,format=raw,if=virtio,readonly=on"));
        assert!(a.contains("-append console=ttyS0 oa.root=/dev/vda"));
        assert!(a.contains("-serial stdio"));
        assert_eq!(s.binary(), "qemu-system-x86_64");
    }

    #[test]
    fn disk_boot_under_bios_and_uefi() {
        let disk = DiskBoot { path: "/o/disk.img".into(), format: "raw".into(), snapshot: true, cdrom: false };
        let s = Spec::from_disk(Arch::X86_64, disk.clone(), Firmware::Bios, Accel::Tcg);
        let a = s.args().join(" ");
        assert!(a.contains("-drive file=/o/disk.img,format=raw,if=none,id=disk0,snapshot=on -device virtio-blk-pci,drive=disk0,bootindex=0"), "{a}");
        assert!(!a.contains("-kernel") && !a.contains("-append") && !a.contains("pflash"), "{a}");
        let uefi = Firmware::Uefi { code: "/fw/CODE.fd".into(), vars: "/tmp/vars.fd".into() };
        let q = DiskBoot { path: "/o/disk.qcow2".into(), format: "qcow2".into(), snapshot: false, cdrom: false };
        let a = Spec::from_disk(Arch::X86_64, q, uefi, Accel::Tcg).args().join(" ");
        assert!(a.contains("-drive if=pflash,format=raw,unit=0,readonly=on,file=/fw/CODE.fd -drive if=pflash,format=raw,unit=1,file=/tmp/vars.fd"), "{a}");
        assert!(a.contains("file=/o/disk.qcow2,format=qcow2,if=none,id=disk0 -device"), "{a}");
        // The firmware goes before the disk; -kernel boots can use OVMF too.
        let m = Manifest {
            schema: 1,
            profile: "t".into(),
            arch: Arch::X86_64,
            kernel_release: "6".into(),
            cmdline: vec![],
            artifacts: vec![],
            builder: "oa".into(),
            key_material: vec![],
        };
        let mut k = Spec::from_output(Path::new("/o"), &m, Accel::Tcg);
        k.firmware = Firmware::Uefi { code: "/c".into(), vars: "/v".into() };
        let a = k.args().join(" ");
        assert!(a.contains("unit=1,file=/v") && a.contains("-kernel /o/vmlinuz"), "{a}");
    }

    #[test]
    fn iso_boots_as_a_cdrom_under_bios_and_uefi() {
        let iso = DiskBoot::cdrom(Path::new("/o/oa.iso"));
        let a = Spec::from_disk(Arch::X86_64, iso.clone(), Firmware::Bios, Accel::Tcg).args().join(" ");
        assert!(a.contains("-M q35"), "{a}");
        assert!(
            a.contains("-drive file=/o/oa.iso,format=raw,if=none,id=cd0,media=cdrom,readonly=on -device ide-cd,drive=cd0,bus=ide.0,bootindex=0"),
            "{a}"
        );
        assert!(!a.contains("virtio-blk") && !a.contains("-kernel") && !a.contains("pflash"), "{a}");
        let uefi = Firmware::Uefi { code: "/fw/CODE.fd".into(), vars: "/tmp/vars.fd".into() };
        let a = Spec::from_disk(Arch::X86_64, iso, uefi, Accel::Tcg).args().join(" ");
        assert!(a.contains("unit=0,readonly=on,file=/fw/CODE.fd") && a.contains("media=cdrom"), "{a}");
    }

    #[test]
    fn extra_drives_follow_the_root_and_user_networking_is_a_virtio_nic() {
        let m = Manifest {
            schema: 1,
            profile: "t".into(),
            arch: Arch::X86_64,
            kernel_release: "6".into(),
            cmdline: vec![],
            artifacts: vec![],
            builder: "oa".into(),
            key_material: vec![],
        };
        let mut s = Spec::from_output(Path::new("/o"), &m, Accel::Tcg);
        let a = s.args().join(" ");
        assert!(!a.contains("-netdev") && !a.contains("virtio-net"), "no network unless asked: {a}");
        s.drives = vec![
            DiskBoot { path: "/d/blank.raw".into(), format: "raw".into(), snapshot: false, cdrom: false },
            DiskBoot { path: "/d/a,b.qcow2".into(), format: "qcow2".into(), snapshot: false, cdrom: false },
        ];
        s.net = Some(String::new());
        let a = s.args().join(" ");
        let root = a.find("file=/o/rootfs.squashfs,format=raw,if=virtio,readonly=on").expect(&a);
        let first = a.find("-drive file=/d/blank.raw,format=raw,if=virtio -drive").expect(&a);
        // Writable (no readonly, no snapshot); a comma in the path is doubled for QEMU.
        let second = a.find("-drive file=/d/a,,b.qcow2,format=qcow2,if=virtio -netdev").expect(&a);
        assert!(root < first && first < second, "{a}");
        assert!(a.ends_with("-netdev user,id=n0 -device virtio-net-pci,netdev=n0"), "{a}");
        s.net = Some("hostfwd=tcp:127.0.0.1:2222-:22".into());
        let a = s.args().join(" ");
        assert!(
            a.contains("-netdev user,id=n0,hostfwd=tcp:127.0.0.1:2222-:22 -device virtio-net-pci,netdev=n0"),
            "{a}"
        );
        // On a disk boot the drives come after the boot disk's -device, which QEMU creates first.
        let disk = DiskBoot { path: "/o/disk.img".into(), format: "raw".into(), snapshot: true, cdrom: false };
        let mut d = Spec::from_disk(Arch::X86_64, disk, Firmware::Bios, Accel::Tcg);
        d.drives = s.drives.clone();
        let a = d.args().join(" ");
        assert!(
            a.contains("virtio-blk-pci,drive=disk0,bootindex=0 -drive file=/d/blank.raw,format=raw,if=virtio"),
            "{a}"
        );
    }

    #[test]
    fn a_missing_extra_drive_is_named() {
        let d = tempfile::tempdir().unwrap();
        let img = d.path().join("disk.img");
        std::fs::write(&img, [0u8; 512]).unwrap();
        let mut s = Spec::from_disk(
            Arch::X86_64,
            DiskBoot { path: img, format: "raw".into(), snapshot: true, cdrom: false },
            Firmware::Bios,
            Accel::Tcg,
        );
        s.drives =
            vec![DiskBoot { path: d.path().join("nope.raw"), format: "raw".into(), snapshot: false, cdrom: false }];
        if crate::tool::which(&s.binary()).is_some() {
            let e = spawn(&s).map(|_| ()).unwrap_err().to_string();
            assert!(e.contains("--drive") && e.contains("nope.raw") && e.contains("no such file"), "{e}");
        }
    }

    #[test]
    fn missing_uefi_firmware_names_the_package() {
        let root = tempfile::tempdir().unwrap();
        let e = UefiFiles::locate_in(root.path(), Arch::X86_64).unwrap_err().to_string();
        assert!(
            e.contains("OVMF_CODE_4M.fd") && e.contains("apt-get install ovmf") && e.contains("--firmware bios"),
            "{e}"
        );
    }

    #[test]
    fn vars_copy_is_private_and_removed() {
        let root = tempfile::tempdir().unwrap();
        let fw = root.path().join("usr/share/OVMF");
        std::fs::create_dir_all(&fw).unwrap();
        std::fs::write(fw.join("OVMF_CODE_4M.fd"), b"code").unwrap();
        std::fs::write(fw.join("OVMF_VARS_4M.fd"), b"vars").unwrap();
        let u = UefiFiles::locate_in(root.path(), Arch::X86_64).unwrap();
        let (f1, g1) = u.for_run(root.path()).unwrap();
        let (f2, _g2) = u.for_run(root.path()).unwrap();
        assert_ne!(f1, f2, "each run has its own variable store");
        let Firmware::Uefi { vars, .. } = f1 else { panic!() };
        assert_eq!(std::fs::read(&vars).unwrap(), b"vars");
        drop(g1);
        assert!(!vars.exists());
    }

    #[test]
    fn disk_images_are_recognised_by_content() {
        let d = tempfile::tempdir().unwrap();
        let raw = d.path().join("a.img");
        let mut b = vec![0u8; 1024];
        b[510] = 0x55;
        b[511] = 0xaa;
        std::fs::write(&raw, &b).unwrap();
        let q = d.path().join("b");
        std::fs::write(&q, b"QFI\xfb\0\0\0\x03").unwrap();
        let t = d.path().join("p.toml");
        std::fs::write(&t, "hostname = \"x\"\n").unwrap();
        assert!(is_disk_image(&raw) && is_disk_image(&q) && !is_disk_image(&t));
        assert_eq!(DiskBoot::detect(&q, false).unwrap().format, "qcow2");
        assert_eq!(DiskBoot::detect(&raw, true).unwrap().format, "raw");
    }

    #[test]
    fn no_virt_flag_means_tcg_here() {
        // On machines without vmx/svm this must answer at once, without touching /dev/kvm.
        let t = Instant::now();
        let a = detect_accel(Arch::X86_64);
        assert!(t.elapsed() < Duration::from_secs(5));
        let flags = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        if !flags.contains(" vmx") && !flags.contains(" svm") && std::env::var("OA_ACCEL").is_err() {
            assert_eq!(a, Accel::Tcg);
        }
    }
}
