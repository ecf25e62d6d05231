//! One function per `oa` subcommand. Each returns the process exit code, or an error the
//! caller prints for people.

use crate::build::{self, Options};
use crate::cli::{
    AccelArg, BuildArgs, CommonBuild, FirmwareArg, FlashArgs, GraphArgs, GraphFormat, InfoArgs, RunArgs, UserNet,
};
use crate::console_script::{self, ConsoleIo, Ending};
use crate::error::{Error, Result};
use crate::profile;
use crate::qemu::{self, Accel, Outcome};
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The build options of the common build flags (`oa build`, `oa run`, `oa lab`, `oa deploy`).
pub(crate) fn options(common: &CommonBuild, out: Option<PathBuf>) -> Options {
    Options {
        out,
        cache_root: common.cache.clone().unwrap_or_else(build::default_cache_root),
        no_cache: common.no_cache,
        refresh: common.refresh,
        init_bin: common.init.clone(),
        progress: true,
    }
}

pub fn build(a: BuildArgs) -> Result<i32> {
    let resolved = profile::load(&a.profile)?;
    let report = build::build(&resolved, &options(&a.common, a.out))?;
    if a.json {
        let stages: Vec<_> = report
            .stages
            .iter()
            .map(|s| serde_json::json!({"stage": s.name, "seconds": s.duration.as_secs_f64(), "cached": s.cached, "detail": s.detail}))
            .collect();
        let j = serde_json::json!({"out": report.out, "seconds": report.total.as_secs_f64(), "stages": stages, "manifest": report.manifest});
        println!("{}", serde_json::to_string_pretty(&j).unwrap_or_default());
    }
    eprintln!("built {} in {:.1}s -> {}", report.manifest.profile, report.total.as_secs_f64(), report.out.display());
    Ok(0)
}

pub fn run(a: RunArgs) -> Result<i32> {
    // The options are checked before anything is built or booted.
    let drives = extra_drives(&a.drives)?;
    let (net, ssh) = network(a.net.as_ref(), a.ssh)?;
    let target = RunTarget::resolve(&a)?;
    let arch = target.manifest.as_ref().map_or(oa_contract::Arch::X86_64, |m| m.arch);
    let accel = match a.accel {
        AccelArg::Auto => qemu::detect_accel(arch),
        AccelArg::Kvm => Accel::Kvm,
        AccelArg::Tcg => Accel::Tcg,
    };
    // UEFI: this run's copy of the variable store lives until QEMU is done.
    let mut _vars = None;
    let firmware = match a.firmware {
        FirmwareArg::Bios => qemu::Firmware::Bios,
        FirmwareArg::Uefi => {
            let (fw, guard) = qemu::UefiFiles::locate(arch)?.for_run(&std::env::temp_dir())?;
            _vars = Some(guard);
            fw
        }
    };
    let mut spec = match (&target.manifest, target.image_file || a.disk || a.iso) {
        (_, true) if a.iso => {
            if !a.append.is_empty() {
                return Err(Error::Usage(
                    "--append works when oa loads the kernel itself; an ISO boot takes its command line from the ISO's boot loaders (isolinux.cfg, loader/entries/oa.conf): rebuild with the words in [kernel] cmdline, or boot without --iso".into(),
                ));
            }
            let path = target.iso_image(&a)?;
            qemu::Spec::from_disk(arch, qemu::DiskBoot::cdrom(&path), firmware, accel)
        }
        (_, true) => {
            if !a.append.is_empty() {
                return Err(Error::Usage(
                    "--append works when oa loads the kernel itself; a disk boot takes its command line from the image's boot loader (syslinux.cfg, loader/entries/oa.conf): rebuild with the words in [kernel] cmdline, or boot without --disk".into(),
                ));
            }
            // The built image stays as built (snapshot); an image file named directly is the
            // VM's disk and keeps what the guest writes.
            let path = target.disk_image(&a)?;
            qemu::Spec::from_disk(arch, qemu::DiskBoot::detect(&path, !target.image_file)?, firmware, accel)
        }
        (Some(m), false) => {
            let mut s = qemu::Spec::from_output(&target.dir, m, accel);
            s.firmware = firmware;
            s.append.extend(a.append.iter().flat_map(|s| s.split_whitespace().map(str::to_string)));
            s
        }
        (None, false) => return Err(Error::Output { path: target.dir.clone(), reason: "no manifest.json".into() }),
    };
    if let Some(mem) = a.memory.or(target.memory) {
        spec.memory_mib = mem;
    }
    spec.drives = drives;
    spec.net = net;
    let ssh_line = ssh.map(|p| format!("ssh -p {p} root@127.0.0.1"));
    let interactive = !a.until_ready
        && a.script.steps.is_empty()
        && std::io::stdin().is_terminal()
        && std::io::stdout().is_terminal();
    if interactive {
        let st = qemu::run_interactive(&spec, ssh_line.as_deref())?;
        return Ok(st.code().unwrap_or(1));
    }
    watch(&spec, &a, &target.dir, accel, ssh_line.as_deref())
}

