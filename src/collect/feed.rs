//! `feed` sources: turns the bytes of an RSS (0.9x, 1.0, 2.0), Atom (0.3,
//! 1.0) or JSON Feed (1.0, 1.1) document into `Article`s. It owns the rules
//! that make an upstream entry a herald article: a stable guid, an absolute
//! upstream link, sanitised HTML, a date and a title that are never missing.
//! It never fetches anything and never reads the clock: the caller passes the
//! bytes and `now`.
//!
//! Parsing is done by feed-rs, which is lenient where the strict `rss` and
//! `atom_syndication` crates reject a whole feed for one bad `&`. Two of its
//! habits are worked around here: it sanitises nothing (its `sanitize`
//! feature is off; `sanitize_html` does that job), and it invents a random id
//! for an entry without id, link or title, so herald registers an id
//! generator that leaves the id empty and derives its own stable key.
//! DTDs are skipped by quick-xml under feed-rs: internal entities are never
//! expanded (no "billion laughs") and external ones never fetched; an
//! undeclared reference stays as its literal `&name;` text. quick-xml reads
//! a tag's attributes in linear time however many there are, and declines
//! a start tag declaring more than 256 namespaces (its bound on what one tag
//! can make it allocate); feed-rs hides that refusal behind "no feed root",
//! so herald reads the document again to name it (`TooManyNamespaces`).

use chrono::{DateTime, Utc};
use feed_rs::model::{Entry, Feed, FeedType, Link, Text};
use feed_rs::parser::{ParseErrorKind, ParseFeedError};
use sha2::{Digest, Sha256};
use url::Url;

use crate::article::{first_words, html_to_text, Article};
use crate::text::clean_line;
use crate::types::{BaseUrl, Slug};

use super::sanitize::sanitize_html;

/// What `parse_feed` needs besides the bytes.
#[derive(Debug, Clone, Copy)]
pub struct ParseOptions<'a> {
    /// The source's name from the config.
    pub source: &'a str,
    /// Where the bytes came from: the base for relative links when the
    /// document sets no `xml:base`.
    pub feed_url: &'a Url,
    /// Tags every article of this source gets.
    pub source_tags: &'a [String],
    /// The site's root: an entry without a usable link of its own links to
    /// its page on herald's site, `<base_url><source>/<slug>/`.
    pub base_url: &'a BaseUrl,
    /// The time the feed was read: the date of an entry that has none.
    pub now: DateTime<Utc>,
}

/// Why a document could not be read as a feed.
#[derive(Debug, thiserror::Error)]
pub enum FeedError {
    #[error("empty document")]
    Empty,
    #[error("not a feed: the document is HTML (<html>)")]
    Html,
    #[error("not a feed: the root element is <{0}>, not <rss version=\"0.91|0.92|2.0\">, <rdf:RDF> or <feed>")]
    UnknownRoot(String),
    #[error("not a feed: no root element found")]
    NoRoot,
    #[error("malformed XML at line {line}: {message}")]
    MalformedXml { line: usize, message: String },
    /// A start tag with more namespace declarations than quick-xml (under
    /// feed-rs) reads in one tag: a bound on the memory a hostile feed can
    /// make the reader allocate.
    #[error("refused: the start tag at line {line} declares more than {limit} XML namespaces, the most herald reads in one tag (no real feed comes close)")]
    TooManyNamespaces { line: usize, limit: usize },
    /// An `<rss>` root whose version feed-rs does not read; holds the
    /// version in backquotes, or "missing".
    #[error("not a feed: <rss> with version {0} (0.91, 0.92 and 2.0 are read)")]
    RssVersion(String),
    #[error("malformed JSON at line {line}, column {column}: {message}")]
    MalformedJson { line: usize, column: usize, message: String },
    #[error("unsupported JSON Feed version `{0}` (1.0 and 1.1 are supported)")]
    JsonVersion(String),
    #[error("the text does not match its declared encoding: {0}")]
    Encoding(String),
    #[error("cannot read the feed: {0}")]
    Other(String),
}

