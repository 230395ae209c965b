//! `herald serve` over real HTTP on loopback: conditional GET, HEAD,
//! compression, content types, files changing under it, paths that try to
//! leave public/, and the feed audience it counts.

mod support;

use std::io::Read;

use support::http::{get, request, Server};
use support::{stdout, Site};

fn site() -> Site {
    let site = Site::init();
    let out = site.herald(&["run", "--now", "2026-11-24T07:00:00Z"]);
    assert!(out.status.success());
    site
}

#[test]
fn feeds_are_served_with_validators_types_and_cache_headers() {
    let site = site();
    let server = Server::start(&site);
    let file = std::fs::read(site.file("public/feed.xml")).unwrap();
    let r = get(server.addr, "/feed.xml");
    assert_eq!(r.status, 200);
    assert_eq!(r.body, file);
    assert_eq!(r.header("content-type"), Some("application/rss+xml"));
    assert_eq!(r.header("cache-control"), Some("public, max-age=300"));
    assert_eq!(r.header("content-length"), Some(file.len().to_string().as_str()));
    let etag = r.header("etag").unwrap().to_string();
    assert!(
        etag.starts_with('"') && etag.ends_with('"') && !etag.starts_with("W/"),
        "a strong ETag: {etag}"
    );
    let last_modified = r.header("last-modified").unwrap().to_string();

    for (path, kind) in [
        ("/atom.xml", "application/atom+xml"),
        ("/feed.json", "application/feed+json"),
        ("/blog/market-day/", "text/html; charset=utf-8"),
        ("/blog/images/quay.svg", "image/svg+xml"),
    ] {
        let r = get(server.addr, path);
        assert_eq!((r.status, r.header("content-type")), (200, Some(kind)), "{path}");
    }

    // Conditional requests (RFC 9110 section 13).
    let r = request(server.addr, "GET", "/feed.xml", &[("If-None-Match", &etag)]);
    assert_eq!(r.status, 304);
    assert!(r.body.is_empty());
    assert_eq!(r.header("etag"), Some(etag.as_str()));
    let r = request(server.addr, "GET", "/feed.xml", &[("If-None-Match", "\"something-else\"")]);
    assert_eq!(r.status, 200);
    let r = request(server.addr, "GET", "/feed.xml", &[("If-Modified-Since", &last_modified)]);
    assert_eq!(r.status, 304);
    let r = request(
        server.addr,
        "GET",
        "/feed.xml",
        &[("If-Modified-Since", "Sat, 01 Jan 2000 00:00:00 GMT")],
    );
    assert_eq!(r.status, 200);
    // If-None-Match wins over If-Modified-Since.
    let r = request(
        server.addr,
        "GET",
        "/feed.xml",
        &[("If-None-Match", "\"other\""), ("If-Modified-Since", &last_modified)],
    );
    assert_eq!(r.status, 200);

    // HEAD: the same headers, no body.
    let r = request(server.addr, "HEAD", "/feed.xml", &[]);
    assert_eq!(r.status, 200);
    assert!(r.body.is_empty());
    assert_eq!(r.header("etag"), Some(etag.as_str()));
    assert_eq!(r.header("content-length"), Some(file.len().to_string().as_str()));

    assert_eq!(request(server.addr, "POST", "/feed.xml", &[]).status, 405);
}

#[test]
fn compression_when_asked_and_a_distinct_etag_for_each_encoding() {
    let site = site();
    let server = Server::start(&site);
    let file = std::fs::read(site.file("public/atom.xml")).unwrap();
    let plain = get(server.addr, "/atom.xml");

    let r = request(server.addr, "GET", "/atom.xml", &[("Accept-Encoding", "gzip")]);
    assert_eq!(r.header("content-encoding"), Some("gzip"));
    assert_eq!(r.header("vary"), Some("Accept-Encoding"));
    let mut unzipped = Vec::new();
    flate2::read::GzDecoder::new(&r.body[..]).read_to_end(&mut unzipped).unwrap();
    assert_eq!(unzipped, file);
    assert!(r.body.len() < file.len());
    assert_ne!(r.header("etag"), plain.header("etag"));
    let gz_etag = r.header("etag").unwrap().to_string();
    let r = request(
        server.addr,
        "GET",
        "/atom.xml",
        &[("Accept-Encoding", "gzip"), ("If-None-Match", &gz_etag)],
    );
    assert_eq!(r.status, 304);

    let r = request(server.addr, "GET", "/atom.xml", &[("Accept-Encoding", "gzip, deflate, br")]);
    assert_eq!(r.header("content-encoding"), Some("br"));
    let mut unbrotli = Vec::new();
    brotli::BrotliDecompress(&mut &r.body[..], &mut unbrotli).unwrap();
    assert_eq!(unbrotli, file);

    let r = request(server.addr, "GET", "/atom.xml", &[("Accept-Encoding", "br;q=0, gzip;q=0")]);
    assert_eq!(r.header("content-encoding"), None);
    assert_eq!(r.body, file);
}

