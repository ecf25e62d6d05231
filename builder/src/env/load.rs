//! Reading an environment file and its includes, strictly, into an [`Env`].

use super::{fmt_mac, DEFAULT_CHECK_SECS, DEFAULT_READY_SECS};
use super::{Boot, Check, CheckKind, Disk, Env, EnvError, Firmware, Machine, Network, ServeMode, Source};
use crate::profile::{Location, Seg, TomlSource};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::time::Duration;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEnv {
    name: Option<String>,
    #[serde(default)]
    include: Vec<String>,
    #[serde(default)]
    networks: BTreeMap<String, RawNetwork>,
    #[serde(default)]
    machines: BTreeMap<String, RawMachine>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawNetwork {
    subnet: String,
    serve: Option<String>,
    dhcp_server: Option<bool>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMachine {
    profile: Option<String>,
    output: Option<String>,
    boot: String,
    firmware: Option<String>,
    arch: Option<String>,
    mac: Option<String>,
    memory: Option<u32>,
    cpus: Option<u32>,
    #[serde(default)]
    networks: Vec<String>,
    #[serde(default)]
    disks: Vec<RawDisk>,
    nic: Option<String>,
    #[serde(default)]
    append: Vec<String>,
    config: Option<String>,
    ready_within: Option<u64>,
    #[serde(default)]
    checks: Vec<RawCheck>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDisk {
    size_mib: Option<u64>,
    file: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCheck {
    send: Option<String>,
    expect: Option<String>,
    ssh: Option<String>,
    file: Option<String>,
    reach: Option<String>,
    reboot: Option<bool>,
    power_cut: Option<bool>,
    output: Option<String>,
    exit: Option<i32>,
    user: Option<String>,
    within: Option<u64>,
}

/// One file read: its path, text and what it defines, in file order.
struct FileRead {
    path: PathBuf,
    text: String,
    name: Option<String>,
    networks: Vec<(String, RawNetwork)>,
    machines: Vec<(String, RawMachine)>,
}

/// Load the environment file at `path` and everything it includes.
pub fn load(path: &Path) -> Result<Env, EnvError> {
    let top = path.canonicalize().map_err(|source| EnvError::Read { path: path.to_path_buf(), source })?;
    if !top.is_file() {
        return Err(EnvError::Read {
            path: path.to_path_buf(),
            source: std::io::Error::new(std::io::ErrorKind::InvalidInput, "not a file"),
        });
    }
    let mut files = Vec::new();
    visit(&top, &mut Vec::new(), &mut files)?;
    resolve(&top, files)
}

/// Depth first: a file's includes in order, then the file.
fn visit(path: &Path, stack: &mut Vec<PathBuf>, out: &mut Vec<FileRead>) -> Result<(), EnvError> {
    let text = std::fs::read_to_string(path).map_err(|source| EnvError::Read { path: path.to_path_buf(), source })?;
    let raw: RawEnv = toml::from_str(&text).map_err(|e| EnvError::Invalid {
        at: Location::from_span(path, &text, e.span()),
        message: e.message().trim_end().lines().map(str::trim).collect::<Vec<_>>().join("; "),
    })?;
    stack.push(path.to_path_buf());
    let src = TomlSource::new(path, &text);
    let dir = path.parent().unwrap_or(Path::new("/"));
    for inc in &raw.include {
        let at = || src.at(&[Seg::Key("include"), Seg::Elem(inc)]);
        let looked_for = dir.join(inc);
        let target = match looked_for.canonicalize() {
            Ok(t) if t.is_file() => t,
            _ => return Err(EnvError::IncludeNotFound { at: at(), include: inc.clone(), looked_for }),
        };
        if let Some(pos) = stack.iter().position(|p| *p == target) {
            let mut cycle = stack[pos..].to_vec();
            cycle.push(target);
            return Err(EnvError::IncludeCycle { at: at(), cycle });
        }
        if out.iter().any(|f| f.path == target) {
            continue;
        }
        visit(&target, stack, out)?;
    }
    stack.pop();
    // File order of the tables (the typed parse above sorts them).
    let order = |table: &str| -> Vec<String> {
        toml_edit::ImDocument::parse(text.as_str())
            .ok()
            .and_then(|d| {
                d.get(table).and_then(|t| t.as_table_like()).map(|t| t.iter().map(|(k, _)| k.to_string()).collect())
            })
            .unwrap_or_default()
    };
    let (net_order, machine_order) = (order("networks"), order("machines"));
    let RawEnv { name, mut networks, mut machines, .. } = raw;
    let networks = net_order.into_iter().filter_map(|k| networks.remove(&k).map(|v| (k, v))).collect();
    let machines = machine_order.into_iter().filter_map(|k| machines.remove(&k).map(|v| (k, v))).collect();
    out.push(FileRead { path: path.to_path_buf(), text, name, networks, machines });
    Ok(())
}

fn invalid(src: &TomlSource<'_>, segs: &[Seg<'_>], message: impl Into<String>) -> EnvError {
    EnvError::Invalid { at: src.at(segs), message: message.into() }
}

/// Names of networks and machines: `[a-z0-9][a-z0-9-]*`, at most `max` characters.
fn is_valid_name(name: &str, max: usize) -> bool {
    let mut b = name.bytes();
    matches!(b.next(), Some(c) if c.is_ascii_lowercase() || c.is_ascii_digit())
        && name.len() <= max
        && b.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'-')
}

/// Bridge names are `oa-<network>` and Linux interface names have at most 15 characters.
const MAX_NETWORK_NAME: usize = 11;
const MAX_MACHINE_NAME: usize = 32;
const MAX_SECS: u64 = 3600;

fn parse_subnet(s: &str) -> Result<(Ipv4Addr, u8), String> {
    let (a, p) =
        s.split_once('/').ok_or_else(|| format!("`{s}` is not a subnet; write it as e.g. \"10.90.0.0/24\""))?;
    let addr: Ipv4Addr = a.parse().map_err(|_| format!("`{a}` is not an IPv4 address"))?;
    let prefix: u8 = p.parse().map_err(|_| format!("`/{p}` is not a prefix length"))?;
    if !(8..=29).contains(&prefix) {
        return Err(format!("prefix /{prefix} is outside /8../29 (a lab network needs room for a pool)"));
    }
    let mask = u32::MAX << (32 - u32::from(prefix));
    if u32::from(addr) & !mask != 0 {
        let net = Ipv4Addr::from(u32::from(addr) & mask);
        return Err(format!("`{s}` has host bits set; the network is {net}/{prefix}"));
    }
    Ok((addr, prefix))
}

fn parse_mac(s: &str) -> Result<[u8; 6], String> {
    let parts: Vec<&str> = s.split(':').collect();
    let bad = || format!("`{s}` is not a MAC address; write it as e.g. \"52:54:00:12:34:56\"");
    if parts.len() != 6 {
        return Err(bad());
    }
    let mut m = [0u8; 6];
    for (i, p) in parts.iter().enumerate() {
        if p.len() != 2 {
            return Err(bad());
        }
        m[i] = u8::from_str_radix(p, 16).map_err(|_| bad())?;
    }
    if m[0] & 1 == 1 {
        return Err(format!("`{s}` is a multicast address; a NIC's MAC has the lowest bit of its first byte clear"));
    }
    Ok(m)
}

/// A machine's default MAC: QEMU's prefix 52:54:00 and three bytes of the sha256 of its name,
/// so it is the same in every run (its lease, its per-machine files).
fn default_mac(name: &str) -> [u8; 6] {
    use sha2::Digest;
    let d = sha2::Sha256::digest(format!("oa-env-machine:{name}").as_bytes());
    // The last byte leaves room for one NIC per network (counted up from it).
    [0x52, 0x54, 0x00, d[0], d[1], d[2] & 0xf0]
}

fn secs(src: &TomlSource<'_>, segs: &[Seg<'_>], v: Option<u64>, default: u64) -> Result<Duration, EnvError> {
    let v = v.unwrap_or(default);
    if v == 0 || v > MAX_SECS {
        return Err(invalid(src, segs, format!("{v} s is outside 1..{MAX_SECS}")));
    }
    Ok(Duration::from_secs(v))
}

fn resolve(top: &Path, files: Vec<FileRead>) -> Result<Env, EnvError> {
    let mut networks: Vec<(Network, usize)> = Vec::new();
    let mut machines: Vec<(Machine, usize)> = Vec::new();
    let mut name = None;
    for (fi, f) in files.iter().enumerate() {
        let src = TomlSource::new(&f.path, &f.text);
        if f.path == top {
            name.clone_from(&f.name);
            if let Some(n) = &f.name {
                if !is_valid_name(n, 64) {
                    return Err(invalid(
                        &src,
                        &[Seg::Key("name")],
                        format!("environment name `{n}`: use lowercase letters, digits and `-`"),
                    ));
                }
            }
        }
        for (n, raw) in &f.networks {
            if let Some((_, fidx)) = networks.iter().find(|(x, _)| x.name == *n) {
                return Err(EnvError::Duplicate {
                    at: src.at(&[Seg::Key("networks"), Seg::KeyName(n)]),
                    kind: "network",
                    name: n.clone(),
                    first: files[*fidx].path.clone(),
                });
            }
            networks.push((network(&src, n, raw)?, fi));
        }
        for (n, raw) in &f.machines {
            if let Some((_, fidx)) = machines.iter().find(|(x, _)| x.name == *n) {
                return Err(EnvError::Duplicate {
                    at: src.at(&[Seg::Key("machines"), Seg::KeyName(n)]),
                    kind: "machine",
                    name: n.clone(),
                    first: files[*fidx].path.clone(),
                });
            }
            machines.push((machine(&src, n, raw)?, fi));
        }
    }
    let networks: Vec<Network> = networks.into_iter().map(|(n, _)| n).collect();
    let env_name = name
        .unwrap_or_else(|| top.file_stem().map(|s| s.to_string_lossy().to_lowercase()).unwrap_or_else(|| "env".into()));

    // References across files.
    let mut macs: Vec<([u8; 6], String)> = Vec::new();
    for (m, fi) in &machines {
        let f = &files[*fi];
        let src = TomlSource::new(&f.path, &f.text);
        let head = [Seg::Key("machines"), Seg::Key(m.name.as_str())];
        let mseg = |rest: &[Seg<'static>]| under(&head, rest);
        for net in &m.networks {
            if !networks.iter().any(|n| n.name == *net) {
                let known = networks.iter().map(|n| n.name.as_str()).collect::<Vec<_>>().join(", ");
                return Err(invalid(
                    &src,
                    &under(&head, &[Seg::Key("networks"), Seg::Elem(net)]),
                    format!(
                        "machine `{}` is on network `{net}`, which no file defines (networks: {})",
                        m.name,
                        if known.is_empty() { "none" } else { &known }
                    ),
                ));
            }
        }
        if m.boot == Boot::Pxe {
            let first = m.networks.first().and_then(|n| networks.iter().find(|x| x.name == *n));
            match first {
                None => {
                    return Err(invalid(&src, &mseg(&[Seg::Key("boot")]), format!("machine `{}` boots over PXE but is on no network; add `networks = [\"NAME\"]` (the first one netboots it)", m.name)))
                }
                Some(n) if !matches!(n.serve, Some(ServeMode::Dhcp | ServeMode::Proxy)) => {
                    return Err(invalid(&src, &mseg(&[Seg::Key("boot")]), format!("machine `{}` boots over PXE from network `{}`, which has no netboot server; set `serve = \"dhcp\"` (or \"proxy\" with `dhcp_server = true`) on [networks.{}]", m.name, n.name, n.name)))
                }
                Some(n) if n.serve == Some(ServeMode::Proxy) && !n.dhcp_server => {
                    return Err(invalid(&src, &mseg(&[Seg::Key("boot")]), format!("machine `{}` boots from network `{}`, whose oa serve is a proxyDHCP but which has no DHCP server; set `dhcp_server = true` on [networks.{}] or `serve = \"dhcp\"`", m.name, n.name, n.name)))
                }
                _ => {}
            }
        } else if m.config.is_some() {
            return Err(invalid(&src, &mseg(&[Seg::Key("config")]), format!("machine `{}`: `config` is given to a machine by oa serve when it netboots; it needs `boot = \"pxe\"`", m.name)));
        }
        for (i, _) in m.networks.iter().enumerate() {
            let mac = m.nic_mac(i);
            if let Some((_, other)) = macs.iter().find(|(x, _)| *x == mac) {
                return Err(invalid(
                    &src,
                    &mseg(&[Seg::Key("mac")]),
                    format!(
                        "machine `{}` has the MAC of `{other}`'s NIC ({}); give one of them another `mac`",
                        m.name,
                        fmt_mac(&mac)
                    ),
                ));
            }
            macs.push((mac, m.name.clone()));
        }
        for (ci, c) in m.checks.iter().enumerate() {
            let cseg = |k: &'static str| under(&head, &[Seg::Key("checks"), Seg::Index(ci), Seg::Key(k)]);
            match &c.kind {
                CheckKind::Reach(other) => {
                    let Some(o) = machines.iter().map(|(x, _)| x).find(|x| x.name == *other) else {
                        return Err(invalid(
                            &src,
                            &cseg("reach"),
                            format!("machine `{}` checks that it reaches `{other}`, which no file defines", m.name),
                        ));
                    };
                    if o.name == m.name {
                        return Err(invalid(
                            &src,
                            &cseg("reach"),
                            format!("machine `{}` checks that it reaches itself; name another machine", m.name),
                        ));
                    }
                    if !o.networks.iter().any(|n| m.networks.contains(n)) {
                        return Err(invalid(
                            &src,
                            &cseg("reach"),
                            format!("machines `{}` and `{other}` share no network", m.name),
                        ));
                    }
                    if addressed_by(&networks, o).is_none() {
                        return Err(invalid(&src, &cseg("reach"), format!("machine `{other}` gets no address the lab knows: its first network needs `serve = \"dhcp\"` or `dhcp_server = true`")));
                    }
                }
                CheckKind::Ssh { .. } if addressed_by(&networks, m).is_none() => {
                    return Err(invalid(&src, &cseg("ssh"), format!("machine `{}` gets no address the lab knows for SSH: its first network needs `serve = \"dhcp\"` or `dhcp_server = true`", m.name)));
                }
                _ => {}
            }
        }
    }
    Ok(Env {
        name: env_name,
        file: top.to_path_buf(),
        networks,
        machines: machines.into_iter().map(|(m, _)| m).collect(),
    })
}

/// The network whose DHCP server the lab reads `m`'s address from: its first network, when
/// that network's addresses come from a server the lab runs.
pub fn addressed_by<'a>(networks: &'a [Network], m: &Machine) -> Option<&'a Network> {
    let first = m.networks.first()?;
    networks.iter().find(|n| n.name == *first).filter(|n| n.serve == Some(ServeMode::Dhcp) || n.dhcp_server)
}

