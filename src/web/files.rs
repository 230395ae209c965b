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
use std::path::{Component, Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::SystemTime;

use axum::http::HeaderValue;
use bytes::Bytes;
use sha2::{Digest, Sha256};
use tokio::sync::OnceCell;

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

/// The media type of a published file. Feeds get their own types so feed
/// readers and browsers recognise them.
pub fn content_type(path: &Path) -> &'static str {
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
    match path.extension().and_then(|e| e.to_str()).unwrap_or("") {
        "xml" if name.starts_with("atom") => "application/atom+xml",
        "xml" if name.starts_with("feed") || name.starts_with("rss") => "application/rss+xml",
        "xml" => "application/xml",
        "json" if name.starts_with("feed") => "application/feed+json",
        "json" => "application/json",
        "html" | "htm" => "text/html; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "js" => "text/javascript; charset=utf-8",
        "txt" => "text/plain; charset=utf-8",
        "svg" => "image/svg+xml",
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        "gif" => "image/gif",
        "webp" => "image/webp",
        "ico" => "image/x-icon",
        _ => "application/octet-stream",
    }
}

/// Folders whose files are never served, whatever else is in `public/`:
/// the site's own templates, member lists and outbox, should `output_dir`
/// overlap the site.
const PRIVATE_FOLDERS: &[&str] = &["templates", "subscribers", "outbox"];
/// Extensions of files that are never served: the SQLite store, config,
/// member lists, outbox mails, keys, Tera templates and lock files.
const PRIVATE_EXTENSIONS: &[&str] =
    &["db", "sqlite", "sqlite3", "toml", "csv", "eml", "pem", "key", "tera", "lock", "lck"];
/// Endings of the store's journal files (`herald.db-wal`, ...).
const PRIVATE_SUFFIXES: &[&str] = &["-wal", "-shm", "-journal"];

// Names are compared without case: on a case-insensitive file system
// `HERALD.DB` is the store.

fn private_folder(name: &str) -> bool {
    PRIVATE_FOLDERS.iter().any(|f| f.eq_ignore_ascii_case(name))
}

fn private_file(name: &str) -> bool {
    let name = name.to_ascii_lowercase();
    let extension = name.rsplit_once('.').map(|(_, ext)| ext);
    extension.is_some_and(|ext| PRIVATE_EXTENSIONS.contains(&ext))
        || PRIVATE_SUFFIXES.iter().any(|suffix| name.ends_with(suffix))
}

/// The longest request path looked up, in bytes (percent-encoded).
const MAX_REQUEST_PATH: usize = 2048;
/// The longest file name on Linux file systems (NAME_MAX).
const MAX_NAME: usize = 255;

