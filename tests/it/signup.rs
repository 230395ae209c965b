//! The subscription pages over real HTTP: double opt-in, confirmation,
//! one-click unsubscribe (RFC 8058), preferences, and every way in which a
//! visitor or a bot can get them wrong: forged, altered, expired and replayed
//! links, a missing CSRF cookie, the honeypot, rate limits, bad addresses,
//! enumeration, and 200 sign-ups at once.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use crate::support::http::{get, send, Reply, Server};
use crate::support::{stdout, Mail, Site, SECRET};
use herald::subscribe::token::{sign, Action};
use herald::subscribe::{Bearer, Secret};

/// A site and `herald serve` on it, with links in mail pointing at the server.
pub(super) fn serve(extra: &[(&str, &str)]) -> (Site, Server) {
    let site = Site::init();
    let server = Server::start_linked(&site, extra);
    (site, server)
}

/// A visitor with the form open: the cookie to send back and the CSRF field.
pub(super) struct Visitor {
    pub(super) cookie: String,
    pub(super) csrf: String,
}

pub(super) fn open_form(addr: SocketAddr) -> Visitor {
    let r = get(addr, "/subscribe");
    assert_eq!(r.status, 200);
    let set = r.header("set-cookie").expect("a CSRF cookie").to_string();
    let cookie = set.split(';').next().unwrap().to_string();
    let page = r.text();
    let at = page.find("name=\"csrf\" value=\"").expect("a CSRF field") + 19;
    let csrf = page[at..at + 32].to_string();
    Visitor { cookie, csrf }
}

pub(super) fn post_form(
    addr: SocketAddr,
    visitor: Option<&Visitor>,
    path: &str,
    fields: &[(&str, &str)],
) -> Reply {
    let mut body = url::form_urlencoded::Serializer::new(String::new());
    if let Some(v) = visitor {
        body.append_pair("csrf", &v.csrf);
    }
    for (k, v) in fields {
        body.append_pair(k, v);
    }
    let body = body.finish();
    let mut headers = vec![("Content-Type", "application/x-www-form-urlencoded")];
    let cookie;
    if let Some(v) = visitor {
        cookie = v.cookie.clone();
        headers.push(("Cookie", cookie.as_str()));
    }
    send(addr, "POST", path, &headers, body.as_bytes())
}

pub(super) fn subscribe(addr: SocketAddr, email: &str) -> Reply {
    let visitor = open_form(addr);
    post_form(
        addr,
        Some(&visitor),
        "/subscribe",
        &[("email", email), ("name", ""), ("list", "daily"), ("website", "")],
    )
}

pub(super) fn h1(r: &Reply) -> String {
    let page = r.text();
    let start = page.find("<h1>").map(|i| i + 4).unwrap_or(0);
    let end = page[start..].find("</h1>").map(|i| start + i).unwrap_or(start);
    page[start..end].to_string()
}

/// `herald subscribers list --list daily` as (email, status) lines.
fn members(site: &Site) -> String {
    stdout(&site.herald(&["subscribers", "export", "--list", "daily", "--all"]))
}

fn status_of(site: &Site, email: &str) -> Option<String> {
    members(site)
        .lines()
        .find(|l| l.starts_with(&format!("{email},")))
        .map(|l| l.split(',').nth(2).unwrap().to_string())
}

