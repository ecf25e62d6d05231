//! `oa deploy ENV`: an environment realised on the physical network (docs/environments.md).
//!
//! Plan, then act. Everything that can be refused is refused before anything changes: the
//! `--device` list (each names a known machine that boots from a stick or disk, once), the
//! network `oa serve` runs on and its interface, the outputs (built through the cache or read),
//! each device's flash checks, the machines folder (a file of the same name not written by oa
//! deploy is left alone and stops the deploy). Then:
//! - boot `pxe`: `<dir>/machines/<aa-bb-cc-dd-ee-ff>.toml` (the per-machine override of `oa
//!   serve`, docs/pxe.md: the machine's output, append words, config) and its config copied to
//!   `<aa-bb-cc-dd-ee-ff>.json`, each written atomically (temp file + rename). The files that a
//!   previous deploy of this environment wrote for MACs no longer in it are removed; they are
//!   known by their first line (`# written by oa deploy <env>: ...`), other files are kept.
//! - boot `usb`/`disk` (and `iso`: its `oa.iso`): flashed to the `--device` given for it, by
//!   the code of `oa flash` (checks, confirmation unless --yes, verify).
//! - then `oa serve` in this process for the chosen network, until Ctrl-C.

use crate::cli::DeployArgs;
use crate::env::outputs::Output;
use crate::env::{self, Boot, Env, Machine, Network, ServeMode, Source};
use crate::error::{Error, IoContext, Result};
use oa_contract::manifest::artifact;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The first line of every file oa deploy writes into the machines folder, before `:`.
pub fn marker(env: &str) -> String {
    format!("# written by oa deploy {env}")
}

/// `$XDG_STATE_HOME/oa/deploy/<env>` (`~/.local/state/oa/deploy/<env>`).
pub fn default_dir(env: &str) -> PathBuf {
    let state = std::env::var_os("XDG_STATE_HOME")
        .filter(|s| !s.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/state")))
        .unwrap_or_else(|| PathBuf::from(".local/state"));
    state.join("oa/deploy").join(env)
}

/// `--device MACHINE=DEVICE` checked against the environment: machine name -> device.
pub fn parse_devices(env: &Env, given: &[String]) -> Result<BTreeMap<String, PathBuf>> {
    let mut out: BTreeMap<String, PathBuf> = BTreeMap::new();
    let flashable: Vec<&str> = env
        .machines
        .iter()
        .filter(|m| matches!(m.boot, Boot::Usb | Boot::Disk | Boot::Iso))
        .map(|m| m.name.as_str())
        .collect();
    let list = if flashable.is_empty() { "none".to_string() } else { flashable.join(", ") };
    for g in given {
        let Some((name, dev)) = g.split_once('=').filter(|(n, d)| !n.is_empty() && !d.is_empty()) else {
            return Err(Error::Usage(format!(
                "--device {g:?}: give MACHINE=DEVICE, e.g. --device {}=/dev/sdX",
                flashable.first().copied().unwrap_or("NAME")
            )));
        };
        let Some(m) = env.machine(name) else {
            return Err(Error::Usage(format!(
                "--device {g}: environment `{}` has no machine `{name}`; machines that can be flashed: {list}",
                env.name
            )));
        };
        if !matches!(m.boot, Boot::Usb | Boot::Disk | Boot::Iso) {
            return Err(Error::Usage(format!(
                "--device {g}: machine `{name}` boots `{}`, nothing is flashed for it ({}); machines that can be flashed: {list}",
                m.boot.as_str(),
                if m.boot == Boot::Pxe { "oa serve netboots it" } else { "boot `kernel` is for oa lab only" }
            )));
        }
        if out.contains_key(name) {
            return Err(Error::Usage(format!(
                "--device: machine `{name}` is given twice; give one device per machine"
            )));
        }
        let dev = PathBuf::from(dev);
        if let Some((other, _)) = out.iter().find(|(_, d)| **d == dev) {
            return Err(Error::Usage(format!(
                "--device {g}: {} is already given for machine `{other}`; give each machine its own device",
                dev.display()
            )));
        }
        out.insert(name.to_string(), dev);
    }
    Ok(out)
}

/// The network `oa serve` runs on: `--network`, else the only network with `serve`.
pub fn serve_network<'e>(env: &'e Env, asked: Option<&str>) -> Result<&'e Network> {
    let serving: Vec<&Network> = env.networks.iter().filter(|n| n.serve.is_some()).collect();
    let names = || serving.iter().map(|n| n.name.as_str()).collect::<Vec<_>>().join(", ");
    match asked {
        Some(name) => match env.network(name) {
            None => Err(Error::Usage(format!(
                "--network {name}: environment `{}` has no network `{name}`; networks with `serve`: {}",
                env.name,
                if serving.is_empty() { "none".to_string() } else { names() }
            ))),
            Some(n) if n.serve.is_none() => Err(Error::Usage(format!(
                "--network {name}: network `{name}` has no `serve` setting, so oa serve has no mode for it; set `serve = \"proxy\"` (or \"dhcp\") on it in {}{}",
                env.file.display(),
                if serving.is_empty() { String::new() } else { format!(", or give --network {}", names()) }
            ))),
            Some(n) => Ok(n),
        },
        None => match serving.as_slice() {
            [n] => Ok(n),
            [] => Err(Error::Usage(format!(
                "environment `{}` has machines that boot `pxe` but no network with `serve`; set `serve = \"proxy\"` (or \"dhcp\") on their network in {}, or give --no-serve",
                env.name,
                env.file.display()
            ))),
            _ => Err(Error::Usage(format!(
                "environment `{}` has several networks with `serve` ({}); give --network NAME for the one --interface is on",
                env.name,
                names()
            ))),
        },
    }
}

