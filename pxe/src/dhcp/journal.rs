//! The leases file: an append-only journal, one JSON line per change (Kea's memfile is the
//! model), written by one dedicated thread with group commit: every pending record is written,
//! the file is `fdatasync`ed once, then every waiter is told. A DHCPACK is sent only after its
//! record is durable ([`Journal::append`] hands back the receiver the ACK waits on).
//!
//! The last line for a MAC wins; `expires: 0` is a release. When the file holds at least
//! twice the live leases (plus [`SLACK`]) it is compacted: a snapshot goes to a private
//! temporary file in the same folder (`O_CREAT|O_EXCL`, 0600), is fsynced, renamed over the
//! journal, and the folder is fsynced.
//!
//! Loading tolerates the torn last line a crash leaves (ignored with a warning, cut off before
//! the next append); any other bad line is an error naming the file and the line. The old
//! format (one JSON object `{"leases": [...]}`) is read and rewritten as a journal.
//!
//! The file is opened with `O_NOFOLLOW` (a symlink is refused) and an exclusive `flock` is
//! held for the server's life: a second server on the same file fails at once.

use std::collections::HashMap;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::net::Ipv4Addr;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::mpsc;

use anyhow::Context;
use serde::{Deserialize, Serialize};

/// Journal lines beyond twice the live leases before a compaction.
pub const SLACK: usize = 1000;
/// Records queued for the writer before appends are refused (the ACK is then not sent).
const QUEUE: usize = 65536;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lease {
    pub mac: String,
    pub ip: Ipv4Addr,
    /// Unix time (seconds) the lease ends; 0 is a release.
    pub expires: u64,
}

/// The leases file before the journal (issue 5): one JSON object replaced atomically.
#[derive(Debug, Deserialize)]
struct OldFile {
    leases: Vec<Lease>,
}

/// The latest record per MAC, one MAC per address (a later record for an address takes it).
#[derive(Debug, Default, Clone)]
pub struct Table {
    pub by_mac: HashMap<String, Lease>,
    by_ip: HashMap<Ipv4Addr, String>,
}

impl Table {
    pub fn apply(&mut self, l: Lease) {
        if let Some(old) = self.by_mac.remove(&l.mac) {
            if self.by_ip.get(&old.ip) == Some(&l.mac) {
                self.by_ip.remove(&old.ip);
            }
        }
        if l.expires == 0 {
            return;
        }
        if let Some(other) = self.by_ip.insert(l.ip, l.mac.clone()) {
            if other != l.mac {
                self.by_mac.remove(&other);
            }
        }
        self.by_mac.insert(l.mac.clone(), l);
    }

    pub fn len(&self) -> usize {
        self.by_mac.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_mac.is_empty()
    }
}

/// What a journal's text holds.
#[derive(Debug, Default)]
pub struct Replay {
    pub table: Table,
    /// Records read (lines that count towards compaction).
    pub lines: usize,
    /// Bytes of the text that are good; a torn last line lies beyond.
    pub good_len: usize,
    /// The 1-based line number of a torn last line that was ignored.
    pub torn: Option<usize>,
    /// The last good line has no newline (a complete record whose newline was lost).
    pub unterminated: bool,
    /// The text was the old single-object format.
    pub old_format: bool,
}

/// A bad line: its 1-based number and why.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {why}")]
pub struct BadLine {
    pub line: usize,
    pub why: String,
}