/// `prefix` then `rest`: a path into the document.
fn under<'a>(prefix: &[Seg<'a>], rest: &[Seg<'a>]) -> Vec<Seg<'a>> {
    prefix.iter().chain(rest).copied().collect()
}

fn network(src: &TomlSource<'_>, name: &str, raw: &RawNetwork) -> Result<Network, EnvError> {
    let seg = |k: &'static str| [Seg::Key("networks"), Seg::Key(name), Seg::Key(k)];
    if !is_valid_name(name, MAX_NETWORK_NAME) {
        return Err(invalid(src, &[Seg::Key("networks"), Seg::KeyName(name)], format!("network name `{name}`: lowercase letters, digits and `-`, at most {MAX_NETWORK_NAME} characters (it names a bridge)")));
    }
    let (subnet, prefix) = parse_subnet(&raw.subnet).map_err(|m| invalid(src, &seg("subnet"), m))?;
    let serve = match raw.serve.as_deref() {
        None => None,
        Some("dhcp") => Some(ServeMode::Dhcp),
        Some("proxy") => Some(ServeMode::Proxy),
        Some("off") => Some(ServeMode::Off),
        Some(o) => {
            return Err(invalid(
                src,
                &seg("serve"),
                format!("serve = `{o}`: expected \"dhcp\", \"proxy\" or \"off\" (oa serve's --mode)"),
            ))
        }
    };
    let dhcp_server = raw.dhcp_server.unwrap_or(false);
    if dhcp_server && serve == Some(ServeMode::Dhcp) {
        return Err(invalid(src, &seg("dhcp_server"), format!("network `{name}`: `dhcp_server = true` next to `serve = \"dhcp\"` would put two DHCP servers on one network; use `serve = \"proxy\"` with it")));
    }
    Ok(Network { name: name.to_string(), subnet, prefix, serve, dhcp_server })
}

fn machine(src: &TomlSource<'_>, name: &str, raw: &RawMachine) -> Result<Machine, EnvError> {
    let head = [Seg::Key("machines"), Seg::Key(name)];
    let base = |rest: &[Seg<'static>]| under(&head, rest);
    let seg = |k: &'static str| base(&[Seg::Key(k)]);
    if !is_valid_name(name, MAX_MACHINE_NAME) {
        return Err(invalid(
            src,
            &[Seg::Key("machines"), Seg::KeyName(name)],
            format!("machine name `{name}`: lowercase letters, digits and `-`, at most {MAX_MACHINE_NAME} characters"),
        ));
    }
    let dir = src.path.parent().unwrap_or(Path::new("/"));
    let source = match (&raw.profile, &raw.output) {
        (Some(p), None) => {
            let path = dir.join(p);
            if !path.is_file() {
                return Err(invalid(src, &seg("profile"), format!("profile `{p}` not found (looked for {}); paths are relative to this file", path.display())));
            }
            Source::Profile(path)
        }
        (None, Some(o)) => Source::Output(dir.join(o)),
        (Some(_), Some(_)) => return Err(invalid(src, &seg("output"), format!("machine `{name}` has both `profile` and `output`; give one"))),
        (None, None) => return Err(invalid(src, &base(&[]), format!("machine `{name}` needs `profile = \"PATH.toml\"` (built, cached) or `output = \"DIR\"` (an oa build output)"))),
    };
    let boot = match raw.boot.as_str() {
        "disk" => Boot::Disk,
        "usb" => Boot::Usb,
        "iso" => Boot::Iso,
        "pxe" => Boot::Pxe,
        "kernel" => Boot::Kernel,
        o => {
            return Err(invalid(
                src,
                &seg("boot"),
                format!("boot = `{o}`: expected \"disk\", \"usb\", \"iso\", \"pxe\" or \"kernel\""),
            ))
        }
    };
    let firmware = match raw.firmware.as_deref().unwrap_or("bios") {
        "bios" => Firmware::Bios,
        "uefi" => Firmware::Uefi,
        "uefi-secure" => Firmware::UefiSecure,
        o => {
            return Err(invalid(
                src,
                &seg("firmware"),
                format!("firmware = `{o}`: expected \"bios\", \"uefi\" or \"uefi-secure\""),
            ))
        }
    };
    let arch = match &raw.arch {
        None => None,
        Some(a) => Some(a.parse().map_err(|e: String| invalid(src, &seg("arch"), e))?),
    };
    if arch == Some(oa_contract::Arch::Aarch64) && firmware == Firmware::Bios {
        return Err(invalid(
            src,
            &seg("arch"),
            format!("machine `{name}`: aarch64 has no BIOS; set `firmware = \"uefi\"`"),
        ));
    }
    let mac = match &raw.mac {
        Some(m) => parse_mac(m).map_err(|e| invalid(src, &seg("mac"), e))?,
        None => default_mac(name),
    };
    if let Some(mem) = raw.memory {
        if !(128..=65536).contains(&mem) {
            return Err(invalid(src, &seg("memory"), format!("memory = {mem} MiB is outside 128..65536")));
        }
    }
    let cpus = raw.cpus.unwrap_or(1);
    if !(1..=16).contains(&cpus) {
        return Err(invalid(src, &seg("cpus"), format!("cpus = {cpus} is outside 1..16")));
    }
    for (i, n) in raw.networks.iter().enumerate() {
        if raw.networks[..i].contains(n) {
            return Err(invalid(
                src,
                &base(&[Seg::Key("networks"), Seg::Index(i)]),
                format!("network `{n}` is listed twice"),
            ));
        }
    }
    if raw.networks.len() > 8 {
        return Err(invalid(src, &seg("networks"), "at most 8 networks per machine"));
    }
    let mut disks = Vec::new();
    for (i, d) in raw.disks.iter().enumerate() {
        let at = base(&[Seg::Key("disks"), Seg::Index(i)]);
        disks.push(match (d.size_mib, &d.file) {
            (Some(s), None) if (1..=1 << 20).contains(&s) => Disk::Blank { size_mib: s },
            (Some(s), None) => return Err(invalid(src, &at, format!("size_mib = {s} is outside 1..1048576"))),
            (None, Some(f)) => {
                let p = dir.join(f);
                if !p.is_file() {
                    return Err(invalid(src, &at, format!("disk file `{f}` not found (looked for {})", p.display())));
                }
                Disk::File(p)
            }
            _ => {
                return Err(invalid(
                    src,
                    &at,
                    "a disk is `{ size_mib = N }` (blank) or `{ file = \"PATH\" }`, one of them",
                ))
            }
        });
    }
    if disks.len() > 8 {
        return Err(invalid(src, &seg("disks"), "at most 8 extra disks per machine"));
    }
    let nic = raw.nic.clone().unwrap_or_else(|| "virtio-net-pci".into());
    if !nic.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_') || nic.is_empty() {
        return Err(invalid(
            src,
            &seg("nic"),
            format!("nic = `{nic}` is not a QEMU device name (e.g. \"virtio-net-pci\", \"e1000e\")"),
        ));
    }
    for (i, a) in raw.append.iter().enumerate() {
        if a.is_empty() || a.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(invalid(
                src,
                &base(&[Seg::Key("append"), Seg::Index(i)]),
                format!("append word {a:?}: one command-line word per element, no spaces"),
            ));
        }
    }
    let config = match &raw.config {
        None => None,
        Some(c) => {
            let p = dir.join(c);
            if !p.is_file() {
                return Err(invalid(
                    src,
                    &seg("config"),
                    format!("config `{c}` not found (looked for {})", p.display()),
                ));
            }
            Some(p)
        }
    };
    let ready_within = secs(src, &seg("ready_within"), raw.ready_within, DEFAULT_READY_SECS)?;
    let mut checks = Vec::new();
    for (i, c) in raw.checks.iter().enumerate() {
        let at = |k: &'static str| base(&[Seg::Key("checks"), Seg::Index(i), Seg::Key(k)]);
        checks.push(check(src, name, c, &at, &base(&[Seg::Key("checks"), Seg::Index(i)]))?);
    }
    let m = Machine {
        name: name.to_string(),
        source,
        boot,
        firmware,
        arch,
        mac,
        memory_mib: raw.memory,
        cpus,
        networks: raw.networks.clone(),
        disks,
        nic,
        append: raw.append.clone(),
        config,
        ready_within,
        checks,
    };
    Ok(m)
}

