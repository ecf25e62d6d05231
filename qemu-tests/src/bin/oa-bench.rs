//! `make bench`: the walking skeleton's figures, measured in one run on this machine.
//!
//! (a) QEMU start -> ready line for tiny, (b) the same kernel with a busybox-only initramfs that
//! prints the line at once (the floor), and their ratio (oa-init's overhead); (c) a cold
//! `oa build` of tiny (`--no-cache`: every stage redone, downloads excluded) against a second
//! build with nothing changed. (d) the disk image of tiny: the time to write it (GPT, FAT,
//! boot loaders, root partition, block map) and its size against the sum of the artifacts in
//! it, and boots of it under SeaBIOS and OVMF. (e) driver classes: tiny's initramfs and boot
//! with the default classes against `[kernel] drivers = []` (`OA_BENCH_ONLY=drivers`, skipped
//! with `OA_BENCH_SKIP_DRIVERS`). (f) the hybrid ISO of tiny-iso: its stage against the image
//! stage, boots from it as a CD against disk.img, and copy-to-RAM (`OA_BENCH_ONLY=iso`).
//! (g) Secure Boot (`OA_BENCH_ONLY=secureboot`): tiny's disk.img as a signed UKI with a verity
//! root booted with Secure Boot on against the same image unsigned with it off, and what the
//! signing stages (verity, uki) add to a build.

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
    // `OA_BENCH_ONLY=persist make bench`: only the persistence figures (docs/persistence.md).
    if std::env::var("OA_BENCH_ONLY").as_deref() == Ok("persist") {
        bench_persistence(&ws, None);
        return;
    }
    // `OA_BENCH_ONLY=debian make bench`: only the debian-ssh figures (docs/bases.md).
    if std::env::var("OA_BENCH_ONLY").as_deref() == Ok("debian") {
        bench_debian_ssh(&ws);
        return;
    }
    // `OA_BENCH_ONLY=iso make bench`: only the ISO and copy-to-RAM figures (issue 16).
    if std::env::var("OA_BENCH_ONLY").as_deref() == Ok("iso") {
        bench_iso(&ws);
        return;
    }
    // `OA_BENCH_ONLY=lab make bench`: only the oa lab figures (issue 17).
    if std::env::var("OA_BENCH_ONLY").as_deref() == Ok("lab") {
        bench_lab(&ws);
        return;
    }
    // `OA_BENCH_ONLY=secureboot make bench`: only the Secure Boot figures (issue 13).
    if std::env::var("OA_BENCH_ONLY").as_deref() == Ok("secureboot") {
        bench_secure_boot(&ws);
        return;
    }
    // `OA_BENCH_ONLY=drivers make bench`: only the driver-class figures (issue 12).
    if std::env::var("OA_BENCH_ONLY").as_deref() == Ok("drivers") {
        bench_drivers(&ws);
        return;
    }
    let out = ws.join("target/bench/tiny");

    // (c) builds first: they also produce the output booted below.
    let t = Instant::now();
    oa_build(&ws, &out, true);
    let cold = t.elapsed();
    let t = Instant::now();
    oa_build(&ws, &out, false);
    let warm = t.elapsed();

    let m = read_manifest(&out).expect("manifest");
    let accel = detect_accel(m.arch);
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

    bench_disk_image(&out, &m, o);
    bench_persistence(&ws, Some(o));

    if std::env::var_os("OA_BENCH_SKIP_DRIVERS").is_none() {
        bench_drivers(&ws);
    }
    bench_iso(&ws);
    bench_secure_boot(&ws);
    bench_lab(&ws);

    if std::env::var_os("OA_BENCH_SKIP_DEBIAN").is_none() {
        bench_debian_ssh(&ws);
    }
}

