//! `atom.xml`: the Atom 1.0 feed (RFC 4287), built with `atom_syndication`,
//! with every element the RFC requires set explicitly (the crate's defaults
//! are an empty id and an `updated` of 1970).

use std::collections::BTreeMap;

use atom_syndication::extension::{Extension, ExtensionMap};
use atom_syndication::{
    Category, Content, Entry, Feed, FixedDateTime, Generator, Link, Person, Text,
};
use chrono::{DateTime, Utc};

use super::feeds::{Doc, Related};
use super::text::{summary, whole_seconds, xml_safe};
use super::{PublishError, HISTORY_NAMESPACE};
use crate::article::StoredArticle;
use crate::config::Config;

/// The Atom document `doc`.
pub(super) fn render(config: &Config, doc: &Doc) -> Result<Vec<u8>, PublishError> {
    let site = &config.site;
    let base = site.base_url.as_str();
    // RFC 4287 §4.1.1: a feed needs an author unless every entry has one;
    // the publication itself is the author of last resort.
    let author =
        site.author.as_deref().map(str::trim).filter(|a| !a.is_empty()).unwrap_or(&site.title);
    let description = site.description.trim();
    let language = xml_safe(site.language.trim());
    let mut links = vec![
        link(base, "alternate", "text/html"),
        link(site.base_url.join(&doc.path).as_str(), "self", "application/atom+xml"),
    ];
    for related in doc.related(config) {
        links.push(match related {
            Related::Hub(href) => Link { href, rel: "hub".to_owned(), ..Link::default() },
            Related::Archive(rel, href) => link(&href, rel, "application/atom+xml"),
        });
    }
    let mut namespaces = BTreeMap::new();
    let mut extensions = ExtensionMap::new();
    if doc.history.archive {
        // RFC 5005 §4.2: an archive document says so with <fh:archive/>.
        namespaces.insert("fh".to_owned(), HISTORY_NAMESPACE.to_owned());
        let marker = Extension { name: "fh:archive".to_owned(), ..Extension::default() };
        extensions.insert("fh".to_owned(), BTreeMap::from([("archive".to_owned(), vec![marker])]));
    }

    let feed = Feed {
        title: Text::plain(xml_safe(&doc.title)),
        id: xml_safe(&doc.id),
        updated: date(doc.updated),
        authors: vec![person(author)],
        generator: Some(Generator {
            value: "herald".to_owned(),
            uri: None,
            version: Some(env!("CARGO_PKG_VERSION").to_owned()),
        }),
        links,
        subtitle: (!description.is_empty()).then(|| Text::plain(xml_safe(description))),
        entries: doc.articles.iter().map(entry).collect(),
        lang: (!language.is_empty()).then_some(language),
        namespaces,
        extensions,
        ..Feed::default()
    };
    // Not `to_string()`: it turns a write error into an empty feed.
    // Indented, so `herald check --feeds` and validators can name a line.
    let config =
        atom_syndication::WriteConfig { write_document_declaration: true, indent_size: Some(1) };
    let mut bytes = feed
        .write_with_config(Vec::new(), config)
        .map_err(|e| PublishError::Xml { file: doc.path.clone(), message: e.to_string() })?;
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
