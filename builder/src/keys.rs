//! Secure Boot keys: `oa keys init DIR` makes the owner's key set, and [`check_pair`] is what
//! a signing stage asks before it signs.
//!
//! The set is what a machine's owner enrols (docs/secure-boot.md): a platform key (PK), a key
//! exchange key (KEK) and the db key that signs oa's boot files, each an RSA-2048 key (what
//! every UEFI implementation verifies) with a self-signed X.509 certificate, as PEM (for
//! sbsign) and DER (`.cer`, what firmware set-up screens import). Made with `openssl`, the tool
//! users trust for keys, and checked by its status. Nothing is overwritten: the set is written
//! into a temporary folder beside DIR and renamed into place at once, so a failure leaves no
//! half set that looks complete.

use crate::error::{Error, IoContext, Result};
use std::path::{Path, PathBuf};
use std::process::Command;

const OPENSSL_HINT: &str = "install openssl: apt-get install openssl (`make deps` does it)";

/// The keys of a set, in the order they are made: file stem and what it is for.
pub const KEYS: &[(&str, &str)] = &[
    ("PK", "platform key: enrol it last, it ends the firmware's set-up mode"),
    ("KEK", "key exchange key: may update db"),
    ("db", "signs boot files: sbsign --key db.key --cert db.crt FILE.efi"),
];

/// The minisign secret key (unencrypted) and public key of a set: they sign `manifest.json`
/// and the run-time configurations `oa serve` serves (docs/secure-boot.md).
pub const MINISIGN_KEY: &str = "minisign.key";
pub const MINISIGN_PUB: &str = "minisign.pub";

/// Certificates are valid this long (firmware does not check expiry; other tools may).
const DAYS: &str = "3650";

fn openssl() -> Command {
    Command::new("openssl")
}

/// Make the key set in `dir` (which must not exist yet); `owner` goes into each certificate's
/// common name. Returns the files written.
pub fn init(dir: &Path, owner: &str) -> Result<Vec<PathBuf>> {
    if dir.exists() {
        return Err(Error::Keys(format!(
            "{} exists: oa keys init never overwrites keys; give a new folder, or remove the old set first if you really mean to replace it (machines that enrolled it will then refuse new images)",
            dir.display()
        )));
    }
    let parent = dir.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    std::fs::create_dir_all(parent).ctx("creating", parent)?;
    let tmp = tempfile::Builder::new()
        .prefix(".oa-keys-")
        .tempdir_in(parent)
        .ctx("creating a temporary folder in", parent)?;
    let mut written = Vec::new();
    for (stem, _) in KEYS {
        let key = tmp.path().join(format!("{stem}.key"));
        let crt = tmp.path().join(format!("{stem}.crt"));
        let cer = tmp.path().join(format!("{stem}.cer"));
        let mut c = openssl();
        c.args(["req", "-new", "-x509", "-newkey", "rsa:2048", "-sha256", "-nodes", "-days", DAYS])
            .arg("-subj")
            .arg(format!("/CN={} Secure Boot {stem}/", owner.replace('/', "-")))
            .arg("-keyout")
            .arg(&key)
            .arg("-out")
            .arg(&crt);
        crate::tool::run(&mut c, "openssl", OPENSSL_HINT)?;
        let mut c = openssl();
        c.args(["x509", "-outform", "DER", "-in"]).arg(&crt).arg("-out").arg(&cer);
        crate::tool::run(&mut c, "openssl", OPENSSL_HINT)?;
        set_mode(&key, 0o600)?;
        written.extend([stem.to_string() + ".key", stem.to_string() + ".crt", stem.to_string() + ".cer"]);
    }
    // The minisign pair that signs manifest.json ([secure_boot] sign_key) and the per-machine
    // configurations `oa serve --sign-key` serves ([secure_boot] config_key = minisign.pub).
    let (sk, pk) = oa_pxe::sign::generate(&format!("{owner} oa signing key"))
        .map_err(|e| Error::Keys(format!("making the minisign key pair: {e}")))?;
    let (sk_path, pk_path) = (tmp.path().join(MINISIGN_KEY), tmp.path().join(MINISIGN_PUB));
    crate::stages::initramfs::create_private(&sk_path)?;
    std::fs::write(&sk_path, sk).ctx("writing", &sk_path)?;
    std::fs::write(&pk_path, pk).ctx("writing", &pk_path)?;
    written.extend([MINISIGN_KEY.to_string(), MINISIGN_PUB.to_string()]);
    let readme = tmp.path().join("README");
    std::fs::write(&readme, readme_text()).ctx("writing", &readme)?;
    let kept = tmp.keep();
    set_mode(&kept, 0o700)?;
    // RENAME_NOREPLACE: a folder made at DIR since the check above is never replaced (plain
    // rename(2) would replace an empty one).
    nix::fcntl::renameat2(None, &kept, None, dir, nix::fcntl::RenameFlags::RENAME_NOREPLACE).map_err(|e| {
        let _ = std::fs::remove_dir_all(&kept);
        Error::Io { action: "moving the new key set to", path: dir.to_path_buf(), source: e.into() }
    })?;
    Ok(written.into_iter().map(|f| dir.join(f)).chain([dir.join("README")]).collect())
}

