//! The LUKS2 object through libcryptsetup: format (with oa's label and subsystem), unlock,
//! relabel, key slots. All FFI is inside the libcryptsetup-rs crate; this module stays safe.

use std::path::{Path, PathBuf};

use libcryptsetup_rs::consts::flags::{CryptActivate, CryptPbkdf, CryptVolumeKey};
use libcryptsetup_rs::consts::vals::{CryptKdf, EncryptionFormat, KeyslotInfo};
use libcryptsetup_rs::{
    CryptDevice, CryptInit, CryptParamsLuks2, CryptParamsLuks2Ref, CryptPbkdfType, Either, LibcryptErr,
};
use oa_contract::config::{Pbkdf, PersistConfig};

use crate::error::{Error, Result};
use crate::probe;

/// The dm-crypt mapping name oa uses.
pub const MAPPING: &str = "oa-persist";

pub fn mapping_path(name: &str) -> PathBuf {
    Path::new("/dev/mapper").join(name)
}

fn lerr(what: &str, dev: &Path) -> impl FnOnce(LibcryptErr) -> Error {
    let (what, device) = (what.to_string(), dev.display().to_string());
    move |source| Error::Luks { what, device, source }
}

fn init(dev: &Path) -> Result<CryptDevice> {
    let mut cd = CryptInit::init(dev).map_err(lerr("open", dev))?;
    // No /run/cryptsetup in the initramfs: the device is used by us alone at this point.
    let _ = cd.settings_handle().metadata_locking(false);
    Ok(cd)
}

/// The PBKDF for new key slots, from the profile.
pub fn pbkdf(cfg: &PersistConfig) -> CryptPbkdfType {
    let argon = cfg.pbkdf == Pbkdf::Argon2id;
    let fixed = cfg.pbkdf_iterations > 0;
    CryptPbkdfType {
        type_: if argon { CryptKdf::Argon2Id } else { CryptKdf::Pbkdf2 },
        hash: Some("sha256".into()),
        time_ms: if fixed { 0 } else { 2000 },
        iterations: cfg.pbkdf_iterations,
        max_memory_kb: if argon {
            if cfg.pbkdf_memory_kib > 0 {
                cfg.pbkdf_memory_kib
            } else {
                1024 * 1024
            }
        } else {
            0
        },
        parallel_threads: if argon { 1 } else { 0 },
        flags: if fixed { CryptPbkdf::NO_BENCHMARK } else { CryptPbkdf::empty() },
    }
}

/// blank (or an unfinished oa header without a key slot) -> luks-formatted: a new header over
/// the old one (libcryptsetup wipes the header areas first): LUKS2, aes-xts-plain64 with a 512-bit volume key, one key slot
/// for `key`, label [`probe::LABEL_NEW`] (btrfs not made yet), subsystem `oa`.
pub fn format(dev: &Path, key: &[u8], cfg: &PersistConfig) -> Result<()> {
    let mut cd = init(dev)?;
    let params = CryptParamsLuks2 {
        pbkdf: Some(pbkdf(cfg)),
        integrity: None,
        integrity_params: None,
        data_alignment: 0,
        data_device: None,
        sector_size: 512,
        label: Some(probe::LABEL_NEW.into()),
        subsystem: Some(probe::OA_SUBSYSTEM.into()),
    };
    let mut pref: CryptParamsLuks2Ref<'_> = (&params).try_into().map_err(lerr("prepare LUKS2 parameters for", dev))?;
    cd.context_handle()
        .format(EncryptionFormat::Luks2, ("aes", "xts-plain64"), None, Either::Right(64), Some(&mut pref))
        .map_err(lerr("format LUKS2 on", dev))?;
    cd.keyslot_handle().add_by_key(None, None, key, CryptVolumeKey::empty()).map_err(lerr("add a key slot on", dev))?;
    Ok(())
}

/// luks-formatted -> unlocked. `Ok(false)`: no key slot opens with `key` (nothing written).
pub fn unlock(dev: &Path, name: &str, key: &[u8]) -> Result<bool> {
    let mut cd = init(dev)?;
    cd.context_handle()
        .load::<()>(Some(EncryptionFormat::Luks2), None)
        .map_err(lerr("read the LUKS2 header of", dev))?;
    match cd.activate_handle().activate_by_passphrase(Some(name), None, key, CryptActivate::empty()) {
        Ok(_) => Ok(true),
        Err(LibcryptErr::IOError(e)) if e.raw_os_error() == Some(libc::EPERM) => Ok(false),
        Err(e) => Err(lerr("unlock", dev)(e)),
    }
}

/// How many times [`set_done`] writes the label before it gives up.
pub const DONE_ATTEMPTS: u32 = 3;

