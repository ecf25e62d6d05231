//! Target CPU architectures, spelled as in profiles and `manifest.json` (`x86_64`, `aarch64`).

/// Declare an enum whose values are spelled as given in every file format (TOML profiles, JSON
/// config files): `serde` renames, [`ALL`](Arch::ALL), `as_str`, `Display` and `FromStr`.
macro_rules! string_enum {
    ($(#[$meta:meta])* pub enum $name:ident { $( $(#[$vmeta:meta])* $variant:ident = $text:literal, )* }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize)]
        pub enum $name {
            $( $(#[$vmeta])* #[serde(rename = $text)] $variant, )*
        }

        impl $name {
            /// Every value, in declaration order.
            pub const ALL: &'static [$name] = &[$($name::$variant),*];

            /// The spelling used in files and on the command line.
            pub fn as_str(self) -> &'static str {
                match self { $( $name::$variant => $text, )* }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl std::str::FromStr for $name {
            type Err = String;

            fn from_str(s: &str) -> Result<$name, String> {
                $name::ALL.iter().copied().find(|v| v.as_str() == s).ok_or_else(|| {
                    let all: Vec<String> = $name::ALL.iter().map(|v| format!("`{v}`")).collect();
                    format!("unknown value `{s}`, expected one of {}", all.join(", "))
                })
            }
        }
    };
}

pub(crate) use string_enum;

string_enum! {
    /// Target CPU architecture.
    pub enum Arch {
        X86_64 = "x86_64",
        Aarch64 = "aarch64",
    }
}

impl Arch {
    /// Debian's name for the architecture (`dpkg --print-architecture`).
    pub fn debian(self) -> &'static str {
        match self {
            Arch::X86_64 => "amd64",
            Arch::Aarch64 => "arm64",
        }
    }

    /// Debian's kernel metapackage for the architecture, the default `kernel.package`.
    pub fn default_kernel_package(self) -> &'static str {
        match self {
            Arch::X86_64 => "linux-image-amd64",
            Arch::Aarch64 => "linux-image-arm64",
        }
    }

    /// The Rust target triple the static oa-init is built for.
    pub fn musl_target(self) -> &'static str {
        match self {
            Arch::X86_64 => "x86_64-unknown-linux-musl",
            Arch::Aarch64 => "aarch64-unknown-linux-musl",
        }
    }

    /// The architecture of the machine this program runs on, if oa builds for it.
    pub fn host() -> Option<Arch> {
        std::env::consts::ARCH.parse().ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spelled_as_today() {
        assert_eq!(serde_json::to_string(&Arch::X86_64).unwrap(), "\"x86_64\"");
        assert_eq!(serde_json::from_str::<Arch>("\"aarch64\"").unwrap(), Arch::Aarch64);
        assert_eq!("aarch64".parse::<Arch>(), Ok(Arch::Aarch64));
        assert!("x86".parse::<Arch>().unwrap_err().contains("`x86_64`, `aarch64`"));
        let e = serde_json::from_str::<Arch>("\"x86\"").unwrap_err().to_string();
        assert!(e.contains("unknown variant `x86`, expected `x86_64` or `aarch64`"), "{e}");
    }
}