/// debian-ssh (docs/bases.md): cold build (mmdebstrap from the mirror, every stage), warm
/// build (nothing changed), warm rebuild after one overlay file changed, image size against
/// the installed size, and one boot to the ready line (systemd, TCG).
fn bench_debian_ssh(ws: &Path) {
    let dir = ws.join("target/bench/debian-ssh");
    let overlay = dir.join("overlay/etc");
    std::fs::create_dir_all(&overlay).expect("bench folder");
    std::fs::write(overlay.join("oa-bench"), "1\n").expect("overlay file");
    let profile = dir.join("debian-ssh-bench.toml");
    std::fs::write(
        &profile,
        format!(
            "include = [\"{}\"]\nname = \"debian-ssh-bench\"\noverlays = [\"overlay\"]\n",
            ws.join("profiles/debian-ssh.toml").display()
        ),
    )
    .expect("bench profile");
    let out = dir.join("out");
    let run = |no_cache: bool| -> (Duration, String) {
        let mut c = Command::new(oa_bin());
        c.current_dir(ws).arg("build").arg(&profile).arg("--out").arg(&out);
        if no_cache {
            c.arg("--no-cache");
        }
        let t = Instant::now();
        let o = c.output().expect("running oa build");
        let e = String::from_utf8_lossy(&o.stderr).to_string();
        assert!(o.status.success(), "oa build debian-ssh failed:\n{e}");
        (t.elapsed(), e)
    };
    let (cold, cold_log) = run(true);
    let (warm, _) = run(false);
    std::fs::write(overlay.join("oa-bench"), "2\n").expect("overlay file");
    let (overlay_rebuild, log) = run(false);
    let stage = |log: &str, name: &str| {
        log.lines().find(|l| l.trim_start().starts_with(&format!("{name}:"))).unwrap_or("").trim().to_string()
    };
    // "rootfs: 179740 KiB of files packed to 49624 KiB (13.58s)"
    let rootfs_line = stage(&log, "rootfs");
    let nums: Vec<u64> = rootfs_line.split_whitespace().filter_map(|w| w.parse().ok()).collect();
    let m = read_manifest(&out).expect("manifest");
    let mut spec = Spec::from_output(&out, &m, detect_accel(m.arch));
    spec.memory_mib = 1024;
    let booted = boot(&spec, "debian-ssh");
    println!();
    println!("oa bench: debian-ssh (mmdebstrap + systemd + OpenSSH)");
    println!("  oa build, cold (--no-cache, mirror)  {:>7.2} s   [{}]", cold.as_secs_f64(), stage(&cold_log, "base"));
    println!("  oa build, nothing changed            {:>7.2} s", warm.as_secs_f64());
    println!(
        "  oa build, one overlay file changed   {:>7.2} s   [{}]",
        overlay_rebuild.as_secs_f64(),
        stage(&log, "base")
    );
    if nums.len() >= 2 {
        println!("  installed rootfs                     {:>7.1} MiB", nums[0] as f64 / 1024.0);
        println!(
            "  rootfs.squashfs (zstd)               {:>7.1} MiB   ratio {:.3}",
            nums[1] as f64 / 1024.0,
            nums[1] as f64 / nums[0] as f64
        );
    }
    println!("  boot to ready (systemd, 1 GiB)       {:>7.2} s", booted.as_secs_f64());
}

/// (d) tiny's disk image: write time (median of 3, straight from the library so only the image
/// is timed), size and overhead against its artifacts, and one boot each under BIOS and UEFI.
fn bench_disk_image(out: &Path, m: &oa_contract::manifest::Manifest, kernel_boot: Duration) {
    use oa_builder::image::{self, boot::BootFiles, DiskSpec};
    use oa_builder::qemu::{DiskBoot, Firmware, UefiFiles};
    use oa_contract::manifest::artifact;
    use std::os::unix::fs::MetadataExt;
    let files = BootFiles::locate(m.arch).expect("boot loader files (make deps)");
    let cl = image::disk_cmdline(&m.cmdline);
    let f = |n: &str| out.join(n);
    let (kernel, initrd, rootfs) = (f(artifact::KERNEL), f(artifact::INITRAMFS), f(artifact::ROOTFS));
    let verity = oa_contract::cmdline::BootArgs::parse(&m.cmdline.join(" ")).ok().and_then(|a| a.verity);
    let spec = DiskSpec {
        title: &m.profile,
        arch: m.arch,
        kernel: &kernel,
        initrd: &initrd,
        rootfs: &rootfs,
        verity: verity.as_ref(),
        cmdline: &cl,
        persistence_mib: 0,
        esp_mib: None,
        seed: b"bench",
        uefi: oa_builder::image::boot::UefiLoader::SystemdBoot,
    };
    let img = out.join("bench-disk.img");
    let mut times = Vec::new();
    let mut disk = None;
    for _ in 0..3 {
        let t = Instant::now();
        let d = image::write_disk(&spec, &files, &img).expect("writing the disk image");
        times.push(t.elapsed());
        disk = Some(d);
    }
    let disk = disk.expect("three runs");
    let write = median(&mut times);
    let qcow2 = out.join("bench-disk.qcow2");
    let t = Instant::now();
    image::write_qcow2(&img, &qcow2).expect("qemu-img convert");
    let qcow2_time = t.elapsed();
    let size = std::fs::metadata(&img).expect("image").len();
    let allocated = std::fs::metadata(&img).expect("image").blocks() * 512;
    let qsize = std::fs::metadata(&qcow2).expect("qcow2").len();
    let parts: u64 = [&kernel, &initrd, &rootfs].iter().map(|p| std::fs::metadata(p).expect("artifact").len()).sum();
    let mapped = disk.bmap.mapped_bytes();
    let mib = |b: u64| b as f64 / (1u64 << 20) as f64;
    let accel = detect_accel(m.arch);
    let bios = boot(
        &Spec::from_disk(m.arch, DiskBoot::detect(&img, true).expect("disk"), Firmware::Bios, accel),
        "disk.img, SeaBIOS + syslinux",
    );
    let (fw, _vars) =
        UefiFiles::locate(m.arch).and_then(|u| u.for_run(&std::env::temp_dir())).expect("OVMF (make deps)");
    let uefi = boot(
        &Spec::from_disk(m.arch, DiskBoot::detect(&img, true).expect("disk"), fw, accel),
        "disk.img, OVMF + systemd-boot",
    );
    let _ = std::fs::remove_file(&img);
    let _ = std::fs::remove_file(&qcow2);
    println!();
    println!(
        "oa bench: disk image of tiny (GPT, ESP {} MiB, root {} MiB)",
        disk.layout.partitions[0].size() >> 20,
        disk.layout.partitions[1].size() >> 20
    );
    println!("  write disk.img + bmap (median of 3)  {:>7.2} s", write.as_secs_f64());
    println!("  qemu-img convert to qcow2            {:>7.2} s", qcow2_time.as_secs_f64());
    println!("  kernel + initramfs + rootfs          {:>7.2} MiB", mib(parts));
    println!(
        "  disk.img size                        {:>7.2} MiB   overhead {:.2} MiB ({:.1}%)",
        mib(size),
        mib(size - parts),
        (size - parts) as f64 * 100.0 / parts as f64
    );
    println!("  disk.img allocated (sparse)          {:>7.2} MiB", mib(allocated));
    println!(
        "  bmap: mapped (what oa flash writes)  {:>7.2} MiB   overhead {:.2} MiB",
        mib(mapped),
        mib(mapped.saturating_sub(parts))
    );
    println!("  disk.qcow2                           {:>7.2} MiB", mib(qsize));
    println!(
        "  boot to ready, SeaBIOS + syslinux    {:>7.2} s   ({:.2}x the -kernel boot)",
        bios.as_secs_f64(),
        bios.as_secs_f64() / kernel_boot.as_secs_f64()
    );
    println!(
        "  boot to ready, OVMF + systemd-boot   {:>7.2} s   ({:.2}x the -kernel boot)",
        uefi.as_secs_f64(),
        uefi.as_secs_f64() / kernel_boot.as_secs_f64()
    );
}