/// The `oa serve` command line (without `--machines` order surprises: as printed and as run).
pub fn serve_argv(net: &Network, interface: &str, output: &Path, dir: &Path) -> Vec<String> {
    let mode = net.serve.unwrap_or(ServeMode::Proxy);
    let mut a = vec![
        output.display().to_string(),
        "--interface".into(),
        interface.into(),
        "--mode".into(),
        mode.as_str().into(),
        "--machines".into(),
        dir.join("machines").display().to_string(),
    ];
    if mode == ServeMode::Dhcp {
        let (s, e) = net.dhcp_range();
        a.extend([
            "--range".into(),
            format!("{s}-{e}"),
            "--netmask".into(),
            net.netmask().to_string(),
            "--leases".into(),
            dir.join("leases.json").display().to_string(),
        ]);
    }
    a
}

fn shell_quote(s: &str) -> String {
    if !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || "-_./:=,@+".contains(c)) {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', "'\\''"))
    }
}

/// One per-machine file pair of the machines folder.
#[derive(Debug, Clone, PartialEq)]
pub struct MachineFile {
    pub machine: String,
    /// `aa-bb-cc-dd-ee-ff`.
    pub stem: String,
    /// The `.toml` text.
    pub toml: String,
    /// The machine's config file, copied to `<stem>.json`.
    pub config: Option<PathBuf>,
}

/// The override `oa serve --machines` reads for `m`, booting `output`.
pub fn machine_file(env: &str, m: &Machine, output: &Path) -> MachineFile {
    let stem = m.mac_file_stem();
    let s = |v: &str| toml::Value::String(v.to_string()).to_string();
    let mut t = format!("{}: machine {}; rewritten at each deploy\n", marker(env), m.name);
    t.push_str(&format!("output = {}\n", s(&output.display().to_string())));
    t.push_str(&format!("append = [{}]\n", m.append.iter().map(|w| s(w)).collect::<Vec<_>>().join(", ")));
    if m.config.is_some() {
        t.push_str(&format!("config = {}\n", s(&format!("{stem}.json"))));
    }
    MachineFile { machine: m.name.clone(), stem, toml: t, config: m.config.clone() }
}

