//! Which feed documents exist and what each holds: the subscription feeds
//! (newest `feeds.items`), their RFC 5005 archives under `archive/`, and,
//! with `feeds.per_tag`, one set per tag under `tags/{slug}/`. The
//! formats themselves are rss.rs, atom.rs and json.rs.

use std::collections::BTreeMap;
use std::path::Path;

use chrono::{DateTime, Utc};
use tracing::debug;

use super::history::{self, History};
use super::{
    atom, blocking, feed_updated, inside, json, rss, write_file, PublishError, PublishReport,
    ATOM_FILE, JSON_FILE, RSS_FILE,
};
use crate::article::StoredArticle;
use crate::config::Config;
use crate::fsutil::Durability;
use crate::store::Store;
use crate::types::Slug;

/// The three feed formats herald writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Format {
    Rss,
    Atom,
    Json,
}

impl Format {
    pub(super) const ALL: [Format; 3] = [Format::Rss, Format::Atom, Format::Json];

    /// The subscription document's file name.
    pub(super) fn file(self) -> &'static str {
        match self {
            Format::Rss => RSS_FILE,
            Format::Atom => ATOM_FILE,
            Format::Json => JSON_FILE,
        }
    }

    fn render(self, config: &Config, doc: &Doc) -> Result<Vec<u8>, PublishError> {
        match self {
            Format::Rss => rss::render(config, doc),
            Format::Atom => atom::render(config, doc),
            Format::Json => json::render(config, doc),
        }
    }
}

/// One feed document to write.
pub(super) struct Doc<'a> {
    /// Where it goes, relative to `feeds.output_dir` and `site.base_url`.
    pub path: String,
    pub title: String,
    /// The Atom `<id>`: the site's URL for the site's feed and its archives
    /// (RFC 5005 §4: archives are parts of the same feed), the tag's folder
    /// for a tag's feed.
    pub id: String,
    /// Newest first.
    pub articles: &'a [StoredArticle],
    pub updated: DateTime<Utc>,
    pub history: History,
}

/// A link every format carries beside its own self link.
pub(super) enum Related {
    /// WebSub §4: the hub is discovered from a rel="hub" link beside the
    /// self link (the topic).
    Hub(String),
    /// RFC 5005 §4: where this document sits among the archives (rel, and
    /// the absolute URL of a document in the same format).
    Archive(&'static str, String),
}

impl Doc<'_> {
    /// The hub link (when `feeds.hub` is set), then the archive links.
    pub(super) fn related(&self, config: &Config) -> Vec<Related> {
        let mut links: Vec<Related> =
            config.feeds.hub.iter().map(|hub| Related::Hub(hub.to_string())).collect();
        let history = &self.history;
        for (rel, path) in [
            ("current", &history.current),
            ("prev-archive", &history.prev_archive),
            ("next-archive", &history.next_archive),
        ] {
            if let Some(path) = path {
                links.push(Related::Archive(rel, config.site.base_url.join(path).to_string()));
            }
        }
        links
    }
}

/// What the feeds need to know of an article before loading it whole.
#[derive(Debug, Clone)]
pub(super) struct FeedKey {
    pub id: i64,
    pub published: DateTime<Utc>,
    pub url: String,
    pub tags: Vec<String>,
}

impl FeedKey {
    pub(super) fn of(a: &StoredArticle) -> Self {
        FeedKey {
            id: a.id,
            published: a.article.published,
            url: a.article.url.clone(),
            tags: a.article.tags.clone(),
        }
    }
}

/// Newest first by publication date, ties broken by URL: the order of every
/// feed document, so the same store always gives the same bytes.
pub(super) fn sort_keys(keys: &mut [FeedKey]) {
    keys.sort_by(|a, b| b.published.cmp(&a.published).then_with(|| a.url.cmp(&b.url)));
}

