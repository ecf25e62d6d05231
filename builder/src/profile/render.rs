//! `oa info`: the resolved profile with the file each value came from.

use std::fmt::Write as _;
use std::path::PathBuf;

use super::error::shown;
use super::merge::{Leaf, Leaves};
use super::{PartialProfile, Resolved};

/// Comments start at this column at least (when the value fits).
const COMMENT_COLUMN: usize = 40;

impl Resolved {
    /// The resolved profile as TOML with a `# from <file>` (or `# default`) comment on every
    /// value; set-lists built from several files get one line per element. Paths are shown
    /// relative to the current directory when below it.
    pub fn render_info(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "# profile `{}`, resolved from {} file{} (merge order):",
            self.profile.name,
            self.files.len(),
            if self.files.len() == 1 { "" } else { "s" }
        );
        for f in &self.files {
            let _ = writeln!(out, "#   {}", shown(f));
        }
        let _ = writeln!(out, "# content hash: {}", self.profile.content_hash());

        let full = PartialProfile::from(&self.profile);
        let mut leaves = Vec::new();
        full.leaves("", &mut leaves);

        // (text, comment) lines; headers have no comment.
        let mut lines: Vec<(String, Option<String>)> = Vec::new();
        let mut section = String::new();
        for (key, leaf) in leaves {
            if key == "include" {
                continue; // consumed by the loader; the files are listed above
            }
            let (sec, name) = key.rsplit_once('.').unwrap_or(("", key.as_str()));
            if sec != section {
                lines.push((String::new(), None));
                lines.push((format!("[{sec}]"), None));
                section = sec.to_string();
            }
            let origins = self.origins.get(&key);
            match leaf {
                Leaf::Scalar(v) => {
                    let comment = match origins.and_then(|o| o.last()) {
                        Some(f) => format!("from {}", shown(f)),
                        None if key == "name" => "default: the file name".to_string(),
                        None => "default".to_string(),
                    };
                    lines.push((format!("{name} = {v}"), Some(comment)));
                }
                Leaf::Set(list) => {
                    let files: Vec<PathBuf> = origins.cloned().unwrap_or_default();
                    let one_file = files.first().filter(|f| files.iter().all(|g| g == *f));
                    if list.is_empty() || files.len() != list.len() {
                        let comment = if list.is_empty() { "default" } else { "" };
                        lines.push((
                            format!("{name} = {}", toml_array(list.as_slice())),
                            (!comment.is_empty()).then(|| comment.to_string()),
                        ));
                    } else if let Some(f) = one_file {
                        lines.push((
                            format!("{name} = {}", toml_array(list.as_slice())),
                            Some(format!("from {}", shown(f))),
                        ));
                    } else {
                        lines.push((format!("{name} = ["), None));
                        for (x, f) in list.iter().zip(&files) {
                            lines.push((format!("    {},", toml_string(x)), Some(format!("from {}", shown(f)))));
                        }
                        lines.push(("]".to_string(), None));
                    }
                }
            }
        }

        let width = lines
            .iter()
            .filter(|(_, c)| c.is_some())
            .map(|(t, _)| t.chars().count())
            .filter(|w| *w < COMMENT_COLUMN + 20)
            .max()
            .unwrap_or(0)
            .max(COMMENT_COLUMN - 2);
        for (text, comment) in lines {
            match comment {
                Some(c) => {
                    let _ = writeln!(out, "{text:<width$}  # {c}");
                }
                None => {
                    let _ = writeln!(out, "{text}");
                }
            }
        }
        out
    }

    /// The resolved profile as a self-contained profile file (see [`super::Profile::to_toml`]).
    pub fn to_toml(&self) -> String {
        self.profile.to_toml()
    }
}

fn toml_string(s: &str) -> String {
    toml::Value::String(s.to_string()).to_string()
}

fn toml_array(items: &[String]) -> String {
    let inner: Vec<String> = items.iter().map(|s| toml_string(s)).collect();
    format!("[{}]", inner.join(", "))
}
