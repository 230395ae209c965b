//! The digest as a reader gets it, end to end through `herald run`:
//! typography kept as the writer wrote it, from a Markdown file to the feeds,
//! the article page and both parts of the mail.

use crate::support::{stderr, stdout, Mail, Site};

const DAY1: &str = "2026-11-24T07:00:00Z";

/// A headline with a no-break space (U+00A0) before the colon and the
/// guillemets' insides, and a narrow no-break space (U+202F) between a
/// number and its unit, as French typography asks.
const TITLE: &str = "Le port\u{a0}: le ferry de 7\u{202f}h reprend «\u{a0}dès lundi\u{a0}»";
const SUMMARY: &str = "Départ à 7\u{202f}h\u{a0}15, quai\u{a0}2.";
/// The article's text, which the HTML part shows whole.
const BODY: &str = "Le ferry reprend à 9\u{202f}h\u{a0}: «\u{a0}enfin\u{a0}».";

#[test]
fn no_break_spaces_in_a_headline_reach_feeds_page_and_mail_unchanged() {
    let site = Site::init();
    site.write(
        "content/typography.md",
        &format!(
            "+++\ntitle = \"{TITLE}\"\ndate = 2026-11-23T18:00:00Z\nsummary = \"{SUMMARY}\"\n+++\n\n{BODY}\n"
        ),
    );
    let out = site.herald(&["run", "--now", DAY1]);
    assert!(out.status.success(), "herald run failed:\n{}\n{}", stdout(&out), stderr(&out));

    for file in ["public/feed.xml", "public/atom.xml", "public/feed.json"] {
        let bytes = std::fs::read(site.file(file)).unwrap();
        let feed = feed_rs::parser::parse(&bytes[..]).unwrap_or_else(|e| panic!("{file}: {e}"));
        let titles: Vec<&str> =
            feed.entries.iter().filter_map(|e| e.title.as_ref()).map(|t| &*t.content).collect();
        assert!(titles.contains(&TITLE), "{file}: {titles:?}");
    }
    let page = std::fs::read_to_string(site.file("public/blog/typography/index.html")).unwrap();
    assert!(page.contains(TITLE), "the article page: {page}");
    // HTML may spell U+00A0 `&nbsp;` (the sanitiser writes the article's
    // text so), which every browser and mail client shows as the same
    // character.
    let page = page.replace("&nbsp;", "\u{a0}");
    assert!(page.contains(BODY), "the article page: {page}");

    let files = site.outbox();
    assert!(!files.is_empty(), "no mail in the outbox");
    for path in files {
        let mail = Mail::read(&path);
        let m = mail.parsed();
        let text = m.body_text(0).unwrap().into_owned();
        assert!(text.contains(TITLE), "the text part: {text}");
        assert!(text.contains(SUMMARY), "the text part: {text}");
        let html = m.body_html(0).unwrap().replace("&nbsp;", "\u{a0}");
        assert!(html.contains(TITLE), "the HTML part: {html}");
        assert!(html.contains(SUMMARY), "the HTML part: {html}");
    }
}

/// Six long articles (about 12 KB of text each) dated a day apart, the
/// newest last; each body ends with a sentence naming it.
fn long_articles(site: &Site) {
    let paragraph = "The harbour board met again to weigh the ferry timetable, the price of \
                     diesel and the state of the north pier. "
        .repeat(6);
    for day in 1..=6 {
        let body = (0..20).map(|_| paragraph.as_str()).collect::<Vec<_>>().join("\n\n");
        site.write(
            &format!("content/long-{day}.md"),
            &format!(
                "+++\ntitle = \"Long report {day}\"\ndate = 2026-11-24T0{day}:00:00Z\nsummary = \"Summary of report {day}.\"\n+++\n\n{body}\n\nEnd of report {day}.\n"
            ),
        );
    }
}

fn set_list_key(site: &Site, line: &str) {
    let config = std::fs::read_to_string(site.file("herald.toml")).unwrap();
    let anchor = "min_articles = 1\n";
    assert!(config.contains(anchor), "{config}");
    site.write("herald.toml", &config.replacen(anchor, &format!("{anchor}{line}\n"), 1));
}

