//! GUIDs (UUIDs) as GPT stores them.
//!
//! A [`Guid`] holds the 16 bytes in the order of its text form (`c12a7328-f81f-...` is
//! `c1 2a 73 28 f8 1f ...`). GPT stores the first three fields little-endian ("mixed-endian"):
//! [`Guid::to_gpt_bytes`] and [`Guid::from_gpt_bytes`] convert.

use std::fmt;
use std::str::FromStr;

#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Guid([u8; 16]);

impl Guid {
    /// The all-zero GUID: an unused GPT entry's type.
    pub const NIL: Guid = Guid([0; 16]);
    /// Partition type: EFI system partition.
    pub const ESP: Guid = Guid::from_u128(0xc12a7328_f81f_11d2_ba4b_00a0c93ec93b);
    /// Partition type: Linux filesystem data (oa's root image and persistence partitions).
    pub const LINUX_DATA: Guid = Guid::from_u128(0x0fc63daf_8483_4772_8e79_3d69d8477de4);

    /// From the 128-bit number the text form spells (`0xc12a7328_f81f_...`).
    pub const fn from_u128(v: u128) -> Guid {
        Guid(v.to_be_bytes())
    }

    /// From the bytes in text order.
    pub const fn from_bytes(b: [u8; 16]) -> Guid {
        Guid(b)
    }

    /// The bytes in text order.
    pub const fn as_bytes(&self) -> &[u8; 16] {
        &self.0
    }

    /// A random-based (version 4, RFC 4122 variant) GUID from 16 bytes of entropy or of a
    /// digest: the version and variant bits are set, the rest is kept.
    pub fn v4_from_bytes(mut b: [u8; 16]) -> Guid {
        b[6] = (b[6] & 0x0f) | 0x40;
        b[8] = (b[8] & 0x3f) | 0x80;
        Guid(b)
    }

    /// GPT's on-disk encoding: the first three fields little-endian, the rest as is.
    pub const fn to_gpt_bytes(&self) -> [u8; 16] {
        swap_fields(self.0)
    }

    /// From GPT's on-disk encoding (see [`Guid::to_gpt_bytes`]).
    pub const fn from_gpt_bytes(b: [u8; 16]) -> Guid {
        Guid(swap_fields(b))
    }

    pub fn is_nil(&self) -> bool {
        self.0 == [0; 16]
    }
}

/// Reverse the byte order of the fields of 4, 2 and 2 bytes (its own inverse).
const fn swap_fields(r: [u8; 16]) -> [u8; 16] {
    let mut o = r;
    o[0] = r[3];
    o[1] = r[2];
    o[2] = r[1];
    o[3] = r[0];
    o[4] = r[5];
    o[5] = r[4];
    o[6] = r[7];
    o[7] = r[6];
    o
}

impl fmt::Display for Guid {
    /// Lowercase canonical form, `xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, b) in self.0.iter().enumerate() {
            if matches!(i, 4 | 6 | 8 | 10) {
                f.write_str("-")?;
            }
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for Guid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Guid({self})")
    }
}

/// Why a string is not a GUID.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseGuidError {
    pub input: String,
    pub reason: &'static str,
}

impl fmt::Display for ParseGuidError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?} is not a GUID (xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx): {}", self.input, self.reason)
    }
}

impl std::error::Error for ParseGuidError {}

impl FromStr for Guid {
    type Err = ParseGuidError;

    /// The canonical form, in upper or lower case; nothing else (no braces, no missing or
    /// extra hyphens, no non-hex digit).
    fn from_str(s: &str) -> Result<Guid, ParseGuidError> {
        let err = |reason| ParseGuidError { input: s.chars().take(64).collect(), reason };
        let b = s.as_bytes();
        if b.len() != 36 {
            return Err(err("not 36 characters long"));
        }
        let mut out = [0u8; 16];
        let mut n = 0;
        let mut i = 0;
        while i < 36 {
            if matches!(i, 8 | 13 | 18 | 23) {
                if b[i] != b'-' {
                    return Err(err("hyphens belong after the 8th, 12th, 16th and 20th digit"));
                }
                i += 1;
                continue;
            }
            let (Some(hi), Some(lo)) = (hex_digit(b[i]), b.get(i + 1).and_then(|&c| hex_digit(c))) else {
                return Err(err("not a hexadecimal digit"));
            };
            out[n] = hi << 4 | lo;
            n += 1;
            i += 2;
        }
        Ok(Guid(out))
    }
}

fn hex_digit(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_renders_lowercase() {
        let g: Guid = "C12A7328-F81F-11D2-BA4B-00A0C93EC93B".parse().unwrap();
        assert_eq!(g, Guid::ESP);
        assert_eq!(g.to_string(), "c12a7328-f81f-11d2-ba4b-00a0c93ec93b");
        assert_eq!(Guid::LINUX_DATA.to_string(), "0fc63daf-8483-4772-8e79-3d69d8477de4");
        assert_eq!(format!("{:?}", Guid::NIL), "Guid(00000000-0000-0000-0000-000000000000)");
    }

    #[test]
    fn rejects_what_is_not_a_guid() {
        for bad in [
            "",
            "c12a7328-f81f-11d2-ba4b-00a0c93ec93",   // short
            "c12a7328-f81f-11d2-ba4b-00a0c93ec93bb", // long
            "c12a7328f81f-11d2-ba4b-00a0c93ec93b0",  // hyphen missing
            "g12a7328-f81f-11d2-ba4b-00a0c93ec93b",  // not hex
            "c12a7328-f81f-11d2-ba4b-00a0c93ec9 b",
            "{12a7328-f81f-11d2-ba4b-00a0c93ec93}",
            "c12a7328-f81f-11d2-ba4b-00a0c93ec9é",
        ] {
            let e = bad.parse::<Guid>().unwrap_err();
            assert!(e.to_string().contains("is not a GUID"), "{bad}: {e}");
        }
    }

    #[test]
    fn gpt_encoding_is_mixed_endian() {
        // The ESP type GUID as it appears on disk (UEFI spec, table 5.7).
        let on_disk = [0x28, 0x73, 0x2a, 0xc1, 0x1f, 0xf8, 0xd2, 0x11, 0xba, 0x4b, 0x00, 0xa0, 0xc9, 0x3e, 0xc9, 0x3b];
        assert_eq!(Guid::ESP.to_gpt_bytes(), on_disk);
        assert_eq!(Guid::from_gpt_bytes(on_disk), Guid::ESP);
    }

    #[test]
    fn v4_bits() {
        let g = Guid::v4_from_bytes([0xff; 16]);
        assert_eq!(g.to_string(), "ffffffff-ffff-4fff-bfff-ffffffffffff");
    }

    proptest::proptest! {
        #[test]
        fn render_parse_round_trip(b in proptest::array::uniform16(proptest::num::u8::ANY)) {
            let g = Guid::from_bytes(b);
            proptest::prop_assert_eq!(g.to_string().parse::<Guid>().unwrap(), g);
            proptest::prop_assert_eq!(g.to_string().to_uppercase().parse::<Guid>().unwrap(), g);
            proptest::prop_assert_eq!(Guid::from_gpt_bytes(g.to_gpt_bytes()), g);
        }
    }
}