fn set_mode(p: &Path, mode: u32) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).ctx("setting permissions of", p)
}

fn readme_text() -> String {
    let mut s = String::from("Secure Boot keys made by `oa keys init`. Keep the .key files secret.\n\n");
    for (stem, what) in KEYS {
        s.push_str(&format!("{stem}.key / {stem}.crt (PEM) / {stem}.cer (DER): {what}\n"));
    }
    s.push_str(&format!("{MINISIGN_KEY} / {MINISIGN_PUB} (minisign, ed25519): sign manifest.json ([secure_boot] sign_key) and the run-time configurations `oa serve --sign-key {MINISIGN_KEY}` serves; images built with [secure_boot] config_key = {MINISIGN_PUB:?} accept only those\n"));
    s.push_str("\nEnrol db.cer, then KEK.cer, then PK.cer in the firmware's Secure Boot set-up (custom mode).\n");
    s
}

/// The public key of a PEM key or certificate, as openssl prints it.
fn public_key(path: &Path, cert: bool) -> Result<String> {
    let mut c = openssl();
    if cert {
        c.args(["x509", "-noout", "-pubkey", "-in"]).arg(path);
    } else {
        // No passphrase given: a protected key fails here instead of prompting (sbsign would).
        c.args(["pkey", "-passin", "pass:", "-pubout", "-in"]).arg(path);
    }
    let out = c.stdin(std::process::Stdio::null()).output().map_err(|e| Error::ToolMissing {
        tool: "openssl".into(),
        why: e.to_string(),
        hint: OPENSSL_HINT.into(),
    })?;
    if !out.status.success() {
        let what = if cert { "an X.509 certificate (PEM)" } else { "a private key (PEM)" };
        return Err(Error::Keys(format!(
            "{} is not {what}: {} (make a key set with `oa keys init DIR`; a passphrase-protected key must be decrypted first: openssl pkey -in KEY -out PLAIN.key)",
            path.display(),
            String::from_utf8_lossy(&out.stderr).lines().next().unwrap_or("openssl cannot read it").trim()
        )));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Check that `key` and `cert` are readable and belong together, before anything is signed.
pub fn check_pair(key: &Path, cert: &Path) -> Result<()> {
    check_readable(key, cert)?;
    if public_key(key, false)? != public_key(cert, true)? {
        return Err(Error::Keys(format!(
            "the certificate {} does not belong to the key {}: give the certificate made with that key ([secure_boot] cert)",
            cert.display(),
            key.display()
        )));
    }
    Ok(())
}

/// The cheap half of [`check_pair`]: both files can be read (no openssl run).
pub fn check_readable(key: &Path, cert: &Path) -> Result<()> {
    for (p, what) in [(key, "signing key"), (cert, "certificate")] {
        std::fs::File::open(p).map_err(|e| {
            Error::Keys(format!(
                "cannot read the {what} {} ([secure_boot] {}): {e}; make a key set with `oa keys init DIR`",
                p.display(),
                if p == key { "key" } else { "cert" }
            ))
        })?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn init_makes_a_set_once_and_pairs_check() {
        use std::os::unix::fs::PermissionsExt;
        let t = tempfile::tempdir().unwrap();
        let dir = t.path().join("keys");
        let files = init(&dir, "test").unwrap();
        assert_eq!(files.len(), KEYS.len() * 3 + 3);
        assert_eq!(std::fs::metadata(dir.join(MINISIGN_KEY)).unwrap().permissions().mode() & 0o777, 0o600);
        let k = oa_pxe::sign::SigningKey::load(&dir.join(MINISIGN_KEY)).unwrap();
        assert_eq!(oa_pxe::sign::load_public(&dir.join(MINISIGN_PUB)).unwrap().0, k.id());
        assert!(files.iter().all(|f| f.is_file()), "{files:?}");
        assert_eq!(std::fs::metadata(dir.join("db.key")).unwrap().permissions().mode() & 0o777, 0o600);
        check_pair(&dir.join("db.key"), &dir.join("db.crt")).unwrap();
        let e = check_pair(&dir.join("db.key"), &dir.join("KEK.crt")).unwrap_err().to_string();
        assert!(e.contains("does not belong") && e.contains("KEK.crt"), "{e}");
        let e = check_pair(&dir.join("nope.key"), &dir.join("db.crt")).unwrap_err().to_string();
        assert!(e.contains("cannot read the signing key") && e.contains("nope.key"), "{e}");
        let e = check_pair(&dir.join("db.crt"), &dir.join("db.crt")).unwrap_err().to_string();
        assert!(e.contains("is not a private key"), "{e}");
        // Never overwritten; no temporary folder left beside it.
        let e = init(&dir, "test").unwrap_err().to_string();
        assert!(e.contains("never overwrites"), "{e}");
        let left: Vec<_> = std::fs::read_dir(t.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(left, ["keys"]);
    }
}
