//! `herald init` then `herald run`, as a user does it: feeds, outbox mail,
//! reruns that send nothing twice, and new articles making a new edition.

use crate::support::{stderr, stdout, Mail, Site, SECRET};
use herald::subscribe::token::{self, Action};
use herald::subscribe::Secret;

const DAY1: &str = "2026-11-24T07:00:00Z";
const DAY2: &str = "2026-11-25T07:00:00Z";
const DAY3: &str = "2026-11-26T07:00:00Z";

fn run(site: &Site, now: &str) -> std::process::Output {
    let out = site.herald(&["run", "--now", now]);
    assert!(out.status.success(), "herald run failed:\n{}\n{}", stdout(&out), stderr(&out));
    out
}

#[test]
fn init_then_run_writes_feeds_and_one_mail_per_reader() {
    let site = Site::init();
    let out = run(&site, DAY1);
    let summary = stdout(&out);
    assert!(summary.contains("4 new"), "{summary}");
    assert!(summary.contains("4 sent"), "{summary}");

    // The three feeds parse as a feed reader reads them, with all four articles.
    for file in ["public/feed.xml", "public/atom.xml", "public/feed.json"] {
        let bytes = std::fs::read(site.file(file)).unwrap();
        let feed = feed_rs::parser::parse(&bytes[..]).unwrap_or_else(|e| panic!("{file}: {e}"));
        assert_eq!(feed.entries.len(), 4, "{file}");
        assert_eq!(
            feed.entries[0].title.as_ref().unwrap().content,
            "Letters: the lighthouse, the bus, and a lost cat"
        );
        for entry in &feed.entries {
            assert!(
                entry.links[0].href.starts_with("https://news.example.com/blog/"),
                "{file}: {:?}",
                entry.links
            );
        }
    }
    // The edition's archive page exists before its mail went out.
    let page =
        std::fs::read_to_string(site.file("public/archive/daily/2026-11-24/index.html")).unwrap();
    assert!(page.contains("Market day"), "{page}");
    assert!(site.file("public/archive/index.html").exists());
    // Article pages and the copied image exist where the links point.
    assert!(site.file("public/blog/market-day/index.html").exists());
    assert!(site.file("public/blog/images/quay.svg").exists());

    // One message per confirmed reader in the CSV.
    let files = site.outbox();
    assert_eq!(files.len(), 4, "{files:?}");
    let secret = Secret::new(SECRET.as_bytes().to_vec());
    let mut recipients = Vec::new();
    let mut message_ids = Vec::new();
    for path in &files {
        let mail = Mail::read(path);
        let m = mail.parsed();
        let to = m.to().and_then(|a| a.first()).expect("To");
        let address = to.address().unwrap().to_string();
        recipients.push(address.clone());
        assert!(to.name().is_some_and(|n| !n.is_empty()), "To has the reader's name");
        assert_eq!(
            m.from().and_then(|a| a.first()).and_then(|a| a.address()),
            Some("digest@news.example.com")
        );
        assert_eq!(
            m.reply_to().and_then(|a| a.first()).and_then(|a| a.address()),
            Some("editor@news.example.com")
        );
        assert!(m.date().is_some(), "Date");
        assert_eq!(m.subject(), Some("The Morning Digest, 2026-11-24: 4 new articles"));
        let message_id = m.message_id().expect("Message-ID").to_string();
        assert!(message_id.starts_with("herald.daily.20261124."), "{message_id}");
        message_ids.push(message_id.clone());
        assert_eq!(
            m.header_raw("List-Id").map(str::trim),
            Some("\"The Morning Digest\" <daily.news.example.com>")
        );
        assert_eq!(
            m.header_raw("List-Unsubscribe-Post").map(str::trim),
            Some("List-Unsubscribe=One-Click")
        );

        // Both parts, and this reader's own unsubscribe link in header and body.
        assert_eq!(m.text_body_count(), 1);
        assert_eq!(m.html_body_count(), 1);
        let text = m.body_text(0).unwrap().into_owned();
        let html = m.body_html(0).unwrap().into_owned();
        assert!(text.contains("Market day: chestnuts, quinces and «pão de Deus»"), "{text}");
        // "View in your browser" points at the edition's archive page.
        assert!(
            text.contains("In your browser: https://news.example.com/archive/daily/2026-11-24/"),
            "{text}"
        );
        assert!(
            html.contains("href=\"https://news.example.com/archive/daily/2026-11-24/\""),
            "web link in html"
        );
        assert!(html.contains("https://news.example.com/blog/market-day/"));
        let header =
            m.header_raw("List-Unsubscribe").unwrap().split_whitespace().collect::<String>();
        let url = header.trim_start_matches('<').split('>').next().unwrap().to_string();
        assert!(url.starts_with("https://news.example.com/unsubscribe?token=daily."), "{url}");
        assert!(text.contains(&url), "the text part carries the header's unsubscribe link");
        assert!(
            html.contains(&url.replace('&', "&amp;")),
            "the html part carries the header's unsubscribe link"
        );
        let token = url.split("token=").nth(1).unwrap();
        let unverified = token::parse(token).expect("a token");
        let subscriber = unverified.id;
        let key = crate::support::token_key(&site, subscriber);
        let claims = unverified
            .verify(&secret, Action::Unsubscribe, &key, 0)
            .expect("a token signed with the reader's key");
        assert_eq!(claims.lists, ["daily"]);
        assert!(
            message_id.contains(&format!(".{subscriber}@")),
            "token and Message-ID name the same reader"
        );
    }
    recipients.sort();
    assert_eq!(
        recipients,
        ["ada@example.com", "grace@example.org", "joao@example.net", "mei@example.com"]
    );
    message_ids.sort();
    message_ids.dedup();
    assert_eq!(message_ids.len(), 4, "every reader has a distinct Message-ID");
}

