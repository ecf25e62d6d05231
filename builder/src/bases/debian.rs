//! `base = "debian"`: the base tree made by mmdebstrap from a Debian mirror (the profile's
//! `[debian] mirror`, else the one the host's apt uses), written as a tarball into the cache.

use crate::error::{Error, IoContext, Result};
use crate::hash::Key;
use crate::profile::Profile;
use std::path::Path;
use std::process::{Command, Stdio};

/// Where the packages come from: the suite, `<suite>-updates` and the security suite.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Source {
    pub mirror: String,
    pub suite: String,
    /// Archive components of every entry.
    pub components: Vec<String>,
    /// `<suite>-updates` from [`Source::mirror`].
    pub updates: bool,
    /// The security suite from this mirror, when on.
    pub security: Option<String>,
}

/// Where the security suite is when neither the profile nor the host names a mirror for it.
pub const DEFAULT_SECURITY_MIRROR: &str = "http://deb.debian.org/debian-security";

/// The keyring apt in the image checks the Debian archives with (package debian-archive-keyring).
pub const ARCHIVE_KEYRING: &str = "/usr/share/keyrings/debian-archive-keyring.gpg";

/// The image's apt sources (deb822), written in place of mmdebstrap's one-line sources.list.
pub const IMAGE_SOURCES: &str = "etc/apt/sources.list.d/debian.sources";

/// Suites whose security archive is `<suite>/updates` (before bullseye).
const OLD_SECURITY_LAYOUT: &[&str] = &["buster", "stretch", "jessie", "wheezy", "squeeze"];

/// Suites without `-updates` and security suites: the base is made from the suite alone.
const ROLLING: &[&str] = &["sid", "unstable", "experimental", "rc-buggy"];

/// The security suite of `suite`: `<suite>-security` (bullseye and later), `<suite>/updates`
/// before.
pub fn security_suite(suite: &str) -> String {
    if OLD_SECURITY_LAYOUT.contains(&suite) {
        format!("{suite}/updates")
    } else {
        format!("{suite}-security")
    }
}

/// One apt source: a mirror and the suites taken from it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub uri: String,
    pub suites: Vec<String>,
}

impl Source {
    /// The profile's mirrors/suite, else the host's.
    pub fn resolve(p: &Profile) -> Result<Source> {
        let suite = match &p.debian.suite {
            Some(s) => s.clone(),
            None => host_codename().ok_or_else(|| {
                Error::Base("debian base: the host has no VERSION_CODENAME in /etc/os-release; set [debian] suite = \"bookworm\"".into())
            })?,
        };
        let mirror = match &p.debian.mirror {
            Some(m) => m.clone(),
            None => host_mirror(&suite).ok_or_else(|| {
                Error::Base(format!(
                    "debian base: the host's apt sources list no Debian mirror for `{suite}`; set [debian] mirror = \"http://deb.debian.org/debian\""
                ))
            })?,
        };
        let rolling = ROLLING.contains(&suite.as_str());
        let security = (p.debian.security && !rolling).then(|| {
            p.debian
                .security_mirror
                .clone()
                .or_else(|| host_mirror(&security_suite(&suite)))
                .unwrap_or_else(|| DEFAULT_SECURITY_MIRROR.to_string())
                .trim_end_matches('/')
                .to_string()
        });
        Ok(Source {
            mirror: mirror.trim_end_matches('/').to_string(),
            suite,
            components: p.debian.components.clone(),
            updates: p.debian.updates && !rolling,
            security,
        })
    }

    /// The apt sources, in order: the suite (and `-updates`) from the mirror, the security
    /// suite from its mirror (merged into the first entry when it is the same mirror).
    pub fn entries(&self) -> Vec<Entry> {
        let mut main = Entry { uri: self.mirror.clone(), suites: vec![self.suite.clone()] };
        if self.updates {
            main.suites.push(format!("{}-updates", self.suite));
        }
        let mut v = vec![main];
        if let Some(sec) = &self.security {
            let suite = security_suite(&self.suite);
            if *sec == self.mirror {
                v[0].suites.push(suite);
            } else {
                v.push(Entry { uri: sec.clone(), suites: vec![suite] });
            }
        }
        v
    }

    /// mmdebstrap's mirror arguments: one full `deb URI SUITE COMPONENTS` line per suite.
    pub fn mirror_args(&self) -> Vec<String> {
        let comps = self.components.join(" ");
        self.entries()
            .iter()
            .flat_map(|e| e.suites.iter().map(move |s| (e.uri.clone(), s.clone())))
            .map(|(uri, s)| format!("deb {uri} {s} {comps}"))
            .collect()
    }

