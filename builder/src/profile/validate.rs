//! Semantic checks: per file (with positions) and on the merged profile; defaults.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::error::{Location, ProfileError};
use super::{
    Arch, Base, Image, Init, Kernel, KeySource, Packages, PartialProfile, Persistence, Profile, Qemu, Rpi, SecureBoot,
    SecureBootMode, Service, SetList, DEFAULT_MEMORY_MIB, MAX_PARTITION_MIB, MIN_ESP_MIB, MIN_MEMORY_MIB,
};
use oa_contract::config;

/// One step of a path into a TOML document, for pointing errors at the right place.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Seg<'a> {
    /// The value under a key.
    Key(&'a str),
    /// The key itself (for errors about a key, such as a bad service name).
    KeyName(&'a str),
    /// The array element whose string value is this.
    Elem(&'a str),
    /// The array element at this index.
    Index(usize),
}

/// A profile file's text and its span-carrying parse, to locate values.
pub(crate) struct Source<'a> {
    pub path: &'a Path,
    pub text: &'a str,
    doc: Option<toml_edit::ImDocument<&'a str>>,
}

impl<'a> Source<'a> {
    pub fn new(path: &'a Path, text: &'a str) -> Self {
        Source { path, text, doc: toml_edit::ImDocument::parse(text).ok() }
    }

    /// The location of the value at `segs`, or of the deepest part of it that exists.
    pub fn at(&self, segs: &[Seg<'_>]) -> Location {
        let Some(doc) = &self.doc else {
            return Location::file(self.path);
        };
        let mut item: &toml_edit::Item = doc.as_item();
        let mut best: Option<std::ops::Range<usize>> = None;
        for seg in segs {
            let next = match *seg {
                Seg::Key(k) => item.get(k),
                Seg::KeyName(k) => {
                    if let Some(span) = item.as_table_like().and_then(|t| t.key(k)).and_then(|k| k.span()) {
                        best = Some(span);
                    }
                    break;
                }
                Seg::Index(i) => item.get(i),
                Seg::Elem(v) => {
                    item.as_array().and_then(|a| a.iter().position(|x| x.as_str() == Some(v))).and_then(|i| item.get(i))
                }
            };
            match next {
                Some(n) => {
                    item = n;
                    if let Some(span) = n.span() {
                        best = Some(span);
                    }
                }
                None => break,
            }
        }
        Location::from_span(self.path, self.text, best)
    }

    fn invalid(&self, segs: &[Seg<'_>], message: impl Into<String>) -> ProfileError {
        ProfileError::Invalid { at: self.at(segs), message: message.into() }
    }
}

/// RFC 1123 host name: dot-separated labels of 1..=63 letters, digits and `-`, not starting
/// or ending with `-`; at most 253 characters.
pub fn is_valid_hostname(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        })
}

/// Service names: `[a-z0-9][a-z0-9_-]*`, at most 64 characters.
pub fn is_valid_service_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    matches!(bytes.next(), Some(b) if b.is_ascii_lowercase() || b.is_ascii_digit())
        && name.len() <= 64
        && bytes.all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
}

/// Profile names (used as output directory names): `[A-Za-z0-9][A-Za-z0-9._-]*`.
pub fn is_valid_profile_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    matches!(bytes.next(), Some(b) if b.is_ascii_alphanumeric())
        && name.len() <= 64
        && bytes.all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// Debian package names (policy 5.6.7) with an optional `:arch` qualifier.
pub fn is_valid_debian_package(name: &str) -> bool {
    let (pkg, arch) = match name.split_once(':') {
        Some((p, a)) => (p, Some(a)),
        None => (name, None),
    };
    let mut bytes = pkg.bytes();
    let pkg_ok = pkg.len() >= 2
        && matches!(bytes.next(), Some(b) if b.is_ascii_lowercase() || b.is_ascii_digit())
        && bytes.all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'+' | b'-' | b'.'));
    let arch_ok = match arch {
        None => true,
        Some(a) => !a.is_empty() && a.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-'),
    };
    pkg_ok && arch_ok
}

