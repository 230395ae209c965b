//! Upstream feeds built to make an XML reader slow or hungry, generated here:
//! a root element with 50,000 attributes of one name (the duplicate check
//! was quadratic in older quick-xml, RUSTSEC-2026-0194), one with 50,000
//! distinct attributes, and one declaring 50,000 namespaces (an unbounded
//! allocation in older quick-xml, RUSTSEC-2026-0195). Each is collected, or
//! refused with its source and line named, and the other sources are
//! collected as usual; `herald check --feeds` reads them too. No timing is
//! asserted: `bench/hostile_xml.py` measures the time and memory they take.

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener};

use herald::collect::feed::{parse_feed, FeedError, ParseOptions};
use herald::types::BaseUrl;
use url::Url;

use crate::support::{stderr, stdout, Site};

const NOW: &str = "2026-11-24T07:00:00Z";

/// How many attributes or namespace declarations a hostile tag carries.
const MANY: usize = 50_000;

/// ` a="1"` `MANY` times.
fn duplicate_attributes() -> String {
    " a=\"1\"".repeat(MANY)
}

/// ` a0="1" a1="1" …`.
fn distinct_attributes() -> String {
    (0..MANY).map(|i| format!(" a{i}=\"1\"")).collect()
}

/// ` xmlns:n0="urn:0" xmlns:n1="urn:1" …`.
fn namespace_declarations() -> String {
    (0..MANY).map(|i| format!(" xmlns:n{i}=\"urn:{i}\"")).collect()
}

/// An RSS 2.0 feed of one item, titled `title`, whose root element carries
/// `root_attrs` and whose item carries `item_attrs`. The root starts on
/// line 2, the item on line 3.
fn feed(title: &str, root_attrs: &str, item_attrs: &str) -> Vec<u8> {
    let slug = title.to_lowercase().replace(' ', "-");
    format!(
        "<?xml version=\"1.0\" encoding=\"utf-8\"?>\n\
         <rss version=\"2.0\"{root_attrs}><channel><title>Hostile</title>\
         <link>https://hostile.example.org/</link><description>d</description>\n\
         <item{item_attrs}><title>{title}</title>\
         <link>https://hostile.example.org/{slug}</link><guid>{slug}</guid>\
         <pubDate>Mon, 23 Nov 2026 08:00:00 GMT</pubDate><description>Text.</description>\
         </item></channel></rss>\n"
    )
    .into_bytes()
}

fn parse(bytes: &[u8]) -> Result<Vec<herald::article::Article>, FeedError> {
    let feed_url = Url::parse("https://hostile.example.org/feed.xml").unwrap();
    let base = BaseUrl::parse("https://news.example.com/").unwrap();
    let opts = ParseOptions {
        source: "hostile",
        feed_url: &feed_url,
        source_tags: &[],
        base_url: &base,
        now: NOW.parse().unwrap(),
    };
    parse_feed(bytes, &opts)
}

#[test]
fn many_attributes_are_read_and_many_namespaces_refused_with_their_line() {
    for (what, attrs) in
        [("duplicate", duplicate_attributes()), ("distinct", distinct_attributes())]
    {
        for (place, bytes) in
            [("root", feed("Many", &attrs, "")), ("item", feed("Many", "", &attrs))]
        {
            let articles = parse(&bytes).unwrap_or_else(|e| panic!("{what} on the {place}: {e}"));
            assert_eq!(articles.len(), 1, "{what} on the {place}");
            assert_eq!(articles[0].title, "Many", "{what} on the {place}");
        }
    }
    let namespaces = namespace_declarations();
    for (line, bytes) in [(2, feed("Many", &namespaces, "")), (3, feed("Many", "", &namespaces))] {
        let e = parse(&bytes).unwrap_err();
        assert!(
            matches!(e, FeedError::TooManyNamespaces { line: l, limit: 256 } if l == line),
            "{e:?}"
        );
        assert_eq!(
            e.to_string(),
            format!(
                "refused: the start tag at line {line} declares more than 256 XML namespaces, \
                 the most herald reads in one tag (no real feed comes close)"
            )
        );
    }
}