/// The stage durations `oa build` printed (`    <stage>: ... (<secs>s)`).
fn stage_secs(build_output: &str, stage: &str) -> Option<f64> {
    let prefix = format!("    {stage}: ");
    let line = build_output.lines().find(|l| l.starts_with(&prefix))?;
    let inner = line.rsplit_once('(')?.1.strip_suffix("s)")?;
    inner.parse().ok()
}

/// The hybrid ISO and copy-to-RAM (issue 16), tiny-iso: (1) the iso stage against the image
/// stage of the same cold builds (median of 3); (2) boots to ready from the ISO as a CD
/// against disk.img, under SeaBIOS and OVMF (median of 3 each, alternating); (3) copy-to-RAM:
/// the kernel booted directly with the ISO as a CD and `oa.copytoram=no` against `=yes`
/// (median of 3 each), and the copy's own duration from its console line.
fn bench_iso(ws: &Path) {
    use oa_builder::qemu::{DiskBoot, Firmware, UefiFiles};
    use oa_contract::cmdline::{Cmdline, RootSpec};
    use oa_contract::manifest::{artifact, iso_volume_id};
    let out = ws.join("target/bench/tiny-iso");
    let (mut iso_t, mut img_t) = (Vec::new(), Vec::new());
    for _ in 0..RUNS {
        let o = Command::new(oa_bin())
            .current_dir(ws)
            .args(["build", "tiny-iso", "--no-cache", "--out"])
            .arg(&out)
            .output()
            .expect("running oa build");
        let text = String::from_utf8_lossy(&o.stdout).to_string() + &String::from_utf8_lossy(&o.stderr);
        assert!(o.status.success(), "oa build tiny-iso failed:\n{text}");
        iso_t.push(stage_secs(&text, "iso").expect("the iso stage's duration in the build output"));
        img_t.push(stage_secs(&text, "image").expect("the image stage's duration in the build output"));
    }
    let med = |v: &mut Vec<f64>| {
        v.sort_by(|a, b| a.total_cmp(b));
        v[v.len() / 2]
    };
    let (iso_s, img_s) = (med(&mut iso_t), med(&mut img_t));
    let m = read_manifest(&out).expect("manifest");
    let accel = detect_accel(m.arch);
    let iso = out.join(artifact::ISO);
    let img = out.join(artifact::DISK_IMAGE);
    let uefi = || UefiFiles::locate(m.arch).and_then(|u| u.for_run(&std::env::temp_dir())).expect("OVMF (make deps)");
    let mut rows = Vec::new();
    for fw_name in ["SeaBIOS", "OVMF"] {
        let (mut cd, mut disk) = (Vec::new(), Vec::new());
        for i in 0..RUNS {
            let (fw, _v1) = if fw_name == "OVMF" {
                let (f, v) = uefi();
                (f, Some(v))
            } else {
                (Firmware::Bios, None)
            };
            let s = Spec::from_disk(m.arch, DiskBoot::cdrom(&iso), fw.clone(), accel);
            cd.push(boot(&s, &format!("{} as a CD, {fw_name}, run {}", artifact::ISO, i + 1)));
            let s = Spec::from_disk(m.arch, DiskBoot::detect(&img, true).expect("disk.img"), fw, accel);
            disk.push(boot(&s, &format!("disk.img, {fw_name}, run {}", i + 1)));
        }
        rows.push((fw_name, median(&mut cd), median(&mut disk)));
    }
    // Copy-to-RAM: the same CD, the kernel and initramfs given directly.
    let (mut no, mut yes, mut copy_ms) = (Vec::new(), Vec::new(), Vec::new());
    let log = ws.join("target/bench/copytoram.log");
    for i in 0..RUNS {
        for (mode, v) in [("no", &mut no), ("yes", &mut yes)] {
            let mut s = Spec::from_output(&out, &m, accel);
            let mut c = Cmdline::from_words(s.append.iter().cloned());
            c.set_root(&RootSpec::Label(iso_volume_id(&m.profile)));
            let mut words = c.into_words();
            words.push(format!("{}={mode}", oa_contract::cmdline::COPYTORAM));
            s.append = words;
            s.root_image = None;
            let cdrom = format!("file={},format=raw,if=none,id=cd0,media=cdrom,readonly=on", iso.display());
            s.extra = vec!["-drive".into(), cdrom, "-device".into(), "ide-cd,drive=cd0,bus=ide.0".into()];
            let d = match run_until_ready(&s, Duration::from_secs(120), false, Some(&log)).expect("booting") {
                Outcome::Ready(d, _) => d,
                other => panic!("copytoram={mode}: did not reach the ready line: {other:?}"),
            };
            eprintln!("  copytoram={mode}, run {}: ready after {:.2} s", i + 1, d.as_secs_f64());
            v.push(d);
            if mode == "yes" {
                let text = std::fs::read_to_string(&log).unwrap_or_default();
                let ms = text
                    .lines()
                    .find_map(|l| {
                        l.split_once("stage copytoram: ")?
                            .1
                            .split_once(" into RAM in ")?
                            .1
                            .split_once(" ms")
                            .map(|x| x.0.to_string())
                    })
                    .and_then(|x| x.parse::<u64>().ok())
                    .expect("the copytoram console line");
                copy_ms.push(Duration::from_millis(ms));
            }
        }
    }
    let (no, yes, copy) = (median(&mut no), median(&mut yes), median(&mut copy_ms));
    let size = |p: &Path| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0) as f64 / (1u64 << 20) as f64;
    println!();
    println!("oa bench: hybrid ISO of tiny-iso ({accel:?}, median of {RUNS})");
    println!("  oa.iso {:.1} MiB, disk.img {:.1} MiB", size(&iso), size(&img));
    println!("  iso stage                            {iso_s:>7.2} s");
    println!("  image stage (disk.img)               {img_s:>7.2} s");
    println!("  iso / image (goal <= 1.2)            {:>7.3}", iso_s / img_s);
    for (fw, cd, disk) in rows {
        println!(
            "  boot to ready, {fw:<8} CD {:>6.2} s, disk.img {:>6.2} s, ratio {:.3} (goal <= 1.2)",
            cd.as_secs_f64(),
            disk.as_secs_f64(),
            cd.as_secs_f64() / disk.as_secs_f64()
        );
    }
    println!("  boot to ready, CD, copytoram=no      {:>7.2} s", no.as_secs_f64());
    println!("  boot to ready, CD, copytoram=yes     {:>7.2} s", yes.as_secs_f64());
    println!(
        "  copy-to-RAM adds                     {:>7.2} s   (the copy itself {} ms; goal < 0.5 s)",
        yes.as_secs_f64() - no.as_secs_f64(),
        copy.as_millis()
    );
}

