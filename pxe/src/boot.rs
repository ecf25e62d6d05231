//! What each client boots: the boot file by client architecture (DHCP option 93) and the
//! iPXE user class, the generated iPXE script, and per-MAC overrides. Pure functions over the
//! [`Config`], unit-tested.

use std::path::{Path, PathBuf};

use oa_contract::cmdline::{self, Cmdline, RootSpec};

use crate::config::{names, Config};
use crate::mac::Mac;

/// RFC 4578 / IANA processor architecture types (DHCP option 93).
pub mod arch {
    pub const BIOS: u16 = 0;
    pub const EFI_IA32: u16 = 6;
    pub const EFI_BC: u16 = 7;
    pub const EFI_X64: u16 = 9;
    pub const EFI_ARM64: u16 = 11;
    pub const EFI_X64_HTTP: u16 = 16;
    pub const EFI_ARM64_HTTP: u16 = 19;

    pub fn name(a: u16) -> &'static str {
        match a {
            BIOS => "BIOS",
            EFI_IA32 => "UEFI ia32",
            EFI_BC | EFI_X64 => "UEFI x64",
            EFI_ARM64 => "UEFI arm64",
            EFI_X64_HTTP => "UEFI x64 HTTP",
            EFI_ARM64_HTTP => "UEFI arm64 HTTP",
            _ => "unknown",
        }
    }
}

/// What kind of client sent a DHCP request, from its options.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Client {
    pub mac: Option<Mac>,
    /// Option 93, when sent.
    pub arch: Option<u16>,
    /// Option 60 starts with `PXEClient`.
    pub pxe: bool,
    /// Option 60 starts with `HTTPClient` (UEFI HTTP boot).
    pub http: bool,
    /// Option 77 is `iPXE`: already running iPXE, give it the script.
    pub ipxe: bool,
    /// A Raspberry Pi bootloader (see [`crate::rpi::detect`]).
    pub rpi: Option<crate::rpi::Model>,
    /// Option 77 holds [`oa_contract::dhcp::BOOT_SERVER_USER_CLASS`]: oa-init asking which
    /// host is its boot server (not a netboot client: it has booted already).
    pub asks_boot_server: bool,
}

impl Client {
    /// A client we have something to boot for.
    pub fn netboots(&self) -> bool {
        self.pxe || self.http || self.ipxe
    }
}

/// The boot file handed to a client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// A file name for TFTP from this server (DHCP `file` + siaddr).
    Tftp(String),
    /// An HTTP URL (iPXE script, or a UEFI HTTP boot binary).
    Http(String),
}

impl Answer {
    pub fn file(&self) -> &str {
        match self {
            Answer::Tftp(f) | Answer::Http(f) => f,
        }
    }
}

impl std::fmt::Display for Answer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Answer::Tftp(n) => write!(f, "tftp {n}"),
            Answer::Http(u) => write!(f, "{u}"),
        }
    }
}

/// One machine's overrides: `<machines>/<aa-bb-cc-dd-ee-ff>.toml`.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Override {
    /// Do not answer this machine at all.
    #[serde(default)]
    pub ignore: bool,
    /// Boot another `oa build` output folder (served under /m/<mac>/), absolute or relative
    /// to the machines folder.
    pub output: Option<PathBuf>,
    /// Extra kernel command line words for this machine.
    #[serde(default)]
    pub append: Vec<String>,
    /// A run-time configuration file (relative to the machines folder) served at
    /// /config/<mac> and passed as `oa.config=`.
    pub config: Option<PathBuf>,
    /// A whole iPXE script instead of the generated one.
    pub script: Option<String>,
}

impl Override {
    /// Read the override of `mac` from `dir`; `Ok(None)` when there is none.
    pub fn load(dir: &Path, mac: Mac) -> Result<Option<Override>, String> {
        let p = dir.join(format!("{}.toml", mac.dashed()));
        let text = match std::fs::read_to_string(&p) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(format!("{}: {e}", p.display())),
        };
        let mut o: Override = toml::from_str(&text).map_err(|e| format!("{}: {e}", p.display()))?;
        if let Some(out) = &o.output {
            o.output = Some(dir.join(out));
        }
        if let Some(c) = &o.config {
            o.config = Some(dir.join(c));
        }
        Ok(Some(o))
    }
}

