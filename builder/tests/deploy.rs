//! `oa deploy ENV` and `oa graph ENV` through the real binary: the plan of a dry run, the
//! machines folder (written, stale files removed, foreign ones kept), a USB machine flashed
//! onto a file and onto a loop device, `oa serve` started for the netboot network inside
//! network namespaces made by the test (a DHCP exchange, the machine's iPXE script and config
//! over HTTP), and the errors that stop it before anything is done.
//! Needs root (loop devices, network namespaces), as `make test` has here.

use oa_contract::manifest::{self, artifact, Artifact, Manifest};
use oa_testkit::netns::Netns;
use sha2::Digest;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

const MIB: usize = 1 << 20;
const WEB_MAC: &str = "52:54:00:00:00:10";
const WEB_STEM: &str = "52-54-00-00-00-10";

fn oa(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_oa")).args(args).stdin(Stdio::null()).output().expect("running oa")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).to_string()
}

/// An `oa build`-shaped output folder: kernel, initramfs, root image and a `disk.img` of
/// `disk_mib` MiB (pseudo-random bytes), each listed in a real manifest with size and sha256.
/// Returns (folder, the disk image's bytes).
fn output(dir: &Path, disk_mib: usize) -> (PathBuf, Vec<u8>) {
    let out = dir.join("out");
    std::fs::create_dir_all(&out).unwrap();
    let disk = oa_testkit::load::pattern(disk_mib * MIB, 0x5eed);
    let files: [(&str, Vec<u8>); 4] = [
        (artifact::KERNEL, b"kernel".to_vec()),
        (artifact::INITRAMFS, b"initramfs".to_vec()),
        (artifact::ROOTFS, oa_testkit::load::pattern(4096, 7)),
        (artifact::DISK_IMAGE, disk.clone()),
    ];
    let mut artifacts = Vec::new();
    for (name, data) in &files {
        std::fs::write(out.join(name), data).unwrap();
        artifacts.push(Artifact {
            name: name.to_string(),
            path: name.to_string(),
            size: data.len() as u64,
            sha256: hex::encode(sha2::Sha256::digest(data)),
        });
    }
    let m = Manifest {
        schema: manifest::SCHEMA_VERSION,
        profile: "deploytest".into(),
        arch: oa_contract::Arch::X86_64,
        kernel_release: "6.1".into(),
        cmdline: vec![],
        artifacts,
        builder: "test".into(),
        key_material: vec![],
    };
    std::fs::write(out.join(manifest::FILE_NAME), serde_json::to_vec(&m).unwrap()).unwrap();
    (out, disk)
}

const CONFIG: &str = "{\"hostname\": \"web1\"}\n";

/// A fleet: `web` netboots on `lan` (oa serve, full DHCP), `stick` boots from a USB stick;
/// `extra` is appended to the file (more networks or machines).
fn fleet(dir: &Path, out: &Path, extra: &str) -> PathBuf {
    std::fs::write(dir.join("web.json"), CONFIG).unwrap();
    let f = dir.join("fleet.toml");
    std::fs::write(
        &f,
        format!(
            r#"name = "fleet"
[networks.lan]
subnet = "10.90.0.0/24"
serve = "dhcp"

[machines.web]
output = "{out}"
boot = "pxe"
networks = ["lan"]
mac = "{WEB_MAC}"
append = ["deploy-word", "deploy-two"]
config = "web.json"

[machines.stick]
output = "{out}"
boot = "usb"
networks = ["lan"]
mac = "52:54:00:00:00:20"
{extra}"#,
            out = out.display()
        ),
    )
    .unwrap();
    f
}

/// Every file under `dir` (relative paths, sorted); empty when it does not exist.
fn tree(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = walkdir::WalkDir::new(dir)
        .into_iter()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_type().is_file())
        .map(|e| e.path().strip_prefix(dir).unwrap().display().to_string())
        .collect();
    v.sort();
    v
}

