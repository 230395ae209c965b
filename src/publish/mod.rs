//! The publish stage: turns the stored articles into the public site under
//! `feeds.output_dir`: RSS 2.0 (`feed.xml`), Atom 1.0 (`atom.xml`) and JSON
//! Feed 1.1 (`feed.json`) of the newest articles with their RFC 5005
//! archives (`archive/feed-N.xml`, …), per-tag feeds (`tags/TAG/…`) when
//! `feeds.per_tag` is on, one HTML page per article, the `dir` sources'
//! assets, and the HTML archive of editions (`archive/index.html`,
//! `archive/LIST/DATE/index.html`), and the front page (`index.html`: the
//! newest articles, the feeds, the archive, the way to subscribe). With
//! `feeds.hub` set, every feed advertises that WebSub hub and the hub is
//! told which subscription feeds changed (websub.rs). Articles taken down (by collect or an operator)
//! leave every feed and edition page; their pages are removed and listed in
//! `.herald-gone`, for the server to answer 410 Gone.
//!
//! It only reads the store (save the WebSub pings still pending, kept in
//! its settings) and writes files. Every file is written through
//! `fsutil::write_if_changed` (temp file + rename, skipped when the bytes are
//! the same), and the same store always gives the same bytes: articles are
//! sorted by publication date then URL, and every date comes from the
//! articles, so ETags stay stable and a rerun writes nothing. It never writes
//! outside `feeds.output_dir`.

mod archive;
mod atom;
mod feeds;
mod front;
mod history;
mod json;
mod pages;
mod rss;
mod text;
mod websub;

use std::path::{Component, Path, PathBuf};

use chrono::{DateTime, Utc};
use tracing::{debug, info};

use crate::article::StoredArticle;
use crate::config::Config;
use crate::fsutil::Durability;
use crate::store::{Store, StoreError};
use crate::templates::Templates;

use feeds::Format;
pub use text::xml_safe;

/// The `generator` of every feed.
pub(crate) const GENERATOR: &str = concat!("herald ", env!("CARGO_PKG_VERSION"));

/// The feed files, relative to `feeds.output_dir` and to `site.base_url`.
pub const RSS_FILE: &str = "feed.xml";
pub const ATOM_FILE: &str = "atom.xml";
pub const JSON_FILE: &str = "feed.json";

/// What one run of the stage did.
#[derive(Debug, Default, Clone)]
pub struct PublishReport {
    /// Feed files written this time, e.g. `feed.xml`.
    pub feeds_written: Vec<String>,
    /// Feed files left alone because their bytes did not change.
    pub feeds_unchanged: usize,
    pub pages_written: usize,
    pub pages_unchanged: usize,
    /// Pages of retracted articles removed this time.
    pub pages_removed: usize,
    /// Paths listed in `.herald-gone`: pages of retracted articles.
    pub pages_gone: usize,
    /// Asset files copied this time (unchanged ones are not counted).
    pub assets_copied: usize,
    /// Articles in the subscription feeds.
    pub articles: usize,
    /// Pages of the edition archive (`archive/index.html` and one per
    /// edition) written this time, and left alone.
    pub editions_written: usize,
    pub editions_unchanged: usize,
    /// Whether `index.html`, the front page, changed.
    pub front_page_written: bool,
    /// Feeds announced to the WebSub hub this time (changed now or left
    /// pending by an earlier run that could not reach the hub).
    pub hub_pinged: usize,
    /// Why the hub could not be told; the feeds stay pending for the next
    /// publish. Never a reason for the publish to fail.
    pub hub_error: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    #[error("publish: cannot read the articles: {0}")]
    Store(StoreError),
    #[error("publish: cannot write {}: {cause}; check that feeds.output_dir is writable and the disk is not full", path.display())]
    Write { path: PathBuf, cause: std::io::Error },
    #[error("publish: cannot read the asset {}: {cause}", path.display())]
    Read { path: PathBuf, cause: std::io::Error },
    #[error("publish: cannot render the page {url} with the template {template}: {message}; fix the template (`herald check` lists template problems)")]
    Render { url: String, template: String, message: String },
    #[error("publish: cannot write {file} as XML: {message}")]
    Xml { file: String, message: String },
    #[error("publish: cannot write {file} as JSON: {cause}")]
    Json { file: String, cause: serde_json::Error },
    #[error("publish: cannot remove {}, the page of a retracted article: {cause}", path.display())]
    Remove { path: PathBuf, cause: std::io::Error },
    #[error("publish: refusing to write {what} outside {}: {reason}", output_dir.display())]
    OutsideOutput { what: String, output_dir: PathBuf, reason: String },
}

