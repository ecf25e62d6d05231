//! `base = "debian"`: the base tree made by mmdebstrap from a Debian mirror (the profile's
//! `[debian] mirror`, else the one the host's apt uses), written as a tarball into the cache.

use crate::error::{Error, Result};
use crate::hash::Key;
use crate::profile::Profile;
use std::path::Path;
use std::process::{Command, Stdio};

/// Where the packages come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Source {
    pub mirror: String,
    pub suite: String,
}

impl Source {
    /// The profile's mirror/suite, else the host's.
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
        Ok(Source { mirror: mirror.trim_end_matches('/').to_string(), suite })
    }

    /// Everything the base tree depends on.
    pub fn add_to(&self, k: &mut Key, p: &Profile) {
        k.add("mirror", self.mirror.as_bytes()).add("suite", self.suite.as_bytes());
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

/// The first `deb` source of the host whose suites include `suite` (not a security or
/// updates suite): one-line `sources.list` entries and deb822 `.sources` files.
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
        let mut words = line.split_whitespace().filter(|w| !w.starts_with('['));
        if words.next() != Some("deb") {
            continue;
        }
        let (Some(uri), Some(s)) = (words.next(), words.next()) else { continue };
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

/// Run mmdebstrap into the tarball `out`.
pub fn bootstrap(p: &Profile, src: &Source, out: &Path, _cache_root: &Path) -> Result<()> {
    super::require_root("base = \"debian\" (mmdebstrap --mode=root)")?;
    if crate::tool::which("mmdebstrap").is_none() {
        return Err(Error::ToolMissing {
            tool: "mmdebstrap".into(),
            why: "not on PATH".into(),
            hint: "install the Debian package mmdebstrap (`make deps` does it)".into(),
        });
    }
    let mut c = Command::new("mmdebstrap");
    c.args(["--mode=root", "--format=tar", "--quiet"])
        .arg(format!("--variant={}", p.debian.variant))
        .arg(format!("--architectures={}", p.arch.debian()))
        .arg(format!("--components={}", p.debian.components.join(",")))
        .arg("--aptopt=Acquire::Retries \"2\"")
        .arg("--aptopt=Acquire::http::Timeout \"20\"");
    if !p.packages.debian.is_empty() {
        c.arg(format!("--include={}", p.packages.debian.join(",")));
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
            c.arg(format!("--dpkgopt={o}"));
        }
    }
    c.arg(&src.suite).arg(out).arg(&src.mirror).stdin(Stdio::null());
    let o = c.output().map_err(|e| Error::ToolMissing {
        tool: "mmdebstrap".into(),
        why: e.to_string(),
        hint: "make deps".into(),
    })?;
    if o.status.success() && out.is_file() {
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
                reason: format!("not available from {} {} (mmdebstrap: {})", src.mirror, src.suite, line.trim()),
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

    #[test]
    fn classifies_missing_package_and_mirror() {
        let src = Source { mirror: "http://m/debian".into(), suite: "bookworm".into() };
        let e = classify("E: Unable to locate package nosuchpkg\nE: apt-get install failed", &src).to_string();
        assert!(e.contains("nosuchpkg") && e.contains("http://m/debian"), "{e}");
        let e = classify("E: Failed to fetch http://m/debian/dists/bookworm/InRelease  Could not connect", &src)
            .to_string();
        assert!(e.contains("mirror http://m/debian"), "{e}");
    }
}
