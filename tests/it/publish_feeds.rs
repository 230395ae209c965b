//! The publish stage through the library API: a temporary site, a real
//! SQLite store, the three feeds read back with feed-rs and checked against
//! the W3C feed validator's rules, article pages and copied assets.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use chrono::{DateTime, Duration, Utc};
use herald::article::{Article, StoredArticle};
use herald::config::Config;
use herald::publish::{publish, PublishReport};
use herald::store::Store;
use herald::templates::Templates;
use quick_xml::events::Event;
use tempfile::TempDir;

const BASE: &str = "https://news.example.com/";

// ---------------------------------------------------------------------------
// A site in a temporary folder

struct Site {
    dir: TempDir,
    config: Config,
    store: Store,
    templates: Templates,
}

impl Site {
    async fn new(items: usize) -> Site {
        Site::with(items, "").await
    }

    /// A site whose herald.toml ends with `extra` (keys of `[feeds]`, then
    /// any further tables).
    async fn with(items: usize, extra: &str) -> Site {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("content")).unwrap();
        let toml = format!(
            r#"
[site]
title = "Example News"
base_url = "{BASE}"
language = "en"
author = "The Desk"
description = "News & notes"

[[sources]]
name = "blog"
kind = "dir"
path = "content"

[feeds]
output_dir = "public"
items = {items}
{extra}
"#
        );
        let config = herald::config::parse(&dir.path().join("herald.toml"), &toml, &[]).unwrap();
        assert!(config.feeds.output_dir.starts_with(dir.path()));
        let url = crate::support::fresh_store_url(dir.path());
        let store = Store::open(&url).await.unwrap();
        let templates = herald::templates::load(&dir.path().join("templates"));
        Site { dir, config, store, templates }
    }

    async fn add(&self, articles: &[Article]) {
        self.store.upsert_articles(articles, t("2026-12-01T00:00:00Z")).await.unwrap();
    }

    async fn publish(&self, now: DateTime<Utc>) -> PublishReport {
        publish(&self.config, &self.store, &self.templates, now).await.unwrap()
    }

    fn out(&self) -> PathBuf {
        self.config.feeds.output_dir.clone()
    }

    fn read(&self, name: &str) -> Vec<u8> {
        std::fs::read(self.out().join(name)).unwrap_or_else(|e| panic!("{name}: {e}"))
    }

    fn text(&self, name: &str) -> String {
        String::from_utf8(self.read(name)).unwrap()
    }

    async fn stored(&self) -> Vec<StoredArticle> {
        self.store.latest_articles(self.config.feeds.items).await.unwrap()
    }
}

fn t(s: &str) -> DateTime<Utc> {
    s.parse().unwrap()
}

fn article(guid: &str, title: &str, published: &str) -> Article {
    Article {
        source: "blog".into(),
        guid: guid.into(),
        url: format!("{BASE}blog/{guid}/"),
        title: title.into(),
        author: None,
        published: t(published),
        updated: None,
        summary: None,
        content_html: format!("<p>The text of {guid}.</p>"),
        tags: vec![],
    }
}

fn three_articles() -> Vec<Article> {
    let mut a = article("alpha", "Alpha", "2026-11-20T08:00:00Z");
    a.author = Some("Ada Lovelace".into());
    a.tags = vec!["science".into(), "history".into()];
    a.summary = Some("A summary with < and & in it.".into());
    a.updated = Some(t("2026-11-25T10:30:00Z"));
    // Same publication time as `alpha`: the URL breaks the tie.
    let b = article("beta", "Beta", "2026-11-20T08:00:00Z");
    let c = article("2026/gamma", "Gamma", "2026-11-22T09:15:00Z");
    vec![a, b, c]
}

/// Every file under `dir` with its bytes.
fn snapshot(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    walkdir::WalkDir::new(dir)
        .into_iter()
        .map(Result::unwrap)
        .filter(|e| e.file_type().is_file())
        .map(|e| (e.path().to_owned(), std::fs::read(e.path()).unwrap()))
        .collect()
}

// ---------------------------------------------------------------------------
// A small XML tree, read with quick-xml to the end (which is the
// well-formedness check), to assert the validator's rules on.

#[derive(Debug, Default)]
struct Node {
    name: String,
    attrs: BTreeMap<String, String>,
    text: String,
    children: Vec<Node>,
}

impl Node {
    fn child(&self, name: &str) -> Option<&Node> {
        self.children.iter().find(|c| c.name == name)
    }
    fn all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a Node> + 'a {
        self.children.iter().filter(move |c| c.name == name)
    }
    fn text_of(&self, name: &str) -> &str {
        self.child(name)
            .map(|c| c.text.as_str())
            .unwrap_or_else(|| panic!("<{}> has no <{name}>", self.name))
    }
    fn walk<'a>(&'a self, out: &mut Vec<&'a Node>) {
        out.push(self);
        for c in &self.children {
            c.walk(out);
        }
    }
}

