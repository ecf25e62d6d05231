use super::*;
use std::path::Path;

fn write(dir: &Path, name: &str, text: &str) -> std::path::PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

fn setup() -> tempfile::TempDir {
    let d = tempfile::tempdir().unwrap();
    write(d.path(), "p.toml", "hostname = \"x\"\n");
    d
}

const GOOD: &str = r#"
name = "lab1"
[networks.lan]
subnet = "10.90.0.0/24"
serve = "dhcp"
[networks.back]
subnet = "10.91.0.0/24"

[machines.web]
profile = "p.toml"
boot = "pxe"
networks = ["lan", "back"]
mac = "52:54:00:00:00:10"
[[machines.web.checks]]
expect = "hello"
within = 5
[[machines.web.checks]]
reach = "db"

[machines.db]
output = "out/db"
boot = "disk"
firmware = "uefi"
networks = ["lan"]
disks = [{ size_mib = 64 }]
[[machines.db.checks]]
ssh = "uname"
output = "Linux"
user = "admin"
[[machines.db.checks]]
power_cut = true
"#;

#[test]
fn a_good_file_loads_with_defaults_and_order() {
    let d = setup();
    let env = load(&write(d.path(), "e.toml", GOOD)).unwrap();
    assert_eq!(env.name, "lab1");
    assert_eq!(env.networks.iter().map(|n| n.name.as_str()).collect::<Vec<_>>(), ["lan", "back"]);
    assert_eq!(env.machines.iter().map(|n| n.name.as_str()).collect::<Vec<_>>(), ["web", "db"]);
    let lan = env.network("lan").unwrap();
    assert_eq!(lan.server().to_string(), "10.90.0.1");
    assert_eq!(lan.dhcp_range(), ("10.90.0.128".parse().unwrap(), "10.90.0.254".parse().unwrap()));
    assert_eq!(lan.netmask().to_string(), "255.255.255.0");
    let web = env.machine("web").unwrap();
    assert_eq!(web.mac_string(), "52:54:00:00:00:10");
    assert_eq!(web.nic_mac(1), [0x52, 0x54, 0, 0, 0, 0x11]);
    assert_eq!(web.firmware, Firmware::Bios);
    assert_eq!(web.ready_within, Duration::from_secs(DEFAULT_READY_SECS));
    assert_eq!(web.checks[0].kind, CheckKind::Expect("hello".into()));
    assert_eq!(web.checks[0].within, Duration::from_secs(5));
    assert!(web.checks[0].at.ends_with("e.toml:15"), "{}", web.checks[0].at);
    assert_eq!(env.netboot_network(web).unwrap().name, "lan");
    let db = env.machine("db").unwrap();
    assert_eq!(db.source, Source::Output(d.path().canonicalize().unwrap().join("out/db")));
    assert_eq!(db.disks, [Disk::Blank { size_mib: 64 }]);
    assert_eq!(
        db.checks[0].kind,
        CheckKind::Ssh { command: "uname".into(), user: "admin".into(), output: Some("Linux".into()), exit: 0 }
    );
    // The default MAC is stable and unicast.
    assert_eq!(db.mac, load(&d.path().join("e.toml")).unwrap().machine("db").unwrap().mac);
    assert_eq!(db.mac[0] & 1, 0);
}

/// (mutation of GOOD, expected line, expected message part)
#[test]
fn bad_files_name_file_line_and_column() {
    let cases: &[(&str, &str, &str, &str)] = &[
        (
            "boot = \"pxe\"\nnetworks = [\"lan\", \"back\"]",
            "boot = \"pex\"\nnetworks = [\"lan\", \"back\"]",
            "11:8",
            "expected \"disk\"",
        ),
        (
            "subnet = \"10.90.0.0/24\"",
            "subnet = \"10.90.0.1/24\"",
            "4:10",
            "host bits set; the network is 10.90.0.0/24",
        ),
        (
            "networks = [\"lan\"]\ndisks",
            "networks = [\"lan\", \"nope\"]\ndisks",
            "24:20",
            "network `nope`, which no file defines",
        ),
        ("reach = \"db\"", "reach = \"dbx\"", "18:9", "`dbx`, which no file defines"),
        ("output = \"Linux\"", "output = \"Linux\"\nreboot = true", "29:10", "a check does one thing"),
        ("within = 5", "within = 5\noutput = \"x\"", "17:10", "belongs to an `ssh` check"),
        ("firmware = \"uefi\"", "firmware = \"uefi\"\nbot = 1", "24:1", "unknown field `bot`"),
        ("mac = \"52:54:00:00:00:10\"", "mac = \"53:54:00:00:00:10\"", "13:7", "multicast"),
        ("serve = \"dhcp\"", "serve = \"proxy\"", "11:8", "has no DHCP server"),
        ("profile = \"p.toml\"", "profile = \"missing.toml\"", "10:11", "profile `missing.toml` not found"),
        ("within = 5", "within = 0", "16:10", "0 s is outside"),
    ];
    for (from, to, at, msg) in cases {
        let d = setup();
        assert!(GOOD.contains(from), "{from}");
        let text = GOOD.replacen(from, to, 1);
        let f = write(d.path(), "e.toml", &text);
        let e = load(&f).expect_err(to).to_string();
        assert!(e.contains(&format!("e.toml:{at}:")), "{to}: {e}");
        assert!(e.contains(msg), "{to}: {e}");
    }
}

#[test]
fn includes_merge_and_duplicates_are_refused() {
    let d = setup();
    write(d.path(), "nets.toml", "[networks.lan]\nsubnet = \"10.90.0.0/24\"\nserve = \"dhcp\"\n");
    let top = write(
        d.path(),
        "top.toml",
        "include = [\"nets.toml\"]\n[machines.a]\nprofile = \"p.toml\"\nboot = \"pxe\"\nnetworks = [\"lan\"]\n",
    );
    let env = load(&top).unwrap();
    assert_eq!(env.name, "top");
    assert_eq!(env.networks.len(), 1);
    let dup = write(d.path(), "dup.toml", "include = [\"nets.toml\"]\n[networks.lan]\nsubnet = \"10.92.0.0/24\"\n");
    let e = load(&dup).unwrap_err().to_string();
    assert!(
        e.contains("dup.toml:2:") && e.contains("network `lan` is defined twice (also in") && e.contains("nets.toml"),
        "{e}"
    );
    let cyc = write(d.path(), "c1.toml", "include = [\"c2.toml\"]\n");
    write(d.path(), "c2.toml", "include = [\"c1.toml\"]\n");
    let e = load(&cyc).unwrap_err().to_string();
    assert!(e.contains("include cycle"), "{e}");
    let missing = write(d.path(), "m.toml", "include = [\"nope.toml\"]\n");
    let e = load(&missing).unwrap_err().to_string();
    assert!(e.contains("m.toml:1:") && e.contains("`nope.toml` not found"), "{e}");
}