fn oa_build(ws: &Path, out: &Path, no_cache: bool) {
    oa_build_profile(ws, Path::new("tiny"), out, no_cache);
}

fn oa_build_profile(ws: &Path, profile: &Path, out: &Path, no_cache: bool) {
    let mut c = Command::new(oa_bin());
    c.current_dir(ws).arg("build").arg(profile).arg("--out").arg(out);
    if no_cache {
        c.arg("--no-cache");
    }
    let o = c.output().expect("running oa build");
    assert!(o.status.success(), "oa build {} failed:\n{}", profile.display(), String::from_utf8_lossy(&o.stderr));
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
    let script = format!(
        "#!/bin/busybox sh\n/bin/busybox echo \"{} host=baseline\"\n/bin/busybox poweroff -f\n",
        oa_contract::READY_LINE
    );
    a.add_file("init", 0o755, Source::Bytes(script.into_bytes()));
    a.write_zstd(path).expect("writing baseline initramfs");
    let _ = std::fs::remove_dir_all(&tmp);
}

fn tempdir() -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("oa-bench-{}", std::process::id()));
    std::fs::create_dir_all(&d).expect("temp dir");
    d
}

/// Persistence (issue 3): first boot on a blank disk (LUKS2 format + mkfs.btrfs), then boots
/// that unlock it with the key file, against tiny without persistence (`plain`, measured here
/// when not given).
fn bench_persistence(ws: &Path, plain: Option<Duration>) {
    let dir = ws.join("target/bench");
    let _ = std::fs::create_dir_all(&dir);
    let plain = plain.unwrap_or_else(|| {
        let out = dir.join("tiny");
        oa_build(ws, &out, false);
        let m = read_manifest(&out).expect("manifest");
        let spec = Spec::from_output(&out, &m, detect_accel(m.arch));
        let mut v: Vec<Duration> = (0..RUNS).map(|i| boot(&spec, &format!("tiny run {}", i + 1))).collect();
        median(&mut v)
    });
    // tiny-persist without boot counting: the bench stops QEMU at the ready line, before the
    // boot is marked good, and must not trigger a rollback.
    let profile = dir.join("tiny-persist-bench.toml");
    std::fs::write(&profile, "include = [\"../../profiles/tiny-persist.toml\"]\n[persistence]\nboot_attempts = 0\n")
        .expect("bench profile");
    let out = dir.join("tiny-persist");
    let o = Command::new(oa_bin())
        .current_dir(ws)
        .arg("build")
        .arg(&profile)
        .arg("--out")
        .arg(&out)
        .output()
        .expect("running oa build");
    assert!(o.status.success(), "oa build tiny-persist failed:\n{}", String::from_utf8_lossy(&o.stderr));
    let m = read_manifest(&out).expect("manifest");
    let disk = dir.join("persist-disk.img");
    let _ = std::fs::remove_file(&disk);
    std::fs::File::create(&disk).and_then(|f| f.set_len(320 << 20)).expect("disk file");
    let mut spec = Spec::from_output(&out, &m, detect_accel(m.arch));
    spec.extra.extend(["-drive".to_string(), format!("file={},format=raw,if=virtio", disk.display())]);
    let log = dir.join("persist-first-boot.log");
    let first = match run_until_ready(&spec, Duration::from_secs(180), false, Some(&log)).expect("booting") {
        Outcome::Ready(d, _) => d,
        other => panic!("first persistent boot did not reach ready: {other:?}"),
    };
    let console = std::fs::read_to_string(&log).unwrap_or_default();
    let ms_of = |pat: &str| -> f64 {
        console
            .lines()
            .find(|l| l.contains(pat))
            .and_then(|l| l.rsplit(" in ").next())
            .and_then(|t| t.split_whitespace().next())
            .and_then(|n| n.parse::<f64>().ok())
            .unwrap_or(0.0)
            / 1000.0
    };
    let (luks, mkfs) = (ms_of("stage persist: formatted"), ms_of("stage persist: made btrfs"));
    let mut unlocked = Vec::new();
    let log2 = dir.join("persist-unlock-boot.log");
    for i in 0..RUNS {
        let t = match run_until_ready(&spec, Duration::from_secs(180), false, Some(&log2)).expect("booting") {
            Outcome::Ready(d, _) => d,
            other => panic!("persistent boot {} did not reach ready: {other:?}", i + 1),
        };
        eprintln!("  tiny-persist (unlock) run {}: ready after {:.2} s", i + 1, t.as_secs_f64());
        unlocked.push(t);
    }
    let console = std::fs::read_to_string(&log2).unwrap_or_default();
    let unlock_ms = console
        .lines()
        .find(|l| l.contains("stage persist: unlocked"))
        .and_then(|l| l.rsplit(" in ").next())
        .and_then(|t| t.split_whitespace().next())
        .and_then(|n| n.parse::<f64>().ok())
        .unwrap_or(0.0);
    let u = median(&mut unlocked);
    println!();
    println!("oa bench, persistence (key file, pbkdf2 1000 iterations, median of {RUNS})");
    println!("  boot to ready, persistence unlocked  {:>7.2} s", u.as_secs_f64());
    println!("  boot to ready, tiny without          {:>7.2} s", plain.as_secs_f64());
    println!("  difference                           {:>7.2} s", u.as_secs_f64() - plain.as_secs_f64());
    println!("    of which unlock (last run)         {:>7.2} s", unlock_ms / 1000.0);
    println!("  first boot (format) to ready         {:>7.2} s", first.as_secs_f64());
    println!("    LUKS2 format (libcryptsetup)       {:>7.2} s", luks);
    println!("    mkfs.btrfs                         {:>7.2} s", mkfs);
    let _ = std::fs::remove_file(&disk);
}