fn parse_xml(bytes: &[u8]) -> Node {
    let text = std::str::from_utf8(bytes).expect("feeds are UTF-8");
    let mut reader = quick_xml::Reader::from_str(text);
    reader.config_mut().check_end_names = true;
    let mut stack = vec![Node::default()];
    loop {
        match reader
            .read_event()
            .unwrap_or_else(|e| panic!("not well-formed at {}: {e}", reader.buffer_position()))
        {
            Event::Start(e) => stack.push(node(&e)),
            Event::Empty(e) => {
                let n = node(&e);
                stack.last_mut().unwrap().children.push(n);
            }
            Event::End(_) => {
                let n = stack.pop().unwrap();
                stack.last_mut().expect("balanced").children.push(n);
            }
            Event::Text(e) => stack.last_mut().unwrap().text.push_str(&e.decode().unwrap()),
            // References come apart from the text around them.
            Event::GeneralRef(r) => {
                let name = r.decode().unwrap();
                let text = match r.resolve_char_ref().unwrap() {
                    Some(c) => c.to_string(),
                    None => quick_xml::escape::resolve_predefined_entity(&name)
                        .expect("entities resolve")
                        .to_owned(),
                };
                stack.last_mut().unwrap().text.push_str(&text)
            }
            Event::CData(e) => {
                stack.last_mut().unwrap().text.push_str(std::str::from_utf8(&e).unwrap())
            }
            Event::Eof => break,
            _ => {}
        }
    }
    assert_eq!(stack.len(), 1, "every element is closed");
    let mut document = stack.pop().unwrap();
    assert_eq!(document.children.len(), 1, "one root element");
    document.children.pop().unwrap()
}

fn node(e: &quick_xml::events::BytesStart) -> Node {
    let attrs = e
        .attributes()
        .map(|a| {
            let a = a.expect("well-formed attribute");
            (
                String::from_utf8(a.key.as_ref().to_vec()).unwrap(),
                a.normalized_value(quick_xml::XmlVersion::Implicit1_0).unwrap().into_owned(),
            )
        })
        .collect();
    Node { name: String::from_utf8(e.name().as_ref().to_vec()).unwrap(), attrs, ..Node::default() }
}

fn feed_rs(bytes: &[u8]) -> feed_rs::model::Feed {
    feed_rs::parser::parse(bytes).unwrap_or_else(|e| panic!("feed-rs cannot read the feed: {e}"))
}

fn whole(t: DateTime<Utc>) -> DateTime<Utc> {
    DateTime::from_timestamp(t.timestamp(), 0).unwrap()
}

// ---------------------------------------------------------------------------

#[tokio::test]
async fn every_feed_round_trips_through_feed_rs() {
    let site = Site::new(50).await;
    site.add(&three_articles()).await;
    let report = site.publish(t("2030-01-01T00:00:00Z")).await;
    assert_eq!(report.articles, 3);
    assert_eq!(report.feeds_written, ["feed.xml", "atom.xml", "feed.json"]);

    let stored = site.stored().await;
    let urls: Vec<&str> = stored.iter().map(|a| a.article.url.as_str()).collect();
    // Newest first, ties by URL.
    assert_eq!(
        urls,
        [
            "https://news.example.com/blog/2026/gamma/",
            "https://news.example.com/blog/alpha/",
            "https://news.example.com/blog/beta/",
        ]
    );

    for name in ["feed.xml", "atom.xml", "feed.json"] {
        let feed = feed_rs(&site.read(name));
        assert_eq!(feed.title.as_ref().unwrap().content, "Example News", "{name}");
        assert_eq!(feed.entries.len(), stored.len(), "{name}");
        for (entry, a) in feed.entries.iter().zip(&stored) {
            let a_url = a.article.url.as_str();
            assert_eq!(entry.id, a_url, "{name}");
            assert_eq!(entry.title.as_ref().unwrap().content, a.article.title, "{name}");
            assert_eq!(entry.links[0].href, a_url, "{name}");
            assert_eq!(entry.published, Some(a.article.published), "{name} {a_url}");
            let tags: Vec<&str> = entry.categories.iter().map(|c| c.term.as_str()).collect();
            assert_eq!(tags, a.article.tags, "{name} {a_url}");
            if let Some(author) = &a.article.author {
                assert_eq!(
                    entry.authors.first().map(|p| p.name.as_str()),
                    Some(author.as_str()),
                    "{name}"
                );
            }
            let body = entry.content.as_ref().and_then(|c| c.body.as_deref()).unwrap_or_default();
            assert_eq!(body, a.article.content_html, "{name} {a_url}");
        }
    }

    // Atom: updated per entry is the last change; the feed's is the newest.
    let atom = feed_rs(&site.read("atom.xml"));
    for (entry, a) in atom.entries.iter().zip(&stored) {
        assert_eq!(entry.updated, Some(a.last_changed()));
        assert_eq!(entry.summary.as_ref().map(|s| s.content.is_empty()), Some(false));
    }
    assert_eq!(atom.updated, Some(t("2026-11-25T10:30:00Z")));
    // JSON: date_modified only where there was a change.
    let json = feed_rs(&site.read("feed.json"));
    let alpha = json.entries.iter().find(|e| e.id.ends_with("/alpha/")).unwrap();
    assert_eq!(alpha.updated, Some(t("2026-11-25T10:30:00Z")));
    // RSS: the summary went in as HTML and comes back as the same text.
    let rss = feed_rs(&site.read("feed.xml"));
    let alpha = rss.entries.iter().find(|e| e.id.ends_with("/alpha/")).unwrap();
    assert_eq!(alpha.summary.as_ref().unwrap().content, "A summary with &lt; and &amp; in it.");
    let rss_text = site.text("feed.xml");
    assert!(rss_text.contains("<dc:creator>Ada Lovelace</dc:creator>"), "{rss_text}");
    assert!(rss_text.contains("<lastBuildDate>Wed, 25 Nov 2026 10:30:00 +0000</lastBuildDate>"));

    let json: serde_json::Value = serde_json::from_slice(&site.read("feed.json")).unwrap();
    assert_eq!(json["version"], "https://jsonfeed.org/version/1.1");
    assert_eq!(json["feed_url"], "https://news.example.com/feed.json");
    assert_eq!(json["home_page_url"], BASE);
    assert_eq!(json["authors"][0]["name"], "The Desk");
    assert_eq!(json["items"][1]["date_published"], "2026-11-20T08:00:00Z");
    assert_eq!(json["items"][1]["summary"], "A summary with < and & in it.");
    assert!(json["items"][0].get("authors").is_none(), "no null or empty fields");
    assert!(json["items"][0].get("date_modified").is_none(), "no null or empty fields");
}

