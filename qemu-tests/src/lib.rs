//! The QEMU test harness: boot an oa output, watch the serial console for patterns with
//! deadlines, type into it, and keep the whole console log (always written to
//! `target/qemu-logs/<test>.log`; its path and tail are printed when a test fails).
//!
//! Machines are started from the same [`oa_builder::qemu::Spec`] that `oa run` uses, so the
//! tests boot exactly what users boot.

/// Private networks (moved to oa-testkit, which the pxe tests share).
pub use oa_testkit::netns;

use oa_builder::qemu::Spec;
use oa_contract::{Arch, ConsoleLine, READY_LINE};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

/// The workspace root (the tests run with the package folder as cwd).
pub fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("qemu-tests lives in the workspace").to_path_buf()
}

/// The `oa` binary the tests drive: `$OA_BIN`, else `target/release/oa` (built by `make test`).
pub fn oa_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("OA_BIN") {
        return PathBuf::from(p);
    }
    let p = workspace().join("target/release/oa");
    assert!(
        p.is_file(),
        "{} is missing: run the QEMU tests through `make test` (it builds oa and oa-init first) or set OA_BIN",
        p.display()
    );
    p
}

/// `oa build <profile> --out <out>`, checked: the build succeeds, and the stages it ran (its
/// `--json` report) are exactly the pipeline `oa graph --format json` draws for the profile, so
/// every profile the tests build proves the graph is the build. Returns how long it took.
pub fn oa_build(profile: &std::ffi::OsStr, out: &Path) -> Duration {
    // The graph first: a test may keep its profile inside the output folder, which the build
    // replaces.
    let g = std::process::Command::new(oa_bin())
        .current_dir(workspace())
        .arg("graph")
        .arg(profile)
        .args(["--format", "json"])
        .output()
        .expect("running oa graph");
    assert!(
        g.status.success(),
        "oa graph {} failed: {}",
        profile.to_string_lossy(),
        String::from_utf8_lossy(&g.stderr)
    );
    let graph: serde_json::Value = serde_json::from_slice(&g.stdout).expect("oa graph --format json prints JSON");
    let drawn: Vec<&str> =
        graph["pipeline"]["stages"].as_array().expect("pipeline.stages").iter().filter_map(|s| s.as_str()).collect();
    let t = Instant::now();
    let o = std::process::Command::new(oa_bin())
        .current_dir(workspace())
        .arg("build")
        .arg(profile)
        .arg("--out")
        .arg(out)
        .arg("--json")
        .stderr(Stdio::inherit())
        .output()
        .expect("running oa build");
    let took = t.elapsed();
    assert!(o.status.success(), "oa build {} failed ({})", profile.to_string_lossy(), o.status);
    let report: serde_json::Value = serde_json::from_slice(&o.stdout).expect("oa build --json prints JSON");
    let ran: Vec<&str> =
        report["stages"].as_array().expect("stages").iter().filter_map(|s| s["stage"].as_str()).collect();
    assert!(!ran.is_empty());
    assert_eq!(ran, drawn, "the stages oa build ran are not the ones oa graph draws for {}", profile.to_string_lossy());
    took
}

/// A key set from `oa keys init` (db.key, db.crt, PK/KEK, minisign.key, minisign.pub) named
/// `name`, made once per test process under `target/qemu-tests/keys/<name>`: tests running in
/// parallel that ask for the same set share it instead of racing to create it.
pub fn keys(name: &str) -> PathBuf {
    static MADE: Mutex<Vec<String>> = Mutex::new(Vec::new());
    let mut made = MADE.lock().unwrap_or_else(|e| e.into_inner());
    let dir = workspace().join("target/qemu-tests/keys").join(name);
    if !made.iter().any(|n| n == name) {
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.parent().expect("keys dir has a parent")).expect("creating target/qemu-tests/keys");
        let out = std::process::Command::new(oa_bin())
            .args(["keys", "init"])
            .arg(&dir)
            .output()
            .expect("running oa keys init");
        assert!(out.status.success(), "oa keys init {}: {}", dir.display(), String::from_utf8_lossy(&out.stderr));
        made.push(name.to_string());
    }
    dir
}