/// (e) Driver classes (issue 12): tiny with the default classes (storage, usb-storage, virtio,
/// keyboard) against tiny with `[kernel] drivers = []` and only the modules the virtio machine
/// needs, named (`virtio_pci`, `virtio_blk`: tiny's list before driver classes): the
/// initramfs sizes, and boot to ready on the virtio machine (median of 3 each, interleaved),
/// with coldplug's own count and time from the last boot's `stage modules: loaded` line. Then
/// tiny-net's initramfs, which adds the `net` class.
fn bench_drivers(ws: &Path) {
    let dir = ws.join("target/bench");
    std::fs::create_dir_all(&dir).expect("bench folder");
    let with = dir.join("tiny");
    oa_build(ws, &with, false);
    let profile = dir.join("tiny-no-drivers.toml");
    std::fs::write(
        &profile,
        format!(
            "include = [\"{}\"]\nname = \"tiny-no-drivers\"\n[kernel]\ndrivers = []\nmodules = [\"virtio_pci\", \"virtio_blk\"]\n",
            ws.join("profiles/tiny.toml").display()
        ),
    )
    .expect("bench profile");
    let without = dir.join("tiny-no-drivers");
    oa_build_profile(ws, &profile, &without, false);
    let net = dir.join("tiny-net");
    oa_build_profile(ws, Path::new("tiny-net"), &net, false);

    let kib = |out: &Path| {
        let m = read_manifest(out).expect("manifest");
        let a = m.artifact(oa_contract::manifest::artifact::INITRAMFS).expect("initramfs in the manifest");
        std::fs::metadata(out.join(&a.path)).expect("initramfs.img").len() as f64 / 1024.0
    };
    let spec = |out: &Path| {
        let m = read_manifest(out).expect("manifest");
        Spec::from_output(out, &m, detect_accel(m.arch))
    };
    let (s_with, s_without) = (spec(&with), spec(&without));
    let (log_with, log_without) = (dir.join("drivers-default-boot.log"), dir.join("drivers-none-boot.log"));
    let mut t_with = Vec::new();
    let mut t_without = Vec::new();
    for i in 0..RUNS {
        t_without.push(boot_logged(&s_without, &format!("tiny, drivers = [] run {}", i + 1), &log_without));
        t_with.push(boot_logged(&s_with, &format!("tiny, default classes run {}", i + 1), &log_with));
    }
    let (a, b) = (median(&mut t_with), median(&mut t_without));
    let modules_line = |log: &Path| {
        let c = std::fs::read_to_string(log).unwrap_or_default();
        c.lines()
            .find(|l| l.contains("stage modules: loaded "))
            .and_then(|l| l.split("stage modules: ").nth(1))
            .unwrap_or("(no summary line)")
            .trim()
            .to_string()
    };
    // The guest's own clock (last boot): the kernel's uptime when the services started, and
    // stage 1's time from its switch_root line; less noisy than the host's wall clock.
    let guest = |log: &Path| {
        let c = std::fs::read_to_string(log).unwrap_or_default();
        // The number between `start` and `end` on the first line holding both.
        let between = |start: &str, end: &str| {
            c.lines()
                .find_map(|l| {
                    l.split_once(start).and_then(|(_, r)| r.split_once(end)).map(|(n, _)| n.trim().to_string())
                })
                .unwrap_or_else(|| "?".into())
        };
        format!(
            "uptime {} s at services, stage 1 {} ms",
            between("(uptime ", " s)"),
            between("stage2 (", " ms since stage 1")
        )
    };
    let (k_with, k_without, k_net) = (kib(&with), kib(&without), kib(&net));
    println!();
    println!("oa bench: drivers (tiny, virtio machine, median of {RUNS} boots each)");
    println!("  initramfs.img, default classes       {k_with:>7.0} KiB");
    println!("  initramfs.img, drivers = []          {k_without:>7.0} KiB   (default is {:.2}x)", k_with / k_without);
    println!("  initramfs.img, tiny-net (+ net)      {k_net:>7.0} KiB");
    println!("  boot to ready, default classes       {:>7.2} s   [{}]", a.as_secs_f64(), modules_line(&log_with));
    println!("  boot to ready, drivers = []          {:>7.2} s   [{}]", b.as_secs_f64(), modules_line(&log_without));
    println!("  ratio (goal <= 1.05)                 {:>7.3}", a.as_secs_f64() / b.as_secs_f64());
    println!("  guest clock, default classes         {}", guest(&log_with));
    println!("  guest clock, drivers = []            {}", guest(&log_without));
}