    /// The image's `/etc/apt/sources.list.d/debian.sources` (deb822), with `Signed-By` when
    /// the image has the archive keyring.
    pub fn deb822(&self, signed_by: Option<&str>) -> String {
        let mut out = String::new();
        for e in self.entries() {
            if !out.is_empty() {
                out.push('\n');
            }
            out.push_str(&format!(
                "Types: deb\nURIs: {}\nSuites: {}\nComponents: {}\n",
                e.uri,
                e.suites.join(" "),
                self.components.join(" ")
            ));
            if let Some(k) = signed_by {
                out.push_str(&format!("Signed-By: {k}\n"));
            }
        }
        out
    }

    /// For people: `bookworm bookworm-updates bookworm-security from http://...`.
    pub fn describe(&self) -> String {
        self.entries().iter().map(|e| format!("{} from {}", e.suites.join(" "), e.uri)).collect::<Vec<_>>().join(", ")
    }

    /// Everything the base tree depends on.
    pub fn add_to(&self, k: &mut Key, p: &Profile) {
        k.add("mirror", self.mirror.as_bytes()).add("suite", self.suite.as_bytes());
        for line in self.mirror_args() {
            k.add("source", line.as_bytes());
        }
        k.add("variant", p.debian.variant.as_bytes()).add("arch", p.arch.debian().as_bytes());
        k.add("slim", &[p.debian.slim as u8]);
        for c in &p.debian.components {
            k.add("component", c.as_bytes());
        }
        let mut pkgs = p.packages.debian.clone();
        pkgs.sort();
        for pk in &pkgs {
            k.add("package", pk.as_bytes());
        }
    }
}

fn host_codename() -> Option<String> {
    let text = std::fs::read_to_string("/etc/os-release").ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix("VERSION_CODENAME="))
        .map(|v| v.trim_matches('"').to_string())
        .filter(|v| !v.is_empty())
}

/// The first `deb` source of the host whose suites include `suite` (`bookworm`, or a security
/// suite such as `bookworm-security`): one-line `sources.list` entries and deb822 `.sources`
/// files.
pub fn host_mirror(suite: &str) -> Option<String> {
    let mut files = vec![std::path::PathBuf::from("/etc/apt/sources.list")];
    if let Ok(rd) = std::fs::read_dir("/etc/apt/sources.list.d") {
        let mut v: Vec<_> = rd.flatten().map(|e| e.path()).collect();
        v.sort();
        files.extend(v);
    }
    for f in files {
        let Ok(text) = std::fs::read_to_string(&f) else { continue };
        let found = if f.extension().is_some_and(|e| e == "sources") {
            from_deb822(&text, suite)
        } else {
            from_one_line(&text, suite)
        };
        if found.is_some() {
            return found;
        }
    }
    None
}

fn from_one_line(text: &str, suite: &str) -> Option<String> {
    for line in text.lines() {
        let line = line.split('#').next().unwrap_or("").trim();
        let mut words = line.split_whitespace();
        if words.next() != Some("deb") {
            continue;
        }
        let mut uri = words.next();
        // Options: `[arch=amd64 signed-by=/usr/share/keyrings/x.gpg]`, one word or several.
        if uri.is_some_and(|w| w.starts_with('[')) {
            let mut w = uri;
            while w.is_some_and(|w| !w.ends_with(']')) {
                w = words.next();
            }
            uri = words.next();
        }
        let (Some(uri), Some(s)) = (uri, words.next()) else { continue };
        if s == suite {
            return Some(uri.to_string());
        }
    }
    None
}

fn from_deb822(text: &str, suite: &str) -> Option<String> {
    for stanza in text.split("\n\n") {
        let c = crate::deb::Control::parse(stanza);
        let types = c.get("Types").unwrap_or("");
        if !types.split_whitespace().any(|t| t == "deb") {
            continue;
        }
        if !c.get("Suites").unwrap_or("").split_whitespace().any(|s| s == suite) {
            continue;
        }
        if let Some(uri) = c.get("URIs").and_then(|u| u.split_whitespace().next()) {
            return Some(uri.to_string());
        }
    }
    None
}

/// The format of the package list (`packages.txt`): `name version arch`, one a line.
pub const DPKG_QUERY_FORMAT: &str = "${Package} ${Version} ${Architecture}\\n";