#[test]
fn reruns_send_nothing_twice_and_new_articles_make_the_next_edition() {
    let site = Site::init();
    run(&site, DAY1);
    let first = site.outbox();
    let first_bytes: Vec<Vec<u8>> = first.iter().map(|p| std::fs::read(p).unwrap()).collect();

    // Same day, nothing new: no edition, no mail, nothing rewritten.
    let out = run(&site, DAY1);
    assert!(stdout(&out).contains("0 sent"), "{}", stdout(&out));
    assert_eq!(site.outbox(), first);
    let again: Vec<Vec<u8>> = first.iter().map(|p| std::fs::read(p).unwrap()).collect();
    assert_eq!(again, first_bytes);

    // Next day, still nothing new: no edition (min_articles = 1).
    let out = run(&site, DAY2);
    assert!(stdout(&out).contains("no new articles"), "{}", stdout(&out));
    assert_eq!(site.outbox().len(), 4);

    // An edited article is updated in the feeds but is not new for the digest.
    let path = site.file("content/ferry-timetable.md");
    let edited = std::fs::read_to_string(&path).unwrap().replace("€2,40", "€2,50");
    std::fs::write(&path, edited).unwrap();
    let out = run(&site, DAY2);
    assert!(stdout(&out).contains("1 updated"), "{}", stdout(&out));
    assert_eq!(site.outbox().len(), 4);
    let feed = std::fs::read_to_string(site.file("public/feed.xml")).unwrap();
    assert!(feed.contains("€2,50"));

    // A new article: the next edition holds it alone.
    site.write(
        "content/storm-warning.md",
        "+++\ntitle = \"Storm warning for Thursday\"\ndate = 2026-11-25T16:00:00Z\n+++\nKeep the boats in.\n",
    );
    let out = run(&site, DAY3);
    assert!(stdout(&out).contains("1 new"), "{}", stdout(&out));
    let all = site.outbox();
    assert_eq!(all.len(), 8);
    let new: Vec<_> = all.iter().filter(|p| p.to_string_lossy().contains("20261126")).collect();
    assert_eq!(new.len(), 4);
    for path in new {
        let mail = Mail::read(path);
        let m = mail.parsed();
        let text = m.body_text(0).unwrap();
        assert!(text.contains("Storm warning for Thursday"));
        assert!(!text.contains("Market day"), "old articles are not sent again");
        assert_eq!(m.subject(), Some("The Morning Digest, 2026-11-26: 1 new article"));
    }
}

