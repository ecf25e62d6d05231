//! Detached signatures in minisign's format (ed25519, the `.minisig` file beside the signed
//! one), as `oa build` writes for `manifest.json` and `oa serve` for each per-machine
//! `oa.config`, and as oa-init checks them. Debian's `minisign -V` checks them too.
//!
//! A signature's trusted comment (signed along with the file) is tab-separated `name:value`
//! fields. oa adds `mac:` to the signature of a per-machine configuration, so that one
//! machine's signed configuration cannot be handed to another: oa-init refuses a signature
//! whose `mac:` is not one of its own interfaces'.

/// The signature of `F` is `F` followed by this.
pub const SUFFIX: &str = ".minisig";

/// A signature file larger than this is refused (minisign's are about 300 bytes).
pub const MAX_BYTES: u64 = 4096;

/// Trusted-comment field: the machine (MAC, lower-case `aa:bb:cc:dd:ee:ff`) a configuration is for.
pub const MAC_FIELD: &str = "mac";
/// Trusted-comment field: the name of the signed file.
pub const FILE_FIELD: &str = "file";
/// Trusted-comment field: when it was signed (seconds since the epoch), as minisign writes it.
pub const TIMESTAMP_FIELD: &str = "timestamp";

/// The trusted comment for `file` signed at `timestamp`, for the machine `mac` when given.
pub fn trusted_comment(timestamp: u64, file: &str, mac: Option<&str>) -> String {
    let mut c = format!("{TIMESTAMP_FIELD}:{timestamp}\t{FILE_FIELD}:{}", file.replace(['\t', '\n'], " "));
    if let Some(m) = mac {
        c.push_str(&format!("\t{MAC_FIELD}:{}", m.to_ascii_lowercase()));
    }
    c
}

/// [`trusted_comment`] signed now (the system clock; 0 before the epoch).
pub fn trusted_comment_now(file: &str, mac: Option<&str>) -> String {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    trusted_comment(now, file, mac)
}

/// The value of field `name` in a trusted comment, if it has one.
pub fn field<'a>(trusted_comment: &'a str, name: &str) -> Option<&'a str> {
    trusted_comment.split('\t').find_map(|f| f.strip_prefix(name)?.strip_prefix(':'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn comment_fields_round_trip() {
        let c = trusted_comment(1700000000, "web1.json", Some("52:54:00:AA:00:04"));
        assert_eq!(c, "timestamp:1700000000\tfile:web1.json\tmac:52:54:00:aa:00:04");
        assert_eq!(field(&c, MAC_FIELD), Some("52:54:00:aa:00:04"));
        assert_eq!(field(&c, FILE_FIELD), Some("web1.json"));
        assert_eq!(field(&c, TIMESTAMP_FIELD), Some("1700000000"));
        let plain = trusted_comment(1, "manifest.json", None);
        assert_eq!(field(&plain, MAC_FIELD), None);
        // minisign's own comment (`timestamp:... file:... hashed`) has no mac.
        assert_eq!(field("timestamp:1\tfile:x\thashed", MAC_FIELD), None);
        // A field name that is a prefix of another is not matched.
        assert_eq!(field("macx:1", MAC_FIELD), None);
    }
}
