//! `herald::collect::feed::parse_feed` against the small feeds in
//! `tests/fixtures/feeds/`: one test per rule or kind of bad input. No
//! network: every test reads bytes from a fixture or a string.

use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use herald::article::Article;
use herald::collect::feed::{parse_feed, FeedError, ParseOptions};
use herald::types::BaseUrl;
use url::Url;

/// The site's root, where an entry without a link of its own gets its page.
const BASE: &str = "https://news.example.com/";

fn fixture(name: &str) -> Vec<u8> {
    let path = format!("{}/tests/fixtures/feeds/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn now() -> DateTime<Utc> {
    "2026-11-25T06:00:00Z".parse().unwrap()
}

fn parse_at(bytes: &[u8], feed_url: &str) -> Result<Vec<Article>, FeedError> {
    let feed_url = Url::parse(feed_url).unwrap();
    let tags = vec!["harbour".to_string()];
    let base = BaseUrl::parse(BASE).unwrap();
    let opts = ParseOptions {
        source: "upstream",
        feed_url: &feed_url,
        source_tags: &tags,
        base_url: &base,
        now: now(),
    };
    parse_feed(bytes, &opts)
}

fn parse(name: &str) -> Vec<Article> {
    parse_at(&fixture(name), "https://harbour.example.org/feeds/rss.xml")
        .unwrap_or_else(|e| panic!("{name}: {e}"))
}

fn parse_err(name: &str) -> FeedError {
    match parse_at(&fixture(name), "https://harbour.example.org/feeds/rss.xml") {
        Ok(articles) => panic!("{name} parsed into {articles:#?}"),
        Err(e) => e,
    }
}

fn date(s: &str) -> DateTime<Utc> {
    s.parse().unwrap()
}

#[test]
fn rss2_fields() {
    let articles = parse("rss2.xml");
    assert_eq!(articles.len(), 2);
    let a = &articles[0];
    assert_eq!(a.source, "upstream");
    assert_eq!(a.guid, "harbour-2026-001");
    assert_eq!(a.title, "Ferry & timetable changes");
    assert_eq!(a.published, date("2026-11-23T08:30:00Z"));
    assert_eq!(a.updated, None, "RSS has no separate updated time");
    assert_eq!(a.summary.as_deref(), Some("Short: ferries change."));
    // A relative <link> is resolved against the feed's URL.
    assert_eq!(a.url, "https://harbour.example.org/news/ferry.html");
    // guid without a link: the link is still the item's <link>.
    let b = &articles[1];
    assert_eq!(b.guid, "https://harbour.example.org/news/second.html?utm_source=rss");
    assert_eq!(b.url, b.guid);
}

#[test]
fn rss2_content_is_sanitised_and_absolute() {
    let a = &parse("rss2.xml")[0];
    let html = &a.content_html;
    for bad in ["<script", "alert", "onclick", "<style", "color:red", "javascript:"] {
        assert!(!html.contains(bad), "{bad} in {html}");
    }
    assert!(
        html.contains(r#"href="https://harbour.example.org/feeds/timetable/winter.html""#),
        "{html}"
    );
    assert!(html.contains(r#"src="https://harbour.example.org/img/ferry.jpg""#), "{html}");
    assert!(html.contains(r#"alt="Ferry""#), "image kept: {html}");
    // content:encoded wins over description.
    assert!(html.contains("winter timetable"), "{html}");
    // Escaped HTML in a description is HTML, resolved too.
    let b = &parse("rss2.xml")[1];
    assert!(
        b.content_html.contains(r#"href="https://harbour.example.org/feeds/more.html""#),
        "{}",
        b.content_html
    );
}

#[test]
fn control_characters_are_stripped_from_authors_and_titles() {
    let a = &parse("rss2.xml")[0];
    let author = a.author.as_deref().unwrap();
    assert!(!author.chars().any(|c| c.is_control()), "{author:?}");
    assert_eq!(author, "Ana Lima", "the name from `email (Name)`");
    let bytes = "<rss version=\"2.0\"><channel><title>t</title><item><title>Bell&#x7;\u{1b}[31m here</title><guid>g</guid></item></channel></rss>";
    let articles = parse_at(bytes.as_bytes(), "https://e.com/").unwrap();
    assert_eq!(articles[0].title, "Bell[31m here");
    let bytes = "<rss version=\"2.0\"><channel><title>t</title><item><title>a &lt; b and c</title><guid>g</guid></item></channel></rss>";
    let articles = parse_at(bytes.as_bytes(), "https://e.com/").unwrap();
    assert_eq!(articles[0].title, "a < b and c", "an RSS title is text");
}

#[test]
fn tags_are_source_tags_plus_categories_deduplicated() {
    let a = &parse("rss2.xml")[0];
    assert_eq!(a.tags, vec!["harbour", "Transport", "Local"]);
    let b = &parse("rss2.xml")[1];
    assert_eq!(b.tags, vec!["harbour"]);
}

#[test]
fn atom_xml_base_resolves_links_and_content() {
    let articles = parse("atom.xml");
    assert_eq!(articles.len(), 2);
    let a = &articles[0];
    assert_eq!(a.guid, "tag:atom.example.net,2026:tides");
    assert_eq!(a.url, "https://atom.example.net/blog/posts/tides/", "alternate, not the enclosure");
    assert_eq!(a.title, "Tides explained", "HTML title turned into text");
    assert_eq!(a.published, date("2026-11-20T07:00:00Z"));
    assert_eq!(a.updated, Some(date("2026-11-22T07:00:00Z")));
    assert_eq!(a.author.as_deref(), Some("Rui Costa"));
    assert_eq!(a.tags, vec!["harbour", "Science"], "label preferred over term");
    assert!(
        a.content_html.contains(r#"href="https://atom.example.net/blog/notes.html""#),
        "{}",
        a.content_html
    );
    assert!(
        a.content_html.contains(r#"src="https://atom.example.net/blog/img/tide.png""#),
        "{}",
        a.content_html
    );

    let b = &articles[1];
    assert_eq!(b.url, "https://cdn.example.net/other/page.html", "entry's own xml:base");
    // published falls back to updated.
    assert_eq!(b.published, date("2026-11-21T07:00:00Z"));
    assert_eq!(b.updated, None);
    // A text summary is text: its markup is shown, not obeyed.
    assert_eq!(b.summary.as_deref(), Some("Plain <b>text</b> summary"));
    assert!(b.content_html.contains("&lt;b&gt;"), "{}", b.content_html);
    assert!(!b.content_html.contains("<b>"), "{}", b.content_html);
    assert_eq!(b.author.as_deref(), Some("Feed Author"), "feed-level author");
}

#[test]
fn json_feed() {
    let articles = parse_at(&fixture("feed.json"), "https://json.example.com/feed.json").unwrap();
    assert_eq!(articles.len(), 2);
    let a = &articles[0];
    assert_eq!(a.guid, "json-1");
    assert_eq!(a.url, "https://json.example.com/posts/1");
    assert_eq!(a.title, "First JSON post");
    assert_eq!(a.published, date("2026-11-19T12:00:00Z"));
    assert_eq!(a.tags, vec!["harbour", "Boats", "Sea"]);
    assert!(!a.content_html.contains("script"), "{}", a.content_html);
    assert!(
        a.content_html.contains(r#"href="https://json.example.com/about""#),
        "{}",
        a.content_html
    );

    let b = &articles[1];
    assert_eq!(b.guid, "json-2");
    assert_eq!(b.published, date("2026-11-18T12:00:00Z"));
    assert_eq!(b.title, "Only <text> here, no title or url.");
    assert!(b.content_html.contains("&lt;text&gt;"), "plain text escaped: {}", b.content_html);
    assert_eq!(
        b.url, "https://news.example.com/upstream/json-2/",
        "no url: its page on herald's site"
    );
}

#[test]
fn entries_without_id_link_title_or_date() {
    let articles = parse("rss-noid.xml");
    assert_eq!(articles.len(), 3);
    for a in &articles {
        assert!(!a.title.is_empty());
        assert_eq!(a.guid.len(), 64, "sha-256 hex: {}", a.guid);
        assert!(a.guid.chars().all(|c| c.is_ascii_hexdigit()));
        assert_eq!(a.url, format!("https://news.example.com/upstream/{}/", a.guid), "its own page");
    }
    assert_eq!(
        articles[0].title,
        "The lighthouse keeper reported calm seas all night long and a quiet…"
    );
    assert_eq!(articles[0].published, now(), "no date: the time first seen");
    assert_eq!(articles[1].title, "A second untitled note about the fish market.");
    assert_ne!(articles[0].guid, articles[1].guid);
    assert_eq!(articles[2].title, "Titled but no link");
    assert_eq!(articles[2].published, date("2026-11-18T06:00:00Z"));
}

#[test]
fn entries_without_a_usable_link_link_to_their_own_page() {
    let articles = parse("linkless.xml");
    let urls: Vec<&str> = articles.iter().map(|a| a.url.as_str()).collect();
    assert_eq!(urls[0], "https://news.example.com/upstream/notice-2026-11-20/", "a guid only");
    // A javascript: link is no link; the guid is not a slug, so it is hashed.
    assert_eq!(articles[1].guid, "tag:notices.example.org,2026:Lost Dog/Found?");
    assert!(urls[1].starts_with("https://news.example.com/upstream/found-"), "{}", urls[1]);
    // A relative link under an xml:base it cannot be resolved against.
    assert!(urls[2].starts_with("https://news.example.com/upstream/"), "{}", urls[2]);
    assert_ne!(urls[1], urls[2]);
    assert_ne!(urls[0], urls[2]);
}

#[test]
fn guids_are_stable_across_parses() {
    for name in ["rss2.xml", "atom.xml", "feed.json", "rss-noid.xml", "linkless.xml"] {
        let first: Vec<(String, String)> =
            parse(name).into_iter().map(|a| (a.guid, a.url)).collect();
        for _ in 0..3 {
            let again: Vec<(String, String)> =
                parse(name).into_iter().map(|a| (a.guid, a.url)).collect();
            assert_eq!(first, again, "{name}");
        }
    }
    // Another `now` does not change a dateless entry's guid either.
    let feed_url = Url::parse("https://harbour.example.org/feeds/rss.xml").unwrap();
    let base = BaseUrl::parse(BASE).unwrap();
    let later = ParseOptions {
        source: "s",
        feed_url: &feed_url,
        source_tags: &[],
        base_url: &base,
        now: date("2027-01-01T00:00:00Z"),
    };
    let a = parse_feed(&fixture("rss-noid.xml"), &later).unwrap();
    let b = parse("rss-noid.xml");
    assert_eq!(a[0].guid, b[0].guid);
}

#[test]
fn html_page_is_not_a_feed() {
    let e = parse_err("html.html");
    assert!(matches!(e, FeedError::Html), "{e:?}");
    assert_eq!(e.to_string(), "not a feed: the document is HTML (<html>)");
    // Without a doctype too.
    let e = parse_at(b"<html><body>hi</body></html>", "https://e.com/").unwrap_err();
    assert!(matches!(e, FeedError::Html), "{e:?}");
}

#[test]
fn malformed_xml_names_the_line() {
    let e = parse_err("malformed.xml");
    let FeedError::MalformedXml { line, .. } = &e else { panic!("{e:?}") };
    assert_eq!(*line, 7, "{e}");
    assert!(e.to_string().starts_with("malformed XML at line 7: "), "{e}");
}

#[test]
fn other_roots_and_json() {
    let e = parse_at(b"<?xml version=\"1.0\"?><note>hi</note>", "https://e.com/").unwrap_err();
    assert!(e.to_string().contains("root element is <note>"), "{e}");
    let e = parse_at(
        b"{\"version\": \"https://jsonfeed.org/version/1.1\", \"items\": [",
        "https://e.com/",
    )
    .unwrap_err();
    assert!(matches!(e, FeedError::MalformedJson { line: 1, .. }), "{e:?}");
    assert!(e.to_string().starts_with("malformed JSON at line 1, column 58: EOF"), "{e}");
    let e = parse_at(b"<rss><channel></channel></rss>", "https://e.com/").unwrap_err();
    assert_eq!(
        e.to_string(),
        "not a feed: <rss> with version missing (0.91, 0.92 and 2.0 are read)"
    );
    let e = parse_at(b"plain text", "https://e.com/").unwrap_err();
    assert!(matches!(e, FeedError::NoRoot | FeedError::Other(_)), "{e:?}");
}

#[test]
fn empty_document() {
    assert!(matches!(parse_err("empty.xml"), FeedError::Empty));
    let e = parse_at(b" \n\t ", "https://e.com/").unwrap_err();
    assert_eq!(e.to_string(), "empty document");
    assert!(matches!(parse_at(b"\xEF\xBB\xBF\n", "https://e.com/"), Err(FeedError::Empty)));
}

#[test]
fn entity_bomb_is_not_expanded() {
    let start = Instant::now();
    let result = parse_at(&fixture("bomb.xml"), "https://bomb.example.com/feed");
    assert!(start.elapsed() < Duration::from_secs(2), "took {:?}", start.elapsed());
    let articles = result.unwrap();
    let a = &articles[0];
    assert_eq!(a.guid, "bomb-1");
    // The undeclared-to-us reference stays literal text, escaped in HTML.
    assert_eq!(a.title, "Boom &lol9;");
    assert_eq!(a.content_html, "&amp;lol9;");
    for text in [&a.title, &a.content_html] {
        assert!(!text.contains("lollol"), "{text}");
        assert!(text.len() < 200, "{text}");
    }
}

#[test]
fn external_entities_are_not_fetched_or_expanded() {
    let start = Instant::now();
    let articles = parse_at(&fixture("xxe.xml"), "https://xxe.example.com/feed").unwrap();
    assert!(start.elapsed() < Duration::from_secs(2));
    let a = &articles[0];
    assert_eq!(a.title, "Secret: &xxe;");
    assert_eq!(a.content_html, "&amp;xxe; &amp;remote;");
    for text in [&a.title, &a.content_html] {
        assert!(!text.contains("root:"), "{text}");
        assert!(!text.contains("/bin/"), "{text}");
    }
}

#[test]
fn windows_1251_is_decoded() {
    let articles = parse("cp1251.xml");
    assert_eq!(articles[0].title, "Привет, мир");
    assert!(
        articles[0].content_html.contains("Паром отменён из-за шторма."),
        "{}",
        articles[0].content_html
    );
}

#[test]
fn latin1_is_decoded() {
    let articles = parse("latin1.xml");
    assert_eq!(articles[0].title, "Pão e café à beira-mar");
    assert!(
        articles[0].content_html.contains("Açúcar, maçã, coração."),
        "{}",
        articles[0].content_html
    );
}

#[test]
fn bytes_that_do_not_match_the_declared_encoding_are_an_error() {
    let e = parse_err("latin1-as-utf8.xml");
    assert!(matches!(e, FeedError::Encoding(_)), "{e:?}");
    assert!(e.to_string().contains("declared encoding"), "{e}");
}

#[test]
fn older_formats() {
    let rss091 = r#"<?xml version="1.0"?><rss version="0.91"><channel><title>Old</title><link>https://old.example.com/</link><description>d</description>
<item><title>Ninety-one</title><link>https://old.example.com/91</link><description>Old &lt;b&gt;news&lt;/b&gt;</description></item></channel></rss>"#;
    let a = &parse_at(rss091.as_bytes(), "https://old.example.com/rss").unwrap()[0];
    assert_eq!((a.title.as_str(), a.url.as_str()), ("Ninety-one", "https://old.example.com/91"));
    assert_eq!(a.guid, "https://old.example.com/91", "no guid: the link");

    let rss10 = r#"<?xml version="1.0"?>
<rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#" xmlns="http://purl.org/rss/1.0/" xmlns:dc="http://purl.org/dc/elements/1.1/">
<channel rdf:about="https://rdf.example.com/"><title>RDF</title><link>https://rdf.example.com/</link><description>d</description></channel>
<item rdf:about="https://rdf.example.com/one"><title>One</title><link>https://rdf.example.com/one</link><dc:date>2026-11-10T10:00:00Z</dc:date></item>
</rdf:RDF>"#;
    let a = &parse_at(rss10.as_bytes(), "https://rdf.example.com/rss").unwrap()[0];
    assert_eq!((a.title.as_str(), a.url.as_str()), ("One", "https://rdf.example.com/one"));
    assert_eq!(a.published, date("2026-11-10T10:00:00Z"));

    let atom03 = r#"<?xml version="1.0"?>
<feed version="0.3" xmlns="http://purl.org/atom/ns#"><title>Atom 0.3</title><modified>2026-11-01T00:00:00Z</modified>
<entry><title>Three</title><link rel="alternate" type="text/html" href="https://a03.example.com/3"/><id>tag:a03,3</id><issued>2026-11-01T00:00:00Z</issued><modified>2026-11-02T00:00:00Z</modified></entry></feed>"#;
    let articles = parse_at(atom03.as_bytes(), "https://a03.example.com/atom").unwrap();
    let a = &articles[0];
    assert_eq!(a.title, "Three");
    assert_eq!(a.url, "https://a03.example.com/3");
    assert_eq!(a.guid, "tag:a03,3");
    assert_eq!(a.published, date("2026-11-01T00:00:00Z"), "issued");
    assert_eq!(a.updated, Some(date("2026-11-02T00:00:00Z")), "modified");
}
