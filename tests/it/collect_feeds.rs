//! Sources of kind `feed`, fetched from an HTTP server of the test's own on
//! loopback: conditional GET, redirects, errors and limits, the SSRF guard,
//! and one broken source never stopping the others.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener};
use std::sync::{Arc, Mutex};

use crate::support::{stderr, stdout, Site};

const NOW: &str = "2026-11-24T07:00:00Z";

/// Requests seen: (path, If-None-Match).
type Log = Arc<Mutex<Vec<(String, Option<String>)>>>;

fn feed_server() -> (SocketAddr, Log) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let log: Log = Arc::new(Mutex::new(Vec::new()));
    let seen = log.clone();
    let feed = std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/feeds/rss2.xml"))
        .unwrap();
    let linkless =
        std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/feeds/linkless.xml"))
            .unwrap();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let (seen, feed, linkless) = (seen.clone(), feed.clone(), linkless.clone());
            // One thread a connection: a slow answer holds up nobody else.
            std::thread::spawn(move || {
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut first = String::new();
                if reader.read_line(&mut first).is_err() {
                    return;
                }
                let path = first.split_whitespace().nth(1).unwrap_or("/").to_string();
                let mut headers = HashMap::new();
                loop {
                    let mut line = String::new();
                    if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                        break;
                    }
                    if let Some((k, v)) = line.split_once(':') {
                        headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_string());
                    }
                }
                let inm = headers.get("if-none-match").cloned();
                seen.lock().unwrap().push((path.clone(), inm.clone()));
                let (status, extra, body): (&str, String, Vec<u8>) = match path.as_str() {
                    "/feed.xml" if inm.as_deref() == Some("\"v1\"") => {
                        ("304 Not Modified", String::new(), vec![])
                    }
                    "/feed.xml" => (
                        "200 OK",
                        "ETag: \"v1\"\r\nContent-Type: application/rss+xml\r\n".into(),
                        feed.clone(),
                    ),
                    "/linkless" => ("200 OK", String::new(), linkless),
                    "/moved" => ("301 Moved Permanently", "Location: /feed.xml\r\n".into(), vec![]),
                    "/temp" => ("302 Found", "Location: /feed.xml\r\n".into(), vec![]),
                    "/loop" => ("302 Found", "Location: /loop\r\n".into(), vec![]),
                    "/gone" => ("410 Gone", String::new(), vec![]),
                    "/busy" => ("503 Service Unavailable", "Retry-After: 120\r\n".into(), vec![]),
                    "/broken" => (
                        "200 OK",
                        String::new(),
                        b"<rss version=\"2.0\"><channel><item></channel>".to_vec(),
                    ),
                    "/html" => (
                        "200 OK",
                        String::new(),
                        b"<!doctype html><html><body>hi</body></html>".to_vec(),
                    ),
                    "/big" => ("200 OK", String::new(), vec![b' '; 3 * 1024 * 1024]),
                    "/empty" => ("200 OK", String::new(), vec![]),
                    // A gzip stream cut short.
                    "/badgzip" => (
                        "200 OK",
                        "Content-Encoding: gzip\r\n".into(),
                        vec![0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 3, 0xab],
                    ),
                    "/slow" => {
                        std::thread::sleep(std::time::Duration::from_secs(3));
                        ("200 OK", String::new(), feed.clone())
                    }
                    _ => ("404 Not Found", String::new(), vec![]),
                };
                let head = format!(
                    "HTTP/1.1 {status}\r\n{extra}Content-Length: {}\r\nConnection: close\r\n\r\n",
                    body.len()
                );
                let _ = stream.write_all(head.as_bytes());
                let _ = stream.write_all(&body);
            });
        }
    });
    (addr, log)
}

fn add_feeds(site: &Site, addr: SocketAddr, feeds: &[(&str, &str, bool)]) {
    let mut text = std::fs::read_to_string(site.file("herald.toml")).unwrap();
    for (name, path, private) in feeds {
        text.push_str(&format!(
            "\n[[sources]]\nname = \"{name}\"\nkind = \"feed\"\nurl = \"http://{addr}{path}\"\nallow_private = {private}\n"
        ));
    }
    std::fs::write(site.file("herald.toml"), text).unwrap();
}