/// The LUKS2 label of `dev` as its primary header says now (read from the device, not from
/// libcryptsetup's memory); empty when it is no LUKS2 header.
pub fn read_label(dev: &Path) -> std::io::Result<String> {
    use std::io::Read;
    let mut head = Vec::with_capacity(4096);
    std::fs::File::open(dev)?.take(4096).read_to_end(&mut head)?;
    Ok(match probe::detect(&head, &[]).into_iter().next() {
        Some(probe::Signature::Luks { version: 2, label, .. }) => label,
        _ => String::new(),
    })
}

/// Mark the volume finished (btrfs made): label [`probe::LABEL_DONE`]. A checked step: the
/// label is read back from the device after each write, and written again (up to
/// [`DONE_ATTEMPTS`] times) until it reads `oa-persist`; [`Error::LabelNotSet`] otherwise.
pub fn set_done(dev: &Path) -> Result<()> {
    let mut found = String::new();
    let mut last = None;
    for _ in 0..DONE_ATTEMPTS {
        let written = (|| {
            let mut cd = init(dev)?;
            cd.context_handle()
                .load::<()>(Some(EncryptionFormat::Luks2), None)
                .map_err(lerr("read the LUKS2 header of", dev))?;
            cd.context_handle()
                .set_label(Some(probe::LABEL_DONE), Some(probe::OA_SUBSYSTEM))
                .map_err(lerr("set the label of", dev))
        })();
        found = read_label(dev).map_err(|source| Error::Io {
            what: "read back the LUKS2 label of".into(),
            path: dev.display().to_string(),
            source,
        })?;
        if found == probe::LABEL_DONE {
            return Ok(());
        }
        last = written.err();
    }
    match last {
        Some(e) => Err(e),
        None => Err(Error::LabelNotSet {
            device: dev.display().to_string(),
            found,
            want: probe::LABEL_DONE,
            attempts: DONE_ATTEMPTS,
        }),
    }
}

/// The guard before mkfs: `dev`'s header, read now from the device, still says the btrfs was
/// never made (label [`probe::LABEL_NEW`]). A finished volume ([`probe::LABEL_DONE`]) or
/// anything else is [`Error::MkfsOnFinished`], whatever the filesystem probe of its mapping said.
pub fn ensure_unfinished(dev: &Path) -> Result<()> {
    let label = read_label(dev).map_err(|source| Error::Io {
        what: "read the LUKS2 header of".into(),
        path: dev.display().to_string(),
        source,
    })?;
    if label == probe::LABEL_NEW {
        return Ok(());
    }
    let header = if label.is_empty() { "no LUKS2 header".to_string() } else { format!("label {label:?}") };
    Err(Error::MkfsOnFinished { device: dev.display().to_string(), header })
}

/// The key slots of `dev` that can open its volume key (active; an unbound slot cannot).
pub fn usable_keyslots(dev: &Path) -> Result<usize> {
    let mut cd = init(dev)?;
    cd.context_handle()
        .load::<()>(Some(EncryptionFormat::Luks2), None)
        .map_err(lerr("read the LUKS2 header of", dev))?;
    let mut n = 0;
    for slot in 0..32u32 {
        if matches!(cd.keyslot_handle().status(slot), Ok(KeyslotInfo::Active | KeyslotInfo::ActiveLast)) {
            n += 1;
        }
    }
    Ok(n)
}

/// One line per key slot in use: `slot N: active (pbkdf)`.
pub fn keyslots(dev: &Path) -> Result<Vec<String>> {
    let mut cd = init(dev)?;
    cd.context_handle()
        .load::<()>(Some(EncryptionFormat::Luks2), None)
        .map_err(lerr("read the LUKS2 header of", dev))?;
    let mut out = Vec::new();
    for slot in 0..32u32 {
        match cd.keyslot_handle().status(slot) {
            Ok(KeyslotInfo::Active) | Ok(KeyslotInfo::ActiveLast) => {
                let kdf = cd
                    .keyslot_handle()
                    .get_pbkdf(slot)
                    .map(|p| format!("{:?}", p.type_))
                    .unwrap_or_else(|_| "?".into());
                out.push(format!("slot {slot}: active ({kdf})"));
            }
            _ => {}
        }
    }
    Ok(out)
}

/// On files made by the host's `cryptsetup` (no device-mapper needed for these commands).
#[cfg(test)]
mod tests {
    use std::process::Command;

    use oa_contract::config::PersistFormat;

    use super::*;
    use crate::state::{self, Expect, Header};

    const KEY: &[u8] = b"the key of the tests";

    fn cryptsetup(args: &[&str], dev: &Path) {
        let st = Command::new("cryptsetup").args(args).arg(dev).status().expect("cryptsetup (cryptsetup-bin)");
        assert!(st.success(), "cryptsetup {args:?}");
    }

