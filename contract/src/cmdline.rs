//! Kernel command line keys read by oa-init, and their parsing.
//!
//! The one table of keys is [`KEYS`]; `docs/boot-contract.md` mirrors it and a unit test in this
//! module checks that the document names every key.

use std::fmt;

/// What every oa key starts with; other words of the command line belong to the kernel.
pub const PREFIX: &str = "oa.";

/// Where the root image is (`oa.root=`).
pub const ROOT: &str = "oa.root";
/// Expected sha256 (hex) of the root image (`oa.sha256=`).
pub const SHA256: &str = "oa.sha256";
/// dm-verity over the root image: root hash, salt, data blocks (`oa.verity=<hash>,<salt>,<blocks>`).
pub const VERITY: &str = "oa.verity";
/// Where the verity hash tree is when it is not after the data: a partition of its own
/// (`oa.verity.hash=PARTLABEL=oa-verity`, disk.img), the tree from its first block.
pub const VERITY_HASH: &str = "oa.verity.hash";
/// Copy the root image into RAM before mounting it (`oa.copytoram`).
pub const COPYTORAM: &str = "oa.copytoram";
/// Persistence device (`oa.persist=`).
pub const PERSIST: &str = "oa.persist";
/// Where the persistence key comes from (`oa.persist.key=`).
pub const PERSIST_KEY: &str = "oa.persist.key";
/// Run-time configuration URL or path (`oa.config=`).
pub const CONFIG: &str = "oa.config";
/// Boot from a named earlier snapshot (`oa.rollback=`).
pub const ROLLBACK: &str = "oa.rollback";
/// Drop to an emergency shell on failure (`oa.shell`).
pub const SHELL: &str = "oa.shell";
/// Print debug output from oa-init (`oa.debug`).
pub const DEBUG: &str = "oa.debug";
/// Modules to load at the start of stage 1, before coldplug (`oa.modules=a,b`).
pub const MODULES: &str = "oa.modules";
/// Modules never loaded, by coldplug or by name (`oa.blacklist=a,b`).
pub const BLACKLIST: &str = "oa.blacklist";

/// One row of the key table: name, whether it takes a value, what it means.
pub struct Key {
    pub name: &'static str,
    pub takes_value: bool,
    pub doc: &'static str,
}

/// Every key oa-init understands. Keep `docs/boot-contract.md` in step (a test checks it).
pub const KEYS: &[Key] = &[
    Key {
        name: ROOT,
        takes_value: true,
        doc: "where the root image is: LABEL=, PARTLABEL=, UUID=, PARTUUID=, a /dev path, or an http:// URL",
    },
    Key { name: SHA256, takes_value: true, doc: "expected sha256 (hex) of the root image; a mismatch stops the boot" },
    Key {
        name: VERITY,
        takes_value: true,
        doc: "dm-verity over the root image: <root hash>,<salt>,<data blocks> (sha256, 4 KiB blocks, tree after the data); replaces oa.sha256",
    },
    Key {
        name: VERITY_HASH,
        takes_value: true,
        doc: "with oa.verity: the hash tree is on this partition (PARTLABEL=, PARTUUID= or a /dev path) from its first block, not after the data",
    },
    Key { name: COPYTORAM, takes_value: false, doc: "copy the root image into RAM so the boot medium can be removed" },
    Key { name: PERSIST, takes_value: true, doc: "the persistence device" },
    Key { name: PERSIST_KEY, takes_value: true, doc: "where the persistence key comes from" },
    Key { name: CONFIG, takes_value: true, doc: "URL or path of the per-machine run-time configuration" },
    Key { name: ROLLBACK, takes_value: true, doc: "boot from a named earlier snapshot of the persistent state" },
    Key { name: SHELL, takes_value: false, doc: "on failure, start an emergency shell instead of halting" },
    Key { name: DEBUG, takes_value: false, doc: "print debug output from oa-init" },
    Key {
        name: MODULES,
        takes_value: true,
        doc: "comma-separated kernel modules (carried in the initramfs) to load before coldplug",
    },
    Key {
        name: BLACKLIST,
        takes_value: true,
        doc: "comma-separated kernel modules oa-init must not load, whatever the hardware asks for",
    },
];