fn is_valid_module_name(name: &str) -> bool {
    !name.is_empty() && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

fn is_valid_env_key(key: &str) -> bool {
    let mut bytes = key.bytes();
    matches!(bytes.next(), Some(b) if b.is_ascii_alphabetic() || b == b'_')
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

/// Check one file's values and resolve its overlay paths (relative to the file's directory)
/// to canonical absolute paths.
pub(crate) fn check_file(src: &Source<'_>, part: &mut PartialProfile) -> Result<(), ProfileError> {
    check_names(src, part)?;
    resolve_overlays(src, part)?;
    check_kernel(src, part)?;
    check_packages(src, part)?;
    check_services(src, part)?;
    check_qemu(src, part)?;
    check_image(src, part)?;
    resolve_secure_boot(src, part)
}

/// `[secure_boot]` key, cert, config_key and sign_key: absolute, relative to the file naming
/// them. Whether they exist and match is checked when a build uses them (a profile can be shown without its keys).
fn resolve_secure_boot(src: &Source<'_>, part: &mut PartialProfile) -> Result<(), ProfileError> {
    use Seg::*;
    let dir = src.path.parent().unwrap_or(Path::new("/")).to_path_buf();
    let sb = &mut part.secure_boot;
    for (name, v, made) in [
        ("key", &mut sb.key, "the PEM file (`oa keys init DIR` makes DIR/db.key)"),
        ("cert", &mut sb.cert, "the PEM file (`oa keys init DIR` makes DIR/db.crt)"),
        ("config_key", &mut sb.config_key, "the minisign public key (`oa keys init DIR` makes DIR/minisign.pub)"),
        ("sign_key", &mut sb.sign_key, "the minisign secret key (`oa keys init DIR` makes DIR/minisign.key)"),
    ] {
        if let Some(k) = v.as_mut() {
            if k.is_empty() {
                return Err(src.invalid(
                    &[Key("secure_boot"), Key(name)],
                    format!("secure_boot.{name} is empty: give the path of {made}"),
                ));
            }
            *k = dir.join(&*k).to_string_lossy().into_owned();
        }
    }
    Ok(())
}

/// The profile name and the hostname.
fn check_names(src: &Source<'_>, part: &PartialProfile) -> Result<(), ProfileError> {
    use Seg::*;
    if let Some(name) = &part.name {
        if !is_valid_profile_name(name) {
            return Err(src.invalid(
                &[Key("name")],
                format!(
                    "invalid profile name `{name}`: use letters, digits, `.`, `_` and `-`, \
                     starting with a letter or digit (it names the output directory)"
                ),
            ));
        }
    }
    if let Some(h) = &part.hostname {
        if !is_valid_hostname(h) {
            return Err(src.invalid(
                &[Key("hostname")],
                format!(
                    "invalid hostname `{h}`: use labels of 1 to 63 letters, digits and `-` \
                     (not at the start or end of a label), separated by dots (RFC 1123)"
                ),
            ));
        }
    }

    Ok(())
}

/// Overlays: relative to this file's directory, must be existing directories; resolved to
/// canonical absolute paths.
fn resolve_overlays(src: &Source<'_>, part: &mut PartialProfile) -> Result<(), ProfileError> {
    use Seg::*;
    let dir = src.path.parent().unwrap_or(Path::new("/"));
    let mut overlays = SetList::new();
    for o in part.overlays.iter() {
        let looked_for = dir.join(o);
        let canon = match looked_for.canonicalize() {
            Ok(c) if c.is_dir() => c,
            Ok(c) => {
                return Err(src.invalid(
                    &[Key("overlays"), Elem(o)],
                    format!("overlay `{o}` is not a directory ({})", c.display()),
                ))
            }
            Err(_) => {
                return Err(src.invalid(
                    &[Key("overlays"), Elem(o)],
                    format!(
                        "overlay directory `{o}` not found (looked for {}); overlay paths are \
                         relative to the directory of the file that names them",
                        looked_for.display()
                    ),
                ))
            }
        };
        let Some(canon) = canon.to_str() else {
            return Err(src
                .invalid(&[Key("overlays"), Elem(o)], format!("overlay path {} is not valid UTF-8", canon.display())));
        };
        overlays.insert(canon);
    }
    part.overlays = overlays;

    Ok(())
}

/// `[kernel]`: package name, module names, command line words.
fn check_kernel(src: &Source<'_>, part: &PartialProfile) -> Result<(), ProfileError> {
    use Seg::*;
    if let Some(pkg) = &part.kernel.package {
        if !is_valid_debian_package(pkg) {
            return Err(src.invalid(
                &[Key("kernel"), Key("package")],
                format!("invalid Debian package name `{pkg}` for the kernel"),
            ));
        }
    }
    for m in part.kernel.modules.iter() {
        if !is_valid_module_name(m) {
            return Err(src.invalid(
                &[Key("kernel"), Key("modules"), Elem(m)],
                format!(
                    "invalid kernel module name `{m}`: give the module's name (like \
                     `virtio_blk`), not a path or a file name"
                ),
            ));
        }
    }
    for c in part.kernel.cmdline.iter() {
        if c.is_empty() || c.chars().any(|ch| ch.is_control()) {
            return Err(src.invalid(
                &[Key("kernel"), Key("cmdline"), Elem(c)],
                format!("invalid kernel command line parameter {c:?}: empty or with control characters"),
            ));
        }
    }

    Ok(())
}

/// `[packages]`: Debian package names.
fn check_packages(src: &Source<'_>, part: &PartialProfile) -> Result<(), ProfileError> {
    use Seg::*;
    for p in part.packages.debian.iter() {
        if !is_valid_debian_package(p) {
            return Err(src.invalid(
                &[Key("packages"), Key("debian"), Elem(p)],
                format!(
                    "invalid Debian package name `{p}`: lower-case letters, digits, `+`, `-` and \
                     `.`, optionally `:arch`"
                ),
            ));
        }
    }

    Ok(())
}

/// `[services.*]`: names, an absolute `command[0]`, `KEY=VALUE` environment.
fn check_services(src: &Source<'_>, part: &PartialProfile) -> Result<(), ProfileError> {
    use Seg::*;
    for (name, svc) in &part.services {
        if !is_valid_service_name(name) {
            return Err(src.invalid(
                &[Key("services"), KeyName(name)],
                format!(
                    "invalid service name `{name}`: use lower-case letters, digits, `_` and `-`, \
                     starting with a letter or digit"
                ),
            ));
        }
        if let Some(cmd) = &svc.command {
            match cmd.first() {
                None => {
                    return Err(src.invalid(
                        &[Key("services"), Key(name), Key("command")],
                        format!(
                            "service `{name}`: `command` is empty; give the program and its \
                             arguments, e.g. [\"/bin/sh\", \"-c\", \"...\"]"
                        ),
                    ))
                }
                Some(prog) if !prog.starts_with('/') => {
                    return Err(src.invalid(
                        &[Key("services"), Key(name), Key("command"), Index(0)],
                        format!(
                            "service `{name}`: command[0] `{prog}` is not an absolute path; \
                             write the full path, e.g. `/bin/{prog}` (there is no PATH search)"
                        ),
                    ))
                }
                _ => {}
            }
        }
        for e in svc.env.iter() {
            let ok = e.split_once('=').is_some_and(|(k, _)| is_valid_env_key(k));
            if !ok {
                return Err(src.invalid(
                    &[Key("services"), Key(name), Key("env"), Elem(e)],
                    format!(
                        "service `{name}`: env entry `{e}` is not KEY=VALUE (KEY: letters, digits \
                         and `_`, not starting with a digit)"
                    ),
                ));
            }
        }
    }

    Ok(())
}

/// `[qemu]`: memory and CPUs.
fn check_qemu(src: &Source<'_>, part: &PartialProfile) -> Result<(), ProfileError> {
    use Seg::*;
    if let Some(m) = part.qemu.memory_mib {
        if m < MIN_MEMORY_MIB {
            return Err(src.invalid(
                &[Key("qemu"), Key("memory_mib")],
                format!("qemu.memory_mib = {m} is too small: give at least {MIN_MEMORY_MIB}"),
            ));
        }
    }
    if let Some(0) = part.qemu.cpus {
        return Err(src.invalid(&[Key("qemu"), Key("cpus")], "qemu.cpus must be at least 1"));
    }

    Ok(())
}

/// `[image]` sizes, and `[persistence]` (checked between them, as it always was).
fn check_image(src: &Source<'_>, part: &mut PartialProfile) -> Result<(), ProfileError> {
    use Seg::*;
    if let Some(m) = part.image.esp_mib {
        if !(MIN_ESP_MIB..=MAX_PARTITION_MIB).contains(&m) {
            return Err(src.invalid(
                &[Key("image"), Key("esp_mib")],
                format!(
                    "image.esp_mib = {m} is out of range: give {MIN_ESP_MIB} to \
                     {MAX_PARTITION_MIB}, or leave it out to fit the ESP to its files"
                ),
            ));
        }
    }
    if part.image.copytoram_ram_factor == Some(0) {
        return Err(src.invalid(
            &[Key("image"), Key("copytoram_ram_factor")],
            "image.copytoram_ram_factor = 0: give at least 1 (copy to RAM only when RAM is at least this many times the root image)",
        ));
    }
    check_persistence(src, part)?;
    if let Some(m) = part.image.persistence_mib {
        if m > MAX_PARTITION_MIB {
            return Err(src.invalid(
                &[Key("image"), Key("persistence_mib")],
                format!("image.persistence_mib = {m} is too large: at most {MAX_PARTITION_MIB} (4 TiB)"),
            ));
        }
    }
    Ok(())
}

/// `[persistence]`: device syntax, paths absolute, the key file resolved (relative to this file).
fn check_persistence(src: &Source<'_>, part: &mut PartialProfile) -> Result<(), ProfileError> {
    use Seg::*;
    let p = &mut part.persistence;
    if let Some(d) = &p.device {
        let ok = ["PARTLABEL=", "LABEL=", "UUID="].iter().any(|k| d.strip_prefix(k).is_some_and(|v| !v.is_empty()))
            || d.starts_with("/dev/");
        if !ok || d.contains(char::is_whitespace) {
            return Err(src.invalid(
                &[Key("persistence"), Key("device")],
                format!("persistence.device `{d}`: give PARTLABEL=.., LABEL=.., UUID=.. or a /dev/... path"),
            ));
        }
    }
    for x in p.paths.iter() {
        if !x.starts_with('/') || x == "/" || x.split('/').any(|c| c == "..") {
            return Err(src.invalid(
                &[Key("persistence"), Key("paths"), Elem(x)],
                format!("persistence.paths entry `{x}`: give an absolute directory below / such as /etc or /home"),
            ));
        }
    }
    if let Some(k) = p.keyfile.clone() {
        let dir = src.path.parent().unwrap_or(Path::new("/"));
        let looked = dir.join(&k);
        match looked.canonicalize() {
            Ok(c) if c.is_file() => p.keyfile = Some(c.to_string_lossy().into_owned()),
            _ => {
                return Err(src.invalid(
                    &[Key("persistence"), Key("keyfile")],
                    format!(
                        "persistence.keyfile `{k}` not found (looked for {}); it is relative to the file naming it",
                        looked.display()
                    ),
                ))
            }
        }
    }
    if let Some(0) = p.snapshots_keep {
        return Err(
            src.invalid(&[Key("persistence"), Key("snapshots_keep")], "persistence.snapshots_keep must be at least 1")
        );
    }
    if let Some(0) = p.passphrase_retries {
        return Err(src.invalid(
            &[Key("persistence"), Key("passphrase_retries")],
            "persistence.passphrase_retries must be at least 1",
        ));
    }
    Ok(())
}

/// `[persistence]` with defaults, or `None` when the profile has none.
fn finalize_persistence(
    merged: &PartialProfile,
    files: &[PathBuf],
    parts: &[PartialProfile],
) -> Result<Option<Persistence>, ProfileError> {
    let p = &merged.persistence;
    let from = || -> Vec<PathBuf> {
        files
            .iter()
            .zip(parts)
            .filter(|(_, x)| !super::merge::Empty::is_empty(&x.persistence))
            .map(|(f, _)| f.clone())
            .collect()
    };
    let Some(device) = p.device.clone() else {
        if super::merge::Empty::is_empty(p) {
            return Ok(None);
        }
        return Err(ProfileError::Inconsistent {
            files: from(),
            message: format!(
                "[persistence] has no `device`; add device = \"{}\" (or LABEL=, UUID=, /dev/...)",
                config::DEFAULT_PERSIST_DEVICE
            ),
        });
    };
    let key = p.key.unwrap_or(KeySource::Passphrase);
    let keyfile = p.keyfile.clone().map(PathBuf::from);
    if key == KeySource::Keyfile && keyfile.is_none() {
        return Err(ProfileError::Inconsistent {
            files: from(),
            message: "[persistence] key = \"keyfile\" needs keyfile = \"path/to/file\"".into(),
        });
    }
    Ok(Some(Persistence {
        device,
        key,
        keyfile: if key == KeySource::Keyfile { keyfile } else { None },
        passphrase_retries: p.passphrase_retries.unwrap_or(config::DEFAULT_RETRIES),
        paths: p.paths.as_slice().to_vec(),
        snapshots_keep: p.snapshots_keep.unwrap_or(config::DEFAULT_SNAPSHOTS_KEEP),
        optional: p.optional.unwrap_or(false),
        format: p.format.unwrap_or_default(),
        boot_attempts: p.boot_attempts.unwrap_or(0),
        pbkdf: p.pbkdf.unwrap_or_default(),
        pbkdf_memory_kib: p.pbkdf_memory_kib.unwrap_or(0),
        pbkdf_iterations: p.pbkdf_iterations.unwrap_or(0),
    }))
}

/// Apply defaults and check what only the merged profile can show.
pub(crate) fn finalize(
    merged: &PartialProfile,
    top: &Path,
    stem_source: &Path,
    files: &[PathBuf],
    parts: &[PartialProfile],
    origins: &BTreeMap<String, Vec<PathBuf>>,
) -> Result<Profile, ProfileError> {
    let name = profile_name(merged, top, stem_source)?;
    let hostname = hostname(merged, &name, top, files)?;
    let arch = merged.arch.unwrap_or(Arch::X86_64);
    let services = finalize_services(merged, files, parts, origins)?;

    let rpi = finalize_rpi(merged, arch, files)?;
    let image = finalize_image(merged, arch, files, parts)?;

    // Full-OS bases and customisation (profile/system.rs).
    let inconsistent = |message: String| ProfileError::Inconsistent { files: files.to_vec(), message };
    let pacman = super::system::finalize_pacman(&merged.pacman).map_err(inconsistent)?;
    let users = super::system::finalize_users(&merged.users).map_err(inconsistent)?;
    let system = super::system::finalize_system(&merged.system).map_err(inconsistent)?;
    let gen_files = super::system::finalize_files(&merged.files).map_err(inconsistent)?;
    if merged.base == Some(Base::Arch) && pacman.repos.is_empty() {
        return Err(inconsistent("base = \"arch\" needs at least one repository: add [pacman.repos.core] servers = [\"...\"] (docs/bases.md)".into()));
    }
    if merged.base == Some(Base::Arch) && merged.packages.arch.is_empty() {
        return Err(inconsistent(
            "base = \"arch\" needs packages: add [packages] arch = [\"base\", \"linux\", ...]".into(),
        ));
    }

    let persistence = finalize_persistence(merged, files, parts)?;
    let secure_boot = finalize_secure_boot(merged, arch, files, parts)?;

    Ok(Profile {
        name,
        description: merged.description.clone(),
        arch,
        base: merged.base.unwrap_or(Base::Busybox),
        hostname,
        overlays: merged.overlays.iter().map(PathBuf::from).collect(),
        kernel: Kernel {
            package: merged.kernel.package.clone().unwrap_or_else(|| arch.default_kernel_package().to_string()),
            cmdline: merged.kernel.cmdline.as_slice().to_vec(),
            modules: merged.kernel.modules.as_slice().to_vec(),
            drivers: match &merged.kernel.drivers {
                Some(d) => d.iter().fold(Vec::new(), |mut v, c| {
                    if !v.contains(c) {
                        v.push(*c);
                    }
                    v
                }),
                None => crate::drivers::defaults(
                    merged.image.netboot.unwrap_or(false) || merged.rpi.enable.unwrap_or(false),
                ),
            },
        },
        packages: Packages {
            debian: merged.packages.debian.as_slice().to_vec(),
            arch: merged.packages.arch.as_slice().to_vec(),
        },
        init: Init {
            system: merged.init.system.unwrap_or_default(),
            console_shell: merged.init.console_shell.unwrap_or(true),
            emergency_shell: merged.init.emergency_shell.unwrap_or(true),
            keep_runtime_config: merged.init.keep_runtime_config.unwrap_or(false),
        },
        services,
        qemu: Qemu {
            memory_mib: merged.qemu.memory_mib.unwrap_or(DEFAULT_MEMORY_MIB),
            cpus: merged.qemu.cpus.unwrap_or(1),
        },
        image,
        rpi,
        debian: super::system::finalize_debian(&merged.debian),
        pacman,
        users,
        system,
        files: gen_files,
        persistence,
        secure_boot,
    })
}

/// `[secure_boot]`: `uki` needs a key and a certificate; verity needs `uki` (an unsigned root
/// hash on an unsigned command line proves nothing); arm64 has the secure netboot chain only
/// (oa makes no arm64 disk.img or oa.iso).
fn finalize_secure_boot(
    merged: &PartialProfile,
    arch: Arch,
    files: &[PathBuf],
    parts: &[PartialProfile],
) -> Result<SecureBoot, ProfileError> {
    let s = &merged.secure_boot;
    let from = || -> Vec<PathBuf> {
        files
            .iter()
            .zip(parts)
            .filter(|(_, x)| !super::merge::Empty::is_empty(&x.secure_boot))
            .map(|(f, _)| f.clone())
            .collect()
    };
    let bad = |message: String| ProfileError::Inconsistent { files: from(), message };
    let mode = s.mode.unwrap_or(SecureBootMode::Off);
    // A signed command line carries the root hash: verity is on by default with signing.
    let verity = s.verity.unwrap_or(mode == SecureBootMode::Uki);
    if mode == SecureBootMode::Shim {
        if merged.base == Some(Base::Arch) {
            return Err(bad("[secure_boot] mode = \"shim\" boots Debian's signed kernel, which base = \"arch\" does not have (its kernel is the Arch base's, unsigned): use mode = \"uki\" with your own key, or base = \"busybox\"/\"debian\"".into()));
        }
        if !merged.image.disk.unwrap_or(false) && !merged.image.iso.unwrap_or(false) {
            return Err(bad("[secure_boot] mode = \"shim\" is the boot chain of disk.img and oa.iso, and this profile makes neither: set [image] disk = true (and/or iso = true), or mode = \"off\"".into()));
        }
    }
    if mode == SecureBootMode::Uki && (s.key.is_none() || s.cert.is_none()) {
        return Err(bad("[secure_boot] mode = \"uki\" needs key = \"DIR/db.key\" and cert = \"DIR/db.crt\": make them with `oa keys init DIR`".into()));
    }
    if mode != SecureBootMode::Uki && (s.key.is_some() || s.cert.is_some()) {
        return Err(bad(format!("[secure_boot] key and cert are used with mode = \"uki\" only (mode is \"{mode}\"): set mode = \"uki\" or leave them out")));
    }
    if verity && mode != SecureBootMode::Uki {
        return Err(bad(format!("[secure_boot] verity = true needs signing (mode = \"uki\"): the root hash is only worth what the signature over the command line carrying it is worth (mode is \"{mode}\")")));
    }
    if mode == SecureBootMode::Shim && arch != Arch::X86_64 {
        return Err(bad(format!("[secure_boot] mode = \"shim\" is disk.img's boot chain, built for x86_64 only (oa makes no {arch} disk.img): for arch = \"{arch}\" use mode = \"uki\" with [image] netboot = true (secure netboot through Debian's arm64 shim and GRUB), or mode = \"off\"")));
    }
    if mode == SecureBootMode::Uki && arch != Arch::X86_64 && !merged.image.netboot.unwrap_or(false) {
        return Err(bad(format!("[secure_boot] mode = \"uki\" for arch = \"{arch}\" signs the netboot UKI (linuxaa64.efi.stub, served through Debian's arm64 shim and GRUB), and this profile does not netboot: set [image] netboot = true, or mode = \"off\"")));
    }
    Ok(SecureBoot {
        mode,
        key: s.key.clone().map(PathBuf::from),
        cert: s.cert.clone().map(PathBuf::from),
        verity,
        config_key: s.config_key.clone().map(PathBuf::from),
        config_required: s.config_required.unwrap_or(false),
        sign_key: s.sign_key.clone().map(PathBuf::from),
    })
}

/// The profile's name: `name =`, else the top file's stem when that is a valid name.
fn profile_name(merged: &PartialProfile, top: &Path, stem_source: &Path) -> Result<String, ProfileError> {
    Ok(match &merged.name {
        Some(n) => n.clone(),
        None => {
            let stem = stem_source.file_stem().and_then(|s| s.to_str()).unwrap_or_default().to_string();
            if !is_valid_profile_name(&stem) {
                return Err(ProfileError::Invalid {
                    at: Location::file(top),
                    message: format!(
                        "the file name `{stem}` is not a valid profile name; add \
                         `name = \"...\"` (letters, digits, `.`, `_`, `-`)"
                    ),
                });
            }
            stem
        }
    })
}

/// The hostname, required; the error suggests one made from the profile name.
fn hostname(merged: &PartialProfile, name: &str, top: &Path, files: &[PathBuf]) -> Result<String, ProfileError> {
    let Some(hostname) = merged.hostname.clone() else {
        let suggestion: String = name
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c.to_ascii_lowercase() } else { '-' })
            .collect::<String>()
            .trim_matches('-')
            .to_string();
        let suggestion = if is_valid_hostname(&suggestion) { suggestion } else { "oa".into() };
        return Err(ProfileError::MissingHostname { file: top.to_path_buf(), files: files.to_vec(), suggestion });
    };

    Ok(hostname)
}