/// Writes every feed document; `keys` holds every article, in any order.
/// Returns the paths of the subscription documents (the site's and the
/// tags' feeds, not the archive pages) written this time: the ones a
/// WebSub hub is told about.
pub(super) async fn write_feeds(
    config: &Config,
    store: &Store,
    mut keys: Vec<FeedKey>,
    now: DateTime<Utc>,
    report: &mut PublishReport,
) -> Result<Vec<String>, PublishError> {
    let mut changed = Vec::new();
    sort_keys(&mut keys);
    // The same story reached through two sources (the same URL once
    // tracking parameters are dropped) is one item, the newest copy, as in
    // a digest: a feed's ids (the URL) must be unique, or readers show one
    // story twice or drop one at random (`herald check --feeds` says so).
    let mut stories = std::collections::HashSet::new();
    keys.retain(|k| stories.insert(crate::collect::feed::story_key(&k.url)));
    let per_page = config.feeds.items;
    let site_id = config.site.base_url.as_str().to_owned();
    let title = config.site.title.clone();

    // The subscription documents.
    let newest = load(store, &keys[..keys.len().min(per_page)]).await?;
    report.articles = newest.len();
    let pages = history::archive_pages(keys.len(), per_page);
    for format in Format::ALL {
        let doc = Doc {
            path: format.file().to_owned(),
            title: title.clone(),
            id: site_id.clone(),
            articles: &newest,
            updated: feed_updated(&newest, now),
            history: history::subscription(format, pages),
        };
        if write_doc(config, format, &doc, report)? {
            changed.push(doc.path);
        }
    }
    drop(newest);

    // RFC 5005 §4 archives, one page of articles in memory at a time.
    for page in 1..=pages {
        let articles = load(store, &keys[history::page_range(keys.len(), per_page, page)]).await?;
        for format in Format::ALL {
            let doc = Doc {
                path: history::archive_path(format, page),
                title: title.clone(),
                id: site_id.clone(),
                articles: &articles,
                updated: feed_updated(&articles, now),
                history: history::archive(format, page, pages),
            };
            write_doc(config, format, &doc, report)?;
        }
    }

    if config.feeds.per_tag {
        for (slug, (name, ids)) in tags(&keys, per_page) {
            let articles = load_ids(store, &ids).await?;
            let folder = format!("tags/{slug}/");
            for format in Format::ALL {
                let doc = Doc {
                    path: format!("{folder}{}", format.file()),
                    title: format!("{title}: {name}"),
                    id: config.site.base_url.join(&folder).to_string(),
                    articles: &articles,
                    updated: feed_updated(&articles, now),
                    history: History::default(),
                };
                if write_doc(config, format, &doc, report)? {
                    changed.push(doc.path);
                }
            }
        }
    }
    Ok(changed)
}

/// Each tag's slug, with the tag as first met (in feed order) and the ids
/// of its newest `per_page` articles. Tags that give the same slug share a
/// feed; tags that give no slug (only punctuation, say) get none.
fn tags(keys: &[FeedKey], per_page: usize) -> BTreeMap<Slug, (String, Vec<i64>)> {
    let mut out: BTreeMap<Slug, (String, Vec<i64>)> = BTreeMap::new();
    for key in keys {
        for tag in &key.tags {
            let Some(slug) = Slug::slugify(tag) else { continue };
            let (_, ids) = out.entry(slug).or_insert_with(|| (tag.trim().to_owned(), Vec::new()));
            if ids.len() < per_page && ids.last() != Some(&key.id) {
                ids.push(key.id);
            }
        }
    }
    out
}

async fn load(store: &Store, keys: &[FeedKey]) -> Result<Vec<StoredArticle>, PublishError> {
    load_ids(store, &keys.iter().map(|k| k.id).collect::<Vec<_>>()).await
}

async fn load_ids(store: &Store, ids: &[i64]) -> Result<Vec<StoredArticle>, PublishError> {
    Ok(store.articles_by_ids(ids).await?)
}

/// Writes one document; `true` if its bytes changed.
fn write_doc(
    config: &Config,
    format: Format,
    doc: &Doc,
    report: &mut PublishReport,
) -> Result<bool, PublishError> {
    let bytes = format.render(config, doc)?;
    let path = inside(&config.feeds.output_dir, Path::new(&doc.path), "a feed")?;
    if blocking(|| write_file(&path, &bytes, Durability::Synced))? {
        debug!(path = %path.display(), bytes = bytes.len(), "feed written");
        report.feeds_written.push(doc.path.clone());
        Ok(true)
    } else {
        debug!(path = %path.display(), "feed unchanged");
        report.feeds_unchanged += 1;
        Ok(false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(id: i64, tags: &[&str]) -> FeedKey {
        FeedKey {
            id,
            published: DateTime::from_timestamp(id, 0).unwrap(),
            url: format!("https://example.com/{id}/"),
            tags: tags.iter().map(|t| (*t).to_owned()).collect(),
        }
    }

    #[test]
    fn tags_become_slugs_and_keep_the_newest() {
        let mut keys =
            vec![key(1, &["Rust", "a&b"]), key(2, &["rust", "!!!"]), key(3, &["a-b", "Rust"])];
        sort_keys(&mut keys);
        let tags = tags(&keys, 2);
        let names: Vec<(&str, &str, &[i64])> =
            tags.iter().map(|(s, (n, ids))| (s.as_str(), n.as_str(), ids.as_slice())).collect();
        assert_eq!(names, [("a-b", "a-b", &[3, 1][..]), ("rust", "Rust", &[3, 2][..])]);
    }
}
