//! Customisation applied to the root tree of any base, after the packages and before the
//! overlays: users and groups (password hash, or no password, or locked), SSH authorized keys,
//! timezone, locale, files generated from the profile and, when systemd is the init, the units
//! oa adds (the ready line, SSH host keys made at first boot, DHCP with systemd-networkd) and
//! the profile's enabled/masked units.
//!
//! Everything is written directly into the tree (no chroot, no host tools), so it works the
//! same for Debian, Arch and busybox trees.

use crate::error::{Error, IoContext, Result};
use crate::fsutil::write_file;
use crate::profile::{InitSystem, Profile, User};
use oa_contract::ConsoleLine;
use std::os::unix::fs::{chown, symlink};
use std::path::{Path, PathBuf};

/// The unit that prints the ready line when systemd has reached multi-user.target.
pub const READY_UNIT: &str = "oa-ready.service";
/// The unit that makes SSH host keys at first boot (images do not share host keys).
pub const HOSTKEYS_UNIT: &str = "oa-ssh-hostkeys.service";
/// The network file that configures ethernet links by DHCP.
pub const DHCP_NETWORK: &str = "etc/systemd/network/80-oa-dhcp.network";

/// Apply users, system settings and generated files (all bases).
pub fn apply(root: &Path, p: &Profile) -> Result<()> {
    for u in &p.users {
        add_user(root, u)?;
    }
    if let Some(tz) = &p.system.timezone {
        set_timezone(root, tz)?;
    }
    if let Some(l) = &p.system.locale {
        let line = format!("LANG={l}\n");
        write_file(&root.join("etc/locale.conf"), line.as_bytes(), 0o644)?;
        if root.join("etc/default").is_dir() {
            write_file(&root.join("etc/default/locale"), line.as_bytes(), 0o644)?;
        }
    }
    if p.init.system == InitSystem::Systemd {
        systemd(root, p)?;
    } else if !p.system.enable_units.is_empty() || !p.system.mask_units.is_empty() {
        return Err(Error::RootContent("[system] enable_units/mask_units need [init] system = \"systemd\"".into()));
    }
    Ok(())
}

