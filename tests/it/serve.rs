//! `herald serve` over real HTTP on loopback: conditional GET, HEAD,
//! compression, content types, files changing under it, paths that try to
//! leave public/, and the feed audience it counts.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use crate::support::http::{get, request, Server};
use crate::support::{stdout, Site};

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

/// The soft limit on open files of this process (`/proc/self/limits`).
fn open_files_limit() -> usize {
    let limits = std::fs::read_to_string("/proc/self/limits").unwrap();
    let line = limits.lines().find(|l| l.starts_with("Max open files")).unwrap();
    line.split_whitespace().nth(3).and_then(|n| n.parse().ok()).unwrap_or(usize::MAX)
}

/// Whether the server has closed `stream` (end of file or a reset), waiting
/// until `deadline` at most.
fn closed_by_server(mut stream: &TcpStream, deadline: Instant) -> bool {
    let mut buf = [0u8; 4096];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return false;
        }
        stream.set_read_timeout(Some(left)).unwrap();
        match stream.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => continue, // an answer (a 408, say) before closing is fine
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return true,
            Err(_) => return false,
        }
    }
}

/// One request on a kept-alive connection; reads exactly the response.
fn keep_alive_request(stream: &mut TcpStream, addr: SocketAddr, path: &str) -> u16 {
    write!(stream, "GET {path} HTTP/1.1\r\nHost: {addr}\r\n\r\n").unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        stream.read_exact(&mut byte).expect("a response head");
        head.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&head).to_lowercase();
    let length: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .map(|v| v.trim().parse().unwrap())
        .unwrap_or(0);
    let mut body = vec![0u8; length];
    stream.read_exact(&mut body).unwrap();
    head.split_whitespace().nth(1).unwrap().parse().unwrap()
}

#[test]
fn slow_clients_are_cut_off_and_do_not_starve_other_readers() {
    // Each half-open connection below costs the test process a socket.
    let slow_clients = 500.min(open_files_limit().saturating_sub(100));
    assert!(slow_clients >= 300, "raise the open files limit (ulimit -n) to run this test");
    let site = site();
    // The server may hold 256 files open, like a service with a low
    // LimitNOFILE: without a cap and timeouts, a few hundred half-sent
    // requests use them all and nobody else gets in.
    let server = Server::start_with_open_files(
        &site,
        256,
        &[
            ("HERALD_WEB_HEADER_TIMEOUT_SECS", "2"),
            ("HERALD_WEB_IDLE_TIMEOUT_SECS", "2"),
            ("HERALD_WEB_MAX_CONNECTIONS", "100"),
        ],
    );
    let mut slow = Vec::new();
    for i in 0..slow_clients {
        let mut stream = TcpStream::connect_timeout(&server.addr, Duration::from_secs(10))
            .unwrap_or_else(|e| panic!("slow client {i} could not even connect: {e}"));
        // Half a request line, or nothing at all.
        if i % 2 == 0 {
            stream.write_all(b"GET /feed.xml HT").unwrap();
        }
        slow.push(stream);
    }
    // Readers still get the feed (each request waits at most REPLY_WITHIN).
    for _ in 0..20 {
        assert_eq!(get(server.addr, "/feed.xml").status, 200);
    }
    // A reader's kept-alive connection is answered, then closed when idle.
    let mut reader = TcpStream::connect(server.addr).unwrap();
    assert_eq!(keep_alive_request(&mut reader, server.addr, "/feed.xml"), 200);
    assert_eq!(keep_alive_request(&mut reader, server.addr, "/atom.xml"), 200);
    // Every slow client is disconnected by the server after the timeout.
    let deadline = Instant::now() + Duration::from_secs(60);
    let still_open = slow.iter().filter(|s| !closed_by_server(s, deadline)).count();
    assert_eq!(still_open, 0, "slow connections the server kept open:\n{}", server.log());
    assert!(closed_by_server(&reader, deadline), "an idle kept-alive connection stays open");
    server.stop();
}

#[test]
fn a_request_in_progress_at_shutdown_is_answered_before_the_server_exits() {
    let site = site();
    let server = Server::start(&site);
    let mut idle = TcpStream::connect(server.addr).unwrap();
    assert_eq!(keep_alive_request(&mut idle, server.addr, "/feed.xml"), 200);
    // A sign-up whose body is still on its way when the server is told to stop.
    let mut posting = TcpStream::connect(server.addr).unwrap();
    let body = "email=late%40example.com&list=daily";
    write!(
        posting,
        "POST /subscribe HTTP/1.1\r\nHost: {}\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\nExpect: 100-continue\r\n\r\n",
        server.addr,
        body.len(),
    )
    .unwrap();
    // "100 Continue": the server has the request and waits for its body.
    let mut continued = [0u8; 25];
    posting.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    posting.read_exact(&mut continued).unwrap();
    assert!(continued.starts_with(b"HTTP/1.1 100 Continue\r\n\r\n"), "{continued:?}");
    posting.write_all(&body.as_bytes()[..10]).unwrap();
    let mut half_sent = TcpStream::connect(server.addr).unwrap();
    half_sent.write_all(b"GET /feed.xml HT").unwrap();
    server.sigterm();
    // Well before the header and idle timeouts (10 s, 60 s).
    let deadline = Instant::now() + Duration::from_secs(5);
    assert!(closed_by_server(&idle, deadline), "an idle connection is closed at once");
    assert!(closed_by_server(&half_sent, deadline), "half a request is not waited for");
    posting.write_all(&body.as_bytes()[10..]).unwrap();
    let mut answer = String::new();
    let _ = posting.read_to_string(&mut answer);
    assert!(answer.starts_with("HTTP/1.1 "), "the request in progress was answered: {answer:?}");
    assert!(answer.to_lowercase().contains("connection: close"), "{answer}");
    assert!(server.exited_cleanly(Duration::from_secs(20)));
}