#[tokio::test]
async fn hostile_text_stays_well_formed() {
    let site = Site::new(50).await;
    let long = "Долгий заголовок 長い見出し 🚀 ".repeat(80);
    let mut a = article("hostile", "", "2026-11-20T08:00:00Z");
    a.title = format!("Привет, 世界 😀 &amp; & <b>bold</b> ]]> \u{1}bell\u{B}tab {long}");
    a.title.truncate(a.title.char_indices().nth(2000).map_or(a.title.len(), |(i, _)| i));
    assert_eq!(a.title.chars().count(), 2000);
    a.content_html =
        "<p>Кириллица 中文 😀 &amp; &lt;tag&gt; &#38; ]]> after ]]]]> end\u{1}\u{B}\u{FFFE}</p>"
            .to_owned();
    a.author = Some("Фёдор <fyodor> & \u{1}Co".into());
    a.tags = vec!["日本語".into(), "a&b".into(), "x\u{B}y".into()];
    site.add(&[a.clone()]).await;
    site.publish(t("2030-01-01T00:00:00Z")).await;

    let clean = |s: &str| s.replace(['\u{1}', '\u{B}', '\u{FFFE}'], "");
    for name in ["feed.xml", "atom.xml", "feed.json"] {
        let text = site.text(name);
        for bad in ['\u{1}', '\u{B}', '\u{FFFE}'] {
            assert!(!text.contains(bad), "{name} holds {bad:?}");
        }
        assert!(
            !text.contains("\\u0001") && !text.contains("\\u000b"),
            "{name} holds an escaped control"
        );
        if name.ends_with(".xml") {
            parse_xml(text.as_bytes());
        }
        let feed = feed_rs(text.as_bytes());
        let entry = &feed.entries[0];
        assert_eq!(entry.title.as_ref().unwrap().content, clean(&a.title), "{name}");
        let body = entry.content.as_ref().and_then(|c| c.body.clone()).unwrap();
        assert_eq!(body, clean(&a.content_html), "{name}");
        assert_eq!(entry.authors[0].name, clean(a.author.as_deref().unwrap()), "{name}");
        let tags: Vec<String> = entry.categories.iter().map(|c| c.term.clone()).collect();
        assert_eq!(tags, ["日本語", "a&b", "xy"], "{name}");
    }

    // The page escapes the title and embeds the content as sanitised HTML.
    let page = site.text("blog/hostile/index.html");
    assert!(page.contains("&lt;b&gt;bold&lt;/b&gt;"), "{page}");
    assert!(page.contains("Кириллица 中文 😀"));
}

