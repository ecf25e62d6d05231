//! Unit tests of loading, composition, validation and provenance. The merge laws are property
//! tests in builder/tests/profile_laws.rs.

use std::path::{Path, PathBuf};

use super::*;

/// A temporary project directory with profile files.
struct Tree {
    dir: tempfile::TempDir,
}

impl Tree {
    fn new() -> Self {
        Tree { dir: tempfile::tempdir().unwrap() }
    }

    fn root(&self) -> PathBuf {
        self.dir.path().canonicalize().unwrap()
    }

    fn file(&self, rel: &str, text: &str) -> PathBuf {
        let p = self.root().join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, text).unwrap();
        p
    }

    fn dir(&self, rel: &str) -> PathBuf {
        let p = self.root().join(rel);
        std::fs::create_dir_all(&p).unwrap();
        p
    }

    fn load(&self, rel: &str) -> Result<Resolved, ProfileError> {
        load(&self.root().join(rel))
    }
}

fn loc(e: &ProfileError) -> (PathBuf, Option<usize>, Option<usize>) {
    let l = e.location().unwrap_or_else(|| panic!("no location in {e:?}"));
    (l.file.clone(), l.line, l.column)
}

// --- strict parsing ----------------------------------------------------------------------------

#[test]
fn unknown_key_names_file_line_and_column() {
    let t = Tree::new();
    let f = t.file("profiles/tiny.toml", "name = \"tiny\"\nhostname = \"tiny\"\n\nhostnme = \"x\"\n");
    let e = t.load("profiles/tiny.toml").unwrap_err();
    assert_eq!(loc(&e), (f.clone(), Some(4), Some(1)));
    let msg = e.to_string();
    assert!(msg.contains("tiny.toml:4:1: unknown field `hostnme`"), "{msg}");
    assert!(msg.contains("expected one of `name`, `description`"), "{msg}");
}

#[test]
fn unknown_key_in_nested_table_and_service() {
    let t = Tree::new();
    t.file("a.toml", "hostname = \"a\"\n[kernel]\ncmdline = []\n  modlues = [\"x\"]\n");
    let e = t.load("a.toml").unwrap_err();
    assert_eq!((loc(&e).1, loc(&e).2), (Some(4), Some(3)));
    assert!(e.to_string().contains("unknown field `modlues`, expected one of `package`, `cmdline`, `modules`"), "{e}");

    t.file("b.toml", "hostname = \"b\"\n[services.web]\ncommand = [\"/bin/httpd\"]\nrestrat = \"never\"\n");
    let e = t.load("b.toml").unwrap_err();
    assert_eq!((loc(&e).1, loc(&e).2), (Some(4), Some(1)));
    assert!(e.to_string().contains("unknown field `restrat`"), "{e}");
}

#[test]
fn wrong_type_names_file_line_and_column() {
    let t = Tree::new();
    let f = t.file("p.toml", "hostname = \"p\"\n[qemu]\nmemory_mib = \"lots\"\n");
    let e = t.load("p.toml").unwrap_err();
    assert_eq!(loc(&e), (f, Some(3), Some(14)));
    assert!(e.to_string().contains("invalid type: string \"lots\", expected"), "{e}");

    t.file("q.toml", "hostname = \"q\"\n[kernel]\ncmdline = \"console=ttyS0\"\n");
    let e = t.load("q.toml").unwrap_err();
    assert_eq!((loc(&e).1, loc(&e).2), (Some(3), Some(11)));
    assert!(e.to_string().contains("expected an array"), "{e}");

    t.file("r.toml", "hostname = \"r\"\narch = \"x86\"\n");
    let e = t.load("r.toml").unwrap_err();
    assert_eq!((loc(&e).1, loc(&e).2), (Some(2), Some(8)));
    assert!(e.to_string().contains("unknown variant `x86`, expected `x86_64` or `aarch64`"), "{e}");
}

#[test]
fn syntax_error_has_position() {
    let t = Tree::new();
    t.file("s.toml", "hostname = \"s\"\n[kernel\n");
    let e = t.load("s.toml").unwrap_err();
    assert_eq!(loc(&e).1, Some(2));
    assert!(!e.to_string().contains('\n'), "one line: {e}");
}

#[test]
fn error_in_included_file_names_that_file() {
    let t = Tree::new();
    let base = t.file("common/base.toml", "\n\nkernal = 1\n");
    t.file("top.toml", "include = [\"common/base.toml\"]\nhostname = \"t\"\n");
    let e = t.load("top.toml").unwrap_err();
    assert_eq!(loc(&e), (base, Some(3), Some(1)));
}

// --- includes ----------------------------------------------------------------------------------