/// Build `profile` once per test process into `target/qemu-tests/<name>` and return the folder.
pub fn built(profile: &str) -> PathBuf {
    static BUILT: OnceLock<Mutex<std::collections::BTreeMap<String, PathBuf>>> = OnceLock::new();
    let map = BUILT.get_or_init(|| Mutex::new(Default::default()));
    let mut map = map.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(p) = map.get(profile) {
        return p.clone();
    }
    let out = workspace().join("target/qemu-tests").join(profile);
    oa_build(profile.as_ref(), &out);
    map.insert(profile.to_string(), out.clone());
    out
}

/// A machine under test.
pub struct Machine {
    name: String,
    child: Child,
    stdin: Option<ChildStdin>,
    rx: Receiver<Vec<u8>>,
    console: Vec<u8>,
    /// Everything before this offset has been matched already.
    pos: usize,
    started: Instant,
    log: PathBuf,
}

impl Machine {
    /// Boot `spec`; `name` names the log file (use the test's name).
    pub fn boot(name: &str, spec: &Spec) -> Machine {
        Machine::start(name, spec.command())
    }

    /// Start any QEMU command line (for machines `Spec` does not describe, such as raspi3b).
    pub fn start(name: &str, mut cmd: std::process::Command) -> Machine {
        let program = cmd.get_program().to_string_lossy().to_string();
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("starting {program}: {e} (is QEMU installed? `make deps`)"));
        let (tx, rx) = mpsc::channel();
        for mut r in [
            Box::new(child.stdout.take().expect("stdout")) as Box<dyn Read + Send>,
            Box::new(child.stderr.take().expect("stderr")),
        ] {
            let tx = tx.clone();
            std::thread::spawn(move || {
                let mut buf = [0u8; 4096];
                while let Ok(n) = r.read(&mut buf) {
                    if n == 0 || tx.send(buf[..n].to_vec()).is_err() {
                        break;
                    }
                }
            });
        }
        let dir = workspace().join("target/qemu-logs");
        let _ = std::fs::create_dir_all(&dir);
        let stdin = child.stdin.take();
        Machine {
            name: name.into(),
            child,
            stdin,
            rx,
            console: Vec::new(),
            pos: 0,
            started: Instant::now(),
            log: dir.join(format!("{name}.log")),
        }
    }

    pub fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }

    /// The whole console so far.
    pub fn console(&self) -> String {
        String::from_utf8_lossy(&self.console).to_string()
    }

    fn pump(&mut self, wait: Duration) -> bool {
        match self.rx.recv_timeout(wait) {
            Ok(chunk) => {
                self.console.extend_from_slice(&chunk);
                true
            }
            Err(RecvTimeoutError::Timeout) => true,
            Err(RecvTimeoutError::Disconnected) => false,
        }
    }

    /// Wait until `pattern` appears on the console after the previous match; returns the line
    /// holding it. Panics (with the log) at the deadline or when QEMU exits first.
    pub fn expect(&mut self, pattern: &str, timeout: Duration) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            let text = String::from_utf8_lossy(&self.console[self.pos..]).to_string();
            // A match counts once its line is complete, so the caller sees the whole line.
            if let Some((i, line_end)) = text.find(pattern).and_then(|i| text[i..].find('\n').map(|e| (i, i + e))) {
                let line_start = text[..i].rfind('\n').map(|x| x + 1).unwrap_or(0);
                // Advance by bytes of the lossy text; console output is ASCII in practice.
                self.pos += text[..i + pattern.len()].len();
                return text[line_start..line_end].trim_end().to_string();
            }
            let now = Instant::now();
            if now >= deadline {
                self.fail(&format!("no `{pattern}` on the console within {timeout:?}"));
            }
            if !self.pump((deadline - now).min(Duration::from_millis(100))) {
                // QEMU closed its output: drain and give it one last look.
                if !String::from_utf8_lossy(&self.console[self.pos..]).contains(pattern) {
                    self.fail(&format!("QEMU exited before `{pattern}` appeared"));
                }
            }
        }
    }

    /// Wait for oa-init's line of stage `name` whose text starts with `text` (`oa-init: stage
    /// <name>: <text>...`); returns the whole line.
    pub fn expect_stage(&mut self, name: &str, text: &str, timeout: Duration) -> String {
        self.expect(&ConsoleLine::Stage { name, text }.to_string(), timeout)
    }

    /// Wait for a plain oa-init line starting with `text` (`oa-init: <text>...`).
    pub fn expect_info(&mut self, text: &str, timeout: Duration) -> String {
        self.expect(&ConsoleLine::Info(text).to_string(), timeout)
    }

    /// Wait for the ready line; returns the host it names.
    pub fn expect_ready(&mut self, timeout: Duration) -> String {
        let line = self.expect(READY_LINE, timeout);
        match ConsoleLine::parse(&line) {
            Some(ConsoleLine::Ready { host, .. }) => host.to_string(),
            _ => self.fail(&format!("`{line}` is not a ready line")),
        }
    }

    /// Assert `pattern` does not appear within `within` (reads the console for that long).
    pub fn expect_absent(&mut self, pattern: &str, within: Duration) {
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            if !self.pump(Duration::from_millis(100)) {
                break;
            }
        }
        if String::from_utf8_lossy(&self.console[self.pos..]).contains(pattern) {
            self.fail(&format!("`{pattern}` appeared on the console but must not"));
        }
    }

    /// Type a line into the serial console.
    pub fn send_line(&mut self, line: &str) {
        let stdin = self.stdin.as_mut().expect("console input");
        stdin.write_all(format!("{line}\n").as_bytes()).expect("writing to the console");
        stdin.flush().expect("flushing the console");
    }

    /// Wait for QEMU to exit by itself.
    pub fn wait_exit(&mut self, timeout: Duration) -> ExitStatus {
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok(Some(st)) = self.child.try_wait() {
                self.drain(Duration::from_millis(300));
                return st;
            }
            if Instant::now() >= deadline {
                self.fail(&format!("QEMU did not exit within {timeout:?}"));
            }
            self.pump(Duration::from_millis(50));
        }
    }

    /// Collect what the reader threads still deliver, for at most `max`.
    fn drain(&mut self, max: Duration) {
        let end = Instant::now() + max;
        while Instant::now() < end {
            match self.rx.recv_timeout(Duration::from_millis(20)) {
                Ok(c) => self.console.extend_from_slice(&c),
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => break,
            }
        }
    }

    fn save_log(&self) {
        let _ = std::fs::write(&self.log, &self.console);
    }

    /// Stop the test with the reason, the log's path and its last lines.
    pub fn fail(&mut self, why: &str) -> ! {
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.drain(Duration::from_millis(300));
        self.save_log();
        let text = self.console();
        let tail: Vec<&str> = text.lines().rev().take(40).collect::<Vec<_>>().into_iter().rev().collect();
        panic!(
            "[{}] {why} (after {:.1}s)\nwhole console log: {}\n--- last lines ---\n{}",
            self.name,
            self.started.elapsed().as_secs_f64(),
            self.log.display(),
            tail.join("\n")
        );
    }
}