/// The verity facts of a root image (`oa.verity=<root hash>,<salt>,<data blocks>`): a sha256
/// hash tree of 4 KiB blocks appended right after the `data_blocks` data blocks of the image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerityArgs {
    /// The root hash, 64 lowercase hex digits.
    pub root_hash: String,
    /// The salt, lowercase hex, even length, at most 256 digits (128 bytes, the kernel's limit).
    pub salt: String,
    /// Number of 4 KiB data blocks; the hash tree starts at this block.
    pub data_blocks: u64,
}

/// The data and hash block size of oa's verity images.
pub const VERITY_BLOCK_SIZE: u64 = 4096;

impl VerityArgs {
    pub fn parse(s: &str) -> Result<VerityArgs, CmdlineError> {
        let err = || CmdlineError::BadValue {
            key: VERITY,
            value: s.to_string(),
            expected: "<root hash: 64 hex digits>,<salt: even number of hex digits, at most 256>,<data blocks > 0>",
        };
        let hex = |v: &str| v.bytes().all(|b| b.is_ascii_hexdigit());
        let mut it = s.trim().split(',');
        let (Some(h), Some(salt), Some(n), None) = (it.next(), it.next(), it.next(), it.next()) else {
            return Err(err());
        };
        if h.len() != 64 || !hex(h) || salt.len() % 2 != 0 || salt.len() > 256 || !hex(salt) {
            return Err(err());
        }
        let data_blocks: u64 = n.parse().map_err(|_| err())?;
        if data_blocks == 0 {
            return Err(err());
        }
        Ok(VerityArgs { root_hash: h.to_ascii_lowercase(), salt: salt.to_ascii_lowercase(), data_blocks })
    }

    /// Blocks of the hash tree: each level holds one 32-byte hash per block of the level
    /// below (128 per 4 KiB block), up to a level of one block (dm-verity's layout; a single
    /// data block has no tree, its hash is the root hash).
    pub fn hash_blocks(&self) -> u64 {
        let per_block = VERITY_BLOCK_SIZE / 32;
        let (mut n, mut total) = (self.data_blocks, 0u64);
        while n > 1 {
            n = n.div_ceil(per_block);
            total = total.saturating_add(n);
        }
        total
    }

    /// Bytes of the whole image: the data blocks and the hash tree after them.
    pub fn image_bytes(&self) -> u64 {
        self.data_blocks.saturating_add(self.hash_blocks()).saturating_mul(VERITY_BLOCK_SIZE)
    }
}

impl fmt::Display for VerityArgs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{},{},{}", self.root_hash, self.salt, self.data_blocks)
    }
}

/// How the root image is located.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RootSpec {
    /// Filesystem label (for a squashfs inside a labelled filesystem, or an ISO9660/FAT volume).
    Label(String),
    /// GPT partition name.
    PartLabel(String),
    /// Filesystem UUID.
    Uuid(String),
    /// GPT partition UUID.
    PartUuid(String),
    /// A device or file path such as `/dev/vda`.
    Path(String),
    /// An HTTP URL, fetched into RAM.
    Http(String),
}

impl RootSpec {
    pub fn parse(s: &str) -> Result<RootSpec, CmdlineError> {
        let s = s.trim();
        let err = || CmdlineError::BadValue {
            key: ROOT,
            value: s.to_string(),
            expected: "LABEL=, PARTLABEL=, UUID=, PARTUUID=, /dev/..., or http://...",
        };
        if let Some(v) = s.strip_prefix("LABEL=") {
            if v.is_empty() {
                return Err(err());
            }
            Ok(RootSpec::Label(v.to_string()))
        } else if let Some(v) = s.strip_prefix("PARTLABEL=") {
            if v.is_empty() {
                return Err(err());
            }
            Ok(RootSpec::PartLabel(v.to_string()))
        } else if let Some(v) = s.strip_prefix("PARTUUID=") {
            if v.is_empty() {
                return Err(err());
            }
            Ok(RootSpec::PartUuid(v.to_ascii_lowercase()))
        } else if let Some(v) = s.strip_prefix("UUID=") {
            if v.is_empty() {
                return Err(err());
            }
            Ok(RootSpec::Uuid(v.to_ascii_lowercase()))
        } else if s.starts_with("http://") {
            Ok(RootSpec::Http(s.to_string()))
        } else if s.starts_with('/') {
            Ok(RootSpec::Path(s.to_string()))
        } else {
            Err(err())
        }
    }
}