/// [`boot`], keeping the console in `log`.
fn boot_logged(spec: &Spec, what: &str, log: &Path) -> Duration {
    match run_until_ready(spec, Duration::from_secs(120), false, Some(log)).expect("booting") {
        Outcome::Ready(d, _) => {
            eprintln!("  {what}: ready after {:.2} s", d.as_secs_f64());
            d
        }
        other => panic!("{what}: did not reach the ready line: {other:?} (console: {})", log.display()),
    }
}

/// `oa lab` of examples/two-networks.toml (issue 17): the whole lab against the sum of its
/// machines' single runs (`--only NAME --jobs 1`, the same checks bar those reaching another
/// machine) divided by the cores the lab uses. Goal: at most 1.3 x.
fn bench_lab(ws: &Path) {
    let env = ws.join("examples/two-networks.toml");
    let loaded = oa_builder::env::load(&env).expect("examples/two-networks.toml");
    let run = |extra: &[&str], tag: &str| -> f64 {
        let o = std::process::Command::new(ws.join("target/release/oa"))
            .current_dir(ws)
            .arg("lab")
            .arg(&env)
            .args(["--accel", "tcg", "--json", "--out"])
            .arg(ws.join("target/qemu-tests"))
            .arg("--dir")
            .arg(ws.join("target/bench/lab").join(tag))
            .args(extra)
            .stderr(std::process::Stdio::inherit())
            .output()
            .expect("running oa lab");
        assert!(o.status.success(), "oa lab {tag} failed ({})", o.status);
        let j: serde_json::Value = serde_json::from_slice(&o.stdout).expect("oa lab --json");
        j["machines_seconds"].as_f64().expect("machines_seconds")
    };
    let mut single = Vec::new();
    for m in &loaded.machines {
        let t = run(&["--only", &m.name, "--jobs", "1"], &m.name);
        single.push((m.name.clone(), t));
    }
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get()).min(loaded.machines.len());
    let whole = run(&[], "whole");
    let sum: f64 = single.iter().map(|(_, t)| t).sum();
    println!();
    println!("oa lab examples/two-networks.toml (TCG, {cores} machines at once)");
    for (n, t) in &single {
        println!("  {n:<28} alone {t:>7.1} s");
    }
    println!("  sum of single runs           {sum:>7.1} s");
    println!("  whole lab                    {whole:>7.1} s");
    println!("  lab / (sum / {cores}) (goal <= 1.30) {:>7.3}", whole / (sum / cores as f64));
}

