//! The one rule that spans sections: everything in `feeds.output_dir` is
//! served to anyone, so that folder must neither hold nor lie inside the
//! store, the config file, the member lists, the outbox, the templates or the
//! DKIM key, however the paths are spelt.

use std::path::{Path, PathBuf};

use super::Config;

/// Why `config.feeds.output_dir` (written `shown` in the config) would expose
/// something private; `None` when it is a folder of its own. `file` is the
/// config file as it was named.
pub(super) fn problem(config: &Config, file: &Path, shown: &str) -> Option<String> {
    let mut private: Vec<(PathBuf, &str)> = Vec::new();
    if let Some(file) = sqlite_file(&config.store.url) {
        private.push((file, "the store (every subscriber, and the secret that signs links)"));
    }
    private.extend([
        (file.to_owned(), "the configuration file"),
        (config.root.join("subscribers"), "subscriber lists"),
        (config.mail.outbox_dir.clone(), "the outbox"),
        (config.site.templates_dir.clone(), "the templates"),
    ]);
    private.extend(config.lists.iter().map(|l| (l.subscribers.clone(), "subscriber lists")));
    private.extend(config.mail.dkim.iter().map(|d| (d.key_file.clone(), "the DKIM key")));
    exposes(shown, &config.feeds.output_dir, &private)
}

/// The file of a `sqlite://` store URL (already resolved), if it has one.
fn sqlite_file(url: &str) -> Option<PathBuf> {
    let rest = url.strip_prefix("sqlite://").or_else(|| url.strip_prefix("sqlite:"))?;
    let file = rest.split('?').next().unwrap_or(rest);
    (!file.is_empty() && file != ":memory:").then(|| PathBuf::from(file))
}

/// Why `output_dir` (written `shown` in the config) would expose one of the
/// `private` paths (it holds one, or lies inside one); `None` when it is a
/// folder of its own.
fn exposes(shown: &str, output_dir: &Path, private: &[(PathBuf, &str)]) -> Option<String> {
    let out = resolved(output_dir);
    private.iter().find_map(|(path, what)| {
        let private = resolved(path);
        let relation = if private.starts_with(&out) {
            "holds"
        } else if out.starts_with(&private) {
            "is inside"
        } else {
            return None;
        };
        Some(format!(
            "feeds.output_dir `{shown}` {relation} {what} ({}), and everything in it is served to anyone: give the feeds a folder of their own, like \"public\"",
            path.display()
        ))
    })
}

/// `path` with `.` and `..` folded and, as far as it exists, symbolic links
/// followed, so two spellings of one place compare equal.
fn resolved(path: &Path) -> PathBuf {
    use std::path::Component;
    let mut lexical = PathBuf::new();
    for part in path.components() {
        match part {
            Component::CurDir => {}
            Component::ParentDir => {
                lexical.pop();
            }
            other => lexical.push(other),
        }
    }
    let mut existing = lexical.as_path();
    let mut rest = Vec::new();
    loop {
        if let Ok(real) = std::fs::canonicalize(existing) {
            return rest.iter().rev().fold(real, |p, part| p.join(part));
        }
        match (existing.parent(), existing.file_name()) {
            (Some(parent), Some(name)) => {
                rest.push(name.to_owned());
                existing = parent;
            }
            _ => return lexical,
        }
    }
}