/// Parses a feed document into articles, in document order.
pub fn parse_feed(bytes: &[u8], opts: &ParseOptions) -> Result<Vec<Article>, FeedError> {
    let body = bytes.strip_prefix(b"\xEF\xBB\xBF".as_slice()).unwrap_or(bytes);
    if body.iter().all(|b| b.is_ascii_whitespace()) {
        return Err(FeedError::Empty);
    }
    if looks_like_html(body) {
        return Err(FeedError::Html);
    }
    let parser = feed_rs::parser::Builder::new()
        .base_uri(Some(opts.feed_url.as_str()))
        // An empty id marks "the document had none"; see `guid`.
        .id_generator(|_links, _title, _uri| String::new())
        .build();
    let upgraded = upgrade_atom03(body);
    let input = upgraded.as_deref().unwrap_or(body);
    let feed = parser.parse(input).map_err(|e| map_error(e, input))?;
    let feed_base = match feed.feed_type {
        FeedType::JSON => opts.feed_url.clone(),
        _ => root_xml_base(input)
            .and_then(|b| opts.feed_url.join(&b).ok())
            .unwrap_or_else(|| opts.feed_url.clone()),
    };
    Ok(feed.entries.iter().map(|entry| to_article(&feed, entry, &feed_base, opts)).collect())
}

fn to_article(feed: &Feed, entry: &Entry, feed_base: &Url, opts: &ParseOptions) -> Article {
    // The entry's own xml:base, resolved against the feed's.
    let base = entry.base.as_deref().and_then(|b| feed_base.join(b).ok());
    let base = base.as_ref().unwrap_or(feed_base);
    let html_plain = !matches!(feed.feed_type, FeedType::JSON | FeedType::Atom);

    // The entry's own link: an http(s) alternate link, else an RSS guid that
    // is a URL. Never the feed's own address or home page, which would give
    // every linkless entry the same URL (and fold them into one).
    let link = alternate_link(&entry.links, base).or_else(|| permalink_id(&entry.id));
    // Whatever the HTML parsers log while this entry is read (html5ever
    // warns through `log`) names the source and the entry. A WARN span, so
    // it is on whenever warnings are shown.
    let entry_name = match (entry.id.trim(), &link, entry.links.first()) {
        ("", Some(link), _) => link.as_str(),
        ("", None, Some(first)) => first.href.as_str(),
        ("", None, None) => "(an entry without id or link)",
        (id, _, _) => id,
    };
    let _span = tracing::warn_span!("entry", source = opts.source, entry = entry_name).entered();
    let raw_html = entry
        .content
        .as_ref()
        .and_then(|c| {
            let body = c.body.as_deref()?;
            let plain = c.content_type.ty() == "text" && c.content_type.subty() == "plain";
            Some(if plain && !html_plain { text_to_html(body) } else { body.to_owned() })
        })
        .or_else(|| entry.summary.as_ref().map(|s| text_as_html(s, html_plain)))
        .unwrap_or_default();
    let content_html = sanitize_html(&raw_html, base);

    let summary = entry
        .summary
        .as_ref()
        .map(|s| clean_line(&html_to_text(&text_as_html(s, html_plain))))
        .filter(|s| !s.is_empty());

    let raw_title = entry.title.as_ref().map(|t| clean_line(&title_text(t))).unwrap_or_default();
    let title = if !raw_title.is_empty() {
        raw_title.clone()
    } else {
        let from_text = clean_line(&first_words(&html_to_text(&content_html), 12));
        if from_text.is_empty() {
            "Untitled".to_owned()
        } else {
            from_text
        }
    };

    let raw_date = entry.published.or(entry.updated);
    let published = raw_date.unwrap_or(opts.now);
    // RSS 2 copies pubDate into `updated`; only a different time is an update.
    let updated = entry.updated.filter(|u| *u != published);

    let guid = if !entry.id.trim().is_empty() {
        entry.id.trim().to_owned()
    } else if let Some(link) = &link {
        link.to_string()
    } else {
        hash_key(&raw_title, raw_date, &raw_html)
    };
    // An entry without a link of its own gets a page on herald's site, named
    // by its guid, so it keeps its own identity in digests and feeds.
    let url = match link {
        Some(link) => link.to_string(),
        None => {
            opts.base_url.join(&format!("{}/{}/", opts.source, Slug::of_guid(&guid))).to_string()
        }
    };

    let author =
        entry.authors.iter().chain(feed.authors.iter()).map(person_name).find(|n| !n.is_empty());

    let mut tags: Vec<String> = Vec::new();
    let categories = entry.categories.iter().map(|c| c.label.as_deref().unwrap_or(c.term.as_str()));
    for tag in opts.source_tags.iter().map(String::as_str).chain(categories) {
        let tag = clean_line(tag);
        if !tag.is_empty() && !tags.iter().any(|t| t.eq_ignore_ascii_case(&tag)) {
            tags.push(tag);
        }
    }

    Article {
        source: opts.source.to_owned(),
        guid,
        url,
        title,
        author,
        published,
        updated,
        summary,
        content_html,
        tags,
    }
}