/// Parse journal text (no files: the fuzz target calls this).
pub fn parse(text: &[u8]) -> Result<Replay, BadLine> {
    let mut r = Replay::default();
    let first = text.iter().find(|b| !b.is_ascii_whitespace());
    if first == Some(&b'{') {
        if let Ok(old) = serde_json::from_slice::<OldFile>(text) {
            for l in old.leases {
                if l.expires != 0 {
                    r.table.apply(l);
                }
            }
            r.good_len = text.len();
            r.old_format = true;
            return Ok(r);
        }
    }
    let mut start = 0;
    let mut line = 0;
    while start < text.len() {
        line += 1;
        let (end, terminated) = match text[start..].iter().position(|&b| b == b'\n') {
            Some(i) => (start + i, true),
            None => (text.len(), false),
        };
        let s = &text[start..end];
        let next = if terminated { end + 1 } else { end };
        if s.iter().all(|b| b.is_ascii_whitespace()) {
            start = next;
            r.good_len = next;
            continue;
        }
        match serde_json::from_slice::<Lease>(s) {
            Ok(l) => {
                r.table.apply(l);
                r.lines += 1;
                r.good_len = next;
                r.unterminated = !terminated;
            }
            Err(_) if !terminated => {
                r.torn = Some(line);
                break;
            }
            Err(e) => return Err(BadLine { line, why: e.to_string() }),
        }
        start = next;
    }
    Ok(r)
}

fn lock(f: &File, path: &Path) -> anyhow::Result<()> {
    use std::os::fd::AsRawFd;
    // SAFETY: flock on a descriptor we own.
    if unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
        let e = std::io::Error::last_os_error();
        if e.raw_os_error() == Some(libc::EWOULDBLOCK) {
            anyhow::bail!(
                "{} is in use by another DHCP server (an oa-pxe or `oa serve --mode dhcp` with the same --leases is running: stop it, or give this one another --leases; `fuser {}` names the holder)",
                path.display(),
                path.display()
            );
        }
        return Err(e).with_context(|| format!("locking {}", path.display()));
    }
    Ok(())
}

fn open_nofollow(path: &Path, create: bool) -> anyhow::Result<File> {
    std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(create)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(path)
        .map_err(|e| {
            if e.raw_os_error() == Some(libc::ELOOP) {
                anyhow::anyhow!("{} is a symbolic link: refused (give the real file as --leases)", path.display())
            } else {
                anyhow::anyhow!("opening the leases file {}: {e}", path.display())
            }
        })
}

fn folder(path: &Path) -> &Path {
    path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."))
}

/// Write `table` as a fresh journal: private temporary file, fsync, lock it, rename over
/// `path`, fsync the folder. The returned file (locked, positioned at its end) replaces the
/// old one, whose lock goes when it is closed.
fn snapshot(path: &Path, table: &Table, now: u64) -> anyhow::Result<(File, usize)> {
    let dir = folder(path);
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("leases");
    let mut leases: Vec<&Lease> = table.by_mac.values().filter(|l| l.expires > now).collect();
    leases.sort_by_key(|l| u32::from(l.ip));
    let mut buf = Vec::with_capacity(leases.len() * 64);
    for l in &leases {
        serde_json::to_writer(&mut buf, l).context("encoding a lease")?;
        buf.push(b'\n');
    }
    let mut n = 0;
    let (tmp, mut f) = loop {
        let tmp = dir.join(format!(".{name}.compact-{}-{n}", std::process::id()));
        match std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(&tmp)
        {
            Ok(f) => break (tmp, f),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && n < 100 => n += 1,
            Err(e) => return Err(e).with_context(|| format!("creating {}", tmp.display())),
        }
    };
    let r = (|| -> anyhow::Result<()> {
        f.write_all(&buf)?;
        f.sync_all()?;
        lock(&f, &tmp)?;
        std::fs::rename(&tmp, path)?;
        File::open(dir)?.sync_all()?;
        Ok(())
    })();
    if let Err(e) = r {
        let _ = std::fs::remove_file(&tmp);
        return Err(e).with_context(|| format!("compacting {}", path.display()));
    }
    Ok((f, leases.len()))
}

type Waiter = tokio::sync::oneshot::Sender<Result<(), String>>;

/// Resolves when a record is on disk (or could not be written).
pub type Durable = tokio::sync::oneshot::Receiver<Result<(), String>>;

enum Job {
    Write(Lease, Option<Waiter>),
}

/// The writer thread's handle. Dropping it drains the queue and joins the thread (the lock is
/// released when it returns).
pub struct Journal {
    tx: Option<mpsc::SyncSender<Job>>,
    thread: Option<std::thread::JoinHandle<()>>,
    path: PathBuf,
}