#[tokio::test]
async fn rss_follows_the_validators_rules() {
    let site = Site::new(50).await;
    site.add(&three_articles()).await;
    site.publish(t("2030-01-01T00:00:00Z")).await;
    let rss = parse_xml(&site.read("feed.xml"));

    assert_eq!(rss.name, "rss");
    assert_eq!(rss.attrs["version"], "2.0");
    assert_eq!(rss.attrs["xmlns:atom"], "http://www.w3.org/2005/Atom");
    assert_eq!(rss.attrs["xmlns:content"], "http://purl.org/rss/1.0/modules/content/");
    assert_eq!(rss.attrs["xmlns:dc"], "http://purl.org/dc/elements/1.1/");
    let channel = rss.child("channel").unwrap();
    assert_eq!(channel.text_of("title"), "Example News");
    assert_eq!(channel.text_of("link"), BASE);
    assert_eq!(channel.text_of("description"), "News & notes");
    assert_eq!(channel.text_of("language"), "en");
    assert!(channel.text_of("generator").starts_with("herald "));
    DateTime::parse_from_rfc2822(channel.text_of("lastBuildDate")).unwrap();
    let selfs: Vec<&Node> = channel.all("atom:link").filter(|l| l.attrs["rel"] == "self").collect();
    assert_eq!(selfs.len(), 1);
    assert_eq!(selfs[0].attrs["href"], format!("{BASE}feed.xml"));
    assert_eq!(selfs[0].attrs["type"], "application/rss+xml");

    let items: Vec<&Node> = channel.all("item").collect();
    assert_eq!(items.len(), 3);
    for item in items {
        let link = item.text_of("link");
        assert!(link.starts_with(BASE), "{link}");
        let guids: Vec<&Node> = item.all("guid").collect();
        assert_eq!(guids.len(), 1, "one guid per item");
        assert_eq!(guids[0].attrs.get("isPermaLink").map(String::as_str), Some("true"));
        assert_eq!(guids[0].text, link);
        DateTime::parse_from_rfc2822(item.text_of("pubDate"))
            .unwrap_or_else(|e| panic!("pubDate {}: {e}", item.text_of("pubDate")));
        assert!(!item.text_of("title").is_empty());
    }
    let mut all = Vec::new();
    rss.walk(&mut all);
    for n in all
        .iter()
        .filter(|n| n.name == "author" || n.name == "managingEditor" || n.name == "webMaster")
    {
        assert!(n.text.contains('@'), "<{}> must be an email address: {}", n.name, n.text);
    }
}