/// The confirmation mails in the outbox, waiting up to 5 s for `n` of them
/// (they are sent in the background).
pub(super) fn confirmations(site: &Site, n: usize) -> Vec<std::path::PathBuf> {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let found: Vec<_> = site
            .outbox()
            .into_iter()
            .filter(|p| p.file_name().unwrap().to_string_lossy().starts_with("confirm-"))
            .collect();
        if found.len() >= n || Instant::now() > deadline {
            return found;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Who the mails at `paths` are to.
pub(super) fn recipients(paths: &[std::path::PathBuf]) -> Vec<String> {
    paths
        .iter()
        .map(|p| {
            Mail::read(p).parsed().to().unwrap().first().unwrap().address().unwrap().to_string()
        })
        .collect()
}

/// The path and query of the link in a confirmation mail.
pub(super) fn confirm_link(path: &std::path::Path) -> String {
    let mail = Mail::read(path);
    let text = mail.parsed().body_text(0).unwrap().into_owned();
    let at = text.find("/confirm?token=").expect("a confirmation link");
    text[at..].split_whitespace().next().unwrap().to_string()
}

/// The path of subscriber `id`'s unsubscribe link for the list `daily`, as
/// their digests carry it.
fn unsubscribe_path(site: &Site, id: i64) -> String {
    let secret = Secret::new(SECRET.as_bytes().to_vec());
    let key = crate::support::token_key(site, id);
    let token = herald::subscribe::unsubscribe_token(&secret, "daily", Bearer { id, key: &key });
    format!("/unsubscribe?token={token}")
}

/// The subscriber a preferences link on a page is for.
fn reader_id(page: &str) -> i64 {
    preferences_link(page).split('.').nth(1).unwrap().parse().unwrap()
}

fn one_click(addr: SocketAddr, path: &str) -> Reply {
    send(
        addr,
        "POST",
        path,
        &[("Content-Type", "application/x-www-form-urlencoded")],
        b"List-Unsubscribe=One-Click",
    )
}

fn assert_security_headers(r: &Reply) {
    let csp = r.header("content-security-policy").unwrap_or_default();
    assert!(csp.contains("default-src 'none'") && csp.contains("frame-ancestors 'none'"), "{csp}");
    assert_eq!(r.header("x-content-type-options"), Some("nosniff"));
    assert_eq!(r.header("referrer-policy"), Some("no-referrer"));
    assert_eq!(r.header("cache-control"), Some("no-store"));
}

#[test]
fn a_reader_subscribes_confirms_and_leaves_with_one_click() {
    let (site, server) = serve(&[]);
    let addr = server.addr;
    let form = get(addr, "/subscribe");
    assert_security_headers(&form);
    let page = form.text();
    assert!(
        page.contains("<html lang=\"en\" dir=\"ltr\">") && page.contains("<label for=\"email\">"),
        "{page}"
    );
    assert!(page.contains("value=\"daily\" checked"), "the only public list is ticked: {page}");

    let r = subscribe(addr, "Reader@Example.org");
    assert_eq!((r.status, h1(&r).as_str()), (200, "Check your inbox"), "{}", r.text());
    assert_security_headers(&r);
    assert_eq!(status_of(&site, "reader@example.org").as_deref(), Some("pending"));

    let mails = confirmations(&site, 1);
    assert_eq!(mails.len(), 1);
    let mail = Mail::read(&mails[0]);
    let parsed = mail.parsed();
    assert_eq!(parsed.to().unwrap().first().unwrap().address(), Some("reader@example.org"));
    assert!(parsed.subject().unwrap().starts_with("Confirm your subscription"));
    let link = confirm_link(&mails[0]);

    let r = confirm(addr, &link);
    assert_eq!((r.status, h1(&r).as_str()), (200, "Subscription confirmed"), "{}", r.text());
    assert_security_headers(&r);
    assert_eq!(status_of(&site, "reader@example.org").as_deref(), Some("confirmed"));
    let id = reader_id(&r.text());
    // Confirming twice is harmless, and says so.
    let r = confirm(addr, &link);
    assert_eq!((r.status, h1(&r).as_str()), (200, "Already confirmed"));

    // The unsubscribe page only asks; a link scanner fetching it changes nothing.
    let unsubscribe = unsubscribe_path(&site, id);
    let r = get(addr, &unsubscribe);
    assert_eq!(r.status, 200);
    assert!(r.text().contains("List-Unsubscribe") && r.text().contains("One-Click"));
    assert_eq!(status_of(&site, "reader@example.org").as_deref(), Some("confirmed"));
    // RFC 8058: a POST with no cookie and no confirmation step.
    let r = one_click(addr, &unsubscribe);
    assert_eq!((r.status, h1(&r).as_str()), (200, "You are unsubscribed"), "{}", r.text());
    assert_eq!(status_of(&site, "reader@example.org").as_deref(), Some("unsubscribed"));
    // Replayed: still fine, nothing more happens.
    let r = one_click(addr, &unsubscribe);
    assert_eq!(r.status, 200);
    assert!(r.text().contains("had already left"), "{}", r.text());

    // An import does not bring the reader back; a new confirmation does.
    site.write("subscribers/daily.csv", "email,name\nreader@example.org,Reader\n");
    let out = site.herald(&["subscribers", "import", "subscribers/daily.csv", "--list", "daily"]);
    assert!(stdout(&out).contains("1 refused (unsubscribed)"), "{}", stdout(&out));
    server.stop();
}

#[test]
fn bad_links_change_nothing_and_explain() {
    let (site, server) = serve(&[]);
    let addr = server.addr;
    subscribe(addr, "ann@example.org");
    let link = confirm_link(&confirmations(&site, 1)[0]);
    let token = link.trim_start_matches("/confirm?token=");
    let parts: Vec<&str> = token.split('.').collect();
    let id: i64 = parts[1].parse().unwrap();
    let key = crate::support::signup_key(&site, id);
    let ann = Bearer { id, key: &key };
    let secret = Secret::new(SECRET.as_bytes().to_vec());
    let yesterday = chrono::Utc::now().timestamp() - 86_400;
    let expired = sign(&secret, Action::Confirm, &["daily"], ann, Some(yesterday));
    let wrong_secret = Secret::new(b"another secret that is long enough, really".to_vec());
    let bad = [
        ("/confirm?token=", "incomplete"),
        ("/confirm", "incomplete"),
        (&format!("/confirm?token=daily.{id}.{}.{}", parts[2], "0".repeat(32)), "altered"),
        (
            &format!(
                "/confirm?token=daily.{id}.{}.{}",
                parts[2].parse::<i64>().unwrap() + 1,
                parts[3]
            ),
            "altered",
        ),
        (&format!("/confirm?token={expired}"), "expired"),
        (
            &format!(
                "/confirm?token={}",
                sign(
                    &wrong_secret,
                    Action::Confirm,
                    &["daily"],
                    ann,
                    Some(yesterday + 10 * 86_400)
                )
            ),
            "altered",
        ),
        // A link for another action.
        (
            &format!(
                "/confirm?token={}",
                herald::subscribe::unsubscribe_token(&secret, "daily", ann)
            ),
            "altered",
        ),
        (&format!("/unsubscribe?token={token}"), "altered"),
        (&format!("/preferences?token={token}"), "altered"),
        // The same parameter twice.
        (&format!("/confirm?token={token}&token={token}"), "altered"),
    ];
    for (path, why) in bad {
        let r = get(addr, path);
        assert_eq!(r.status, 400, "{path}");
        let page = r.text();
        assert!(page.contains(why) && page.contains("Nothing was changed"), "{path}: {page}");
        assert!(page.contains("subscribe\">Subscribe again"), "offers to subscribe again: {page}");
        assert_security_headers(&r);
    }
    let r = one_click(addr, &format!("/unsubscribe?token=daily.{id}.{}", "ab".repeat(16)));
    assert_eq!(r.status, 400);
    // A link naming a sign-up that does not exist.
    let r = get(addr, &format!("/confirm?token=daily.{}.{}.{}", id + 1, parts[2], parts[3]));
    assert_eq!(r.status, 410, "{}", r.text());
    assert_eq!(status_of(&site, "ann@example.org").as_deref(), Some("pending"));
    server.stop();
}

#[test]
fn the_answer_is_the_same_for_known_unknown_and_suppressed_addresses() {
    let (site, server) = serve(&[]);
    let addr = server.addr;
    site.herald(&["subscribers", "add", "known@example.org", "--list", "daily"]);
    // A suppressed address: added, then forgotten at the reader's request.
    site.herald(&["subscribers", "add", "gone@example.org", "--list", "daily"]);
    let out = site.herald(&["subscribers", "forget", "gone@example.org"]);
    assert!(out.status.success());
    let answers: Vec<(u16, String)> = ["known@example.org", "new@example.org", "gone@example.org"]
        .iter()
        .map(|email| {
            let r = subscribe(addr, email);
            (r.status, r.text())
        })
        .collect();
    assert_eq!(answers[0], answers[1], "known and unknown addresses get the same page");
    assert_eq!(answers[1], answers[2], "and so does a suppressed one");
    // Mail went to the known and the new address, none to the forgotten one.
    // A clean stop sends what is queued: the outbox then holds every
    // confirmation mail the server will ever send.
    server.stop();
    let mut to = recipients(&confirmations(&site, 0));
    to.sort();
    assert_eq!(to, ["known@example.org", "new@example.org"]);
    assert!(!members(&site).contains("gone@example.org"), "a forgotten address stays forgotten");
}

#[test]
fn forms_need_their_cookie_and_bots_get_nothing() {
    let (site, server) = serve(&[]);
    let addr = server.addr;
    // No cookie, or a field that does not match it: 403, nothing stored.
    let r = post_form(addr, None, "/subscribe", &[("email", "a@example.org"), ("list", "daily")]);
    assert_eq!(r.status, 403);
    assert!(r.text().contains("The form had expired"), "{}", r.text());
    let mut visitor = open_form(addr);
    visitor.csrf = "0".repeat(32);
    let r = post_form(
        addr,
        Some(&visitor),
        "/subscribe",
        &[("email", "a@example.org"), ("list", "daily")],
    );
    assert_eq!(r.status, 403);
    // The honeypot: the answer of a success, and nothing stored or sent.
    let visitor = open_form(addr);
    let r = post_form(
        addr,
        Some(&visitor),
        "/subscribe",
        &[("email", "bot@example.org"), ("list", "daily"), ("website", "http://spam.example")],
    );
    assert_eq!((r.status, h1(&r).as_str()), (200, "Check your inbox"));
    // Bad addresses are refused before anything is stored, with the reason.
    let long = format!("{}@example.org", "a".repeat(250));
    for (email, why) in [
        ("not-an-address", "it has no"),
        (long.as_str(), "longer than 254"),
        ("a@localhost", "full domain"),
    ] {
        let visitor = open_form(addr);
        let r =
            post_form(addr, Some(&visitor), "/subscribe", &[("email", email), ("list", "daily")]);
        assert_eq!(r.status, 400, "{email}");
        assert!(r.text().contains(why), "{email}: {}", r.text());
        assert!(r.text().contains("role=\"alert\""));
    }
    // No list chosen.
    let visitor = open_form(addr);
    let r = post_form(addr, Some(&visitor), "/subscribe", &[("email", "b@example.org")]);
    assert_eq!(r.status, 400);
    assert!(r.text().contains("choose at least one list"), "{}", r.text());
    server.stop(); // sends what is queued
    assert!(confirmations(&site, 0).is_empty());
    assert_eq!(members(&site).lines().count(), 1, "only the header: {}", members(&site));
}

#[test]
fn rate_limits_answer_429_with_retry_after_and_one_mail_an_hour() {
    let (site, server) = serve(&[
        ("HERALD_WEB_SUBSCRIBE_PER_IP_PER_MINUTE", "4"),
        ("HERALD_WEB_SUBSCRIBE_PER_ADDRESS_PER_HOUR", "2"),
    ]);
    let addr = server.addr;
    // The same address twice: allowed, but only one confirmation mail.
    assert_eq!(subscribe(addr, "eve@example.org").status, 200);
    assert_eq!(subscribe(addr, "eve@example.org").status, 200);
    // A third time: over the address's allowance.
    let r = subscribe(addr, "eve@example.org");
    assert_eq!(r.status, 429);
    assert!(r.header("retry-after").is_some_and(|s| s.parse::<u64>().unwrap() > 0));
    // The client's fifth post in a minute: over its allowance.
    assert_eq!(subscribe(addr, "fay@example.org").status, 200);
    let r = subscribe(addr, "gus@example.org");
    assert_eq!(r.status, 429, "{}", r.text());
    assert!(r.header("retry-after").is_some());
    assert!(!members(&site).contains("gus@example.org"));
    server.stop(); // sends what is queued
    let mut to = recipients(&confirmations(&site, 0));
    to.sort();
    assert_eq!(to, ["eve@example.org", "fay@example.org"], "eve once, fay once");
}

#[test]
fn preferences_change_lists_or_leave_all() {
    let site = Site::init();
    let mut config = std::fs::read_to_string(site.file("herald.toml")).unwrap();
    config.push_str(
        "\n[[lists]]\nslug = \"weekly\"\nname = \"The Weekly Round-up\"\nschedule = \"0 0 8 * * Mon\"\n\n[[lists]]\nslug = \"staff\"\nname = \"Staff Notes\"\npublic = false\n",
    );
    std::fs::write(site.file("herald.toml"), config).unwrap();
    let server = Server::start_linked(&site, &[]);
    let addr = server.addr;
    let form = get(addr, "/subscribe").text();
    assert!(
        form.contains("The Weekly Round-up") && !form.contains("Staff Notes"),
        "only public lists: {form}"
    );

    let visitor = open_form(addr);
    let r = post_form(
        addr,
        Some(&visitor),
        "/subscribe",
        &[("email", "kim@example.org"), ("list", "daily"), ("list", "weekly"), ("list", "staff")],
    );
    assert_eq!(r.status, 200);
    let confirmed = confirm(addr, &confirm_link(&confirmations(&site, 1)[0]));
    assert!(
        confirmed.text().contains("The Morning Digest, The Weekly Round-up"),
        "{}",
        confirmed.text()
    );
    let page = confirmed.text();
    let at = page.find("/preferences?token=").unwrap();
    let preferences = page[at..].split('"').next().unwrap().to_string();
    let statuses = || {
        let all = stdout(&site.herald(&["subscribers", "list"]));
        all.lines()
            .filter(|l| l.contains("kim@example.org"))
            .map(str::to_owned)
            .collect::<Vec<_>>()
            .join("\n")
    };
    assert!(
        !statuses().contains("staff"),
        "a private list cannot be joined from the form: {}",
        statuses()
    );

    let page = get(addr, &preferences);
    assert_eq!(page.status, 200);
    assert_security_headers(&page);
    let set = page.header("set-cookie").unwrap().split(';').next().unwrap().to_string();
    let text = page.text();
    let at = text.find("name=\"csrf\" value=\"").unwrap() + 19;
    let visitor = Visitor { cookie: set, csrf: text[at..at + 32].to_string() };
    // Keep only the weekly list.
    let r = post_form(addr, Some(&visitor), &preferences, &[("list", "weekly"), ("do", "save")]);
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(r.text().contains("Saved."));
    let now = statuses();
    let line =
        |list: &str| now.lines().find(|l| l.starts_with(list)).unwrap_or_default().to_string();
    assert!(line("daily ").contains("unsubscribed"), "{now}");
    assert!(line("weekly ").contains("confirmed"), "{now}");
    // Without the CSRF cookie, nothing changes.
    let r = post_form(addr, None, &preferences, &[("do", "leave")]);
    assert_eq!(r.status, 403);
    assert_eq!(statuses(), now);
    // Leave every list.
    let r = post_form(addr, Some(&visitor), &preferences, &[("do", "leave")]);
    assert_eq!(r.status, 200);
    assert!(!statuses().contains("confirmed"), "{}", statuses());
    server.stop();
}

#[test]
fn two_hundred_simultaneous_signups_are_all_stored_once() {
    let (site, server) = serve(&[("HERALD_WEB_SUBSCRIBE_PER_IP_PER_MINUTE", "1000")]);
    let addr = server.addr;
    let visitor = open_form(addr);
    let barrier = std::sync::Arc::new(std::sync::Barrier::new(200));
    let threads: Vec<_> = (0..200)
        .map(|i| {
            let (cookie, csrf, barrier) =
                (visitor.cookie.clone(), visitor.csrf.clone(), barrier.clone());
            std::thread::spawn(move || {
                let visitor = Visitor { cookie, csrf };
                let email = format!("reader{i}@example.org");
                barrier.wait();
                let r = post_form(
                    addr,
                    Some(&visitor),
                    "/subscribe",
                    &[("email", &email), ("list", "daily")],
                );
                (r.status, r.text())
            })
        })
        .collect();
    for t in threads {
        let (status, body) = t.join().unwrap();
        assert_eq!(status, 200, "{body}");
    }
    let all = members(&site);
    let rows: Vec<&str> = all.lines().skip(1).collect();
    assert_eq!(rows.len(), 200, "{all}");
    assert!(rows.iter().all(|r| r.contains(",pending,web,")), "{all}");
    assert_eq!(confirmations(&site, 200).len(), 200);
    server.stop();
}

#[test]
fn check_renders_the_page_and_mail_templates() {
    let site = Site::init();
    site.write(
        "templates/web/unsubscribe.html",
        "{% extends \"web/base.html\" %}{% block main %}{{ nope.x }}{% endblock main %}",
    );
    site.write("templates/confirm.txt", "{{ confirm_link }}");
    let out = site.herald(&["check"]);
    assert_eq!(out.status.code(), Some(1));
    let said = format!("{}{}", stdout(&out), crate::support::stderr(&out));
    assert!(said.contains("web/unsubscribe.html") && said.contains("nope.x"), "{said}");
    assert!(said.contains("confirm.txt") && said.contains("confirm_link"), "{said}");
}

/// Follows a confirmation link as a reader does: opens it, then presses the
/// page's button when it has one.
pub(super) fn confirm(addr: SocketAddr, link: &str) -> Reply {
    let page = get(addr, link);
    if page.status == 200 && page.text().contains("<form method=\"post\"") {
        return send(
            addr,
            "POST",
            link,
            &[("Content-Type", "application/x-www-form-urlencoded")],
            b"",
        );
    }
    page
}

/// The preferences link on a page.
fn preferences_link(page: &str) -> String {
    let at = page.find("/preferences?token=").expect("a preferences link");
    page[at..].split('"').next().unwrap().replace("&amp;", "&")
}

#[test]
fn old_links_never_act_on_a_new_reader_after_forget() {
    let (site, server) = serve(&[]);
    let addr = server.addr;
    // Ann signs up and confirms; the page gives her the preferences link.
    subscribe(addr, "ann@example.org");
    let page = confirm(addr, &confirm_link(&confirmations(&site, 1)[0]));
    assert_eq!(h1(&page), "Subscription confirmed", "{}", page.text());
    let ann_preferences = preferences_link(&page.text());
    // Ann is forgotten at her request; Bob is added after her.
    assert!(site.herald(&["subscribers", "forget", "ann@example.org"]).status.success());
    let out = site.herald(&["subscribers", "add", "bob@example.org", "--list", "daily"]);
    assert!(out.status.success(), "{}", crate::support::stderr(&out));
    // Ann's old link shows nothing of Bob and cannot take him off the list.
    let r = get(addr, &ann_preferences);
    assert!(!r.text().contains("bob@example.org"), "Ann's link shows Bob: {}", r.text());
    assert!(!r.text().contains("Leave every list"), "{}", r.text());
    let visitor = open_form(addr);
    let r = post_form(addr, Some(&visitor), &ann_preferences, &[("do", "leave")]);
    assert!(!r.text().contains("bob@example.org"), "{}", r.text());
    assert_eq!(status_of(&site, "bob@example.org").as_deref(), Some("confirmed"));
    server.stop();
}

#[test]
fn an_old_confirmation_link_never_confirms_someone_else() {
    let (site, server) = serve(&[]);
    let addr = server.addr;
    subscribe(addr, "ann@example.org");
    let ann_link = confirm_link(&confirmations(&site, 1)[0]);
    assert!(site.herald(&["subscribers", "forget", "ann@example.org"]).status.success());
    // Cat signs up after Ann is gone, and never opens her own link.
    subscribe(addr, "cat@example.org");
    assert_eq!(confirmations(&site, 2).len(), 2);
    let r = confirm(addr, &ann_link);
    assert!(!r.text().contains("cat@example.org"), "{}", r.text());
    assert_eq!(
        status_of(&site, "cat@example.org").as_deref(),
        Some("pending"),
        "Ann's link confirmed Cat: {}",
        r.text()
    );
    server.stop();
}

#[test]
fn opening_a_confirmation_link_changes_nothing_until_its_button_is_pressed() {
    let (site, server) = serve(&[]);
    let addr = server.addr;
    subscribe(addr, "dan@example.org");
    let link = confirm_link(&confirmations(&site, 1)[0]);
    // A mail scanner fetching the link: a page with one button, nothing done.
    let page = get(addr, &link);
    assert_eq!(page.status, 200, "{}", page.text());
    assert_security_headers(&page);
    assert!(page.text().contains("<form method=\"post\""), "{}", page.text());
    assert_eq!(page.text().matches("<button").count(), 1, "{}", page.text());
    assert_eq!(status_of(&site, "dan@example.org").as_deref(), Some("pending"));
    let r = confirm(addr, &link);
    assert_eq!((r.status, h1(&r).as_str()), (200, "Subscription confirmed"), "{}", r.text());
    assert_eq!(status_of(&site, "dan@example.org").as_deref(), Some("confirmed"));
    server.stop();
}

#[test]
fn a_confirmation_link_does_not_bring_back_a_reader_who_left() {
    let (site, server) = serve(&[("HERALD_WEB_CONFIRM_MAIL_INTERVAL_MINUTES", "0")]);
    let addr = server.addr;
    // Eve confirms, then leaves; her old link does not bring her back.
    subscribe(addr, "eve@example.org");
    let link = confirm_link(&confirmations(&site, 1)[0]);
    assert_eq!(h1(&confirm(addr, &link)), "Subscription confirmed");
    let out = site.herald(&["subscribers", "remove", "eve@example.org", "--list", "daily"]);
    assert!(out.status.success(), "{}", crate::support::stderr(&out));
    let r = confirm(addr, &link);
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        status_of(&site, "eve@example.org").as_deref(),
        Some("unsubscribed"),
        "{}",
        r.text()
    );
    // Fay is removed by the operator before she confirms: the same.
    subscribe(addr, "fay@example.org");
    let fay = confirmations(&site, 2)
        .into_iter()
        .find(|p| {
            Mail::read(p).parsed().to().unwrap().first().unwrap().address()
                == Some("fay@example.org")
        })
        .expect("Fay's confirmation");
    let out = site.herald(&["subscribers", "remove", "fay@example.org", "--list", "daily"]);
    assert!(out.status.success(), "{}", crate::support::stderr(&out));
    confirm(addr, &confirm_link(&fay));
    assert_eq!(status_of(&site, "fay@example.org").as_deref(), Some("unsubscribed"));
    // Signing up again is new consent: Eve's new link brings her back.
    subscribe(addr, "eve@example.org");
    let mails = confirmations(&site, 3);
    let newest = mails
        .iter()
        .filter(|p| {
            Mail::read(p).parsed().to().unwrap().first().unwrap().address()
                == Some("eve@example.org")
        })
        .map(|p| confirm_link(p))
        .find(|l| *l != link)
        .expect("a second link for Eve");
    assert_eq!(h1(&confirm(addr, &newest)), "Subscription confirmed");
    assert_eq!(status_of(&site, "eve@example.org").as_deref(), Some("confirmed"));
    server.stop();
}

#[test]
fn malformed_requests_get_the_site_pages() {
    let (_site, server) = serve(&[]);
    let addr = server.addr;
    let r = get(addr, "/unsubscribe?token=a.1.00&token=b.2.00");
    assert_eq!(r.status, 400);
    assert_eq!(r.header("content-type"), Some("text/html; charset=utf-8"), "{}", r.text());
    assert!(r.text().contains("This link does not work"), "{}", r.text());
    assert_security_headers(&r);
    let big = vec![b'a'; 256 * 1024];
    let r = send(
        addr,
        "POST",
        "/subscribe",
        &[("Content-Type", "application/x-www-form-urlencoded")],
        &big,
    );
    assert_eq!(r.status, 413);
    assert_eq!(r.header("content-type"), Some("text/html; charset=utf-8"), "{}", r.text());
    assert_security_headers(&r);
    server.stop();
}

#[test]
fn unsubscribe_links_mailed_before_link_keys_still_work_for_their_readers() {
    // On SQLite whatever HERALD_TEST_STORE says: only SQLite stores were
    // ever made by the version before link keys.
    let site = Site::init_sqlite();
    // The store as the version before link keys left it, with one reader.
    let url = site.store_url();
    let old = [
        "INSERT INTO subscribers (id, email, created) VALUES (1, 'old@example.org', '2026-01-01T00:00:00.000000Z')",
        "INSERT INTO memberships VALUES ('daily', 1, 'confirmed', '2026-01-01T00:00:00.000000Z', 'csv')",
    ];
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(herald::store::create_at_version(url, 7, &old))
        .unwrap();
    let server = Server::start_linked(&site, &[]);
    // A link as that version made them: HMAC-SHA256 over action, list and id.
    let legacy = |action: &str, lists: &str| {
        use hmac::{Hmac, Mac};
        let mut mac = Hmac::<sha2::Sha256>::new_from_slice(SECRET.as_bytes()).unwrap();
        mac.update(format!("{action}\0{lists}\01").as_bytes());
        format!("{lists}.1.{}", hex::encode(&mac.finalize().into_bytes()[..16]))
    };
    // Only unsubscribing is honoured from such old links.
    let r = get(server.addr, &format!("/preferences?token={}", legacy("preferences", "*")));
    assert_eq!(r.status, 400, "{}", r.text());
    let r =
        one_click(server.addr, &format!("/unsubscribe?token={}", legacy("unsubscribe", "daily")));
    assert_eq!((r.status, h1(&r).as_str()), (200, "You are unsubscribed"), "{}", r.text());
    assert_eq!(status_of(&site, "old@example.org").as_deref(), Some("unsubscribed"));
    server.stop();
}

#[test]
fn the_front_page_leads_readers_to_the_feeds_and_the_form() {
    let site = Site::init();
    let server = Server::start_linked(&site, &[]);
    let base = format!("http://{}/", server.addr);
    let out = site.herald_env(&["run"], &[("HERALD_SITE_BASE_URL", &base)]);
    assert!(out.status.success(), "{}", crate::support::stderr(&out));
    let front = get(server.addr, "/");
    assert_eq!(front.status, 200, "{}", front.text());
    let page = front.text();
    for (kind, file) in [
        ("application/rss+xml", "feed.xml"),
        ("application/atom+xml", "atom.xml"),
        ("application/feed+json", "feed.json"),
    ] {
        assert!(
            page.contains(&format!("rel=\"alternate\" type=\"{kind}\""))
                && page.contains(&format!("href=\"{base}{file}\"")),
            "autodiscovery of {file}: {page}"
        );
    }
    assert!(page.contains("Market day"), "the latest articles: {page}");
    assert!(page.contains(&format!("href=\"{base}archive/\"")), "{page}");
    assert!(page.contains("<form method=\"get\" action=\"subscribe\">"), "{page}");
    // Article and archive pages link to the form too.
    for path in ["/blog/market-day/", "/archive/", "/archive/index.html"] {
        let r = get(server.addr, path);
        assert_eq!(r.status, 200, "{path}");
        assert!(r.text().contains(&format!("href=\"{base}subscribe\"")), "{path}: {}", r.text());
    }
    // The front page's form hands the address on to the real one.
    let r = get(server.addr, "/subscribe?email=ann%40example.org");
    assert!(r.text().contains("value=\"ann@example.org\""), "{}", r.text());
    server.stop();
}

#[test]
fn a_reader_may_sign_up_on_one_node_and_confirm_on_another() {
    // Two nodes of one PostgreSQL store, in the suite's PostgreSQL pass.
    if !crate::support::on_postgres() {
        return;
    }
    let a = Site::init();
    let b = Site::init_sqlite();
    let config = std::fs::read_to_string(b.file("herald.toml")).unwrap();
    let config =
        config.replace("url = \"sqlite://herald.db\"", &format!("url = \"{}\"", a.store_url()));
    std::fs::write(b.file("herald.toml"), config).unwrap();
    let addr_a = crate::support::free_port();
    let base = format!("http://{addr_a}/");
    let env = [("HERALD_SITE_BASE_URL", base.as_str())];
    let node_a = Server::start_env_at(&a, addr_a, &env);
    let node_b = Server::start_env(&b, &env);

    // Asked on both nodes: one confirmation mail, rationed through the store.
    assert_eq!(subscribe(node_a.addr, "ida@example.org").status, 200);
    assert_eq!(subscribe(node_b.addr, "ida@example.org").status, 200);
    node_a.stop(); // sends what is queued
    let mails = confirmations(&a, 1);
    assert_eq!(recipients(&mails), ["ida@example.org"]);
    // The link from node A's mail works on node B.
    let r = confirm(node_b.addr, &confirm_link(&mails[0]));
    assert_eq!((r.status, h1(&r).as_str()), (200, "Subscription confirmed"), "{}", r.text());
    node_b.stop();
    assert!(confirmations(&b, 0).is_empty(), "node B mailed nothing more");
    assert_eq!(status_of(&a, "ida@example.org").as_deref(), Some("confirmed"));
}

#[test]
fn a_reader_chooses_their_time_zone_on_the_preferences_page() {
    let site = Site::init();
    let config = std::fs::read_to_string(site.file("herald.toml")).unwrap();
    let local = config.replacen(
        "timezone = \"Europe/Lisbon\"",
        "timezone = \"Europe/Lisbon\"\nlocal_time = true",
        1,
    );
    assert_ne!(local, config, "the example list has a time zone");
    std::fs::write(site.file("herald.toml"), local).unwrap();
    let server = Server::start_linked(&site, &[]);
    let addr = server.addr;
    let visitor = open_form(addr);
    let r = post_form(
        addr,
        Some(&visitor),
        "/subscribe",
        &[("email", "tz@example.org"), ("list", "daily")],
    );
    assert_eq!(r.status, 200);
    let confirmed = confirm(addr, &confirm_link(&confirmations(&site, 1)[0]));
    let preferences = preferences_link(&confirmed.text());
    let id = reader_id(&confirmed.text());
    let zone =
        || crate::support::with_store(&site, async |store| store.time_zone(id).await.unwrap());

    let page = get(addr, &preferences);
    let text = page.text();
    assert!(text.contains("<select id=\"timezone\" name=\"timezone\""), "{text}");
    assert!(text.contains("<option>America/New_York</option>"), "{text}");
    let set = page.header("set-cookie").unwrap().split(';').next().unwrap().to_string();
    let at = text.find("name=\"csrf\" value=\"").unwrap() + 19;
    let visitor = Visitor { cookie: set, csrf: text[at..at + 32].to_string() };
    let save = |zone: &str| {
        let r = post_form(
            addr,
            Some(&visitor),
            &preferences,
            &[("list", "daily"), ("timezone", zone), ("do", "save")],
        );
        assert_eq!(r.status, 200, "{}", r.text());
        r.text()
    };
    let saved = save("America/New_York");
    assert_eq!(zone().as_deref(), Some("America/New_York"));
    assert!(saved.contains("<option selected>America/New_York</option>"), "shown as chosen");
    // A name that is not a zone changes nothing; empty is the list's own.
    save("Mars/Olympus_Mons");
    assert_eq!(zone().as_deref(), Some("America/New_York"));
    save("");
    assert_eq!(zone(), None);
    server.stop();

    // Without a list sent at each reader's hour, no zone is offered.
    std::fs::write(site.file("herald.toml"), config).unwrap();
    let server = Server::start_linked(&site, &[]);
    let text = get(server.addr, &preferences).text();
    assert!(text.contains("Your lists") && !text.contains("name=\"timezone\""), "{text}");
    server.stop();
}