/// The boot file for `client`, or why it gets none.
pub fn select(cfg: &Config, client: &Client) -> Result<Answer, String> {
    let base = cfg.http_base();
    if client.rpi.is_some() {
        // The Pi 3 boot ROM asks for this name; the Pi 4/5 bootloaders ignore it and ask for
        // `<serial>/start4.elf` (served from the rpi/ tree).
        return Ok(Answer::Tftp("bootcode.bin".into()));
    }
    if client.ipxe {
        let script = match client.mac {
            Some(m) => format!("{base}/boot/{}.ipxe", m.dashed()),
            None => format!("{base}/{}", names::SCRIPT),
        };
        return Ok(Answer::Http(script));
    }
    // Secure netboot (a signed-UKI output): every UEFI PXE client of the output's architecture
    // gets Debian's Microsoft-signed shim, which firmware with Secure Boot accepts (and one with
    // it off runs too); iPXE, which Debian does not sign, only for BIOS. UEFI HTTP boot clients
    // get the signed UKI itself, checked by the firmware against db: shim runs over HTTP, but
    // Debian 12's network GRUB (2.06) finds no network after an HTTP boot (it reads the PXE
    // base code's DHCP packet, which HTTP boot does not fill) and stops at its prompt.
    if let Some(sb) = cfg.secure_netboot() {
        let (pxe, http) = match cfg.manifest.arch {
            oa_contract::Arch::X86_64 => (&[arch::EFI_BC, arch::EFI_X64][..], arch::EFI_X64_HTTP),
            oa_contract::Arch::Aarch64 => (&[arch::EFI_ARM64][..], arch::EFI_ARM64_HTTP),
        };
        match client.arch {
            Some(a) if pxe.contains(&a) => return Ok(Answer::Tftp(sb.shim.into())),
            Some(a) if a == http => {
                return Ok(Answer::Http(format!("{base}/{}", oa_contract::manifest::artifact::SB_UKI)))
            }
            _ => {}
        }
    }
    match client.arch {
        None | Some(arch::BIOS) => Ok(Answer::Tftp(names::BIOS.into())),
        Some(arch::EFI_BC) | Some(arch::EFI_X64) => Ok(Answer::Tftp(names::UEFI_X64.into())),
        Some(arch::EFI_X64_HTTP) => Ok(Answer::Http(format!("{base}/{}", names::UEFI_X64))),
        Some(arch::EFI_ARM64) if cfg.boot_files.uefi_arm64.is_some() => Ok(Answer::Tftp(names::UEFI_ARM64.into())),
        Some(arch::EFI_ARM64_HTTP) if cfg.boot_files.uefi_arm64.is_some() => {
            Ok(Answer::Http(format!("{base}/{}", names::UEFI_ARM64)))
        }
        Some(a) => {
            Err(format!("no iPXE build for client architecture {a} ({}); arm64 needs --ipxe-arm64, or an arm64 secure netboot output ([secure_boot] mode = \"uki\" with netboot)", arch::name(a)))
        }
    }
}

/// The iPXE script for a machine: kernel and initramfs over HTTP, the root image URL and the
/// manifest's command line (with its `oa.sha256=`), plus the operator's and the machine's words.
pub fn script(cfg: &Config, mac: Option<Mac>, ov: Option<&Override>) -> String {
    if let Some(s) = ov.and_then(|o| o.script.clone()) {
        return s;
    }
    let base = cfg.http_base();
    let (prefix, cmdline) = match (mac, ov.and_then(|o| o.output.as_ref())) {
        (Some(m), Some(out)) => {
            let c = crate::config::Config { ..cfg.clone() };
            let words = read_manifest_cmdline(out).unwrap_or(c.cmdline);
            (format!("{base}/m/{}", m.dashed()), words)
        }
        _ => (base.clone(), cfg.cmdline.clone()),
    };
    // initrd= and oa.root= first, then the manifest's words (without its own oa.root=).
    let mut words = Cmdline::new();
    words.push(format!("initrd={}", oa_contract::manifest::artifact::INITRAMFS));
    words.set_root(&RootSpec::Http(format!("{prefix}/{}", oa_contract::manifest::artifact::ROOTFS)));
    let mut rest = Cmdline::from_words(cmdline);
    rest.remove(cmdline::ROOT);
    words.extend(rest);
    if let Some(o) = ov {
        if let (Some(m), Some(_)) = (mac, &o.config) {
            words.push(cmdline::word(cmdline::CONFIG, format!("{base}/config/{}", m.dashed())));
        }
        words.extend(Cmdline::from_words(o.append.iter().cloned()));
    }
    let who = mac.map(|m| m.to_string()).unwrap_or_else(|| "any machine".into());
    format!(
        "#!ipxe\n# oa: {profile} for {who}\necho oa: booting {profile} from {base}\nkernel {prefix}/{k} {cmd}\ninitrd {prefix}/{i}\nboot\n",
        profile = cfg.manifest.profile,
        k = oa_contract::manifest::artifact::KERNEL,
        i = oa_contract::manifest::artifact::INITRAMFS,
        cmd = words,
    )
}

