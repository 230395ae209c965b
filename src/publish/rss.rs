//! `feed.xml`: the RSS 2.0 feed, built with the `rss` crate, written to the
//! rules the W3C feed validator checks (RSS Advisory Board profile).

use std::collections::BTreeMap;

use ::rss::extension::atom::{AtomExtension, Link};
use ::rss::extension::dublincore::{self, DublinCoreExtension};
use ::rss::extension::{Extension, ExtensionMap};
use ::rss::{Category, Channel, Item};

use super::feeds::{Doc, Related};
use super::text::{rfc822, summary, text_to_html, xml_safe};
use super::{description, PublishError, GENERATOR, HISTORY_NAMESPACE};
use crate::article::StoredArticle;
use crate::config::Config;

const CONTENT_NAMESPACE: &str = "http://purl.org/rss/1.0/modules/content/";

/// The RSS document `doc`.
pub(super) fn render(config: &Config, doc: &Doc) -> Result<Vec<u8>, PublishError> {
    let site = &config.site;
    // Declared always, used or not, so the root element does not change
    // with the items (an empty feed has no content:encoded).
    let mut namespaces: BTreeMap<String, String> = [
        ("atom", ::rss::extension::atom::NAMESPACE),
        ("content", CONTENT_NAMESPACE),
        ("dc", dublincore::NAMESPACE),
    ]
    .into_iter()
    .map(|(prefix, uri)| (prefix.to_owned(), uri.to_owned()))
    .collect();
    let mut extensions = ExtensionMap::new();
    if doc.history.archive {
        // RFC 5005 §4.2: an archive document says so with <fh:archive/>.
        namespaces.insert("fh".to_owned(), HISTORY_NAMESPACE.to_owned());
        extensions.insert(
            "fh".to_owned(),
            BTreeMap::from([("archive".to_owned(), vec![archive_marker()])]),
        );
    }
    let language = xml_safe(site.language.trim());
    let mut links = vec![atom_link(site.base_url.join(&doc.path).as_str(), "self")];
    for related in doc.related(config) {
        links.push(match related {
            Related::Hub(href) => Link { href, rel: "hub".to_owned(), ..Link::default() },
            // RFC 5005 §4: the archive links are atom:link elements in RSS too.
            Related::Archive(rel, href) => atom_link(&href, rel),
        });
    }

    let channel = Channel {
        title: xml_safe(&doc.title),
        link: site.base_url.as_str().to_owned(),
        // Required by RSS 2.0 even when the site has no description.
        description: xml_safe(&description(config)),
        language: (!language.is_empty()).then_some(language),
        last_build_date: Some(rfc822(doc.updated)),
        generator: Some(GENERATOR.to_owned()),
        docs: Some("https://www.rssboard.org/rss-specification".to_owned()),
        // The validator recommends a self link so a copied feed can be
        // traced to its home.
        atom_ext: Some(AtomExtension { links }),
        items: doc.articles.iter().map(item).collect(),
        namespaces,
        extensions,
        ..Channel::default()
    };
    // Not `to_string()`: it turns a write error into an empty feed.
    // Indented, so `herald check --feeds` and validators can name a line.
    let mut bytes = channel
        .pretty_write_to(Vec::new(), b' ', 1)
        .map_err(|e| PublishError::Xml { file: doc.path.clone(), message: e.to_string() })?;
    bytes.push(b'\n');
    Ok(bytes)
}

fn atom_link(href: &str, rel: &str) -> Link {
    Link {
        href: href.to_owned(),
        rel: rel.to_owned(),
        mime_type: Some("application/rss+xml".to_owned()),
        ..Link::default()
    }
}

/// `<fh:archive/>` (written as an empty start and end tag pair).
fn archive_marker() -> Extension {
    Extension { name: "fh:archive".to_owned(), ..Extension::default() }
}

fn item(a: &StoredArticle) -> Item {
    let article = &a.article;
    let url = xml_safe(&article.url);
    let summary = summary(a);
    // RSS <author> must be an email address; a name goes in dc:creator.
    let dublin_core_ext =
        article.author.as_deref().map(str::trim).filter(|name| !name.is_empty()).map(|name| {
            DublinCoreExtension { creators: vec![xml_safe(name)], ..DublinCoreExtension::default() }
        });
    Item {
        title: Some(xml_safe(&article.title)),
        link: Some(url.clone()),
        // <description> holds HTML: the plain-text summary escaped once more.
        description: (!summary.is_empty()).then(|| text_to_html(&summary)),
        categories: article
            .tags
            .iter()
            .map(|tag| Category { name: xml_safe(tag), domain: None })
            .collect(),
        pub_date: Some(rfc822(article.published)),
        content: (!article.content_html.is_empty()).then(|| xml_safe(&article.content_html)),
        extensions: permalink_guid(url),
        dublin_core_ext,
        ..Item::default()
    }
}

/// `<guid isPermaLink="true">URL</guid>`. The crate's own `Guid` leaves the
/// attribute out when it is true (the RSS 2.0 default); written out it says
/// unambiguously to every reader that the guid is the article's address.
/// An element with no prefix is written as is, in the item.
fn permalink_guid(url: String) -> ExtensionMap {
    let guid = Extension {
        name: "guid".to_owned(),
        value: Some(url),
        attrs: BTreeMap::from([("isPermaLink".to_owned(), "true".to_owned())]),
        children: BTreeMap::new(),
    };
    BTreeMap::from([(String::new(), BTreeMap::from([("guid".to_owned(), vec![guid])]))])
}