/// Secure Boot (issue 13). Two profiles on tiny with disk.img: `[secure_boot] mode = "uki"`
/// signed with Debian's snakeoil key (verity on, its default) and the same unsigned. (1) Boot
/// to ready under the same firmware (OVMF's Secure Boot build, SMM): the signed image with the
/// snakeoil key enrolled (Secure Boot on), the unsigned one with blank variables (Secure Boot
/// off), median of 3 each, alternating. (2) What signing costs a build: the verity and uki
/// stages against the whole build, both `--no-cache` (median of 3), and a warm build (nothing
/// changed) signed against unsigned.
fn bench_secure_boot(ws: &Path) {
    use oa_builder::qemu::{DiskBoot, SecureVars, UefiFiles, SECURE_BOOT_ARGS};
    use oa_contract::manifest::artifact;
    let dir = ws.join("target/bench/secureboot");
    std::fs::create_dir_all(&dir).expect("bench folder");
    // The snakeoil key, decrypted (passphrase `snakeoil`; sbsign would prompt).
    let key = dir.join("snakeoil.key");
    if !key.is_file() {
        let st = Command::new("openssl")
            .args(["pkey", "-passin", "pass:snakeoil", "-in", "/usr/share/ovmf/PkKek-1-snakeoil.key", "-out"])
            .arg(&key)
            .status()
            .expect("openssl");
        assert!(st.success(), "decrypting the snakeoil key failed");
    }
    let tiny = ws.join("profiles/tiny.toml");
    let profile = |name: &str, extra: &str| {
        let f = dir.join(format!("{name}.toml"));
        let text = format!("include = [{:?}]\n[image]\ndisk = true\n{extra}", tiny.display().to_string());
        std::fs::write(&f, text).expect("writing a bench profile");
        f
    };
    let signed = profile(
        "tiny-signed",
        &format!(
            "[secure_boot]\nmode = \"uki\"\nkey = {:?}\ncert = \"/usr/share/ovmf/PkKek-1-snakeoil.pem\"\n",
            key.display().to_string()
        ),
    );
    let plain = profile("tiny-unsigned", "");
    let build = |p: &Path, out: &Path, no_cache: bool| -> (f64, String) {
        let mut c = Command::new(oa_bin());
        c.current_dir(ws).arg("build").arg(p).arg("--out").arg(out);
        if no_cache {
            c.arg("--no-cache");
        }
        let t = Instant::now();
        let o = c.output().expect("running oa build");
        let secs = t.elapsed().as_secs_f64();
        let text = String::from_utf8_lossy(&o.stdout).to_string() + &String::from_utf8_lossy(&o.stderr);
        assert!(o.status.success(), "oa build {} failed:\n{text}", p.display());
        (secs, text)
    };
    let (out_s, out_u) = (dir.join("out-signed"), dir.join("out-unsigned"));
    let med = |v: &mut Vec<f64>| {
        v.sort_by(|a, b| a.total_cmp(b));
        v[v.len() / 2]
    };
    let (mut total, mut signing) = (Vec::new(), Vec::new());
    for _ in 0..RUNS {
        let (secs, text) = build(&signed, &out_s, true);
        let stage = |s: &str| stage_secs(&text, s).unwrap_or_else(|| panic!("the {s} stage's duration in:\n{text}"));
        total.push(secs);
        signing.push(stage("verity") + stage("uki"));
    }
    build(&plain, &out_u, false);
    let (mut warm_s, mut warm_u, mut warm_sign) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..RUNS {
        let (secs, text) = build(&signed, &out_s, false);
        let stage = |s: &str| stage_secs(&text, s).unwrap_or_else(|| panic!("the {s} stage's duration in:\n{text}"));
        warm_s.push(secs);
        warm_sign.push(stage("verity") + stage("uki"));
        warm_u.push(build(&plain, &out_u, false).0);
    }
    let (total, signing, warm_s, warm_u) = (med(&mut total), med(&mut signing), med(&mut warm_s), med(&mut warm_u));
    let warm_sign = med(&mut warm_sign);

    let m = read_manifest(&out_s).expect("manifest");
    let accel = detect_accel(m.arch);
    let run_dir = std::env::temp_dir();
    let boot_with = |img: &Path, files: UefiFiles, what: &str| {
        let (fw, _vars) = files.for_run(&run_dir).expect("OVMF variables");
        let mut spec = Spec::from_disk(m.arch, DiskBoot::detect(img, true).expect("disk image"), fw, accel);
        spec.extra.extend(SECURE_BOOT_ARGS.map(String::from));
        boot(&spec, what)
    };
    let (mut on, mut off) = (Vec::new(), Vec::new());
    for i in 0..RUNS {
        let sb = UefiFiles::secure(SecureVars::Snakeoil).expect("OVMF Secure Boot build (make deps)");
        on.push(boot_with(&out_s.join(artifact::DISK_IMAGE), sb.clone(), &format!("signed + verity, run {}", i + 1)));
        let blank = UefiFiles { vars_template: "/usr/share/OVMF/OVMF_VARS_4M.fd".into(), ..sb };
        off.push(boot_with(&out_u.join(artifact::DISK_IMAGE), blank, &format!("unsigned, run {}", i + 1)));
    }
    let (on, off) = (median(&mut on), median(&mut off));
    println!();
    println!("oa bench: Secure Boot, tiny disk.img ({accel:?}, OVMF secboot build, median of {RUNS})");
    println!("  boot to ready, signed UKI + verity (SB on)  {:>7.2} s", on.as_secs_f64());
    println!("  boot to ready, unsigned (SB off)            {:>7.2} s", off.as_secs_f64());
    println!("  ratio (goal <= 1.10)                        {:>7.3}", on.as_secs_f64() / off.as_secs_f64());
    println!("  oa build, signed, --no-cache                {:>7.2} s", total);
    println!("  of it the verity + uki stages               {:>7.2} s", signing);
    println!("  signing / whole build                       {:>7.3}", signing / total);
    println!("  oa build, nothing changed: signed           {:>7.2} s", warm_s);
    println!("  oa build, nothing changed: unsigned         {:>7.2} s", warm_u);
    println!("  of it the verity + uki stages (cached)      {:>7.2} s", warm_sign);
    println!("  signing stages / warm build (goal <= 0.10)  {:>7.3}", warm_sign / warm_s);
    // The rest of the difference is the output stage copying a larger disk.img (its ESP
    // holds the UKI and signed systemd-boot besides syslinux's kernel and initramfs).
    println!("  warm signed / warm unsigned                 {:>7.3}", warm_s / warm_u);
}
