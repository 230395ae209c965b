//! The files of `public/` as the server hands them out: request paths
//! mapped safely onto the folder, content types, strong ETags from the
//! bytes, and gzip / brotli copies made once per version of a file.
//!
//! The cache is bounded by `web.cache_bytes` (files and their compressed
//! copies): past it, the files used least recently are dropped. A file over
//! a sixteenth of the budget is never kept: it is streamed from disk each
//! time, uncompressed (only its hash is kept, for the ETag). Reading,
//! hashing and compressing run on threads of the cache's own (one reader,
//! a compressor per two cores), never on the threads that answer requests,
//! so a crawler walking the archive does not hold up the feed; and each
//! file version is read once and each copy compressed once, however many
//! requests ask for it at the same moment (they wait for the one doing it).

use std::collections::HashMap;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::SystemTime;

use axum::http::HeaderValue;
use bytes::Bytes;
use sha2::{Digest, Sha256};
use tokio::sync::OnceCell;

use super::paths::content_type;

/// A representation of a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    Identity = 0,
    Gzip = 1,
    Brotli = 2,
}

impl Encoding {
    /// The Content-Encoding value.
    pub fn coding(self) -> Option<&'static str> {
        match self {
            Self::Identity => None,
            Self::Gzip => Some("gzip"),
            Self::Brotli => Some("br"),
        }
    }
}

/// A representation's bytes: in memory, or the file itself to stream.
#[derive(Debug)]
pub enum Content {
    Memory(Bytes),
    Disk(tokio::fs::File),
    /// The file changed since its entry was made: look it up again.
    Changed,
}

/// One version of one file: its bytes (unless it is too big to keep), the
/// compressed copies once asked for, and the header values every response
/// for it carries, made once.
#[derive(Debug)]
pub struct Entry {
    /// `None`: served from disk.
    body: Option<Bytes>,
    compressible: bool,
    gzip: OnceCell<Option<Bytes>>,
    brotli: OnceCell<Option<Bytes>>,
    /// The strong ETag of the identity body (quoted).
    pub etag: String,
    /// ETag header values: identity, gzip, brotli (each representation has its own).
    etags: [HeaderValue; 3],
    /// Modification time, whole seconds (what Last-Modified can say).
    pub modified: SystemTime,
    pub last_modified: HeaderValue,
    pub content_type: &'static str,
    pub content_type_value: HeaderValue,
    pub path: PathBuf,
    modified_exact: SystemTime,
    len: u64,
}

impl Entry {
    /// Whether the file is served compressed to clients that ask (text of
    /// some size, kept in memory).
    pub fn compressible(&self) -> bool {
        self.compressible
    }

    pub fn etag_value(&self, encoding: Encoding) -> &HeaderValue {
        &self.etags[encoding as usize]
    }

    /// The identity body's length.
    pub fn file_len(&self) -> u64 {
        self.len
    }

    /// What the entry holds in memory, in bytes, with a fixed allowance
    /// for the entry itself and its map slot.
    fn cost(&self) -> u64 {
        let copy =
            |c: &OnceCell<Option<Bytes>>| c.get().and_then(Option::as_ref).map_or(0, Bytes::len);
        let bytes =
            self.body.as_ref().map_or(0, Bytes::len) + copy(&self.gzip) + copy(&self.brotli);
        (bytes + ENTRY_OVERHEAD + 2 * self.path.as_os_str().len()) as u64
    }
}

/// Bytes an entry costs besides its file's bytes (header values, path,
/// map slot), counted so a cache of many tiny files stays bounded too.
const ENTRY_OVERHEAD: usize = 512;

/// Below this size compression does not pay.
const COMPRESS_FROM: usize = 512;

/// A cache slot: a file version, filled once.
#[derive(Debug)]
struct Slot {
    len: u64,
    modified: SystemTime,
    /// The cache's tick when last used (for eviction).
    used: AtomicU64,
    entry: OnceCell<Arc<Entry>>,
    /// What this slot counts for in `Slots::bytes`.
    cost: AtomicU64,
}