#[test]
fn includes_merge_in_order_then_the_including_file() {
    let t = Tree::new();
    t.file(
        "a.toml",
        "hostname = \"from-a\"\narch = \"aarch64\"\ndescription = \"a\"\n\
         [kernel]\ncmdline = [\"console=ttyS0\", \"quiet\"]\nmodules = [\"virtio_pci\", \"loop\"]\n\
         [services.hello]\ncommand = [\"/bin/echo\", \"a\"]\nrestart = \"never\"\nenv = [\"A=1\"]\n",
    );
    t.file(
        "b.toml",
        "hostname = \"from-b\"\n[kernel]\ncmdline = [\"quiet\", \"loglevel=3\"]\n\
         [services.hello]\ncommand = [\"/bin/echo\", \"b\"]\nenv = [\"B=2\", \"A=1\"]\n\
         [qemu]\nmemory_mib = 1024\n",
    );
    let top = t.file(
        "top.toml",
        "include = [\"a.toml\", \"b.toml\"]\ndescription = \"top\"\n[kernel]\nmodules = [\"squashfs\", \"loop\"]\n",
    );
    let r = t.load("top.toml").unwrap();
    let p = &r.profile;
    let root = t.root();
    assert_eq!(r.files, vec![root.join("a.toml"), root.join("b.toml"), top.clone()]);
    assert_eq!(p.name, "top");
    assert_eq!(p.hostname, "from-b"); // later include wins
    assert_eq!(p.arch, Arch::Aarch64); // set only in a
    assert_eq!(p.description.as_deref(), Some("top")); // including file wins
    assert_eq!(p.kernel.cmdline, ["console=ttyS0", "quiet", "loglevel=3"]);
    assert_eq!(p.kernel.modules, ["virtio_pci", "loop", "squashfs"]);
    assert_eq!(p.kernel.package, "linux-image-arm64"); // default follows arch
    let hello = p.service("hello").unwrap();
    assert_eq!(hello.command, ["/bin/echo", "b"]); // argv replaced whole
    assert_eq!(hello.restart, Restart::Never); // scalar kept from a
    assert_eq!(hello.env, ["A=1", "B=2"]);
    assert_eq!(p.qemu.memory_mib, 1024);
    assert_eq!(p.qemu.cpus, 1);

    // provenance
    let o = |k: &str| r.origins.get(k).cloned().unwrap_or_default();
    assert_eq!(o("hostname"), vec![root.join("b.toml")]);
    assert_eq!(o("arch"), vec![root.join("a.toml")]);
    assert_eq!(o("description"), vec![top.clone()]);
    assert_eq!(o("kernel.cmdline"), vec![root.join("a.toml"), root.join("a.toml"), root.join("b.toml")]);
    assert_eq!(o("kernel.modules"), vec![root.join("a.toml"), root.join("a.toml"), top.clone()]);
    assert_eq!(o("services.hello.command"), vec![root.join("b.toml")]);
    assert_eq!(o("services.hello.restart"), vec![root.join("a.toml")]);
    assert_eq!(r.origin_files("kernel.cmdline"), vec![root.join("a.toml"), root.join("b.toml")]);
    assert!(!r.origins.contains_key("kernel.package")); // default
    assert!(!r.origins.contains_key("name")); // default: file stem
}

#[test]
fn name_is_not_inherited_from_includes() {
    let t = Tree::new();
    t.file("base.toml", "name = \"base\"\nhostname = \"h\"\n");
    t.file("tiny.toml", "include = [\"base.toml\"]\n");
    assert_eq!(t.load("tiny.toml").unwrap().profile.name, "tiny");
    assert_eq!(t.load("base.toml").unwrap().profile.name, "base");
    t.file("named.toml", "name = \"other\"\ninclude = [\"base.toml\"]\n");
    assert_eq!(t.load("named.toml").unwrap().profile.name, "other");
}

#[test]
fn include_cycle_is_an_error_naming_the_cycle() {
    let t = Tree::new();
    t.file("a.toml", "hostname = \"a\"\ninclude = [\"b.toml\"]\n");
    t.file("b.toml", "include = [\"c.toml\"]\n");
    let c = t.file("c.toml", "\ninclude = [\"a.toml\"]\n");
    let e = t.load("a.toml").unwrap_err();
    let ProfileError::IncludeCycle { at, cycle } = &e else { panic!("{e:?}") };
    let root = t.root();
    assert_eq!(cycle, &vec![root.join("a.toml"), root.join("b.toml"), root.join("c.toml"), root.join("a.toml")]);
    assert_eq!((at.file.clone(), at.line), (c, Some(2)));
    let msg = e.to_string();
    assert!(msg.contains("include cycle:") && msg.contains("a.toml -> "), "{msg}");

    t.file("self.toml", "include = [\"./self.toml\"]\n");
    assert!(matches!(t.load("self.toml"), Err(ProfileError::IncludeCycle { .. })));
}

