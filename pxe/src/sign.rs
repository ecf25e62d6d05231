//! minisign signatures (ed25519, [`oa_contract::signature`]): `oa serve --sign-key` signs each
//! per-machine `oa.config` it serves, and `oa build` signs `manifest.json` with the same kind
//! of key. The `minisign` crate (by minisign's author) reads and writes the key and signature
//! files, so Debian's `minisign -V` checks what oa signs and `minisign -G -W` makes keys oa uses.
//!
//! Secret keys are unencrypted (what `oa keys init` and `minisign -G -W` write): a server or a
//! CI builder signs without anyone typing a password. An encrypted key is refused with a hint.

use std::path::{Path, PathBuf};

use minisign::{KeyPair, PublicKey, PublicKeyBox, SecretKey, SecretKeyBox};

/// Why a key could not be used.
#[derive(Debug, thiserror::Error)]
pub enum SignError {
    #[error("reading the minisign key {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("{path}: {reason}")]
    Key { path: PathBuf, reason: String },
    #[error("signing with {path}: {reason}")]
    Sign { path: PathBuf, reason: String },
}

/// A secret key file (minisign's format, unencrypted) and its public key.
pub struct SigningKey {
    path: PathBuf,
    sk: SecretKey,
    pk: PublicKey,
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SigningKey({}, {})", self.path.display(), self.id())
    }
}

/// A key file is a few lines; anything larger is not one.
const MAX_KEY_BYTES: u64 = 4096;

fn read_small(path: &Path) -> Result<String, SignError> {
    use std::io::Read;
    let f = std::fs::File::open(path).map_err(|source| SignError::Read { path: path.into(), source })?;
    let mut text = String::new();
    f.take(MAX_KEY_BYTES + 1)
        .read_to_string(&mut text)
        .map_err(|source| SignError::Read { path: path.into(), source })?;
    if text.len() as u64 > MAX_KEY_BYTES {
        return Err(SignError::Key {
            path: path.into(),
            reason: format!("more than {MAX_KEY_BYTES} bytes: not a minisign key file"),
        });
    }
    Ok(text)
}

impl SigningKey {
    /// Read the secret key at `path` (`oa keys init DIR` writes DIR/minisign.key).
    pub fn load(path: &Path) -> Result<SigningKey, SignError> {
        let text = read_small(path)?;
        let bad = |reason: String| SignError::Key { path: path.into(), reason };
        if text.contains("minisign public key") {
            return Err(bad("is a public key; give the secret key (minisign.key, not minisign.pub)".into()));
        }
        let sk = SecretKeyBox::from_string(&text)
            .and_then(|b| b.into_unencrypted_secret_key())
            .map_err(|e| bad(format!("not an unencrypted minisign secret key ({e}); make one with `oa keys init DIR` (DIR/minisign.key) or `minisign -G -W`")))?;
        if sk.is_encrypted() {
            return Err(bad("is encrypted with a password; oa signs unattended: use an unencrypted key (`oa keys init DIR`, or `minisign -G -W`)".into()));
        }
        let pk = PublicKey::from_secret_key(&sk).map_err(|e| bad(e.to_string()))?;
        Ok(SigningKey { path: path.into(), sk, pk })
    }

    /// The key id, as minisign prints it (16 hex digits).
    pub fn id(&self) -> String {
        key_id(&self.pk)
    }

    /// The public key file's content (what `[secure_boot] config_key` names).
    pub fn public_box(&self) -> String {
        self.pk.to_box().map(|b| b.to_string()).unwrap_or_default()
    }

    /// The `.minisig` text for `data`, with `trusted_comment` signed along
    /// ([`oa_contract::signature::trusted_comment`]).
    pub fn sign(&self, data: &[u8], trusted_comment: &str) -> Result<String, SignError> {
        let untrusted = format!("signature from oa, key {}", self.id());
        minisign::sign(Some(&self.pk), &self.sk, data, Some(trusted_comment), Some(&untrusted))
            .map(|b| b.into_string())
            .map_err(|e| SignError::Sign { path: self.path.clone(), reason: e.to_string() })
    }
}

