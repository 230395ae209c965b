//! Article pages and assets: one HTML page per stored article at
//! `{output_dir}/{source}/{guid}/index.html` (the article's permalink), and a
//! copy of every non-Markdown, non-hidden file of each `dir` source at
//! `{output_dir}/{source}/{relative path}`. Never writes outside `output_dir`.

use std::path::{Path, PathBuf};

use tracing::{debug, warn};
use walkdir::WalkDir;

use super::feeds::FeedKey;
use super::{blocking, inside, write_file, PublishError};
use crate::article::StoredArticle;
use crate::config::{Config, SourceKind};
use crate::fsutil::Durability;
use crate::templates::{article_context, error_chain, site_context, Templates};
use crate::types::Slug;

/// The template every article page is rendered from.
pub const ARTICLE_TEMPLATE: &str = "web/article.html";

/// Articles read from the store at a time: memory stays flat however many
/// articles there are.
const BATCH: usize = 200;

/// Files with these extensions are sources of articles, not assets.
const MARKDOWN_EXTENSIONS: &[&str] = &["md", "markdown"];

#[derive(Debug, Default)]
pub(super) struct PageCounts {
    pub written: usize,
    pub unchanged: usize,
    /// Every article's feed key, gathered on the same pass over the store.
    pub keys: Vec<FeedKey>,
}

/// Renders and writes the page of every article, streaming the store.
pub(super) async fn write_pages(
    config: &Config,
    store: &crate::Store,
    templates: &Templates,
) -> Result<PageCounts, PublishError> {
    let site = site_context(config);
    let mut counts = PageCounts::default();
    // Only articles from `dir` sources get a page here: an upstream feed's
    // articles live at their own (upstream) URL.
    let local: std::collections::HashSet<&str> = config
        .sources
        .iter()
        .filter(|s| matches!(s.kind, SourceKind::Dir { .. }))
        .map(|s| s.name.as_str())
        .collect();
    let mut failed: Option<PublishError> = None;
    store
        .for_each_article(BATCH, |batch| {
            // After the first failure the rest is only read, not written:
            // the callback can only return a store error, so the page error
            // waits in `failed` and is returned below.
            if failed.is_some() {
                return Ok(());
            }
            counts.keys.extend(batch.iter().map(FeedKey::of));
            blocking(|| {
                for a in batch.iter().filter(|a| local.contains(a.article.source.as_str())) {
                    match write_page(config, templates, &site, a) {
                        Ok(true) => counts.written += 1,
                        Ok(false) => counts.unchanged += 1,
                        Err(e) => {
                            failed = Some(e);
                            return;
                        }
                    }
                }
            });
            Ok(())
        })
        .await?;
    match failed {
        Some(e) => Err(e),
        None => Ok(counts),
    }
}

fn write_page(
    config: &Config,
    templates: &Templates,
    site: &tera::Value,
    a: &StoredArticle,
) -> Result<bool, PublishError> {
    let path = page_path(&config.feeds.output_dir, a)?;
    let mut context = tera::Context::new();
    context.insert("site", site);
    context.insert("article", &article_context(a));
    let html =
        templates.tera.render(ARTICLE_TEMPLATE, &context).map_err(|e| PublishError::Render {
            url: a.article.url.clone(),
            template: ARTICLE_TEMPLATE.to_owned(),
            message: error_chain(&e),
        })?;
    let written = write_file(&path, html.as_bytes(), Durability::ProcessCrash)?;
    debug!(path = %path.display(), written, "article page");
    Ok(written)
}

/// `{output_dir}/{source}/{guid}/index.html`. Source names and guids are
/// slugs when they enter the store; they are checked again here because a
/// path built from stored text must never climb out of `output_dir`.
fn page_path(output_dir: &Path, a: &StoredArticle) -> Result<PathBuf, PublishError> {
    let what = format!("the page of {}", a.article.url);
    let refuse = |reason: String| PublishError::OutsideOutput {
        what: what.clone(),
        output_dir: output_dir.to_owned(),
        reason,
    };
    let source = Slug::parse(&a.article.source).map_err(|e| refuse(format!("source name: {e}")))?;
    let guid = Slug::parse_path(&a.article.guid).map_err(|e| refuse(format!("guid: {e}")))?;
    let mut relative = PathBuf::from(source.as_str());
    relative.extend(guid.as_str().split('/'));
    relative.push("index.html");
    inside(output_dir, &relative, &what)
}

