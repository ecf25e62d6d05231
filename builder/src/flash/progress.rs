//! The progress line of a long copy.

use crate::image::bmap;
use std::io::IsTerminal;
use std::time::{Duration, Instant};

/// The progress line: `writing  12.0 MiB / 15.3 MiB  78%  41.2 MiB/s`, redrawn in place on a
/// terminal (at most 5 times a second), one line per quarter otherwise.
pub struct Meter {
    what: &'static str,
    total: u64,
    done: u64,
    start: Instant,
    last: Instant,
    last_quarter: u64,
    on: bool,
    tty: bool,
}

impl Meter {
    pub fn new(what: &'static str, total: u64, on: bool) -> Meter {
        let now = Instant::now();
        Meter { what, total, done: 0, start: now, last: now, last_quarter: 0, on, tty: std::io::stderr().is_terminal() }
    }

    /// Bytes counted so far.
    pub fn done(&self) -> u64 {
        self.done
    }

    fn line(&self) -> String {
        let secs = self.start.elapsed().as_secs_f64().max(0.001);
        let pct = (self.done * 100).checked_div(self.total).unwrap_or(100);
        format!(
            "{} {:>10} / {:<10} {pct:>3}%  {}/s",
            self.what,
            bmap::human(self.done),
            bmap::human(self.total),
            bmap::human((self.done as f64 / secs) as u64)
        )
    }

    /// Count `n` more bytes and redraw when it is time.
    pub fn add(&mut self, n: u64) {
        self.done += n;
        if !self.on {
            return;
        }
        if self.tty {
            if self.last.elapsed() >= Duration::from_millis(200) {
                self.last = Instant::now();
                eprint!("\r{}\x1b[K", self.line());
            }
        } else {
            let quarter = (self.done * 4).checked_div(self.total).unwrap_or(4);
            if quarter > self.last_quarter {
                self.last_quarter = quarter;
                eprintln!("{}", self.line());
            }
        }
    }

    pub fn finish(&mut self) {
        if self.on && self.tty {
            eprintln!("\r{}\x1b[K", self.line());
        } else if self.on && self.last_quarter < 4 {
            eprintln!("{}", self.line());
        }
    }
}
