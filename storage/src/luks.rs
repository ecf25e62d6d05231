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

/// blank -> luks-formatted: LUKS2, aes-xts-plain64 with a 512-bit volume key, one key slot
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

/// Mark the volume finished (btrfs made): label [`probe::LABEL_DONE`].
pub fn set_done(dev: &Path) -> Result<()> {
    let mut cd = init(dev)?;
    cd.context_handle()
        .load::<()>(Some(EncryptionFormat::Luks2), None)
        .map_err(lerr("read the LUKS2 header of", dev))?;
    cd.context_handle()
        .set_label(Some(probe::LABEL_DONE), Some(probe::OA_SUBSYSTEM))
        .map_err(lerr("set the label of", dev))
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