/// Serves each (path, body) with 200, anything else with 404.
fn serve(routes: Vec<(&'static str, Vec<u8>)>) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut first = String::new();
            if reader.read_line(&mut first).is_err() {
                continue;
            }
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                    break;
                }
            }
            let path = first.split_whitespace().nth(1).unwrap_or("/");
            let (status, body) = match routes.iter().find(|(p, _)| *p == path) {
                Some((_, body)) => ("200 OK", body.as_slice()),
                None => ("404 Not Found", b"".as_slice()),
            };
            let head = format!(
                "HTTP/1.1 {status}\r\nContent-Type: application/rss+xml\r\n\
                 Content-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            );
            let _ = stream.write_all(head.as_bytes());
            let _ = stream.write_all(body);
        }
    });
    addr
}

fn add_sources(site: &Site, addr: SocketAddr, names: &[&str]) {
    let mut text = std::fs::read_to_string(site.file("herald.toml")).unwrap();
    for name in names {
        text.push_str(&format!(
            "\n[[sources]]\nname = \"{name}\"\nkind = \"feed\"\nurl = \"http://{addr}/{name}\"\nallow_private = true\n"
        ));
    }
    std::fs::write(site.file("herald.toml"), text).unwrap();
}

#[test]
fn a_run_collects_past_hostile_feeds_and_names_the_one_it_refuses() {
    let good = std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/feeds/rss2.xml"))
        .unwrap();
    let addr = serve(vec![
        ("/duplicates", feed("Duplicate attributes", &duplicate_attributes(), "")),
        ("/distinct", feed("Distinct attributes", &distinct_attributes(), "")),
        ("/namespaces", feed("Many namespaces", &namespace_declarations(), "")),
        ("/harbour", good),
    ]);
    let site = Site::init();
    add_sources(&site, addr, &["duplicates", "distinct", "namespaces", "harbour"]);

    let out = site.herald(&["run", "--now", NOW]);
    let (said, err) = (stdout(&out), stderr(&out));
    assert_eq!(out.status.code(), Some(1), "one source failed:\n{said}{err}");
    assert!(
        said.contains("8 new") && said.contains("1 source(s) failed"),
        "4 from the folder, 2 from harbour, 1 from each of the attribute feeds:\n{said}{err}"
    );
    assert!(
        err.contains(
            "warning: source `namespaces`: refused: the start tag at line 2 declares more than \
             256 XML namespaces"
        ),
        "{err}"
    );
    for name in ["duplicates", "distinct", "harbour"] {
        assert!(!err.contains(&format!("source `{name}`")), "{name}: {err}");
    }
    assert!(said.contains("delivered  4 sent"), "the rest of the run went on: {said}");
    let published = std::fs::read_to_string(site.file("public/feed.xml")).unwrap();
    for title in ["Duplicate attributes", "Distinct attributes", "Second item"] {
        assert!(published.contains(title), "{title} in feed.xml:\n{published}");
    }
    assert!(!published.contains("Many namespaces"), "{published}");
    let out = site.herald(&["check", "--feeds"]);
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
}

#[test]
fn check_feeds_reads_hostile_files_to_their_end() {
    let site = Site::init();
    let out = site.herald(&["publish", "--now", NOW]);
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    for (file, attrs) in [
        ("feed-duplicates.xml", duplicate_attributes()),
        ("feed-distinct.xml", distinct_attributes()),
        ("feed-namespaces.xml", namespace_declarations()),
    ] {
        std::fs::write(site.file(&format!("public/{file}")), feed("Many", &attrs, "")).unwrap();
    }
    let out = site.herald(&["check", "--feeds"]);
    let said = stdout(&out);
    assert_eq!(out.status.code(), Some(1), "{said}{}", stderr(&out));
    // The duplicate is an error at the root's line; in the other two files
    // the checks reach the item on line 3, past the hostile tag.
    assert!(
        said.contains("public/feed-duplicates.xml:2: not well-formed XML")
            && said.contains("duplicated attribute"),
        "{said}"
    );
    for file in ["feed-distinct.xml", "feed-namespaces.xml"] {
        assert!(said.contains(&format!("public/{file}:3: <guid> `many`")), "{file}: {said}");
    }
    assert!(!said.contains("public/feed.xml:"), "herald's own feed has no problem: {said}");
}