// Written by hand, not with `#[from]`: the message says the cause, so the
// error does not expose it as its source too (it would be printed twice).
impl From<StoreError> for PublishError {
    fn from(e: StoreError) -> Self {
        PublishError::Store(e)
    }
}

/// Publishes the site: article pages and assets first (so that no feed ever
/// links to a page not yet written), then the three feeds with the newest
/// `feeds.items` published articles, newest first, their archives and the
/// per-tag feeds, then the edition archive, then the pages of retracted
/// articles are listed in `.herald-gone` and removed (once nothing links
/// to them); last, with `feeds.hub` set, the hub is told which
/// subscription feeds changed.
///
/// `now` is used only as the `updated` time of a feed with no articles;
/// everything else is dated from the articles themselves.
#[tracing::instrument(name = "publish", skip_all, fields(output_dir = %config.feeds.output_dir.display()))]
pub async fn publish(
    config: &Config,
    store: &Store,
    templates: &Templates,
    now: DateTime<Utc>,
) -> Result<PublishReport, PublishError> {
    let report = publish_site(config, store, templates, now, true).await?;
    // The other nodes of the store publish theirs when this moves.
    store.bump_content_version().await?;
    Ok(report)
}

/// Publishes this node's copy of the site, as [`publish`] does on the node
/// that changed the store: the same files, byte for byte, but the hub is
/// not told again and an operator's unpublish waiting for a publish stays
/// due for that node.
pub async fn mirror(
    config: &Config,
    store: &Store,
    templates: &Templates,
    now: DateTime<Utc>,
) -> Result<PublishReport, PublishError> {
    publish_site(config, store, templates, now, false).await
}

async fn publish_site(
    config: &Config,
    store: &Store,
    templates: &Templates,
    now: DateTime<Utc>,
    lead: bool,
) -> Result<PublishReport, PublishError> {
    let mut report = PublishReport::default();
    // An operator's unpublish or republish waiting for a publish: this one
    // shows it, unless another comes in meanwhile (then it stays due).
    let due = if lead { store.publish_due().await? } else { None };
    let retracted = store.retracted_articles().await?;

    let pages = pages::write_pages(config, store, templates).await?;
    report.pages_written = pages.written;
    report.pages_unchanged = pages.unchanged;
    report.assets_copied = pages::copy_assets(config)?;
    debug!(
        pages_written = pages.written,
        pages_unchanged = pages.unchanged,
        assets_copied = report.assets_copied,
        "pages and assets done"
    );

    let live = pages.live;
    let changed = feeds::write_feeds(config, store, pages.keys, now, &mut report).await?;
    let retracted_ids = retracted.iter().map(|a| a.id).collect();
    let editions = archive::write_archive(config, store, templates, &retracted_ids).await?;
    report.editions_written = editions.written;
    report.editions_unchanged = editions.unchanged;
    report.front_page_written = front::write_front_page(config, store, templates).await?;
    // Last, once no feed or edition page links to them any more.
    (report.pages_removed, report.pages_gone) = pages::retire_pages(config, &retracted, &live)?;
    if let Some(hub) = config.feeds.hub.as_ref().filter(|_| lead) {
        // After every file is in place, so the hub fetches the new bytes.
        let changed: Vec<String> =
            changed.iter().map(|path| config.site.base_url.join(path).to_string()).collect();
        let announced = websub::announce(hub, store, &changed).await;
        report.hub_pinged = announced.pinged;
        report.hub_error = announced.error;
    }
    if let Some(due) = due {
        store.publish_done(&due).await?;
    }
    info!(
        articles = report.articles,
        feeds_written = ?report.feeds_written,
        feeds_unchanged = report.feeds_unchanged,
        pages_written = report.pages_written,
        pages_unchanged = report.pages_unchanged,
        pages_removed = report.pages_removed,
        assets_copied = report.assets_copied,
        editions_written = report.editions_written,
        editions_unchanged = report.editions_unchanged,
        hub_pinged = report.hub_pinged,
        "published"
    );
    Ok(report)
}