/// `--drive FILE...`: each an existing disk image file, raw or qcow2 by its content, writable.
fn extra_drives(files: &[PathBuf]) -> Result<Vec<qemu::DiskBoot>> {
    files
        .iter()
        .map(|f| {
            if !f.exists() {
                return Err(Error::Usage(format!(
                    "--drive {0}: no such file; make a blank disk with `truncate -s 1G {0}` (raw) or `qemu-img create -f qcow2 {0} 1G`",
                    f.display()
                )));
            }
            if !f.is_file() {
                return Err(Error::Usage(format!(
                    "--drive {}: not a regular file; give a disk image file (raw or qcow2)",
                    f.display()
                )));
            }
            qemu::DiskBoot::detect(f, false)
        })
        .collect()
}

/// `--net` and `--ssh`: the `-netdev user` options (None: no network card) and the host port
/// forwarded to the guest's port 22.
fn network(net: Option<&UserNet>, ssh: Option<u16>) -> Result<(Option<String>, Option<u16>)> {
    let options = net.map(|n| n.options.clone());
    let Some(want) = ssh else { return Ok((options, None)) };
    let port = ssh_port(want)?;
    let forward = format!("hostfwd=tcp:127.0.0.1:{port}-:22");
    let options = match options {
        Some(o) if !o.is_empty() => format!("{o},{forward}"),
        _ => forward,
    };
    Ok((Some(options), Some(port)))
}

/// The port for `--ssh[=PORT]` (0: a free one), checked free on 127.0.0.1. QEMU binds it a
/// moment later; if something takes it in between, QEMU says so and exits (exit code 1).
fn ssh_port(want: u16) -> Result<u16> {
    let listener = std::net::TcpListener::bind(("127.0.0.1", want)).map_err(|e| {
        Error::Usage(if want == 0 {
            format!("--ssh: no free port on 127.0.0.1: {e}")
        } else {
            format!("--ssh={want}: 127.0.0.1:{want} cannot be used ({e}); pick another port, or give --ssh alone for a free one")
        })
    })?;
    let port = listener.local_addr().map_err(|e| Error::Usage(format!("--ssh: {e}")))?.port();
    Ok(port)
}

/// What `oa run TARGET` boots: a disk image file, an output folder, or a profile built first.
struct RunTarget {
    /// The output folder (for a disk image file: the folder holding it).
    dir: PathBuf,
    /// TARGET is a disk image file (e.g. one written by `oa flash --allow-file`).
    image_file: bool,
    /// The profile's guest memory, when TARGET was a profile.
    memory: Option<u32>,
    /// A bare image file may have no manifest beside it: disk images are x86_64.
    manifest: Option<oa_contract::manifest::Manifest>,
}