fn collect(site: &Site, now: &str) -> std::process::Output {
    site.herald_env(&["collect", "--now", now], &[("HERALD_COLLECT_MAX_BODY_BYTES", "1048576")])
}

#[test]
fn conditional_get_fetches_nothing_twice() {
    let (addr, log) = feed_server();
    let site = Site::init();
    add_feeds(&site, addr, &[("harbour", "/feed.xml", true)]);
    let out = collect(&site, NOW);
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    assert!(stdout(&out).contains("6 new"), "4 from the folder, 2 from the feed: {}", stdout(&out));
    let out = collect(&site, "2026-11-24T08:00:00Z");
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    assert!(stdout(&out).contains("0 new, 0 updated"), "{}", stdout(&out));
    let log = log.lock().unwrap();
    assert_eq!(log.len(), 2);
    assert_eq!(log[0].1, None);
    assert_eq!(log[1].1.as_deref(), Some("\"v1\""), "the second fetch is conditional");
    let status = stdout(&site.herald(&["status"]));
    assert!(status.contains("harbour") && status.contains("feed"), "{status}");
}

#[test]
fn loopback_hosts_are_refused_unless_allowed() {
    let (addr, log) = feed_server();
    let site = Site::init();
    add_feeds(&site, addr, &[("inside", "/feed.xml", false)]);
    // A name is checked on the addresses the connection would use, so it
    // cannot pass a check and then resolve somewhere else.
    let mut text = std::fs::read_to_string(site.file("herald.toml")).unwrap();
    text.push_str(&format!(
        "\n[[sources]]\nname = \"named\"\nkind = \"feed\"\nurl = \"http://localhost:{}/feed.xml\"\n",
        addr.port()
    ));
    std::fs::write(site.file("herald.toml"), text).unwrap();
    let out = collect(&site, NOW);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(
        err.contains("source `inside`") && err.contains("127.0.0.1 an address inside"),
        "{err}"
    );
    assert!(err.contains("source `named`") && err.contains("localhost is "), "{err}");
    assert!(err.contains("allow_private = true"), "{err}");
    assert!(
        stdout(&out).contains("4 new"),
        "the folder source was still collected: {}",
        stdout(&out)
    );
    assert!(log.lock().unwrap().is_empty(), "nothing was fetched");
}

#[test]
fn broken_sources_are_named_and_the_others_collected() {
    let (addr, _log) = feed_server();
    let site = Site::init();
    add_feeds(
        &site,
        addr,
        &[
            ("good", "/feed.xml", true),
            ("broken", "/broken", true),
            ("html", "/html", true),
            ("gone", "/gone", true),
            ("busy", "/busy", true),
            ("looping", "/loop", true),
            ("huge", "/big", true),
            ("missing", "/nope", true),
            ("empty", "/empty", true),
            ("badgzip", "/badgzip", true),
            ("slow", "/slow", true),
        ],
    );
    let started = std::time::Instant::now();
    let out = site.herald_env(
        &["collect", "--now", NOW],
        &[("HERALD_COLLECT_MAX_BODY_BYTES", "1048576"), ("HERALD_COLLECT_TIMEOUT_SECS", "1")],
    );
    // The slow source times out on its own; it holds up nobody.
    assert!(started.elapsed() < std::time::Duration::from_secs(3), "{:?}", started.elapsed());
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    for (name, says) in [
        ("broken", "malformed XML"),
        ("html", "HTML"),
        ("gone", "410 Gone"),
        ("busy", "HTTP 503"),
        ("looping", "more than 5 redirects"),
        ("huge", "over the 1048576-byte cap"),
        ("missing", "HTTP 404"),
        ("empty", "empty document"),
        ("badgzip", "(fetching"),
        ("slow", "timed out"),
    ] {
        assert!(
            err.contains(&format!("source `{name}`")) && err.contains(says),
            "{name}: {says}\n{err}"
        );
    }
    assert!(stdout(&out).contains("6 new"), "the folder and the good feed: {}", stdout(&out));
    let status = stdout(&site.herald(&["status"]));
    assert!(status.contains("FAILING") && status.contains("next try after"), "{status}");
    // A feed that is gone stays disabled and is not fetched again.
    let out = collect(&site, "2026-11-25T07:00:00Z");
    assert!(stderr(&out).contains("disabled: the feed answered 410 Gone"), "{}", stderr(&out));
}

