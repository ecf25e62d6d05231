//! The lines oa-init (and `oa-storage`, its child) print on the console, rendered and parsed in
//! one place: `oa run --until-ready` and the QEMU tests read them back.
//!
//! Every line starts with [`PREFIX`]: `oa-init: stage <name>: <text>`, `oa-init: ready
//! host=<host> profile=<profile>`, `oa-init: FATAL <what>: <why>`, `oa-init: hint: <hint>`,
//! `oa-init: warning: <text>`, `oa-init: debug: <text>`, or `oa-init: <text>`.

use std::fmt;

/// What every oa-init console line starts with (followed by a space).
pub const PREFIX: &str = "oa-init:";

/// The line oa-init prints on the console when the system is up. `oa run --until-ready` and
/// the QEMU tests wait for it. Followed by ` host=<hostname> profile=<profile>`.
pub const READY_LINE: &str = "oa-init: ready";

/// Prefix of the one line per stage that oa-init prints (`oa-init: stage <name>: ...`).
pub const STAGE_PREFIX: &str = "oa-init: stage";

/// Prefix of every fatal error line oa-init prints before the emergency path.
pub const FATAL_PREFIX: &str = "oa-init: FATAL";

/// The text of the `verify` stage line when the root is mapped through dm-verity
/// (`oa-init: stage verify: dm-verity <root hash, 12 digits> over <device> (<n> blocks)`).
pub fn verity_stage_text(root_hash: &str, over: &str, data_blocks: u64) -> String {
    format!("{VERITY_STAGE_TEXT} {} over {over} ({data_blocks} blocks)", &root_hash[..root_hash.len().min(12)])
}
/// How [`verity_stage_text`] starts.
pub const VERITY_STAGE_TEXT: &str = "dm-verity";

/// One console line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConsoleLine<'a> {
    /// `oa-init: stage <name>: <text>`: one line per step of the boot.
    Stage { name: &'a str, text: &'a str },
    /// `oa-init: ready host=<host> profile=<profile>`: the system is up.
    Ready { host: &'a str, profile: &'a str },
    /// `oa-init: FATAL <what>: <why>`: the boot stops (emergency shell or halt).
    Fatal { what: &'a str, why: &'a str },
    /// `oa-init: hint: <text>`: what to do about the FATAL line before it.
    Hint(&'a str),
    /// `oa-init: warning: <text>`
    Warning(&'a str),
    /// `oa-init: debug: <text>` (with `oa.debug`).
    Debug(&'a str),
    /// `oa-init: <text>`: anything else.
    Info(&'a str),
}

impl fmt::Display for ConsoleLine<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConsoleLine::Stage { name, text } => write!(f, "{STAGE_PREFIX} {name}: {text}"),
            ConsoleLine::Ready { host, profile } => write!(f, "{READY_LINE} host={host} profile={profile}"),
            ConsoleLine::Fatal { what, why } => write!(f, "{FATAL_PREFIX} {what}: {why}"),
            ConsoleLine::Hint(t) => write!(f, "{PREFIX} hint: {t}"),
            ConsoleLine::Warning(t) => write!(f, "{PREFIX} warning: {t}"),
            ConsoleLine::Debug(t) => write!(f, "{PREFIX} debug: {t}"),
            ConsoleLine::Info(t) => write!(f, "{PREFIX} {t}"),
        }
    }
}

impl<'a> ConsoleLine<'a> {
    /// Read a console line back. The line may carry other output before the prefix (a serial
    /// console interleaves the kernel's and the firmware's bytes); trailing whitespace is
    /// ignored. `None` when the line holds no oa-init line.
    pub fn parse(line: &'a str) -> Option<ConsoleLine<'a>> {
        let start = line.find(PREFIX)?;
        let rest = line[start + PREFIX.len()..].trim_end();
        let rest = rest.strip_prefix(' ').unwrap_or(rest);
        let after =
            |word: &str| rest.strip_prefix(word).filter(|r| r.is_empty() || r.starts_with(' ')).map(str::trim_start);
        if let Some(r) = after("ready") {
            let field = |k: &str| {
                r.split_whitespace().find_map(|w| w.strip_prefix(k).and_then(|w| w.strip_prefix('='))).unwrap_or("")
            };
            return Some(ConsoleLine::Ready { host: field("host"), profile: field("profile") });
        }
        if let Some(r) = after("stage") {
            let (name, text) = r.split_once(':').map_or((r, ""), |(n, t)| (n, t.strip_prefix(' ').unwrap_or(t)));
            return Some(ConsoleLine::Stage { name, text });
        }
        if let Some(r) = after("FATAL") {
            let (what, why) = r.split_once(": ").unwrap_or((r, ""));
            return Some(ConsoleLine::Fatal { what, why });
        }
        for (word, make) in [
            ("hint:", ConsoleLine::Hint as fn(&'a str) -> ConsoleLine<'a>),
            ("warning:", ConsoleLine::Warning),
            ("debug:", ConsoleLine::Debug),
        ] {
            if let Some(r) = after(word) {
                return Some(make(r));
            }
        }
        Some(ConsoleLine::Info(rest))
    }

    /// The ready line.
    pub fn is_ready(&self) -> bool {
        matches!(self, ConsoleLine::Ready { .. })
    }

    /// A FATAL line.
    pub fn is_fatal(&self) -> bool {
        matches!(self, ConsoleLine::Fatal { .. })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_todays_texts() {
        let cases = [
            (ConsoleLine::Stage { name: "verify", text: "sha256 matches" }, "oa-init: stage verify: sha256 matches"),
            (ConsoleLine::Ready { host: "tiny", profile: "tiny" }, "oa-init: ready host=tiny profile=tiny"),
            (
                ConsoleLine::Fatal { what: "find the root image", why: "no block device" },
                "oa-init: FATAL find the root image: no block device",
            ),
            (ConsoleLine::Hint("add oa.shell"), "oa-init: hint: add oa.shell"),
            (ConsoleLine::Warning("persist: x"), "oa-init: warning: persist: x"),
            (ConsoleLine::Debug("d"), "oa-init: debug: d"),
            (ConsoleLine::Info("shutdown"), "oa-init: shutdown"),
        ];
        for (line, text) in cases {
            assert_eq!(line.to_string(), text);
            assert_eq!(ConsoleLine::parse(text), Some(line), "{text}");
        }
    }

    #[test]
    fn parses_lines_with_noise_around() {
        let l = ConsoleLine::parse("\x1b[0m[    1.0] oa-init: ready host=a profile=b\r").unwrap();
        assert_eq!(l, ConsoleLine::Ready { host: "a", profile: "b" });
        assert!(ConsoleLine::parse("[    0.1] Linux version 6.1").is_none());
        assert_eq!(ConsoleLine::parse("oa-init: readyish"), Some(ConsoleLine::Info("readyish")));
        assert!(ConsoleLine::parse("oa-init: ready").unwrap().is_ready());
        assert!(ConsoleLine::parse("oa-init: FATAL set up persistence: persistence: x").unwrap().is_fatal());
        assert_eq!(
            ConsoleLine::parse("oa-init: stage persist: hint: see above"),
            Some(ConsoleLine::Stage { name: "persist", text: "hint: see above" })
        );
    }
}