#[test]
fn status_reports_stages_sources_and_deliveries() {
    let site = Site::init();
    run(&site, DAY1);
    let out = site.herald(&["status"]);
    assert!(out.status.success());
    let text = stdout(&out);
    assert!(text.contains("collect"), "{text}");
    assert!(text.contains("blog") && text.contains("4 article(s)"), "{text}");
    assert!(text.contains("daily") && text.contains("4 confirmed reader(s)"), "{text}");
    assert!(text.contains("4 sent, 0 pending, 0 failed"), "{text}");
}

#[test]
fn templates_that_transform_reader_fields_are_rendered_per_reader() {
    // The digest is normally rendered once per edition and each reader's name
    // and link spliced in; a filter on the name rules that out, and herald
    // must notice and render each message on its own.
    let site = Site::init();
    site.write(
        "templates/digest.txt",
        "Dear {{ subscriber.name | default(value=\"reader\") | upper }}!\n{{ unsubscribe_url }}\n",
    );
    run(&site, DAY1);
    let texts: Vec<String> = site
        .outbox()
        .iter()
        .map(|p| Mail::read(p).parsed().body_text(0).unwrap().into_owned())
        .collect();
    assert!(texts.iter().any(|t| t.contains("Dear ADA LOVELACE!")), "{texts:?}");
    assert!(texts.iter().any(|t| t.contains("Dear JOÃO SILVA!")), "{texts:?}");
    assert!(texts.iter().all(|t| t.contains("https://news.example.com/unsubscribe?token=daily.")));
}

#[test]
fn a_branch_on_the_readers_address_is_taken_for_each_reader() {
    // The digest is rendered once with markers in place of the reader's
    // fields only when the templates write them as they are; a test on the
    // address must be decided for each reader, not once for the markers.
    let site = Site::init();
    let path = site.file("templates/digest.html");
    let html = std::fs::read_to_string(&path).unwrap().replacen(
        "<h1",
        "<p>{% if subscriber.email and subscriber.email is ending_with(\"example.org\") %}ORG{% else %}OTHER{% endif %}</p>\n<h1",
        1,
    );
    assert!(html.contains("ORG"));
    std::fs::write(&path, html).unwrap();
    let out = site.herald(&["-v", "run", "--now", DAY1]);
    let said = format!("{}{}", stdout(&out), stderr(&out));
    assert!(out.status.success(), "{said}");
    // The log says why each reader gets a render of their own.
    assert!(said.contains("digest.html: subscriber.email is tested with ending_with"), "{said}");
    let mut got = Vec::new();
    for path in site.outbox() {
        let mail = Mail::read(&path);
        let m = mail.parsed();
        let to = m.to().and_then(|a| a.first()).and_then(|a| a.address()).unwrap().to_owned();
        let html = m.body_html(0).unwrap().into_owned();
        let branch = if html.contains("<p>ORG</p>") {
            "ORG"
        } else if html.contains("<p>OTHER</p>") {
            "OTHER"
        } else {
            panic!("no branch for {to}: {html}")
        };
        got.push((to, branch));
    }
    got.sort();
    assert_eq!(
        got,
        [
            ("ada@example.com".to_owned(), "OTHER"),
            ("grace@example.org".to_owned(), "ORG"),
            ("joao@example.net".to_owned(), "OTHER"),
            ("mei@example.com".to_owned(), "OTHER"),
        ],
        "{said}"
    );
}

#[test]
fn every_digest_carries_a_preferences_link_and_the_postal_address() {
    let site = Site::init();
    let config = std::fs::read_to_string(site.file("herald.toml")).unwrap().replace(
        "templates_dir = \"templates\"",
        "templates_dir = \"templates\"\npostal_address = \"The Harbour Gazette, 12 Quay Street, 4400 Porto Novo\"",
    );
    std::fs::write(site.file("herald.toml"), config).unwrap();
    run(&site, DAY1);
    let secret = Secret::new(SECRET.as_bytes().to_vec());
    for path in site.outbox() {
        let mail = Mail::read(&path);
        let m = mail.parsed();
        for body in [m.body_text(0).unwrap().into_owned(), m.body_html(0).unwrap().into_owned()] {
            assert!(body.contains("12 Quay Street, 4400 Porto Novo"), "{body}");
            let at = body.find("https://news.example.com/preferences?token=").expect(&body);
            let link: String = body[at..]
                .chars()
                .take_while(|c| !c.is_whitespace() && *c != '"' && *c != '<')
                .collect();
            let token = link.split("token=").nth(1).unwrap().replace("%2A", "*");
            let unverified = token::parse(&token).expect("a token");
            let key = crate::support::token_key(&site, unverified.id);
            unverified
                .verify(&secret, Action::Preferences, &key, 0)
                .expect("the reader's own preferences link");
            // Beside the unsubscribe link.
            let unsubscribe = body.find("/unsubscribe?token=").expect("an unsubscribe link");
            assert!(at.abs_diff(unsubscribe) < 600, "{body}");
        }
    }
}

