//! `atom.xml`: the Atom 1.0 feed (RFC 4287), built with `atom_syndication`,
//! with every element the RFC requires set explicitly (the crate's defaults
//! are an empty id and an `updated` of 1970).

use atom_syndication::{
    Category, Content, Entry, Feed, FixedDateTime, Generator, Link, Person, Text,
};
use chrono::{DateTime, Utc};

use super::text::{summary, whole_seconds, xml_safe};
use super::{PublishError, ATOM_FILE};
use crate::article::StoredArticle;
use crate::config::Config;

/// The Atom document for `articles` (already in feed order).
pub(super) fn render(
    config: &Config,
    articles: &[StoredArticle],
    updated: DateTime<Utc>,
) -> Result<Vec<u8>, PublishError> {
    let site = &config.site;
    let base = site.base_url.as_str();
    // RFC 4287 §4.1.1: a feed needs an author unless every entry has one;
    // the publication itself is the author of last resort.
    let author =
        site.author.as_deref().map(str::trim).filter(|a| !a.is_empty()).unwrap_or(&site.title);
    let description = site.description.trim();
    let language = xml_safe(site.language.trim());

    let feed = Feed {
        title: Text::plain(xml_safe(&site.title)),
        id: base.to_owned(),
        updated: date(updated),
        authors: vec![person(author)],
        generator: Some(Generator {
            value: "herald".to_owned(),
            uri: None,
            version: Some(env!("CARGO_PKG_VERSION").to_owned()),
        }),
        links: vec![
            link(base, "alternate", "text/html"),
            link(site.base_url.join(ATOM_FILE).as_str(), "self", "application/atom+xml"),
        ],
        subtitle: (!description.is_empty()).then(|| Text::plain(xml_safe(description))),
        entries: articles.iter().map(entry).collect(),
        lang: (!language.is_empty()).then_some(language),
        ..Feed::default()
    };
    // Not `to_string()`: it turns a write error into an empty feed.
    let mut bytes = feed
        .write_to(Vec::new())
        .map_err(|e| PublishError::Xml { file: ATOM_FILE, message: e.to_string() })?;
    bytes.push(b'\n');
    Ok(bytes)
}

fn entry(a: &StoredArticle) -> Entry {
    let article = &a.article;
    let summary = summary(a);
    Entry {
        title: Text::plain(xml_safe(&article.title)),
        id: xml_safe(&article.url),
        updated: date(a.last_changed()),
        published: Some(date(article.published)),
        authors: article
            .author
            .as_deref()
            .map(str::trim)
            .filter(|name| !name.is_empty())
            .map(person)
            .into_iter()
            .collect(),
        links: vec![link(&article.url, "alternate", "text/html")],
        categories: article
            .tags
            .iter()
            .map(|tag| Category { term: xml_safe(tag), scheme: None, label: None })
            .collect(),
        summary: (!summary.is_empty()).then(|| Text::plain(summary)),
        content: Some(Content {
            value: Some(xml_safe(&article.content_html)),
            content_type: Some("html".to_owned()),
            ..Content::default()
        }),
        ..Entry::default()
    }
}

fn date(t: DateTime<Utc>) -> FixedDateTime {
    whole_seconds(t).fixed_offset()
}

fn person(name: &str) -> Person {
    Person { name: xml_safe(name), ..Person::default() }
}

fn link(href: &str, rel: &str, mime_type: &str) -> Link {
    Link {
        href: xml_safe(href),
        rel: rel.to_owned(),
        mime_type: Some(mime_type.to_owned()),
        ..Link::default()
    }
}
