//! Errors from loading profiles, written for people: each names the file (and line and column
//! where known) and says what to do.

use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};

/// A place in a profile file. `line` and `column` are 1-based; the column counts characters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Location {
    pub file: PathBuf,
    pub line: Option<usize>,
    pub column: Option<usize>,
}

impl Location {
    /// The whole file, no position.
    pub fn file(file: &Path) -> Self {
        Location { file: file.to_path_buf(), line: None, column: None }
    }

    /// The position of byte offset `span.start` in `text`.
    pub fn from_span(file: &Path, text: &str, span: Option<Range<usize>>) -> Self {
        match span {
            Some(span) => {
                let (line, column) = line_col(text, span.start);
                Location { file: file.to_path_buf(), line: Some(line), column: Some(column) }
            }
            None => Location::file(file),
        }
    }
}

/// 1-based line and character column of byte `offset` in `text`.
pub(crate) fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let mut offset = offset.min(text.len());
    while !text.is_char_boundary(offset) {
        offset -= 1;
    }
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let column = before[line_start..].chars().count() + 1;
    (line, column)
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", shown(&self.file))?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
            if let Some(column) = self.column {
                write!(f, ":{column}")?;
            }
        }
        Ok(())
    }
}

/// A path as shown to people: relative to the current directory when it is below it.
pub(crate) fn shown(path: &Path) -> String {
    if path.is_absolute() {
        if let Ok(cwd) = std::env::current_dir() {
            let cwd = cwd.canonicalize().unwrap_or(cwd);
            if let Ok(rel) = path.strip_prefix(&cwd) {
                if !rel.as_os_str().is_empty() {
                    return rel.display().to_string();
                }
            }
        }
    }
    path.display().to_string()
}

fn shown_list(paths: &[PathBuf], sep: &str) -> String {
    paths.iter().map(|p| shown(p)).collect::<Vec<_>>().join(sep)
}

/// Why a profile could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ProfileError {
    /// The top-level profile file does not exist.
    #[error("profile `{}` not found{}", .path.display(), not_found_hint(.path, .suggestion, .available))]
    NotFound { path: PathBuf, suggestion: Option<PathBuf>, available: Vec<String> },

    /// The top-level path is a directory or something else that is not a file.
    #[error("profile `{}` is not a file; give the path of a profile's .toml file", .path.display())]
    NotAFile { path: PathBuf },

    /// A file could not be read.
    #[error("reading {}: {source}", shown(.path))]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    /// Syntax error, unknown key, wrong type, or an invalid value in one file.
    #[error("{at}: {message}")]
    Invalid { at: Location, message: String },

    /// `include = [...]` names a file that does not exist.
    #[error(
        "{at}: included file `{include}` not found (looked for {}); include paths are relative \
         to the directory of the file that names them",
        .looked_for.display()
    )]
    IncludeNotFound { at: Location, include: String, looked_for: PathBuf },

    /// A file includes itself, directly or through others. `cycle` starts and ends with the
    /// same file.
    #[error("{at}: include cycle: {}; remove one of these includes", shown_list(.cycle, " -> "))]
    IncludeCycle { at: Location, cycle: Vec<PathBuf> },

    /// No file set `hostname`.
    #[error(
        "{}: no `hostname` is set; add e.g. `hostname = \"{suggestion}\"` to this file or to a \
         file it includes (files read: {})",
        shown(.file), shown_list(.files, ", ")
    )]
    MissingHostname { file: PathBuf, files: Vec<PathBuf>, suggestion: String },

    /// The merged profile is inconsistent (e.g. a service without `command`): `files` are
    /// the files involved.
    #[error("{}: {message}", shown_list(.files, ", "))]
    Inconsistent { files: Vec<PathBuf>, message: String },
}

fn not_found_hint(path: &Path, suggestion: &Option<PathBuf>, available: &[String]) -> String {
    let mut out = String::new();
    if let Some(s) = suggestion {
        out.push_str(&format!("; did you mean `{}`?", s.display()));
        if path.components().count() == 1 {
            out.push_str(" (a bare name NAME is looked up as profiles/NAME.toml in the current directory)");
        }
    }
    if !available.is_empty() {
        out.push_str(&format!("; profiles available here: {}", available.join(", ")));
    }
    out
}

impl ProfileError {
    /// The location the error points at, if it points into a file.
    pub fn location(&self) -> Option<&Location> {
        match self {
            ProfileError::Invalid { at, .. }
            | ProfileError::IncludeNotFound { at, .. }
            | ProfileError::IncludeCycle { at, .. } => Some(at),
            _ => None,
        }
    }
}