#[derive(Debug, Default)]
struct Slots {
    by_path: HashMap<PathBuf, Arc<Slot>>,
    /// The sum of the slots' costs.
    bytes: u64,
}

/// Files by path, re-read when their size or modification time changes,
/// so a file publish rewrote is served new at once.
#[derive(Debug)]
pub struct FileCache {
    budget: u64,
    /// Files larger than this are served from disk.
    largest: u64,
    slots: RwLock<Slots>,
    tick: AtomicU64,
    /// The cache's own threads for reading and compressing, rather than
    /// tokio's blocking pool: each thread that allocates gets a malloc
    /// arena of its own that keeps what it once held, and a crawl spread
    /// over the pool's threads cost 200 MiB more resident memory than the
    /// cache held. A few threads of its own keep that to a few arenas.
    readers: Workers,
    compressors: Workers,
    compressions: AtomicU64,
    /// The served folder: a file whose real path (links followed) is not
    /// inside it is not served, so a link in public/ cannot lead to the
    /// store. `None` in tests of the cache alone.
    root: Option<PathBuf>,
}

/// Threads of the cache's own, running jobs in the order they come.
#[derive(Debug)]
struct Workers {
    jobs: std::sync::mpsc::Sender<Job>,
}

type Job = Box<dyn FnOnce() + Send>;

impl Workers {
    fn start(name: &str, threads: usize) -> Self {
        let (jobs, queue) = std::sync::mpsc::channel::<Job>();
        let queue = Arc::new(std::sync::Mutex::new(queue));
        for i in 0..threads {
            let queue = Arc::clone(&queue);
            let spawned =
                std::thread::Builder::new().name(format!("{name}-{i}")).spawn(move || {
                    loop {
                        let job = queue.lock().unwrap_or_else(|e| e.into_inner()).recv();
                        // The queue is gone with the cache.
                        let Ok(job) = job else { return };
                        // A job that panics drops its answer; the thread goes on.
                        let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(job));
                    }
                });
            if let Err(e) = spawned {
                tracing::error!("cannot start a thread for the file cache: {e}");
            }
        }
        Self { jobs }
    }

    /// Runs `work` on one of the threads; `None` if it could not be done.
    async fn run<T: Send + 'static>(&self, work: impl FnOnce() -> T + Send + 'static) -> Option<T> {
        let (answer, answered) = tokio::sync::oneshot::channel();
        self.jobs
            .send(Box::new(move || {
                let _ = answer.send(work());
            }))
            .ok()?;
        answered.await.ok()
    }
}

impl FileCache {
    /// A cache holding at most `budget` bytes.
    pub fn new(budget: u64) -> Self {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        Self {
            budget,
            largest: budget / 16,
            slots: RwLock::default(),
            tick: AtomicU64::new(0),
            readers: Workers::start("herald-read", 1),
            compressors: Workers::start("herald-compress", (cores / 2).max(1)),
            compressions: AtomicU64::new(0),
            root: None,
        }
    }

    /// Serves only files whose real path is inside `root`.
    pub fn confined_to(mut self, root: &Path) -> Self {
        self.root = Some(root.to_owned());
        self
    }

    /// Bytes held: files, their compressed copies and the entries.
    pub fn cached_bytes(&self) -> u64 {
        self.slots.read().unwrap_or_else(|e| e.into_inner()).bytes
    }

    /// Compressed copies made so far.
    pub fn compressions(&self) -> u64 {
        self.compressions.load(Ordering::Relaxed)
    }