#[tokio::test]
async fn atom_follows_the_validators_rules() {
    let site = Site::new(50).await;
    site.add(&three_articles()).await;
    site.publish(t("2030-01-01T00:00:00Z")).await;
    let feed = parse_xml(&site.read("atom.xml"));

    assert_eq!(feed.name, "feed");
    assert_eq!(feed.attrs["xmlns"], "http://www.w3.org/2005/Atom");
    assert_eq!(feed.text_of("id"), BASE);
    assert_eq!(feed.text_of("title"), "Example News");
    assert_eq!(feed.text_of("subtitle"), "News & notes");
    let updated = DateTime::parse_from_rfc3339(feed.text_of("updated")).unwrap();
    assert_eq!(updated, t("2026-11-25T10:30:00Z"));
    assert_eq!(feed.child("author").unwrap().text_of("name"), "The Desk");
    let link = |n: &Node, rel: &str| -> String {
        let links: Vec<&Node> =
            n.all("link").filter(|l| l.attrs.get("rel").map(String::as_str) == Some(rel)).collect();
        assert_eq!(links.len(), 1, "one link rel={rel} in <{}>", n.name);
        links[0].attrs["href"].clone()
    };
    assert_eq!(link(&feed, "self"), format!("{BASE}atom.xml"));
    assert_eq!(link(&feed, "alternate"), BASE);

    let entries: Vec<&Node> = feed.all("entry").collect();
    assert_eq!(entries.len(), 3);
    for entry in entries {
        let id = entry.text_of("id");
        assert!(id.starts_with(BASE), "{id}");
        assert!(!entry.text_of("title").is_empty());
        DateTime::parse_from_rfc3339(entry.text_of("updated")).unwrap();
        DateTime::parse_from_rfc3339(entry.text_of("published")).unwrap();
        assert_eq!(link(entry, "alternate"), id);
        assert_eq!(entry.child("content").unwrap().attrs["type"], "html");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publishing_again_writes_only_what_changed() {
    let site = Site::new(50).await;
    std::fs::write(site.dir.path().join("content/logo.svg"), "<svg/>").unwrap();
    let mut articles = three_articles();
    site.add(&articles).await;
    let first = site.publish(t("2030-01-01T00:00:00Z")).await;
    assert_eq!(first.feeds_written.len(), 3);
    assert_eq!((first.pages_written, first.pages_unchanged, first.assets_copied), (3, 0, 1));
    let before = snapshot(&site.out());

    // A later clock alone changes nothing.
    let second = site.publish(t("2030-06-01T00:00:00Z")).await;
    assert!(second.feeds_written.is_empty(), "{second:?}");
    assert_eq!(second.feeds_unchanged, 3);
    assert_eq!((second.pages_written, second.pages_unchanged, second.assets_copied), (0, 3, 0));
    assert_eq!(snapshot(&site.out()), before, "the same store gives the same bytes");

    // An edit rewrites the feeds and that one page.
    articles[1].content_html = "<p>Beta, corrected.</p>".into();
    site.store.upsert_articles(&articles, t("2026-12-02T00:00:00Z")).await.unwrap();
    let third = site.publish(t("2030-07-01T00:00:00Z")).await;
    assert_eq!(third.feeds_written, ["feed.xml", "atom.xml", "feed.json"]);
    assert_eq!((third.pages_written, third.pages_unchanged), (1, 2));
    assert!(site.text("atom.xml").contains("<updated>2026-12-02T00:00:00+00:00</updated>"));
    assert!(site.text("blog/beta/index.html").contains("Beta, corrected."));
}

#[tokio::test]
async fn an_empty_store_gives_valid_feeds() {
    let site = Site::new(50).await;
    let now = t("2030-01-02T03:04:05Z");
    let report = site.publish(now).await;
    assert_eq!(report.articles, 0);
    assert_eq!(report.feeds_written.len(), 3);

    let atom = parse_xml(&site.read("atom.xml"));
    assert_eq!(DateTime::parse_from_rfc3339(atom.text_of("updated")).unwrap(), now);
    assert_eq!(atom.all("entry").count(), 0);
    let rss = parse_xml(&site.read("feed.xml"));
    let channel = rss.child("channel").unwrap();
    for required in ["title", "link", "description"] {
        assert!(!channel.text_of(required).is_empty(), "{required}");
    }
    assert_eq!(channel.all("item").count(), 0);
    for name in ["feed.xml", "atom.xml", "feed.json"] {
        assert!(feed_rs(&site.read(name)).entries.is_empty(), "{name}");
    }
    let json: serde_json::Value = serde_json::from_slice(&site.read("feed.json")).unwrap();
    assert_eq!(json["items"], serde_json::json!([]));
}

#[tokio::test]
async fn pages_and_assets_land_at_their_permalinks() {
    let site = Site::new(2).await;
    let content = site.dir.path().join("content");
    for (path, bytes) in [
        ("images/x.svg", "<svg xmlns='http://www.w3.org/2000/svg'/>"),
        ("2026/gamma/photo.jpg", "jpeg bytes"),
        ("alpha.md", "---\ntitle: Alpha\n---\n"),
        ("notes/README.MARKDOWN", "markdown"),
        (".hidden", "secret"),
        (".git/config", "[core]"),
        ("images/.DS_Store", "junk"),
    ] {
        let path = content.join(path);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, bytes).unwrap();
    }
    site.add(&three_articles()).await;
    let report = site.publish(t("2030-01-01T00:00:00Z")).await;

    assert_eq!((report.pages_written, report.assets_copied), (3, 2));
    let out = site.out();
    assert_eq!(
        std::fs::read(out.join("blog/images/x.svg")).unwrap(),
        std::fs::read(content.join("images/x.svg")).unwrap()
    );
    assert!(out.join("blog/2026/gamma/photo.jpg").is_file());
    for absent in
        ["blog/alpha.md", "blog/notes", "blog/.hidden", "blog/.git", "blog/images/.DS_Store"]
    {
        assert!(!out.join(absent).exists(), "{absent} was copied");
    }

    for a in site.store.latest_articles(10).await.unwrap() {
        let page =
            std::fs::read_to_string(out.join("blog").join(&a.article.guid).join("index.html"))
                .unwrap();
        assert!(page.contains(&format!("<h1>{}</h1>", a.article.title)), "{page}");
        assert!(page.contains(&format!("<link rel=\"canonical\" href=\"{}\">", a.article.url)));
        assert!(page.contains(&a.article.content_html));
    }

    // feeds.items = 2: the two newest, in every feed.
    assert_eq!(report.articles, 2);
    for name in ["feed.xml", "atom.xml", "feed.json"] {
        let ids: Vec<String> =
            feed_rs(&site.read(name)).entries.into_iter().map(|e| e.id).collect();
        assert_eq!(
            ids,
            [format!("{BASE}blog/2026/gamma/"), format!("{BASE}blog/alpha/")],
            "{name}"
        );
    }

    // Nothing outside the output folder but what was there before.
    let mut top: Vec<String> = std::fs::read_dir(site.dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into())
        .collect();
    top.sort();
    assert!(
        top.iter().all(|n| ["content", "herald.db", "public"].iter().any(|k| n.starts_with(k))),
        "{top:?}"
    );
}

/// Many articles: pages are streamed from the store in batches of 200, so
/// several batches and the batch edges are exercised. (The 10,000-article
/// figure is measured by the benchmark, not here.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_articles_stream_in_batches() {
    let site = Site::new(50).await;
    let start = t("2020-01-01T00:00:00Z");
    let articles: Vec<Article> = (0..1_001)
        .map(|i| {
            let mut a = article(&format!("post-{i}"), &format!("Post {i}"), "2020-01-01T00:00:00Z");
            a.published = start + Duration::minutes(i);
            a
        })
        .collect();
    site.add(&articles).await;
    let report = site.publish(t("2030-01-01T00:00:00Z")).await;
    assert_eq!(report.pages_written, 1_001);
    assert_eq!(report.articles, 50);
    let feed = feed_rs(&site.read("atom.xml"));
    assert_eq!(feed.entries[0].id, format!("{BASE}blog/post-1000/"));
    assert_eq!(feed.entries[0].published, Some(whole(start + Duration::minutes(1000))));
}

