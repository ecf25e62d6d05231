//! What oa-init and `oa serve` agree on over DHCP.

/// The user class (option 77, RFC 3004) of oa-init's DISCOVER when its root URL names the
/// boot server as [`crate::cmdline::NEXT_SERVER_HOST`]: `oa serve` in proxyDHCP mode answers
/// it with an offer that carries no address, only itself as the boot server (`siaddr`), so
/// a signed command line finds the oa serve host even when another server leases addresses.
pub const BOOT_SERVER_USER_CLASS: &str = "oa-boot-server";

/// [`BOOT_SERVER_USER_CLASS`] as option 77's data: RFC 3004 length-prefixed instances.
pub fn boot_server_user_class() -> Vec<u8> {
    let mut v = vec![BOOT_SERVER_USER_CLASS.len() as u8];
    v.extend_from_slice(BOOT_SERVER_USER_CLASS.as_bytes());
    v
}

/// Does option 77's data (RFC 3004 instances, or one bare string as iPXE sends its own)
/// carry [`BOOT_SERVER_USER_CLASS`]?
pub fn asks_boot_server(user_class: &[u8]) -> bool {
    if user_class == BOOT_SERVER_USER_CLASS.as_bytes() {
        return true;
    }
    let mut rest = user_class;
    while let Some((&n, tail)) = rest.split_first() {
        let Some(instance) = tail.get(..n as usize) else { return false };
        if instance == BOOT_SERVER_USER_CLASS.as_bytes() {
            return true;
        }
        rest = &tail[n as usize..];
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_boot_server_class_is_found_among_rfc3004_instances() {
        assert!(asks_boot_server(&boot_server_user_class()));
        assert!(asks_boot_server(BOOT_SERVER_USER_CLASS.as_bytes()));
        let mut two = vec![4];
        two.extend_from_slice(b"iPXE");
        two.extend_from_slice(&boot_server_user_class());
        assert!(asks_boot_server(&two));
        assert!(!asks_boot_server(b"\x04iPXE"));
        assert!(!asks_boot_server(b""));
        // A length beyond the data is not read past the end.
        assert!(!asks_boot_server(b"\x20oa-boot-server"));
    }
}