/// The stable key of an entry with neither id nor link: a SHA-256 of its
/// title and date. An entry without both is keyed by its content instead, so
/// two such entries in one feed do not collide.
fn hash_key(title: &str, date: Option<DateTime<Utc>>, html: &str) -> String {
    let mut h = Sha256::new();
    h.update(title.as_bytes());
    h.update([0u8]);
    h.update(date.map(|d| d.to_rfc3339()).unwrap_or_default().as_bytes());
    if title.is_empty() && date.is_none() {
        h.update([0u8]);
        h.update(html.as_bytes());
    }
    hex::encode(h.finalize())
}

/// The entry's alternate (or untyped) web link, absolute, http(s) only.
fn alternate_link(links: &[Link], base: &Url) -> Option<Url> {
    links
        .iter()
        .filter(|l| matches!(l.rel.as_deref(), None | Some("alternate")))
        .filter_map(|l| base.join(l.href.trim()).ok())
        .find(|u| matches!(u.scheme(), "http" | "https"))
}

/// A person's display name. feed-rs names an RSS `<author>` "author" and
/// keeps the element's text, `email (Name)` by the RSS spec, as the email.
fn person_name(p: &feed_rs::model::Person) -> String {
    let placeholder = matches!(p.name.as_str(), "author" | "managingEditor" | "webMaster");
    match (&p.email, placeholder) {
        (Some(email), true) => {
            let email = email.trim();
            let name = email
                .split_once('(')
                .and_then(|(_, rest)| rest.rsplit_once(')'))
                .map(|(name, _)| name)
                .filter(|name| !name.trim().is_empty())
                .unwrap_or(email);
            clean_line(name)
        }
        _ => clean_line(&p.name),
    }
}

/// An RSS guid that is an http(s) URL serves as the link when there is none.
fn permalink_id(id: &str) -> Option<Url> {
    Url::parse(id.trim()).ok().filter(|u| matches!(u.scheme(), "http" | "https"))
}

/// A feed-rs text as HTML. RSS descriptions are HTML in practice although
/// feed-rs types them text/plain; in Atom and JSON Feed, text is text.
fn text_as_html(text: &Text, html_plain: bool) -> String {
    let ct = &text.content_type;
    let is_html = ct.subty() == "html" || ct.subty() == "xhtml" || html_plain;
    if is_html {
        text.content.clone()
    } else {
        text_to_html(&text.content)
    }
}

/// A title as text. Only an Atom `type="html"`/`"xhtml"` title is markup;
/// an RSS title is text even when it contains `<`.
fn title_text(text: &Text) -> String {
    let sub = text.content_type.subty();
    if sub == "html" || sub == "xhtml" {
        html_to_text(&text.content)
    } else {
        text.content.clone()
    }
}

fn text_to_html(text: &str) -> String {
    let escaped = text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;");
    format!("<p>{escaped}</p>")
}

const ATOM03_NS: &[u8] = b"http://purl.org/atom/ns#";

/// feed-rs knows only the Atom 1.0 namespace and silently returns no entries
/// for Atom 0.3. Its elements are close enough: rename the namespace and the
/// three date elements (`issued`, `modified`; `created` is dropped by the
/// Atom 1.0 reader) and let the Atom 1.0 reader do the rest.
fn upgrade_atom03(body: &[u8]) -> Option<Vec<u8>> {
    find(body, ATOM03_NS)?;
    let mut out = body.to_vec();
    for (from, to) in [
        (ATOM03_NS, b"http://www.w3.org/2005/Atom".as_slice()),
        (b"<issued>", b"<published>"),
        (b"</issued>", b"</published>"),
        (b"<modified>", b"<updated>"),
        (b"</modified>", b"</updated>"),
    ] {
        out = replace_all(&out, from, to);
    }
    Some(out)
}

fn replace_all(hay: &[u8], from: &[u8], to: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(hay.len());
    let mut rest = hay;
    while let Some(i) = find(rest, from) {
        out.extend_from_slice(&rest[..i]);
        out.extend_from_slice(to);
        rest = &rest[i + from.len()..];
    }
    out.extend_from_slice(rest);
    out
}

