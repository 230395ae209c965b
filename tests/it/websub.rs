//! WebSub through the library API: the feeds advertise `feeds.hub`, and a
//! publish that changes subscription feeds tells a hub of the test's own (a
//! loopback HTTP server that records each request and answers as scripted),
//! retrying on later publishes until the hub answers 2xx.

use std::collections::{BTreeSet, VecDeque};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};
use herald::article::Article;
use herald::config::Config;
use herald::publish::{publish, PublishReport};
use herald::store::Store;
use herald::templates::Templates;
use quick_xml::events::Event;
use tempfile::TempDir;

const BASE: &str = "https://news.example.com/";

// ---------------------------------------------------------------------------
// A hub on a loopback port

#[derive(Debug, Clone)]
struct Request {
    head: String,
    body: String,
}

impl Request {
    /// The form's values for `key`, in order.
    fn values(&self, key: &str) -> Vec<String> {
        url::form_urlencoded::parse(self.body.as_bytes())
            .filter(|(k, _)| k == key)
            .map(|(_, v)| v.into_owned())
            .collect()
    }
}

struct Hub {
    addr: SocketAddr,
    requests: Arc<Mutex<Vec<Request>>>,
}

impl Hub {
    /// Answers the scripted statuses in turn, then 204 for ever.
    fn start(script: &[u16]) -> Hub {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let requests = Arc::new(Mutex::new(Vec::new()));
        let mut script: VecDeque<u16> = script.iter().copied().collect();
        let seen = Arc::clone(&requests);
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { continue };
                let Some(request) = read_request(&stream) else { continue };
                // Recorded before answering, so the test sees it as soon
                // as publish returns.
                seen.lock().unwrap().push(request);
                let status = script.pop_front().unwrap_or(204);
                let answer = format!(
                    "HTTP/1.1 {status} Scripted\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                );
                let _ = stream.write_all(answer.as_bytes());
            }
        });
        Hub { addr, requests }
    }

    fn url(&self) -> String {
        format!("http://{}/hub", self.addr)
    }

    fn requests(&self) -> Vec<Request> {
        self.requests.lock().unwrap().clone()
    }
}

fn read_request(stream: &std::net::TcpStream) -> Option<Request> {
    let mut reader = BufReader::new(stream);
    let mut head = String::new();
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).ok()? == 0 {
            return None;
        }
        let end = line == "\r\n";
        head.push_str(&line);
        if end {
            break;
        }
    }
    let length = head
        .lines()
        .find_map(|l| l.to_ascii_lowercase().strip_prefix("content-length:").map(str::to_owned))
        .and_then(|v| v.trim().parse::<usize>().ok())
        .unwrap_or(0);
    let mut body = vec![0; length];
    reader.read_exact(&mut body).ok()?;
    Some(Request { head, body: String::from_utf8(body).ok()? })
}

/// A loopback port nobody listens on (bound, then released).
fn closed_port_url() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    format!("http://{addr}/hub")
}

// ---------------------------------------------------------------------------
// A site in a temporary folder

struct Site {
    _dir: TempDir,
    config: Config,
    store: Store,
    templates: Templates,
}

impl Site {
    /// Two articles a feed page, tags feeds on, `hub` as the hub.
    async fn new(hub: &str) -> Site {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("content")).unwrap();
        let toml = format!(
            r#"
[site]
title = "Example News"
base_url = "{BASE}"
language = "en"

[[sources]]
name = "blog"
kind = "dir"
path = "content"

[feeds]
output_dir = "public"
items = 2
per_tag = true
hub = "{hub}"
"#
        );
        let config = herald::config::parse(&dir.path().join("herald.toml"), &toml, &[]).unwrap();
        let url = crate::support::fresh_store_url(dir.path());
        let store = Store::open(&url).await.unwrap();
        let templates = herald::templates::load(&dir.path().join("templates"));
        Site { _dir: dir, config, store, templates }
    }

    async fn add(&self, articles: &[Article]) {
        self.store.upsert_articles(articles, t("2026-12-01T00:00:00Z")).await.unwrap();
    }

    async fn publish(&self) -> PublishReport {
        publish(&self.config, &self.store, &self.templates, t("2026-12-02T00:00:00Z"))
            .await
            .unwrap()
    }

    fn read(&self, name: &str) -> String {
        std::fs::read_to_string(self.config.feeds.output_dir.join(name))
            .unwrap_or_else(|e| panic!("{name}: {e}"))
    }

    /// The feeds still to tell the hub of, one a line; `None` when none.
    async fn pending(&self) -> Option<String> {
        let pending = self.store.websub_pending().await.unwrap();
        (!pending.is_empty()).then(|| pending.join("\n"))
    }
}

