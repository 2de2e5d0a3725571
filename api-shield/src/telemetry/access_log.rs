//! The access log's sink: lines are formatted on the worker that served the request, appended
//! to a bounded in-memory buffer, and written by a thread of their own, so no request ever
//! waits for a disk, a pipe or the journal.
//!
//! - **Bounded.** The buffer holds at most `buffer_bytes`; a line that does not fit (the sink
//!   cannot keep up or has stalled) is dropped and counted in
//!   `api_shield_logs.access_dropped_total`, never queued without limit and never a blocked
//!   request. Lines written are counted in `api_shield_logs.access_lines_total`.
//! - **Flushed** every `flush_interval` (at most a second), sooner once 64 KiB are pending, and
//!   on shutdown ([`AccessLog::shutdown`]), so a stop loses nothing.
//! - **Whole lines.** Each write holds whole lines (at most 64 KiB): on stderr, where the
//!   daemon's other log lines go too, no line is cut by another.
//! - **Sinks**: stderr (the journal under systemd), a file opened for appending (so logrotate's
//!   `copytruncate` works) and reopened on SIGUSR1 (for `create` and a `postrotate` that sends
//!   it), or off (no line is even formatted).
//!
//! By hand rather than tracing-appender's non-blocking writer: that one queues each line as
//! its own heap allocation and counts drops in lines only, while this one appends into a
//! buffer it reuses and writes one syscall per 64 KiB.

use std::{
    cell::RefCell,
    fs::{File, OpenOptions},
    io::{self, Write},
    os::unix::fs::OpenOptionsExt as _,
    path::{Path, PathBuf},
    sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock, PoisonError},
    thread::JoinHandle,
    time::{Duration, SystemTime},
};

use super::{access_line::AccessLine, LogFormat};
use crate::config::{AccessLogConfig, AccessLogSink};

/// A write holds at most this much, and the writer is woken once this much is pending.
const CHUNK: usize = 64 * 1024;

/// The access log. One per process ([`install`], [`access_log`]).
#[derive(Debug)]
pub struct AccessLog {
    format: LogFormat,
    enabled: bool,
    shared: Arc<Shared>,
    writer: Mutex<Option<JoinHandle<()>>>,
}

#[derive(Debug)]
struct Shared {
    pending: Mutex<Pending>,
    wake: Condvar,
    buffer_bytes: usize,
}

#[derive(Debug, Default)]
struct Pending {
    text: Vec<u8>,
    stop: bool,
    /// A reopen was asked for when `text` held this many bytes: those go to the old file,
    /// the rest to the new one.
    reopen_at: Option<usize>,
}

/// A destination the writer thread owns.
trait Output: Send {
    fn write_chunk(&mut self, chunk: &[u8]) -> io::Result<()>;
    /// Opens the file anew (after a rotation); a no-op for other sinks.
    fn reopen(&mut self) -> io::Result<()> {
        Ok(())
    }
}

struct StderrOutput;

impl Output for StderrOutput {
    fn write_chunk(&mut self, chunk: &[u8]) -> io::Result<()> {
        // The lock tracing's own writes take too, so lines of the two never interleave.
        io::stderr().lock().write_all(chunk)
    }
}

struct FileOutput {
    path: PathBuf,
    file: File,
}

impl FileOutput {
    fn open(path: &Path) -> io::Result<File> {
        OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o640)
            .open(path)
    }
}

impl Output for FileOutput {
    fn write_chunk(&mut self, chunk: &[u8]) -> io::Result<()> {
        self.file.write_all(chunk)
    }

    fn reopen(&mut self) -> io::Result<()> {
        self.file = FileOutput::open(&self.path)?;
        Ok(())
    }
}

/// Test sinks: any writer.
#[cfg(test)]
impl<W: Write + Send> Output for W {
    fn write_chunk(&mut self, chunk: &[u8]) -> io::Result<()> {
        self.write_all(chunk)
    }
}

impl AccessLog {
    /// Opens the sink (a file that cannot be opened is an error naming it) and starts the
    /// writer thread; lines in `config.format`, else `format`.
    pub fn start(config: &AccessLogConfig, format: LogFormat) -> io::Result<AccessLog> {
        let output: Option<Box<dyn Output>> = match &config.sink {
            AccessLogSink::Off => None,
            AccessLogSink::Stderr => Some(Box::new(StderrOutput)),
            AccessLogSink::File(path) => {
                let file = FileOutput::open(path).map_err(|error| {
                    io::Error::new(
                        error.kind(),
                        format!("opening the access log {}: {error}", path.display()),
                    )
                })?;
                Some(Box::new(FileOutput {
                    path: path.clone(),
                    file,
                }))
            }
        };
        AccessLog::with_output(config, config.format.unwrap_or(format), output)
    }

