//! Reading a key from its source ([`oa_contract::config::KeySource`]): a passphrase typed at
//! the console, a key file (in the initramfs), or the network (not implemented yet).

use std::io::{BufRead, Write};

use crate::error::{Error, IoContext, Result};

/// The key bytes of a file: the whole file, as `cryptsetup --key-file` reads it.
pub fn read_file(path: &str) -> Result<Vec<u8>> {
    let k = std::fs::read(path).ctx("read key file", path)?;
    if k.is_empty() {
        return Err(Error::EmptyKeyFile(path.to_string()));
    }
    Ok(k)
}

/// Echo off on the console while a passphrase is typed; restored on drop.
struct NoEcho(Option<nix::sys::termios::Termios>);

impl NoEcho {
    fn new() -> NoEcho {
        use nix::sys::termios::{tcgetattr, tcsetattr, LocalFlags, SetArg};
        let stdin = std::io::stdin();
        match tcgetattr(&stdin) {
            Ok(old) => {
                let mut t = old.clone();
                t.local_flags.remove(LocalFlags::ECHO);
                let _ = tcsetattr(&stdin, SetArg::TCSANOW, &t);
                NoEcho(Some(old))
            }
            Err(_) => NoEcho(None),
        }
    }
}

impl Drop for NoEcho {
    fn drop(&mut self) {
        if let Some(old) = &self.0 {
            let _ = nix::sys::termios::tcsetattr(std::io::stdin(), nix::sys::termios::SetArg::TCSANOW, old);
        }
    }
}

/// Ask for a passphrase on the console (stdin); the trailing newline is not part of it.
pub fn prompt(question: &str) -> Result<Vec<u8>> {
    crate::say(&format!("{question}, then Enter:"));
    let _g = NoEcho::new();
    let mut line = String::new();
    let n = std::io::stdin().lock().read_line(&mut line).ctx("read the passphrase from", "the console")?;
    let _ = std::io::stdout().write_all(b"\n");
    if n == 0 {
        return Err(Error::ConsoleClosed);
    }
    let p = line.trim_end_matches(['\n', '\r']).as_bytes().to_vec();
    Ok(p)
}