#[test]
fn an_edition_over_max_html_kb_is_cut_to_fit_with_its_unsubscribe_link() {
    let site = Site::init();
    long_articles(&site);
    set_list_key(&site, "max_html_kb = 40\nfull_text = true");
    let out = site.herald(&["run", "--now", DAY1]);
    assert!(out.status.success(), "herald run failed:\n{}\n{}", stdout(&out), stderr(&out));
    let summary = stdout(&out);
    assert!(summary.contains("over max_html_kb = 40"), "the run says what it cut: {summary}");

    let files = site.outbox();
    assert_eq!(files.len(), 4, "{files:?}");
    for path in files {
        let mail = Mail::read(&path);
        let m = mail.parsed();
        let html = m.body_html(0).unwrap().into_owned();
        assert!(html.len() <= 40 * 1024, "the HTML part is {} bytes, over the cap", html.len());
        // The newest article whole; the oldest by its summary or left for the archive.
        assert!(html.contains("End of report 6."), "the newest article in full");
        assert!(!html.contains("End of report 1."), "the oldest article in full");
        assert!(
            html.contains("Summary of report 1.") || html.contains("more in the archive"),
            "the oldest article neither summarised nor pointed to"
        );
        let header = m.header_raw("List-Unsubscribe").unwrap();
        let header = header.split_whitespace().collect::<String>();
        let url = header.trim_start_matches('<').split('>').next().unwrap().replace('&', "&amp;");
        let at = html.find(&url).expect("the reader's unsubscribe link in the HTML part");
        assert!(at < 40 * 1024, "the unsubscribe link is past the cap");
        // The text part carries every kept article, its links listed.
        let text = m.body_text(0).unwrap().into_owned();
        assert!(text.contains(". Long report 6"), "{text}");
        assert!(text.contains("Read it: https://news.example.com/blog/long-6/"), "{text}");
    }
}

#[test]
fn with_full_text_and_no_cap_the_digest_carries_every_article_whole() {
    let site = Site::init();
    long_articles(&site);
    // By default a digest shows summaries: small mail, fast to send.
    assert!(site.herald(&["collect", "--now", DAY1]).status.success());
    let out = site.herald(&["compose", "--preview", "preview.html", "--now", DAY1]);
    assert!(out.status.success(), "{}", stderr(&out));
    let preview = std::fs::read_to_string(site.file("preview.html")).unwrap();
    assert!(!preview.contains("End of report 1."), "summaries only by default");
    assert!(preview.len() < 40 * 1024, "{} bytes", preview.len());

    set_list_key(&site, "full_text = true");
    let out = site.herald(&["run", "--now", DAY1]);
    assert!(out.status.success(), "herald run failed:\n{}\n{}", stdout(&out), stderr(&out));
    let mail = Mail::read(&site.outbox()[0]);
    let html = mail.parsed().body_html(0).unwrap().into_owned();
    for day in 1..=6 {
        assert!(html.contains(&format!("End of report {day}.")), "report {day} is not whole");
    }
}

#[test]
fn compose_and_check_warn_when_the_html_part_nears_gmails_clip() {
    let site = Site::init();
    long_articles(&site);
    set_list_key(&site, "full_text = true");
    // Ten articles of 12 KB: far over 90 KB, and no cap.
    for day in 7..=9 {
        let text = std::fs::read_to_string(site.file("content/long-1.md")).unwrap();
        site.write(
            &format!("content/long-{day}.md"),
            &text.replace("report 1", &format!("report {day}")),
        );
    }
    let out = site.herald(&["run", "--now", DAY1]);
    assert!(out.status.success(), "herald run failed:\n{}\n{}", stdout(&out), stderr(&out));
    let said = format!("{}{}", stdout(&out), stderr(&out));
    assert!(said.contains("list `daily`, edition 2026-11-24: the HTML part is"), "{said}");
    assert!(said.contains("Gmail clips"), "{said}");

    // herald check renders the sample: a template that is heavy by itself.
    let template = std::fs::read_to_string(site.file("templates/digest.html")).unwrap();
    let heavy = format!("<!-- {} -->\n</body>", "padding ".repeat(12_000));
    site.write("templates/digest.html", &template.replacen("</body>", &heavy, 1));
    let out = site.herald(&["check"]);
    let said = stdout(&out);
    assert!(said.contains("warning:") && said.contains("Gmail clips"), "{said}");
    assert!(said.contains("list `daily`"), "{said}");
}

#[test]
fn the_text_part_reads_on_its_own() {
    let site = Site::init();
    let out = site.herald(&["run", "--now", DAY1]);
    assert!(out.status.success(), "herald run failed:\n{}\n{}", stdout(&out), stderr(&out));
    let mail = Mail::read(&site.outbox()[0]);
    let text = mail.parsed().body_text(0).unwrap().into_owned();
    for line in text.lines() {
        assert!(line.chars().count() <= 78 || line.contains("://"), "a long line: {line:?}");
        for stray in ["<p", "</", "&amp;", "&nbsp;", "&#", "&quot;", "**"] {
            assert!(!line.contains(stray), "{stray:?} in the text part: {line:?}");
        }
    }
    // Every article is numbered, with its link.
    assert!(text.contains("1. Letters: the lighthouse, the bus, and a lost cat"), "{text}");
    assert!(text.contains("Read it: https://news.example.com/blog/market-day/"), "{text}");
}