impl fmt::Display for RootSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RootSpec::Label(v) => write!(f, "LABEL={v}"),
            RootSpec::PartLabel(v) => write!(f, "PARTLABEL={v}"),
            RootSpec::Uuid(v) => write!(f, "UUID={v}"),
            RootSpec::PartUuid(v) => write!(f, "PARTUUID={v}"),
            RootSpec::Path(v) | RootSpec::Http(v) => f.write_str(v),
        }
    }
}

/// The oa.* keys of a kernel command line, typed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BootArgs {
    pub root: Option<RootSpec>,
    pub sha256: Option<String>,
    /// `oa.verity=`: map the root image through dm-verity.
    pub verity: Option<VerityArgs>,
    /// `oa.verity.hash=`: the partition holding the hash tree (else it follows the data).
    pub verity_hash: Option<RootSpec>,
    /// `oa.copytoram` (= `yes`), `oa.copytoram=yes|no|auto` (`1`/`0` too); `None`: the
    /// initramfs default ([`crate::config::InitramfsConfig::copytoram`]).
    pub copytoram: Option<crate::config::CopyToRam>,
    pub persist: Option<String>,
    pub persist_key: Option<String>,
    pub config: Option<String>,
    pub rollback: Option<String>,
    pub shell: bool,
    pub debug: bool,
    /// `oa.modules=`: module names, `-` folded to `_`.
    pub modules: Vec<String>,
    /// `oa.blacklist=`: module names, `-` folded to `_`.
    pub blacklist: Vec<String>,
    /// `oa.*` keys this version does not know; oa-init warns about them.
    pub unknown: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CmdlineError {
    BadValue { key: &'static str, value: String, expected: &'static str },
    MissingValue { key: &'static str },
}

impl fmt::Display for CmdlineError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CmdlineError::BadValue { key, value, expected } => {
                write!(f, "kernel command line: {key}={value:?} is not valid; expected {expected}")
            }
            CmdlineError::MissingValue { key } => write!(f, "kernel command line: {key} needs a value ({key}=...)"),
        }
    }
}

impl std::error::Error for CmdlineError {}

/// Split a kernel command line into words the way the kernel does: whitespace separates,
/// double quotes group (and are removed).
pub fn split(cmdline: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut in_quotes = false;
    let mut have = false;
    for c in cmdline.chars() {
        match c {
            '"' => {
                in_quotes = !in_quotes;
                have = true;
            }
            c if c.is_whitespace() && !in_quotes => {
                if have {
                    out.push(std::mem::take(&mut cur));
                    have = false;
                }
            }
            c => {
                cur.push(c);
                have = true;
            }
        }
    }
    if have {
        out.push(cur);
    }
    out
}

/// A word as the kernel reads it back: a value holding whitespace is quoted (`key="a b"`).
pub fn quote(word: &str) -> String {
    if word.chars().any(char::is_whitespace) {
        match word.split_once('=') {
            Some((k, v)) => format!("{k}=\"{v}\""),
            None => format!("\"{word}\""),
        }
    } else {
        word.to_string()
    }
}

/// One `key=value` word (`word(SHA256, digest)` is `oa.sha256=<digest>`).
pub fn word(key: &str, value: impl fmt::Display) -> String {
    format!("{key}={value}")
}

/// Where `oa run` puts the root image of an output folder: the first virtio disk.
pub const RUN_ROOT_DEVICE: &str = "/dev/vda";