#[test]
fn check_warns_when_a_public_list_has_no_postal_address() {
    let site = Site::init();
    let out = site.herald(&["check"]);
    let said = format!("{}{}", stdout(&out), stderr(&out));
    assert!(said.contains("site.postal_address") && said.contains("daily"), "{said}");
    // A warning, not a failure: the site still runs.
    assert!(out.status.success(), "{said}");
    let config = std::fs::read_to_string(site.file("herald.toml"))
        .unwrap()
        .replace("[site]", "[site]\npostal_address = \"1 Quay Street, Porto Novo\"");
    std::fs::write(site.file("herald.toml"), config).unwrap();
    let out = site.herald(&["check"]);
    assert!(!stdout(&out).contains("postal_address"), "{}", stdout(&out));
}

#[test]
fn init_takes_the_sites_address_and_says_where_links_point_without_it() {
    let dir = tempfile::tempdir().unwrap();
    let out = crate::support::herald_in(
        dir.path(),
        &["init", "gazette", "--base-url", "https://gazette.example.org/news"],
        &[],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let config = std::fs::read_to_string(dir.path().join("gazette/herald.toml")).unwrap();
    assert!(config.contains("base_url = \"https://gazette.example.org/news/\""), "{config}");
    let out = crate::support::herald_in(&dir.path().join("gazette"), &["run", "--now", DAY1], &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    let mails = crate::support::files_in(&dir.path().join("gazette/outbox"), "eml");
    let text = Mail::read(&mails[0]).parsed().body_text(0).unwrap().into_owned();
    assert!(text.contains("https://gazette.example.org/news/blog/"), "{text}");

    // Without it, init says that links point at the example's address.
    let out = crate::support::herald_in(dir.path(), &["init", "other"], &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    let said = stdout(&out);
    assert!(said.contains("site.base_url") && said.contains("https://news.example.com/"), "{said}");
    // A bad address is a usage error that names it.
    let out =
        crate::support::herald_in(dir.path(), &["init", "third", "--base-url", "gazette"], &[]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("gazette"), "{}", stderr(&out));
    assert!(!dir.path().join("third").exists());
}

#[test]
fn a_broken_digest_template_stops_only_compose_and_deliver() {
    let site = Site::init();
    site.write("templates/digest.txt", "{{ list.name }\n");
    let out = site.herald(&["run", "--now", DAY1]);
    assert_eq!(out.status.code(), Some(1));
    let said = format!("{}{}", stdout(&out), stderr(&out));
    // Collect and publish ran.
    assert!(stdout(&out).contains("collected  4 new"), "{said}");
    assert!(stdout(&out).contains("published  feed.xml"), "{said}");
    assert!(
        site.file("public/feed.xml").exists()
            && site.file("public/blog/market-day/index.html").exists()
    );
    // Compose and deliver said why they did not.
    for stage in ["composed   FAILED", "delivered  FAILED"] {
        assert!(stdout(&out).contains(stage), "{said}");
    }
    assert!(said.contains("digest.txt:1"), "the template and its line: {said}");
    assert!(site.outbox().is_empty());
}

#[test]
fn an_unwritable_public_folder_stops_only_publish() {
    let site = Site::init();
    // A file where the folder should be: nothing can be written into it.
    site.write("public", "not a folder\n");
    let out = site.herald(&["run", "--now", DAY1]);
    assert_eq!(out.status.code(), Some(1));
    let said = format!("{}{}", stdout(&out), stderr(&out));
    assert!(stdout(&out).contains("collected  4 new"), "{said}");
    assert!(stdout(&out).contains("published  FAILED") && said.contains("public"), "{said}");
    assert!(stdout(&out).contains("composed   1 edition(s)"), "{said}");
    assert!(stdout(&out).contains("delivered  4 sent"), "{said}");
    assert_eq!(site.outbox().len(), 4);
}