/// `[services.*]`: each with a command, no variable set twice in `env`.
fn finalize_services(
    merged: &PartialProfile,
    files: &[PathBuf],
    parts: &[PartialProfile],
    origins: &BTreeMap<String, Vec<PathBuf>>,
) -> Result<Vec<Service>, ProfileError> {
    let mut services = Vec::new();
    for (sname, svc) in &merged.services {
        let defined_in = || -> Vec<PathBuf> {
            files.iter().zip(parts).filter(|(_, p)| p.services.contains_key(sname)).map(|(f, _)| f.clone()).collect()
        };
        let Some(command) = svc.command.clone() else {
            return Err(ProfileError::Inconsistent {
                files: defined_in(),
                message: format!(
                    "service `{sname}` has no `command`; add `command = [\"/path/to/program\", ...]` \
                     under [services.{sname}]"
                ),
            });
        };
        // env is a set-list: two different entries for one variable cannot both hold.
        let env_key = format!("services.{sname}.env");
        let env_files = origins.get(&env_key);
        let mut seen: BTreeMap<&str, usize> = BTreeMap::new();
        for (i, e) in svc.env.iter().enumerate() {
            let key = e.split_once('=').map_or(e.as_str(), |(k, _)| k);
            if let Some(&j) = seen.get(key) {
                let file_of = |ix: usize| {
                    env_files.and_then(|f| f.get(ix)).map(|f| super::error::shown(f)).unwrap_or_else(|| "?".into())
                };
                return Err(ProfileError::Inconsistent {
                    files: defined_in(),
                    message: format!(
                        "service `{sname}` sets {key} twice: `{}` (from {}) and `{}` (from {}); \
                         env is a set-list, so a later file adds entries but cannot replace one: \
                         set {key} in one file only",
                        svc.env.as_slice()[j],
                        file_of(j),
                        e,
                        file_of(i)
                    ),
                });
            }
            seen.insert(key, i);
        }
        services.push(Service {
            name: sname.clone(),
            command,
            restart: svc.restart.unwrap_or_default(),
            env: svc.env.as_slice().to_vec(),
        });
    }

    Ok(services)
}