#[test]
fn diamond_include_is_merged_once() {
    let t = Tree::new();
    t.file("base.toml", "hostname = \"base\"\n[kernel]\ncmdline = [\"console=ttyS0\"]\n");
    t.file("net/left.toml", "include = [\"../base.toml\"]\n[kernel]\ncmdline = [\"left\"]\n");
    t.file("right.toml", "include = [\"./base.toml\"]\nhostname = \"right\"\n[kernel]\ncmdline = [\"right\"]\n");
    let top = t.file("top.toml", "include = [\"net/left.toml\", \"right.toml\"]\n");
    let r = t.load("top.toml").unwrap();
    let root = t.root();
    assert_eq!(r.files, vec![root.join("base.toml"), root.join("net/left.toml"), root.join("right.toml"), top.clone()]);
    assert_eq!(
        r.includes,
        vec![
            (top.clone(), root.join("net/left.toml")),
            (root.join("net/left.toml"), root.join("base.toml")),
            (top.clone(), root.join("right.toml")),
            (root.join("right.toml"), root.join("base.toml")),
        ]
    );
    // base is not merged a second time after right (which would put its hostname back)
    assert_eq!(r.profile.hostname, "right");
    assert_eq!(r.profile.kernel.cmdline, ["console=ttyS0", "left", "right"]);
}

#[test]
fn missing_include_names_the_including_file_and_line() {
    let t = Tree::new();
    let f = t.file("p.toml", "hostname = \"p\"\ninclude = [\n  \"ok.toml\",\n  \"nope.toml\",\n]\n");
    t.file("ok.toml", "");
    let e = t.load("p.toml").unwrap_err();
    let ProfileError::IncludeNotFound { at, include, looked_for } = &e else { panic!("{e:?}") };
    assert_eq!((&at.file, at.line, at.column), (&f, Some(4), Some(3)));
    assert_eq!(include, "nope.toml");
    assert_eq!(looked_for, &t.root().join("nope.toml"));
    assert!(e.to_string().contains("relative to the directory of the file that names them"));
}

#[test]
fn empty_included_file_changes_nothing() {
    let t = Tree::new();
    t.file("empty.toml", "");
    t.file("plain.toml", "hostname = \"h\"\n[kernel]\ncmdline=[\"a\"]\n");
    t.file("with.toml", "include = [\"empty.toml\"]\nhostname = \"h\"\n[kernel]\ncmdline=[\"a\"]\n");
    let mut a = t.load("plain.toml").unwrap().profile;
    let b = t.load("with.toml").unwrap().profile;
    a.name = b.name.clone();
    assert_eq!(a, b);
}

// --- overlays ----------------------------------------------------------------------------------

#[test]
fn overlays_are_relative_to_the_file_that_names_them() {
    let t = Tree::new();
    let ov_base = t.dir("overlays/base");
    let ov_tiny = t.dir("profiles/extra/tiny");
    t.file("profiles/common/base.toml", "hostname = \"b\"\noverlays = [\"../../overlays/base\"]\n");
    t.file(
        "profiles/tiny.toml",
        "include = [\"common/base.toml\"]\noverlays = [\"extra/tiny\", \"../overlays/base\"]\n",
    );
    let r = t.load("profiles/tiny.toml").unwrap();
    assert_eq!(r.profile.overlays, vec![ov_base, ov_tiny]); // same dir via two paths: once
    assert!(r.profile.overlays.iter().all(|p| p.is_absolute()));
}

#[test]
fn missing_overlay_names_file_and_directory() {
    let t = Tree::new();
    let f = t.file("p.toml", "hostname = \"p\"\noverlays = [\"ov/none\"]\n");
    let e = t.load("p.toml").unwrap_err();
    assert_eq!(loc(&e), (f, Some(2), Some(13)));
    let msg = e.to_string();
    assert!(msg.contains("overlay directory `ov/none` not found"), "{msg}");
    assert!(msg.contains(&t.root().join("ov/none").display().to_string()), "{msg}");
}

// --- semantic validation -----------------------------------------------------------------------

#[test]
fn missing_hostname_after_merge() {
    let t = Tree::new();
    t.file("base.toml", "arch = \"x86_64\"\n");
    let top = t.file("my_box.toml", "include = [\"base.toml\"]\n");
    let e = t.load("my_box.toml").unwrap_err();
    let ProfileError::MissingHostname { file, files, suggestion } = &e else { panic!("{e:?}") };
    assert_eq!(file, &top);
    assert_eq!(files.len(), 2);
    assert_eq!(suggestion, "my-box");
    assert!(e.to_string().contains("no `hostname` is set; add e.g. `hostname = \"my-box\"`"), "{e}");
}