/// True when the document's first element is `<html>` or it opens with an
/// HTML doctype.
fn looks_like_html(body: &[u8]) -> bool {
    let mut rest = body;
    loop {
        rest = trim_start(rest);
        let lower: Vec<u8> = rest.iter().take(14).map(u8::to_ascii_lowercase).collect();
        if lower.starts_with(b"<!doctype html") || lower.starts_with(b"<html") {
            return true;
        }
        let skip = if lower.starts_with(b"<?") {
            find(rest, b"?>").map(|i| i + 2)
        } else if lower.starts_with(b"<!--") {
            find(rest, b"-->").map(|i| i + 3)
        } else {
            None
        };
        match skip {
            Some(i) => rest = &rest[i..],
            None => return false,
        }
    }
}

fn trim_start(b: &[u8]) -> &[u8] {
    let n = b.iter().take_while(|c| c.is_ascii_whitespace()).count();
    &b[n..]
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

struct Root {
    name: String,
    xml_base: Option<String>,
    version: Option<String>,
}

/// The root element, read with quick-xml's namespace-aware reader, as
/// feed-rs reads it (so that a start tag feed-rs refuses for its namespace
/// declarations is refused here too, with its line); stops at the first
/// element.
fn root_element(body: &[u8]) -> Result<Option<Root>, FeedError> {
    use quick_xml::events::Event;
    let mut reader = quick_xml::NsReader::from_reader(body);
    let mut buf = Vec::new();
    loop {
        let start = reader.buffer_position();
        match reader.read_event_into(&mut buf) {
            Ok(Event::Start(e)) | Ok(Event::Empty(e)) => {
                let attr = |key: &[u8]| {
                    e.attributes()
                        .flatten()
                        .find(|a| a.key.as_ref() == key)
                        .map(|a| String::from_utf8_lossy(&a.value).into_owned())
                };
                return Ok(Some(Root {
                    name: String::from_utf8_lossy(e.name().as_ref()).into_owned(),
                    xml_base: attr(b"xml:base"),
                    version: attr(b"version"),
                }));
            }
            Ok(Event::Eof) => return Ok(None),
            Ok(_) => {}
            Err(e) => return Err(xml_error(body, &e, start, reader.error_position())),
        }
        buf.clear();
    }
}

fn root_xml_base(body: &[u8]) -> Option<String> {
    root_element(body).ok().flatten().and_then(|root| root.xml_base)
}

/// The first malformed place in an XML document, found by reading it to the
/// end with quick-xml's namespace-aware reader, as feed-rs does (feed-rs's
/// errors carry no position).
fn first_xml_error(body: &[u8]) -> Option<FeedError> {
    let mut reader = quick_xml::NsReader::from_reader(body);
    let mut buf = Vec::new();
    loop {
        let start = reader.buffer_position();
        match reader.read_event_into(&mut buf) {
            Ok(quick_xml::events::Event::Eof) => return None,
            Ok(_) => {}
            Err(e) => return Some(xml_error(body, &e, start, reader.error_position())),
        }
        buf.clear();
    }
}

/// A quick-xml error as a `FeedError` with its line. A syntax error has its
/// own position; a namespace error is found once the whole start tag is
/// read, so its line is the line where the tag begins (`event_start`, the
/// reader's position before the event).
fn xml_error(
    body: &[u8],
    e: &quick_xml::Error,
    event_start: u64,
    error_position: u64,
) -> FeedError {
    use quick_xml::name::NamespaceError;
    let tag_line = line_at(body, event_start as usize);
    match e {
        // quick-xml's own text tells a programmer which limit to raise; an
        // operator needs to know what the feed did.
        quick_xml::Error::Namespace(NamespaceError::TooManyDeclarations(limit)) => {
            FeedError::TooManyNamespaces { line: tag_line, limit: *limit }
        }
        quick_xml::Error::Namespace(_) => {
            FeedError::MalformedXml { line: tag_line, message: e.to_string() }
        }
        _ => FeedError::MalformedXml {
            line: line_at(body, error_position as usize),
            message: e.to_string(),
        },
    }
}

fn line_at(body: &[u8], pos: usize) -> usize {
    body[..pos.min(body.len())].iter().filter(|b| **b == b'\n').count() + 1
}

fn map_error(e: ParseFeedError, body: &[u8]) -> FeedError {
    match e {
        ParseFeedError::ParseError(ParseErrorKind::NoFeedRoot) => {
            if trim_start(body).starts_with(b"{") {
                return FeedError::Other(
                    "JSON that is not a JSON Feed (no `version` https://jsonfeed.org/version/1.x)"
                        .into(),
                );
            }
            match root_element(body) {
                Ok(Some(root)) if root.name.eq_ignore_ascii_case("html") => FeedError::Html,
                Ok(Some(root)) if root.name == "rss" => FeedError::RssVersion(
                    root.version.map_or("missing".into(), |v| format!("`{v}`")),
                ),
                Ok(Some(root)) => FeedError::UnknownRoot(root.name),
                Ok(None) => FeedError::NoRoot,
                Err(e) => e,
            }
        }
        ParseFeedError::ParseError(kind) => FeedError::Other(kind.to_string()),
        ParseFeedError::JsonSerde(e) => {
            let (line, column) = (e.line(), e.column());
            let text = e.to_string();
            let suffix = format!(" at line {line} column {column}");
            let message = text.strip_suffix(&suffix).unwrap_or(&text).to_owned();
            FeedError::MalformedJson { line, column, message }
        }
        ParseFeedError::JsonUnsupportedVersion(v) => FeedError::JsonVersion(v),
        ParseFeedError::IoError(e) => FeedError::Other(e.to_string()),
        ParseFeedError::XmlReader(e) => {
            let text = e.to_string();
            if let Some(rest) = text.strip_prefix("Encoding error: ") {
                return FeedError::Encoding(rest.to_owned());
            }
            first_xml_error(body).unwrap_or(FeedError::Other(text))
        }
    }
}

/// The form of `url` used to recognise one article reached by different
/// links: scheme and host lowercased, fragment dropped, tracking parameters
/// (`utm_*`, `fbclid`, `gclid`, `mc_cid`, `mc_eid`, `ref`) dropped, the
/// remaining parameters sorted, an empty query removed.
pub fn canonical_url(url: &Url) -> Url {
    // `Url` already lowercases the scheme and a special scheme's host.
    let mut out = url.clone();
    out.set_fragment(None);
    if let Some(host) = url.host_str() {
        let lower = host.to_ascii_lowercase();
        if lower != host {
            let _ = out.set_host(Some(&lower));
        }
    }
    let mut pairs: Vec<(String, String)> = url
        .query_pairs()
        .filter(|(k, _)| !is_tracking(k))
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    if pairs.is_empty() {
        out.set_query(None);
    } else {
        pairs.sort();
        out.query_pairs_mut().clear().extend_pairs(pairs);
    }
    out
}

/// What makes two stored articles the same story, for compose (a digest
/// mails it once) and publish (a feed holds it once, so every id in a feed
/// is unique): the canonical form of its URL.
pub fn story_key(url: &str) -> String {
    Url::parse(url).map(|u| canonical_url(&u).to_string()).unwrap_or_else(|_| url.to_owned())
}

fn is_tracking(key: &str) -> bool {
    let key = key.to_ascii_lowercase();
    key.starts_with("utm_")
        || matches!(key.as_str(), "fbclid" | "gclid" | "mc_cid" | "mc_eid" | "ref")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn canon(s: &str) -> String {
        canonical_url(&Url::parse(s).unwrap()).to_string()
    }

    #[test]
    fn canonical_lowercases_scheme_and_host_and_drops_fragment() {
        assert_eq!(canon("HTTPS://News.Example.COM/Path/A#top"), "https://news.example.com/Path/A");
    }

    #[test]
    fn canonical_drops_tracking_and_sorts_the_rest() {
        assert_eq!(
            canon("https://e.com/a?utm_source=x&b=2&fbclid=1&a=1&UTM_Medium=m&gclid=g&mc_cid=c&mc_eid=e&ref=hn"),
            "https://e.com/a?a=1&b=2"
        );
    }

    #[test]
    fn canonical_drops_an_empty_query() {
        assert_eq!(canon("https://e.com/a?"), "https://e.com/a");
        assert_eq!(canon("https://e.com/a?utm_campaign=z"), "https://e.com/a");
        assert_eq!(canon("https://e.com/a?q=x#f"), "https://e.com/a?q=x");
    }

    #[test]
    fn canonical_is_idempotent() {
        let once = canon("https://E.com/a?z=1&utm_x=2&a=%20b#x");
        assert_eq!(canon(&once), once);
    }

    #[test]
    fn html_sniffing() {
        assert!(looks_like_html(b"  <!DOCTYPE html><html>"));
        assert!(looks_like_html(b"<?xml version=\"1.0\"?>\n<!-- c --><HTML>"));
        assert!(!looks_like_html(b"<?xml version=\"1.0\"?><rss version=\"2.0\">"));
    }
}