/// Copies the assets of every `dir` source; returns how many files were
/// written (files already holding the same bytes are left alone).
pub(super) fn copy_assets(config: &Config) -> Result<usize, PublishError> {
    let output_dir = &config.feeds.output_dir;
    let mut copied = 0;
    for source in &config.sources {
        // Written as `if let` so that a future source kind without a folder
        // needs no change here.
        #[allow(irrefutable_let_patterns)]
        if let SourceKind::Dir { path } = &source.kind {
            let target =
                inside(output_dir, Path::new(source.name.as_str()), "the assets of a source")?;
            copied += blocking(|| copy_dir(path, &target, output_dir))?;
        }
    }
    Ok(copied)
}

/// Copies the assets under `from` to `to` (blocking: call it inside
/// [`blocking`]), skipping Markdown files, hidden
/// files and folders (`.git`, `.DS_Store`), symbolic links (they could point
/// anywhere), and `output_dir` itself should it lie inside `from`.
fn copy_dir(from: &Path, to: &Path, output_dir: &Path) -> Result<usize, PublishError> {
    if !from.is_dir() {
        warn!(folder = %from.display(), "the source folder does not exist; no assets to copy");
        return Ok(0);
    }
    let walk =
        WalkDir::new(from).follow_links(false).sort_by_file_name().into_iter().filter_entry(|e| {
            e.depth() == 0 || !(is_hidden(e.file_name()) || e.path().starts_with(output_dir))
        });
    let mut copied = 0;
    for entry in walk {
        let entry = entry.map_err(|e| PublishError::Read {
            path: e.path().unwrap_or(from).to_owned(),
            source: e.into(),
        })?;
        if !entry.file_type().is_file() || is_markdown(entry.path()) {
            continue;
        }
        // Entries of a walk from `from` are under `from`.
        let Ok(relative) = entry.path().strip_prefix(from) else { continue };
        let destination = inside(to, relative, &format!("the asset {}", entry.path().display()))?;
        let bytes = std::fs::read(entry.path())
            .map_err(|source| PublishError::Read { path: entry.path().to_owned(), source })?;
        if write_file(&destination, &bytes, Durability::ProcessCrash)? {
            debug!(from = %entry.path().display(), to = %destination.display(), "asset copied");
            copied += 1;
        }
    }
    Ok(copied)
}

fn is_hidden(name: &std::ffi::OsStr) -> bool {
    name.to_string_lossy().starts_with('.')
}

fn is_markdown(path: &Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| MARKDOWN_EXTENSIONS.iter().any(|m| e.eq_ignore_ascii_case(m)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stored(source: &str, guid: &str) -> StoredArticle {
        StoredArticle {
            id: 1,
            article: crate::Article {
                source: source.into(),
                guid: guid.into(),
                url: format!("https://example.com/{source}/{guid}/"),
                title: "T".into(),
                author: None,
                published: "2026-11-20T08:00:00Z".parse().unwrap(),
                updated: None,
                summary: None,
                content_html: String::new(),
                tags: vec![],
            },
            content_hash: String::new(),
            first_seen: "2026-11-20T08:00:00Z".parse().unwrap(),
        }
    }

    #[test]
    fn page_paths_follow_the_permalink_and_stay_inside() {
        let out = Path::new("/srv/public");
        assert_eq!(
            page_path(out, &stored("blog", "2026/hello")).unwrap(),
            Path::new("/srv/public/blog/2026/hello/index.html")
        );
        for (source, guid) in
            [("blog", "../../etc"), ("..", "x"), ("blog", "/"), ("Blog", "x"), ("blog", "a//b")]
        {
            assert!(page_path(out, &stored(source, guid)).is_err(), "{source} {guid}");
        }
    }

    #[test]
    fn markdown_and_hidden_files_are_not_assets() {
        assert!(is_markdown(Path::new("a/b.md")));
        assert!(is_markdown(Path::new("a/b.MarkDown")));
        assert!(!is_markdown(Path::new("a/b.svg")));
        assert!(is_hidden(std::ffi::OsStr::new(".git")));
        assert!(!is_hidden(std::ffi::OsStr::new("images")));
    }
}