fn read_manifest_cmdline(out: &Path) -> Option<Vec<String>> {
    let t = std::fs::read_to_string(out.join(oa_contract::manifest::FILE_NAME)).ok()?;
    serde_json::from_str::<oa_contract::manifest::Manifest>(&t).ok().map(|m| m.cmdline)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::config::{BootFiles, Mode};
    use oa_contract::manifest::artifact;
    use oa_contract::manifest::Manifest;

    pub fn cfg() -> Config {
        Config {
            root: "/srv".into(),
            manifest: Manifest {
                schema: 1,
                profile: "tiny".into(),
                arch: oa_contract::Arch::X86_64,
                kernel_release: "6.1".into(),
                cmdline: vec!["console=ttyS0".into(), cmdline::word(cmdline::SHA256, "a".repeat(64))],
                artifacts: vec![],
                builder: "t".into(),
                key_material: vec![],
            },
            address: "10.0.0.1".parse().unwrap(),
            interface: None,
            mode: Mode::Proxy,
            bind: "0.0.0.0".parse().unwrap(),
            dhcp_port: 67,
            proxy_port: 4011,
            client_port: 68,
            tftp_port: 69,
            http_port: 8080,
            boot_files: BootFiles { bios: "/b/undionly.kpxe".into(), uefi_x64: "/b/ipxe.efi".into(), uefi_arm64: None },
            cmdline: vec!["console=ttyS0".into(), cmdline::word(cmdline::SHA256, "a".repeat(64))],
            machines: None,
            relays: vec![],
            limits: crate::config::Limits { tftp_transfers: 16, ..Default::default() },
            sign_key: None,
        }
    }

    fn client(arch: Option<u16>, ipxe: bool) -> Client {
        Client {
            mac: Some(Mac([0x52, 0x54, 0, 1, 2, 3])),
            arch,
            pxe: true,
            http: false,
            ipxe,
            rpi: None,
            asks_boot_server: false,
        }
    }

    #[test]
    fn boot_file_by_arch() {
        let c = cfg();
        assert_eq!(select(&c, &client(Some(arch::BIOS), false)), Ok(Answer::Tftp("undionly.kpxe".into())));
        assert_eq!(select(&c, &client(None, false)), Ok(Answer::Tftp("undionly.kpxe".into())));
        assert_eq!(select(&c, &client(Some(arch::EFI_BC), false)), Ok(Answer::Tftp("ipxe.efi".into())));
        assert_eq!(select(&c, &client(Some(arch::EFI_X64), false)), Ok(Answer::Tftp("ipxe.efi".into())));
        assert_eq!(
            select(&c, &client(Some(arch::EFI_X64_HTTP), false)),
            Ok(Answer::Http("http://10.0.0.1:8080/ipxe.efi".into()))
        );
        assert!(select(&c, &client(Some(arch::EFI_ARM64), false)).is_err());
        let mut c2 = cfg();
        c2.boot_files.uefi_arm64 = Some("/x".into());
        assert_eq!(select(&c2, &client(Some(arch::EFI_ARM64), false)), Ok(Answer::Tftp("ipxe-arm64.efi".into())));
    }

    fn with_artifact(mut c: Config, name: &str) -> Config {
        c.manifest.artifacts.push(oa_contract::manifest::Artifact {
            name: name.into(),
            path: name.into(),
            size: 1,
            sha256: "0".repeat(64),
        });
        c
    }

    #[test]
    fn a_signed_uki_output_gives_uefi_pxe_clients_shim_http_clients_the_uki_and_bios_clients_ipxe() {
        let c = with_artifact(cfg(), artifact::SB_X64.shim);
        assert_eq!(c.secure_netboot(), Some(artifact::SB_X64));
        for a in [arch::EFI_BC, arch::EFI_X64] {
            assert_eq!(select(&c, &client(Some(a), false)), Ok(Answer::Tftp("sb/shimx64.efi".into())));
        }
        assert_eq!(
            select(&c, &client(Some(arch::EFI_X64_HTTP), false)),
            Ok(Answer::Http("http://10.0.0.1:8080/sb/oa.efi".into()))
        );
        assert_eq!(select(&c, &client(Some(arch::BIOS), false)), Ok(Answer::Tftp("undionly.kpxe".into())));
        assert!(select(&c, &client(Some(arch::EFI_ARM64), false)).is_err());
        assert_eq!(cfg().secure_netboot(), None);
    }

    #[test]
    fn an_arm64_signed_uki_output_gives_arm64_uefi_clients_the_arm64_shim() {
        let mut c = cfg();
        c.manifest.arch = oa_contract::Arch::Aarch64;
        let c = with_artifact(c, artifact::SB_AA64.shim);
        assert_eq!(c.secure_netboot(), Some(artifact::SB_AA64));
        assert_eq!(select(&c, &client(Some(arch::EFI_ARM64), false)), Ok(Answer::Tftp("sb/shimaa64.efi".into())));
        assert_eq!(
            select(&c, &client(Some(arch::EFI_ARM64_HTTP), false)),
            Ok(Answer::Http("http://10.0.0.1:8080/sb/oa.efi".into()))
        );
        // An x86-64 shim listed in an arm64 manifest is not this output's chain.
        let mut x = cfg();
        x.manifest.arch = oa_contract::Arch::Aarch64;
        assert_eq!(with_artifact(x, artifact::SB_X64.shim).secure_netboot(), None);
    }

    #[test]
    fn ipxe_gets_the_script_url_whatever_the_arch() {
        let c = cfg();
        for a in [None, Some(arch::BIOS), Some(arch::EFI_X64)] {
            assert_eq!(
                select(&c, &client(a, true)),
                Ok(Answer::Http("http://10.0.0.1:8080/boot/52-54-00-01-02-03.ipxe".into()))
            );
        }
    }

    #[test]
    fn script_loads_kernel_initrd_and_root_over_http() {
        let c = cfg();
        let s = script(&c, None, None);
        assert!(s.starts_with("#!ipxe\n"));
        assert!(s.contains("kernel http://10.0.0.1:8080/vmlinuz initrd=initramfs.img oa.root=http://10.0.0.1:8080/rootfs.squashfs console=ttyS0 oa.sha256=aaaa"));
        assert!(s.contains("\ninitrd http://10.0.0.1:8080/initramfs.img\n"));
        assert!(s.ends_with("boot\n"));
    }

    #[test]
    fn overrides_add_words_config_and_scripts() {
        let c = cfg();
        let mac = Mac([0x52, 0x54, 0, 1, 2, 3]);
        let o =
            Override { append: vec![cmdline::DEBUG.into()], config: Some("/m/c.json".into()), ..Default::default() };
        let s = script(&c, Some(mac), Some(&o));
        let words = format!(
            "{} {}\n",
            cmdline::word(cmdline::CONFIG, "http://10.0.0.1:8080/config/52-54-00-01-02-03"),
            cmdline::DEBUG
        );
        assert!(
            s.contains(&format!("console=ttyS0 {} {words}", cmdline::word(cmdline::SHA256, "a".repeat(64)))),
            "{s}"
        );
        let o = Override { script: Some("#!ipxe\nshell\n".into()), ..Default::default() };
        assert_eq!(script(&c, Some(mac), Some(&o)), "#!ipxe\nshell\n");
        let t = tempfile::tempdir().unwrap();
        std::fs::write(t.path().join("52-54-00-01-02-03.toml"), "append = [\"x=1\"]\noutput = \"../other\"\n").unwrap();
        let o = Override::load(t.path(), mac).unwrap().unwrap();
        assert_eq!(o.append, vec!["x=1"]);
        assert_eq!(o.output, Some(t.path().join("../other")));
        assert_eq!(Override::load(t.path(), Mac([1; 6])).unwrap(), None);
        std::fs::write(t.path().join("01-01-01-01-01-01.toml"), "bogus = 1\n").unwrap();
        assert!(Override::load(t.path(), Mac([1; 6])).is_err());
    }
}