    fn with_output(
        config: &AccessLogConfig,
        format: LogFormat,
        output: Option<Box<dyn Output>>,
    ) -> io::Result<AccessLog> {
        let shared = Arc::new(Shared {
            pending: Mutex::new(Pending::default()),
            wake: Condvar::new(),
            buffer_bytes: config.buffer_bytes,
        });
        let enabled = output.is_some();
        let writer = match output {
            Some(output) => {
                let shared = Arc::clone(&shared);
                let interval = config.flush_interval;
                Some(
                    std::thread::Builder::new()
                        .name("access-log".to_owned())
                        .spawn(move || write_loop(&shared, output, interval))?,
                )
            }
            None => None,
        };
        Ok(AccessLog {
            format,
            enabled,
            shared,
            writer: Mutex::new(writer),
        })
    }

    /// A log that writes nothing (before [`install`], and in unit tests).
    fn off() -> AccessLog {
        AccessLog {
            format: LogFormat::Text,
            enabled: false,
            shared: Arc::new(Shared {
                pending: Mutex::new(Pending::default()),
                wake: Condvar::new(),
                buffer_bytes: 0,
            }),
            writer: Mutex::new(None),
        }
    }

    /// Logs one request: formatted here, written by the writer thread; dropped and counted
    /// when the buffer is full. Never blocks on the sink.
    pub fn record(&self, line: &AccessLine<'_>) {
        if !self.enabled {
            return;
        }
        thread_local! {
            static TEXT: RefCell<String> = RefCell::new(String::with_capacity(512));
        }
        TEXT.with_borrow_mut(|text| {
            text.clear();
            line.write(self.format, SystemTime::now(), text);
            let crossed = {
                let mut pending = self.shared.lock();
                if pending.stop || pending.text.len() + text.len() > self.shared.buffer_bytes {
                    drop(pending);
                    super::metrics().logs.access_dropped.inc();
                    return;
                }
                let before = pending.text.len();
                pending.text.extend_from_slice(text.as_bytes());
                before < CHUNK && pending.text.len() >= CHUNK
            };
            // Woken once per chunk, not per line: a wake is a system call.
            if crossed {
                self.shared.wake.notify_one();
            }
        });
    }

    /// Has the file reopened (after logrotate moved it): lines recorded before this call
    /// are written to the old file, lines recorded after it to the new one.
    pub fn reopen(&self) {
        {
            let mut pending = self.shared.lock();
            pending.reopen_at = Some(pending.text.len());
        }
        self.shared.wake.notify_one();
    }