    /// A 24 MiB file with an oa LUKS2 header made by cryptsetup, labelled `label`.
    fn oa_header(dir: &Path, label: &str) -> PathBuf {
        let dev = dir.join("dev.img");
        std::fs::File::create(&dev).unwrap().set_len(24 << 20).unwrap();
        let key = dir.join("key");
        std::fs::write(&key, KEY).unwrap();
        let k = key.to_str().unwrap();
        cryptsetup(
            &[
                "luksFormat",
                "-q",
                "--type",
                "luks2",
                "--pbkdf",
                "pbkdf2",
                "--pbkdf-force-iterations",
                "1000",
                "--label",
                label,
                "--subsystem",
                probe::OA_SUBSYSTEM,
                "--key-file",
                k,
            ],
            &dev,
        );
        dev
    }

    fn header(dir: &Path, dev: &Path) -> Header {
        let expect = Expect { boot_id: "b", keep: 1 };
        state::info(dev, &dir.join("no-mapping"), &dir.join("top"), &dir.join("rw"), expect).unwrap().header
    }

    fn cfg() -> PersistConfig {
        serde_json::from_str(
            r#"{"device":"x","key":"passphrase","pbkdf":"pbkdf2","pbkdf_iterations":1000,"format":"if-blank"}"#,
        )
        .unwrap()
    }

    /// Issue 15: a first format cut before its key slot (label oa-persist-new, no key slot) reads
    /// as unfinished, the plan formats it again, and the format over it gives a usable volume.
    /// The only test here that calls libcryptsetup (one thread per process).
    #[test]
    fn a_header_without_key_slot_is_unfinished_and_formatted_again() {
        let d = tempfile::tempdir().unwrap();
        let dev = oa_header(d.path(), probe::LABEL_NEW);
        assert!(matches!(header(d.path(), &dev), Header::OaNew { .. }));
        assert_eq!(usable_keyslots(&dev).unwrap(), 1);
        cryptsetup(&["luksErase", "-q"], &dev);
        assert_eq!(usable_keyslots(&dev).unwrap(), 0);
        let h = header(d.path(), &dev);
        assert!(matches!(h, Header::OaUnfinished { .. }), "{h:?}");
        let mut i = state::info(
            &dev,
            &d.path().join("none"),
            &d.path().join("top"),
            &d.path().join("rw"),
            Expect { boot_id: "b", keep: 1 },
        )
        .unwrap();
        i.header = h;
        assert_eq!(state::plan(&i, PersistFormat::IfBlank), Ok(state::Step::LuksFormat));
        format(&dev, KEY, &cfg()).unwrap();
        assert!(matches!(header(d.path(), &dev), Header::OaNew { .. }));
        assert_eq!(usable_keyslots(&dev).unwrap(), 1);
        assert_eq!(read_label(&dev).unwrap(), probe::LABEL_NEW);
        ensure_unfinished(&dev).unwrap();
        // `set_done` is checked: the label reads back from the device.
        set_done(&dev).unwrap();
        assert_eq!(read_label(&dev).unwrap(), probe::LABEL_DONE);
        assert!(matches!(header(d.path(), &dev), Header::OaDone { .. }));
        let st = Command::new("cryptsetup")
            .args(["open", "--test-passphrase", "--key-file", d.path().join("key").to_str().unwrap()])
            .arg(&dev)
            .status()
            .unwrap();
        assert!(st.success(), "the key opens the volume made over the unfinished header");
        no_mkfs_on_a_finished_volume_or_a_foreign_device();
    }

    /// Issue 15: once the header says `oa-persist`, mkfs is refused whatever the probe said.
    /// (Called from the test above: libcryptsetup-rs allows one thread per process.)
    fn no_mkfs_on_a_finished_volume_or_a_foreign_device() {
        let d = tempfile::tempdir().unwrap();
        let dev = oa_header(d.path(), probe::LABEL_DONE);
        let e = ensure_unfinished(&dev).unwrap_err();
        assert!(
            matches!(&e, Error::MkfsOnFinished { device, header } if *device == dev.display().to_string() && header == "label \"oa-persist\""),
            "{e}"
        );
        assert!(e.to_string().contains("refusing to make a btrfs"), "{e}");
        std::fs::write(&dev, vec![0u8; 8192]).unwrap();
        assert!(
            matches!(ensure_unfinished(&dev), Err(Error::MkfsOnFinished { header, .. }) if header == "no LUKS2 header")
        );
        // `set_done` on something that is no LUKS2 header fails instead of passing unchecked.
        assert!(set_done(&dev).is_err());
    }
}
