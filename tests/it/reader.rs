//! The reader's side beyond signing up, over real HTTP against `herald
//! serve`: the welcome mail after a confirmation, "email me a link to manage
//! my subscription", and click counts through the signed `/c/` redirect.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use crate::signup::{
    confirm, confirm_link, confirmations, h1, post_form, serve, subscribe, Visitor,
};
use crate::support::http::{get, request, send, Reply, Server};
use crate::support::{stdout, with_store, Mail, Site, SECRET};
use herald::subscribe::token::click_token;
use herald::subscribe::Secret;

/// The outbox's mails whose file name starts with `prefix`, waiting up to
/// 5 s for `n` of them (they are sent in the background).
fn mails(site: &Site, prefix: &str, n: usize) -> Vec<PathBuf> {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let found: Vec<_> = site
            .outbox()
            .into_iter()
            .filter(|p| p.file_name().unwrap().to_string_lossy().starts_with(prefix))
            .collect();
        if found.len() >= n || Instant::now() > deadline {
            return found;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The text part of a mail.
fn text_of(path: &std::path::Path) -> String {
    Mail::read(path).parsed().body_text(0).unwrap().into_owned()
}

/// The path and query of the first link in `text` that starts with `prefix`
/// (like `/preferences?token=`), wherever the server is.
fn link(text: &str, prefix: &str) -> String {
    let at = text.find(prefix).unwrap_or_else(|| panic!("no {prefix} link in:\n{text}"));
    text[at..].split_whitespace().next().unwrap().to_string()
}

/// Every link in `text` that starts with `prefix`, as path and query.
fn links(text: &str, prefix: &str) -> Vec<String> {
    text.match_indices(prefix)
        .map(|(at, _)| text[at..].split_whitespace().next().unwrap().to_string())
        .collect()
}

/// Whom a mail is to.
fn to(path: &std::path::Path) -> String {
    Mail::read(path).parsed().to().unwrap().first().unwrap().address().unwrap().to_string()
}

/// Opens a page with a form and takes its cookie and CSRF field.
fn open(addr: SocketAddr, path: &str) -> Visitor {
    let r = get(addr, path);
    assert_eq!(r.status, 200, "{}", r.text());
    let cookie = r.header("set-cookie").expect("a CSRF cookie").split(';').next().unwrap();
    let page = r.text();
    let at = page.find("name=\"csrf\" value=\"").expect("a CSRF field") + 19;
    Visitor { cookie: cookie.to_string(), csrf: page[at..at + 32].to_string() }
}

/// Presses a confirmation page's button (a POST to its link).
fn press(addr: SocketAddr, link: &str) -> Reply {
    send(addr, "POST", link, &[("Content-Type", "application/x-www-form-urlencoded")], b"")
}

fn ask_for_link(addr: SocketAddr, email: &str) -> Reply {
    let visitor = open(addr, "/manage");
    post_form(addr, Some(&visitor), "/manage", &[("email", email), ("website", "")])
}

#[test]
fn a_confirmed_reader_is_welcomed_once_with_links_that_work() {
    let (site, server) = serve(&[]);
    let addr = server.addr;
    // An edition in the archive for the welcome mail to point at.
    let out = site.herald(&["run"]);
    assert!(out.status.success(), "{}", crate::support::stderr(&out));
    let date = stdout(&out)
        .split("daily ")
        .nth(1)
        .map(|rest| rest[..10].to_string())
        .expect("today's edition in the summary");

    assert_eq!(subscribe(addr, "wren@example.org").status, 200);
    let confirmation = confirm_link(&confirmations(&site, 1)[0]);
    let r = confirm(addr, &confirmation);
    assert_eq!(h1(&r), "Subscription confirmed", "{}", r.text());
    let welcome = mails(&site, "welcome-", 1);
    assert_eq!(welcome.len(), 1);
    let mail = Mail::read(&welcome[0]);
    let parsed = mail.parsed();
    assert_eq!(to(&welcome[0]), "wren@example.org");
    assert_eq!(parsed.subject(), Some("Welcome to The Harbour Gazette"));
    let html = parsed.body_html(0).unwrap().into_owned();
    let text = text_of(&welcome[0]);
    assert!(text.contains("The Morning Digest"), "{text}");

    // The latest edition's page in the archive.
    let edition = link(&text, "/archive/daily/");
    assert_eq!(edition, format!("/archive/daily/{date}/"), "{text}");
    assert!(html.contains(&format!("{}archive/daily/{date}/", server.base())), "{html}");
    let page = get(addr, &edition);
    assert_eq!(page.status, 200);
    assert!(page.text().contains("The Morning Digest"), "{}", page.text());
    // The preferences page shows the reader's lists.
    let r = get(addr, &link(&text, "/preferences?token="));
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(r.text().contains("wren@example.org") && r.text().contains("value=\"daily\" checked"));
    // The unsubscribe link acts for this reader on this list.
    let unsubscribe = link(&text, "/unsubscribe?token=");
    let r = get(addr, &unsubscribe);
    assert_eq!(r.status, 200);
    assert!(r.text().contains("wren@example.org"), "{}", r.text());

    // The same confirmation link's button again, and once more after a
    // restart: still one welcome.
    assert_eq!(h1(&press(addr, &confirmation)), "Already confirmed");
    server.stop();
    let server = Server::start_linked(&site, &[]);
    assert_eq!(h1(&press(server.addr, &confirmation)), "Already confirmed");
    server.stop();
    assert_eq!(mails(&site, "welcome-", 0).len(), 1, "one welcome per confirmation");
}

#[test]
fn without_the_welcome_templates_no_welcome_is_sent() {
    let (site, server) = serve(&[]);
    std::fs::remove_file(site.file("templates/welcome.html")).unwrap();
    std::fs::remove_file(site.file("templates/welcome.txt")).unwrap();
    server.stop();
    let server = Server::start_linked(&site, &[]);
    let addr = server.addr;
    assert_eq!(subscribe(addr, "otto@example.org").status, 200);
    let r = confirm(addr, &confirm_link(&confirmations(&site, 1)[0]));
    assert_eq!(h1(&r), "Subscription confirmed");
    server.stop(); // sends what is queued
    assert!(mails(&site, "welcome-", 0).is_empty());
    // herald check is content without them, and names a half pair.
    assert!(site.herald(&["check"]).status.success());
    site.write("templates/welcome.txt", "Welcome, {{ email }}.");
    let out = site.herald(&["check"]);
    let said = format!("{}{}", stdout(&out), crate::support::stderr(&out));
    assert_eq!(out.status.code(), Some(1), "{said}");
    assert!(said.contains("welcome.txt") && said.contains("no welcome.html"), "{said}");
}

#[test]
fn check_renders_the_welcome_and_manage_templates() {
    let site = Site::init();
    assert!(site.herald(&["check"]).status.success(), "the example site's templates render");
    site.write("templates/welcome.html", "{% for l in lists %}{{ l.nope.x }}{% endfor %}");
    site.write("templates/manage.txt", "{{ manage_url }}");
    let out = site.herald(&["check"]);
    assert_eq!(out.status.code(), Some(1));
    let said = format!("{}{}", stdout(&out), crate::support::stderr(&out));
    assert!(said.contains("welcome.html") && said.contains("nope"), "{said}");
    assert!(said.contains("manage.txt") && said.contains("manage_url"), "{said}");
}

#[test]
fn a_manage_link_goes_to_known_addresses_alone_and_the_answer_never_says() {
    let (site, server) = serve(&[]);
    let addr = server.addr;
    site.herald(&["subscribers", "add", "known@example.org", "--list", "daily"]);
    site.herald(&["subscribers", "add", "gone@example.org", "--list", "daily"]);
    assert!(site.herald(&["subscribers", "forget", "gone@example.org"]).status.success());

    // The form: on /manage, on /preferences without a link, and linked from
    // the sign-up form.
    for path in ["/manage", "/preferences"] {
        let r = get(addr, path);
        assert_eq!(r.status, 200, "{path}");
        assert!(r.text().contains("action=\"manage\"") && r.text().contains("name=\"website\""));
    }
    assert!(get(addr, "/subscribe").text().contains("href=\"manage\""));

    let answers: Vec<(u16, String)> =
        ["known@example.org", "stranger@example.org", "gone@example.org"]
            .iter()
            .map(|email| {
                let r = ask_for_link(addr, email);
                (r.status, r.text())
            })
            .collect();
    assert_eq!(answers[0].0, 200, "{}", answers[0].1);
    assert_eq!(answers[0], answers[1], "known and unknown addresses get the same page");
    assert_eq!(answers[1], answers[2], "and so does a forgotten one");

    let sent = mails(&site, "manage-", 1);
    assert_eq!(sent.len(), 1);
    assert_eq!(to(&sent[0]), "known@example.org");
    let mail = Mail::read(&sent[0]);
    assert!(mail.parsed().subject().unwrap().contains("manage your subscription"));
    let text = text_of(&sent[0]);
    let r = get(addr, &link(&text, "/preferences?token="));
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(r.text().contains("known@example.org") && r.text().contains("value=\"daily\" checked"));

    // Rationed: a second request within the hour mails nothing, also from
    // a server started since (the time is kept in the store).
    assert_eq!(ask_for_link(addr, "known@example.org").status, 200);
    // Without the CSRF cookie: refused. The honeypot: the usual answer.
    let r = post_form(addr, None, "/manage", &[("email", "known@example.org")]);
    assert_eq!(r.status, 403);
    let visitor = open(addr, "/manage");
    let r = post_form(
        addr,
        Some(&visitor),
        "/manage",
        &[("email", "known@example.org"), ("website", "http://spam.example")],
    );
    assert_eq!((r.status, r.text()), answers[0]);
    server.stop();
    let server = Server::start_linked(&site, &[]);
    assert_eq!(ask_for_link(server.addr, "known@example.org").status, 200);
    server.stop(); // sends what is queued
    assert_eq!(mails(&site, "manage-", 0).len(), 1, "one manage mail an hour");

    // Another interval: mailed again.
    let server = Server::start_linked(&site, &[("HERALD_WEB_CONFIRM_MAIL_INTERVAL_MINUTES", "0")]);
    assert_eq!(ask_for_link(server.addr, "known@example.org").status, 200);
    assert_eq!(mails(&site, "manage-", 2).len(), 2);
    server.stop();
}

#[test]
fn manage_requests_share_the_forms_rate_limits() {
    let (site, server) = serve(&[
        ("HERALD_WEB_SUBSCRIBE_PER_IP_PER_MINUTE", "3"),
        ("HERALD_WEB_SUBSCRIBE_PER_ADDRESS_PER_HOUR", "2"),
    ]);
    let addr = server.addr;
    assert_eq!(ask_for_link(addr, "kit@example.org").status, 200);
    assert_eq!(ask_for_link(addr, "kit@example.org").status, 200);
    let r = ask_for_link(addr, "kit@example.org");
    assert_eq!(r.status, 429, "over the address's allowance: {}", r.text());
    assert!(r.header("retry-after").is_some());
    let r = ask_for_link(addr, "lee@example.org");
    assert_eq!(r.status, 429, "over the client's allowance: {}", r.text());
    // A bad address is said so, as on the sign-up form.
    server.stop();
    let server = Server::start_linked(&site, &[]);
    let visitor = open(server.addr, "/manage");
    let r = post_form(server.addr, Some(&visitor), "/manage", &[("email", "not-an-address")]);
    assert_eq!(r.status, 400);
    assert!(r.text().contains("role=\"alert\""), "{}", r.text());
    server.stop();
}

/// A site whose list `daily` counts clicks (`individual` as given), with
/// `herald serve` running and today's digest delivered into the outbox with
/// links to it.
fn tracking_site(individual: bool) -> (Site, Server) {
    let site = Site::init();
    set_tracking(&site, true, individual);
    let server = Server::start_linked(&site, &[]);
    let base = server.base();
    let out = site.herald_env(&["run"], &[("HERALD_SITE_BASE_URL", base.as_str())]);
    assert!(out.status.success(), "{}", crate::support::stderr(&out));
    (site, server)
}

fn set_tracking(site: &Site, on: bool, individual: bool) {
    let path = site.file("herald.toml");
    let config = std::fs::read_to_string(&path).unwrap();
    let config =
        config.replace("track_clicks = true\n", "").replace("individual = true\n", "").replacen(
            "min_articles = 1\n",
            &format!(
                "min_articles = 1\n{}{}",
                if on { "track_clicks = true\n" } else { "" },
                if individual { "individual = true\n" } else { "" }
            ),
            1,
        );
    std::fs::write(path, config).unwrap();
}

/// Each digest in the outbox: to whom, and its text part.
fn digests(site: &Site) -> Vec<(String, String)> {
    let mut all: Vec<(String, String)> = site
        .outbox()
        .iter()
        .filter(|p| Mail::read(p).parsed().subject().unwrap_or("").starts_with("The Morning"))
        .map(|p| (to(p), text_of(p)))
        .collect();
    all.sort();
    all
}

/// The clicks per article of the latest edition of `daily`, and its readers.
fn clicks(site: &Site) -> (Vec<i64>, i64) {
    with_store(site, async |store| {
        let editions = store.edition_clicks(&["daily"], 1).await.unwrap();
        let e = &editions[0];
        (e.articles.iter().map(|(_, n)| *n).collect(), e.readers)
    })
}

fn follow(addr: SocketAddr, path: &str) -> Reply {
    request(addr, "GET", path, &[])
}

#[test]
fn clicks_count_once_per_reader_and_the_redirect_goes_only_to_the_editions_articles() {
    let (site, server) = tracking_site(true);
    let addr = server.addr;
    let digests = digests(&site);
    assert_eq!(digests.len(), 4, "one digest per reader");
    let (ada, grace) = (&digests[0].1, &digests[1].1);
    let ada_links = links(ada, "/c/");
    assert_eq!(ada_links.len(), 4, "one click link per article: {ada}");
    // Never the unsubscribe or preferences links.
    assert!(ada.contains("/unsubscribe?token=") && ada.contains("/preferences?token="));
    assert!(!links(ada, "/c/").iter().any(|l| l.contains("unsubscribe")));
    // Each reader's links are their own.
    let grace_links = links(grace, "/c/");
    assert_ne!(ada_links[0], grace_links[0]);

    // A click goes to the article, as the store holds it for the edition.
    let r = follow(addr, &ada_links[0]);
    assert_eq!(r.status, 302, "{}", r.text());
    let target = r.header("location").unwrap().to_string();
    assert!(target.starts_with(&server.base()) && !target.contains("/c/"), "{target}");
    assert_eq!(get(addr, &target.replace(&server.base(), "/")).status, 200, "{target}");
    assert_eq!(r.header("cache-control"), Some("no-store"));

    // Ada clicks the first link three times, Grace once, nobody the others.
    follow(addr, &ada_links[0]);
    follow(addr, &ada_links[0]);
    follow(addr, &grace_links[0]);
    // A HEAD (a link checker) counts nothing.
    request(addr, "HEAD", &grace_links[1], &[]);
    let (counts, readers) = clicks(&site);
    assert_eq!(counts, [2, 0, 0, 0], "once per reader per link");
    assert_eq!(readers, 2);
    let status = stdout(&site.herald(&["status"]));
    assert!(status.contains("Clicks") && status.contains("2 click(s), 2 reader(s)"), "{status}");

    // No open redirect: a genuine token for an article outside the
    // edition, or for an edition that does not exist, leads nowhere.
    let parts: Vec<&str> = ada_links[0].trim_start_matches("/c/").split('.').collect();
    let edition: i64 = parts[0].parse().unwrap();
    let article: i64 = parts[1].parse().unwrap();
    // An article collected after the edition: in the store, not in it.
    site.write(
        "content/late.md",
        "+++\ntitle = \"Late news\"\ndate = 2026-11-20T10:00:00Z\n+++\n\nToo late for it.\n",
    );
    let base = server.base();
    let out = site.herald_env(&["collect"], &[("HERALD_SITE_BASE_URL", base.as_str())]);
    assert!(out.status.success(), "{}", crate::support::stderr(&out));
    let late = with_store(&site, async |store| {
        store.unconsidered_articles("daily").await.unwrap().first().expect("the late article").id
    });
    let secret = Secret::new(SECRET.as_bytes().to_vec());
    for (e, a) in [(edition, late), (edition, 10_000), (edition + 1, article)] {
        let r = follow(addr, &format!("/c/{}", click_token(&secret, e, a, None)));
        assert_eq!(r.status, 404, "{e}.{a}: {}", r.text());
        assert!(r.header("location").is_none());
    }
    // Altered links: another article, another reader, a URL, garbage.
    let second: &str = ada_links[1].trim_start_matches("/c/").split('.').nth(1).unwrap();
    let other_article = ada_links[0].replacen(&format!(".{article}."), &format!(".{second}."), 1);
    let reader = parts[2];
    let other_reader =
        ada_links[0].replacen(&format!(".{reader}."), &format!(".{}.", grace_reader(grace)), 1);
    for bad in [
        other_article,
        other_reader,
        "/c/https:%2F%2Fevil.example%2F".to_string(),
        "/c/1.2.3.4.5".to_string(),
        "/c/".to_string(),
    ] {
        let r = follow(addr, &bad);
        assert!(matches!(r.status, 400 | 404), "{bad}: {}", r.status);
        assert!(r.header("location").is_none(), "{bad}");
    }
    assert_eq!(clicks(&site), (vec![2, 0, 0, 0], 2), "nothing counted by refused links");

    // Forgetting a reader takes their clicks; their old link still leads
    // to its article and counts nothing.
    assert!(site.herald(&["subscribers", "forget", "ada@example.com"]).status.success());
    let r = follow(addr, &ada_links[0]);
    assert_eq!((r.status, r.header("location")), (302, Some(target.as_str())));
    assert_eq!(clicks(&site), (vec![1, 0, 0, 0], 1));
    server.stop();
}

/// The reader id in a digest's click links.
fn grace_reader(text: &str) -> String {
    links(text, "/c/")[0].trim_start_matches("/c/").split('.').nth(2).unwrap().to_string()
}

#[test]
fn without_individual_clicks_are_a_plain_count_and_nothing_is_recorded_when_tracking_is_off() {
    let (site, server) = tracking_site(false);
    let addr = server.addr;
    let digests = digests(&site);
    let second = links(&digests[0].1, "/c/")[1].clone();
    // The same link for every reader, and no reader in it.
    assert_eq!(links(&digests[1].1, "/c/")[1], second);
    assert_eq!(second.trim_start_matches("/c/").split('.').count(), 3, "{second}");
    assert_eq!(follow(addr, &second).status, 302);
    assert_eq!(follow(addr, &second).status, 302);
    assert_eq!(clicks(&site), (vec![0, 2, 0, 0], 0), "a plain counter; no reader recorded");
    server.stop();

    // Tracking turned off: old links still lead to their article, and
    // nothing is counted.
    set_tracking(&site, false, false);
    let server = Server::start_linked(&site, &[]);
    let r = follow(server.addr, &second);
    assert_eq!(r.status, 302);
    assert_eq!(clicks(&site), (vec![0, 2, 0, 0], 0));
    assert!(!stdout(&site.herald(&["status"])).contains("Clicks"));
    server.stop();

    // A list that does not count clicks mails the articles' own links.
    let plain = Site::init();
    let server = Server::start_linked(&plain, &[]);
    let base = server.base();
    let out = plain.herald_env(&["run"], &[("HERALD_SITE_BASE_URL", base.as_str())]);
    assert!(out.status.success(), "{}", crate::support::stderr(&out));
    let digests = self::digests(&plain);
    assert_eq!(digests.len(), 4);
    for (_, text) in &digests {
        assert!(!text.contains("/c/"), "{text}");
        assert!(text.contains(&format!("{}blog/", server.base())), "{text}");
    }
    server.stop();
    let (counts, readers) = clicks(&plain);
    assert!(counts.iter().all(|n| *n == 0) && readers == 0);
}