// ---------------------------------------------------------------------------
// RFC 5005 archives, per-tag feeds, the edition archive

const HISTORY: &str = "http://purl.org/syndication/history/1.0";

/// The href of the `rel` link among `parent`'s `element` children, if any
/// (and never more than one).
fn rel_link(parent: &Node, element: &str, rel: &str) -> Option<String> {
    let links: Vec<&Node> = parent
        .all(element)
        .filter(|l| l.attrs.get("rel").map(String::as_str) == Some(rel))
        .collect();
    assert!(links.len() <= 1, "<{}> has {} links rel={rel}", parent.name, links.len());
    links.first().map(|l| l.attrs["href"].clone())
}

fn relative(url: &str) -> String {
    url.strip_prefix(BASE).unwrap_or_else(|| panic!("{url} is not under {BASE}")).to_owned()
}

/// Walks an RSS or Atom feed from its subscription document `first` back
/// through `prev-archive`, checking the RFC 5005 links of every document on
/// the way. Returns the documents, newest first, and their entry ids.
fn walk_archives(site: &Site, first: &str) -> (Vec<String>, Vec<String>) {
    let rss = first.ends_with("feed.xml");
    let link = if rss { "atom:link" } else { "link" };
    let (mut paths, mut ids) = (Vec::new(), Vec::new());
    let mut next: Option<String> = Some(first.to_owned());
    while let Some(path) = next {
        assert!(paths.len() < 100, "a loop of prev-archive links");
        let bytes = site.read(&path);
        let root = parse_xml(&bytes);
        let container = if rss { root.child("channel").unwrap() } else { &root };
        let is_archive = path != first;
        assert_eq!(rel_link(container, link, "self"), Some(format!("{BASE}{path}")));
        assert_eq!(container.child("fh:archive").is_some(), is_archive, "{path}");
        assert_eq!(root.attrs.get("xmlns:fh").map(String::as_str), is_archive.then_some(HISTORY));
        assert_eq!(
            rel_link(container, link, "current"),
            is_archive.then(|| format!("{BASE}{first}")),
            "{path}"
        );
        // next-archive points back at the archive visited just before;
        // the subscription document and the newest archive have none.
        let newer_archive = paths.last().filter(|p| *p != first).map(|p| format!("{BASE}{p}"));
        assert_eq!(rel_link(container, link, "next-archive"), newer_archive, "{path}");
        ids.extend(feed_rs(&bytes).entries.into_iter().map(|e| e.id));
        next = rel_link(container, link, "prev-archive").map(|u| relative(&u));
        paths.push(path);
    }
    (paths, ids)
}

