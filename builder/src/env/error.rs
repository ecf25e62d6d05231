//! Errors from loading an environment file: each names the file (and line and column where
//! known) and says what to do.

use crate::profile::Location;
use std::path::PathBuf;

/// Why an environment file could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum EnvError {
    /// The file could not be read.
    #[error("reading environment {}: {source}; give the path of an environment's .toml file (see examples/)", .path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    /// Syntax error, unknown key, wrong type or an invalid value.
    #[error("{at}: {message}")]
    Invalid { at: Location, message: String },

    /// `include = [...]` names a file that does not exist.
    #[error("{at}: included environment `{include}` not found (looked for {}); include paths are relative to the directory of the file that names them", .looked_for.display())]
    IncludeNotFound { at: Location, include: String, looked_for: PathBuf },

    /// A file includes itself, directly or through others.
    #[error("{at}: include cycle: {}; remove one of these includes", .cycle.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(" -> "))]
    IncludeCycle { at: Location, cycle: Vec<PathBuf> },

    /// The same network or machine is defined by two files.
    #[error("{at}: {kind} `{name}` is defined twice (also in {}); give it another name or remove one", .first.display())]
    Duplicate { at: Location, kind: &'static str, name: String, first: PathBuf },
}

impl EnvError {
    /// The place the error points at, if it points into a file.
    pub fn location(&self) -> Option<&Location> {
        match self {
            EnvError::Invalid { at, .. }
            | EnvError::IncludeNotFound { at, .. }
            | EnvError::IncludeCycle { at, .. }
            | EnvError::Duplicate { at, .. } => Some(at),
            EnvError::Read { .. } => None,
        }
    }
}
