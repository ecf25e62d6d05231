//! `make bench`: the walking skeleton's figures, measured in one run on this machine.
//!
//! (a) QEMU start -> ready line for tiny, (b) the same kernel with a busybox-only initramfs that
//! prints the line at once (the floor), and their ratio (oa-init's overhead); (c) a cold
//! `oa build` of tiny (`--no-cache`: every stage redone, downloads excluded) against a second
//! build with nothing changed.

use oa_builder::apt::PackageCache;
use oa_builder::build::{default_cache_root, read_manifest};
use oa_builder::initramfs::{Archive, Member, Source};
use oa_builder::qemu::{detect_accel, run_until_ready, Outcome, Spec};
use oa_qemu_tests::{oa_bin, workspace};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

const RUNS: usize = 3;

fn main() {
    let ws = workspace();
    let out = ws.join("target/bench/tiny");

    // (c) builds first: they also produce the output booted below.
    let t = Instant::now();
    oa_build(&ws, &out, true);
    let cold = t.elapsed();
    let t = Instant::now();
    oa_build(&ws, &out, false);
    let warm = t.elapsed();

    let m = read_manifest(&out).expect("manifest");
    let accel = detect_accel(&m.arch);
    let spec = Spec::from_output(&out, &m, accel);

    // (b) the baseline initramfs: busybox only, /init prints the ready line at once.
    let baseline = ws.join("target/bench/baseline-initramfs.img");
    make_baseline(&baseline);
    let mut base_spec = spec.clone();
    base_spec.initrd = baseline;

    let mut ours = Vec::new();
    let mut floor = Vec::new();
    for i in 0..RUNS {
        floor.push(boot(&base_spec, &format!("baseline run {}", i + 1)));
        ours.push(boot(&spec, &format!("tiny run {}", i + 1)));
    }
    let (o, f) = (median(&mut ours), median(&mut floor));
    println!();
    println!("oa bench ({accel:?}, median of {RUNS} boots each)");
    println!("  boot to ready, tiny (oa-init)        {:>7.2} s", o.as_secs_f64());
    println!("  boot to ready, busybox-only baseline {:>7.2} s", f.as_secs_f64());
    println!("  ratio (goal <= 1.15)                 {:>7.3}", o.as_secs_f64() / f.as_secs_f64());
    println!("  oa build tiny, cold (--no-cache)     {:>7.2} s", cold.as_secs_f64());
    println!("  oa build tiny, nothing changed       {:>7.2} s", warm.as_secs_f64());
    println!("  warm / cold (goal < 0.10)            {:>7.3}", warm.as_secs_f64() / cold.as_secs_f64());
}

fn oa_build(ws: &Path, out: &Path, no_cache: bool) {
    let mut c = Command::new(oa_bin());
    c.current_dir(ws).args(["build", "tiny", "--out"]).arg(out);
    if no_cache {
        c.arg("--no-cache");
    }
    let o = c.output().expect("running oa build");
    assert!(o.status.success(), "oa build failed:\n{}", String::from_utf8_lossy(&o.stderr));
}

fn boot(spec: &Spec, what: &str) -> Duration {
    match run_until_ready(spec, Duration::from_secs(120), false, None).expect("booting") {
        Outcome::Ready(d, _) => {
            eprintln!("  {what}: ready after {:.2} s", d.as_secs_f64());
            d
        }
        other => panic!("{what}: did not reach the ready line: {other:?}"),
    }
}

fn median(v: &mut [Duration]) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn make_baseline(path: &Path) {
    let cache = PackageCache::new(&default_cache_root());
    let (deb, _) = cache.fetch("busybox-static", "amd64").expect("busybox-static package");
    let tmp = tempdir();
    oa_builder::deb::extract(&deb, &tmp, &|p| p == Path::new("bin/busybox")).expect("unpacking busybox");
    let mut a = Archive::new();
    a.add_file("bin/busybox", 0o755, Source::Path(tmp.join("bin/busybox")));
    a.add("dev/console", Member::CharDev { mode: 0o600, major: 5, minor: 1 });
    let script = format!("#!/bin/busybox sh\n/bin/busybox echo \"{} host=baseline\"\n/bin/busybox poweroff -f\n", oa_contract::READY_LINE);
    a.add_file("init", 0o755, Source::Bytes(script.into_bytes()));
    a.write_zstd(path).expect("writing baseline initramfs");
    let _ = std::fs::remove_dir_all(&tmp);
}

fn tempdir() -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("oa-bench-{}", std::process::id()));
    std::fs::create_dir_all(&d).expect("temp dir");
    d
}