    /// Writes every pending line and stops the writer thread; lines recorded afterwards are
    /// dropped and counted.
    pub fn shutdown(&self) {
        self.shared.lock().stop = true;
        self.shared.wake.notify_one();
        let writer = self
            .writer
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(writer) = writer {
            let _ = writer.join();
        }
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Pending> {
        self.pending.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The writer thread: takes what is pending (swapping buffers, so the lock is held for no
/// write) and writes it in whole-line chunks.
fn write_loop(shared: &Shared, mut output: Box<dyn Output>, interval: Duration) {
    let mut spare: Vec<u8> = Vec::new();
    loop {
        let (stop, reopen_at) = {
            let mut pending = shared.lock();
            if !pending.stop && pending.reopen_at.is_none() && pending.text.len() < CHUNK {
                pending = shared
                    .wake
                    .wait_timeout(pending, interval)
                    .unwrap_or_else(PoisonError::into_inner)
                    .0;
            }
            std::mem::swap(&mut pending.text, &mut spare);
            let taken = (pending.stop, pending.reopen_at.take());
            if pending.stop {
                // Nothing is accepted after the last write.
                pending.text = Vec::new();
                drop(pending);
            }
            taken
        };
        let mut rest = spare.as_slice();
        if let Some(at) = reopen_at {
            let (old, new) = rest.split_at(at);
            write_whole_lines(output.as_mut(), old);
            match output.reopen() {
                Ok(()) => tracing::info!("access log reopened"),
                Err(error) => {
                    tracing::warn!(%error, "reopening the access log failed; writing to the old file");
                }
            }
            rest = new;
        }
        write_whole_lines(output.as_mut(), rest);
        spare.clear();
        if stop {
            return;
        }
    }
}

/// Writes `text` (whole lines) in chunks that end at a line's end; counts the lines written,
/// or lost when the sink failed.
fn write_whole_lines(output: &mut dyn Output, text: &[u8]) {
    let metrics = super::metrics();
    let mut rest = text;
    while !rest.is_empty() {
        let end = if rest.len() <= CHUNK {
            rest.len()
        } else {
            // A line is far shorter than a chunk, so there is a line end inside it.
            rest[..CHUNK]
                .iter()
                .rposition(|&b| b == b'\n')
                .map_or(CHUNK, |at| at + 1)
        };
        let (chunk, after) = rest.split_at(end);
        let count = bytecount(chunk);
        match output.write_chunk(chunk) {
            Ok(()) => metrics.logs.access_lines.inc_by(count),
            Err(_) => metrics.logs.access_dropped.inc_by(count),
        }
        rest = after;
    }
}

// Newlines of one 64 KiB chunk per write: not worth the bytecount crate.
#[allow(clippy::naive_bytecount)]
fn bytecount(text: &[u8]) -> u64 {
    text.iter().filter(|&&b| b == b'\n').count() as u64
}

static ACCESS_LOG: OnceLock<AccessLog> = OnceLock::new();

/// Starts the process's access log (lines in `config.format`, else `format`); an error when it
/// cannot be opened or was already started.
pub(crate) fn install(config: &AccessLogConfig, format: LogFormat) -> io::Result<()> {
    let log = AccessLog::start(config, format)?;
    ACCESS_LOG.set(log).map_err(|log| {
        log.shutdown();
        io::Error::other("the access log is already started")
    })
}

/// The process's access log (one that writes nothing until [`install`]).
pub fn access_log() -> &'static AccessLog {
    ACCESS_LOG.get_or_init(AccessLog::off)
}

#[cfg(test)]
mod tests {
    use std::{net::Ipv4Addr, sync::mpsc};

    use super::*;

    fn settings(buffer_bytes: usize, flush_interval: Duration) -> AccessLogConfig {
        AccessLogConfig {
            sink: AccessLogSink::Stderr,
            format: Some(LogFormat::Json),
            flush_interval,
            buffer_bytes,
        }
    }

    fn line(id: &str) -> AccessLine<'_> {
        AccessLine {
            request_id: id,
            client_ip: Ipv4Addr::LOCALHOST.into(),
            route: Some("r"),
            method: Some("GET"),
            status: 200,
            bytes: Some(2),
            duration: Some(Duration::from_micros(250)),
            denial: None,
        }
    }

    /// A sink that hands each chunk to the test, after waiting for the test's go-ahead when
    /// it has one (a stalled disk).
    struct Probe {
        chunks: mpsc::Sender<Vec<u8>>,
        gate: Option<mpsc::Receiver<()>>,
    }

    impl Write for Probe {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            if buf.is_empty() {
                return Ok(0);
            }
            if let Some(gate) = &self.gate {
                let _ = gate.recv();
            }
            let _ = self.chunks.send(buf.to_vec());
            Ok(buf.len())
        }

        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    fn ids(chunks: &[Vec<u8>]) -> Vec<String> {
        chunks
            .iter()
            .flat_map(|chunk| {
                String::from_utf8(chunk.clone())
                    .unwrap()
                    .lines()
                    .map(str::to_owned)
                    .collect::<Vec<_>>()
            })
            .map(|l| {
                let v: serde_json::Value = serde_json::from_str(&l).unwrap();
                v["request_id"].as_str().unwrap().to_owned()
            })
            .collect()
    }

    #[test]
    fn lines_are_written_within_the_flush_interval_without_a_shutdown() {
        let (tx, rx) = mpsc::channel();
        let probe = Probe {
            chunks: tx,
            gate: None,
        };
        let log = AccessLog::with_output(
            &settings(1 << 20, Duration::from_millis(50)),
            LogFormat::Json,
            Some(Box::new(probe)),
        )
        .unwrap();
        log.record(&line("one"));
        let chunk = rx
            .recv_timeout(Duration::from_secs(10))
            .expect("written without a stop");
        assert_eq!(ids(&[chunk]), ["one"]);
        log.shutdown();
    }

    #[test]
    fn a_shutdown_writes_every_pending_line_in_order_in_whole_line_chunks() {
        let (tx, rx) = mpsc::channel();
        let probe = Probe {
            chunks: tx,
            gate: None,
        };
        // A flush interval no test waits for: only the chunk threshold and the stop write.
        let log = AccessLog::with_output(
            &settings(8 << 20, Duration::from_hours(1)),
            LogFormat::Json,
            Some(Box::new(probe)),
        )
        .unwrap();
        let sent: Vec<String> = (0..5000).map(|i| format!("req-{i}")).collect();
        for id in &sent {
            log.record(&line(id));
        }
        log.shutdown();
        let chunks: Vec<Vec<u8>> = rx.try_iter().collect();
        assert!(chunks.len() > 1, "{} chunks", chunks.len());
        for chunk in &chunks {
            assert!(
                chunk.len() <= CHUNK && chunk.ends_with(b"\n"),
                "{}",
                chunk.len()
            );
        }
        assert_eq!(ids(&chunks), sent);
        // Stopped: nothing more is taken.
        log.record(&line("late"));
        assert!(rx.try_iter().next().is_none());
    }

    #[test]
    fn a_stalled_sink_costs_dropped_lines_counted_never_a_blocked_caller() {
        let dropped_before = super::super::metrics().logs.access_dropped.get();
        let (tx, rx) = mpsc::channel();
        let (go, gate) = mpsc::channel();
        let probe = Probe {
            chunks: tx,
            gate: Some(gate),
        };
        // Room for about 60 lines; the sink stalls on its first write.
        let log = AccessLog::with_output(
            &settings(10_000, Duration::from_millis(10)),
            LogFormat::Json,
            Some(Box::new(probe)),
        )
        .unwrap();
        let sent: Vec<String> = (0..2000).map(|i| format!("req-{i}")).collect();
        for id in &sent {
            // Returns at once although the sink is stuck: the test would hang otherwise.
            log.record(&line(id));
        }
        // Let the sink go and stop: every write proceeds.
        for _ in 0..sent.len() {
            let _ = go.send(());
        }
        log.shutdown();
        let written = ids(&rx.try_iter().collect::<Vec<_>>());
        let dropped = super::super::metrics().logs.access_dropped.get() - dropped_before;
        assert!(
            written.len() < 200,
            "{} lines fit a 10 kB buffer?",
            written.len()
        );
        assert!(!written.is_empty());
        // Other tests may drop lines into the same counter at the same time, never fewer.
        assert!(
            dropped >= (sent.len() - written.len()) as u64,
            "{dropped} counted, {} lost",
            sent.len() - written.len()
        );
        // What was written came in order, with no line cut.
        let positions: Vec<usize> = written
            .iter()
            .map(|id| sent.iter().position(|s| s == id).unwrap())
            .collect();
        assert!(positions.windows(2).all(|w| w[0] < w[1]), "{positions:?}");
    }

    #[test]
    fn a_file_sink_appends_and_reopens_after_a_rotation() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("access.log");
        std::fs::write(&path, "kept\n").unwrap();
        let log = AccessLog::start(
            &AccessLogConfig {
                sink: AccessLogSink::File(path.clone()),
                ..settings(1 << 20, Duration::from_millis(10))
            },
            LogFormat::Json,
        )
        .unwrap();
        log.record(&line("before"));
        log.shutdown();
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(
            text.starts_with("kept\n") && text.contains("\"before\""),
            "{text}"
        );

        let log = AccessLog::start(
            &AccessLogConfig {
                sink: AccessLogSink::File(path.clone()),
                ..settings(1 << 20, Duration::from_hours(1))
            },
            LogFormat::Json,
        )
        .unwrap();
        let rotated = dir.path().join("access.log.1");
        log.record(&line("pending"));
        std::fs::rename(&path, &rotated).unwrap();
        log.reopen();
        log.record(&line("after"));
        log.shutdown();
        // Recorded before the reopen, still pending then: the old file.
        let old = std::fs::read_to_string(&rotated).unwrap();
        assert!(
            old.contains("\"pending\"") && !old.contains("after"),
            "{old}"
        );
        let new = std::fs::read_to_string(&path).unwrap();
        assert!(
            new.contains("\"after\"") && !new.contains("pending"),
            "{new}"
        );

        let missing = AccessLog::start(
            &AccessLogConfig {
                sink: AccessLogSink::File(dir.path().join("no/such/dir/access.log")),
                ..settings(1 << 20, Duration::from_secs(1))
            },
            LogFormat::Json,
        )
        .unwrap_err();
        assert!(
            missing.to_string().contains("no/such/dir/access.log"),
            "{missing}"
        );
    }
}
