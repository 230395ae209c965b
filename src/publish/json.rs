//! `feed.json`: the JSON Feed 1.1 (https://jsonfeed.org/version/1.1),
//! serialised with serde, pretty-printed, without null or empty fields.

use serde::Serialize;

use super::feeds::Doc;
use super::text::{rfc3339, summary, xml_safe};
use super::PublishError;
use crate::article::StoredArticle;
use crate::config::Config;

const VERSION: &str = "https://jsonfeed.org/version/1.1";

#[derive(Debug, Serialize)]
struct JsonFeed {
    version: &'static str,
    title: String,
    home_page_url: String,
    feed_url: String,
    /// The next page of older items (JSON Feed 1.1 pagination): the newest
    /// archive page from the subscription document, the one before from an
    /// archive page.
    #[serde(skip_serializing_if = "Option::is_none")]
    next_url: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    description: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    language: Option<String>,
    authors: Vec<Author>,
    /// WebSub hubs for real-time notification (JSON Feed 1.1 `hubs`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    hubs: Vec<Hub>,
    items: Vec<JsonItem>,
}

#[derive(Debug, Serialize)]
struct Hub {
    #[serde(rename = "type")]
    kind: &'static str,
    url: String,
}

#[derive(Debug, Serialize)]
struct Author {
    name: String,
}

#[derive(Debug, Serialize)]
struct JsonItem {
    id: String,
    url: String,
    title: String,
    content_html: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    summary: Option<String>,
    date_published: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    date_modified: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    authors: Vec<Author>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    tags: Vec<String>,
}

/// The JSON Feed document `doc`.
pub(super) fn render(config: &Config, doc: &Doc) -> Result<Vec<u8>, PublishError> {
    let site = &config.site;
    let author =
        site.author.as_deref().map(str::trim).filter(|a| !a.is_empty()).unwrap_or(&site.title);
    let description = xml_safe(site.description.trim());
    let language = xml_safe(site.language.trim());
    let feed = JsonFeed {
        version: VERSION,
        title: xml_safe(&doc.title),
        home_page_url: site.base_url.as_str().to_owned(),
        feed_url: site.base_url.join(&doc.path).to_string(),
        next_url: doc.history.prev_archive.as_ref().map(|p| site.base_url.join(p).to_string()),
        description: (!description.is_empty()).then_some(description),
        language: (!language.is_empty()).then_some(language),
        authors: vec![Author { name: xml_safe(author) }],
        hubs: config
            .feeds
            .hub
            .iter()
            .map(|hub| Hub { kind: "WebSub", url: hub.to_string() })
            .collect(),
        items: doc.articles.iter().map(item).collect(),
    };
    let mut bytes = serde_json::to_vec_pretty(&feed)
        .map_err(|cause| PublishError::Json { file: doc.path.clone(), cause })?;
    bytes.push(b'\n');
    Ok(bytes)
}

fn item(a: &StoredArticle) -> JsonItem {
    let article = &a.article;
    let summary = summary(a);
    JsonItem {
        id: xml_safe(&article.url),
        url: xml_safe(&article.url),
        title: xml_safe(&article.title),
        content_html: xml_safe(&article.content_html),
        summary: (!summary.is_empty()).then_some(summary),
        date_published: rfc3339(article.published),
        // Only when the source or an edit dated a change.
        date_modified: article.updated.map(|_| rfc3339(a.last_changed())),
        authors: article
            .author
            .as_deref()
            .map(str::trim)
            .filter(|name| !name.is_empty())
            .map(|name| Author { name: xml_safe(name) })
            .into_iter()
            .collect(),
        tags: article.tags.iter().map(|tag| xml_safe(tag)).collect(),
    }
}