impl RunTarget {
    fn resolve(a: &RunArgs) -> Result<RunTarget> {
        let image_file = a.target.is_file() && qemu::is_disk_image(&a.target);
        let (dir, memory) = if image_file {
            (a.target.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new(".")).to_path_buf(), None)
        } else if a.target.join(oa_contract::manifest::FILE_NAME).is_file() {
            (a.target.clone(), None)
        } else {
            let resolved = profile::load(&a.target)?;
            let report = build::build(&resolved, &options(&a.common, a.out.clone()))?;
            (report.out, Some(resolved.profile.qemu.memory_mib))
        };
        let manifest = if image_file { build::read_manifest(&dir).ok() } else { Some(build::read_manifest(&dir)?) };
        Ok(RunTarget { dir, image_file, memory, manifest })
    }

    /// The ISO to boot as a CD-ROM: TARGET itself, or the output's oa.iso.
    fn iso_image(&self, a: &RunArgs) -> Result<PathBuf> {
        if self.image_file {
            return Ok(a.target.clone());
        }
        let iso =
            self.manifest.as_ref().and_then(|m| m.artifact(oa_contract::manifest::artifact::ISO)).ok_or_else(|| {
                Error::Output {
                    path: self.dir.clone(),
                    reason: "has no oa.iso; add `iso = true` under [image] in the profile and build again".into(),
                }
            })?;
        Ok(self.dir.join(&iso.path))
    }

    /// The disk image to boot: TARGET itself, or the output's disk.img.
    fn disk_image(&self, a: &RunArgs) -> Result<PathBuf> {
        if self.image_file {
            return Ok(a.target.clone());
        }
        let disk =
            self.manifest.as_ref().and_then(|m| m.artifact(oa_contract::manifest::artifact::DISK_IMAGE)).ok_or_else(
                || Error::Output {
                    path: self.dir.clone(),
                    reason: "has no disk.img; add `[image] disk = true` to the profile and build again".into(),
                },
            )?;
        Ok(self.dir.join(&disk.path))
    }
}

/// Boot `spec` without a terminal until the ready line, a FATAL line, QEMU's exit or the
/// timeout, then play the `--expect`/`--send` script if there is one. The exit code: 0 ready
/// (and every step passed), 1 the boot failed or QEMU exited first, 2 a deadline passed.
fn watch(spec: &qemu::Spec, a: &RunArgs, dir: &Path, accel: Accel, ssh: Option<&str>) -> Result<i32> {
    let what = match &spec.disk {
        Some(d) => format!(
            "{} {} ({}, {})",
            if d.cdrom { "CD-ROM" } else { "disk image" },
            d.path.display(),
            d.format,
            if matches!(spec.firmware, qemu::Firmware::Uefi { .. }) { "UEFI" } else { "BIOS" }
        ),
        None => dir.display().to_string(),
    };
    let steps = &a.script.steps;
    let per_step = Duration::from_secs(a.step_timeout.unwrap_or(a.timeout));
    let script = if steps.is_empty() {
        String::new()
    } else {
        format!(", then {} --expect/--send step(s), each --expect within {}s", steps.len(), per_step.as_secs())
    };
    eprintln!(
        "oa: booting {what} in QEMU ({accel:?}), waiting up to {}s for `{}`{script}",
        a.timeout,
        oa_contract::READY_LINE
    );
    let mut console = qemu::Console::start(spec, true)?;
    if let Some(ssh) = ssh {
        eprintln!("oa: {ssh}");
    }
    let boot = console.wait_ready(Duration::from_secs(a.timeout))?;
    let reached = matches!(boot, Outcome::Ready(..));
    let (code, report) = match boot {
        Outcome::Ready(t, _) if steps.is_empty() => (0, format!("ready after {:.2}s", t.as_secs_f64())),
        Outcome::Ready(t, _) => {
            eprintln!("\noa: ready after {:.2}s; running the {} step(s)", t.as_secs_f64(), steps.len());
            let ending = console_script::run(steps, &mut console, per_step);
            let at = |i: usize| format!("step {}/{} ({})", i + 1, steps.len(), steps[i]);
            match ending {
                Ending::Passed(d) => {
                    (0, format!("all {} step(s) passed, {:.1}s after ready", steps.len(), d.as_secs_f64()))
                }
                Ending::TimedOut { step, waited } => {
                    (2, format!("{} failed: not on the console within {:.0}s", at(step), waited.as_secs_f64()))
                }
                Ending::Closed { step } => {
                    let st = console.exit_status().map_or("status unknown".to_string(), |s| s.to_string());
                    (1, format!("{} failed: QEMU exited ({st}) first", at(step)))
                }
            }
        }
        Outcome::Fatal(l) => (1, format!("boot failed: {l}")),
        Outcome::Exited(st) => (1, format!("QEMU exited ({st}) before the ready line")),
        Outcome::TimedOut(t) => (2, format!("no ready line after {:.0}s; QEMU stopped", t.as_secs_f64())),
    };
    console.finish(a.log.as_deref());
    if code != 0 && !steps.is_empty() {
        let before = if reached { "" } else { " (before the script's first step)" };
        eprintln!(
            "\noa: {report}{before}\n--- last 20 console lines ---\n{}\n---",
            console_script::tail(console.text(), 20)
        );
    } else {
        eprintln!("\noa: {report}");
    }
    Ok(code)
}