impl Drop for Machine {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        while let Ok(c) = self.rx.try_recv() {
            self.console.extend_from_slice(&c);
        }
        self.save_log();
    }
}

/// Build a variant of a shipped profile once per test process: the file
/// `target/qemu-tests/profiles/<name>.toml` includes `profiles/<base>.toml` and adds `extra`
/// (TOML); the output goes to `target/qemu-tests/<name>`.
pub fn built_variant(name: &str, base: &str, extra: &str) -> PathBuf {
    static BUILT: OnceLock<Mutex<std::collections::BTreeMap<String, PathBuf>>> = OnceLock::new();
    let map = BUILT.get_or_init(|| Mutex::new(Default::default()));
    let mut map = map.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(p) = map.get(name) {
        return p.clone();
    }
    let dir = workspace().join("target/qemu-tests/profiles");
    std::fs::create_dir_all(&dir).expect("creating the test profiles folder");
    let file = dir.join(format!("{name}.toml"));
    let base = workspace().join("profiles").join(format!("{base}.toml"));
    std::fs::write(
        &file,
        format!("# Written by the QEMU tests.\ninclude = [{:?}]\n{extra}", base.display().to_string()),
    )
    .expect("writing the test profile");
    let out = workspace().join("target/qemu-tests").join(name);
    oa_build(file.as_os_str(), &out);
    map.insert(name.to_string(), out.clone());
    out
}

