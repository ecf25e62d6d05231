//! Stage `verity`: a dm-verity hash tree (sha256, 4 KiB blocks, no superblock) appended to a
//! copy of the root image. The squashfs is padded to 4 KiB and the tree written right after it,
//! so the one file is both the data and its tree: squashfs ignores what follows its end, so the
//! file still mounts without device-mapper, and oa-init maps `verity` over it with the facts of
//! `oa.verity=` (root hash, salt, data blocks).

use crate::build::{need, Context, Stored};
use crate::error::{Error, IoContext, Result};
use crate::hash::Key;
use crate::pipeline::Outcome;
use oa_contract::cmdline::{VerityArgs, VERITY_BLOCK_SIZE};
use oa_contract::manifest::artifact;
use std::path::Path;
use std::process::Command;

/// The verity facts of the build (what `oa.verity=` carries).
pub type Verity = VerityArgs;

const FACTS: &str = "verity.txt";
const HINT: &str = "install the Debian package cryptsetup-bin (`make deps` does it)";

pub fn run(cx: &mut Context) -> Result<Outcome> {
    let root = need(&cx.rootfs, "verity", "the root image")?.clone();
    if crate::tool::which("veritysetup").is_none() {
        return Err(Error::ToolMissing { tool: "veritysetup".into(), why: "not on PATH".into(), hint: HINT.into() });
    }
    // The salt is derived from the image, so the same image gives the same tree (and cache key).
    let salt = root.sha256.to_ascii_lowercase();
    let mut key = Key::new("verity");
    key.add("rootfs", root.sha256.as_bytes()).add("salt", salt.as_bytes());
    let (entry, made) = cx.store.get_or_build("verity", &key.hex(), cx.opts.no_cache, |scratch| {
        let img = scratch.join(artifact::ROOTFS);
        std::fs::copy(&root.path, &img).ctx("copying the root image to", &img)?;
        let facts = append_tree(&img, &salt)?;
        let facts_file = scratch.join(FACTS);
        std::fs::write(&facts_file, facts.to_string()).ctx("writing", &facts_file)?;
        scratch.seal(artifact::ROOTFS)?;
        Ok(format!("root hash {}, {} data blocks", &facts.root_hash[..12], facts.data_blocks))
    })?;
    let facts_path = entry.file(FACTS);
    let text = std::fs::read_to_string(&facts_path).ctx("reading", &facts_path)?;
    let facts = VerityArgs::parse(text.trim()).map_err(|e| Error::Output {
        path: facts_path.clone(),
        reason: format!("not the verity facts of a cached entry: {e}"),
    })?;
    cx.rootfs = Some(Stored { path: entry.file(artifact::ROOTFS), sha256: entry.digest(artifact::ROOTFS)? });
    cx.verity = Some(facts);
    Ok(match made {
        Some(detail) => Outcome::made(detail),
        None => Outcome::cached("unchanged"),
    })
}

/// Pad `img` to whole 4 KiB blocks and append its hash tree (veritysetup format, no superblock).
pub fn append_tree(img: &Path, salt: &str) -> Result<VerityArgs> {
    let len = std::fs::metadata(img).ctx("reading", img)?.len();
    let data_blocks = len.div_ceil(VERITY_BLOCK_SIZE);
    let padded = data_blocks * VERITY_BLOCK_SIZE;
    let f = std::fs::OpenOptions::new().write(true).open(img).ctx("opening", img)?;
    f.set_len(padded).ctx("padding to 4 KiB", img)?;
    drop(f);
    let bs = VERITY_BLOCK_SIZE.to_string();
    let mut c = Command::new("veritysetup");
    c.arg("format")
        .arg("--no-superblock")
        .arg("--hash=sha256")
        .arg(format!("--data-block-size={bs}"))
        .arg(format!("--hash-block-size={bs}"))
        .arg(format!("--data-blocks={data_blocks}"))
        .arg(format!("--salt={salt}"))
        .arg(format!("--hash-offset={padded}"))
        .arg(img)
        .arg(img);
    let out = crate::tool::run(&mut c, "veritysetup", HINT)?;
    let root_hash = parse_root_hash(&out).ok_or_else(|| Error::ToolFailed {
        command: "veritysetup format".into(),
        status: "no `Root hash:` line".into(),
        output: out.trim().to_string(),
    })?;
    Ok(VerityArgs { root_hash, salt: salt.to_string(), data_blocks })
}

/// The `Root hash:` line of `veritysetup format`.
pub fn parse_root_hash(out: &str) -> Option<String> {
    out.lines().find_map(|l| {
        let h = l.trim().strip_prefix("Root hash:")?.trim().to_ascii_lowercase();
        (h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit())).then_some(h)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn root_hash_line() {
        let out = "VERITY header information for x\nUUID:            \nHash type:       1\nData blocks:     3\n\
                   Salt:            00\nRoot hash:      \t0123456789abcdef0123456789abcdef0123456789abcdef0123456789ABCDEF\n";
        assert_eq!(parse_root_hash(out).unwrap(), "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef");
        assert_eq!(parse_root_hash("Root hash: xyz"), None);
    }

    /// The real tool on a small file: padded, tree appended after the data, and `veritysetup
    /// verify` accepts it with the facts we return (skipped when veritysetup is missing).
    #[test]
    fn appends_a_tree_that_verifies() {
        if crate::tool::which("veritysetup").is_none() {
            eprintln!("veritysetup missing: skipped");
            return;
        }
        let d = tempfile::tempdir().unwrap();
        let img = d.path().join("img");
        std::fs::write(&img, vec![7u8; 3 * 4096 + 100]).unwrap();
        let salt = "ab".repeat(32);
        let v = append_tree(&img, &salt).unwrap();
        assert_eq!(v.data_blocks, 4);
        let len = std::fs::metadata(&img).unwrap().len();
        assert!(len > 4 * 4096, "tree appended ({len})");
        let args = oa_contract::cmdline::VerityArgs {
            root_hash: v.root_hash.clone(),
            salt: v.salt.clone(),
            data_blocks: v.data_blocks,
        };
        assert_eq!(args.image_bytes(), len, "oa-init sizes the image (data + tree) as the tool wrote it");
        let data = std::fs::read(&img).unwrap();
        assert!(data[3 * 4096 + 100..4 * 4096].iter().all(|&b| b == 0), "padding is zeros");
        let st = Command::new("veritysetup")
            .args(["verify", "--no-superblock", "--hash=sha256", "--data-block-size=4096", "--hash-block-size=4096"])
            .arg(format!("--data-blocks={}", v.data_blocks))
            .arg(format!("--salt={}", v.salt))
            .arg(format!("--hash-offset={}", v.data_blocks * 4096))
            .arg(&img)
            .arg(&img)
            .arg(&v.root_hash)
            .status()
            .unwrap();
        assert!(st.success());
    }
}
