//! `oa graph ENV`: an environment drawn as machines and networks (DOT, Mermaid, JSON).
//!
//! Pure functions from an [`Env`] to text; `oa graph` prints them. One node per network (name,
//! subnet, serve mode, whether it has a DHCP server of its own) and per machine (name, boot,
//! firmware, profile or output, MAC); one edge per NIC, machine -> network, labelled with that
//! NIC's MAC; the NIC a machine netboots from is marked `boot pxe`.

use super::{Boot, Env, Machine, Network, Source};
use serde_json::json;

/// One NIC: machine `machine` on network `network`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    pub machine: String,
    pub network: String,
    /// `aa:bb:cc:dd:ee:ff`.
    pub mac: String,
    /// The machine netboots through this NIC (boot `pxe`, its first network).
    pub netboot: bool,
}

/// Every NIC of every machine, in machine then network order.
pub fn links(env: &Env) -> Vec<Link> {
    let mut out = Vec::new();
    for m in &env.machines {
        for (i, n) in m.networks.iter().enumerate() {
            out.push(Link {
                machine: m.name.clone(),
                network: n.clone(),
                mac: m.nic_mac_string(i),
                netboot: i == 0 && m.boot == Boot::Pxe,
            });
        }
    }
    out
}

/// What the machine boots, for a label: `profile NAME` (the profile file's stem) or `output
/// DIR` (the output folder's name).
fn source_label(m: &Machine) -> String {
    match &m.source {
        Source::Profile(p) => format!("profile {}", stem(p)),
        Source::Output(d) => format!("output {}", name(d)),
    }
}

fn stem(p: &std::path::Path) -> String {
    p.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_else(|| p.display().to_string())
}

fn name(p: &std::path::Path) -> String {
    p.file_name().map(|s| s.to_string_lossy().into_owned()).unwrap_or_else(|| p.display().to_string())
}

fn network_lines(n: &Network) -> Vec<String> {
    let mut l = vec![n.name.clone(), n.cidr()];
    if let Some(s) = n.serve {
        l.push(format!("oa serve {}", s.as_str()));
    }
    if n.dhcp_server {
        l.push("dhcp server".into());
    }
    l
}

fn machine_lines(m: &Machine) -> Vec<String> {
    vec![m.name.clone(), format!("boot {}, {}", m.boot.as_str(), m.firmware.as_str()), source_label(m), m.mac_string()]
}

/// A DOT string literal's contents: `"` and `\` escaped, newlines as `\n`.
fn dot_escape(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '"' => o.push_str("\\\""),
            '\\' => o.push_str("\\\\"),
            '\n' => o.push_str("\\n"),
            c => o.push(c),
        }
    }
    o
}

/// Text inside a Mermaid `"..."` label: quotes and markup characters as entity codes.
fn mermaid_escape(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '"' => o.push_str("#quot;"),
            '#' => o.push_str("#35;"),
            '<' => o.push_str("#lt;"),
            '>' => o.push_str("#gt;"),
            '|' => o.push_str("#124;"),
            '\n' => o.push_str("<br>"),
            c => o.push(c),
        }
    }
    o
}

/// Graphviz DOT (`oa graph ENV | dot -Tsvg > env.svg`).
pub fn dot(env: &Env) -> String {
    let mut o = format!("digraph \"{}\" {{\n  rankdir=LR;\n", dot_escape(&env.name));
    for n in &env.networks {
        o.push_str(&format!(
            "  \"net:{}\" [shape=ellipse, label=\"{}\"];\n",
            dot_escape(&n.name),
            dot_escape(&network_lines(n).join("\n"))
        ));
    }
    for m in &env.machines {
        o.push_str(&format!(
            "  \"machine:{}\" [shape=box, label=\"{}\"];\n",
            dot_escape(&m.name),
            dot_escape(&machine_lines(m).join("\n"))
        ));
    }
    for l in links(env) {
        let (label, style) = if l.netboot { (format!("{}\nboot pxe", l.mac), ", style=bold") } else { (l.mac, "") };
        o.push_str(&format!(
            "  \"machine:{}\" -> \"net:{}\" [label=\"{}\"{style}];\n",
            dot_escape(&l.machine),
            dot_escape(&l.network),
            dot_escape(&label)
        ));
    }
    o.push_str("}\n");
    o
}