/// A public key file's key, checked (`[secure_boot] config_key`).
pub fn load_public(path: &Path) -> Result<(String, String), SignError> {
    let text = read_small(path)?;
    let pk = PublicKeyBox::from_string(&text).and_then(|b| b.into_public_key()).map_err(|e| SignError::Key {
        path: path.into(),
        reason: format!(
            "not a minisign public key ({e}); `oa keys init DIR` makes DIR/minisign.pub, `minisign -G` writes minisign.pub"
        ),
    })?;
    Ok((key_id(&pk), text))
}

fn key_id(pk: &PublicKey) -> String {
    let n = pk.keynum();
    let mut id = [0u8; 8];
    id.copy_from_slice(&n[..8]);
    format!("{:016X}", u64::from_le_bytes(id))
}

/// A new key pair: (secret key file, public key file), minisign's text formats.
pub fn generate(comment: &str) -> Result<(String, String), String> {
    let kp = KeyPair::generate_unencrypted_keypair().map_err(|e| e.to_string())?;
    let sk = kp.sk.to_box(Some(comment)).map_err(|e| e.to_string())?.into_string();
    let pk = kp.pk.to_box().map_err(|e| e.to_string())?.into_string();
    Ok((sk, pk))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pair(dir: &Path, name: &str) -> (PathBuf, PathBuf) {
        let (sk, pk) = generate("test").unwrap();
        let (s, p) = (dir.join(format!("{name}.key")), dir.join(format!("{name}.pub")));
        std::fs::write(&s, sk).unwrap();
        std::fs::write(&p, pk).unwrap();
        (s, p)
    }

    #[test]
    fn signs_what_the_public_key_verifies_and_nothing_else() {
        let d = tempfile::tempdir().unwrap();
        let (s, p) = pair(d.path(), "a");
        let k = SigningKey::load(&s).unwrap();
        let (id, text) = load_public(&p).unwrap();
        assert_eq!(id, k.id());
        assert_eq!(text, k.public_box());
        let sig = k.sign(b"{\"hostname\":\"h\"}", "timestamp:1\tfile:x\tmac:52:54:00:00:00:01").unwrap();
        let pk = minisign::PublicKeyBox::from_string(&text).unwrap().into_public_key().unwrap();
        let b = minisign::SignatureBox::from_string(&sig).unwrap();
        assert_eq!(b.trusted_comment().unwrap(), "timestamp:1\tfile:x\tmac:52:54:00:00:00:01");
        minisign::verify(&pk, &b, std::io::Cursor::new(&b"{\"hostname\":\"h\"}"[..]), true, false, false).unwrap();
        assert!(
            minisign::verify(&pk, &b, std::io::Cursor::new(&b"{\"hostname\":\"x\"}"[..]), true, false, false).is_err()
        );
        let (_, p2) = pair(d.path(), "b");
        let other = minisign::PublicKey::from_file(&p2).unwrap();
        assert!(minisign::verify(&other, &b, std::io::Cursor::new(&b"{\"hostname\":\"h\"}"[..]), true, false, false)
            .is_err());
    }

    #[test]
    fn bad_key_files_are_named() {
        let d = tempfile::tempdir().unwrap();
        let (_, p) = pair(d.path(), "a");
        let e = SigningKey::load(&p).unwrap_err().to_string();
        assert!(e.contains("a.pub") && e.contains("is a public key"), "{e}");
        let junk = d.path().join("junk.key");
        std::fs::write(&junk, "hello\n").unwrap();
        let e = SigningKey::load(&junk).unwrap_err().to_string();
        assert!(e.contains("junk.key") && e.contains("oa keys init"), "{e}");
        let e = load_public(&junk).unwrap_err().to_string();
        assert!(e.contains("junk.key") && e.contains("not a minisign public key"), "{e}");
        let e = SigningKey::load(&d.path().join("missing.key")).unwrap_err().to_string();
        assert!(e.contains("missing.key"), "{e}");
    }
}