#[test]
fn odd_paths_are_404_and_never_flood_the_log() {
    let site = site();
    let server = Server::start_env(&site, &[("HERALD_LOG", "herald=debug")]);
    let long = format!("/{}", "a".repeat(5_000));
    let nested = format!("/{}/feed.xml", vec!["b".repeat(250); 20].join("/"));
    for path in
        ["/feed.xml/", "/feed.xml/index.html", "/blog/market-day/index.html/", &long, &nested]
    {
        let r = get(server.addr, path);
        assert_eq!(r.status, 404, "{}", &path[..path.len().min(40)]);
        assert_eq!(r.header("content-type"), Some("text/html; charset=utf-8"));
    }
    assert_eq!(get(server.addr, "/feed.xml").status, 200, "still serving");
    server.sigterm();
    let log = server.log();
    let longest = log.lines().map(str::len).max().unwrap_or(0);
    assert!(longest < 600, "a log line of {longest} characters:\n{}", &log[..log.len().min(2000)]);
}

#[test]
fn the_store_config_and_mail_are_never_served_even_from_inside_public() {
    let site = site();
    // An output_dir that overlaps the site: everything copied into public/.
    let secrets = [
        "herald.db",
        "herald.db-wal",
        "herald.db-shm",
        "herald.db-journal",
        "store.sqlite3",
        "herald.toml",
        "readers.csv",
        "subscribers/daily.csv",
        "outbox/0001.eml",
        "dkim.pem",
        "dkim.key",
        "templates/digest.html",
        "templates/web/base.html",
        "digest.tera",
        "herald.lock",
    ];
    for name in secrets {
        site.write(&format!("public/{name}"), "reader@example.com,secret\n");
    }
    site.write("public/notes.txt", "a public note\n");
    let server = Server::start(&site);
    for name in secrets {
        let r = get(server.addr, &format!("/{name}"));
        assert_eq!(r.status, 404, "{name}");
        assert!(!r.text().contains("secret"), "{name} leaked");
        assert_eq!(r.header("content-type"), Some("text/html; charset=utf-8"), "{name}");
    }
    assert_eq!(get(server.addr, "/HERALD.DB").status, 404);
    assert_eq!(get(server.addr, "/outbox/").status, 404);
    assert_eq!(get(server.addr, "/notes.txt").status, 200);
}

const NO_SCRIPTS: &str = "default-src 'none'; img-src * data:; media-src *; style-src 'self' 'unsafe-inline'; font-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'";

#[test]
fn files_from_public_carry_a_policy_that_forbids_scripts() {
    let site = Site::init();
    // An image with a script in it, among a source's files.
    site.write(
        "content/images/chart.svg",
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"10\" height=\"10\">\
         <script>fetch('/preferences?token=' + document.cookie)</script>\
         <rect width=\"10\" height=\"10\"/></svg>\n",
    );
    site.write("content/images/page.html", "<p>hi</p><script>alert(document.cookie)</script>\n");
    assert!(site.herald(&["run", "--now", "2026-11-24T07:00:00Z"]).status.success());
    let server = Server::start(&site);
    let r = get(server.addr, "/blog/images/chart.svg");
    assert_eq!((r.status, r.header("content-type")), (200, Some("image/svg+xml")));
    assert_eq!(
        r.header("content-security-policy"),
        Some(format!("{NO_SCRIPTS}; sandbox").as_str())
    );
    assert_eq!(r.header("x-content-type-options"), Some("nosniff"));
    for path in [
        "/blog/images/page.html",
        "/blog/market-day/",
        "/feed.xml",
        "/archive/",
        "/blog/images/quay.svg?x",
        "/missing.html",
        "/blog/market-day",
    ] {
        let r = get(server.addr, path);
        let policy = r.header("content-security-policy").unwrap_or_default();
        assert!(policy.starts_with(NO_SCRIPTS), "{path} ({}): {policy:?}", r.status);
        assert!(!policy.contains("script-src"), "{path}: {policy}");
        assert_eq!(r.header("x-content-type-options"), Some("nosniff"), "{path}");
    }
    // A 304 sends no policy of its own: a cache keeps the stored response's
    // headers, the policy among them, for any it does not send (RFC 9111
    // section 4.3.4), and never ends up with a weaker one.
    let full = get(server.addr, "/feed.xml");
    assert!(full.header("content-security-policy").is_some_and(|p| p.starts_with(NO_SCRIPTS)));
    let etag = full.header("etag").unwrap().to_string();
    let r = request(server.addr, "GET", "/feed.xml", &[("If-None-Match", &etag)]);
    assert_eq!(r.status, 304);
    assert_eq!(r.header("content-security-policy"), None);
}

