//! Reading a key from its source ([`oa_contract::config::KeySource`]): a passphrase typed at
//! the console, a key file (in the initramfs), or the network (not implemented yet).
//!
//! Every key is a [`Key`]: its bytes are overwritten with zeros when it is dropped, and so are
//! the buffers it was read through (the console line, the file's bytes).

use std::io::{BufRead, Write};

use zeroize::Zeroizing;

use crate::error::{Error, IoContext, Result};

/// Key bytes, zeroised on drop.
pub type Key = Zeroizing<Vec<u8>>;

/// The key bytes of a file: the whole file, as `cryptsetup --key-file` reads it.
pub fn read_file(path: &str) -> Result<Key> {
    let k = Zeroizing::new(std::fs::read(path).ctx("read key file", path)?);
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

/// The passphrase of one console line: the line without its trailing newline.
fn passphrase_of(line: &str) -> Key {
    Zeroizing::new(line.trim_end_matches(['\n', '\r']).as_bytes().to_vec())
}

/// Ask for a passphrase on the console (stdin); the trailing newline is not part of it.
pub fn prompt(question: &str) -> Result<Key> {
    crate::say(&format!("{question}, then Enter:"));
    let _g = NoEcho::new();
    // Room for any passphrase up front, so that reading never reallocates (and leaves a copy).
    let mut line = Zeroizing::new(String::with_capacity(4096));
    let n = std::io::stdin().lock().read_line(&mut line).ctx("read the passphrase from", "the console")?;
    let _ = std::io::stdout().write_all(b"\n");
    if n == 0 {
        return Err(Error::ConsoleClosed);
    }
    Ok(passphrase_of(&line))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_file_is_read_whole_and_an_empty_one_is_refused() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("k");
        std::fs::write(&p, b"secret\n").unwrap();
        assert_eq!(read_file(p.to_str().unwrap()).unwrap().as_slice(), b"secret\n");
        std::fs::write(&p, b"").unwrap();
        assert!(matches!(read_file(p.to_str().unwrap()), Err(Error::EmptyKeyFile(_))));
    }

    #[test]
    fn the_newline_is_not_part_of_the_passphrase() {
        assert_eq!(passphrase_of("pass word\r\n").as_slice(), b"pass word");
    }
}