/// Open (creating) the journal at `path`: lock it, replay it, start the writer. Returns the
/// live table as read (the caller filters by pool and expiry).
pub fn open(path: &Path) -> anyhow::Result<(Journal, Table)> {
    std::fs::create_dir_all(folder(path)).with_context(|| format!("creating {}", folder(path).display()))?;
    // A compaction renames a new file over the path: make sure the file locked is the one
    // the path names.
    let mut tries = 0;
    let mut f = loop {
        let f = open_nofollow(path, true)?;
        lock(&f, path)?;
        let same = std::fs::symlink_metadata(path)
            .map(|m| m.ino() == f.metadata().map(|fm| fm.ino()).unwrap_or(0))
            .unwrap_or(false);
        if same {
            break f;
        }
        tries += 1;
        if tries > 5 {
            anyhow::bail!("{} keeps being replaced: is another server compacting it?", path.display());
        }
    };
    let mut text = Vec::new();
    f.read_to_end(&mut text).with_context(|| format!("reading {}", path.display()))?;
    let r = parse(&text).map_err(|e| {
        anyhow::anyhow!("{}: {e} (not a leases journal; move it away to start with no leases)", path.display())
    })?;
    if let Some(line) = r.torn {
        tracing::warn!(target: "dhcp",
            "{}: ignoring the torn last line {line} ({} bytes, a crash mid-write)",
            path.display(),
            text.len() - r.good_len
        );
        f.set_len(r.good_len as u64).with_context(|| format!("truncating the torn line of {}", path.display()))?;
    }
    f.seek(SeekFrom::Start(r.good_len as u64))?;
    if r.unterminated {
        f.write_all(b"\n")?;
    }
    let table = r.table;
    let mut lines = r.lines;
    if r.old_format || lines >= 2 * table.len() + SLACK {
        let (nf, n) = snapshot(path, &table, now())?;
        if r.old_format {
            tracing::info!(target: "dhcp", "{}: converted the old leases file to a journal ({n} leases)", path.display());
        }
        f = nf;
        lines = n;
    } else {
        f.sync_data().with_context(|| format!("syncing {}", path.display()))?;
    }
    let (tx, rx) = mpsc::sync_channel(QUEUE);
    let p = path.to_path_buf();
    let t = table.clone();
    let thread = std::thread::Builder::new()
        .name("oa-leases".into())
        .spawn(move || writer(rx, f, p, t, lines))
        .context("starting the leases writer thread")?;
    Ok((Journal { tx: Some(tx), thread: Some(thread), path: path.to_path_buf() }, table))
}

pub fn now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

fn writer(rx: mpsc::Receiver<Job>, mut f: File, path: PathBuf, mut table: Table, mut lines: usize) {
    let mut buf = Vec::with_capacity(1 << 16);
    let mut waiters = Vec::new();
    let mut len = f.stream_position().unwrap_or(0);
    while let Ok(job) = rx.recv() {
        buf.clear();
        waiters.clear();
        let mut pending = Some(job);
        let mut n = 0;
        while let Some(Job::Write(l, w)) = pending.take() {
            let _ = serde_json::to_writer(&mut buf, &l);
            buf.push(b'\n');
            table.apply(l);
            n += 1;
            if let Some(w) = w {
                waiters.push(w);
            }
            if n < 8192 {
                pending = rx.try_recv().ok();
            }
        }
        let r = f.write_all(&buf).and_then(|_| f.sync_data());
        let r = match r {
            Ok(()) => {
                len += buf.len() as u64;
                lines += n;
                Ok(())
            }
            Err(e) => {
                // Cut off whatever part was written so the next append starts a clean line.
                let _ = f.set_len(len).and_then(|_| f.seek(SeekFrom::Start(len)).map(|_| ()));
                tracing::error!(target: "dhcp", "writing {}: {e} ({n} lease changes not saved, not acknowledged)", path.display());
                Err(format!("writing {}: {e}", path.display()))
            }
        };
        for w in waiters.drain(..) {
            let _ = w.send(r.clone());
        }
        if r.is_ok() && lines >= 2 * table.len() + SLACK {
            match snapshot(&path, &table, now()) {
                Ok((nf, live)) => {
                    tracing::debug!(target: "dhcp", "{}: compacted {lines} lines to {live} leases", path.display());
                    f = nf;
                    len = f.stream_position().unwrap_or(0);
                    lines = live;
                    table.by_mac.retain(|_, l| l.expires > now());
                    table.by_ip.retain(|_, m| table.by_mac.contains_key(m));
                }
                Err(e) => tracing::warn!(target: "dhcp", "{e:#} (the journal keeps growing until this works)"),
            }
        }
    }
}