#[test]
fn only_permanent_redirects_move_a_source() {
    let (addr, log) = feed_server();
    let site = Site::init();
    add_feeds(&site, addr, &[("moved", "/moved", true), ("temp", "/temp", true)]);
    let out = collect(&site, NOW);
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    log.lock().unwrap().clear();
    collect(&site, "2026-11-24T08:00:00Z");
    let paths: Vec<String> = log.lock().unwrap().iter().map(|(p, _)| p.clone()).collect();
    assert!(
        !paths.contains(&"/moved".to_string()),
        "301: the source now lives at /feed.xml: {paths:?}"
    );
    assert!(paths.contains(&"/temp".to_string()), "302: the source keeps its URL: {paths:?}");
}

fn add_feed_with(site: &Site, addr: SocketAddr, name: &str, extra: &str) {
    let mut text = std::fs::read_to_string(site.file("herald.toml")).unwrap();
    text.push_str(&format!(
        "\n[[sources]]\nname = \"{name}\"\nkind = \"feed\"\nurl = \"http://{addr}/feed.xml\"\nallow_private = true\n{extra}\n"
    ));
    std::fs::write(site.file("herald.toml"), text).unwrap();
}

/// The text part of the first message in the outbox.
fn digest_text(site: &Site) -> String {
    let files = site.outbox();
    let mail = crate::support::Mail::read(&files[0]);
    let text = mail.parsed().body_text(0).unwrap().into_owned();
    text
}

#[test]
fn a_new_source_does_not_flood_the_digest_with_its_back_catalogue() {
    let (addr, _log) = feed_server();
    let site = Site::init();
    add_feed_with(&site, addr, "harbour", "");
    let out = site.herald(&["run", "--now", NOW]);
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    let text = digest_text(&site);
    assert!(text.contains("Market day"), "the folder's articles are news: {text}");
    assert!(
        !text.contains("Second item") && !text.contains("Ferry & timetable"),
        "backfill = 0: {text}"
    );
    let feed = std::fs::read_to_string(site.file("public/feed.xml")).unwrap();
    assert!(
        feed.contains("Second item") && feed.contains("Ferry &amp; timetable"),
        "all go to the feeds"
    );

    let site = Site::init();
    add_feed_with(&site, addr, "harbour", "backfill = 1");
    assert!(site.herald(&["run", "--now", NOW]).status.success());
    let text = digest_text(&site);
    assert!(
        text.contains("Second item") && !text.contains("Ferry & timetable"),
        "the newest one only: {text}"
    );
}

#[test]
fn the_same_story_from_two_sources_appears_once() {
    let (addr, _log) = feed_server();
    let site = Site::init();
    add_feed_with(&site, addr, "one", "backfill = 10");
    add_feed_with(&site, addr, "two", "backfill = 10");
    let out = site.herald(&["run", "--now", NOW]);
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    let text = digest_text(&site);
    // Each article is a numbered heading: "3. Second item".
    let headings = text.lines().filter(|l| l.ends_with(". Second item")).count();
    assert_eq!(headings, 1, "{text}");
    assert!(stdout(&out).contains("6 article(s)"), "4 + 2 distinct: {}", stdout(&out));
    // The feeds hold it once too: every id in them is unique.
    let json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(site.file("public/feed.json")).unwrap()).unwrap();
    let titles: Vec<&str> =
        json["items"].as_array().unwrap().iter().filter_map(|i| i["title"].as_str()).collect();
    assert_eq!(titles.iter().filter(|t| **t == "Second item").count(), 1, "{titles:?}");
    let out = site.herald(&["check", "--feeds"]);
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
}