/// Files from `[files."<path>"]`: written last (after overlays), so they say what the profile says.
pub fn write_files(root: &Path, p: &Profile) -> Result<()> {
    for f in &p.files {
        let dst = root.join(f.path.trim_start_matches('/'));
        if dst.symlink_metadata().is_ok_and(|m| m.file_type().is_symlink()) {
            std::fs::remove_file(&dst).ctx("replacing symlink", &dst)?;
        }
        write_file(&dst, f.content.as_bytes(), f.mode)?;
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Users and groups: /etc/passwd, /etc/group, /etc/shadow (and /etc/gshadow when present).

struct Table {
    path: PathBuf,
    lines: Vec<Vec<String>>,
    mode: u32,
}

impl Table {
    fn read(root: &Path, rel: &str, mode: u32) -> Result<Table> {
        let path = root.join(rel);
        let text = if path.exists() { std::fs::read_to_string(&path).ctx("reading", &path)? } else { String::new() };
        let lines =
            text.lines().filter(|l| !l.trim().is_empty()).map(|l| l.split(':').map(str::to_string).collect()).collect();
        Ok(Table { path, lines, mode })
    }
    fn find(&mut self, name: &str) -> Option<&mut Vec<String>> {
        self.lines.iter_mut().find(|l| l.first().map(String::as_str) == Some(name))
    }
    fn ids(&self) -> Vec<u32> {
        self.lines.iter().filter_map(|l| l.get(2).and_then(|s| s.parse().ok())).collect()
    }
    fn set(&mut self, fields: Vec<String>) {
        match self.find(&fields[0].clone()) {
            Some(l) => *l = fields,
            None => self.lines.push(fields),
        }
    }
    fn write(&self) -> Result<()> {
        let text: String = self.lines.iter().map(|l| l.join(":") + "\n").collect();
        write_file(&self.path, text.as_bytes(), self.mode)?;
        Ok(())
    }
}

fn first_free(used: &[u32], from: u32) -> u32 {
    (from..60000).find(|i| !used.contains(i)).unwrap_or(60000)
}

/// The account files of a root filesystem, read once and written back together.
struct Accounts {
    passwd: Table,
    group: Table,
    shadow: Table,
    /// Debian has /etc/gshadow; Arch may not.
    gshadow: Option<Table>,
}

impl Accounts {
    fn read(root: &Path) -> Result<Accounts> {
        let gshadow =
            if root.join("etc/gshadow").exists() { Some(Table::read(root, "etc/gshadow", 0o640)?) } else { None };
        Ok(Accounts {
            passwd: Table::read(root, "etc/passwd", 0o644)?,
            group: Table::read(root, "etc/group", 0o644)?,
            shadow: Table::read(root, "etc/shadow", 0o640)?,
            gshadow,
        })
    }

    /// Add group `name` (with a free gid from 1000, or `gid`) unless it exists; its gid.
    fn ensure_group(&mut self, name: &str, gid: Option<u32>) -> u32 {
        if let Some(g) = self.group.find(name) {
            return g[2].parse().unwrap_or(gid.unwrap_or(1000));
        }
        let gid = gid.filter(|g| !self.group.ids().contains(g)).unwrap_or_else(|| first_free(&self.group.ids(), 1000));
        self.group.set(vec![name.into(), "x".into(), gid.to_string(), String::new()]);
        if let Some(gs) = &mut self.gshadow {
            gs.set(vec![name.into(), "!".into(), String::new(), String::new()]);
        }
        gid
    }

    /// Make `user` a member of group `name` (in group and gshadow).
    fn add_member(&mut self, name: &str, user: &str) {
        for t in std::iter::once(&mut self.group).chain(self.gshadow.as_mut()) {
            if let Some(l) = t.find(name) {
                l.resize(4, String::new());
                let mut members: Vec<String> = l[3].split(',').filter(|s| !s.is_empty()).map(str::to_string).collect();
                if !members.iter().any(|m| m == user) {
                    members.push(user.into());
                }
                l[3] = members.join(",");
            }
        }
    }

    /// Set the shadow entry of `user`: `*` (no password matches, key logins still work), the
    /// given hash, or `!` (locked).
    fn set_password(&mut self, u: &User) {
        let hash = if u.locked { "!".to_string() } else { u.password_hash.clone().unwrap_or_else(|| "*".into()) };
        let mut sh = self.shadow.find(&u.name).cloned().unwrap_or_else(|| {
            let mut v = vec![u.name.clone(), String::new(), "19000".into(), "0".into(), "99999".into(), "7".into()];
            v.resize(9, String::new());
            v
        });
        sh.resize(sh.len().max(9), String::new());
        sh[1] = hash;
        self.shadow.set(sh);
    }

    fn write(&mut self, root: &Path) -> Result<()> {
        self.passwd.write()?;
        self.group.write()?;
        self.shadow.write()?;
        if let Some(gs) = &self.gshadow {
            gs.write()?;
        }
        // /etc/shadow is root:shadow 0640 on Debian; keep the group when it exists.
        if let Some(g) = self.group.find("shadow").and_then(|l| l[2].parse::<u32>().ok()) {
            for f in ["etc/shadow", "etc/gshadow"] {
                if root.join(f).exists() {
                    chown(root.join(f), Some(0), Some(g)).ctx("chown", root.join(f))?;
                }
            }
        }
        Ok(())
    }
}

fn add_user(root: &Path, u: &User) -> Result<()> {
    let mut acc = Accounts::read(root)?;
    let is_root = u.name == "root";
    let existing = acc.passwd.find(&u.name).cloned();
    let uid = match (&existing, u.uid) {
        (_, Some(id)) => id,
        (Some(l), None) => l[2].parse().unwrap_or(1000),
        (None, None) => first_free(&acc.passwd.ids(), 1000),
    };
    // The user's own group: existing primary group, else a group named after the user.
    let gid = match &existing {
        Some(l) => l[3].parse().unwrap_or(uid),
        None => acc.ensure_group(&u.name, Some(uid)),
    };
    let home = u.home.clone().unwrap_or_else(|| if is_root { "/root".into() } else { format!("/home/{}", u.name) });
    let existing_shell = existing.as_ref().and_then(|l| l.get(6).cloned()).filter(|s| !s.is_empty());
    let default_shell = if root.join("bin/bash").exists() { "/bin/bash" } else { "/bin/sh" };
    let shell = u.shell.clone().or(existing_shell).unwrap_or_else(|| default_shell.into());
    let gecos = existing.as_ref().and_then(|l| l.get(4).cloned()).unwrap_or_default();
    acc.passwd.set(vec![u.name.clone(), "x".into(), uid.to_string(), gid.to_string(), gecos, home.clone(), shell]);
    acc.set_password(u);
    for g in &u.groups {
        acc.ensure_group(g, None);
        acc.add_member(g, &u.name);
    }
    acc.write(root)?;
    make_home(&root.join(home.trim_start_matches('/')), u, uid, gid)
}

/// The home folder (when missing) and `~/.ssh/authorized_keys`, owned by the user.
fn make_home(home_dir: &Path, u: &User, uid: u32, gid: u32) -> Result<()> {
    if !home_dir.exists() {
        std::fs::create_dir_all(home_dir).ctx("creating home", home_dir)?;
        set_mode(home_dir, if u.name == "root" { 0o700 } else { 0o750 })?;
        chown(home_dir, Some(uid), Some(gid)).ctx("chown", home_dir)?;
    }
    if !u.ssh_authorized_keys.is_empty() {
        let ssh = home_dir.join(".ssh");
        std::fs::create_dir_all(&ssh).ctx("creating", &ssh)?;
        set_mode(&ssh, 0o700)?;
        chown(&ssh, Some(uid), Some(gid)).ctx("chown", &ssh)?;
        let keys = ssh.join("authorized_keys");
        let text: String = u.ssh_authorized_keys.iter().map(|k| format!("{}\n", k.trim())).collect();
        write_file(&keys, text.as_bytes(), 0o600)?;
        chown(&keys, Some(uid), Some(gid)).ctx("chown", &keys)?;
    }
    Ok(())
}

fn set_mode(p: &Path, mode: u32) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).ctx("setting mode of", p)
}

