//! Article pages and assets: one HTML page per published article whose URL
//! is a page of herald's own, at `{output_dir}/{source}/{slug}/index.html`
//! (its permalink), and a copy of every non-Markdown, non-hidden file of
//! each `dir` source at `{output_dir}/{source}/{relative path}`. The pages of
//! retracted articles are removed and listed in `.herald-gone`. Never
//! writes outside `output_dir`.

use std::collections::{BTreeSet, HashSet};
use std::path::{Path, PathBuf};

use tracing::{debug, warn};
use walkdir::WalkDir;

use super::feeds::FeedKey;
use super::{blocking, inside, write_file, PublishError};
use crate::article::{own_page, StoredArticle};
use crate::config::{Config, SourceKind};
use crate::fsutil::Durability;
use crate::store::ArticleEntry;
use crate::templates::{article_context, site_context, Templates};
use crate::text::error_chain;
use crate::types::Slug;

/// The template every article page is rendered from.
pub const ARTICLE_TEMPLATE: &str = "web/article.html";

/// Articles read from the store at a time: memory stays flat however many
/// articles there are.
const BATCH: usize = 200;

/// Files with these extensions are sources of articles, not assets.
const MARKDOWN_EXTENSIONS: &[&str] = &["md", "markdown"];

/// The file that lists the pages of articles taken down, at the root of
/// `output_dir`: one URL path a line (`/blog/market-day/`), sorted. Hidden,
/// so never served itself; `herald serve` answers 410 Gone for each path.
pub const GONE_FILE: &str = ".herald-gone";

#[derive(Debug, Default)]
pub(super) struct PageCounts {
    pub written: usize,
    pub unchanged: usize,
    /// Every published article's feed key, gathered on the same pass over
    /// the store.
    pub keys: Vec<FeedKey>,
    /// The URLs of the pages written (or left unchanged) this time.
    pub live: HashSet<String>,
}

/// Renders and writes the page of every article, streaming the store.
pub(super) async fn write_pages(
    config: &Config,
    store: &crate::Store,
    templates: &Templates,
) -> Result<PageCounts, PublishError> {
    let site = site_context(config);
    let mut counts = PageCounts::default();
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
                // Articles whose URL is a page of herald's own: every `dir`
                // article, and upstream entries without a link of their
                // own. The others live at their upstream URL.
                let own = batch.iter().filter_map(|a| {
                    a.article.own_page(&config.site.base_url).map(|slug| (a, slug))
                });
                for (a, slug) in own {
                    counts.live.insert(a.article.url.clone());
                    match write_page(config, templates, &site, a, &slug) {
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

/// Takes down the pages of retracted articles: lists them in
/// [`GONE_FILE`] first (so the server answers 410, not 404, once they are
/// gone), then removes each `index.html` and its folder if that is left
/// empty. A page another published article now lives at stays. Returns how
/// many pages were removed and how many paths are listed.
pub(super) fn retire_pages(
    config: &Config,
    retracted: &[ArticleEntry],
    live: &HashSet<String>,
) -> Result<(usize, usize), PublishError> {
    let output_dir = &config.feeds.output_dir;
    let mut gone: BTreeSet<String> = BTreeSet::new();
    let mut pages = Vec::new();
    for a in retracted.iter().filter(|a| !live.contains(&a.url)) {
        let Some(slug) = own_page(&a.source, &a.guid, &a.url, &config.site.base_url) else {
            continue; // It lives upstream: not herald's page to retire.
        };
        let Ok(url) = url::Url::parse(&a.url) else { continue };
        gone.insert(url.path().to_owned());
        pages.push(page_path(output_dir, &a.source, &slug)?);
    }
    let list: String = gone.iter().map(|path| format!("{path}\n")).collect();
    let file = inside(output_dir, Path::new(GONE_FILE), "the list of pages gone")?;
    blocking(|| write_file(&file, list.as_bytes(), Durability::Synced))?;
    let mut removed = 0;
    blocking(|| {
        for page in &pages {
            match std::fs::remove_file(page) {
                Ok(()) => {
                    debug!(path = %page.display(), "page of a retracted article removed");
                    removed += 1;
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(cause) => return Err(PublishError::Remove { path: page.clone(), cause }),
            }
            // Only an empty folder goes; its assets, or nested pages, stay.
            if let Some(folder) = page.parent() {
                let _ = std::fs::remove_dir(folder);
            }
        }
        Ok(())
    })?;
    Ok((removed, gone.len()))
}

fn write_page(
    config: &Config,
    templates: &Templates,
    site: &tera::Value,
    a: &StoredArticle,
    slug: &Slug,
) -> Result<bool, PublishError> {
    let path = page_path(&config.feeds.output_dir, &a.article.source, slug)?;
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

/// `{output_dir}/{source}/{slug}/index.html`. Source names are slugs when
/// they enter the store; they are checked again here because a path built
/// from stored text must never climb out of `output_dir`.
fn page_path(output_dir: &Path, source: &str, slug: &Slug) -> Result<PathBuf, PublishError> {
    let what = format!("the page of {source}/{slug}");
    let source = Slug::parse(source).map_err(|e| PublishError::OutsideOutput {
        what: what.clone(),
        output_dir: output_dir.to_owned(),
        reason: format!("source name: {e}"),
    })?;
    let mut relative = PathBuf::from(source.as_str());
    relative.extend(slug.as_str().split('/'));
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
            cause: e.into(),
        })?;
        if !entry.file_type().is_file() || is_markdown(entry.path()) {
            continue;
        }
        // Entries of a walk from `from` are under `from`.
        let Ok(relative) = entry.path().strip_prefix(from) else { continue };
        let destination = inside(to, relative, &format!("the asset {}", entry.path().display()))?;
        let bytes = std::fs::read(entry.path())
            .map_err(|cause| PublishError::Read { path: entry.path().to_owned(), cause })?;
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
        let slug = |guid: &str| Slug::of_guid(guid);
        assert_eq!(
            page_path(out, "blog", &slug("2026/hello")).unwrap(),
            Path::new("/srv/public/blog/2026/hello/index.html")
        );
        for source in ["..", "Blog", "a/b", ""] {
            assert!(page_path(out, source, &slug("x")).is_err(), "{source}");
        }
        // A guid that is not a slug gets a slug of its own, never a path out.
        for guid in ["../../etc", "/", "a//b", ".."] {
            let path = page_path(out, "blog", &slug(guid)).unwrap();
            assert!(
                path.starts_with("/srv/public/blog/") && !path.to_string_lossy().contains("..")
            );
        }
        let a = stored("blog", "2026/hello");
        let base = crate::types::BaseUrl::parse("https://example.com/").unwrap();
        assert_eq!(a.article.own_page(&base), Some(slug("2026/hello")));
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