#[test]
fn hostname_validation() {
    for good in ["a", "tiny", "web-01", "a.b.c", "x1", &"a".repeat(63)] {
        assert!(validate::is_valid_hostname(good), "{good}");
    }
    for bad in ["", "-a", "a-", "a_b", "a..b", ".a", "a.", "é", "a b", &"a".repeat(64)] {
        assert!(!validate::is_valid_hostname(bad), "{bad:?}");
    }
    let t = Tree::new();
    let f = t.file("p.toml", "# comment\nhostname = \"my_host\"\n");
    let e = t.load("p.toml").unwrap_err();
    assert_eq!(loc(&e), (f, Some(2), Some(12)));
    assert!(e.to_string().contains("invalid hostname `my_host`"), "{e}");
}

#[test]
fn service_checks() {
    let t = Tree::new();
    t.file("rel.toml", "hostname = \"h\"\n[services.web]\ncommand = [\"httpd\", \"-f\"]\n");
    let e = t.load("rel.toml").unwrap_err();
    assert_eq!((loc(&e).1, loc(&e).2), (Some(3), Some(12)));
    assert!(e.to_string().contains("command[0] `httpd` is not an absolute path"), "{e}");

    t.file("empty.toml", "hostname = \"h\"\n[services.web]\ncommand = []\n");
    assert!(t.load("empty.toml").unwrap_err().to_string().contains("`command` is empty"));

    t.file("name.toml", "hostname = \"h\"\n[services.Web]\ncommand = [\"/bin/true\"]\n");
    let e = t.load("name.toml").unwrap_err();
    assert_eq!((loc(&e).1, loc(&e).2), (Some(2), Some(11)));
    assert!(e.to_string().contains("invalid service name `Web`"), "{e}");

    t.file("env.toml", "hostname = \"h\"\n[services.web]\ncommand = [\"/bin/true\"]\nenv = [\"OK=1\", \"NOPE\"]\n");
    let e = t.load("env.toml").unwrap_err();
    assert_eq!((loc(&e).1, loc(&e).2), (Some(4), Some(16)));
    assert!(e.to_string().contains("env entry `NOPE` is not KEY=VALUE"), "{e}");

    let base = t.file("svc-base.toml", "hostname = \"h\"\n[services.web]\nenv = [\"A=1\"]\n");
    let top = t.file("svc-top.toml", "include = [\"svc-base.toml\"]\n[services.web]\nrestart = \"never\"\n");
    let e = t.load("svc-top.toml").unwrap_err();
    let ProfileError::Inconsistent { files, message } = &e else { panic!("{e:?}") };
    assert_eq!(files, &vec![base.clone(), top]);
    assert!(message.contains("service `web` has no `command`"), "{message}");

    t.file("env-top.toml", "include = [\"svc-base.toml\"]\n[services.web]\ncommand = [\"/x\"]\nenv = [\"A=2\"]\n");
    let e = t.load("env-top.toml").unwrap_err();
    assert!(e.to_string().contains("sets A twice: `A=1` (from"), "{e}");
    assert!(e.to_string().contains("svc-base.toml"), "{e}");
}

#[test]
fn qemu_and_package_checks() {
    let t = Tree::new();
    t.file("m.toml", "hostname = \"h\"\n[qemu]\nmemory_mib = 64\n");
    let e = t.load("m.toml").unwrap_err();
    assert_eq!(loc(&e).1, Some(3));
    assert!(e.to_string().contains("at least 128"), "{e}");
    t.file("c.toml", "hostname = \"h\"\n[qemu]\ncpus = 0\n");
    assert!(t.load("c.toml").is_err());
    t.file("p.toml", "hostname = \"h\"\n[packages]\ndebian = [\"busybox-static\", \"Bad_Name\"]\n");
    let e = t.load("p.toml").unwrap_err();
    assert_eq!((loc(&e).1, loc(&e).2), (Some(3), Some(29)));
    t.file("k.toml", "hostname = \"h\"\n[kernel]\nmodules = [\"virtio_blk.ko\"]\n");
    assert!(t.load("k.toml").unwrap_err().to_string().contains("invalid kernel module name"));
    t.file("ok.toml", "hostname = \"h\"\n[packages]\ndebian = [\"busybox-static:arm64\", \"libc6\", \"g++-12\"]\n");
    t.load("ok.toml").unwrap();
}