/// The host of an `oa.root=http://` URL that stands for the boot server: the DHCP lease's
/// next-server (`siaddr`), else its server identifier (option 54). For images whose command
/// line is fixed at build time and signed (secure netboot's UKI), where the server's address
/// is not known; the root image is then checked by `oa.verity=`, so where it comes from does
/// not need to be trusted.
pub const NEXT_SERVER_HOST: &str = "next-server";

/// The root of a secure-netboot UKI: `http://next-server/rootfs.squashfs`.
pub fn netboot_root() -> RootSpec {
    RootSpec::Http(format!("http://{NEXT_SERVER_HOST}/{}", crate::manifest::artifact::ROOTFS))
}

/// The root of a `disk.img`: its root partition by GPT name (`PARTLABEL=oa-root`).
pub fn disk_root() -> RootSpec {
    RootSpec::PartLabel(crate::manifest::partlabel::ROOT.into())
}

/// Where disk.img's verity hash tree is: its partition by GPT name (`PARTLABEL=oa-verity`).
pub fn disk_verity_hash() -> RootSpec {
    RootSpec::PartLabel(crate::manifest::partlabel::VERITY.into())
}

/// A kernel command line as its words, in order: the one way oa edits a command line (the
/// disk image's boot loaders, `oa run`, the iPXE script, the Pi's `cmdline.txt`).
///
/// Editing keeps the order of the other words: [`Cmdline::set`] removes every word of the key
/// and appends the new one at the end. Rendering ([`fmt::Display`]) joins the words with one
/// space, quoting values that hold whitespace, so `parse(render(c)) == c`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Cmdline {
    words: Vec<String>,
}

impl Cmdline {
    pub fn new() -> Cmdline {
        Cmdline::default()
    }

    /// Split a command line the way the kernel does ([`split`]).
    pub fn parse(line: &str) -> Cmdline {
        Cmdline { words: split(line) }
    }

    /// The words as given (a manifest's `cmdline`, a profile's `[kernel] cmdline`).
    pub fn from_words<I, S>(words: I) -> Cmdline
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Cmdline { words: words.into_iter().map(Into::into).collect() }
    }

    pub fn words(&self) -> &[String] {
        &self.words
    }

    pub fn into_words(self) -> Vec<String> {
        self.words
    }

    pub fn is_empty(&self) -> bool {
        self.words.is_empty()
    }

    fn is_key(word: &str, key: &str) -> bool {
        word.strip_prefix(key).is_some_and(|rest| rest.is_empty() || rest.starts_with('='))
    }

    /// The value of the last `key=value` word; `Some("")` for a bare `key`.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.words.iter().rev().find(|w| Cmdline::is_key(w, key)).map(|w| w[key.len()..].trim_start_matches('='))
    }

    /// Drop every `key` and `key=...` word.
    pub fn remove(&mut self, key: &str) -> &mut Cmdline {
        self.words.retain(|w| !Cmdline::is_key(w, key));
        self
    }

    /// `key=value` as the only word of the key, at the end.
    pub fn set(&mut self, key: &str, value: impl fmt::Display) -> &mut Cmdline {
        self.remove(key);
        self.words.push(word(key, value));
        self
    }

    /// `oa.root=<spec>` as the only root word, at the end.
    pub fn set_root(&mut self, root: &RootSpec) -> &mut Cmdline {
        self.set(ROOT, root)
    }

    /// Append a word (kept even when its key is there already).
    pub fn push(&mut self, word: impl Into<String>) -> &mut Cmdline {
        self.words.push(word.into());
        self
    }

    /// Append the words of `other`.
    pub fn extend(&mut self, other: Cmdline) -> &mut Cmdline {
        self.words.extend(other.words);
        self
    }
}

impl fmt::Display for Cmdline {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, w) in self.words.iter().enumerate() {
            if i > 0 {
                f.write_str(" ")?;
            }
            f.write_str(&quote(w))?;
        }
        Ok(())
    }
}

