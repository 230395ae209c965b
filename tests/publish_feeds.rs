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
"#
        );
        let config = herald::config::parse(&dir.path().join("herald.toml"), &toml, &[]).unwrap();
        assert!(config.feeds.output_dir.starts_with(dir.path()));
        let url = format!("sqlite://{}", dir.path().join("herald.db").display());
        let store = Store::open(&url).await.unwrap();
        let templates = herald::templates::load(&dir.path().join("templates")).unwrap();
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
            Event::Text(e) => {
                stack.last_mut().unwrap().text.push_str(&e.unescape().expect("entities resolve"))
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
                a.unescape_value().unwrap().into_owned(),
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
