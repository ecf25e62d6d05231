//! `oa build tiny`: a bare name is looked up as profiles/tiny.toml in the current directory.
//! Its own test binary because it changes the process's current directory.

use std::path::Path;

use oa_builder::profile::{load, ProfileError};

#[test]
fn bare_name_is_looked_up_in_profiles_of_the_current_directory() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().canonicalize().unwrap();
    std::fs::create_dir_all(root.join("profiles")).unwrap();
    std::fs::create_dir_all(root.join("overlays/tiny")).unwrap();
    std::fs::write(root.join("profiles/base.toml"), "hostname = \"base\"\n").unwrap();
    std::fs::write(root.join("profiles/tiny.toml"), "include = [\"base.toml\"]\noverlays = [\"../overlays/tiny\"]\n")
        .unwrap();
    std::env::set_current_dir(&root).unwrap();

    let r = load(Path::new("tiny")).unwrap();
    assert_eq!(r.profile.name, "tiny");
    assert_eq!(r.profile.overlays, vec![root.join("overlays/tiny")]);
    assert_eq!(r.files, vec![root.join("profiles/base.toml"), root.join("profiles/tiny.toml")]);
    // paths below the current directory are shown relative to it
    let info = r.render_info();
    assert!(info.contains("# from profiles/base.toml"), "{info}");

    let e = load(Path::new("tiyn")).unwrap_err();
    assert!(matches!(e, ProfileError::NotFound { .. }));
    assert_eq!(
        e.to_string(),
        "profile `tiyn` not found; did you mean `profiles/tiyn.toml`? (a bare name NAME is looked \
         up as profiles/NAME.toml in the current directory); profiles available here: base, tiny"
    );
}
