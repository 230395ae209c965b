//! Withdrawn articles. `publish` lists the URL path of every retracted
//! article in `.herald-gone` at the root of `feeds.output_dir` (hidden, so
//! never served itself): UTF-8, one path a line, each starting with `/`,
//! pages ending with `/`. A request for a listed page, its `index.html` or
//! the page without its slash is answered 410 Gone (RFC 9110 section
//! 15.5.11: gone on purpose, and for good), whether or not the page's file
//! is still there.
//!
//! The list is read again when a stat shows a new size or modification
//! time, as the file cache does, so a publish takes effect at once.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::SystemTime;

/// The file's name in `feeds.output_dir`.
pub const FILE: &str = ".herald-gone";

#[derive(Debug)]
pub struct Gone {
    file: PathBuf,
    loaded: RwLock<Loaded>,
}

#[derive(Debug, Default)]
struct Loaded {
    /// Size and modification time of the file read; `None`: no file.
    version: Option<(u64, SystemTime)>,
    /// Every request path (percent-decoded) that is gone.
    paths: Arc<HashSet<String>>,
}

impl Gone {
    pub fn new(root: &Path) -> Self {
        Self { file: root.join(FILE), loaded: RwLock::default() }
    }

    /// Whether `request_path` (as in the request line) was withdrawn.
    pub fn contains(&self, request_path: &str) -> bool {
        let Ok(path) = percent_encoding::percent_decode_str(request_path).decode_utf8() else {
            return false;
        };
        // Only article pages are listed, and a page's path ends in its slug
        // (no dot), `/` or `index.html`: a feed or an image is never gone,
        // and its request (the hot path of feed readers) costs no stat.
        let last = path.rsplit('/').next().unwrap_or("");
        if last.contains('.') && last != "index.html" {
            return false;
        }
        self.paths().contains(path.as_ref())
    }

    /// The current list, read again if the file changed.
    fn paths(&self) -> Arc<HashSet<String>> {
        let version = std::fs::metadata(&self.file)
            .ok()
            .filter(|m| m.is_file())
            .map(|m| (m.len(), m.modified().unwrap_or(SystemTime::UNIX_EPOCH)));
        {
            let loaded = self.loaded.read().unwrap_or_else(|e| e.into_inner());
            if loaded.version == version {
                return Arc::clone(&loaded.paths);
            }
        }
        let paths = match version {
            None => HashSet::new(),
            Some(_) => match std::fs::read_to_string(&self.file) {
                Ok(text) => parse(&text),
                Err(e) => {
                    // Serving on is better than failing every request; the
                    // next request tries again.
                    tracing::warn!("cannot read {}: {e}", self.file.display());
                    return Arc::clone(
                        &self.loaded.read().unwrap_or_else(|e| e.into_inner()).paths,
                    );
                }
            },
        };
        let paths = Arc::new(paths);
        *self.loaded.write().unwrap_or_else(|e| e.into_inner()) =
            Loaded { version, paths: Arc::clone(&paths) };
        paths
    }
}

/// Every request path the list's lines stand for: a page `/a/b/` is also
/// `/a/b/index.html` and `/a/b`.
fn parse(text: &str) -> HashSet<String> {
    let mut paths = HashSet::new();
    for line in text.lines().map(str::trim).filter(|l| l.starts_with('/')) {
        let Ok(path) = percent_encoding::percent_decode_str(line).decode_utf8() else {
            continue;
        };
        if let Some(page) = path.strip_suffix('/') {
            paths.insert(format!("{path}index.html"));
            if !page.is_empty() {
                paths.insert(page.to_owned());
            }
        }
        paths.insert(path.into_owned());
    }
    paths
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_page_is_gone_with_its_index_and_without_its_slash() {
        let paths = parse("/blog/market-day/\r\n\n/blog/caf%C3%A9/\nnot a path\n/logo.png\n/\n");
        for gone in [
            "/blog/market-day/",
            "/blog/market-day/index.html",
            "/blog/market-day",
            "/blog/café/",
            "/logo.png",
            "/",
            "/index.html",
        ] {
            assert!(paths.contains(gone), "{gone}");
        }
        assert!(!paths.contains("/blog/market-day/photo.jpg"));
        assert!(!paths.contains("/logo.png/"));
        assert!(!paths.contains(""), "the root without its slash is no path");
    }

    #[test]
    fn the_list_is_read_again_when_it_changes() {
        let dir = tempfile::tempdir().unwrap();
        let gone = Gone::new(dir.path());
        assert!(!gone.contains("/blog/a/"), "no file: nothing is gone");
        std::fs::write(dir.path().join(FILE), "/blog/a/\n").unwrap();
        assert!(gone.contains("/blog/a/"));
        assert!(gone.contains("/blog/%61/"), "compared percent-decoded");
        std::fs::write(dir.path().join(FILE), "/blog/bb/\n").unwrap();
        assert!(!gone.contains("/blog/a/"));
        assert!(gone.contains("/blog/bb"));
        std::fs::remove_file(dir.path().join(FILE)).unwrap();
        assert!(!gone.contains("/blog/bb/"));
    }
}