#[test]
fn defaults() {
    let t = Tree::new();
    t.file("profiles/min.toml", "hostname = \"min\"\n");
    let p = t.load("profiles/min.toml").unwrap().profile;
    assert_eq!(p.name, "min");
    assert_eq!(p.description, None);
    assert_eq!((p.arch, p.base), (Arch::X86_64, Base::Busybox));
    assert_eq!(p.kernel.package, "linux-image-amd64");
    assert!(p.kernel.cmdline.is_empty() && p.kernel.modules.is_empty() && p.overlays.is_empty());
    assert_eq!(
        p.init,
        Init { system: InitSystem::Oa, console_shell: true, emergency_shell: true, keep_runtime_config: false }
    );
    assert_eq!(p.qemu, Qemu { memory_mib: 512, cpus: 1 });
    assert!(p.services.is_empty());
}

// --- finding the top-level file ----------------------------------------------------------------

#[test]
fn bare_name_resolves_to_profiles_dir() {
    let t = Tree::new();
    let tiny = t.file("profiles/tiny.toml", "hostname = \"tiny\"\n");
    t.dir("tiny"); // a directory of the same name must not get in the way
    let root = t.root();
    assert_eq!(find_profile(Path::new("tiny"), &root).unwrap(), root.join("profiles/tiny.toml"));
    assert_eq!(find_profile(Path::new("tiny.toml"), &root).unwrap(), root.join("profiles/tiny.toml"));
    assert_eq!(find_profile(Path::new("profiles/tiny.toml"), &root).unwrap(), root.join("profiles/tiny.toml"));
    let r = load_from(Path::new("tiny"), &root).unwrap();
    assert_eq!(r.files, vec![tiny]);
    assert_eq!(r.profile.name, "tiny");
}

#[test]
fn missing_top_level_file_suggests_a_path() {
    let t = Tree::new();
    t.file("profiles/tiny.toml", "hostname = \"tiny\"\n");
    t.file("profiles/big.toml", "hostname = \"big\"\n");
    let root = t.root();
    let e = load_from(Path::new("small"), &root).unwrap_err();
    let msg = e.to_string();
    assert!(msg.starts_with("profile `small` not found; did you mean `profiles/small.toml`?"), "{msg}");
    assert!(msg.contains("profiles available here: big, tiny"), "{msg}");

    let e = load_from(Path::new("profiles/tiny"), &root).unwrap_err();
    assert!(e.to_string().contains("did you mean `profiles/tiny.toml`?"), "{e}");

    let e = load_from(Path::new("elsewhere/x.toml"), &root).unwrap_err();
    let ProfileError::NotFound { suggestion: None, .. } = e else { panic!("{e:?}") };

    let e = load_from(Path::new("profiles"), &root).unwrap_err();
    assert!(matches!(e, ProfileError::NotAFile { .. }), "{e:?}");
}

// --- outputs -----------------------------------------------------------------------------------

fn sample(t: &Tree) -> Resolved {
    t.dir("overlays/tiny");
    t.file(
        "profiles/base.toml",
        "description = \"base\"\nhostname = \"base\"\n[kernel]\ncmdline = [\"console=ttyS0\"]\n\
         modules = [\"virtio_pci\", \"virtio_blk\"]\n[packages]\ndebian = [\"busybox-static\"]\n",
    );
    t.file(
        "profiles/tiny.toml",
        "include = [\"base.toml\"]\nhostname = \"tiny\"\noverlays = [\"../overlays/tiny\"]\n\
         [kernel]\ncmdline = [\"quiet\"]\nmodules = [\"squashfs\"]\n\
         [services.hello]\ncommand = [\"/bin/sh\", \"-c\", \"echo \\\"hi\\\"\"]\nenv = [\"FOO=bar\"]\n\
         [services.clock]\ncommand = [\"/bin/date\"]\nrestart = \"on-failure\"\n",
    );
    t.load("profiles/tiny.toml").unwrap()
}

#[test]
fn services_are_sorted_by_name() {
    let t = Tree::new();
    let r = sample(&t);
    let names: Vec<&str> = r.profile.services.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["clock", "hello"]);
}

#[test]
fn render_info_shows_origins() {
    let t = Tree::new();
    let r = sample(&t);
    let info = r.render_info();
    let line = |start: &str| -> String {
        info.lines()
            .find(|l| l.trim_start().starts_with(start))
            .unwrap_or_else(|| panic!("no line {start:?} in\n{info}"))
            .to_string()
    };
    assert!(line("hostname = \"tiny\"").ends_with("tiny.toml"), "{info}");
    assert!(line("description = \"base\"").ends_with("base.toml"), "{info}");
    assert!(line("arch = \"x86_64\"").ends_with("# default"), "{info}");
    assert!(line("\"console=ttyS0\",").ends_with("base.toml"), "{info}");
    assert!(line("\"quiet\",").ends_with("tiny.toml"), "{info}");
    assert!(line("debian = [\"busybox-static\"]").ends_with("base.toml"), "{info}");
    assert!(info.contains("[services.hello]") && info.contains("[services.clock]"), "{info}");
    assert!(line("restart = \"on-failure\"").ends_with("tiny.toml"), "{info}");
    assert!(!info.contains("include ="), "{info}");
    // Every value line is valid TOML once the comments are stripped.
    let stripped: String = info.lines().map(|l| l.split("  # ").next().unwrap()).collect::<Vec<_>>().join("\n");
    let _: toml::Table = toml::from_str(&stripped).expect("render_info is TOML-ish");
}