#[test]
fn a_republished_file_is_served_new_at_once() {
    let site = site();
    let server = Server::start(&site);
    let before = get(server.addr, "/feed.xml");
    site.write(
        "content/breaking.md",
        "+++\ntitle = \"Breaking: the ferry is early\"\ndate = 2026-11-24T09:00:00Z\n+++\nFor once.\n",
    );
    assert!(site.herald(&["run", "--now", "2026-11-24T09:30:00Z"]).status.success());
    let after = get(server.addr, "/feed.xml");
    assert!(String::from_utf8_lossy(&after.body).contains("Breaking: the ferry is early"));
    assert_ne!(after.header("etag"), before.header("etag"));
    let old = before.header("etag").unwrap();
    assert_eq!(request(server.addr, "GET", "/feed.xml", &[("If-None-Match", old)]).status, 200);
}

#[test]
fn nothing_outside_public_and_no_listings() {
    let site = site();
    // Something worth stealing, next to public/.
    site.write("secret.txt", "root:x:0:0\n");
    let server = Server::start(&site);
    for path in [
        "/../secret.txt",
        "/%2e%2e/secret.txt",
        "/%2E%2E%2Fsecret.txt",
        "/blog/../../secret.txt",
        "/blog/%2e%2e/%2e%2e/secret.txt",
        "/..%2fsecret.txt",
        "/..%5csecret.txt",
        "/%252e%252e/secret.txt",
        "/.%2e/secret.txt",
        "//secret.txt",
        "/herald.db",
        "/nope.xml",
    ] {
        let r = get(server.addr, path);
        assert_eq!(r.status, 404, "{path}");
        assert!(!String::from_utf8_lossy(&r.body).contains("root:x"), "{path} leaked a file");
        assert_eq!(r.header("content-type"), Some("text/html; charset=utf-8"), "{path}");
    }
    // A folder without an index is not listed.
    let r = get(server.addr, "/blog/images/");
    assert_eq!(r.status, 404);
    assert!(!String::from_utf8_lossy(&r.body).contains("quay.svg"));
    // A page's folder without the slash redirects to it.
    let r = get(server.addr, "/blog/market-day");
    assert_eq!(r.status, 308);
    assert_eq!(r.header("location"), Some("/blog/market-day/"));
}

#[test]
fn feed_readers_are_counted() {
    let site = site();
    let server = Server::start(&site);
    let agents = [
        "Feedly/1.0 (+http://www.feedly.com/fetcher.html; 462 subscribers; like FeedFetcher-Google)",
        "NewsBlur Feed Fetcher - 8 subscribers - https://www.newsblur.com/site/1/harbour",
        "Tiny Tiny RSS/22.08 (https://tt-rss.org/)",
        "NetNewsWire (RSS Reader; https://netnewswire.com/)",
        "NetNewsWire (RSS Reader; https://netnewswire.com/)",
    ];
    for agent in agents {
        assert_eq!(request(server.addr, "GET", "/feed.xml", &[("User-Agent", agent)]).status, 200);
    }
    // Pages are not feeds: not counted.
    request(server.addr, "GET", "/blog/market-day/", &[("User-Agent", "Mozilla/5.0")]);
    server.stop();
    let status = stdout(&site.herald(&["status"]));
    assert!(status.contains("about 472 reader(s)"), "{status}");
    assert!(status.contains("Feedly (feed.xml): 462 subscriber(s)"), "{status}");
    assert!(status.contains("2 other poller(s)"), "{status}");
}