/// `s` quoted for a POSIX shell (mmdebstrap hooks are shell commands).
fn sh_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "'\\''"))
}

/// mmdebstrap's arguments for the profile: options, the suite, the tarball `out` and one
/// mirror line per suite; `sources` holds the image's apt sources with and without Signed-By
/// and `packages` is where the installed package list goes (both used by customize hooks).
pub fn mmdebstrap_args(p: &Profile, src: &Source, out: &Path, sources: [&Path; 2], packages: &Path) -> Vec<String> {
    let mut a: Vec<String> = vec!["--mode=root".into(), "--format=tar".into(), "--quiet".into()];
    a.push(format!("--variant={}", p.debian.variant));
    a.push(format!("--architectures={}", p.arch.debian()));
    a.push(format!("--components={}", p.debian.components.join(",")));
    a.push("--aptopt=Acquire::Retries \"2\"".into());
    a.push("--aptopt=Acquire::http::Timeout \"20\"".into());
    if !p.packages.debian.is_empty() {
        a.push(format!("--include={}", p.packages.debian.join(",")));
    }
    if p.debian.slim {
        for o in [
            "path-exclude=/usr/share/man/*",
            "path-exclude=/usr/share/info/*",
            "path-exclude=/usr/share/doc/*",
            "path-include=/usr/share/doc/*/copyright",
            "path-exclude=/usr/share/locale/*",
            "path-include=/usr/share/locale/locale.alias",
        ] {
            a.push(format!("--dpkgopt={o}"));
        }
    }
    // mmdebstrap writes the one-line sources it used to /etc/apt/sources.list, without
    // Signed-By: the image gets them as deb822 instead, signed by the archive keyring when
    // the tree has it.
    let (signed, unsigned) = (sh_quote(&sources[0].to_string_lossy()), sh_quote(&sources[1].to_string_lossy()));
    a.push(format!(
        "--customize-hook=rm -f \"$1/etc/apt/sources.list\" && mkdir -p \"$1/etc/apt/sources.list.d\" && \
         if [ -e \"$1{ARCHIVE_KEYRING}\" ]; then cp {signed} \"$1/{IMAGE_SOURCES}\"; else cp {unsigned} \"$1/{IMAGE_SOURCES}\"; fi && \
         chmod 0644 \"$1/{IMAGE_SOURCES}\""
    ));
    a.push(format!(
        "--customize-hook=dpkg-query --admindir=\"$1/var/lib/dpkg\" -W -f={} > {}",
        sh_quote(DPKG_QUERY_FORMAT),
        sh_quote(&packages.to_string_lossy())
    ));
    a.push(src.suite.clone());
    a.push(out.to_string_lossy().into_owned());
    a.extend(src.mirror_args());
    a
}

/// Run mmdebstrap into the tarball `out`, and write the installed packages to `packages`
/// (`name version arch`, sorted).
pub fn bootstrap(p: &Profile, src: &Source, out: &Path, packages: &Path) -> Result<()> {
    super::require_root("base = \"debian\" (mmdebstrap --mode=root)")?;
    if crate::tool::which("mmdebstrap").is_none() {
        return Err(Error::ToolMissing {
            tool: "mmdebstrap".into(),
            why: "not on PATH".into(),
            hint: "install the Debian package mmdebstrap (`make deps` does it)".into(),
        });
    }
    let dir = out.parent().unwrap_or(Path::new("."));
    let sources = [dir.join("debian.sources.signed"), dir.join("debian.sources.unsigned")];
    std::fs::write(&sources[0], src.deb822(Some(ARCHIVE_KEYRING))).ctx("writing", &sources[0])?;
    std::fs::write(&sources[1], src.deb822(None)).ctx("writing", &sources[1])?;
    let mut c = Command::new("mmdebstrap");
    c.args(mmdebstrap_args(p, src, out, [&sources[0], &sources[1]], packages)).stdin(Stdio::null());
    let o = c.output().map_err(|e| Error::ToolMissing {
        tool: "mmdebstrap".into(),
        why: e.to_string(),
        hint: "make deps".into(),
    });
    for s in &sources {
        let _ = std::fs::remove_file(s);
    }
    let o = o?;
    if o.status.success() && out.is_file() && packages.is_file() {
        let text = std::fs::read_to_string(packages).ctx("reading", packages)?;
        let mut lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
        lines.sort();
        let mut sorted = lines.join("\n");
        sorted.push('\n');
        std::fs::write(packages, sorted).ctx("writing", packages)?;
        return Ok(());
    }
    let mut text = String::from_utf8_lossy(&o.stdout).to_string();
    text.push_str(&String::from_utf8_lossy(&o.stderr));
    Err(classify(&text, src))
}