#[test]
fn to_toml_round_trips() {
    let t = Tree::new();
    let r = sample(&t);
    let text = r.to_toml();
    let again = t.file("elsewhere/roundtrip.toml", &text);
    let r2 = load(&again).unwrap();
    assert_eq!(r2.profile, r.profile, "{text}");
    assert_eq!(r2.profile.content_hash(), r.profile.content_hash());
}

#[test]
fn content_hash_is_deterministic_and_sensitive() {
    let t = Tree::new();
    let a = sample(&t).profile;
    let b = sample(&t).profile;
    assert_eq!(a.content_hash(), b.content_hash());
    assert_eq!(a.content_hash().len(), 64);
    let mut c = a.clone();
    c.kernel.cmdline.push("x".into());
    assert_ne!(a.content_hash(), c.content_hash());
}

#[test]
fn partial_profile_parse_and_merge_api() {
    let a = PartialProfile::from_toml_str(
        Path::new("a.toml"),
        "hostname = \"a\"\n[kernel]\nmodules = [\"x\", \"y\", \"x\"]\n",
    )
    .unwrap();
    assert_eq!(a.kernel.modules.as_slice(), ["x", "y"]); // deduplicated on parse
    let b = PartialProfile::from_toml_str(Path::new("b.toml"), "[kernel]\nmodules = [\"z\", \"x\"]\n").unwrap();
    let m = merge(&a, &b);
    assert_eq!(m.hostname.as_deref(), Some("a"));
    assert_eq!(m.kernel.modules.as_slice(), ["x", "y", "z"]);
    assert_eq!(merge(&PartialProfile::default(), &m), m);
    let e = PartialProfile::from_toml_str(Path::new("c.toml"), "x = 1").unwrap_err();
    assert_eq!(e.location().unwrap().to_string(), "c.toml:1:1");
}

// --- [image] -------------------------------------------------------------------------------------

#[test]
fn image_section_defaults_checks_and_round_trip() {
    let t = Tree::new();
    t.file("d.toml", "hostname = \"h\"\n");
    let p = t.load("d.toml").unwrap().profile;
    let defaults = Image {
        disk: false,
        qcow2: false,
        persistence_mib: 0,
        esp_mib: None,
        netboot: false,
        iso: false,
        copytoram: CopyToRam::Auto,
        copytoram_ram_factor: oa_contract::config::DEFAULT_COPYTORAM_RAM_FACTOR,
    };
    assert_eq!(p.image, defaults);
    t.file("i.toml", "hostname = \"h\"\n[image]\ndisk = true\nqcow2 = true\npersistence_mib = 256\nesp_mib = 64\n");
    let p = t.load("i.toml").unwrap().profile;
    assert_eq!(p.image, Image { disk: true, qcow2: true, persistence_mib: 256, esp_mib: Some(64), ..defaults.clone() });
    assert!(p.to_toml().contains("persistence_mib = 256"));
    t.file("e.toml", "hostname = \"h\"\n[image]\ndisk = true\nesp_mib = 2\n");
    let e = t.load("e.toml").unwrap_err();
    assert_eq!((loc(&e).1, loc(&e).2), (Some(4), Some(11)));
    assert!(e.to_string().contains("esp_mib = 2 is out of range"), "{e}");
    t.file("q.toml", "hostname = \"h\"\n[image]\nqcow2 = true\n");
    let e = t.load("q.toml").unwrap_err().to_string();
    assert!(e.contains("image.qcow2 = true needs image.disk = true"), "{e}");
    t.file("u.toml", "hostname = \"h\"\n[image]\ndisk = true\nsize = 3\n");
    assert!(t.load("u.toml").unwrap_err().to_string().contains("size"));
}