impl Journal {
    /// Queue `l`; the receiver resolves once it is on disk.
    pub fn append(&self, l: Lease) -> Durable {
        let (w, r) = tokio::sync::oneshot::channel();
        if let Some(tx) = &self.tx {
            if let Err(e) = tx.try_send(Job::Write(l, Some(w))) {
                let Job::Write(_, Some(w)) = (match e {
                    mpsc::TrySendError::Full(j) | mpsc::TrySendError::Disconnected(j) => j,
                }) else {
                    return r;
                };
                let _ = w.send(Err(format!("the writer of {} is behind or gone", self.path.display())));
            }
        }
        r
    }

    /// Queue `l` without waiting for it.
    pub fn append_nowait(&self, l: Lease) {
        if let Some(tx) = &self.tx {
            let _ = tx.try_send(Job::Write(l, None));
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for Journal {
    fn drop(&mut self) {
        self.tx.take();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lease(mac: u8, ip: u8, expires: u64) -> Lease {
        Lease { mac: format!("52:54:00:00:00:{mac:02x}"), ip: Ipv4Addr::new(10, 0, 0, ip), expires }
    }

    fn line(l: &Lease) -> String {
        serde_json::to_string(l).unwrap() + "\n"
    }

    #[test]
    fn replay_last_record_wins_and_releases_remove() {
        let far = now() + 3600;
        let text = line(&lease(1, 10, far))
            + &line(&lease(2, 11, far))
            + &line(&lease(1, 12, far))
            + &line(&lease(2, 0, 0))
            + "\n"
            + &line(&lease(3, 12, far));
        let r = parse(text.as_bytes()).unwrap();
        assert_eq!(r.lines, 5);
        // 1 moved to .12, 2 released, 3 took .12 from 1.
        assert_eq!(r.table.len(), 1);
        assert_eq!(r.table.by_mac["52:54:00:00:00:03"].ip, Ipv4Addr::new(10, 0, 0, 12));
        assert_eq!(r.good_len, text.len());
        assert!(r.torn.is_none() && !r.unterminated && !r.old_format);
    }

    #[test]
    fn torn_last_line_is_ignored_other_bad_lines_are_errors() {
        let far = now() + 3600;
        let good = line(&lease(1, 10, far)) + &line(&lease(2, 11, far));
        let torn = good.clone() + r#"{"mac":"52:54:00:00:00:03","ip":"10.0"#;
        let r = parse(torn.as_bytes()).unwrap();
        assert_eq!((r.table.len(), r.torn, r.good_len), (2, Some(3), good.len()));
        // A complete last record without its newline is kept.
        let r = parse(good.trim_end().as_bytes()).unwrap();
        assert!(r.unterminated && r.table.len() == 2);
        // A bad line in the middle names its line.
        let bad = line(&lease(1, 10, far)) + "garbage\n" + &line(&lease(2, 11, far));
        assert_eq!(parse(bad.as_bytes()).unwrap_err().line, 2);
        let bad = good + "{\"mac\":1}\n";
        assert_eq!(parse(bad.as_bytes()).unwrap_err().line, 3);
    }

    #[test]
    fn old_format_is_read() {
        let far = now() + 3600;
        let old = format!(
            "{{\n  \"leases\": [\n    {{\"mac\": \"52:54:00:00:00:01\", \"ip\": \"10.0.0.10\", \"expires\": {far}}}\n  ]\n}}"
        );
        let r = parse(old.as_bytes()).unwrap();
        assert!(r.old_format);
        assert_eq!(r.table.len(), 1);
    }

    #[test]
    fn open_appends_with_group_commit_compacts_and_repairs_a_torn_line() {
        let t = tempfile::tempdir().unwrap();
        let p = t.path().join("state/leases.json");
        let far = now() + 3600;
        {
            let (j, table) = open(&p).unwrap();
            assert!(table.is_empty());
            // A second open of the same file is refused while the first holds it.
            let e = open(&p).err().unwrap().to_string();
            assert!(e.contains("in use by another DHCP server") && e.contains("leases.json"), "{e}");
            let rs: Vec<Durable> = (0..200).map(|i| j.append(lease(i as u8, i as u8, far))).collect();
            for r in rs {
                r.blocking_recv().unwrap().unwrap();
            }
        }
        let text = std::fs::read_to_string(&p).unwrap();
        assert_eq!(text.lines().count(), 200);
        // Rewrite the same 10 leases until compaction kicks in: the file stays bounded.
        {
            let (j, table) = open(&p).unwrap();
            assert_eq!(table.len(), 200);
            let mut last = None;
            for k in 0..(3 * SLACK) {
                last = Some(j.append(lease((k % 10) as u8, (k % 10) as u8, far + k as u64)));
            }
            last.unwrap().blocking_recv().unwrap().unwrap();
        }
        let text = std::fs::read_to_string(&p).unwrap();
        let n = text.lines().count();
        assert!(n < 2 * 200 + SLACK + 1, "the journal was not compacted: {n} lines");
        let names: Vec<_> =
            std::fs::read_dir(t.path().join("state")).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(names, vec![std::ffi::OsString::from("leases.json")], "no temporary file left");
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(&p).unwrap().permissions().mode() & 0o777, 0o600);
        // A torn tail is cut off, and the next record starts a clean line.
        std::fs::OpenOptions::new().append(true).open(&p).unwrap().write_all(br#"{"mac":"52:5"#).unwrap();
        {
            let (j, table) = open(&p).unwrap();
            assert_eq!(table.len(), 200);
            j.append(lease(250, 250, far)).blocking_recv().unwrap().unwrap();
        }
        let (_j, table) = open(&p).unwrap();
        assert_eq!(table.len(), 201);
    }

    #[test]
    fn open_converts_the_old_format_to_a_journal() {
        let t = tempfile::tempdir().unwrap();
        let p = t.path().join("leases.json");
        let far = now() + 3600;
        std::fs::write(
            &p,
            format!(
                "{{\n  \"leases\": [\n    {{\"mac\": \"52:54:00:00:00:01\", \"ip\": \"10.0.0.10\", \"expires\": {far}}},\n    {{\"mac\": \"52:54:00:00:00:02\", \"ip\": \"10.0.0.11\", \"expires\": 5}}\n  ]\n}}"
            ),
        )
        .unwrap();
        let (j, table) = open(&p).unwrap();
        assert_eq!(table.len(), 2);
        drop(j);
        // Rewritten as journal lines: the live lease only.
        let text = std::fs::read_to_string(&p).unwrap();
        assert_eq!(text, line(&lease(1, 10, far)));
        let (_j, table) = open(&p).unwrap();
        assert_eq!(table.len(), 1);
    }

    #[test]
    fn symlinks_and_bad_files_are_refused() {
        let t = tempfile::tempdir().unwrap();
        let real = t.path().join("real.json");
        std::fs::write(&real, "").unwrap();
        let link = t.path().join("leases.json");
        std::os::unix::fs::symlink(&real, &link).unwrap();
        let e = open(&link).err().unwrap().to_string();
        assert!(e.contains("symbolic link"), "{e}");
        std::fs::write(&real, "{not json\n").unwrap();
        let e = open(&real).err().unwrap().to_string();
        assert!(e.contains("real.json") && e.contains("line 1"), "{e}");
    }
}