/// `[rpi]`: needs arch = "aarch64"; firmware "package" or an absolute folder.
fn finalize_rpi(merged: &PartialProfile, arch: Arch, files: &[PathBuf]) -> Result<Rpi, ProfileError> {
    let rpi = Rpi {
        enable: merged.rpi.enable.unwrap_or(false),
        firmware: merged.rpi.firmware.clone().unwrap_or_else(|| "package".to_string()),
        config: merged.rpi.config.as_slice().to_vec(),
    };
    if rpi.enable && arch != Arch::Aarch64 {
        return Err(ProfileError::Inconsistent {
            files: files.to_vec(),
            message: "rpi.enable = true needs arch = \"aarch64\" (the Raspberry Pi outputs are arm64)".into(),
        });
    }
    if rpi.firmware != "package" && !rpi.firmware.starts_with('/') {
        return Err(ProfileError::Inconsistent {
            files: files.to_vec(),
            message: format!("rpi.firmware = {:?}: give \"package\" or an absolute folder path", rpi.firmware),
        });
    }
    Ok(rpi)
}

/// `[image]`: qcow2 needs disk; the ISO needs x86_64.
fn finalize_image(
    merged: &PartialProfile,
    arch: Arch,
    files: &[PathBuf],
    parts: &[PartialProfile],
) -> Result<Image, ProfileError> {
    let image = Image {
        disk: merged.image.disk.unwrap_or(false),
        qcow2: merged.image.qcow2.unwrap_or(false),
        persistence_mib: merged.image.persistence_mib.unwrap_or(0),
        esp_mib: merged.image.esp_mib,
        netboot: merged.image.netboot.unwrap_or(false),
        iso: merged.image.iso.unwrap_or(false),
        copytoram: merged.image.copytoram.unwrap_or_default(),
        copytoram_ram_factor: merged
            .image
            .copytoram_ram_factor
            .unwrap_or(oa_contract::config::DEFAULT_COPYTORAM_RAM_FACTOR),
    };
    if image.iso && arch != Arch::X86_64 {
        let files: Vec<PathBuf> = files
            .iter()
            .zip(parts)
            .filter(|(_, p)| p.image.iso.is_some() || p.arch.is_some())
            .map(|(f, _)| f.clone())
            .collect();
        return Err(ProfileError::Inconsistent {
            files,
            message: format!(
                "image.iso = true needs arch = \"x86_64\" (oa.iso boots with isolinux and the x86-64 \
                 systemd-boot); the profile's arch is {arch}: set `iso = false` under [image]"
            ),
        });
    }
    if image.qcow2 && !image.disk {
        let files: Vec<PathBuf> = files
            .iter()
            .zip(parts)
            .filter(|(_, p)| p.image.qcow2.is_some() || p.image.disk.is_some())
            .map(|(f, _)| f.clone())
            .collect();
        return Err(ProfileError::Inconsistent {
            files,
            message: "image.qcow2 = true needs image.disk = true (disk.qcow2 is converted from \
                      disk.img); add `disk = true` under [image]"
                .into(),
        });
    }

    Ok(image)
}