/// `oa flash`: see [`crate::flash`].
pub fn flash(a: FlashArgs) -> Result<i32> {
    let opts = crate::flash::Options {
        image: a.image,
        device: a.device,
        yes: a.yes,
        bmap: a.bmap,
        no_bmap: a.no_bmap,
        allow_file: a.allow_file,
        progress: true,
    };
    if a.dry_run {
        println!("{}", crate::flash::plan(&opts)?);
        eprintln!("oa flash: dry run, nothing was written");
        return Ok(0);
    }
    let r = crate::flash::flash(&opts)?;
    eprintln!(
        "oa flash: wrote and verified {} on {} in {:.1}s{}",
        crate::image::bmap::human(r.written),
        opts.device.display(),
        r.duration.as_secs_f64(),
        if r.used_bmap { " (block map: unmapped ranges skipped)" } else { "" }
    );
    Ok(0)
}

/// `oa keys init DIR`.
pub fn keys(a: crate::cli::KeysArgs) -> Result<i32> {
    match a.what {
        crate::cli::KeysCmd::Init { dir, owner } => {
            let files = crate::keys::init(&dir, &owner)?;
            eprintln!("==> made a Secure Boot key set in {} ({} files)", dir.display(), files.len());
            for (stem, what) in crate::keys::KEYS {
                eprintln!("    {stem}: {what}");
            }
            eprintln!(
                "    {}, {}: minisign pair, signs manifest.json and oa serve's per-machine configurations",
                crate::keys::MINISIGN_KEY,
                crate::keys::MINISIGN_PUB
            );
            Ok(0)
        }
    }
}

pub fn info(a: InfoArgs) -> Result<i32> {
    let resolved = profile::load(&a.profile)?;
    if a.toml {
        print!("{}", resolved.to_toml());
    } else {
        print!("{}", resolved.render_info());
    }
    Ok(0)
}