/// A Mermaid flowchart. Node ids are positional (`n0`, `m0`) so that any name is safe; names
/// appear only in quoted, escaped labels.
pub fn mermaid(env: &Env) -> String {
    let mut o = String::from("flowchart LR\n");
    let net_id = |name: &str| env.networks.iter().position(|n| n.name == name).map(|i| format!("n{i}"));
    for (i, n) in env.networks.iter().enumerate() {
        o.push_str(&format!("  n{i}([\"{}\"])\n", mermaid_escape(&network_lines(n).join("\n"))));
    }
    for (i, m) in env.machines.iter().enumerate() {
        o.push_str(&format!("  m{i}[\"{}\"]\n", mermaid_escape(&machine_lines(m).join("\n"))));
    }
    for l in links(env) {
        let (Some(m), Some(n)) = (env.machines.iter().position(|m| m.name == l.machine), net_id(&l.network)) else {
            continue;
        };
        if l.netboot {
            o.push_str(&format!("  m{m} ==>|\"{}\"| {n}\n", mermaid_escape(&format!("{} boot pxe", l.mac))));
        } else {
            o.push_str(&format!("  m{m} -->|\"{}\"| {n}\n", mermaid_escape(&l.mac)));
        }
    }
    o
}

/// `{"environment", "networks", "machines", "links"}` as pretty JSON, for scripts and tests.
pub fn json(env: &Env) -> String {
    let networks: Vec<_> = env
        .networks
        .iter()
        .map(|n| {
            json!({
                "name": n.name,
                "subnet": n.cidr(),
                "serve": n.serve.map(|s| s.as_str()),
                "dhcp_server": n.dhcp_server,
            })
        })
        .collect();
    let machines: Vec<_> = env
        .machines
        .iter()
        .map(|m| {
            let (profile, output) = match &m.source {
                Source::Profile(p) => (Some(stem(p)), None),
                Source::Output(d) => (None, Some(d.display().to_string())),
            };
            json!({
                "name": m.name,
                "boot": m.boot.as_str(),
                "firmware": m.firmware.as_str(),
                "profile": profile,
                "output": output,
                "mac": m.mac_string(),
                "networks": m.networks,
            })
        })
        .collect();
    let links: Vec<_> = links(env)
        .into_iter()
        .map(|l| json!({"machine": l.machine, "network": l.network, "mac": l.mac, "netboot": l.netboot}))
        .collect();
    let j = json!({"environment": env.name, "networks": networks, "machines": machines, "links": links});
    serde_json::to_string_pretty(&j).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::env::{Firmware, ServeMode};
    use std::path::PathBuf;
    use std::time::Duration;

    fn machine(name: &str, boot: Boot, source: Source, nets: &[&str], last: u8) -> Machine {
        Machine {
            name: name.into(),
            source,
            boot,
            firmware: Firmware::Uefi,
            arch: None,
            mac: [0x52, 0x54, 0, 0, 0, last],
            memory_mib: None,
            cpus: 1,
            networks: nets.iter().map(|s| s.to_string()).collect(),
            disks: vec![],
            nic: "virtio-net-pci".into(),
            append: vec![],
            config: None,
            ready_within: Duration::from_secs(1),
            checks: vec![],
        }
    }

    fn env() -> Env {
        Env {
            name: "lab \"one\"".into(),
            file: PathBuf::from("/e.toml"),
            networks: vec![
                Network {
                    name: "lan".into(),
                    subnet: "10.90.0.0".parse().unwrap(),
                    prefix: 24,
                    serve: Some(ServeMode::Dhcp),
                    dhcp_server: false,
                },
                Network {
                    name: "back\"end".into(),
                    subnet: "10.91.0.0".parse().unwrap(),
                    prefix: 16,
                    serve: None,
                    dhcp_server: true,
                },
            ],
            machines: vec![
                machine("web", Boot::Pxe, Source::Profile("/p/tiny.toml".into()), &["lan", "back\"end"], 0x10),
                machine("db|1", Boot::Usb, Source::Output("/o/db".into()), &["back\"end"], 0x20),
            ],
        }
    }

    #[test]
    fn links_are_one_per_nic_with_the_nic_mac_and_the_netboot_marked() {
        let l = links(&env());
        assert_eq!(
            l,
            [
                Link { machine: "web".into(), network: "lan".into(), mac: "52:54:00:00:00:10".into(), netboot: true },
                Link {
                    machine: "web".into(),
                    network: "back\"end".into(),
                    mac: "52:54:00:00:00:11".into(),
                    netboot: false
                },
                Link {
                    machine: "db|1".into(),
                    network: "back\"end".into(),
                    mac: "52:54:00:00:00:20".into(),
                    netboot: false
                },
            ]
        );
    }

    #[test]
    fn dot_quotes_and_escapes_names_and_labels_edges() {
        let d = dot(&env());
        assert!(d.starts_with("digraph \"lab \\\"one\\\"\" {\n"), "{d}");
        assert!(d.contains("\"net:lan\" [shape=ellipse, label=\"lan\\n10.90.0.0/24\\noa serve dhcp\"];"), "{d}");
        assert!(
            d.contains("\"net:back\\\"end\" [shape=ellipse, label=\"back\\\"end\\n10.91.0.0/16\\ndhcp server\"];"),
            "{d}"
        );
        assert!(
            d.contains(
                "\"machine:web\" [shape=box, label=\"web\\nboot pxe, uefi\\nprofile tiny\\n52:54:00:00:00:10\"];"
            ),
            "{d}"
        );
        assert!(d.contains("label=\"db|1\\nboot usb, uefi\\noutput db\\n52:54:00:00:00:20\""), "{d}");
        assert!(
            d.contains("\"machine:web\" -> \"net:lan\" [label=\"52:54:00:00:00:10\\nboot pxe\", style=bold];"),
            "{d}"
        );
        assert!(d.contains("\"machine:web\" -> \"net:back\\\"end\" [label=\"52:54:00:00:00:11\"];"), "{d}");
        assert_eq!(d.matches(" -> ").count(), 3);
        assert!(d.ends_with("}\n"));
    }

    #[test]
    fn mermaid_uses_positional_ids_and_escaped_labels() {
        let m = mermaid(&env());
        assert!(m.starts_with("flowchart LR\n"));
        assert!(m.contains("  n0([\"lan<br>10.90.0.0/24<br>oa serve dhcp\"])\n"), "{m}");
        assert!(m.contains("  n1([\"back#quot;end<br>10.91.0.0/16<br>dhcp server\"])\n"), "{m}");
        assert!(m.contains("  m1[\"db#124;1<br>boot usb, uefi<br>output db<br>52:54:00:00:00:20\"]\n"), "{m}");
        assert!(m.contains("  m0 ==>|\"52:54:00:00:00:10 boot pxe\"| n0\n"), "{m}");
        assert!(m.contains("  m0 -->|\"52:54:00:00:00:11\"| n1\n"), "{m}");
        assert!(m.contains("  m1 -->|\"52:54:00:00:00:20\"| n1\n"), "{m}");
    }

    #[test]
    fn json_has_networks_machines_and_links() {
        let j: serde_json::Value = serde_json::from_str(&json(&env())).unwrap();
        assert_eq!(j["environment"], "lab \"one\"");
        assert_eq!(
            j["networks"][0],
            json!({"name": "lan", "subnet": "10.90.0.0/24", "serve": "dhcp", "dhcp_server": false})
        );
        assert_eq!(j["networks"][1]["serve"], serde_json::Value::Null);
        assert_eq!(j["machines"][0]["profile"], "tiny");
        assert_eq!(j["machines"][0]["output"], serde_json::Value::Null);
        assert_eq!(j["machines"][1]["output"], "/o/db");
        assert_eq!(j["machines"][1]["boot"], "usb");
        assert_eq!(j["machines"][0]["mac"], "52:54:00:00:00:10");
        assert_eq!(j["links"].as_array().unwrap().len(), 3);
        assert_eq!(
            j["links"][0],
            json!({"machine": "web", "network": "lan", "mac": "52:54:00:00:00:10", "netboot": true})
        );
    }
}