fn set_timezone(root: &Path, tz: &str) -> Result<()> {
    let zone = root.join("usr/share/zoneinfo").join(tz);
    let lt = root.join("etc/localtime");
    if lt.symlink_metadata().is_ok() {
        std::fs::remove_file(&lt).ctx("replacing", &lt)?;
    }
    if zone.exists() {
        symlink(format!("/usr/share/zoneinfo/{tz}"), &lt).ctx("creating", &lt)?;
    } else if tz != "UTC" && tz != "Etc/UTC" {
        return Err(Error::RootContent(format!(
            "system.timezone = \"{tz}\": /usr/share/zoneinfo/{tz} is not in the root filesystem (add the tzdata package, or check the name)"
        )));
    }
    if root.join("etc/timezone").exists() || root.join("etc/debian_version").exists() {
        write_file(&root.join("etc/timezone"), format!("{tz}\n").as_bytes(), 0o644)?;
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// systemd

const UNIT_DIRS: [&str; 3] = ["etc/systemd/system", "usr/lib/systemd/system", "lib/systemd/system"];

fn systemd(root: &Path, p: &Profile) -> Result<()> {
    if !["sbin/init", "usr/sbin/init", "usr/lib/systemd/systemd", "lib/systemd/systemd"]
        .iter()
        .any(|f| root.join(f).exists())
    {
        return Err(Error::RootContent(
            "[init] system = \"systemd\" but the root filesystem has no /sbin/init; add systemd-sysv (Debian) or systemd (Arch) to the packages".into(),
        ));
    }
    let sysdir = root.join("etc/systemd/system");
    // The ready line, once multi-user.target is reached. DefaultDependencies=no keeps the
    // target from ordering itself after this unit (it would be a cycle).
    let line = ConsoleLine::Ready { host: "$(cat /proc/sys/kernel/hostname)", profile: &p.name };
    let ready = format!(
        "# added by oa build: the ready line `oa run --until-ready` and the tests wait for\n\
         [Unit]\nDescription=oa ready line\nDefaultDependencies=no\nAfter=multi-user.target\n\
         Conflicts=shutdown.target\nBefore=shutdown.target\n\n\
         [Service]\nType=oneshot\nRemainAfterExit=yes\n\
         ExecStart=/bin/sh -c '{{ echo; echo \"{line}\"; }} > /dev/console'\n\n\
         [Install]\nWantedBy=multi-user.target\n"
    );
    write_file(&sysdir.join(READY_UNIT), ready.as_bytes(), 0o644)?;
    let mut enable = vec![READY_UNIT.to_string()];

    // SSH host keys per machine: drop the ones made at build time, make them at first boot.
    if root.join("usr/sbin/sshd").exists() || root.join("usr/bin/sshd").exists() {
        for e in std::fs::read_dir(root.join("etc/ssh")).into_iter().flatten().flatten() {
            if e.file_name().to_string_lossy().starts_with("ssh_host_") {
                std::fs::remove_file(e.path()).ctx("removing build-time host key", e.path())?;
            }
        }
        let keygen = if root.join("usr/bin/ssh-keygen").exists() { "/usr/bin/ssh-keygen" } else { "/bin/ssh-keygen" };
        let unit = format!(
            "# added by oa build: every machine gets its own SSH host keys\n\
             [Unit]\nDescription=oa: SSH host keys\nBefore=ssh.service sshd.service\n\
             ConditionPathExists=!/etc/ssh/ssh_host_ed25519_key\n\n\
             [Service]\nType=oneshot\nExecStart={keygen} -A\n\n\
             [Install]\nWantedBy=multi-user.target\n"
        );
        write_file(&sysdir.join(HOSTKEYS_UNIT), unit.as_bytes(), 0o644)?;
        enable.push(HOSTKEYS_UNIT.to_string());
    }

    // DHCP on every ethernet link through systemd-networkd (the guest configures its NIC).
    let networkd = find_unit(root, "systemd-networkd.service").is_some();
    if p.system.dhcp.unwrap_or(networkd) {
        if !networkd {
            return Err(Error::RootContent(
                "[system] dhcp = true needs systemd-networkd in the root filesystem".into(),
            ));
        }
        write_file(
            &root.join(DHCP_NETWORK),
            b"# added by oa build ([system] dhcp)\n[Match]\nType=ether\n\n[Network]\nDHCP=yes\n",
            0o644,
        )?;
        enable.push("systemd-networkd.service".into());
    }
    enable.extend(p.system.enable_units.iter().cloned());
    let mut done = Vec::new();
    for u in &enable {
        enable_unit(root, u, &mut done)?;
    }
    for m in &p.system.mask_units {
        let link = sysdir.join(m);
        if link.symlink_metadata().is_ok() {
            std::fs::remove_file(&link).ctx("replacing", &link)?;
        }
        symlink("/dev/null", &link).ctx("masking", &link)?;
    }
    // A fresh machine id per boot (the root is an image shared by many machines).
    if root.join("etc").is_dir() {
        write_file(&root.join("etc/machine-id"), b"", 0o444)?;
    }
    Ok(())
}

/// The unit file for `name` (a template for `foo@bar.service`), relative to the root.
fn find_unit(root: &Path, name: &str) -> Option<String> {
    let template = name.split_once('@').and_then(|(a, b)| b.rsplit_once('.').map(|(_, ext)| format!("{a}@.{ext}")));
    for n in std::iter::once(name.to_string()).chain(template) {
        for d in UNIT_DIRS {
            let rel = format!("{d}/{n}");
            let p = root.join(&rel);
            if p.symlink_metadata().is_ok() {
                // A symlink to /dev/null is a masked unit, not a unit file.
                if std::fs::read_link(&p).is_ok_and(|t| t == Path::new("/dev/null")) {
                    continue;
                }
                return Some(rel);
            }
        }
    }
    None
}

/// `systemctl enable` done by hand: follow the unit's [Install] section (WantedBy=,
/// RequiredBy=, Alias=, Also=).
fn enable_unit(root: &Path, name: &str, done: &mut Vec<String>) -> Result<()> {
    if done.iter().any(|d| d == name) {
        return Ok(());
    }
    done.push(name.to_string());
    let rel = find_unit(root, name).ok_or_else(|| {
        Error::RootContent(format!(
            "systemd unit `{name}` is not in the root filesystem: add the package that ships it"
        ))
    })?;
    let path = root.join(&rel);
    // Follow a symlinked unit (aliases) to its file for reading.
    let text = std::fs::read_to_string(&path).or_else(|_| {
        let t = std::fs::read_link(&path)?;
        std::fs::read_to_string(root.join(t.to_string_lossy().trim_start_matches('/')))
    });
    let text = text.ctx("reading unit", &path)?;
    let mut in_install = false;
    let target = format!("/{rel}");
    let sysdir = root.join("etc/systemd/system");
    let instance = name.contains('@') && !name.contains("@.");
    for line in text.lines().map(str::trim) {
        if line.starts_with('[') {
            in_install = line == "[Install]";
            continue;
        }
        if !in_install {
            continue;
        }
        let Some((k, v)) = line.split_once('=') else { continue };
        for item in v.split_whitespace() {
            match k.trim() {
                "WantedBy" | "RequiredBy" => {
                    let dir =
                        sysdir.join(format!("{item}.{}", if k.trim() == "WantedBy" { "wants" } else { "requires" }));
                    std::fs::create_dir_all(&dir).ctx("creating", &dir)?;
                    let link = dir.join(name);
                    if link.symlink_metadata().is_err() {
                        symlink(&target, &link).ctx("enabling unit", &link)?;
                    }
                }
                "Alias" if !instance => {
                    let link = sysdir.join(item);
                    if link.symlink_metadata().is_err() {
                        symlink(&target, &link).ctx("aliasing unit", &link)?;
                    }
                }
                "Also" => enable_unit(root, item, done)?,
                _ => {}
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn root_with_accounts() -> tempfile::TempDir {
        let d = tempfile::tempdir().unwrap();
        let etc = d.path().join("etc");
        std::fs::create_dir_all(&etc).unwrap();
        std::fs::write(
            etc.join("passwd"),
            "root:x:0:0:root:/root:/bin/sh\nalice:x:1000:1000:Alice:/home/alice:/bin/sh\n",
        )
        .unwrap();
        std::fs::write(etc.join("group"), "root:x:0:\nshadow:x:42:\nalice:x:1000:\nusers:x:100:alice\n").unwrap();
        std::fs::write(etc.join("shadow"), "root:*:19000:0:99999:7:::\nalice:*:19000:0:99999:7:::\n").unwrap();
        std::fs::write(etc.join("gshadow"), "root:*::\nshadow:*::\nalice:!::\nusers:*::alice\n").unwrap();
        d
    }

    fn user(name: &str) -> User {
        User {
            name: name.into(),
            uid: None,
            groups: vec!["users".into(), "wheel".into()],
            shell: None,
            home: None,
            password_hash: None,
            locked: false,
            ssh_authorized_keys: vec!["ssh-ed25519 AAAA test".into()],
        }
    }

    #[test]
    fn a_new_user_gets_free_ids_its_groups_and_keys_and_applying_twice_changes_nothing() {
        let d = root_with_accounts();
        let r = d.path();
        add_user(r, &user("bob")).unwrap();
        let read = |f: &str| std::fs::read_to_string(r.join(f)).unwrap();
        let (passwd, group, shadow, gshadow) =
            (read("etc/passwd"), read("etc/group"), read("etc/shadow"), read("etc/gshadow"));
        assert!(passwd.contains("bob:x:1001:1001::/home/bob:/bin/sh\n"), "{passwd}");
        assert!(group.contains("bob:x:1001:\n") && group.contains("users:x:100:alice,bob\n"), "{group}");
        assert!(group.contains("wheel:x:1002:bob\n"), "{group}");
        assert!(shadow.contains("bob:*:19000:0:99999:7:::\n"), "{shadow}");
        assert!(gshadow.contains("wheel:!::bob\n"), "{gshadow}");
        let keys = r.join("home/bob/.ssh/authorized_keys");
        assert_eq!(std::fs::read_to_string(&keys).unwrap(), "ssh-ed25519 AAAA test\n");
        add_user(r, &user("bob")).unwrap();
        assert_eq!(
            (read("etc/passwd"), read("etc/group"), read("etc/shadow"), read("etc/gshadow")),
            (passwd, group, shadow, gshadow)
        );
    }

    #[test]
    fn an_existing_user_keeps_ids_and_gecos_and_can_be_locked() {
        let d = root_with_accounts();
        let mut u = user("alice");
        u.groups.clear();
        u.locked = true;
        add_user(d.path(), &u).unwrap();
        let passwd = std::fs::read_to_string(d.path().join("etc/passwd")).unwrap();
        assert!(passwd.contains("alice:x:1000:1000:Alice:/home/alice:/bin/sh\n"), "{passwd}");
        let shadow = std::fs::read_to_string(d.path().join("etc/shadow")).unwrap();
        assert!(shadow.contains("alice:!:19000:"), "{shadow}");
    }
}
