//! Booting an output in QEMU: the command line (a pure function, unit-tested), choosing KVM
//! only when it really works, and watching the serial console for the ready line.

use crate::error::{Error, Result};
use oa_contract::manifest::{artifact, Manifest};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
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
    pub arch: String,
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
}

impl Spec {
    /// Boot the output folder `dir` described by `m`: its kernel and initramfs, its root
    /// image as /dev/vda, and the manifest's command line.
    pub fn from_output(dir: &Path, m: &Manifest, accel: Accel) -> Spec {
        let file = |n: &str| dir.join(m.artifact(n).map(|a| a.path.as_str()).unwrap_or(n));
        let mut append = m.cmdline.clone();
        append.push(format!("{}=/dev/vda", oa_contract::cmdline::ROOT));
        Spec {
            arch: m.arch.clone(),
            kernel: file(artifact::KERNEL),
            initrd: file(artifact::INITRAMFS),
            root_image: Some(file(artifact::ROOTFS)),
            append,
            memory_mib: 512,
            cpus: 1,
            accel,
            interactive: false,
            extra: Vec::new(),
        }
    }

    pub fn binary(&self) -> String {
        format!("qemu-system-{}", self.arch)
    }

    /// The QEMU argument list.
    pub fn args(&self) -> Vec<String> {
        let mut a: Vec<String> = Vec::new();
        let mut push = |s: &[&str]| a.extend(s.iter().map(|x| x.to_string()));
        match self.arch.as_str() {
            "aarch64" => push(&["-M", "virt", "-cpu", if self.accel == Accel::Kvm { "host" } else { "cortex-a57" }]),
            _ => push(&["-M", "q35"]),
        }
        push(&["-accel", if self.accel == Accel::Kvm { "kvm" } else { "tcg" }]);
        let mem = self.memory_mib.to_string();
        let cpus = self.cpus.to_string();
        push(&["-m", &mem, "-smp", &cpus]);
        push(&["-nodefaults", "-no-user-config", "-display", "none", "-no-reboot"]);
        push(&["-serial", if self.interactive { "mon:stdio" } else { "stdio" }]);
        let k = self.kernel.display().to_string();
        let i = self.initrd.display().to_string();
        push(&["-kernel", &k, "-initrd", &i]);
        if let Some(r) = &self.root_image {
            let d = format!("file={},format=raw,if=virtio,readonly=on", r.display());
            push(&["-drive", &d]);
        }
        let append = self.append.join(" ");
        push(&["-append", &append]);
        a.extend(self.extra.iter().cloned());
        a
    }

    pub fn command(&self) -> Command {
        let mut c = Command::new(self.binary());
        c.args(self.args());
        c
    }
}

/// KVM when it works, else TCG. `/dev/kvm` may exist while guests hang (no nested
/// virtualisation): require the vmx/svm CPU flag, then prove it by running one `hlt`
/// instruction in a throw-away VM in a child process that is killed if it does not finish.
pub fn detect_accel(arch: &str) -> Accel {
    if let Ok(v) = std::env::var("OA_ACCEL") {
        return if v == "kvm" { Accel::Kvm } else { Accel::Tcg };
    }
    if arch != std::env::consts::ARCH {
        return Accel::Tcg;
    }
    let flags = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let has_virt = flags.lines().filter(|l| l.starts_with("flags") || l.starts_with("Features")).any(|l| {
        l.split_whitespace().any(|f| f == "vmx" || f == "svm")
    });
    if !has_virt && arch == "x86_64" {
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
            libc::mmap(std::ptr::null_mut(), size, libc::PROT_READ | libc::PROT_WRITE, libc::MAP_ANONYMOUS | libc::MAP_PRIVATE, -1, 0)
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
            hint: format!("install it: apt-get install {} (`make deps` does it)", if spec.arch == "aarch64" { "qemu-system-arm" } else { "qemu-system-x86" }),
        });
    }
    for f in [&spec.kernel, &spec.initrd] {
        if !f.is_file() {
            return Err(Error::Output { path: f.clone(), reason: "missing; rebuild with `oa build`".into() });
        }
    }
    spec.command()
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .map_err(|e| Error::ToolFailed { command: bin, status: "could not start".into(), output: e.to_string() })
}

