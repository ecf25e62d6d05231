//! `oa run --expect PATTERN --send TEXT`: a short script played on a machine's serial
//! console, for a quick check without a test harness.
//!
//! The steps run in command-line order once the boot has reached the ready line. An
//! `--expect` waits (up to the per-step deadline) for its pattern, a plain substring, on the
//! console; the first one searches the whole console since the boot started (so boot messages
//! can be checked too), each later one the console after the previous match. A `--send` types
//! its text and a newline into the console and moves the search start to the end of what the
//! console had shown by then, so an `--expect` after it matches the answer, not something
//! printed earlier. What reads and writes the console is a [`ConsoleIo`]: QEMU's pipes in
//! [`crate::qemu`], a scripted fake in the tests.

use std::fmt;
use std::time::{Duration, Instant};

/// One step of the script.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Wait for this substring on the console.
    Expect(String),
    /// Type this text and a newline into the console.
    Send(String),
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Step::Expect(p) => write!(f, "--expect {p:?}"),
            Step::Send(t) => write!(f, "--send {t:?}"),
        }
    }
}

/// A console the script reads and types into.
pub trait ConsoleIo {
    /// Everything the console has shown so far.
    fn text(&self) -> &[u8];
    /// Wait up to `wait` for more output; false once the console is closed (QEMU exited)
    /// and nothing more will come.
    fn pump(&mut self, wait: Duration) -> bool;
    /// Type `text` and a newline.
    fn send_line(&mut self, text: &str) -> std::io::Result<()>;
}

/// How a script ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ending {
    /// Every step passed, in this long.
    Passed(Duration),
    /// Step `step` (0-based) did not see its pattern within the deadline.
    TimedOut { step: usize, waited: Duration },
    /// The console closed (QEMU exited) during step `step`.
    Closed { step: usize },
}

/// Play `steps` on `console`, each `--expect` within `per_step`.
pub fn run(steps: &[Step], console: &mut dyn ConsoleIo, per_step: Duration) -> Ending {
    let start = Instant::now();
    let mut from = 0usize;
    for (i, step) in steps.iter().enumerate() {
        match step {
            Step::Send(t) => {
                from = console.text().len();
                if console.send_line(t).is_err() {
                    return Ending::Closed { step: i };
                }
            }
            Step::Expect(p) => {
                let began = Instant::now();
                loop {
                    if let Some(at) = find(&console.text()[from..], p.as_bytes()) {
                        from += at + p.len();
                        break;
                    }
                    let waited = began.elapsed();
                    if waited >= per_step {
                        return Ending::TimedOut { step: i, waited };
                    }
                    if !console.pump((per_step - waited).min(Duration::from_millis(100))) {
                        // Closed: what it showed last is in text() already; one last look.
                        if let Some(at) = find(&console.text()[from..], p.as_bytes()) {
                            from += at + p.len();
                            break;
                        }
                        return Ending::Closed { step: i };
                    }
                }
            }
        }
    }
    Ending::Passed(start.elapsed())
}

/// The first position of `needle` in `hay` (an empty needle matches at 0).
pub fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    if needle.is_empty() {
        return Some(0);
    }
    hay.windows(needle.len()).position(|w| w == needle)
}

