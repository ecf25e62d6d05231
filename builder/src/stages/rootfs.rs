//! Stage `rootfs`: the root tree (base tree or the busybox base's packages, overlays, oa-init,
//! the persistence bundle, customisation) packed as squashfs.

use crate::build::{need, Context, Stored};
use crate::error::{IoContext, Result};
use crate::hash::Key;
use crate::pipeline::Outcome;
use crate::profile::Base;
use crate::{bases, fsutil, rootfs, squashfs};
use oa_contract::manifest::artifact;
use std::path::PathBuf;

pub fn run(cx: &mut Context) -> Result<Outcome> {
    let p = cx.profile;
    let debs = &need(&cx.packages, "rootfs", "the packages")?.debs;
    let base = match p.base {
        Base::Busybox => None,
        _ => need(&cx.base, "rootfs", "the base tree")?.tree(),
    };
    let mut key = Key::new("rootfs");
    key.add("profile", &serde_json::to_vec(&rootfs::system_config(p)).unwrap_or_default());
    key.add("base", p.base.as_str().as_bytes())
        .add("arch", p.arch.as_str().as_bytes())
        .add("hostname", p.hostname.as_bytes());
    for (_, info) in debs {
        key.add("deb", info.sha256.as_bytes());
    }
    for o in &p.overlays {
        key.add_tree("overlay", o)?;
    }
    key.add("init", cx.init.sha256.as_bytes());
    if let Some(s) = &cx.storage {
        key.add("persistence", s.key.as_bytes());
    }
    if let Some(b) = base {
        // What the base tree holds (its key and package list), not when it was made: a
        // `--refresh` that finds no new versions keeps the root image.
        key.add("base-tree", b.content.as_bytes());
    }
    let customisation = serde_json::json!([p.name, p.init.system, p.users, p.system, p.files]);
    key.add("customisation", customisation.to_string().as_bytes());

    let (entry, made) = cx.store.get_or_build("rootfs", &key.hex(), cx.opts.no_cache, |scratch| {
        let tree = scratch.join("tree");
        std::fs::create_dir_all(&tree).ctx("creating", &tree)?;
        let deb_paths: Vec<PathBuf> = debs.iter().map(|(p, _)| p.clone()).collect();
        if let Some(b) = base {
            bases::unpack(&b.tar, &tree)?;
        }
        rootfs::assemble(&tree, &rootfs::Inputs { profile: p, debs: &deb_paths, init_bin: &cx.init.path })?;
        if let Some(s) = &cx.storage {
            s.install_rootfs(&tree)?;
        }
        bases::customize::apply(&tree, p)?;
        bases::customize::write_files(&tree, p)?;
        let size = fsutil::tree_size(&tree);
        // A full OS keeps its file owners (/etc/shadow, home folders); busybox is all root.
        let owners = if p.base != Base::Busybox || !p.users.is_empty() {
            squashfs::Owners::Keep
        } else {
            squashfs::Owners::AllRoot
        };
        let img = scratch.join(artifact::ROOTFS);
        squashfs::pack(&tree, &img, owners)?;
        std::fs::remove_dir_all(&tree).ctx("removing the assembled tree", &tree)?;
        scratch.seal(artifact::ROOTFS)?;
        let packed = std::fs::metadata(&img).ctx("reading", &img)?.len();
        Ok(format!("{} KiB of files packed to {} KiB", size / 1024, packed / 1024))
    })?;
    cx.rootfs = Some(Stored { path: entry.file(artifact::ROOTFS), sha256: entry.digest(artifact::ROOTFS)? });
    Ok(match made {
        Some(detail) => Outcome::made(detail),
        None => Outcome::cached("unchanged"),
    })
}
