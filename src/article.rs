//! `Article`: the normalised unit every source produces and every output
//! (feeds, digests, article pages) consumes.

use chrono::{DateTime, Utc};
use serde::Serialize;
use sha2::{Digest, Sha256};

/// An article as a source produced it, before the store gave it an id.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Article {
    /// The source's name from the config.
    pub source: String,
    /// Stable within the source: the slug, or the file's path without `.md`.
    pub guid: String,
    /// The absolute permalink.
    pub url: String,
    pub title: String,
    pub author: Option<String>,
    pub published: DateTime<Utc>,
    pub updated: Option<DateTime<Utc>>,
    /// Plain text.
    pub summary: Option<String>,
    /// Sanitised HTML, safe to embed as is.
    pub content_html: String,
    pub tags: Vec<String>,
}

impl Article {
    /// A hash of everything a reader sees: an edit changes it.
    pub fn content_hash(&self) -> String {
        let mut h = Sha256::new();
        for part in [
            self.url.as_str(),
            self.title.as_str(),
            self.author.as_deref().unwrap_or(""),
            &self.published.to_rfc3339(),
            &self.updated.map(|u| u.to_rfc3339()).unwrap_or_default(),
            self.summary.as_deref().unwrap_or(""),
            self.content_html.as_str(),
            &self.tags.join("\u{1f}"),
        ] {
            h.update(part.as_bytes());
            h.update([0u8]);
        }
        hex::encode(h.finalize())
    }
}

/// An article as stored: with its id and the time herald first saw it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StoredArticle {
    pub id: i64,
    #[serde(flatten)]
    pub article: Article,
    pub content_hash: String,
    pub first_seen: DateTime<Utc>,
}

impl StoredArticle {
    /// When the article last changed, for feeds: `updated`, else `published`.
    pub fn last_changed(&self) -> DateTime<Utc> {
        self.article.updated.unwrap_or(self.article.published).max(self.article.published)
    }
}

/// The first `words` words of `text`, with an ellipsis when cut.
pub fn first_words(text: &str, words: usize) -> String {
    let mut parts = text.split_whitespace();
    let head: Vec<&str> = parts.by_ref().take(words).collect();
    let mut out = head.join(" ");
    if parts.next().is_some() {
        out.push('…');
    }
    out
}

/// Visible text of an HTML fragment: tags dropped (block-level ones leave a
/// space), common entities decoded, whitespace collapsed.
pub fn html_to_text(html: &str) -> String {
    const BLOCKS: &[&str] = &[
        "p",
        "br",
        "div",
        "li",
        "ul",
        "ol",
        "h1",
        "h2",
        "h3",
        "h4",
        "h5",
        "h6",
        "tr",
        "td",
        "th",
        "table",
        "blockquote",
        "pre",
        "hr",
        "img",
        "figure",
        "figcaption",
        "section",
        "article",
    ];
    let mut out = String::with_capacity(html.len());
    let mut rest = html;
    while let Some(start) = rest.find('<') {
        out.push_str(&rest[..start]);
        let Some(end) = rest[start..].find('>') else {
            rest = "";
            break;
        };
        let tag = &rest[start + 1..start + end];
        let name: String = tag
            .trim_start_matches('/')
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric())
            .collect::<String>()
            .to_ascii_lowercase();
        if BLOCKS.contains(&name.as_str()) {
            out.push(' ');
        }
        rest = &rest[start + end + 1..];
    }
    out.push_str(rest);
    let out = out
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&#39;", "'")
        .replace("&nbsp;", " ")
        .replace("&amp;", "&");
    out.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Article {
        Article {
            source: "blog".into(),
            guid: "hello".into(),
            url: "https://example.com/blog/hello/".into(),
            title: "Hello".into(),
            author: None,
            published: "2026-11-20T08:00:00Z".parse().unwrap(),
            updated: None,
            summary: None,
            content_html: "<p>Hi</p>".into(),
            tags: vec![],
        }
    }

    #[test]
    fn hash_changes_with_content_only() {
        let a = sample();
        let mut b = sample();
        assert_eq!(a.content_hash(), b.content_hash());
        b.content_html = "<p>Hi!</p>".into();
        assert_ne!(a.content_hash(), b.content_hash());
    }

    #[test]
    fn text_helpers() {
        assert_eq!(first_words("one two  three four", 3), "one two three…");
        assert_eq!(html_to_text("<p>A &amp; B</p><p>C</p>"), "A & B C");
        assert_eq!(html_to_text("<p>call <em>pão</em>.</p>"), "call pão.");
    }
}