    /// The entry for `path` (a file under the served folder), or `None`
    /// when there is no such file.
    pub async fn get(&self, path: &Path) -> std::io::Result<Option<Arc<Entry>>> {
        // A stat on the request thread: cheap, and the answer for most
        // requests (the file is cached and unchanged).
        let meta = match std::fs::metadata(path) {
            Ok(m) if m.is_file() => m,
            Ok(_) => return Ok(None),
            Err(e) if means_no_such_file(&e) => return Ok(None),
            Err(e) => return Err(e),
        };
        let (len, modified) = (meta.len(), meta.modified().unwrap_or(SystemTime::UNIX_EPOCH));
        let slot = self.slot(path, len, modified);
        let loaded =
            slot.entry
                .get_or_try_init(|| async {
                    let (path, largest, root) = (path.to_owned(), self.largest, self.root.clone());
                    let load = move || {
                        if let Some(root) = &root {
                            inside(&path, root)?;
                        }
                        load(&path, largest)
                    };
                    let entry = self.readers.run(load).await.ok_or_else(|| {
                        std::io::Error::other("the file cache's reader stopped")
                    })??;
                    let entry = Arc::new(entry);
                    self.account(&slot, &entry);
                    Ok::<_, std::io::Error>(entry)
                })
                .await;
        match loaded {
            Ok(entry) => Ok(Some(Arc::clone(entry))),
            // Deleted between the stat and the read.
            Err(e) if means_no_such_file(&e) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// The slot for this version of `path`, made (and the old version's
    /// dropped) if there is none.
    fn slot(&self, path: &Path, len: u64, modified: SystemTime) -> Arc<Slot> {
        let now = self.tick.fetch_add(1, Ordering::Relaxed);
        let current = |slot: &Arc<Slot>| slot.len == len && slot.modified == modified;
        if let Some(slot) = self.slots.read().unwrap_or_else(|e| e.into_inner()).by_path.get(path) {
            if current(slot) {
                slot.used.store(now, Ordering::Relaxed);
                return Arc::clone(slot);
            }
        }
        let mut slots = self.slots.write().unwrap_or_else(|e| e.into_inner());
        if let Some(slot) = slots.by_path.get(path) {
            if current(slot) {
                slot.used.store(now, Ordering::Relaxed);
                return Arc::clone(slot);
            }
        }
        let slot = Arc::new(Slot {
            len,
            modified,
            used: AtomicU64::new(now),
            entry: OnceCell::new(),
            cost: AtomicU64::new(0),
        });
        if let Some(old) = slots.by_path.insert(path.to_owned(), Arc::clone(&slot)) {
            slots.bytes -= old.cost.load(Ordering::Relaxed);
        }
        slot
    }

    /// Counts what `entry` now holds against the budget, if its slot is
    /// still in the cache, and evicts what is over.
    fn account(&self, slot: &Arc<Slot>, entry: &Entry) {
        let mut slots = self.slots.write().unwrap_or_else(|e| e.into_inner());
        let cached = slots.by_path.get(&entry.path).is_some_and(|s| Arc::ptr_eq(s, slot));
        if !cached {
            return; // evicted or replaced meanwhile: in use, then freed
        }
        let cost = entry.cost();
        let before = slot.cost.swap(cost, Ordering::Relaxed);
        slots.bytes = slots.bytes - before + cost;
        if slots.bytes > self.budget {
            evict(&mut slots, self.budget);
        }
    }

    /// The bytes of `entry` in `encoding`: `None` when no such copy can be
    /// made. A compressed copy is made on first demand, once.
    pub async fn content(
        &self,
        entry: &Arc<Entry>,
        encoding: Encoding,
    ) -> std::io::Result<Option<Content>> {
        let Some(body) = &entry.body else {
            if encoding != Encoding::Identity {
                return Ok(None);
            }
            return open_unchanged(entry).await;
        };
        let copy = match encoding {
            Encoding::Identity => return Ok(Some(Content::Memory(body.clone()))),
            _ if !entry.compressible => return Ok(None),
            Encoding::Gzip => &entry.gzip,
            Encoding::Brotli => &entry.brotli,
        };
        let made = copy
            .get_or_init(|| async {
                let body = body.clone();
                let compressed = self
                    .compressors
                    .run(move || match encoding {
                        Encoding::Gzip => gzip(&body),
                        _ => brotli(&body),
                    })
                    .await
                    .flatten();
                self.compressions.fetch_add(1, Ordering::Relaxed);
                compressed
            })
            .await;
        if let Some(made) = made {
            // Counted once made (the slot's cost is recomputed whole, so
            // counting twice is harmless).
            if let Some(slot) = self.slot_of(entry) {
                self.account(&slot, entry);
            }
            return Ok(Some(Content::Memory(made.clone())));
        }
        Ok(None)
    }

    fn slot_of(&self, entry: &Arc<Entry>) -> Option<Arc<Slot>> {
        let slots = self.slots.read().unwrap_or_else(|e| e.into_inner());
        let slot = slots.by_path.get(&entry.path)?;
        let same = slot.entry.get().is_some_and(|e| Arc::ptr_eq(e, entry));
        let unaccounted = slot.cost.load(Ordering::Relaxed) != entry.cost();
        (same && unaccounted).then(|| Arc::clone(slot))
    }
}

/// Drops the slots used least recently until the cache holds at most
/// seven eighths of `budget` (so that eviction, a sort, runs now and then
/// rather than on every new file).
fn evict(slots: &mut Slots, budget: u64) {
    let target = budget - budget / 8;
    let mut by_age: Vec<(u64, PathBuf)> = slots
        .by_path
        .iter()
        .map(|(path, slot)| (slot.used.load(Ordering::Relaxed), path.clone()))
        .collect();
    by_age.sort_unstable();
    for (_, path) in by_age {
        if slots.bytes <= target {
            break;
        }
        if let Some(slot) = slots.by_path.remove(&path) {
            slots.bytes -= slot.cost.load(Ordering::Relaxed);
        }
    }
}

/// `NotFound` unless `path`, with every link on the way followed, is inside
/// `root`. Checked once per version of a file, when it is read.
fn inside(path: &Path, root: &Path) -> std::io::Result<()> {
    let (real, root) = (std::fs::canonicalize(path)?, std::fs::canonicalize(root)?);
    if real.starts_with(&root) {
        Ok(())
    } else {
        Err(std::io::Error::new(std::io::ErrorKind::NotFound, "a link out of the served folder"))
    }
}

/// Reads one version of a file (on the blocking pool): its bytes when it is
/// small enough to keep, else only its hash.
fn load(path: &Path, largest: u64) -> std::io::Result<Entry> {
    let mut file = std::fs::File::open(path)?;
    // The version read is the one this open file has, whatever the path
    // points to by now (publish renames new files into place).
    let meta = file.metadata()?;
    let (len, modified_exact) = (meta.len(), meta.modified().unwrap_or(SystemTime::UNIX_EPOCH));
    let mut hasher = Sha256::new();
    let body = if len <= largest {
        let mut body = Vec::with_capacity(usize::try_from(len).unwrap_or(0));
        file.read_to_end(&mut body)?;
        hasher.update(&body);
        Some(Bytes::from(body))
    } else {
        let mut piece = vec![0u8; 256 * 1024];
        loop {
            match file.read(&mut piece)? {
                0 => break,
                n => hasher.update(&piece[..n]),
            }
        }
        None
    };
    let len = body.as_ref().map_or(len, |b| b.len() as u64);
    let hash = hex::encode(&hasher.finalize()[..16]);
    let etag = format!("\"{hash}\"");
    let value =
        |text: String| HeaderValue::from_str(&text).unwrap_or(HeaderValue::from_static("\"\""));
    let secs =
        modified_exact.duration_since(SystemTime::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    let modified = SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(secs);
    let content_type = content_type(path);
    Ok(Entry {
        compressible: body.is_some() && len >= COMPRESS_FROM as u64 && is_text(path),
        body,
        gzip: OnceCell::new(),
        brotli: OnceCell::new(),
        len,
        etags: [
            value(etag.clone()),
            value(format!("\"{hash}-gzip\"")),
            value(format!("\"{hash}-br\"")),
        ],
        etag,
        modified,
        last_modified: value(httpdate::fmt_http_date(modified)),
        content_type,
        content_type_value: HeaderValue::from_static(content_type),
        path: path.to_owned(),
        modified_exact,
    })
}

/// Opens a file served from disk, if it is still the version `entry`
/// describes.
async fn open_unchanged(entry: &Entry) -> std::io::Result<Option<Content>> {
    let file = match tokio::fs::File::open(&entry.path).await {
        Ok(file) => file,
        Err(e) if means_no_such_file(&e) => return Ok(Some(Content::Changed)),
        Err(e) => return Err(e),
    };
    let meta = file.metadata().await?;
    let modified = meta.modified().unwrap_or(SystemTime::UNIX_EPOCH);
    if meta.len() != entry.len || modified != entry.modified_exact {
        return Ok(Some(Content::Changed));
    }
    Ok(Some(Content::Disk(file)))
}

/// A body that reads `file` in pieces, at most `len` bytes (what
/// Content-Length promised).
pub fn stream(file: tokio::fs::File, len: u64) -> axum::body::Body {
    use tokio::io::AsyncReadExt;
    let pieces = futures_util::stream::unfold(Some(file.take(len)), |file| async move {
        let mut file = file?;
        let mut piece = bytes::BytesMut::with_capacity(64 * 1024);
        match file.read_buf(&mut piece).await {
            Ok(0) => None,
            Ok(_) => Some((Ok(piece.freeze()), Some(file))),
            Err(e) => Some((Err(e), None)),
        }
    });
    axum::body::Body::from_stream(pieces)
}

/// Whether a failed stat only says there is no file at that path: missing,
/// a file where the path wants a folder (`/feed.xml/`), a name or path too
/// long, or a loop of links.
fn means_no_such_file(e: &std::io::Error) -> bool {
    use std::io::ErrorKind::*;
    const ELOOP: i32 = 40;
    matches!(e.kind(), NotFound | NotADirectory | IsADirectory | InvalidFilename)
        || e.raw_os_error() == Some(ELOOP)
}

fn gzip(body: &[u8]) -> Option<Bytes> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    encoder.write_all(body).ok()?;
    encoder.finish().ok().map(exact)
}

/// From this size on, brotli's quality 9 is worth its cost.
const BROTLI_9_FROM: usize = 64 * 1024;

fn brotli(body: &[u8]) -> Option<Bytes> {
    let mut out = Vec::new();
    // Quality 9 sets up a 32 MiB hash table for every file: 1.8 ms for a
    // 4 kB article page, against 0.08 ms at quality 6 for an output two
    // bytes longer (and each freed table stays in a thread's malloc arena).
    // On a 150 kB feed quality 9 is 10 % smaller than 6: worth it there.
    let quality = if body.len() >= BROTLI_9_FROM { 9 } else { 6 };
    let params = brotli::enc::BrotliEncoderParams { quality, ..Default::default() };
    brotli::BrotliCompress(&mut &body[..], &mut out, &params).ok()?;
    Some(exact(out))
}

/// Bytes without the spare capacity a growing Vec leaves (which `Bytes`
/// would keep, unseen by the budget).
fn exact(mut bytes: Vec<u8>) -> Bytes {
    bytes.shrink_to_fit();
    Bytes::from(bytes)
}

fn is_text(path: &Path) -> bool {
    matches!(
        path.extension().and_then(|e| e.to_str()),
        Some("xml" | "json" | "html" | "htm" | "css" | "js" | "txt" | "svg")
    )
}

#[cfg(test)]
mod tests;