#[test]
fn image_iso_and_copytoram() {
    let t = Tree::new();
    t.file("i.toml", "hostname = \"h\"\n[image]\niso = true\ncopytoram = \"yes\"\ncopytoram_ram_factor = 2\n");
    let p = t.load("i.toml").unwrap().profile;
    assert!(p.image.iso && !p.image.disk);
    assert_eq!((p.image.copytoram, p.image.copytoram_ram_factor), (CopyToRam::Yes, 2));
    let text = p.to_toml();
    assert!(text.contains("iso = true") && text.contains("copytoram = \"yes\""), "{text}");
    let again = t.file("elsewhere/i.toml", &text);
    assert_eq!(load(&again).unwrap().profile.image, p.image);
    // A later file overrides.
    t.file("n.toml", "include = [\"i.toml\"]\n[image]\ncopytoram = \"no\"\n");
    assert_eq!(t.load("n.toml").unwrap().profile.image.copytoram, CopyToRam::No);
    t.file("z.toml", "hostname = \"h\"\n[image]\ncopytoram_ram_factor = 0\n");
    let e = t.load("z.toml").unwrap_err().to_string();
    assert!(e.contains("copytoram_ram_factor = 0") && e.contains("at least 1"), "{e}");
    t.file("m.toml", "hostname = \"h\"\n[image]\ncopytoram = \"maybe\"\n");
    let e = t.load("m.toml").unwrap_err().to_string();
    assert!(e.contains("maybe") && e.contains("auto"), "{e}");
    t.file("a.toml", "hostname = \"h\"\narch = \"aarch64\"\n[image]\niso = true\n");
    let e = t.load("a.toml").unwrap_err().to_string();
    assert!(e.contains("image.iso = true needs arch = \"x86_64\"") && e.contains("iso = false"), "{e}");
}

// --- [kernel] drivers ----------------------------------------------------------------------------

#[test]
fn driver_classes_follow_the_outputs_unless_named() {
    use super::DriverClass::*;
    let t = Tree::new();
    t.file("d.toml", "hostname = \"h\"\n");
    assert_eq!(t.load("d.toml").unwrap().profile.kernel.drivers, [Storage, UsbStorage, Virtio, Keyboard]);
    t.file("n.toml", "include = [\"d.toml\"]\n[image]\nnetboot = true\n");
    let p = t.load("n.toml").unwrap().profile;
    assert_eq!(p.kernel.drivers, [Storage, UsbStorage, Virtio, Keyboard, Net]);
    // Named: a later file replaces the list whole, duplicates dropped; [] is none.
    t.file("v.toml", "include = [\"n.toml\"]\n[kernel]\ndrivers = [\"virtio\", \"hba\", \"virtio\"]\n");
    let p = t.load("v.toml").unwrap().profile;
    assert_eq!(p.kernel.drivers, [Virtio, Hba]);
    let again = t.file("elsewhere/v.toml", &p.to_toml());
    assert_eq!(load(&again).unwrap().profile.kernel.drivers, [Virtio, Hba]);
    t.file("e.toml", "hostname = \"h\"\n[kernel]\ndrivers = []\n");
    assert!(t.load("e.toml").unwrap().profile.kernel.drivers.is_empty());
    t.file("x.toml", "hostname = \"h\"\n[kernel]\ndrivers = [\"wifi\"]\n");
    let e = t.load("x.toml").unwrap_err().to_string();
    assert!(e.contains("unknown variant `wifi`") && e.contains("usb-storage"), "{e}");
}