impl BootArgs {
    /// Parse the `oa.*` keys of a whole kernel command line; other words are ignored.
    pub fn parse(cmdline: &str) -> Result<BootArgs, CmdlineError> {
        let mut a = BootArgs::default();
        for word in split(cmdline) {
            let (key, value) = match word.split_once('=') {
                Some((k, v)) => (k.to_string(), Some(v.to_string())),
                None => (word.clone(), None),
            };
            if !key.starts_with(PREFIX) {
                continue;
            }
            let need =
                |k: &'static str| value.clone().filter(|v| !v.is_empty()).ok_or(CmdlineError::MissingValue { key: k });
            match key.as_str() {
                ROOT => a.root = Some(RootSpec::parse(&need(ROOT)?)?),
                SHA256 => {
                    let v = need(SHA256)?.to_ascii_lowercase();
                    if v.len() != 64 || !v.bytes().all(|b| b.is_ascii_hexdigit()) {
                        return Err(CmdlineError::BadValue {
                            key: SHA256,
                            value: v,
                            expected: "64 hexadecimal digits",
                        });
                    }
                    a.sha256 = Some(v);
                }
                VERITY => a.verity = Some(VerityArgs::parse(&need(VERITY)?)?),
                VERITY_HASH => {
                    let v = need(VERITY_HASH)?;
                    match RootSpec::parse(&v)? {
                        r @ (RootSpec::PartLabel(_) | RootSpec::PartUuid(_) | RootSpec::Path(_)) => {
                            a.verity_hash = Some(r)
                        }
                        _ => {
                            return Err(CmdlineError::BadValue {
                                key: VERITY_HASH,
                                value: v,
                                expected: "a partition: PARTLABEL=, PARTUUID= or a /dev path",
                            })
                        }
                    }
                }
                COPYTORAM => a.copytoram = Some(copytoram(value.as_deref())?),
                PERSIST => a.persist = Some(need(PERSIST)?),
                PERSIST_KEY => a.persist_key = Some(need(PERSIST_KEY)?),
                CONFIG => a.config = Some(need(CONFIG)?),
                ROLLBACK => a.rollback = Some(need(ROLLBACK)?),
                SHELL => a.shell = flag(value.as_deref()),
                DEBUG => a.debug = flag(value.as_deref()),
                MODULES => a.modules = module_list(MODULES, &need(MODULES)?)?,
                BLACKLIST => a.blacklist = module_list(BLACKLIST, &need(BLACKLIST)?)?,
                _ => a.unknown.push(word.clone()),
            }
        }
        Ok(a)
    }

    /// Render the keys that are set, in table order, as command line words.
    pub fn render(&self) -> Vec<String> {
        let mut v = Vec::new();
        if let Some(r) = &self.root {
            v.push(format!("{ROOT}={r}"));
        }
        if let Some(s) = &self.sha256 {
            v.push(format!("{SHA256}={s}"));
        }
        if let Some(s) = &self.verity {
            v.push(format!("{VERITY}={s}"));
        }
        if let Some(s) = &self.verity_hash {
            v.push(format!("{VERITY_HASH}={s}"));
        }
        match self.copytoram {
            Some(crate::config::CopyToRam::Yes) => v.push(COPYTORAM.to_string()),
            Some(c) => v.push(format!("{COPYTORAM}={c}")),
            None => {}
        }
        if let Some(s) = &self.persist {
            v.push(format!("{PERSIST}={s}"));
        }
        if let Some(s) = &self.persist_key {
            v.push(format!("{PERSIST_KEY}={s}"));
        }
        if let Some(s) = &self.config {
            v.push(format!("{CONFIG}={s}"));
        }
        if let Some(s) = &self.rollback {
            v.push(format!("{ROLLBACK}={s}"));
        }
        if self.shell {
            v.push(SHELL.to_string());
        }
        if self.debug {
            v.push(DEBUG.to_string());
        }
        if !self.modules.is_empty() {
            v.push(format!("{MODULES}={}", self.modules.join(",")));
        }
        if !self.blacklist.is_empty() {
            v.push(format!("{BLACKLIST}={}", self.blacklist.join(",")));
        }
        v
    }
}

