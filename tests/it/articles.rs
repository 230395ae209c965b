//! The life of a `dir` article after it is published, through the real
//! binary: a slug stays with the file that claimed it first, a deleted or
//! drafted file takes its article down (feeds, page, `.herald-gone`) and
//! brings it back when it returns, a file with broken front matter takes
//! nothing down, and `herald articles` shows what is published.

use crate::support::{stderr, stdout, Site};

const DAY1: &str = "2026-11-24T07:00:00Z";
const DAY2: &str = "2026-11-25T07:00:00Z";
const DAY3: &str = "2026-11-26T07:00:00Z";
const DAY4: &str = "2026-11-27T07:00:00Z";

const FEEDS: [&str; 3] = ["public/feed.xml", "public/atom.xml", "public/feed.json"];

fn run(site: &Site, now: &str) -> std::process::Output {
    site.herald(&["run", "--now", now])
}

fn run_ok(site: &Site, now: &str) -> std::process::Output {
    let out = run(site, now);
    assert!(out.status.success(), "herald run failed:\n{}\n{}", stdout(&out), stderr(&out));
    out
}

fn read(site: &Site, rel: &str) -> String {
    std::fs::read_to_string(site.file(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

/// The lines of `public/.herald-gone` (none when the file is missing).
fn gone(site: &Site) -> Vec<String> {
    std::fs::read_to_string(site.file("public/.herald-gone"))
        .unwrap_or_default()
        .lines()
        .map(str::to_owned)
        .collect()
}

fn in_feeds(site: &Site, needle: &str) -> Vec<bool> {
    FEEDS.iter().map(|f| read(site, f).contains(needle)).collect()
}

fn listed(site: &Site, args: &[&str]) -> String {
    let mut all = vec!["articles", "list"];
    all.extend_from_slice(args);
    let out = site.herald(&all);
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    stdout(&out)
}

#[test]
fn a_new_file_cannot_take_a_published_slug() {
    let site = Site::init();
    run_ok(&site, DAY1);
    let page = read(&site, "public/blog/market-day/index.html");
    let feeds: Vec<String> = FEEDS.iter().map(|f| read(&site, f)).collect();

    // A newcomer that sorts before market-day.md claims its slug.
    site.write(
        "content/a-new.md",
        "+++\ntitle = \"Impostor\"\ndate = 2026-11-24\nslug = \"market-day\"\n+++\nNot the market.\n",
    );
    let out = run(&site, DAY2);
    assert_eq!(out.status.code(), Some(1), "a refused file is a problem");
    let err = stderr(&out);
    let newcomer = site.file("content/a-new.md");
    let line = err
        .lines()
        .find(|l| l.contains("market-day") && l.contains("a-new.md"))
        .unwrap_or_else(|| panic!("the warning names the new file: {err}"));
    assert!(line.contains(&format!("{}:4:", newcomer.display())), "its slug line: {line}");
    assert!(line.contains("market-day.md"), "and the file that owns the slug: {line}");
    assert_eq!(read(&site, "public/blog/market-day/index.html"), page, "the page is untouched");
    for (file, before) in FEEDS.iter().zip(&feeds) {
        assert_eq!(&read(&site, file), before, "{file} is untouched");
    }

    // Once the owner is gone, the slug is free: the first claimant takes it.
    std::fs::remove_file(site.file("content/market-day.md")).unwrap();
    let out = run_ok(&site, DAY3);
    assert!(!stderr(&out).contains("market-day"), "{}", stderr(&out));
    let page = read(&site, "public/blog/market-day/index.html");
    assert!(page.contains("Impostor"), "{page}");
    assert!(gone(&site).is_empty(), "the page lives on: {:?}", gone(&site));
}

#[test]
fn a_deleted_file_takes_its_article_down_until_it_comes_back() {
    let site = Site::init();
    run_ok(&site, DAY1);
    assert_eq!(in_feeds(&site, "/blog/market-day/"), [true, true, true]);
    assert!(listed(&site, &[]).contains("blog/market-day"));
    let text = read(&site, "content/market-day.md");

    std::fs::remove_file(site.file("content/market-day.md")).unwrap();
    let out = run_ok(&site, DAY2);
    assert!(stdout(&out).contains("1 retracted"), "{}", stdout(&out));
    assert_eq!(in_feeds(&site, "/blog/market-day/"), [false, false, false], "out of every feed");
    assert!(!site.file("public/blog/market-day/index.html").exists(), "its page is removed");
    assert!(!site.file("public/blog/market-day").exists(), "and its empty folder");
    assert_eq!(gone(&site), ["/blog/market-day/"]);
    assert!(!listed(&site, &[]).contains("blog/market-day"));
    let all = listed(&site, &["--all"]);
    let line = all.lines().find(|l| l.contains("blog/market-day")).expect("listed with --all");
    assert!(line.contains("deleted") && line.contains("2026-11-25"), "why and when: {line}");
    let out = site.herald(&["check", "--feeds"]);
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    // The edition it went out in no longer shows it on the web.
    let edition = read(&site, "public/archive/daily/2026-11-24/index.html");
    assert!(!edition.contains("Market day") && !edition.contains("/blog/market-day/"), "{edition}");
    assert!(edition.contains("The harbour lights come back on"), "the others stay: {edition}");
    assert!(edition.contains("1 article of this edition was withdrawn"), "{edition}");

    // It comes back with its file, and is not news again.
    site.write("content/market-day.md", &text);
    let out = run_ok(&site, DAY3);
    assert!(stdout(&out).contains("1 back"), "{}", stdout(&out));
    assert!(stdout(&out).contains("no edition (no new articles)"), "{}", stdout(&out));
    assert_eq!(in_feeds(&site, "/blog/market-day/"), [true, true, true]);
    assert!(site.file("public/blog/market-day/index.html").exists());
    assert!(gone(&site).is_empty(), "{:?}", gone(&site));
    assert!(listed(&site, &[]).contains("blog/market-day"));
    let edition = read(&site, "public/archive/daily/2026-11-24/index.html");
    assert!(edition.contains("Market day") && !edition.contains("withdrawn"), "{edition}");
}

#[test]
fn a_retracted_article_never_goes_into_a_later_edition() {
    let site = Site::init();
    run_ok(&site, DAY1);
    site.write(
        "content/late.md",
        "+++\ntitle = \"Late news\"\ndate = 2026-11-24T20:00:00Z\n+++\nText.\n",
    );
    let out = site.herald(&["collect", "--now", "2026-11-24T21:00:00Z"]);
    assert!(stdout(&out).contains("1 new"), "{}", stdout(&out));
    std::fs::remove_file(site.file("content/late.md")).unwrap();
    let out = run_ok(&site, DAY2);
    assert!(stdout(&out).contains("no edition (no new articles)"), "{}", stdout(&out));
    assert_eq!(gone(&site), ["/blog/late/"]);
}

#[test]
fn a_draft_comes_down_and_a_broken_file_keeps_its_article() {
    let site = Site::init();
    run_ok(&site, DAY1);
    let market = read(&site, "content/market-day.md");
    let lights = read(&site, "content/harbour-lights.md");

    site.write("content/market-day.md", &market.replacen("+++\n", "+++\ndraft = true\n", 1));
    // Broken front matter: the file is skipped, its article stays up.
    site.write(
        "content/harbour-lights.md",
        &lights.replacen("date = ", "date = \"someday\"\nx = ", 1),
    );
    let out = run(&site, DAY2);
    assert_eq!(out.status.code(), Some(1), "the broken file is a problem");
    assert!(stderr(&out).contains("harbour-lights.md"), "{}", stderr(&out));
    assert_eq!(in_feeds(&site, "/blog/market-day/"), [false, false, false]);
    assert!(!site.file("public/blog/market-day/index.html").exists());
    assert_eq!(
        in_feeds(&site, "/blog/harbour-lights/"),
        [true, true, true],
        "the broken file's article"
    );
    assert!(site.file("public/blog/harbour-lights/index.html").exists());
    assert_eq!(gone(&site), ["/blog/market-day/"]);
    let all = listed(&site, &["--all"]);
    let line = all.lines().find(|l| l.contains("blog/market-day")).expect("listed with --all");
    assert!(line.contains("draft"), "{line}");

    // A source folder that is missing takes nothing down.
    std::fs::rename(site.file("content"), site.file("content-away")).unwrap();
    let out = run(&site, DAY3);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert_eq!(in_feeds(&site, "/blog/harbour-lights/"), [true, true, true]);
    assert_eq!(gone(&site), ["/blog/market-day/"]);
    std::fs::rename(site.file("content-away"), site.file("content")).unwrap();

    // draft = false again, the front matter mended: all up again.
    site.write("content/market-day.md", &market.replacen("+++\n", "+++\ndraft = false\n", 1));
    site.write("content/harbour-lights.md", &lights);
    run_ok(&site, DAY4);
    assert_eq!(in_feeds(&site, "/blog/market-day/"), [true, true, true]);
    assert!(site.file("public/blog/market-day/index.html").exists());
    assert!(gone(&site).is_empty(), "{:?}", gone(&site));
}

#[test]
fn unpublish_takes_an_article_down_until_republished() {
    let site = Site::init();
    run_ok(&site, DAY1);
    let out = site.herald(&["articles", "unpublish", "blog/market-day", "--now", DAY2]);
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    assert_eq!(in_feeds(&site, "/blog/market-day/"), [false, false, false], "at once");
    assert!(!site.file("public/blog/market-day/index.html").exists());
    assert_eq!(gone(&site), ["/blog/market-day/"]);

    // A collect of the unchanged file does not bring it back.
    run_ok(&site, DAY2);
    assert_eq!(in_feeds(&site, "/blog/market-day/"), [false, false, false]);
    let all = listed(&site, &["--all", "--source", "blog"]);
    let line = all.lines().find(|l| l.contains("blog/market-day")).expect("listed with --all");
    assert!(line.contains("unpublished") && line.contains("2026-11-25"), "{line}");

    let out = site.herald(&["articles", "republish", "blog/market-day", "--now", DAY3]);
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    assert_eq!(in_feeds(&site, "/blog/market-day/"), [true, true, true]);
    assert!(site.file("public/blog/market-day/index.html").exists());
    assert!(gone(&site).is_empty());

    let out = site.herald(&["articles", "unpublish", "blog/no-such-article"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("no-such-article"), "{}", stderr(&out));
}