/// Maps a request path onto the served folder, or `None` when it would
/// leave it or names a file herald never serves (`PRIVATE_*`).
/// The path is percent-decoded once; any `..`, `.`, empty, hidden,
/// backslash or NUL segment is refused (no normalising: a request that
/// needs it is not one herald's own links make). A path ending in `/` is
/// its folder's index.html.
pub fn resolve(root: &Path, request_path: &str) -> Option<PathBuf> {
    // Nothing herald publishes has a longer path; a longer one is not
    // worth a system call.
    if request_path.len() > MAX_REQUEST_PATH {
        return None;
    }
    let decoded = percent_encoding::percent_decode_str(request_path).decode_utf8().ok()?;
    let rest = decoded.strip_prefix('/')?;
    let mut path = root.to_path_buf();
    let mut segments: Vec<&str> = rest.split('/').collect();
    let wants_index = rest.is_empty() || rest.ends_with('/');
    if wants_index {
        segments.pop();
    }
    for segment in segments {
        if segment.is_empty()
            || segment.len() > MAX_NAME
            || segment == "."
            || segment == ".."
            || segment.contains(['\\', '\0'])
            || segment.starts_with('.')
        {
            return None;
        }
        let component = Path::new(segment).components().next();
        if !matches!(component, Some(Component::Normal(_))) {
            return None;
        }
        path.push(segment);
    }
    let relative = path.strip_prefix(root).ok()?;
    let mut folders: Vec<&str> = relative.iter().filter_map(|s| s.to_str()).collect();
    let file = if wants_index { "index.html" } else { folders.pop()? };
    if folders.iter().any(|f| private_folder(f)) || private_file(file) {
        return None;
    }
    if wants_index {
        path.push("index.html");
    }
    Some(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_stay_inside_the_folder() {
        let root = Path::new("/srv/public");
        assert_eq!(resolve(root, "/feed.xml").unwrap(), Path::new("/srv/public/feed.xml"));
        assert_eq!(resolve(root, "/").unwrap(), Path::new("/srv/public/index.html"));
        assert_eq!(
            resolve(root, "/blog/hello/").unwrap(),
            Path::new("/srv/public/blog/hello/index.html")
        );
        assert_eq!(resolve(root, "/caf%C3%A9.html").unwrap(), Path::new("/srv/public/café.html"));
        for bad in [
            "/../etc/passwd",
            "/%2e%2e/etc/passwd",
            "/%2E%2E%2Fetc%2Fpasswd",
            "/blog/../../etc",
            "/..%5c..%5cetc",
            "/%00",
            "//etc/passwd",
            "/.herald.lock",
            "/a/./b",
            "relative",
            "/%c0%ae%c0%ae/etc",
        ] {
            assert_eq!(resolve(root, bad), None, "{bad} was accepted");
        }
    }

    #[test]
    fn the_store_config_members_mail_keys_and_templates_are_never_served() {
        let root = Path::new("/srv/public");
        for bad in [
            "/herald.db",
            "/HERALD.DB",
            "/herald.db-wal",
            "/herald.db-shm",
            "/herald.db-journal",
            "/news.sqlite",
            "/news.sqlite3",
            "/archive/copy.SQLite3",
            "/herald.toml",
            "/daily.csv",
            "/blog/members.CSV",
            "/mail.eml",
            "/dkim.pem",
            "/dkim.key",
            "/digest.html.tera",
            "/Cargo.lock",
            "/herald.lck",
            "/templates/web/base.html",
            "/templates/",
            "/blog/Templates/x.png",
            "/subscribers/readme.txt",
            "/outbox/",
            "/outbox/index.html",
            "/%6Futbox/0001.txt",
        ] {
            assert_eq!(resolve(root, bad), None, "{bad} would be served");
        }
        for good in [
            "/feed.xml",
            "/blog/images/quay.svg",
            "/blog/database-day/",
            "/blog/the-weekend-journal/",
            "/blog/outbox-stories.html",
            "/keys.html",
        ] {
            assert!(resolve(root, good).is_some(), "{good} is refused");
        }
    }

    #[test]
    fn feeds_have_their_own_types() {
        assert_eq!(content_type(Path::new("feed.xml")), "application/rss+xml");
        assert_eq!(content_type(Path::new("atom.xml")), "application/atom+xml");
        assert_eq!(content_type(Path::new("archive/atom-2.xml")), "application/atom+xml");
        assert_eq!(content_type(Path::new("feed.json")), "application/feed+json");
        assert_eq!(content_type(Path::new("index.html")), "text/html; charset=utf-8");
    }

    /// Runs `f` on a runtime like the server's (two workers).
    fn on_runtime<F: std::future::Future>(f: F) -> F::Output {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap()
            .block_on(f)
    }

    /// Text that compresses like a page does (words, not one repeated byte).
    fn page(seed: usize, len: usize) -> String {
        let words = ["harbour", "ferry", "quay", "market", "tide", "lamp", "council", "bakery"];
        let mut text = format!("<p>page {seed}</p>");
        let mut i = seed;
        while text.len() < len {
            i = i.wrapping_mul(31).wrapping_add(7);
            text.push_str(words[i % words.len()]);
            text.push(if i.is_multiple_of(11) { '\n' } else { ' ' });
        }
        text.truncate(len);
        text
    }

    async fn bytes_of(cache: &FileCache, entry: &Arc<Entry>, encoding: Encoding) -> Vec<u8> {
        match cache.content(entry, encoding).await.unwrap().expect("that encoding") {
            Content::Memory(bytes) => bytes.to_vec(),
            Content::Disk(mut file) => {
                use tokio::io::AsyncReadExt;
                let mut out = Vec::new();
                file.read_to_end(&mut out).await.unwrap();
                out
            }
            Content::Changed => panic!("the file did not change"),
        }
    }

    fn unbrotli(bytes: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        brotli::BrotliDecompress(&mut &bytes[..], &mut out).unwrap();
        out
    }

    #[test]
    fn a_changed_file_is_read_again() {
        on_runtime(async {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("feed.xml");
            let cache = FileCache::new(1 << 20);
            std::fs::write(&path, "<rss>one</rss>").unwrap();
            let first = cache.get(&path).await.unwrap().unwrap();
            assert_eq!(bytes_of(&cache, &first, Encoding::Identity).await, b"<rss>one</rss>");
            std::fs::write(&path, "<rss>two, longer</rss>").unwrap();
            let second = cache.get(&path).await.unwrap().unwrap();
            assert_eq!(
                bytes_of(&cache, &second, Encoding::Identity).await,
                b"<rss>two, longer</rss>"
            );
            assert_ne!(first.etag, second.etag);
            assert!(cache.get(&dir.path().join("missing")).await.unwrap().is_none());
            assert!(cache.get(dir.path()).await.unwrap().is_none(), "a folder is not a file");
        })
    }

    #[test]
    fn the_cache_stays_within_its_budget_and_evicts_the_least_used() {
        on_runtime(async {
            let dir = tempfile::tempdir().unwrap();
            let budget = 256 * 1024;
            let cache = FileCache::new(budget);
            let mut files = Vec::new();
            for i in 0..100 {
                let path = dir.path().join(format!("page-{i}.html"));
                std::fs::write(&path, page(i, 8 * 1024)).unwrap();
                files.push(path);
            }
            for (i, path) in files.iter().enumerate() {
                let entry = cache.get(path).await.unwrap().unwrap();
                let br = bytes_of(&cache, &entry, Encoding::Brotli).await;
                assert_eq!(unbrotli(&br), page(i, 8 * 1024).as_bytes());
                // The front page is read over and over: it stays.
                let front = cache.get(&files[0]).await.unwrap().unwrap();
                bytes_of(&cache, &front, Encoding::Brotli).await;
                assert!(cache.cached_bytes() <= budget, "{} > {budget}", cache.cached_bytes());
            }
            let before = cache.compressions();
            let front = cache.get(&files[0]).await.unwrap().unwrap();
            bytes_of(&cache, &front, Encoding::Brotli).await;
            assert_eq!(cache.compressions(), before, "the most used file was kept");
            // An evicted file is simply read again.
            let old = cache.get(&files[1]).await.unwrap().unwrap();
            assert_eq!(
                bytes_of(&cache, &old, Encoding::Identity).await,
                page(1, 8 * 1024).as_bytes()
            );
        })
    }

    #[test]
    fn a_file_too_big_for_the_cache_is_served_from_disk() {
        on_runtime(async {
            let dir = tempfile::tempdir().unwrap();
            let budget = 256 * 1024;
            let cache = FileCache::new(budget);
            let path = dir.path().join("podcast.xml");
            let text = page(3, 200 * 1024);
            std::fs::write(&path, &text).unwrap();
            let entry = cache.get(&path).await.unwrap().unwrap();
            assert!(
                matches!(
                    cache.content(&entry, Encoding::Identity).await,
                    Ok(Some(Content::Disk(_)))
                ),
                "a file over a sixteenth of the budget is not kept in memory"
            );
            assert_eq!(bytes_of(&cache, &entry, Encoding::Identity).await, text.as_bytes());
            assert!(cache.cached_bytes() < 4096, "{}", cache.cached_bytes());
            let again = cache.get(&path).await.unwrap().unwrap();
            assert_eq!(again.etag, entry.etag, "the same strong ETag from the same bytes");
        })
    }

    #[test]
    fn concurrent_first_requests_for_a_file_compress_it_once() {
        on_runtime(async {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("feed.xml");
            let text = page(5, 256 * 1024);
            std::fs::write(&path, &text).unwrap();
            let cache = Arc::new(FileCache::new(64 << 20));
            let readers: Vec<_> = (0..16)
                .map(|_| {
                    let (cache, path) = (Arc::clone(&cache), path.clone());
                    tokio::spawn(async move {
                        let entry = cache.get(&path).await.unwrap().unwrap();
                        bytes_of(&cache, &entry, Encoding::Brotli).await
                    })
                })
                .collect();
            for reader in readers {
                assert_eq!(unbrotli(&reader.await.unwrap()), text.as_bytes());
            }
            assert_eq!(cache.compressions(), 1, "one brotli copy, made once");
        })
    }

    #[test]
    fn compressing_leaves_the_request_thread_free() {
        // One worker thread: if compressing ran on it, nothing else could
        // run until the copy was made.
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        runtime.block_on(async {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("archive.html");
            std::fs::write(&path, page(9, 2 << 20)).unwrap();
            let cache = Arc::new(FileCache::new(256 << 20));
            let first = {
                let (cache, path) = (Arc::clone(&cache), path.clone());
                tokio::spawn(async move {
                    let entry = cache.get(&path).await.unwrap().unwrap();
                    bytes_of(&cache, &entry, Encoding::Brotli).await.len()
                })
            };
            let mut other_work = 0;
            while !first.is_finished() {
                tokio::task::yield_now().await;
                other_work += 1;
            }
            assert!(first.await.unwrap() > 0);
            assert!(other_work > 1, "the worker was blocked while the file was compressed");
        })
    }

    #[test]
    fn paths_that_cannot_name_a_file_are_missing_files() {
        on_runtime(async {
            let dir = tempfile::tempdir().unwrap();
            std::fs::write(dir.path().join("feed.xml"), "<rss/>").unwrap();
            let cache = FileCache::new(1 << 20);
            let under_a_file = dir.path().join("feed.xml").join("index.html");
            assert!(cache.get(&under_a_file).await.unwrap().is_none(), "not a directory");
            let long_name = dir.path().join("a".repeat(300));
            assert!(cache.get(&long_name).await.unwrap().is_none(), "a name too long");
            let long_path = dir.path().join(vec!["b".repeat(250); 20].join("/"));
            assert!(cache.get(&long_path).await.unwrap().is_none(), "a path too long");
        });
        let root = Path::new("/srv/public");
        assert_eq!(resolve(root, &format!("/{}", "c".repeat(256))), None);
        assert_eq!(resolve(root, &format!("/{}", vec!["d".repeat(200); 12].join("/"))), None);
    }
}