/// What is in the machines folder now, against what this deploy writes.
#[derive(Debug, Default, PartialEq)]
pub struct Folder {
    /// Files a deploy of this environment wrote, for MACs (or configs) no longer in it.
    pub stale: Vec<PathBuf>,
    /// `*.toml`/`*.json` files not written by oa deploy of this environment, left alone.
    pub foreign: Vec<PathBuf>,
    /// Files this deploy would replace that oa deploy of this environment did not write.
    pub conflicts: Vec<PathBuf>,
}

fn written_by(path: &Path, env: &str) -> bool {
    let Ok(text) = std::fs::read_to_string(path) else { return false };
    let first = text.lines().next().unwrap_or("");
    first.strip_prefix(&marker(env)).is_some_and(|rest| rest.starts_with(':'))
}

/// The `config = "..."` a file of ours names (only the form [`machine_file`] writes).
fn config_of(path: &Path) -> Option<String> {
    let text = std::fs::read_to_string(path).ok()?;
    let v: toml::Table = text.parse().ok()?;
    v.get("config")?.as_str().map(str::to_string)
}

/// Compare the machines folder with `files`.
pub fn survey(machines: &Path, env: &str, files: &[MachineFile]) -> Result<Folder> {
    let mut f = Folder::default();
    let rd = match std::fs::read_dir(machines) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(f),
        Err(e) => return Err(Error::Io { action: "reading", path: machines.into(), source: e }),
    };
    let mut names: Vec<String> =
        rd.filter_map(|e| e.ok()).map(|e| e.file_name().to_string_lossy().into_owned()).collect();
    names.sort();
    let writes: Vec<String> = files
        .iter()
        .flat_map(|m| {
            let mut v = vec![format!("{}.toml", m.stem)];
            if m.config.is_some() {
                v.push(format!("{}.json", m.stem));
            }
            v
        })
        .collect();
    // The JSON files our own (old) TOML files name: ours too.
    let mut ours_json: Vec<String> = Vec::new();
    for n in names.iter().filter(|n| n.ends_with(".toml")) {
        let p = machines.join(n);
        if written_by(&p, env) {
            if let Some(c) = config_of(&p) {
                ours_json.push(c);
            }
        }
    }
    for n in &names {
        let p = machines.join(n);
        let is_toml = n.ends_with(".toml");
        if !(is_toml || n.ends_with(".json")) || !p.is_file() {
            continue;
        }
        let ours = if is_toml { written_by(&p, env) } else { ours_json.contains(n) };
        match (ours, writes.contains(n)) {
            (true, true) => {}
            (true, false) => f.stale.push(p),
            (false, true) => f.conflicts.push(p),
            (false, false) => f.foreign.push(p),
        }
    }
    Ok(f)
}

/// Write `data` to `path` through a temporary file in the same folder and a rename.
fn write_atomic(path: &Path, data: &[u8]) -> Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let tmp = dir.join(format!(
        ".{}.tmp-{}",
        path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default(),
        std::process::id()
    ));
    let r = (|| {
        use std::io::Write;
        let mut f = std::fs::File::create(&tmp).ctx("creating", &tmp)?;
        f.write_all(data).ctx("writing", &tmp)?;
        f.sync_all().ctx("syncing", &tmp)?;
        std::fs::rename(&tmp, path).ctx("renaming into place", path)
    })();
    if r.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    r
}

/// A row of the summary table.
struct Row {
    machine: String,
    boot: &'static str,
    done: String,
}

fn table(rows: &[Row]) -> String {
    let w = rows.iter().map(|r| r.machine.len()).max().unwrap_or(0).max("MACHINE".len());
    let mut s = format!("{:<w$}  {:<6}  RESULT\n", "MACHINE", "BOOT");
    for r in rows {
        s.push_str(&format!("{:<w$}  {:<6}  {}\n", r.machine, r.boot, r.done));
    }
    s
}