/// A comma-separated list of module names (`virtio_blk,e1000e`), normalized to the kernel's
/// spelling (`-` is `_`).
fn module_list(key: &'static str, value: &str) -> Result<Vec<String>, CmdlineError> {
    let mut out = Vec::new();
    for name in value.split(',').filter(|n| !n.is_empty()) {
        if !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-') {
            return Err(CmdlineError::BadValue {
                key,
                value: value.to_string(),
                expected: "module names separated by commas, like virtio_blk,e1000e",
            });
        }
        let n = crate::modules::normalize(name);
        if !out.contains(&n) {
            out.push(n);
        }
    }
    Ok(out)
}

/// A flag key is on when present without a value or with 1/yes/true/on.
fn flag(value: Option<&str>) -> bool {
    match value {
        None => true,
        Some(v) => matches!(v, "1" | "yes" | "true" | "on" | "y"),
    }
}

/// `oa.copytoram[=yes|no|auto]`: no value means yes; the flag spellings count too.
fn copytoram(value: Option<&str>) -> Result<crate::config::CopyToRam, CmdlineError> {
    use crate::config::CopyToRam;
    match value {
        None | Some("1" | "yes" | "true" | "on" | "y") => Ok(CopyToRam::Yes),
        Some("0" | "no" | "false" | "off" | "n") => Ok(CopyToRam::No),
        Some("auto") => Ok(CopyToRam::Auto),
        Some(v) => Err(CmdlineError::BadValue { key: COPYTORAM, value: v.to_string(), expected: "yes, no or auto" }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copytoram_values() {
        use crate::config::CopyToRam;
        let p = |s: &str| BootArgs::parse(s).map(|a| a.copytoram);
        assert_eq!(p("oa.copytoram"), Ok(Some(CopyToRam::Yes)));
        assert_eq!(p("oa.copytoram=0"), Ok(Some(CopyToRam::No)));
        assert_eq!(p("oa.copytoram=auto"), Ok(Some(CopyToRam::Auto)));
        assert_eq!(p("quiet"), Ok(None));
        assert!(p("oa.copytoram=maybe").is_err());
        let a = BootArgs::parse("oa.copytoram=no").unwrap();
        assert_eq!(a.render(), ["oa.copytoram=no"]);
    }

    #[test]
    fn the_verity_hash_tree_is_on_a_partition() {
        let a = BootArgs::parse("oa.verity.hash=PARTLABEL=oa-verity").unwrap();
        assert_eq!(a.verity_hash, Some(disk_verity_hash()));
        assert_eq!(a.render(), ["oa.verity.hash=PARTLABEL=oa-verity"]);
        assert!(BootArgs::parse("oa.verity.hash=LABEL=x").is_err());
        assert!(BootArgs::parse("oa.verity.hash=http://h/x").is_err());
        assert!(BootArgs::parse("oa.verity.hash").is_err());
    }

    #[test]
    fn parses_all_keys() {
        let sha = "a".repeat(64);
        let a = BootArgs::parse(&format!(
            "console=ttyS0 oa.root=PARTLABEL=oa-root oa.sha256={sha} oa.copytoram oa.shell=0 oa.debug quiet oa.frob=1"
        ))
        .unwrap();
        assert_eq!(a.root, Some(RootSpec::PartLabel("oa-root".into())));
        assert_eq!(a.sha256.as_deref(), Some(sha.as_str()));
        assert_eq!(a.copytoram, Some(crate::config::CopyToRam::Yes));
        assert!(!a.shell);
        assert!(a.debug);
        assert_eq!(a.unknown, vec!["oa.frob=1".to_string()]);
    }

    #[test]
    fn render_roundtrips() {
        let a = BootArgs {
            root: Some(RootSpec::Http("http://10.0.2.2/rootfs.squashfs".into())),
            sha256: Some("0".repeat(64)),
            shell: true,
            ..Default::default()
        };
        let b = BootArgs::parse(&a.render().join(" ")).unwrap();
        assert_eq!(a, b);
    }

    #[test]
    fn module_lists() {
        let a = BootArgs::parse("oa.modules=e1000e,xhci-pci,e1000e oa.blacklist=ahci").unwrap();
        assert_eq!(a.modules, ["e1000e", "xhci_pci"]);
        assert_eq!(a.blacklist, ["ahci"]);
        assert_eq!(BootArgs::parse(&a.render().join(" ")).unwrap(), a);
        assert!(BootArgs::parse("oa.modules=../x").is_err());
        assert!(BootArgs::parse("oa.blacklist=").is_err());
    }

    #[test]
    fn rejects_bad_values() {
        assert!(BootArgs::parse("oa.sha256=xyz").is_err());
        let h = "Ab".repeat(32);
        let a = BootArgs::parse(&format!("oa.verity={h},00ff,42")).unwrap();
        let v = a.verity.clone().unwrap();
        assert_eq!((v.root_hash.as_str(), v.salt.as_str(), v.data_blocks), ("ab".repeat(32).as_str(), "00ff", 42));
        assert_eq!(BootArgs::parse(&a.render().join(" ")).unwrap(), a);
        assert!(BootArgs::parse(&format!("oa.verity={h},,1")).is_ok(), "an empty salt is allowed");
        let tree = |n| VerityArgs { root_hash: h.clone(), salt: String::new(), data_blocks: n }.hash_blocks();
        assert_eq!(
            [tree(1), tree(2), tree(128), tree(129), tree(128 * 128), tree(128 * 128 + 1)],
            [0, 1, 1, 3, 129, 132]
        );
        for bad in [
            format!("oa.verity={h},00ff,0"),
            format!("oa.verity={h},0ff,1"),
            format!("oa.verity={h},zz,1"),
            format!("oa.verity={},00,1", "a".repeat(63)),
            format!("oa.verity={h},{},1", "0".repeat(258)),
            format!("oa.verity={h},00"),
            format!("oa.verity={h},00,1,2"),
            format!("oa.verity={h},00,x"),
        ] {
            assert!(BootArgs::parse(&bad).is_err(), "{bad}");
        }
        assert!(BootArgs::parse("oa.root=").is_err());
        assert!(BootArgs::parse("oa.root=vda").is_err());
    }

    #[test]
    fn quotes_group_words() {
        assert_eq!(split(r#"a "b c" d"#), vec!["a", "b c", "d"]);
    }

    #[test]
    fn cmdline_edits_keep_the_order() {
        let mut c = Cmdline::from_words(["console=ttyS0", "oa.root=/dev/vda", "oa.sha256=ab", "oa.rootx=1"]);
        c.set_root(&disk_root());
        assert_eq!(c.to_string(), "console=ttyS0 oa.sha256=ab oa.rootx=1 oa.root=PARTLABEL=oa-root");
        assert_eq!(c.get(ROOT), Some("PARTLABEL=oa-root"));
        assert_eq!(c.get(SHA256), Some("ab"));
        assert_eq!(c.get(SHELL), None);
        c.push(SHELL).push(word(CONFIG, "/etc/my conf"));
        assert_eq!(c.get(SHELL), Some(""));
        assert_eq!(
            c.remove(SHA256).to_string(),
            r#"console=ttyS0 oa.rootx=1 oa.root=PARTLABEL=oa-root oa.shell oa.config="/etc/my conf""#
        );
        assert_eq!(Cmdline::parse(&c.to_string()), c);
        assert!(Cmdline::parse("  ").is_empty());
    }

    #[test]
    fn docs_name_every_key() {
        let doc = include_str!("../../docs/boot-contract.md");
        for k in KEYS {
            assert!(doc.contains(&format!("`{}", k.name)), "docs/boot-contract.md does not document {}", k.name);
        }
        assert!(doc.contains(crate::console::READY_LINE));
    }
}