#[test]
fn a_dry_run_prints_the_plan_and_changes_nothing() {
    let d = tempfile::tempdir().unwrap();
    let (out, _) = output(d.path(), 1);
    let env = fleet(d.path(), &out, "");
    let state = d.path().join("state");
    let target = d.path().join("stick.img");
    std::fs::write(&target, vec![0xa5u8; 2 * MIB]).unwrap();
    let o = oa(&[
        "deploy",
        env.to_str().unwrap(),
        "--interface",
        "eth9",
        "--device",
        &format!("stick={}", target.display()),
        "--allow-file",
        "--dir",
        state.to_str().unwrap(),
        "--dry-run",
    ]);
    let (so, se) = (text(&o.stdout), text(&o.stderr));
    assert!(o.status.success(), "{so}\n{se}");
    let out = out.canonicalize().unwrap();
    let toml = state.join("machines").join(format!("{WEB_STEM}.toml"));
    for want in [
        format!("write: {} (machine web)", toml.display()),
        format!("output = \"{}\"", out.display()),
        "append = [\"deploy-word\", \"deploy-two\"]".to_string(),
        format!("write: {} (copy of {})", state.join("machines").join(format!("{WEB_STEM}.json")).display(), d.path().canonicalize().unwrap().join("web.json").display()),
        format!("flash: machine stick: {} -> {}", out.join("disk.img").display(), target.display()),
        format!(
            "serve: oa serve {} --interface eth9 --mode dhcp --machines {} --range 10.90.0.128-10.90.0.254 --netmask 255.255.255.0 --leases {}",
            out.display(),
            state.join("machines").display(),
            state.join("leases.json").display()
        ),
    ] {
        assert!(so.contains(&want), "missing {want:?} in:\n{so}\n{se}");
    }
    assert!(!state.exists(), "a dry run made {}", state.display());
    assert_eq!(std::fs::read(&target).unwrap(), vec![0xa5u8; 2 * MIB], "a dry run wrote the device");
}