/// The outputs for a dry run: output folders read, profiles not built (where their build
/// would go is named).
fn dry_outputs(env: &Env, out_root: Option<&Path>) -> Result<(BTreeMap<String, Output>, BTreeMap<String, PathBuf>)> {
    let mut read = BTreeMap::new();
    let mut to_build = BTreeMap::new();
    for m in &env.machines {
        match &m.source {
            Source::Output(dir) => {
                let o = env::outputs::read(m, dir)?;
                read.insert(m.name.clone(), o);
            }
            Source::Profile(p) => {
                let resolved = crate::profile::load(p)?;
                let name = &resolved.profile.name;
                let dir = out_root.map(|r| r.join(name)).unwrap_or_else(|| PathBuf::from("out").join(name));
                to_build.insert(m.name.clone(), std::path::absolute(&dir).unwrap_or(dir));
            }
        }
    }
    Ok((read, to_build))
}

pub fn deploy(a: DeployArgs) -> Result<i32> {
    let env = env::load(&a.env)?;
    // 1. Everything the command line names, checked against the environment.
    let devices = parse_devices(&env, &a.devices)?;
    let pxe: Vec<&Machine> = env.machines.iter().filter(|m| m.boot == Boot::Pxe).collect();
    let serve = if a.no_serve || pxe.is_empty() {
        None
    } else {
        let net = serve_network(&env, a.network.as_deref())?;
        let Some(iface) = a.interface.clone() else {
            return Err(Error::Usage(format!(
                "oa deploy serves the machines that boot `pxe` ({}) on network `{}` ({}): give --interface IFACE, this host's interface on that network (see `ip -br addr`), or --no-serve to write the files and flash only",
                pxe.iter().map(|m| m.name.as_str()).collect::<Vec<_>>().join(", "),
                net.name,
                net.cidr()
            )));
        };
        Some((net, iface))
    };
    let dir = a.dir.clone().unwrap_or_else(|| default_dir(&env.name));
    let dir = std::path::absolute(&dir).unwrap_or(dir);
    let machines_dir = dir.join("machines");

    // 2. The outputs: built (cached) or read; in a dry run only read.
    let (outs, to_build) = if a.dry_run {
        dry_outputs(&env, a.out.as_deref())?
    } else {
        (env::outputs::outputs(&env, &crate::commands::options(&a.common, None), a.out.as_deref())?, BTreeMap::new())
    };
    let out_dir = |m: &Machine| -> PathBuf {
        outs.get(&m.name)
            .map(|o| o.dir.clone())
            .or_else(|| to_build.get(&m.name).cloned())
            .map(|d| std::fs::canonicalize(&d).unwrap_or(d))
            .unwrap_or_default()
    };

    // 3. The machines folder.
    let files: Vec<MachineFile> = pxe.iter().map(|m| machine_file(&env.name, m, &out_dir(m))).collect();
    for f in &files {
        if let Some(c) = &f.config {
            let text = std::fs::read(c).ctx("reading the config of machine", c)?;
            serde_json::from_slice::<serde_json::Value>(&text).map_err(|e| {
                Error::Usage(format!("machine `{}`: config {} is not JSON: {e}", f.machine, c.display()))
            })?;
        }
    }
    let folder = survey(&machines_dir, &env.name, &files)?;
    if !folder.conflicts.is_empty() {
        return Err(Error::Usage(format!(
            "{} not written by oa deploy {} and would be replaced: {}; move them away (or remove them) and deploy again",
            if folder.conflicts.len() == 1 { "this file was" } else { "these files were" },
            env.name,
            folder.conflicts.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", ")
        )));
    }

    // 4. The flashes, each device checked (nothing written yet).
    let mut flashes = Vec::new();
    for m in env.machines.iter().filter(|m| devices.contains_key(&m.name)) {
        let image = match outs.get(&m.name) {
            Some(o) => o.file(if m.boot == Boot::Iso { artifact::ISO } else { artifact::DISK_IMAGE }),
            None => {
                // A dry run with a profile not built yet: the device is still checked.
                let file = if m.boot == Boot::Iso { artifact::ISO } else { artifact::DISK_IMAGE };
                out_dir(m).join(file)
            }
        };
        let opts = crate::flash::Options {
            image,
            device: devices[&m.name].clone(),
            yes: a.yes,
            bmap: None,
            no_bmap: false,
            allow_file: a.allow_file,
            progress: true,
        };
        if a.dry_run && !opts.image.exists() {
            flashes.push((m.name.clone(), opts, None));
            continue;
        }
        let plan = crate::flash::plan(&opts)?;
        flashes.push((m.name.clone(), opts, Some(plan)));
    }

    let serve_cmd = serve.as_ref().map(|(net, iface)| {
        let first = pxe.iter().find(|m| env.netboot_network(m).is_some_and(|n| n.name == net.name)).unwrap_or(&pxe[0]);
        (net, first, serve_argv(net, iface, &out_dir(first), &dir))
    });
    let printable = |argv: &[String]| {
        std::iter::once("oa serve".to_string()).chain(argv.iter().map(|s| shell_quote(s))).collect::<Vec<_>>().join(" ")
    };

    // 5. A dry run: the plan, and nothing changed.
    if a.dry_run {
        println!("oa deploy {} (dry run: nothing is written, flashed or served)", env.name);
        for (m, d) in &to_build {
            println!("build: machine {m}: its profile, into {}", d.display());
        }
        for f in &files {
            println!("write: {} (machine {})", machines_dir.join(format!("{}.toml", f.stem)).display(), f.machine);
            for l in f.toml.lines() {
                println!("         {l}");
            }
            if let Some(c) = &f.config {
                println!(
                    "write: {} (copy of {})",
                    machines_dir.join(format!("{}.json", f.stem)).display(),
                    c.display()
                );
            }
        }
        for p in &folder.stale {
            println!("remove: {} (written by an earlier deploy, its MAC is no longer in the environment)", p.display());
        }
        for p in &folder.foreign {
            println!("keep: {} (not written by oa deploy {})", p.display(), env.name);
        }
        for (m, opts, plan) in &flashes {
            match plan {
                Some(p) => println!("flash: machine {m}: {} -> {}\n{p}", opts.image.display(), opts.device.display()),
                None => println!(
                    "flash: machine {m}: {} (built first) -> {} (the device is checked then)",
                    opts.image.display(),
                    opts.device.display()
                ),
            }
        }
        for m in env.machines.iter().filter(|m| flashable(m) && !devices.contains_key(&m.name)) {
            println!("not flashed: machine {}: give --device {}=/dev/sdX", m.name, m.name);
        }
        match &serve_cmd {
            Some((_, _, argv)) => println!("serve: {}", printable(argv)),
            None if pxe.is_empty() => println!("serve: nothing (no machine boots `pxe`)"),
            None => println!("serve: not started (--no-serve)"),
        }
        return Ok(0);
    }

    // 6. Act: the machines folder, then the flashes.
    let mut rows: Vec<Row> = Vec::new();
    if !files.is_empty() || !folder.stale.is_empty() {
        std::fs::create_dir_all(&machines_dir).ctx("creating", &machines_dir)?;
    }
    for f in &files {
        let toml_path = machines_dir.join(format!("{}.toml", f.stem));
        if let Some(c) = &f.config {
            let data = std::fs::read(c).ctx("reading", c)?;
            write_atomic(&machines_dir.join(format!("{}.json", f.stem)), &data)?;
        }
        write_atomic(&toml_path, f.toml.as_bytes())?;
        eprintln!("oa deploy: wrote {}", toml_path.display());
    }
    for p in &folder.stale {
        std::fs::remove_file(p).ctx("removing", p)?;
        eprintln!("oa deploy: removed {} (its MAC is no longer in {})", p.display(), env.name);
    }
    for p in &folder.foreign {
        eprintln!("oa deploy: kept {} (not written by oa deploy {})", p.display(), env.name);
    }
    let mut flashed: BTreeMap<String, String> = BTreeMap::new();
    for (m, opts, _) in &flashes {
        eprintln!("==> machine {m}: flashing {} onto {}", opts.image.display(), opts.device.display());
        let r = crate::flash::flash(opts)?;
        flashed.insert(
            m.clone(),
            format!(
                "flashed {} onto {}, verified ({:.1}s)",
                crate::image::bmap::human(r.written),
                opts.device.display(),
                r.duration.as_secs_f64()
            ),
        );
    }

    // 7. The table.
    for m in &env.machines {
        let done = match m.boot {
            Boot::Pxe => {
                let file = machines_dir.join(format!("{}.toml", m.mac_file_stem()));
                let served = match &serve_cmd {
                    Some((net, _, _)) if env.netboot_network(m).is_some_and(|n| n.name == net.name) => {
                        format!("served on {}", net.name)
                    }
                    Some((net, _, _)) => format!(
                        "NOT served: it netboots on network {}, oa serve runs on {}",
                        env.netboot_network(m).map(|n| n.name.as_str()).unwrap_or("?"),
                        net.name
                    ),
                    None => "not served (--no-serve)".into(),
                };
                format!("{}, {served}", file.display())
            }
            Boot::Usb | Boot::Disk | Boot::Iso => {
                flashed.remove(&m.name).unwrap_or_else(|| format!("not flashed: give --device {}=/dev/sdX", m.name))
            }
            Boot::Kernel => "nothing to deploy (boot `kernel` is for oa lab only)".into(),
        };
        rows.push(Row { machine: m.name.clone(), boot: m.boot.as_str(), done });
    }
    print!("{}", table(&rows));

    // 8. Serve until Ctrl-C.
    if let Some((_, _, argv)) = serve_cmd {
        use clap::Parser;
        let cli = oa_pxe::cli::Cli::try_parse_from(std::iter::once("oa serve".to_string()).chain(argv.iter().cloned()))
            .map_err(|e| Error::Serve(format!("oa deploy: the serve command is not valid ({e}); a bug in oa")))?;
        eprintln!("oa deploy: {} (Ctrl-C ends it)", printable(&argv));
        oa_pxe::server::run_blocking(&cli.options).map_err(|e| Error::Serve(format!("oa serve: {e:#}")))?;
    }
    Ok(0)
}