/// The last `n` lines of `console` for error reports: lossy UTF-8, without carriage returns,
/// terminal escape sequences (a shell's `ESC [6n` cursor query) and other control characters.
pub fn tail(console: &[u8], n: usize) -> String {
    let text = String::from_utf8_lossy(console);
    let mut clean = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            // CSI: ESC [ parameters, then one final byte in @..~.
            '\x1b' if chars.peek() == Some(&'[') => {
                chars.next();
                for c in chars.by_ref() {
                    if ('@'..='~').contains(&c) {
                        break;
                    }
                }
            }
            '\n' | '\t' => clean.push(c),
            c if c.is_control() => {}
            c => clean.push(c),
        }
    }
    let lines: Vec<&str> = clean.trim_end_matches('\n').lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::VecDeque;

    /// A console that shows `chunks` one per pump and answers each typed line from `replies`.
    struct Fake {
        text: Vec<u8>,
        chunks: VecDeque<&'static str>,
        replies: Vec<(&'static str, &'static str)>,
        sent: Vec<String>,
        closes: bool,
    }

    impl Fake {
        fn new(chunks: &[&'static str], replies: &[(&'static str, &'static str)]) -> Fake {
            Fake {
                text: Vec::new(),
                chunks: chunks.iter().copied().collect(),
                replies: replies.to_vec(),
                sent: vec![],
                closes: false,
            }
        }
    }

    impl ConsoleIo for Fake {
        fn text(&self) -> &[u8] {
            &self.text
        }
        fn pump(&mut self, wait: Duration) -> bool {
            match self.chunks.pop_front() {
                Some(c) => {
                    self.text.extend_from_slice(c.as_bytes());
                    true
                }
                None if self.closes => false,
                None => {
                    std::thread::sleep(wait);
                    true
                }
            }
        }
        fn send_line(&mut self, text: &str) -> std::io::Result<()> {
            if self.closes && self.chunks.is_empty() {
                return Err(std::io::ErrorKind::BrokenPipe.into());
            }
            self.sent.push(text.to_string());
            // The terminal echoes the line, then the command answers.
            self.text.extend_from_slice(format!("# {text}\r\n").as_bytes());
            if let Some((_, r)) = self.replies.iter().find(|(q, _)| *q == text) {
                self.chunks.push_back(r);
            }
            Ok(())
        }
    }

    const STEP: Duration = Duration::from_millis(300);

    #[test]
    fn steps_run_in_order_and_a_send_is_answered() {
        let mut c = Fake::new(&["boot\n", "hello from oa\n"], &[("cat /sys/block/vdb/size", "12345\n")]);
        let steps =
            [Step::Expect("hello".into()), Step::Send("cat /sys/block/vdb/size".into()), Step::Expect("12345".into())];
        assert!(matches!(run(&steps, &mut c, STEP), Ending::Passed(_)));
        assert_eq!(c.sent, ["cat /sys/block/vdb/size"]);
    }

    #[test]
    fn the_first_expect_sees_the_boot_but_an_expect_after_a_send_does_not() {
        // "12345" was printed during the boot: the expect after the send must wait for the
        // answer, which never comes here.
        let mut c = Fake::new(&["[vdb] 12345 blocks\n", "ready\n"], &[]);
        let steps = [Step::Expect("blocks".into()), Step::Send("true".into()), Step::Expect("12345".into())];
        match run(&steps, &mut c, STEP) {
            Ending::TimedOut { step, waited } => {
                assert_eq!(step, 2);
                assert!(waited >= STEP && waited < STEP * 4, "{waited:?}");
            }
            other => panic!("{other:?}"),
        }
        // Without the send, the boot message matches at once.
        let mut c = Fake::new(&["[vdb] 12345 blocks\n"], &[]);
        assert!(matches!(run(&[Step::Expect("12345".into())], &mut c, STEP), Ending::Passed(_)));
    }

    #[test]
    fn each_expect_searches_after_the_previous_match() {
        let mut c = Fake::new(&["one two\n"], &[]);
        let steps = [Step::Expect("two".into()), Step::Expect("one".into())];
        assert!(matches!(run(&steps, &mut c, STEP), Ending::TimedOut { step: 1, .. }));
        let mut c = Fake::new(&["one two one\n"], &[]);
        assert!(matches!(run(&steps, &mut c, STEP), Ending::Passed(_)));
    }

    #[test]
    fn a_closed_console_ends_the_step_it_happened_in() {
        let mut c = Fake::new(&["ready\n", "reboot: Power down\n"], &[]);
        c.closes = true;
        let steps = [Step::Expect("ready".into()), Step::Expect("never".into())];
        assert_eq!(run(&steps, &mut c, STEP), Ending::Closed { step: 1 });
        // A pattern in the last output before the close still counts.
        let mut c = Fake::new(&["Power down\n"], &[]);
        c.closes = true;
        assert!(matches!(run(&[Step::Expect("Power down".into())], &mut c, STEP), Ending::Passed(_)));
        // Typing into a closed console.
        let mut c = Fake::new(&[], &[]);
        c.closes = true;
        assert_eq!(run(&[Step::Send("x".into())], &mut c, STEP), Ending::Closed { step: 0 });
    }

    #[test]
    fn tail_keeps_the_last_lines() {
        let text = (1..=30).map(|i| format!("line {i}\r\n")).collect::<String>();
        let t = tail(text.as_bytes(), 20);
        assert!(t.starts_with("line 11\n") && t.ends_with("line 30"), "{t}");
        assert_eq!(tail(b"a\nb", 20), "a\nb");
        assert_eq!(tail(b"tiny# \x1b[6noa-hello: hi\x07\r\n", 20), "tiny# oa-hello: hi");
        assert_eq!(Step::Send("cat /x".into()).to_string(), "--send \"cat /x\"");
    }
}