#[test]
fn a_withdrawn_article_is_gone_for_good() {
    let site = site();
    let server = Server::start(&site);
    assert_eq!(get(server.addr, "/blog/market-day/").status, 200);
    // What publish writes when articles are retracted.
    site.write("public/.herald-gone", "/blog/ferry-timetable/\n/blog/market-day/\n");
    for path in [
        "/blog/market-day/",
        "/blog/market-day/index.html",
        "/blog/market-day",
        "/blog/market%2Dday/",
        "/blog/ferry-timetable/",
    ] {
        let r = get(server.addr, path);
        assert_eq!(r.status, 410, "{path}");
        assert_eq!(r.header("content-type"), Some("text/html; charset=utf-8"));
        assert_eq!(r.header("cache-control"), Some("public, max-age=60"));
        assert!(r.text().contains("withdrawn") && r.text().contains("href=\"/\""), "{}", r.text());
    }
    let r = request(server.addr, "HEAD", "/blog/market-day/", &[]);
    assert_eq!(r.status, 410);
    assert_eq!(get(server.addr, "/blog/harbour-lights/").status, 200, "others stay");
    assert_eq!(get(server.addr, "/blog/market-day/other.html").status, 404);
    assert_eq!(get(server.addr, "/.herald-gone").status, 404, "the list itself is hidden");
    // Taken off the list (a correction): served again at once.
    site.write("public/.herald-gone", "/blog/ferry-timetable/\n");
    assert_eq!(get(server.addr, "/blog/market-day/").status, 200);
    assert_eq!(get(server.addr, "/blog/ferry-timetable/").status, 410);
    site.write("public/.herald-gone", "");
    assert_eq!(get(server.addr, "/blog/ferry-timetable/").status, 200);
}

#[test]
fn a_file_too_big_for_the_cache_is_streamed_from_disk_with_its_validators() {
    let site = site();
    let file = std::fs::read(site.file("public/feed.xml")).unwrap();
    assert!(file.len() > 2_000, "the feed is {} bytes", file.len());
    // 32 kB of cache: files over 2 kB are not kept in memory.
    let server = Server::start_env(&site, &[("HERALD_WEB_CACHE_BYTES", "32000")]);
    let r = request(server.addr, "GET", "/feed.xml", &[("Accept-Encoding", "br, gzip")]);
    assert_eq!(r.status, 200);
    assert_eq!(r.body, file);
    assert_eq!(r.header("content-encoding"), None, "streamed as it is");
    assert_eq!(r.header("content-length"), Some(file.len().to_string().as_str()));
    assert_eq!(r.header("content-type"), Some("application/rss+xml"));
    let etag = r.header("etag").unwrap().to_string();
    assert!(etag.starts_with('"'), "a strong ETag: {etag}");
    let r = request(server.addr, "GET", "/feed.xml", &[("If-None-Match", &etag)]);
    assert_eq!(r.status, 304);
    let r = request(server.addr, "HEAD", "/feed.xml", &[]);
    assert_eq!((r.status, r.body.len()), (200, 0));
    assert_eq!(r.header("content-length"), Some(file.len().to_string().as_str()));
    // The same tag a server with room for it gives: it comes from the bytes.
    let roomy = Server::start(&site);
    assert_eq!(get(roomy.addr, "/feed.xml").header("etag"), Some(etag.as_str()));
}

#[test]
fn a_link_inside_public_never_leads_out_of_it() {
    let site = site();
    site.write("secret.txt", "reader@example.com,secret\n");
    site.write("public/notes.txt", "a public note\n");
    std::fs::create_dir_all(site.file("public/docs")).unwrap();
    // Links with innocent names: to a file outside public/, to a folder
    // outside it, and one that stays inside (which is fine).
    std::os::unix::fs::symlink(site.file("secret.txt"), site.file("public/innocent.txt")).unwrap();
    std::os::unix::fs::symlink(site.path(), site.file("public/docs/site")).unwrap();
    std::os::unix::fs::symlink(site.file("public/notes.txt"), site.file("public/again.txt"))
        .unwrap();
    let server = Server::start(&site);
    for path in ["/innocent.txt", "/docs/site/secret.txt"] {
        let r = get(server.addr, path);
        assert_eq!(r.status, 404, "{path}");
        assert!(!r.text().contains("secret"), "{path} leaked");
    }
    assert_eq!(get(server.addr, "/again.txt").status, 200);
}