fn check<'a>(
    src: &TomlSource<'_>,
    machine: &str,
    c: &RawCheck,
    at: &dyn Fn(&'static str) -> Vec<Seg<'a>>,
    whole: &[Seg<'a>],
) -> Result<Check, EnvError> {
    let mut kinds: Vec<(&'static str, CheckKind)> = Vec::new();
    if let Some(t) = &c.send {
        kinds.push(("send", CheckKind::Send(t.clone())));
    }
    if let Some(t) = &c.expect {
        if t.is_empty() {
            return Err(invalid(src, &at("expect"), "expect = \"\" matches anything; give the text to wait for"));
        }
        kinds.push(("expect", CheckKind::Expect(t.clone())));
    }
    if let Some(cmd) = &c.ssh {
        let user = c.user.clone().unwrap_or_else(|| "root".into());
        if !user.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-') || user.is_empty() {
            return Err(invalid(src, &at("user"), format!("user `{user}` is not a user name")));
        }
        kinds.push((
            "ssh",
            CheckKind::Ssh { command: cmd.clone(), user, output: c.output.clone(), exit: c.exit.unwrap_or(0) },
        ));
    }
    if let Some(p) = &c.file {
        if !p.starts_with('/') || p.contains('\'') || p.contains('\n') {
            return Err(invalid(src, &at("file"), format!("file `{p}`: an absolute path without quotes or newlines")));
        }
        kinds.push(("file", CheckKind::File(p.clone())));
    }
    if let Some(m) = &c.reach {
        kinds.push(("reach", CheckKind::Reach(m.clone())));
    }
    match c.reboot {
        Some(true) => kinds.push(("reboot", CheckKind::Reboot)),
        Some(false) => return Err(invalid(src, &at("reboot"), "reboot = false does nothing; remove the check")),
        None => {}
    }
    match c.power_cut {
        Some(true) => kinds.push(("power_cut", CheckKind::PowerCut)),
        Some(false) => return Err(invalid(src, &at("power_cut"), "power_cut = false does nothing; remove the check")),
        None => {}
    }
    if kinds.len() != 1 {
        let what = if kinds.is_empty() {
            "none".to_string()
        } else {
            kinds.iter().map(|(k, _)| *k).collect::<Vec<_>>().join(" and ")
        };
        let point = kinds.get(1).map(|(k, _)| at(k)).unwrap_or_else(|| whole.to_vec());
        return Err(invalid(src, &point, format!("machine `{machine}`: a check does one thing (send, expect, ssh, file, reach, reboot or power_cut); this one has {what}; split it into one check each")));
    }
    let (kind_key, kind) = kinds.pop().expect("one kind");
    if !matches!(kind, CheckKind::Ssh { .. }) {
        for (k, set) in [("output", c.output.is_some()), ("exit", c.exit.is_some()), ("user", c.user.is_some())] {
            if set {
                return Err(invalid(src, &at(k), format!("`{k}` belongs to an `ssh` check, not to `{kind_key}`")));
            }
        }
    }
    let within = secs(src, &at("within"), c.within, DEFAULT_CHECK_SECS)?;
    let loc = src.at(&at(kind_key));
    let at_text = match loc.line {
        Some(l) => format!("{}:{l}", loc.file.display()),
        None => loc.file.display().to_string(),
    };
    Ok(Check { kind, within, at: at_text })
}