fn t(s: &str) -> DateTime<Utc> {
    s.parse().unwrap()
}

fn article(guid: &str, published: &str, tags: &[&str]) -> Article {
    Article {
        source: "blog".into(),
        guid: guid.into(),
        url: format!("{BASE}blog/{guid}/"),
        title: guid.to_uppercase(),
        author: None,
        published: t(published),
        updated: None,
        summary: None,
        content_html: format!("<p>The text of {guid}.</p>"),
        tags: tags.iter().map(|t| (*t).to_owned()).collect(),
    }
}

/// Three articles: more than a feed page, so archive pages exist too.
fn three_articles() -> Vec<Article> {
    vec![
        article("alpha", "2026-11-20T08:00:00Z", &["rust"]),
        article("beta", "2026-11-21T08:00:00Z", &[]),
        article("gamma", "2026-11-22T08:00:00Z", &["rust"]),
    ]
}

/// The subscription feeds of three_articles(): the site's and the tag's.
fn subscription_feeds() -> BTreeSet<String> {
    feed_urls(&[
        "feed.xml",
        "atom.xml",
        "feed.json",
        "tags/rust/feed.xml",
        "tags/rust/atom.xml",
        "tags/rust/feed.json",
    ])
}

fn feed_urls(paths: &[&str]) -> BTreeSet<String> {
    paths.iter().map(|p| format!("{BASE}{p}")).collect()
}

fn announced(request: &Request) -> BTreeSet<String> {
    assert_eq!(request.values("hub.mode"), ["publish"], "{}", request.body);
    let urls = request.values("hub.url");
    let set: BTreeSet<String> = urls.iter().cloned().collect();
    assert_eq!(set.len(), urls.len(), "no feed twice: {}", request.body);
    set
}

/// The `href` of every `<…link rel="hub">` in an XML document.
fn hub_links(xml: &str) -> Vec<String> {
    let mut reader = quick_xml::Reader::from_str(xml);
    let mut hrefs = Vec::new();
    loop {
        match reader.read_event().unwrap() {
            Event::Start(e) | Event::Empty(e) if e.local_name().as_ref() == b"link" => {
                let attr = |name: &str| {
                    e.attributes()
                        .map(Result::unwrap)
                        .find(|a| a.key.as_ref() == name.as_bytes())
                        .map(|a| {
                            a.normalized_value(quick_xml::XmlVersion::Implicit1_0)
                                .unwrap()
                                .into_owned()
                        })
                };
                if attr("rel").as_deref() == Some("hub") {
                    hrefs.push(attr("href").expect("a hub link has an href"));
                }
            }
            Event::Eof => break,
            _ => {}
        }
    }
    hrefs
}

// ---------------------------------------------------------------------------