pub fn graph(a: GraphArgs) -> Result<i32> {
    if crate::env::is_environment(&a.profile) {
        let env = crate::env::load(&a.profile)?;
        let text = match a.format {
            GraphFormat::Dot => crate::env::graph::dot(&env),
            GraphFormat::Mermaid => crate::env::graph::mermaid(&env),
            GraphFormat::Json => crate::env::graph::json(&env) + "\n",
        };
        print!("{text}");
        return Ok(0);
    }
    let resolved = profile::load(&a.profile)?;
    let name = |p: &Path| p.file_name().map(|s| s.to_string_lossy().to_string()).unwrap_or_default();
    // The pipeline as the build runs it (pipeline.rs): never a second, hand-kept copy.
    let graph = crate::pipeline::graph(&resolved.profile);
    let pipeline = graph.edges.clone();
    let top = resolved.files.last().map(|p| name(p)).unwrap_or_default();
    match a.format {
        GraphFormat::Json => {
            let j = serde_json::json!({"profile": resolved.profile.name, "pipeline": graph});
            println!("{}", serde_json::to_string_pretty(&j).unwrap_or_default());
        }
        GraphFormat::Dot => {
            println!("digraph oa {{\n  rankdir=LR;\n  subgraph cluster_includes {{\n    label=\"includes\";");
            for f in &resolved.files {
                println!("    \"{}\" [shape=note];", name(f));
            }
            for (from, to) in &resolved.includes {
                println!("    \"{}\" -> \"{}\" [label=include];", name(from), name(to));
            }
            println!("  }}\n  subgraph cluster_pipeline {{\n    label=\"build pipeline\";");
            for s in &graph.stages {
                println!("    \"{s}\" [shape=box];");
            }
            for (a, b) in pipeline {
                println!("    \"{a}\" -> \"{b}\";");
            }
            println!("  }}\n  \"{top}\" -> \"profile\" [style=dashed];\n}}");
        }
        GraphFormat::Mermaid => {
            println!("flowchart LR");
            println!("  subgraph includes");
            for (i, f) in resolved.files.iter().enumerate() {
                println!("    f{i}[\"{}\"]", name(f));
            }
            let idx = |p: &PathBuf| resolved.files.iter().position(|f| f == p).unwrap_or(0);
            for (from, to) in &resolved.includes {
                println!("    f{} -->|include| f{}", idx(from), idx(to));
            }
            println!("  end\n  subgraph pipeline");
            let id = |s: &str| s.replace(['.', '-', ' ', '/'], "_");
            for (a, b) in pipeline {
                println!("    {}[\"{a}\"] --> {}[\"{b}\"]", id(a), id(b));
            }
            println!("  end");
            if !resolved.files.is_empty() {
                println!("  f{} -.-> profile", resolved.files.len() - 1);
            }
        }
    }
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extra_drives_are_detected_and_a_missing_one_is_named() {
        let d = tempfile::tempdir().unwrap();
        let raw = d.path().join("blank.raw");
        std::fs::write(&raw, vec![0u8; 4096]).unwrap();
        let q = d.path().join("data.qcow2");
        std::fs::write(&q, b"QFI\xfb\0\0\0\x03").unwrap();
        let drives = extra_drives(&[raw.clone(), q.clone()]).unwrap();
        assert_eq!(drives.iter().map(|d| d.format.as_str()).collect::<Vec<_>>(), ["raw", "qcow2"]);
        assert!(drives.iter().all(|d| !d.snapshot && !d.cdrom), "extra drives are writable disks");
        assert_eq!(drives[0].path, raw);
        let missing = d.path().join("nope.raw");
        let e = extra_drives(&[raw, missing.clone()]).unwrap_err().to_string();
        assert!(
            e.contains(&format!("--drive {}: no such file", missing.display())) && e.contains("truncate -s"),
            "{e}"
        );
        let e = extra_drives(&[d.path().to_path_buf()]).unwrap_err().to_string();
        assert!(e.contains("not a regular file"), "{e}");
    }

    #[test]
    fn ssh_implies_user_networking_and_forwards_a_free_port() {
        assert_eq!(network(None, None).unwrap(), (None, None));
        let user = UserNet { options: String::new() };
        assert_eq!(network(Some(&user), None).unwrap(), (Some(String::new()), None));
        let (opts, port) = network(None, Some(0)).unwrap();
        let port = port.unwrap();
        assert_ne!(port, 0);
        assert_eq!(opts.unwrap(), format!("hostfwd=tcp:127.0.0.1:{port}-:22"));
        // The user's options are kept, the forward added.
        let web = UserNet { options: "hostfwd=tcp:127.0.0.1:8080-:80".into() };
        let (opts, port) = network(Some(&web), Some(0)).unwrap();
        assert_eq!(
            opts.unwrap(),
            format!("hostfwd=tcp:127.0.0.1:8080-:80,hostfwd=tcp:127.0.0.1:{}-:22", port.unwrap())
        );
        // A port in use is refused before QEMU starts, naming it.
        let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let p = taken.local_addr().unwrap().port();
        let e = network(None, Some(p)).unwrap_err().to_string();
        assert!(e.contains(&format!("--ssh={p}: 127.0.0.1:{p} cannot be used")), "{e}");
        drop(taken);
    }
}