fn flashable(m: &Machine) -> bool {
    matches!(m.boot, Boot::Usb | Boot::Disk | Boot::Iso)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(text: &str) -> (tempfile::TempDir, Env) {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("p.toml"), "hostname = \"x\"\n").unwrap();
        let f = d.path().join("e.toml");
        std::fs::write(&f, text).unwrap();
        let e = env::load(&f).unwrap();
        (d, e)
    }

    const TWO: &str = r#"
[networks.lan]
subnet = "10.90.0.0/24"
serve = "dhcp"
[networks.lab]
subnet = "10.91.0.0/24"
serve = "proxy"
dhcp_server = true
[networks.back]
subnet = "10.92.0.0/24"
[machines.web]
profile = "p.toml"
boot = "pxe"
networks = ["lan"]
mac = "52:54:00:00:00:10"
append = ["deploy-two", "x=\"y\""]
[machines.stick]
profile = "p.toml"
boot = "usb"
networks = ["back"]
"#;

    #[test]
    fn devices_name_known_flashable_machines_once() {
        let (_d, e) = env(TWO);
        let ok = parse_devices(&e, &["stick=/dev/sdz".into()]).unwrap();
        assert_eq!(ok["stick"], PathBuf::from("/dev/sdz"));
        let err = |g: &[&str]| {
            parse_devices(&e, &g.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap_err().to_string()
        };
        let u = err(&["nope=/dev/sdz"]);
        assert!(u.contains("no machine `nope`") && u.contains("can be flashed: stick"), "{u}");
        let p = err(&["web=/dev/sdz"]);
        assert!(p.contains("machine `web` boots `pxe`") && p.contains("oa serve netboots it"), "{p}");
        assert!(err(&["stick"]).contains("give MACHINE=DEVICE"));
        assert!(err(&["stick=/dev/a", "stick=/dev/b"]).contains("given twice"));
    }

    #[test]
    fn the_serve_network_is_the_only_one_or_asked_for() {
        let (_d, e) = env(TWO);
        let two = serve_network(&e, None).unwrap_err().to_string();
        assert!(two.contains("several networks with `serve` (lan, lab)") && two.contains("--network NAME"), "{two}");
        assert_eq!(serve_network(&e, Some("lab")).unwrap().name, "lab");
        let none = serve_network(&e, Some("back")).unwrap_err().to_string();
        assert!(none.contains("has no `serve` setting") && none.contains("--network lan, lab"), "{none}");
        assert!(serve_network(&e, Some("x")).unwrap_err().to_string().contains("no network `x`"));
        let (_d, one) = env(&TWO.replace("serve = \"proxy\"\ndhcp_server = true\n", ""));
        assert_eq!(serve_network(&one, None).unwrap().name, "lan");
    }

    #[test]
    fn serve_argv_follows_the_network_mode() {
        let (_d, e) = env(TWO);
        let a = serve_argv(e.network("lan").unwrap(), "eth1", Path::new("/o/web"), Path::new("/s/d"));
        assert_eq!(
            a,
            [
                "/o/web",
                "--interface",
                "eth1",
                "--mode",
                "dhcp",
                "--machines",
                "/s/d/machines",
                "--range",
                "10.90.0.128-10.90.0.254",
                "--netmask",
                "255.255.255.0",
                "--leases",
                "/s/d/leases.json"
            ]
        );
        let p = serve_argv(e.network("lab").unwrap(), "eth1", Path::new("/o/web"), Path::new("/s/d"));
        assert_eq!(p[3..5], ["--mode", "proxy"]);
        assert_eq!(p.len(), 7);
        use clap::Parser;
        let o = oa_pxe::cli::Cli::try_parse_from(std::iter::once("oa serve".to_string()).chain(a)).unwrap().options;
        assert_eq!(o.mode, oa_pxe::cli::ModeArg::Dhcp);
        assert_eq!(o.leases, Some(PathBuf::from("/s/d/leases.json")));
    }

    #[test]
    fn the_machine_file_is_marked_and_toml_escaped() {
        let (_d, e) = env(TWO);
        let f = machine_file("two", e.machine("web").unwrap(), Path::new("/o/we\"b"));
        assert_eq!(f.stem, "52-54-00-00-00-10");
        let first = f.toml.lines().next().unwrap();
        assert!(first.starts_with("# written by oa deploy two: machine web"), "{first}");
        let t: toml::Table = f.toml.parse().unwrap();
        assert_eq!(t["output"].as_str(), Some("/o/we\"b"));
        assert_eq!(
            t["append"].as_array().unwrap().iter().map(|v| v.as_str().unwrap()).collect::<Vec<_>>(),
            ["deploy-two", "x=\"y\""]
        );
        assert!(t.get("config").is_none());
    }

    #[test]
    fn survey_sorts_stale_foreign_and_conflicting_files() {
        let d = tempfile::tempdir().unwrap();
        let w = |n: &str, t: &str| std::fs::write(d.path().join(n), t).unwrap();
        w("aa-00-00-00-00-01.toml", "# written by oa deploy e: machine old\nconfig = \"aa-00-00-00-00-01.json\"\n");
        w("aa-00-00-00-00-01.json", "{}");
        w("aa-00-00-00-00-02.toml", "# mine\noutput = \"/x\"\n");
        w("aa-00-00-00-00-03.toml", "# written by oa deploy other: machine z\n");
        w("aa-00-00-00-00-04.toml", "output = \"/y\"\n");
        w("notes.txt", "x");
        let keep =
            MachineFile { machine: "k".into(), stem: "aa-00-00-00-00-04".into(), toml: String::new(), config: None };
        let s = survey(d.path(), "e", &[keep]).unwrap();
        let names =
            |v: &[PathBuf]| v.iter().map(|p| p.file_name().unwrap().to_string_lossy().into_owned()).collect::<Vec<_>>();
        assert_eq!(names(&s.stale), ["aa-00-00-00-00-01.json", "aa-00-00-00-00-01.toml"]);
        assert_eq!(names(&s.foreign), ["aa-00-00-00-00-02.toml", "aa-00-00-00-00-03.toml"]);
        assert_eq!(names(&s.conflicts), ["aa-00-00-00-00-04.toml"]);
        assert_eq!(survey(&d.path().join("none"), "e", &[]).unwrap(), Folder::default());
    }
}
