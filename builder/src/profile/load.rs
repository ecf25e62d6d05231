//! Reading profile files and following their includes.

use std::collections::{BTreeMap, HashSet};
use std::path::{Component, Path, PathBuf};

use super::error::ProfileError;
use super::merge::{Leaf, Leaves, Merge};
use super::validate::{check_file, finalize, Seg, Source};
use super::{PartialProfile, Resolved};

/// Load the profile at `path` (a path to a .toml file, or a bare name `NAME` looked up as
/// `profiles/NAME.toml` in the current directory), follow its includes, validate and resolve.
pub fn load(path: &Path) -> Result<Resolved, ProfileError> {
    let cwd = std::env::current_dir().map_err(|source| ProfileError::Read { path: PathBuf::from("."), source })?;
    load_from(path, &cwd)
}

/// [`load`] with relative paths (and bare names) taken relative to `cwd`.
pub fn load_from(path: &Path, cwd: &Path) -> Result<Resolved, ProfileError> {
    let found = find_profile(path, cwd)?;
    let top = found.canonicalize().map_err(|source| ProfileError::Read { path: found.clone(), source })?;

    let mut loader = Loader::default();
    loader.visit(&top, true)?;
    let Loader { files, parts, includes, .. } = loader;

    let merged = parts.iter().fold(PartialProfile::default(), |acc, p| acc.merge(p));
    let origins = compute_origins(&files, &parts);
    let profile = finalize(&merged, &top, &found, &files, &parts, &origins)?;
    Ok(Resolved { profile, files, includes, origins, merged })
}

/// Find the top-level profile file for a command-line argument, relative to `cwd`:
/// the path itself if it is a file; else, for a bare name (no `/`), `profiles/NAME.toml`
/// (or `profiles/NAME` if NAME ends in `.toml`). The result is `cwd`-joined, not canonical.
pub fn find_profile(arg: &Path, cwd: &Path) -> Result<PathBuf, ProfileError> {
    let direct = cwd.join(arg);
    if direct.is_file() {
        return Ok(direct);
    }
    let bare = arg.components().count() == 1 && matches!(arg.components().next(), Some(Component::Normal(_)));
    let has_toml = arg.to_string_lossy().ends_with(".toml");
    let file_name = arg.file_name().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
    if bare {
        let candidate =
            PathBuf::from("profiles").join(if has_toml { file_name.clone() } else { format!("{file_name}.toml") });
        if cwd.join(&candidate).is_file() {
            return Ok(cwd.join(candidate));
        }
    }
    if direct.exists() {
        return Err(ProfileError::NotAFile { path: arg.to_path_buf() });
    }
    let suggestion = if bare {
        let stem = file_name.strip_suffix(".toml").unwrap_or(&file_name);
        Some(PathBuf::from(format!("profiles/{stem}.toml")))
    } else if !has_toml {
        Some(PathBuf::from(format!("{}.toml", arg.display())))
    } else {
        None
    };
    let available = list_profiles(&cwd.join("profiles"));
    Err(ProfileError::NotFound { path: arg.to_path_buf(), suggestion, available })
}

/// Names of the `*.toml` files in `dir`, sorted.
fn list_profiles(dir: &Path) -> Vec<String> {
    let mut out: Vec<String> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            name.strip_suffix(".toml").map(str::to_string)
        })
        .collect();
    out.sort();
    out
}

#[derive(Default)]
struct Loader {
    /// Canonical paths in merge order, parallel to `parts`.
    files: Vec<PathBuf>,
    parts: Vec<PartialProfile>,
    done: HashSet<PathBuf>,
    /// Files being visited (for cycle detection), outermost first.
    stack: Vec<PathBuf>,
    includes: Vec<(PathBuf, PathBuf)>,
}

impl Loader {
    /// Depth-first: this file's includes in order, then the file itself. `path` is canonical.
    fn visit(&mut self, path: &Path, is_top: bool) -> Result<(), ProfileError> {
        self.stack.push(path.to_path_buf());
        let text =
            std::fs::read_to_string(path).map_err(|source| ProfileError::Read { path: path.to_path_buf(), source })?;
        let mut part = PartialProfile::from_toml_str(path, &text)?;
        let src = Source::new(path, &text);
        check_file(&src, &mut part)?;

        let dir = path.parent().unwrap_or(Path::new("/"));
        let includes = std::mem::take(&mut part.include);
        for inc in includes.iter() {
            let at = || src.at(&[Seg::Key("include"), Seg::Elem(inc)]);
            let looked_for = dir.join(inc);
            let target = match looked_for.canonicalize() {
                Ok(t) if t.is_file() => t,
                Ok(_) => {
                    return Err(ProfileError::Invalid {
                        at: at(),
                        message: format!("included `{inc}` is not a file ({})", looked_for.display()),
                    })
                }
                Err(_) => return Err(ProfileError::IncludeNotFound { at: at(), include: inc.clone(), looked_for }),
            };
            self.includes.push((path.to_path_buf(), target.clone()));
            if let Some(pos) = self.stack.iter().position(|p| *p == target) {
                let mut cycle = self.stack[pos..].to_vec();
                cycle.push(target);
                return Err(ProfileError::IncludeCycle { at: at(), cycle });
            }
            if self.done.contains(&target) {
                continue; // diamond: merged once, at its first place
            }
            self.visit(&target, false)?;
        }

        if !is_top {
            part.name = None; // `name` belongs to the top-level file only
        }
        self.stack.pop();
        self.done.insert(path.to_path_buf());
        self.files.push(path.to_path_buf());
        self.parts.push(part);
        Ok(())
    }
}

/// For each leaf: the last file that set a scalar; for set-lists, per element of the union,
/// the file that first added it.
pub(crate) fn compute_origins(files: &[PathBuf], parts: &[PartialProfile]) -> BTreeMap<String, Vec<PathBuf>> {
    let mut origins: BTreeMap<String, Vec<PathBuf>> = BTreeMap::new();
    let mut sets: BTreeMap<String, Vec<(String, PathBuf)>> = BTreeMap::new();
    for (file, part) in files.iter().zip(parts) {
        let mut leaves = Vec::new();
        part.leaves("", &mut leaves);
        for (key, leaf) in leaves {
            match leaf {
                Leaf::Scalar(_) => {
                    origins.insert(key, vec![file.clone()]);
                }
                Leaf::Set(list) if list.is_empty() => {}
                Leaf::Set(list) => {
                    let acc = sets.entry(key).or_default();
                    for x in list {
                        if !acc.iter().any(|(y, _)| y == x) {
                            acc.push((x.clone(), file.clone()));
                        }
                    }
                }
            }
        }
    }
    for (key, elems) in sets {
        origins.insert(key, elems.into_iter().map(|(_, f)| f).collect());
    }
    origins
}
