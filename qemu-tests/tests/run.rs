//! `oa run` as a single-machine user runs it: the built `oa` binary boots tiny with an extra
//! blank drive and user-mode networking and plays an `--expect`/`--send` script on its
//! console; a step that is not met ends with exit code 2, naming the step.

use oa_qemu_tests::{built, oa_bin, workspace};
use std::io::{BufRead, BufReader};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

/// The blank drive's size in 512-byte sectors: a number the boot does not print.
const SECTORS: u64 = 12345;

fn scratch(name: &str) -> PathBuf {
    let d = workspace().join("target/qemu-tests").join(format!("run-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).expect("creating the test folder");
    d
}

/// `oa run` with its stderr read as it comes: `on_line` sees each line while QEMU runs.
fn oa_run_watching(out: &Path, args: &[&str], mut on_line: impl FnMut(&str)) -> (Output, Duration) {
    let t = Instant::now();
    let mut child = Command::new(oa_bin())
        .arg("run")
        .arg(out)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("running oa run");
    let mut stdout = child.stdout.take().expect("stdout");
    let console = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = std::io::Read::read_to_end(&mut stdout, &mut v);
        v
    });
    let mut err = Vec::new();
    for line in BufReader::new(child.stderr.take().expect("stderr")).split(b'\n') {
        let line = line.expect("reading oa's stderr");
        on_line(&String::from_utf8_lossy(&line));
        err.extend_from_slice(&line);
        err.push(b'\n');
    }
    let status = child.wait().expect("waiting for oa run");
    let stdout = console.join().expect("stdout reader");
    (Output { status, stdout, stderr: err }, t.elapsed())
}

fn oa_run(out: &Path, args: &[&str]) -> (Output, Duration) {
    let t = Instant::now();
    let o =
        Command::new(oa_bin()).arg("run").arg(out).args(args).stdin(Stdio::null()).output().expect("running oa run");
    (o, t.elapsed())
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).to_string()
}

/// `oa: ready after 12.34s...` on stderr: the seconds.
fn ready_after(err: &str) -> f64 {
    let rest = err.split("oa: ready after ").nth(1).unwrap_or_else(|| panic!("no ready line report in:\n{err}"));
    rest.split('s').next().and_then(|n| n.parse().ok()).unwrap_or_else(|| panic!("bad ready report in:\n{err}"))
}

