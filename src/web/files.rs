//! The files of `public/` as the server hands them out: request paths
//! mapped safely onto the folder, content types, strong ETags from the
//! bytes, and gzip / brotli copies made once per version of a file.

use std::collections::HashMap;
use std::io::Write;
use std::path::{Component, Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::SystemTime;

use axum::http::HeaderValue;
use bytes::Bytes;
use sha2::{Digest, Sha256};

/// One version of one file, with its compressed copies and the header
/// values every response for it carries, made once.
#[derive(Debug)]
pub struct Entry {
    pub body: Bytes,
    pub gzip: Option<Bytes>,
    pub brotli: Option<Bytes>,
    /// The strong ETag of the identity body (quoted).
    pub etag: String,
    /// ETag header values: identity, gzip, brotli (each representation has its own).
    pub etags: [HeaderValue; 3],
    /// Modification time, whole seconds (what Last-Modified can say).
    pub modified: SystemTime,
    pub last_modified: HeaderValue,
    pub content_type: &'static str,
    pub content_type_value: HeaderValue,
    modified_exact: SystemTime,
    len: u64,
}

/// Files by path, re-read when their size or modification time changes,
/// so a file publish rewrote is served new at once.
#[derive(Debug, Default)]
pub struct FileCache {
    entries: RwLock<HashMap<PathBuf, Arc<Entry>>>,
}

/// Below this size compression does not pay.
const COMPRESS_FROM: usize = 512;

impl FileCache {
    /// The entry for `path` (a file under the served folder), or `None`
    /// when there is no such file.
    pub fn get(&self, path: &Path) -> std::io::Result<Option<Arc<Entry>>> {
        let meta = match std::fs::metadata(path) {
            Ok(m) if m.is_file() => m,
            Ok(_) => return Ok(None),
            Err(e) if means_no_such_file(&e) => return Ok(None),
            Err(e) => return Err(e),
        };
        let modified_exact = meta.modified().unwrap_or(SystemTime::UNIX_EPOCH);
        if let Some(entry) = self.entries.read().unwrap_or_else(|e| e.into_inner()).get(path) {
            if entry.len == meta.len() && entry.modified_exact == modified_exact {
                return Ok(Some(Arc::clone(entry)));
            }
        }
        let body = std::fs::read(path)?;
        let hash = hex::encode(&Sha256::digest(&body)[..16]);
        let etag = format!("\"{hash}\"");
        let compressible = body.len() >= COMPRESS_FROM && is_text(path);
        let value =
            |text: String| HeaderValue::from_str(&text).unwrap_or(HeaderValue::from_static("\"\""));
        let secs =
            modified_exact.duration_since(SystemTime::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
        let modified = SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(secs);
        let content_type = content_type(path);
        let entry = Arc::new(Entry {
            gzip: compressible.then(|| gzip(&body)).flatten(),
            brotli: compressible.then(|| brotli(&body)).flatten(),
            len: body.len() as u64,
            body: Bytes::from(body),
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
            modified_exact,
        });
        self.entries
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(path.to_owned(), Arc::clone(&entry));
        Ok(Some(entry))
    }
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
    encoder.finish().ok().map(Bytes::from)
}

fn brotli(body: &[u8]) -> Option<Bytes> {
    let mut out = Vec::new();
    let params = brotli::enc::BrotliEncoderParams { quality: 9, ..Default::default() };
    brotli::BrotliCompress(&mut &body[..], &mut out, &params).ok()?;
    Some(Bytes::from(out))
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

    #[test]
    fn a_changed_file_is_read_again() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("feed.xml");
        let cache = FileCache::default();
        std::fs::write(&path, "<rss>one</rss>").unwrap();
        let first = cache.get(&path).unwrap().unwrap();
        assert_eq!(&first.body[..], b"<rss>one</rss>");
        std::fs::write(&path, "<rss>two, longer</rss>").unwrap();
        let second = cache.get(&path).unwrap().unwrap();
        assert_eq!(&second.body[..], b"<rss>two, longer</rss>");
        assert_ne!(first.etag, second.etag);
        assert!(cache.get(&dir.path().join("missing")).unwrap().is_none());
        assert!(cache.get(dir.path()).unwrap().is_none(), "a folder is not a file");
    }

    #[test]
    fn paths_that_cannot_name_a_file_are_missing_files() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("feed.xml"), "<rss/>").unwrap();
        let cache = FileCache::default();
        let under_a_file = dir.path().join("feed.xml").join("index.html");
        assert!(cache.get(&under_a_file).unwrap().is_none(), "not a directory");
        let long_name = dir.path().join("a".repeat(300));
        assert!(cache.get(&long_name).unwrap().is_none(), "a name too long");
        let long_path = dir.path().join(vec!["b".repeat(250); 20].join("/"));
        assert!(cache.get(&long_path).unwrap().is_none(), "a path too long");
        let root = Path::new("/srv/public");
        assert_eq!(resolve(root, &format!("/{}", "c".repeat(256))), None);
        assert_eq!(resolve(root, &format!("/{}", vec!["d".repeat(200); 12].join("/"))), None);
    }
}