#[test]
fn filters_keep_or_drop_by_tag_and_title() {
    let (addr, _log) = feed_server();
    let site = Site::init();
    add_feed_with(&site, addr, "notransport", "exclude_tags = [\"Transport\"]");
    assert!(site.herald(&["collect", "--now", NOW]).status.success());
    assert!(site.herald(&["publish", "--now", NOW]).status.success());
    let feed = std::fs::read_to_string(site.file("public/feed.xml")).unwrap();
    assert!(feed.contains("Second item") && !feed.contains("Ferry &amp; timetable"), "{feed}");

    let site = Site::init();
    add_feed_with(&site, addr, "ferries", "title_pattern = \"(?i)^ferry\"");
    assert!(site.herald(&["collect", "--now", NOW]).status.success());
    assert!(site.herald(&["publish", "--now", NOW]).status.success());
    let feed = std::fs::read_to_string(site.file("public/feed.xml")).unwrap();
    assert!(!feed.contains("Second item") && feed.contains("Ferry &amp; timetable"), "{feed}");

    let site = Site::init();
    add_feed_with(&site, addr, "bad", "title_pattern = \"(unclosed\"");
    let out = site.herald(&["check"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stdout(&out).contains("title_pattern"), "{}", stdout(&out));
}

#[test]
fn entries_without_a_usable_link_keep_their_own_identity_and_page() {
    let (addr, _log) = feed_server();
    let site = Site::init();
    add_feeds(&site, addr, &[("notices", "/linkless", true)]);
    let mut text = std::fs::read_to_string(site.file("herald.toml")).unwrap();
    text.push_str("backfill = 10\n");
    std::fs::write(site.file("herald.toml"), text).unwrap();

    let out = site.herald(&["run", "--now", NOW]);
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    let summary = stdout(&out);
    assert!(summary.contains("7 new"), "4 from the folder, 3 from the feed: {summary}");
    assert!(summary.contains(": 7 article(s) for"), "none folded into another: {summary}");
    let digest = digest_text(&site);
    for title in
        ["Quay closed on Sunday", "Lost dog found at the fish market", "Bridge works start Monday"]
    {
        assert!(digest.contains(title), "{title}: {digest}");
    }

    // Each links to a page of herald's own, which exists.
    let json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(site.file("public/feed.json")).unwrap()).unwrap();
    let urls: Vec<&str> = json["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|item| item["url"].as_str())
        .filter(|url| url.starts_with("https://news.example.com/notices/"))
        .collect();
    assert_eq!(urls.len(), 3, "{urls:?}");
    for url in &urls {
        assert!(!url.contains("javascript"), "{url}");
        let path = url.strip_prefix("https://news.example.com/").unwrap();
        let page = site.file(&format!("public/{path}index.html"));
        assert!(page.is_file(), "{url}: no page at {}", page.display());
        assert!(digest.contains(url), "the digest links to {url}: {digest}");
    }
    assert!(urls.contains(&"https://news.example.com/notices/notice-2026-11-20/"), "{urls:?}");

    let out = site.herald(&["check", "--feeds"]);
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));

    // The same entries keep the same pages on the next collect.
    let out = site.herald(&["collect", "--now", "2026-11-24T08:00:00Z"]);
    assert!(stdout(&out).contains("0 new, 0 updated"), "{}", stdout(&out));
}

#[test]
fn a_warning_from_the_html_parser_names_the_source_and_entry() {
    let (addr, _log) = feed_server();
    let site = Site::init();
    add_feeds(&site, addr, &[("notices", "/linkless", true)]);
    let out = collect(&site, NOW);
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    let err = stderr(&out);
    // The first entry's text sits directly in a table, which the HTML
    // parser moves out of it ("foster parenting") with a warning.
    let warning = err.lines().find(|l| l.contains("foster parenting")).unwrap_or_else(|| {
        panic!("the parser's warning is shown: {err}");
    });
    assert!(
        warning.contains("source=\"notices\"") && warning.contains("notice-2026-11-20"),
        "{warning}"
    );
}