/// A feed's `updated` / `lastBuildDate`: when its newest item last changed,
/// so it moves only when the content does; `now` for an empty feed, since
/// Atom requires the element and there is nothing else to date it by.
fn feed_updated(articles: &[StoredArticle], now: DateTime<Utc>) -> DateTime<Utc> {
    text::whole_seconds(articles.iter().map(StoredArticle::last_changed).max().unwrap_or(now))
}

/// The namespace of RFC 5005's `<fh:archive/>`.
pub(crate) const HISTORY_NAMESPACE: &str = "http://purl.org/syndication/history/1.0";

/// The channel description RSS requires: the site's, or a sentence made from
/// its title.
fn description(config: &Config) -> String {
    let description = config.site.description.trim();
    if description.is_empty() {
        format!("Latest articles from {}", config.site.title)
    } else {
        description.to_owned()
    }
}

/// Writes `bytes` to `path` unless it already holds them; `true` if
/// written. Blocking: call it inside [`blocking`]. Feeds are synced to disk;
/// pages and assets only renamed into place (a power cut can lose them, and
/// the next publish rewrites them), which keeps 10,000 pages fast.
fn write_file(path: &Path, bytes: &[u8], durability: Durability) -> Result<bool, PublishError> {
    crate::fsutil::write_if_changed(path, bytes, durability)
        .map_err(|cause| PublishError::Write { path: path.to_owned(), cause })
}

/// Runs blocking file work without stalling the other tasks of the runtime:
/// on a multi-threaded runtime the worker first hands its queue to another
/// thread (`block_in_place`); a current-thread runtime has no other thread
/// to hand it to (and `block_in_place` would panic there), so the work runs
/// inline.
fn blocking<T>(f: impl FnOnce() -> T) -> T {
    use tokio::runtime::{Handle, RuntimeFlavor};
    match Handle::try_current().map(|h| h.runtime_flavor()) {
        Ok(RuntimeFlavor::MultiThread) => tokio::task::block_in_place(f),
        _ => f(),
    }
}

/// `root` joined with `relative`, or why that would leave `root`: only plain
/// names are allowed (no `..`, no root, no drive prefix, no `.`).
fn inside(root: &Path, relative: &Path, what: &str) -> Result<PathBuf, PublishError> {
    let refuse = |reason: &str| PublishError::OutsideOutput {
        what: what.to_owned(),
        output_dir: root.to_owned(),
        reason: reason.to_owned(),
    };
    if relative.as_os_str().is_empty() {
        return Err(refuse("the path is empty"));
    }
    if !relative.components().all(|c| matches!(c, Component::Normal(_))) {
        return Err(refuse(&format!("`{}` is not a plain relative path", relative.display())));
    }
    Ok(root.join(relative))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_stay_inside_the_output() {
        let root = Path::new("/srv/public");
        assert_eq!(
            inside(root, Path::new("blog/a/index.html"), "x").unwrap(),
            Path::new("/srv/public/blog/a/index.html")
        );
        for bad in ["", "../etc/passwd", "blog/../../x", "/etc/passwd", "./x"] {
            assert!(inside(root, Path::new(bad), "x").is_err(), "{bad}");
        }
    }

    #[test]
    fn feed_date_is_newest_change_or_now() {
        let now: DateTime<Utc> = "2030-01-01T00:00:00.5Z".parse().unwrap();
        assert_eq!(feed_updated(&[], now), text::whole_seconds(now));
    }
}