#[tokio::test]
async fn feeds_advertise_the_hub() {
    let hub = Hub::start(&[]);
    let site = Site::new(&hub.url()).await;
    site.add(&three_articles()).await;
    site.publish().await;

    let href = hub.url();
    for name in ["feed.xml", "atom.xml", "tags/rust/feed.xml", "archive/feed-1.xml"] {
        assert_eq!(hub_links(&site.read(name)), [href.as_str()], "{name}");
    }
    let rss = site.read("feed.xml");
    assert!(rss.contains(&format!(r#"<atom:link href="{href}" rel="hub"/>"#)), "{rss}");
    for name in ["feed.json", "tags/rust/feed.json"] {
        let json: serde_json::Value = serde_json::from_str(&site.read(name)).unwrap();
        assert_eq!(json["hubs"], serde_json::json!([{ "type": "WebSub", "url": href }]), "{name}");
    }
}

#[tokio::test]
async fn changed_feeds_are_announced_once() {
    let hub = Hub::start(&[]);
    let site = Site::new(&hub.url()).await;
    site.add(&three_articles()).await;

    let report = site.publish().await;
    let requests = hub.requests();
    assert_eq!(requests.len(), 1, "one request for all the feeds");
    let head = requests[0].head.to_ascii_lowercase();
    assert!(head.starts_with("post /hub http/1.1\r\n"), "{head}");
    assert!(head.contains(&format!("host: {}\r\n", hub.addr)), "{head}");
    assert!(head.contains("content-type: application/x-www-form-urlencoded\r\n"), "{head}");
    // Archive pages are written but not announced.
    assert!(report.feeds_written.iter().any(|f| f.starts_with("archive/")));
    assert_eq!(announced(&requests[0]), subscription_feeds());
    assert_eq!(report.hub_pinged, 6);
    assert_eq!(report.hub_error, None);
    assert_eq!(site.pending().await, None);

    // Nothing changed: nothing to announce.
    let report = site.publish().await;
    assert!(report.feeds_written.is_empty());
    assert_eq!(hub.requests().len(), 1);
    assert_eq!((report.hub_pinged, report.hub_error), (0, None));

    // A new untagged article changes the site's feeds only.
    site.add(&[article("delta", "2026-11-23T08:00:00Z", &[])]).await;
    let report = site.publish().await;
    let requests = hub.requests();
    assert_eq!(requests.len(), 2);
    assert_eq!(announced(&requests[1]), feed_urls(&["feed.xml", "atom.xml", "feed.json"]));
    assert_eq!(report.hub_pinged, 3);
}

#[tokio::test]
async fn failed_ping_is_retried_until_the_hub_answers() {
    let hub = Hub::start(&[500, 503]);
    let site = Site::new(&hub.url()).await;
    site.add(&three_articles()).await;

    let report = site.publish().await;
    assert_eq!(report.hub_pinged, 0);
    let error = report.hub_error.expect("the 500 is reported");
    assert!(error.contains(&hub.url()) && error.contains("500"), "{error}");
    let pending: BTreeSet<String> = site.pending().await.unwrap().lines().map(Into::into).collect();
    assert_eq!(pending, subscription_feeds());

    // Nothing changed, but the pending feeds are sent again: 503 this time.
    let report = site.publish().await;
    assert!(report.feeds_written.is_empty());
    assert!(report.hub_error.unwrap().contains("503"));
    assert!(site.pending().await.is_some());

    // The hub works again: announced, and the pending list is cleared.
    let report = site.publish().await;
    let requests = hub.requests();
    assert_eq!(requests.len(), 3);
    assert!(requests.iter().all(|r| announced(r) == subscription_feeds()));
    assert_eq!((report.hub_pinged, report.hub_error), (6, None));
    assert_eq!(site.pending().await, None);

    // And then nothing more.
    let report = site.publish().await;
    assert_eq!(hub.requests().len(), 3);
    assert_eq!(report.hub_pinged, 0);
}

#[tokio::test]
async fn unreachable_hub_keeps_feeds_pending_and_adds_new_changes() {
    let dead = closed_port_url();
    let mut site = Site::new(&dead).await;
    site.add(&[article("alpha", "2026-11-20T08:00:00Z", &[])]).await;

    let report = site.publish().await;
    assert_eq!(report.feeds_written.len(), 3, "the publish itself succeeds");
    let error = report.hub_error.expect("the refused connection is reported");
    assert!(error.contains(&dead), "{error}");

    // A change while the hub is down joins the pending feeds.
    site.add(&[article("beta", "2026-11-21T08:00:00Z", &["rust"])]).await;
    let report = site.publish().await;
    assert!(report.hub_error.is_some());
    let pending: BTreeSet<String> = site.pending().await.unwrap().lines().map(Into::into).collect();
    assert_eq!(pending, subscription_feeds());

    // The hub is back (at a new address, so every feed changes too).
    let hub = Hub::start(&[]);
    site.config.feeds.hub = Some(hub.url().parse().unwrap());
    let report = site.publish().await;
    let requests = hub.requests();
    assert_eq!(requests.len(), 1);
    assert_eq!(announced(&requests[0]), subscription_feeds());
    assert_eq!((report.hub_pinged, report.hub_error), (6, None));
    assert_eq!(site.pending().await, None);
}