/// Run interactively: the terminal is the serial console. Returns QEMU's exit status.
pub fn run_interactive(spec: &Spec) -> Result<std::process::ExitStatus> {
    let mut s = spec.clone();
    s.interactive = true;
    let bin = s.binary();
    if crate::tool::which(&bin).is_none() {
        return Err(Error::ToolMissing { tool: bin, why: "not on PATH".into(), hint: "apt-get install qemu-system-x86 (`make deps`)".into() });
    }
    eprintln!("oa: booting in QEMU ({:?}); the console is this terminal, Ctrl-A X quits", s.accel);
    s.command().status().map_err(|e| Error::ToolFailed { command: bin, status: "could not start".into(), output: e.to_string() })
}

/// Watch a boot until the ready line (then stop QEMU), a FATAL line, QEMU's exit or the
/// deadline. The console goes to `echo` as it arrives and, whole, to `log`.
pub fn run_until_ready(spec: &Spec, timeout: Duration, echo: bool, log: Option<&Path>) -> Result<Outcome> {
    let start = Instant::now();
    let mut child = spawn(spec)?;
    let mut stdout = child.stdout.take().ok_or_else(|| Error::Other("QEMU has no stdout pipe".into()))?;
    let (tx, rx) = mpsc::channel::<Vec<u8>>();
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok(n) = stdout.read(&mut buf) {
            if n == 0 || tx.send(buf[..n].to_vec()).is_err() {
                break;
            }
        }
    });
    let mut console = Vec::new();
    let mut line = Vec::new();
    let outcome = loop {
        let left = timeout.saturating_sub(start.elapsed());
        if left.is_zero() {
            break Outcome::TimedOut(start.elapsed());
        }
        match rx.recv_timeout(left.min(Duration::from_millis(100))) {
            Ok(chunk) => {
                if echo {
                    let _ = std::io::stdout().write_all(&chunk);
                    let _ = std::io::stdout().flush();
                }
                console.extend_from_slice(&chunk);
                let mut found = None;
                for b in chunk {
                    if b == b'\n' {
                        let l = String::from_utf8_lossy(&line).trim_end().to_string();
                        if l.contains(oa_contract::READY_LINE) && found.is_none() {
                            found = Some(Outcome::Ready(start.elapsed(), l));
                        } else if l.contains(oa_contract::FATAL_PREFIX) && found.is_none() {
                            found = Some(Outcome::Fatal(l));
                        }
                        line.clear();
                    } else {
                        line.push(b);
                    }
                }
                if let Some(o) = found {
                    break o;
                }
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {
                if let Ok(Some(st)) = child.try_wait() {
                    break Outcome::Exited(st);
                }
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                let st = child.wait().map_err(|e| Error::Other(format!("waiting for QEMU: {e}")))?;
                break Outcome::Exited(st);
            }
        }
    };
    let _ = child.kill();
    let _ = child.wait();
    if let Some(log) = log {
        let _ = std::fs::write(log, &console);
    }
    Ok(outcome)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn x86_args_boot_kernel_initrd_and_root_disk() {
        let m = Manifest {
            schema: 1,
            profile: "tiny".into(),
            arch: "x86_64".into(),
            kernel_release: "6.1".into(),
            cmdline: vec!["console=ttyS0".into()],
            artifacts: vec![],
            builder: "oa".into(),
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
    fn no_virt_flag_means_tcg_here() {
        // On machines without vmx/svm this must answer at once, without touching /dev/kvm.
        let t = Instant::now();
        let a = detect_accel("x86_64");
        assert!(t.elapsed() < Duration::from_secs(5));
        let flags = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        if !flags.contains(" vmx") && !flags.contains(" svm") && std::env::var("OA_ACCEL").is_err() {
            assert_eq!(a, Accel::Tcg);
        }
    }
}