fn numbered(n: usize, start: DateTime<Utc>) -> Vec<Article> {
    (0..n)
        .map(|i| {
            let mut a =
                article(&format!("post-{i:03}"), &format!("Post {i}"), "2020-01-01T00:00:00Z");
            a.published = start + Duration::hours(i as i64);
            a
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn archived_feeds_link_both_ways_and_hold_every_article_once() {
    let site = Site::new(50).await;
    let start = t("2025-01-01T00:00:00Z");
    let articles = numbered(250, start);
    site.add(&articles).await;
    site.publish(t("2030-01-01T00:00:00Z")).await;
    let all: Vec<String> = articles.iter().rev().map(|a| a.url.clone()).collect();

    for (first, stem) in [("feed.xml", "feed"), ("atom.xml", "atom")] {
        let (paths, ids) = walk_archives(&site, first);
        // The subscription document and four full archive pages, page 1
        // the oldest.
        let expected: Vec<String> = std::iter::once(first.to_owned())
            .chain((1..=4).rev().map(|n| format!("archive/{stem}-{n}.xml")))
            .collect();
        assert_eq!(paths, expected, "{first}");
        // Newest first within and across documents: exactly every article.
        assert_eq!(ids, all, "{first}");
        let oldest = feed_rs(&site.read(&format!("archive/{stem}-1.xml")));
        assert_eq!(oldest.entries.last().unwrap().id, articles[0].url);
        assert_eq!(oldest.entries.len(), 50);
    }
    // JSON Feed pages through next_url, newest to oldest.
    let mut next = Some("feed.json".to_owned());
    let (mut pages, mut ids) = (Vec::new(), Vec::<String>::new());
    while let Some(path) = next {
        let json: serde_json::Value = serde_json::from_slice(&site.read(&path)).unwrap();
        assert_eq!(json["feed_url"], format!("{BASE}{path}"));
        feed_rs(&site.read(&path));
        ids.extend(
            json["items"].as_array().unwrap().iter().map(|i| i["id"].as_str().unwrap().into()),
        );
        next = json.get("next_url").map(|u| relative(u.as_str().unwrap()));
        pages.push(path);
    }
    assert_eq!(pages.len(), 5);
    assert_eq!(ids, all);

    // Nothing changed: nothing written.
    let before = snapshot(&site.out());
    let again = site.publish(t("2030-02-01T00:00:00Z")).await;
    assert!(again.feeds_written.is_empty(), "{again:?}");
    assert_eq!(snapshot(&site.out()), before);

    // One new article: the subscription documents change, page 4 gains its
    // next-archive link (its JSON twin only links to older pages, so it
    // stays), page 5 appears, pages 1-3 keep their bytes.
    let mut newer = article("post-250", "Post 250", "2020-01-01T00:00:00Z");
    newer.published = start + Duration::hours(250);
    site.add(&[newer]).await;
    let report = site.publish(t("2030-03-01T00:00:00Z")).await;
    assert_eq!(
        report.feeds_written,
        [
            "feed.xml",
            "atom.xml",
            "feed.json",
            "archive/feed-4.xml",
            "archive/atom-4.xml",
            "archive/feed-5.xml",
            "archive/atom-5.xml",
            "archive/feed-5.json",
        ]
    );
    let after = snapshot(&site.out());
    for n in 1..=3 {
        for name in [format!("feed-{n}.xml"), format!("atom-{n}.xml"), format!("feed-{n}.json")] {
            let path = site.out().join("archive").join(&name);
            assert_eq!(after[&path], before[&path], "{name}");
        }
    }
    for first in ["feed.xml", "atom.xml"] {
        let (paths, ids) = walk_archives(&site, first);
        assert_eq!(paths.len(), 6);
        assert_eq!(ids.len(), 251);
        assert_eq!(ids.iter().collect::<std::collections::BTreeSet<_>>().len(), 251);
    }
    assert!(!site.out().join("tags").exists(), "per_tag is off");
}

#[tokio::test]
async fn per_tag_feeds_hold_each_tags_newest() {
    let site = Site::with(2, "per_tag = true").await;
    let mut a1 = article("a1", "A1", "2026-11-20T08:00:00Z");
    a1.tags = vec!["Rust".into(), "News".into()];
    let mut a2 = article("a2", "A2", "2026-11-20T09:00:00Z");
    a2.tags = vec!["rust".into(), "RUST".into()];
    let mut a3 = article("a3", "A3", "2026-11-20T10:00:00Z");
    a3.tags = vec!["Rust".into()];
    let mut a4 = article("a4", "A4", "2026-11-20T11:00:00Z");
    a4.tags = vec!["日本語".into(), "!!!".into()];
    let mut a5 = article("a5", "A5", "2026-11-20T12:00:00Z");
    a5.tags = vec!["a&b".into()];
    site.add(&[a1.clone(), a2.clone(), a3.clone(), a4, a5.clone()]).await;
    site.publish(t("2030-01-01T00:00:00Z")).await;

    let mut tags: Vec<String> = std::fs::read_dir(site.out().join("tags"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into())
        .collect();
    tags.sort();
    assert_eq!(tags, ["a-b", "news", "rust"], "tags without a slug get no feed");

    for (tag, title, urls) in [
        ("rust", "Example News: Rust", vec![&a3.url, &a2.url]),
        ("news", "Example News: News", vec![&a1.url]),
        ("a-b", "Example News: a&b", vec![&a5.url]),
    ] {
        for name in ["feed.xml", "atom.xml", "feed.json"] {
            let path = format!("tags/{tag}/{name}");
            let bytes = site.read(&path);
            let feed = feed_rs(&bytes);
            assert_eq!(feed.title.unwrap().content, title, "{path}");
            let ids: Vec<String> = feed.entries.into_iter().map(|e| e.id).collect();
            assert_eq!(ids.iter().collect::<Vec<_>>(), urls, "{path}");
            let url = format!("{BASE}{path}");
            match name {
                "feed.xml" => {
                    let rss = parse_xml(&bytes);
                    let channel = rss.child("channel").unwrap();
                    assert_eq!(rel_link(channel, "atom:link", "self"), Some(url));
                }
                "atom.xml" => {
                    let atom = parse_xml(&bytes);
                    assert_eq!(rel_link(&atom, "link", "self"), Some(url));
                    assert_eq!(atom.text_of("id"), format!("{BASE}tags/{tag}/"));
                }
                _ => {
                    let json: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
                    assert_eq!(json["feed_url"], url);
                }
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn editions_are_archived_as_pages() {
    let site = Site::with(
        50,
        r#"
[[lists]]
slug = "daily"
name = "The Morning Digest"
schedule = "0 0 7 * * *"
subject = "{{ list.name }}"
"#,
    )
    .await;
    // Before any edition: an index that says so.
    let empty = site.publish(t("2030-01-01T00:00:00Z")).await;
    assert_eq!((empty.editions_written, empty.editions_unchanged), (1, 0));
    assert!(site.text("archive/index.html").contains("No edition"));

    for (list, date, subject) in [
        ("daily", "2026-11-20", "Friday <b>&</b> more"),
        ("daily", "2026-11-21", "Saturday"),
        ("weekly", "2026-11-21", "The week"),
    ] {
        let html = format!(
            "<!doctype html><html><head><title>{list}</title><style>p{{}}</style></head>\n\
             <body style=\"margin:0\"><h1>{list}</h1><p>Body of {list} {date}</p></body></html>"
        );
        let new = herald::store::NewEdition {
            list: list.into(),
            edition_date: date.parse().unwrap(),
            subject: subject.into(),
            html,
            text: String::new(),
            article_ids: vec![],
            considered: vec![],
            composed_at: t("2026-11-21T07:00:00Z"),
        };
        site.store.create_edition(&new, "news.example.com").await.unwrap().unwrap();
    }
    let report = site.publish(t("2030-01-01T00:00:00Z")).await;
    assert_eq!((report.editions_written, report.editions_unchanged), (4, 0));

    let index = site.text("archive/index.html");
    assert!(index.contains("<meta name=\"viewport\""));
    assert!(!index.to_ascii_lowercase().contains("<script"));
    // Newest first, then by list.
    let at = |needle: &str| index.find(needle).unwrap_or_else(|| panic!("{needle}\n{index}"));
    let urls = [
        format!("{BASE}archive/daily/2026-11-21/"),
        format!("{BASE}archive/weekly/2026-11-21/"),
        format!("{BASE}archive/daily/2026-11-20/"),
    ];
    assert!(at(&urls[0]) < at(&urls[1]) && at(&urls[1]) < at(&urls[2]), "{index}");
    assert!(index.contains("Friday &lt;b&gt;&amp;&lt;/b&gt; more"), "subjects are escaped");
    assert!(index.contains("The Morning Digest"));
    assert!(index.contains("weekly · "), "a list not in the configuration shows its slug");

    let page = site.text("archive/daily/2026-11-20/index.html");
    assert!(page.contains("<p>Body of daily 2026-11-20</p>"), "{page}");
    assert_eq!(page.matches("<body").count(), 1, "the stored document's body only: {page}");
    assert!(!page.contains("<title>daily</title>"));
    assert!(page.contains(&format!("<link rel=\"canonical\" href=\"{}\">", urls[2])));
    assert!(page.contains(&format!("href=\"{BASE}archive/index.html\"")));
    assert!(page.contains("Friday &lt;b&gt;&amp;&lt;/b&gt; more"));

    let again = site.publish(t("2030-02-01T00:00:00Z")).await;
    assert_eq!((again.editions_written, again.editions_unchanged), (0, 4));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unpublished_article_leaves_archives_and_tag_feeds_and_its_page_is_gone() {
    let site = Site::with(2, "per_tag = true").await;
    let mut articles = numbered(5, t("2025-01-01T00:00:00Z"));
    for a in &mut articles {
        a.tags = vec!["Harbour".into()];
    }
    site.add(&articles).await;
    site.publish(t("2030-01-01T00:00:00Z")).await;
    let page = site.out().join("blog/post-000/index.html");
    assert!(page.is_file());
    let (_, ids) = walk_archives(&site, "atom.xml");
    assert_eq!(ids.len(), 5);

    // The oldest sits on archive page 1, the newest heads every feed.
    let now = t("2030-01-02T00:00:00Z");
    for slug in ["post-000", "post-004"] {
        let slug = herald::types::Slug::parse(slug).unwrap();
        let marked = site.store.unpublish("blog", &slug, now).await.unwrap();
        assert!(matches!(marked, herald::store::Marked::Changed(_)), "{marked:?}");
    }
    let report = site.publish(now).await;
    assert_eq!((report.pages_removed, report.pages_gone), (2, 2));
    for first in ["feed.xml", "atom.xml"] {
        let (_, ids) = walk_archives(&site, first);
        let expected: Vec<String> = articles[1..4].iter().rev().map(|a| a.url.clone()).collect();
        assert_eq!(ids, expected, "{first} and its archives");
    }
    for name in ["feed.xml", "atom.xml", "feed.json"] {
        let ids: Vec<String> = feed_rs(&site.read(&format!("tags/harbour/{name}")))
            .entries
            .into_iter()
            .map(|e| e.id)
            .collect();
        assert_eq!(ids, [articles[3].url.clone(), articles[2].url.clone()], "{name}");
    }
    assert!(!page.exists() && !site.out().join("blog/post-000").exists());
    assert!(site.out().join("blog/post-001/index.html").is_file());
    assert_eq!(site.text(".herald-gone"), "/blog/post-000/\n/blog/post-004/\n");

    // Publishing again changes nothing.
    let before = snapshot(&site.out());
    site.publish(now).await;
    assert_eq!(snapshot(&site.out()), before);
}
