//! The example site `herald init` writes: the same files as the example in
//! herald's own repository, embedded in the binary.

use std::path::{Path, PathBuf};

/// Every file of the example site but the templates (those are
/// [`crate::templates::BUILTIN`] and [`crate::templates::OPTIONAL`], written
/// under `templates/`), by path
/// relative to the site folder.
pub const FILES: &[(&str, &[u8])] = &[
    ("herald.toml", include_bytes!("../herald.toml")),
    ("content/harbour-lights.md", include_bytes!("../content/harbour-lights.md")),
    ("content/ferry-timetable.md", include_bytes!("../content/ferry-timetable.md")),
    ("content/market-day.md", include_bytes!("../content/market-day.md")),
    ("content/readers-letters.md", include_bytes!("../content/readers-letters.md")),
    ("content/images/quay.svg", include_bytes!("../content/images/quay.svg")),
    ("subscribers/daily.csv", include_bytes!("../subscribers/daily.csv")),
];

/// The example's `site.base_url`, as `herald.toml` writes it.
pub const EXAMPLE_BASE_URL: &str = "https://news.example.com/";

#[derive(Debug, thiserror::Error)]
pub enum ScaffoldError {
    #[error("{} already exists{}; pass --force to overwrite", .0[0].display(), if .0.len() > 1 { format!(" (and {} more file(s))", .0.len() - 1) } else { String::new() })]
    Exists(Vec<PathBuf>),
    #[error("cannot write {}: {cause}", path.display())]
    Write { path: PathBuf, cause: std::io::Error },
}

/// Writes the example site into `dir`, with `base_url` as its address when
/// given. Refuses to overwrite any file unless `force`. Returns the files
/// written.
pub fn write_site(
    dir: &Path,
    force: bool,
    base_url: Option<&crate::types::BaseUrl>,
) -> Result<Vec<PathBuf>, ScaffoldError> {
    let config = base_url.map(|url| {
        let example = format!("base_url = \"{EXAMPLE_BASE_URL}\"");
        let text = String::from_utf8_lossy(include_bytes!("../herald.toml"));
        // The URL is a parsed BaseUrl: it holds no quote or backslash that
        // would need escaping in TOML.
        text.replacen(&example, &format!("base_url = \"{url}\""), 1).into_bytes()
    });
    let templates = crate::templates::BUILTIN
        .iter()
        .chain(crate::templates::OPTIONAL)
        .map(|(name, text)| (dir.join("templates").join(name), text.as_bytes()));
    let targets: Vec<(PathBuf, &[u8])> = FILES
        .iter()
        .map(|(rel, bytes)| match (*rel, &config) {
            ("herald.toml", Some(config)) => (dir.join(rel), config.as_slice()),
            _ => (dir.join(rel), *bytes),
        })
        .chain(templates)
        .collect();
    if !force {
        let existing: Vec<PathBuf> =
            targets.iter().filter(|(p, _)| p.exists()).map(|(p, _)| p.clone()).collect();
        if !existing.is_empty() {
            return Err(ScaffoldError::Exists(existing));
        }
    }
    for (path, bytes) in &targets {
        crate::fsutil::write_atomic(path, bytes, crate::fsutil::Durability::Synced)
            .map_err(|cause| ScaffoldError::Write { path: path.clone(), cause })?;
    }
    Ok(targets.into_iter().map(|(p, _)| p).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_example_config_has_the_base_url_init_replaces() {
        let dir = tempfile::tempdir().unwrap();
        let url = crate::types::BaseUrl::parse("https://gazette.example.org").unwrap();
        write_site(dir.path(), false, Some(&url)).unwrap();
        let config = std::fs::read_to_string(dir.path().join("herald.toml")).unwrap();
        assert!(config.contains("base_url = \"https://gazette.example.org/\""), "{config}");
        assert!(!config.contains(EXAMPLE_BASE_URL), "{config}");
    }
}
