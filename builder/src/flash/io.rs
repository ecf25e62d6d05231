//! Small `Read`/`Write` adapters that stack around the copy (coreos-installer's `src/io/` is
//! the model): [`HashReader`] hashes what passes, [`Metered`] counts it for the progress line,
//! [`HoldHead`] holds back the bytes of the first MiB, [`Interruptible`] stops the stream once a flag is set (Ctrl-C). The limit is std's
//! [`Read::take`].

use super::plan::Sha256;
use super::progress::Meter;
use sha2::Digest;
use std::io::{Read, Write};
use std::sync::atomic::{AtomicBool, Ordering};

/// Hashes (sha256) what is read through it.
pub struct HashReader<R> {
    inner: R,
    hasher: sha2::Sha256,
}

impl<R: Read> HashReader<R> {
    pub fn new(inner: R) -> Self {
        HashReader { inner, hasher: sha2::Sha256::new() }
    }

    /// The digest of everything read so far.
    pub fn digest(self) -> Sha256 {
        Sha256::from_bytes(self.hasher.finalize().into())
    }
}

impl<R: Read> Read for HashReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
}

/// Counts bytes through it for the progress line.
pub struct Metered<'a, T> {
    inner: T,
    meter: &'a mut Meter,
}

impl<'a, T> Metered<'a, T> {
    pub fn new(inner: T, meter: &'a mut Meter) -> Self {
        Metered { inner, meter }
    }
}

impl<T: Write> Write for Metered<'_, T> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.meter.add(n as u64);
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

impl<T: Read> Read for Metered<'_, T> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.meter.add(n as u64);
        Ok(n)
    }
}

/// Holds back what is written to the first `head.len()` bytes of the device: those bytes go
/// into `head` (written last, see `apply`), the rest to `inner`, which must already be at
/// `max(start, head.len())`. `start` is the device offset of the first byte written.
pub struct HoldHead<'a, W> {
    inner: W,
    head: &'a mut [u8],
    pos: u64,
}

impl<'a, W> HoldHead<'a, W> {
    pub fn new(inner: W, head: &'a mut [u8], start: u64) -> Self {
        HoldHead { inner, head, pos: start }
    }
}

impl<W: Write> Write for HoldHead<'_, W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let hl = self.head.len() as u64;
        if self.pos < hl {
            let p = self.pos as usize;
            let n = buf.len().min(self.head.len() - p);
            self.head[p..p + n].copy_from_slice(&buf[..n]);
            self.pos += n as u64;
            return Ok(n);
        }
        let n = self.inner.write(buf)?;
        self.pos += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// Fails every read and write with "interrupted (Ctrl-C)" once `flag` is set.
pub struct Interruptible<'a, T> {
    inner: T,
    flag: &'a AtomicBool,
}

impl<'a, T> Interruptible<'a, T> {
    pub fn new(inner: T, flag: &'a AtomicBool) -> Self {
        Interruptible { inner, flag }
    }

    fn check(&self) -> std::io::Result<()> {
        if self.flag.load(Ordering::SeqCst) {
            Err(std::io::Error::other("interrupted (Ctrl-C)"))
        } else {
            Ok(())
        }
    }
}

impl<T: Write> Write for Interruptible<'_, T> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.check()?;
        self.inner.write(buf)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

impl<T: Read> Read for Interruptible<'_, T> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        self.check()?;
        self.inner.read(buf)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn adapters_stack() {
        let flag = AtomicBool::new(false);
        let mut meter = Meter::new("test", 11, false);
        let mut r = HashReader::new(Interruptible::new(&b"hello world"[..], &flag));
        let mut out = Vec::new();
        std::io::copy(&mut r, &mut Metered::new(&mut out, &mut meter)).unwrap();
        assert_eq!(out, b"hello world");
        assert_eq!(meter.done(), 11);
        assert_eq!(r.digest().to_string(), "b94d27b9934d3e08a52e52d7da7dabfac484efe37a5380ee9088f7ace2efcde9");
        flag.store(true, Ordering::SeqCst);
        let e = std::io::copy(&mut Interruptible::new(&b"x"[..], &flag), &mut std::io::sink()).unwrap_err();
        assert!(e.to_string().contains("Ctrl-C"));
    }

    #[test]
    fn hold_head_keeps_the_first_bytes_back() {
        let mut head = vec![0u8; 4];
        let mut dev = Vec::new();
        let mut w = HoldHead::new(&mut dev, &mut head, 2);
        w.write_all(b"abcdef").unwrap();
        assert_eq!(head, b"\0\0ab");
        assert_eq!(dev, b"cdef", "the rest goes on at byte 4");
        let mut head = vec![0u8; 4];
        let mut dev = Vec::new();
        HoldHead::new(&mut dev, &mut head, 10).write_all(b"xy").unwrap();
        assert_eq!((head, dev), (vec![0u8; 4], b"xy".to_vec()));
    }
}