#[test]
fn the_machines_folder_is_written_stale_files_removed_and_foreign_ones_kept() {
    let d = tempfile::tempdir().unwrap();
    let (out, _) = output(d.path(), 1);
    let env = fleet(d.path(), &out, "");
    let state = d.path().join("state");
    let machines = state.join("machines");
    std::fs::create_dir_all(&machines).unwrap();
    // An earlier deploy of this environment, for a MAC no longer in it.
    std::fs::write(
        machines.join("52-54-00-00-00-99.toml"),
        "# written by oa deploy fleet: machine gone; rewritten at each deploy\noutput = \"/x\"\nconfig = \"52-54-00-00-00-99.json\"\n",
    )
    .unwrap();
    std::fs::write(machines.join("52-54-00-00-00-99.json"), "{}").unwrap();
    // The operator's own files, and another environment's.
    std::fs::write(machines.join("52-54-00-00-00-77.toml"), "append = [\"mine\"]\n").unwrap();
    std::fs::write(machines.join("52-54-00-00-00-77.json"), "{}").unwrap();
    std::fs::write(machines.join("52-54-00-00-00-66.toml"), "# written by oa deploy other: machine x\n").unwrap();

    let o = oa(&["deploy", env.to_str().unwrap(), "--no-serve", "--dir", state.to_str().unwrap()]);
    let (so, se) = (text(&o.stdout), text(&o.stderr));
    assert!(o.status.success(), "{so}\n{se}");
    assert_eq!(
        tree(&machines),
        [
            "52-54-00-00-00-10.json",
            "52-54-00-00-00-10.toml",
            "52-54-00-00-00-66.toml",
            "52-54-00-00-00-77.json",
            "52-54-00-00-00-77.toml"
        ],
        "{se}"
    );
    let t = std::fs::read_to_string(machines.join(format!("{WEB_STEM}.toml"))).unwrap();
    assert!(t.starts_with("# written by oa deploy fleet: machine web"), "{t}");
    let v: toml::Table = t.parse().unwrap();
    assert_eq!(v["output"].as_str().unwrap(), out.canonicalize().unwrap().to_str().unwrap());
    assert_eq!(
        v["append"].as_array().unwrap().iter().map(|x| x.as_str().unwrap()).collect::<Vec<_>>(),
        ["deploy-word", "deploy-two"]
    );
    assert_eq!(v["config"].as_str(), Some("52-54-00-00-00-10.json"));
    assert_eq!(std::fs::read_to_string(machines.join(format!("{WEB_STEM}.json"))).unwrap(), CONFIG);
    assert!(se.contains("removed") && se.contains("52-54-00-00-00-99.toml"), "{se}");
    assert!(se.contains("kept") && se.contains("52-54-00-00-00-77.toml"), "{se}");
    // The table: web's file, stick not flashed with what to do.
    assert!(
        so.contains("web") && so.contains(&format!("{WEB_STEM}.toml")) && so.contains("not served (--no-serve)"),
        "{so}"
    );
    assert!(so.contains("stick") && so.contains("not flashed: give --device stick=/dev/sdX"), "{so}");

    // web's MAC changes: its old files are stale now, the new ones are written.
    let text2 = std::fs::read_to_string(&env).unwrap().replace(WEB_MAC, "52:54:00:00:00:11");
    std::fs::write(&env, text2).unwrap();
    let o = oa(&["deploy", env.to_str().unwrap(), "--no-serve", "--dir", state.to_str().unwrap()]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    assert_eq!(
        tree(&machines),
        [
            "52-54-00-00-00-11.json",
            "52-54-00-00-00-11.toml",
            "52-54-00-00-00-66.toml",
            "52-54-00-00-00-77.json",
            "52-54-00-00-00-77.toml"
        ]
    );
}

#[test]
fn a_file_it_did_not_write_is_not_replaced() {
    let d = tempfile::tempdir().unwrap();
    let (out, _) = output(d.path(), 1);
    let env = fleet(d.path(), &out, "");
    let machines = d.path().join("state/machines");
    std::fs::create_dir_all(&machines).unwrap();
    let mine = machines.join(format!("{WEB_STEM}.toml"));
    std::fs::write(&mine, "append = [\"hand-written\"]\n").unwrap();
    let o = oa(&["deploy", env.to_str().unwrap(), "--no-serve", "--dir", d.path().join("state").to_str().unwrap()]);
    let se = text(&o.stderr);
    assert!(!o.status.success());
    assert!(
        se.contains("not written by oa deploy fleet")
            && se.contains(mine.to_str().unwrap())
            && se.contains("move them away"),
        "{se}"
    );
    assert_eq!(std::fs::read_to_string(&mine).unwrap(), "append = [\"hand-written\"]\n");
    assert_eq!(tree(&machines), [format!("{WEB_STEM}.toml")]);
}

#[test]
fn a_usb_machine_is_flashed_onto_a_file() {
    let d = tempfile::tempdir().unwrap();
    let (out, disk) = output(d.path(), 3);
    let env = fleet(d.path(), &out, "");
    let target = d.path().join("stick.img");
    std::fs::write(&target, vec![0u8; 4 * MIB]).unwrap();
    let o = oa(&[
        "deploy",
        env.to_str().unwrap(),
        "--no-serve",
        "--device",
        &format!("stick={}", target.display()),
        "--allow-file",
        "--yes",
        "--dir",
        d.path().join("state").to_str().unwrap(),
    ]);
    let (so, se) = (text(&o.stdout), text(&o.stderr));
    assert!(o.status.success(), "{so}\n{se}");
    let got = std::fs::read(&target).unwrap();
    assert_eq!(got.len(), 4 * MIB);
    assert!(got[..disk.len()] == disk[..], "the device does not hold disk.img\n{se}");
    assert!(so.contains(&format!("flashed 3.0 MiB onto {}, verified", target.display())), "{so}");
}

/// One test at a time holds loop devices (see builder/tests/flash.rs).
fn serial() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

fn run(cmd: &str, args: &[&str]) -> String {
    let o = Command::new(cmd).args(args).output().unwrap_or_else(|e| panic!("{cmd}: {e}"));
    assert!(o.status.success(), "{cmd} {args:?}: {}", text(&o.stderr));
    text(&o.stdout).trim().to_string()
}

#[test]
fn a_usb_machine_is_flashed_onto_a_loop_device() {
    let _one = serial();
    let d = tempfile::tempdir().unwrap();
    let (out, disk) = output(d.path(), 3);
    let env = fleet(d.path(), &out, "");
    let backing = d.path().join("backing");
    std::fs::write(&backing, vec![0x5au8; 8 * MIB]).unwrap();
    let dev = run("losetup", &["--find", "--show", backing.to_str().unwrap()]);
    struct Detach(String);
    impl Drop for Detach {
        fn drop(&mut self) {
            let _ = Command::new("losetup").args(["-d", &self.0]).status();
        }
    }
    let _detach = Detach(dev.clone());
    // A loop device just detached by another test can read 0 bytes for a moment.
    let sys = format!("/sys/block/{}/size", dev.trim_start_matches("/dev/"));
    let t = Instant::now();
    while std::fs::read_to_string(&sys).ok().and_then(|s| s.trim().parse::<u64>().ok()).unwrap_or(0) * 512
        != 8 * MIB as u64
    {
        assert!(t.elapsed() < Duration::from_secs(10), "{dev} does not report its size");
        std::thread::sleep(Duration::from_millis(20));
    }
    let o = oa(&[
        "deploy",
        env.to_str().unwrap(),
        "--no-serve",
        "--device",
        &format!("stick={dev}"),
        "--yes",
        "--dir",
        d.path().join("state").to_str().unwrap(),
    ]);
    let (so, se) = (text(&o.stdout), text(&o.stderr));
    assert!(o.status.success(), "{so}\n{se}");
    let got = std::fs::read(&dev).unwrap();
    assert!(got[..disk.len()] == disk[..], "{dev} does not hold disk.img\n{se}");
    // Past the image the device is untouched but for its last MiB, zeroed by oa flash (where a
    // stale backup GPT would be).
    let last = got.len() - MIB;
    assert!(got[disk.len()..last].iter().all(|&b| b == 0x5a), "bytes past the image changed");
    assert!(got[last..].iter().all(|&b| b == 0), "the device's last MiB was not cleared");
    assert!(so.contains(&format!("flashed 3.0 MiB onto {dev}, verified")), "{so}");
}

/// A DHCP message from a PXE client (BIOS, arch 0) with MAC `mac`: DISCOVER (1) or REQUEST (3).
fn dhcp_message(mac: [u8; 6], xid: u32, kind: u8, requested: Option<Ipv4Addr>) -> Vec<u8> {
    let mut p = vec![0u8; 236];
    p[..4].copy_from_slice(&[1, 1, 6, 0]);
    p[4..8].copy_from_slice(&xid.to_be_bytes());
    p[28..34].copy_from_slice(&mac);
    p.extend_from_slice(&[99, 130, 83, 99, 53, 1, kind]);
    if let Some(ip) = requested {
        p.extend_from_slice(&[50, 4]);
        p.extend_from_slice(&ip.octets());
    }
    let class = b"PXEClient:Arch:00000:UNDI:002001";
    p.extend_from_slice(&[60, class.len() as u8]);
    p.extend_from_slice(class);
    p.extend_from_slice(&[93, 2, 0, 0, 255]);
    p
}

/// A reply to `xid`: (message type, yiaddr, boot file from `file` or option 67).
fn dhcp_reply(b: &[u8], xid: u32) -> Option<(u8, Ipv4Addr, String)> {
    if b.len() < 240 || b[0] != 2 || b[4..8] != xid.to_be_bytes() || b[236..240] != [99, 130, 83, 99] {
        return None;
    }
    let yiaddr = Ipv4Addr::new(b[16], b[17], b[18], b[19]);
    let mut file = text(&b[108..236]).trim_end_matches('\0').to_string();
    let (mut kind, mut i) = (0, 240);
    while i + 1 < b.len() && b[i] != 255 {
        if b[i] == 0 {
            i += 1;
            continue;
        }
        let (code, len) = (b[i], b[i + 1] as usize);
        let v = b.get(i + 2..i + 2 + len)?;
        match code {
            53 => kind = v[0],
            67 if file.is_empty() => file = text(v).trim_end_matches('\0').to_string(),
            _ => {}
        }
        i += 2 + len;
    }
    Some((kind, yiaddr, file))
}

/// Send `msg` until a reply of type `want` to `xid` comes (4 tries, 1 s apart).
fn dhcp_exchange(
    sock: &UdpSocket,
    server: SocketAddr,
    msg: &[u8],
    xid: u32,
    want: u8,
) -> Result<(Ipv4Addr, String), String> {
    sock.set_read_timeout(Some(Duration::from_millis(250))).unwrap();
    let mut b = [0u8; 1500];
    for _ in 0..4 {
        sock.send_to(msg, server).map_err(|e| e.to_string())?;
        let t = Instant::now();
        while t.elapsed() < Duration::from_secs(1) {
            if let Ok((n, _)) = sock.recv_from(&mut b) {
                if let Some((k, ip, file)) = dhcp_reply(&b[..n], xid) {
                    if k == want {
                        return Ok((ip, file));
                    }
                }
            }
        }
    }
    Err(format!("no DHCP message of type {want} after 4 tries"))
}

/// HTTP/1.1 GET: (status, body).
fn http_get(server: SocketAddr, path: &str) -> (u16, Vec<u8>) {
    let mut s = TcpStream::connect_timeout(&server, Duration::from_secs(5)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: {server}\r\nConnection: close\r\n\r\n").as_bytes()).unwrap();
    let mut all = Vec::new();
    s.read_to_end(&mut all).unwrap();
    let end = all.windows(4).position(|w| w == b"\r\n\r\n").expect("an HTTP response head");
    let status = text(&all[..end]).split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    (status, all[end + 4..].to_vec())
}

#[test]
fn deploy_serves_the_netboot_network_in_a_namespace() {
    const SERVER: Ipv4Addr = Ipv4Addr::new(10, 90, 0, 1);
    const CLIENT: Ipv4Addr = Ipv4Addr::new(10, 90, 0, 20);
    let sv = |port: u16| SocketAddr::from((SERVER, port));
    let srv = Netns::new("deploy-srv");
    let cli = Netns::new("deploy-cli");
    srv.bridge(&format!("{SERVER}/24"));
    srv.veth_to(&cli, &format!("{CLIENT}/24"));

    let d = tempfile::tempdir().unwrap();
    let (out, _) = output(d.path(), 1);
    // A second network without serve; --network names lan anyway.
    let env = fleet(d.path(), &out, "[networks.back]\nsubnet = \"10.91.0.0/24\"\n");
    let state = d.path().join("state");
    let log = d.path().join("deploy.log");
    let args: Vec<String> =
        ["deploy", env.to_str().unwrap(), "--interface", "br0", "--network", "lan", "--dir", state.to_str().unwrap()]
            .iter()
            .map(|s| s.to_string())
            .collect();
    let mut deploy = srv.spawn(env!("CARGO_BIN_EXE_oa"), &args, &log);
    let log_text = || std::fs::read_to_string(&log).unwrap_or_default();
    let t = Instant::now();
    while !log_text().contains("serving ") {
        assert!(deploy.0.try_wait().unwrap().is_none(), "oa deploy exited:\n{}", log_text());
        assert!(t.elapsed() < Duration::from_secs(20), "oa deploy did not serve:\n{}", log_text());
        std::thread::sleep(Duration::from_millis(20));
    }
    let mac = [0x52, 0x54, 0, 0, 0, 0x10];
    let xid = 0x0d3b_0001_u32;
    let lease = cli.run_in(move || {
        let sock = UdpSocket::bind((CLIENT, 68)).unwrap();
        let (offered, file) = dhcp_exchange(&sock, sv(67), &dhcp_message(mac, xid, 1, None), xid, 2)?;
        let (acked, _) = dhcp_exchange(&sock, sv(67), &dhcp_message(mac, xid, 3, Some(offered)), xid, 5)?;
        Ok::<_, String>((offered, file, acked))
    });
    let (ip, file, acked) = lease.unwrap_or_else(|e| panic!("DHCP: {e}\n{}", log_text()));
    assert_eq!(ip, acked);
    assert!(
        (u32::from(Ipv4Addr::new(10, 90, 0, 128))..=u32::from(Ipv4Addr::new(10, 90, 0, 254))).contains(&u32::from(ip)),
        "leased {ip}, outside the network's pool\n{}",
        log_text()
    );
    assert!(!file.is_empty(), "no boot file in the OFFER\n{}", log_text());
    // The machine's iPXE script carries its append words; its config goes to its lease only.
    let (script, refused) = cli.run_in(move || {
        (http_get(sv(80), &format!("/boot/{WEB_STEM}.ipxe")), http_get(sv(80), &format!("/config/{WEB_STEM}")))
    });
    let script_text = text(&script.1);
    assert_eq!(script.0, 200, "{script_text}");
    assert!(script_text.contains("deploy-word") && script_text.contains("deploy-two"), "{script_text}");
    assert_eq!(refused.0, 403, "the config went to {CLIENT}, not leased to the machine: {}", text(&refused.1));
    cli.ip(&["addr", "flush", "dev", "vo0"]);
    cli.ip(&["addr", "add", &format!("{ip}/24"), "dev", "vo0"]);
    let config = cli.run_in(move || http_get(sv(80), &format!("/config/{WEB_STEM}")));
    assert_eq!(config, (200, CONFIG.as_bytes().to_vec()), "{}", log_text());
    assert!(deploy.0.try_wait().unwrap().is_none(), "oa deploy stopped serving\n{}", log_text());
    let l = log_text();
    assert!(l.contains("served on lan"), "{l}");
    let _ = deploy.0.kill();
}

#[test]
fn errors_name_the_thing_and_what_to_do_before_anything_is_done() {
    let d = tempfile::tempdir().unwrap();
    let (out, _) = output(d.path(), 1);
    let state = d.path().join("state");
    let target = d.path().join("t.img");
    std::fs::write(&target, vec![7u8; 2 * MIB]).unwrap();
    let run = |env: &Path, extra: &[&str]| {
        let mut a = vec!["deploy", env.to_str().unwrap(), "--dir", state.to_str().unwrap()];
        a.extend_from_slice(extra);
        let o = oa(&a);
        assert!(!o.status.success(), "{extra:?} succeeded");
        assert!(!state.exists(), "{extra:?} wrote {}", state.display());
        assert_eq!(std::fs::read(&target).unwrap(), vec![7u8; 2 * MIB]);
        text(&o.stderr)
    };
    let env = fleet(d.path(), &out, "");
    let dev = format!("stick={}", target.display());
    let e = run(&env, &["--interface", "eth9", "--allow-file", "--yes", "--device", &dev, "--device", "nope=/dev/sdz"]);
    assert!(
        e.contains("--device nope=/dev/sdz") && e.contains("no machine `nope`") && e.contains("can be flashed: stick"),
        "{e}"
    );
    let e = run(&env, &["--interface", "eth9", "--device", "web=/dev/sdz"]);
    assert!(e.contains("machine `web` boots `pxe`"), "{e}");
    let e = run(&env, &["--allow-file", "--yes", "--device", &dev]);
    assert!(
        e.contains("give --interface IFACE") && e.contains("network `lan` (10.90.0.0/24)") && e.contains("--no-serve"),
        "{e}"
    );

    let two = fleet(d.path(), &out, "[networks.lab]\nsubnet = \"10.91.0.0/24\"\nserve = \"off\"\n");
    let e = run(&two, &["--interface", "eth9", "--allow-file", "--yes", "--device", &dev]);
    assert!(e.contains("several networks with `serve` (lan, lab)") && e.contains("give --network NAME"), "{e}");
    let e = run(&two, &["--interface", "eth9", "--network", "wan"]);
    assert!(e.contains("no network `wan`"), "{e}");
}

#[test]
fn graph_draws_an_environment() {
    let d = tempfile::tempdir().unwrap();
    let (out, _) = output(d.path(), 1);
    let env = fleet(d.path(), &out, "");
    let o = oa(&["graph", env.to_str().unwrap(), "--format", "json"]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let j: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(j["environment"], "fleet");
    assert_eq!(j["networks"][0]["serve"], "dhcp");
    assert_eq!(j["machines"].as_array().unwrap().len(), 2);
    assert_eq!(j["links"][0], serde_json::json!({"machine": "web", "network": "lan", "mac": WEB_MAC, "netboot": true}));
    let o = oa(&["graph", env.to_str().unwrap()]);
    let dot = text(&o.stdout);
    assert!(o.status.success() && dot.starts_with("digraph \"fleet\"") && dot.contains("boot pxe"), "{dot}");
    let o = oa(&["graph", env.to_str().unwrap(), "--format", "mermaid"]);
    assert!(o.status.success() && text(&o.stdout).contains("m0 ==>|"), "{}", text(&o.stdout));
}