#[test]
fn an_unpublished_upstream_entry_stays_down_across_collects() {
    let (addr, _log) = feed_server();
    let site = Site::init();
    add_feeds(&site, addr, &[("notices", "/linkless", true), ("harbour", "/feed.xml", true)]);
    let out = site.herald(&["run", "--now", NOW]);
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    let list = stdout(&site.herald(&["articles", "list", "--source", "notices"]));
    assert!(list.contains("notices/notice-2026-11-20"), "{list}");
    let feed = || std::fs::read_to_string(site.file("public/feed.xml")).unwrap();
    let gone = || std::fs::read_to_string(site.file("public/.herald-gone")).unwrap_or_default();
    let page = site.file("public/notices/notice-2026-11-20/index.html");
    assert!(page.is_file() && feed().contains("Quay closed on Sunday"));

    // An entry with a page of herald's own: the page goes, and is listed as gone.
    for article in ["notices/notice-2026-11-20", "harbour/harbour-2026-001"] {
        let out = site.herald(&["articles", "unpublish", article, "--now", NOW]);
        assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
        assert!(stdout(&out).contains(&format!("unpublished {article}")), "{}", stdout(&out));
    }
    assert!(!feed().contains("Quay closed on Sunday") && !feed().contains("Ferry &amp; timetable"));
    assert!(!page.exists());
    // An entry that links upstream has no page here: nothing to list as gone.
    assert_eq!(gone(), "/notices/notice-2026-11-20/\n");

    // The next collects fetch both entries again; they stay down.
    for now in ["2026-11-24T08:00:00Z", "2026-11-25T07:00:00Z"] {
        let out = site.herald(&["run", "--now", now]);
        assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
        assert!(!feed().contains("Quay closed on Sunday"), "{now}");
        assert!(!feed().contains("Ferry &amp; timetable"), "{now}");
        assert!(!page.exists(), "{now}");
    }
    let all = stdout(&site.herald(&["articles", "list", "--all", "--source", "notices"]));
    let line = all.lines().find(|l| l.contains("notice-2026-11-20")).expect("listed with --all");
    assert!(line.contains("unpublished 2026-11-24"), "{line}");

    let out = site.herald(&["articles", "republish", "notices/notice-2026-11-20", "--now", NOW]);
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    assert!(feed().contains("Quay closed on Sunday") && page.is_file());
    assert_eq!(gone(), "");
}

/// The article titles of a rendered digest page, in order.
fn digest_titles(html: &str) -> Vec<String> {
    html.split("<h2")
        .skip(1)
        .filter_map(|h| h.split("</a>").next())
        .filter_map(|h| h.rsplit('>').next())
        .map(str::to_owned)
        .collect()
}

#[test]
fn the_preview_holds_what_compose_then_stores() {
    let (addr, _log) = feed_server();
    let site = Site::init();
    // The same stories through two sources: the edition holds them once.
    add_feed_with(&site, addr, "one", "backfill = 10");
    add_feed_with(&site, addr, "two", "backfill = 10");
    assert!(site.herald(&["collect", "--now", NOW]).status.success());
    let out = site.herald(&["compose", "--now", NOW, "--preview", "preview.html"]);
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    let preview = digest_titles(&std::fs::read_to_string(site.file("preview.html")).unwrap());
    let out = site.herald(&["compose", "--now", NOW, "--dry-run"]);
    assert!(stdout(&out).contains("would hold 6 article(s)"), "{}", stdout(&out));
    let out = site.herald(&["compose", "--now", NOW]);
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    let out = site.herald(&["compose", "--now", NOW, "--preview", "preview-after.html"]);
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    let composed =
        digest_titles(&std::fs::read_to_string(site.file("preview-after.html")).unwrap());
    assert_eq!(preview.len(), 6, "4 from the folder, 2 distinct from the feeds: {preview:?}");
    assert_eq!(preview, composed);

    // A list that would get no edition gets no preview either, and says why.
    let site = Site::init();
    let config = std::fs::read_to_string(site.file("herald.toml"))
        .unwrap()
        .replace("min_articles = 1", "min_articles = 9");
    std::fs::write(site.file("herald.toml"), config).unwrap();
    assert!(site.herald(&["collect", "--now", NOW]).status.success());
    let out = site.herald(&["compose", "--now", NOW, "--preview", "preview.html"]);
    let said = format!("{}{}", stdout(&out), stderr(&out));
    assert!(said.contains("min_articles = 9"), "{said}");
    assert!(!site.file("preview.html").exists(), "{said}");
    let out = site.herald(&["compose", "--now", NOW, "--dry-run"]);
    assert!(
        stdout(&out).contains("no edition (4 new article(s), fewer than min_articles = 9)"),
        "{}",
        stdout(&out)
    );
    let out = site.herald(&["compose", "--now", NOW]);
    assert!(stdout(&out).contains("fewer than min_articles = 9"), "{}", stdout(&out));
}