/// Turn mmdebstrap's output into an error that names the package or the mirror.
pub fn classify(text: &str, src: &Source) -> Error {
    for marker in ["Unable to locate package ", "Package '", "has no installation candidate"] {
        if let Some(line) = text.lines().find(|l| l.contains(marker)) {
            let name = if let Some(rest) = line.split("Unable to locate package ").nth(1) {
                rest.split_whitespace().next().unwrap_or("?").to_string()
            } else {
                line.split('\'').nth(1).unwrap_or("?").to_string()
            };
            return Error::Package {
                package: name,
                reason: format!("not available from {} (mmdebstrap: {})", src.describe(), line.trim()),
            };
        }
    }
    let unreachable = [
        "Failed to fetch",
        "Could not connect",
        "Could not resolve",
        "Connection failed",
        "Temporary failure resolving",
        "apt-get update",
    ];
    if unreachable.iter().any(|m| text.contains(m)) {
        return Error::Base(format!(
            "debian base: mirror {} (suite {}) is unreachable or has no such suite; check [debian] mirror/suite or the network:\n{}",
            src.mirror,
            src.suite,
            super::tail(text, 6)
        ));
    }
    Error::Base(format!("debian base: mmdebstrap from {} {} failed:\n{}", src.mirror, src.suite, super::tail(text, 12)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_mirror_in_both_formats() {
        let one = "# x\ndeb http://deb.debian.org/debian bookworm main\ndeb http://security.debian.org/debian-security bookworm-security main\n";
        assert_eq!(from_one_line(one, "bookworm").as_deref(), Some("http://deb.debian.org/debian"));
        let d822 = "Types: deb\nURIs: http://deb.debian.org/debian-security\nSuites: bookworm-security\nComponents: main\n\nTypes: deb\nURIs: http://m.example/debian\nSuites: bookworm bookworm-updates\nComponents: main\n";
        assert_eq!(from_deb822(d822, "bookworm").as_deref(), Some("http://m.example/debian"));
        assert_eq!(from_deb822(d822, "trixie"), None);
    }

    fn source(suite: &str, updates: bool, security: Option<&str>) -> Source {
        Source {
            mirror: "http://m/debian".into(),
            suite: suite.into(),
            components: vec!["main".into(), "contrib".into()],
            updates,
            security: security.map(String::from),
        }
    }

    #[test]
    fn finds_the_security_mirror_of_the_host_layout() {
        // The host here: deb822 with the suite and -updates on one mirror, -security on another.
        let d822 = "Types: deb\n# http://snapshot.debian.org/archive/debian/20250520T000000Z\nURIs: http://deb.debian.org/debian\nSuites: bookworm bookworm-updates\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n\nTypes: deb\nURIs: http://deb.debian.org/debian-security\nSuites: bookworm-security\nComponents: main\n";
        assert_eq!(from_deb822(d822, "bookworm").as_deref(), Some("http://deb.debian.org/debian"));
        assert_eq!(from_deb822(d822, "bookworm-security").as_deref(), Some("http://deb.debian.org/debian-security"));
        let one = "deb [arch=amd64 signed-by=/k.gpg] http://deb.debian.org/debian bullseye main\ndeb http://security.debian.org/debian-security bullseye-security main\ndeb http://security.debian.org/ buster/updates main\n";
        assert_eq!(from_one_line(one, "bullseye").as_deref(), Some("http://deb.debian.org/debian"));
        assert_eq!(
            from_one_line(one, &security_suite("bullseye")).as_deref(),
            Some("http://security.debian.org/debian-security")
        );
        assert_eq!(from_one_line(one, &security_suite("buster")).as_deref(), Some("http://security.debian.org/"));
    }

    #[test]
    fn sid_is_used_alone() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../profiles/debian-ssh.toml");
        let mut p = crate::profile::load(&path).unwrap().profile;
        p.debian.suite = Some("sid".into());
        p.debian.mirror = Some("http://m/debian/".into());
        let s = Source::resolve(&p).unwrap();
        assert_eq!(s.mirror_args(), ["deb http://m/debian sid main"]);
        p.debian.suite = Some("trixie".into());
        p.debian.security_mirror = Some("http://s/debian-security".into());
        let s = Source::resolve(&p).unwrap();
        assert_eq!(
            s.mirror_args(),
            [
                "deb http://m/debian trixie main",
                "deb http://m/debian trixie-updates main",
                "deb http://s/debian-security trixie-security main"
            ]
        );
        p.debian.updates = false;
        p.debian.security = false;
        assert_eq!(Source::resolve(&p).unwrap().mirror_args(), ["deb http://m/debian trixie main"]);
    }

    #[test]
    fn security_suite_follows_the_release_layout() {
        assert_eq!(security_suite("bookworm"), "bookworm-security");
        assert_eq!(security_suite("trixie"), "trixie-security");
        assert_eq!(security_suite("bullseye"), "bullseye-security");
        assert_eq!(security_suite("buster"), "buster/updates");
    }

    #[test]
    fn mirror_lines_and_image_sources_list_every_suite() {
        let s = source("bookworm", true, Some("http://m/debian-security"));
        assert_eq!(
            s.mirror_args(),
            [
                "deb http://m/debian bookworm main contrib",
                "deb http://m/debian bookworm-updates main contrib",
                "deb http://m/debian-security bookworm-security main contrib",
            ]
        );
        assert_eq!(
            s.deb822(Some(ARCHIVE_KEYRING)),
            "Types: deb\nURIs: http://m/debian\nSuites: bookworm bookworm-updates\nComponents: main contrib\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n\n\
             Types: deb\nURIs: http://m/debian-security\nSuites: bookworm-security\nComponents: main contrib\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n"
        );
        assert!(!s.deb822(None).contains("Signed-By"));
        // A pinned build: the suite alone.
        let pinned = source("bookworm", false, None);
        assert_eq!(pinned.mirror_args(), ["deb http://m/debian bookworm main contrib"]);
        assert_eq!(pinned.entries().len(), 1);
        // The security suite on the same mirror goes into the same deb822 stanza.
        let same = source("buster", true, Some("http://m/debian"));
        assert_eq!(
            same.entries(),
            [Entry {
                uri: "http://m/debian".into(),
                suites: vec!["buster".into(), "buster-updates".into(), "buster/updates".into()]
            }]
        );
    }

    #[test]
    fn mmdebstrap_gets_every_source_and_the_hooks() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../profiles/debian-ssh.toml");
        let p = crate::profile::load(&path).unwrap().profile;
        assert!(p.debian.updates && p.debian.security, "updates and security are on by default");
        let s = source("bookworm", true, Some("http://m/debian-security"));
        let a = mmdebstrap_args(
            &p,
            &s,
            Path::new("/c/base.tar"),
            [Path::new("/c/signed"), Path::new("/c/it's")],
            Path::new("/c/packages.txt"),
        );
        let tail: Vec<&str> = a[a.len() - 5..].iter().map(String::as_str).collect();
        assert_eq!(
            tail,
            [
                "bookworm",
                "/c/base.tar",
                "deb http://m/debian bookworm main contrib",
                "deb http://m/debian bookworm-updates main contrib",
                "deb http://m/debian-security bookworm-security main contrib",
            ]
        );
        assert!(a.contains(&"--include=systemd-sysv,udev,openssh-server,iproute2".to_string()), "{a:?}");
        let hooks: Vec<&String> = a.iter().filter(|x| x.starts_with("--customize-hook=")).collect();
        assert_eq!(hooks.len(), 2, "{hooks:?}");
        assert!(hooks[0].contains("cp '/c/signed' \"$1/etc/apt/sources.list.d/debian.sources\""), "{}", hooks[0]);
        assert!(hooks[0].contains("'/c/it'\\''s'"), "quoted for the shell: {}", hooks[0]);
        assert!(hooks[0].contains("rm -f \"$1/etc/apt/sources.list\""), "{}", hooks[0]);
        assert!(
            hooks[1].ends_with("dpkg-query --admindir=\"$1/var/lib/dpkg\" -W -f='${Package} ${Version} ${Architecture}\\n' > '/c/packages.txt'"),
            "{}",
            hooks[1]
        );
    }

    #[test]
    fn classifies_missing_package_and_mirror() {
        let src = source("bookworm", true, Some("http://m/debian-security"));
        let e = classify("E: Unable to locate package nosuchpkg\nE: apt-get install failed", &src).to_string();
        assert!(e.contains("nosuchpkg") && e.contains("http://m/debian"), "{e}");
        let e = classify("E: Failed to fetch http://m/debian/dists/bookworm/InRelease  Could not connect", &src)
            .to_string();
        assert!(e.contains("mirror http://m/debian"), "{e}");
    }
}
