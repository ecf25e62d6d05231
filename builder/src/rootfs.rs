//! The root filesystem tree: packages unpacked (in Rust, no dpkg, no root), the busybox applet
//! links, overlays in profile order, and the files generated from the profile (hostname,
//! `/etc/oa/system.json`, oa-init itself).

use crate::deb;
use crate::error::{Error, IoContext, Result};
use crate::fsutil;
use crate::profile::Profile;
use oa_contract::config::{Service, SystemConfig};
use oa_contract::rootfs_paths;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};

/// Inputs of the rootfs stage (all resolved: files exist).
pub struct Inputs<'a> {
    pub profile: &'a Profile,
    /// Unpacked in this order.
    pub debs: &'a [PathBuf],
    pub init_bin: &'a Path,
}

/// The system config the init reads in stage 2, from the profile.
pub fn system_config(p: &Profile) -> SystemConfig {
    SystemConfig {
        profile: p.name.clone(),
        hostname: p.hostname.clone(),
        init: p.init.system,
        services: p
            .services
            .iter()
            .map(|s| Service {
                name: s.name.clone(),
                command: s.command.clone(),
                restart: s.restart,
                env: s.env.clone(),
            })
            .collect(),
        console_shell: p.init.console_shell,
        keep_runtime_config: p.init.keep_runtime_config,
    }
}

/// Populate `root` (an empty directory).
pub fn assemble(root: &Path, inputs: &Inputs) -> Result<()> {
    let p = inputs.profile;
    for d in [
        "bin", "sbin", "usr/bin", "usr/sbin", "etc", "proc", "sys", "dev", "run", "tmp", "root", "var/log", "mnt",
        "home",
    ] {
        std::fs::create_dir_all(root.join(d)).ctx("creating", root.join(d))?;
    }
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(root.join("tmp"), std::fs::Permissions::from_mode(0o1777))
        .ctx("setting mode of", root.join("tmp"))?;
    std::fs::set_permissions(root.join("root"), std::fs::Permissions::from_mode(0o700))
        .ctx("setting mode of", root.join("root"))?;

    for d in inputs.debs {
        deb::extract(d, root, &|_| true)?;
    }
    if p.base.as_str() == "busybox" {
        busybox_links(root, p.arch.as_str())?;
        base_files(root)?;
    }
    for o in &p.overlays {
        fsutil::copy_tree(o, root)?;
    }
    // Generated from the profile: last, so they describe what the profile says.
    fsutil::write_file(&root.join("etc/hostname"), format!("{}\n", p.hostname).as_bytes(), 0o644)?;
    let cfg = serde_json::to_vec_pretty(&system_config(p)).map_err(|e| Error::Encode(e.to_string()))?;
    fsutil::write_file(&root.join(rootfs_paths::SYSTEM_CONFIG), &cfg, 0o644)?;
    let init_dst = root.join(rootfs_paths::INIT);
    let data = std::fs::read(inputs.init_bin).ctx("reading", inputs.init_bin)?;
    fsutil::write_file(&init_dst, &data, 0o755)?;
    for s in &p.services {
        let exe = root.join(s.command[0].trim_start_matches('/'));
        if exe.symlink_metadata().is_err() {
            return Err(Error::RootContent(format!(
                "service `{}`: {} is not in the root filesystem; add the package or overlay that provides it",
                s.name, s.command[0]
            )));
        }
    }
    Ok(())
}

/// Links for every busybox applet (`/bin/sh -> /bin/busybox` ...), from the binary's own list.
fn busybox_links(root: &Path, arch: &str) -> Result<()> {
    let bb = root.join("bin/busybox");
    if !bb.exists() {
        return Err(Error::RootContent("base = \"busybox\" but no package put /bin/busybox in the root filesystem; add busybox-static to [packages] debian".into()));
    }
    // The applet list comes from the binary itself; a foreign-arch busybox runs under QEMU's
    // user-mode emulator (qemu-user-static), which is what the cross build needs anyway.
    let mut cmd = if arch == std::env::consts::ARCH {
        std::process::Command::new(&bb)
    } else {
        let emu = format!("qemu-{arch}-static");
        if crate::tool::which(&emu).is_none() {
            return Err(Error::ToolMissing {
                tool: emu,
                why: format!(
                    "needed to list the applets of the {arch} busybox on this {} host",
                    std::env::consts::ARCH
                ),
                hint: "apt-get install qemu-user-static (`make deps` does it)".into(),
            });
        }
        let mut c = std::process::Command::new(emu);
        c.arg(&bb);
        c
    };
    let out = crate::tool::run(cmd.arg("--list-full"), "busybox", "the busybox binary from the package must run")?;
    for applet in out.lines().map(str::trim).filter(|l| !l.is_empty()) {
        let link = root.join(applet);
        if link.symlink_metadata().is_ok() {
            continue;
        }
        if let Some(parent) = link.parent() {
            std::fs::create_dir_all(parent).ctx("creating", parent)?;
        }
        symlink("/bin/busybox", &link).ctx("creating applet link", &link)?;
    }
    Ok(())
}

/// The few files a busybox system needs that no package provides.
fn base_files(root: &Path) -> Result<()> {
    let files: [(&str, &str, u32); 5] = [
        ("etc/passwd", "root:x:0:0:root:/root:/bin/sh\n", 0o644),
        ("etc/group", "root:x:0:\n", 0o644),
        ("etc/shadow", "root:*:19000:0:99999:7:::\n", 0o600),
        ("etc/hosts", "127.0.0.1 localhost\n::1 localhost\n", 0o644),
        ("etc/profile", "export PATH=/usr/sbin:/usr/bin:/sbin:/bin\nexport PS1=\"$(hostname)# \"\n", 0o644),
    ];
    for (path, content, mode) in files {
        let p = root.join(path);
        if !p.exists() {
            fsutil::write_file(&p, content.as_bytes(), mode)?;
        }
    }
    Ok(())
}