/// UEFI firmware for one machine: OVMF's code and a private copy of its variable store under
/// `target/qemu-tests/uefi-vars/`, deleted when the returned guard is dropped (keep it alive
/// while the machine runs).
pub fn uefi_firmware(arch: Arch) -> (oa_builder::qemu::Firmware, oa_builder::qemu::VarsCopy) {
    let files = oa_builder::qemu::UefiFiles::locate(arch).unwrap_or_else(|e| panic!("{e}"));
    files.for_run(&workspace().join("target/qemu-tests/uefi-vars")).unwrap_or_else(|e| panic!("{e}"))
}

/// The human monitor of one machine on a Unix socket (`-monitor unix:...`), for what a person
/// does to a running machine: eject a CD, pull a USB stick (`device_del`).
pub struct Monitor {
    pub path: PathBuf,
}

impl Monitor {
    /// A socket path for the machine `name`; add [`Monitor::args`] to its QEMU command line.
    pub fn new(name: &str) -> Monitor {
        let dir = workspace().join("target/qemu-tests/monitors");
        std::fs::create_dir_all(&dir).expect("creating the monitor socket folder");
        let path = dir.join(format!("{name}.sock"));
        let _ = std::fs::remove_file(&path);
        Monitor { path }
    }

    pub fn args(&self) -> Vec<String> {
        vec!["-monitor".into(), format!("unix:{},server=on,wait=off", self.path.display())]
    }

    /// Run one monitor command; returns what the monitor printed up to its next prompt.
    pub fn run(&self, command: &str) -> String {
        let mut s = std::os::unix::net::UnixStream::connect(&self.path)
            .unwrap_or_else(|e| panic!("connecting to the QEMU monitor {}: {e}", self.path.display()));
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut out = Vec::new();
        let mut buf = [0u8; 4096];
        let mut read_to_prompt = |s: &mut std::os::unix::net::UnixStream, out: &mut Vec<u8>| loop {
            match s.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    out.extend_from_slice(&buf[..n]);
                    if out.ends_with(b"(qemu) ") {
                        break;
                    }
                }
            }
        };
        read_to_prompt(&mut s, &mut out);
        out.clear();
        s.write_all(format!("{command}\n").as_bytes()).expect("writing to the QEMU monitor");
        read_to_prompt(&mut s, &mut out);
        String::from_utf8_lossy(&out).to_string()
    }
}

/// virt-fw-vars (the virt-firmware package from PyPI, which `make deps` installs into
/// ~/.cache/oa/venv): edits an OVMF variable store offline.
pub fn virt_fw_vars() -> PathBuf {
    let p = std::env::var_os("OA_VIRT_FW_VARS").map(PathBuf::from).unwrap_or_else(|| {
        PathBuf::from(std::env::var_os("HOME").expect("HOME")).join(".cache/oa/venv/bin/virt-fw-vars")
    });
    assert!(
        p.exists(),
        "{} is missing: run `make deps` (it installs virt-firmware into ~/.cache/oa/venv)",
        p.display()
    );
    p
}