#[test]
fn secure_boot_section() {
    let t = Tree::new();
    t.file("d.toml", "hostname = \"h\"\n");
    let p = t.load("d.toml").unwrap().profile;
    assert_eq!(
        p.secure_boot,
        SecureBoot {
            mode: SecureBootMode::Off,
            key: None,
            cert: None,
            verity: false,
            config_key: None,
            config_required: false,
            sign_key: None
        }
    );
    assert!(!p.secure_boot.signs());
    // Key and certificate are relative to the file naming them; verity defaults on with uki.
    t.file("sub/keys.toml", "[secure_boot]\nmode = \"uki\"\nkey = \"keys/db.key\"\ncert = \"/etc/oa/db.crt\"\n");
    t.file("u.toml", "hostname = \"h\"\ninclude = [\"sub/keys.toml\"]\n");
    let p = t.load("u.toml").unwrap().profile;
    assert!(p.secure_boot.signs() && p.secure_boot.verity);
    assert_eq!(p.secure_boot.key, Some(t.root().join("sub/keys/db.key")));
    assert_eq!(p.secure_boot.cert, Some(PathBuf::from("/etc/oa/db.crt")));
    // The minisign keys are relative to their file too, with any mode.
    t.file(
        "sub/cfg.toml",
        "[secure_boot]\nconfig_key = \"keys/minisign.pub\"\nconfig_required = true\nsign_key = \"keys/minisign.key\"\n",
    );
    t.file("c.toml", "hostname = \"h\"\ninclude = [\"sub/cfg.toml\"]\n");
    let sb = t.load("c.toml").unwrap().profile.secure_boot;
    assert_eq!(sb.mode, SecureBootMode::Off);
    assert_eq!(sb.config_key, Some(t.root().join("sub/keys/minisign.pub")));
    assert_eq!(sb.sign_key, Some(t.root().join("sub/keys/minisign.key")));
    assert!(sb.config_required);
    t.file("ce.toml", "hostname = \"h\"\n[secure_boot]\nconfig_key = \"\"\n");
    let e = t.load("ce.toml").unwrap_err().to_string();
    assert!(e.contains("config_key is empty") && e.contains("minisign.pub"), "{e}");
    assert!(p.to_toml().contains("mode = \"uki\""));
    // What does not fit together is named.
    t.file("n.toml", "hostname = \"h\"\n[secure_boot]\nmode = \"uki\"\n");
    let e = t.load("n.toml").unwrap_err().to_string();
    assert!(e.contains("needs key") && e.contains("oa keys init"), "{e}");
    t.file("v.toml", "hostname = \"h\"\n[secure_boot]\nverity = true\n");
    let e = t.load("v.toml").unwrap_err().to_string();
    assert!(e.contains("verity = true needs signing"), "{e}");
    t.file("k.toml", "hostname = \"h\"\n[secure_boot]\nmode = \"off\"\nkey = \"a\"\n");
    let e = t.load("k.toml").unwrap_err().to_string();
    assert!(e.contains("mode = \"uki\" only"), "{e}");
    t.file("s.toml", "hostname = \"h\"\n[secure_boot]\nmode = \"shim\"\n");
    let e = t.load("s.toml").unwrap_err().to_string();
    assert!(e.contains("disk = true"), "{e}");
    t.file("s.toml", "hostname = \"h\"\n[image]\ndisk = true\n[secure_boot]\nmode = \"shim\"\n");
    let sb = t.load("s.toml").unwrap().profile.secure_boot;
    assert_eq!((sb.mode, sb.verity, sb.signs()), (SecureBootMode::Shim, false, false));
    t.file("si.toml", "hostname = \"h\"\n[image]\ndisk = true\niso = true\n[secure_boot]\nmode = \"shim\"\n");
    assert_eq!(t.load("si.toml").unwrap().profile.secure_boot.mode, SecureBootMode::Shim);
    t.file("so.toml", "hostname = \"h\"\n[image]\niso = true\n[secure_boot]\nmode = \"shim\"\n");
    assert!(t.load("so.toml").unwrap().profile.image.iso, "an ISO alone boots through shim too");
    t.file("sa.toml", "hostname = \"h\"\nbase = \"arch\"\n[pacman.repos.core]\nservers = [\"http://127.0.0.1/\"]\n[packages]\narch = [\"base\", \"linux\"]\n[image]\ndisk = true\n[secure_boot]\nmode = \"shim\"\n");
    let e = t.load("sa.toml").unwrap_err().to_string();
    assert!(e.contains("Debian's signed kernel"), "{e}");
    t.file("sv.toml", "hostname = \"h\"\n[image]\ndisk = true\n[secure_boot]\nmode = \"shim\"\nverity = true\n");
    let e = t.load("sv.toml").unwrap_err().to_string();
    assert!(e.contains("verity = true needs signing"), "{e}");
    t.file("vu.toml", "hostname = \"h\"\n[secure_boot]\nmode = \"uki\"\nkey = \"k\"\ncert = \"c\"\nverity = false\n");
    assert!(!t.load("vu.toml").unwrap().profile.secure_boot.verity);
    t.file(
        "a.toml",
        "hostname = \"h\"\narch = \"aarch64\"\n[secure_boot]\nmode = \"uki\"\nkey = \"k\"\ncert = \"c\"\n",
    );
    let e = t.load("a.toml").unwrap_err().to_string();
    assert!(e.contains("netboot = true") && e.contains("linuxaa64.efi.stub"), "{e}");
    t.file("an.toml", "include = [\"a.toml\"]\n[image]\nnetboot = true\n");
    assert_eq!(t.load("an.toml").unwrap().profile.secure_boot.mode, SecureBootMode::Uki);
    t.file("as.toml", "hostname = \"h\"\narch = \"aarch64\"\n[image]\ndisk = true\n[secure_boot]\nmode = \"shim\"\n");
    let e = t.load("as.toml").unwrap_err().to_string();
    assert!(e.contains("x86_64 only") && e.contains("mode = \"uki\""), "{e}");
    t.file("m.toml", "hostname = \"h\"\n[secure_boot]\nmode = \"signed\"\n");
    let e = t.load("m.toml").unwrap_err();
    assert_eq!(loc(&e).1, Some(3));
    t.file("e.toml", "hostname = \"h\"\n[secure_boot]\nmode = \"uki\"\nkey = \"\"\ncert = \"c\"\n");
    let e = t.load("e.toml").unwrap_err();
    assert_eq!(loc(&e).1, Some(4));
}