#[test]
fn a_script_with_an_extra_drive_and_user_networking_passes() {
    let tiny = built("tiny");
    let dir = scratch("pass");
    let blank = dir.join("blank.raw");
    std::fs::File::create(&blank).and_then(|f| f.set_len(SECTORS * 512)).expect("making the blank drive");
    let log = dir.join("console.log");
    let sectors = SECTORS.to_string();
    // --ssh: the forward is printed once QEMU runs, and QEMU accepts connections on it (tiny
    // has no SSH server: the connection is QEMU's, which is what --ssh sets up).
    let mut forwarded = None;
    let (o, took) = oa_run_watching(
        &tiny,
        &[
            "--drive",
            blank.to_str().unwrap(),
            "--net",
            "user",
            "--ssh",
            "--timeout",
            "120",
            "--step-timeout",
            "30",
            "--log",
            log.to_str().unwrap(),
            "--expect",
            "hello from oa",
            "--send",
            "cat /sys/block/vdb/size",
            "--expect",
            &sectors,
            // The drive is writable: the host reads this back from the file.
            "--send",
            "echo oa-run-wrote-this > /dev/vdb && sync && echo WROTE=$((40+2))",
            "--expect",
            "WROTE=42",
            // The NIC is QEMU's virtio-net with its default MAC (coldplug may still be loading
            // its driver after the ready line: wait for it).
            "--send",
            "for i in 1 2 3 4 5 6 7 8 9 10; do [ -e /sys/class/net/eth0 ] && break; sleep 1; done; cat /sys/class/net/eth0/address",
            "--expect",
            "52:54:00:12:34:56",
        ],
        |line| {
            if let Some(port) = line.strip_prefix("oa: ssh -p ").and_then(|r| r.strip_suffix(" root@127.0.0.1")) {
                let port: u16 = port.parse().unwrap_or_else(|_| panic!("bad port in `{line}`"));
                let deadline = Instant::now() + Duration::from_secs(10);
                forwarded = loop {
                    match TcpStream::connect_timeout(&([127, 0, 0, 1], port).into(), Duration::from_secs(1)) {
                        Ok(_) => break Some(port),
                        Err(e) if Instant::now() > deadline => panic!("nothing listens on 127.0.0.1:{port}: {e}"),
                        Err(_) => std::thread::sleep(Duration::from_millis(100)),
                    }
                };
            }
        },
    );
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(0), "oa run failed ({took:?}):\n{err}\nconsole: {}", log.display());
    let port = forwarded.unwrap_or_else(|| panic!("no `oa: ssh -p PORT root@127.0.0.1` line:\n{err}"));
    assert_ne!(port, 0);
    assert!(err.contains("all 7 step(s) passed"), "{err}");
    let head = std::fs::read(&blank).expect("reading the drive back");
    assert_eq!(head.len() as u64, SECTORS * 512, "the drive keeps its size");
    assert!(head.starts_with(b"oa-run-wrote-this\n"), "the guest's write is in the file");
    let console = std::fs::read_to_string(&log).expect("the --log file");
    assert!(console.contains(&sectors) && console.contains("WROTE=42"), "the log holds the console");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_step_not_met_exits_2_naming_it_within_its_deadline() {
    let tiny = built("tiny");
    let (o, took) = oa_run(
        &tiny,
        &[
            "--timeout",
            "120",
            "--step-timeout",
            "3",
            "--expect",
            "hello from oa",
            "--send",
            "echo checked",
            "--expect",
            "no such line on the console",
        ],
    );
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(
        err.contains("step 3/3 (--expect \"no such line on the console\") failed: not on the console within 3s"),
        "the failed step is named:\n{err}"
    );
    let tail = err
        .split("--- last 20 console lines ---\n")
        .nth(1)
        .expect("the console's last lines")
        .split("\n---")
        .next()
        .unwrap();
    let lines = tail.lines().count();
    assert!((1..=20).contains(&lines), "{lines} lines:\n{tail}");
    assert!(tail.contains("checked"), "the tail is the console's end:\n{tail}");
    // The failing step waited its 3 s, not the boot's 120 s.
    let after_ready = took.as_secs_f64() - ready_after(&err);
    assert!((3.0..15.0).contains(&after_ready), "{after_ready:.1}s from ready to the end:\n{err}");
}

#[test]
fn bad_options_are_refused_before_anything_boots() {
    let tiny = built("tiny");
    let missing = workspace().join("target/qemu-tests/no-such-drive.raw");
    let (o, took) = oa_run(&tiny, &["--drive", missing.to_str().unwrap(), "--expect", "x"]);
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(err.contains(&format!("--drive {}: no such file", missing.display())), "{err}");
    let (o, _) = oa_run(&tiny, &["--net", "tap,ifname=tap0"]);
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(2), "clap's usage error: {err}");
    assert!(err.contains("`tap` is not supported"), "{err}");
    assert!(took < Duration::from_secs(10), "no boot was started: {took:?}");
}

#[test]
fn qemu_exiting_during_a_step_exits_1_naming_it() {
    let tiny = built("tiny");
    let (o, took) = oa_run(
        &tiny,
        &[
            "--timeout",
            "120",
            "--step-timeout",
            "60",
            "--expect",
            "hello from oa",
            "--send",
            "poweroff",
            "--expect",
            "never printed",
        ],
    );
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(err.contains("step 3/3 (--expect \"never printed\") failed: QEMU exited ("), "{err}");
    // Ended by QEMU's exit, not by the step's 60 s deadline.
    let after_ready = took.as_secs_f64() - ready_after(&err);
    assert!(after_ready < 40.0, "{after_ready:.1}s from ready to the end:\n{err}");
}
