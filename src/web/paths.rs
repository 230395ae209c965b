//! Request paths mapped onto `public/`: what a path may name (nothing
//! outside the folder, nothing hidden, none of the site's private files,
//! whatever `public/` holds), and the media type of each file.

use std::path::{Component, Path, PathBuf};

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
}
