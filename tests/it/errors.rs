//! Bad input gets a clear error naming its place, and the rest of the work
//! goes on: a broken article, a bad subscriber row, a bad config value, a
//! wrong command line.

use crate::support::{stderr, stdout, Site};

#[test]
fn a_bad_front_matter_file_is_reported_and_the_rest_collected() {
    let site = Site::init();
    site.write(
        "content/broken.md",
        "+++\ntitle = \"Broken\"\ndate = \"last tuesday\"\n+++\nText.\n",
    );
    site.write("content/unclosed.md", "---\ntitle: Never closed\ndate: 2026-11-24\n");
    let out = site.herald(&["run", "--now", "2026-11-24T07:00:00Z"]);
    assert_eq!(out.status.code(), Some(1), "problems make the exit code 1");
    let err = stderr(&out);
    let broken = site.file("content/broken.md");
    assert!(err.contains(&format!("{}:3: `date` is `last tuesday`", broken.display())), "{err}");
    assert!(err.contains(&format!("{}:1:", site.file("content/unclosed.md").display())), "{err}");
    assert!(err.contains("never closed"), "{err}");
    // Everything else went through: four articles, four mails.
    let summary = stdout(&out);
    assert!(summary.contains("4 new") && summary.contains("2 file(s) skipped"), "{summary}");
    assert_eq!(site.outbox().len(), 4);

    // `herald check` reports the same problems, with the same places.
    let out = site.herald(&["check"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stdout(&out).contains(&format!("{}:3:", broken.display())), "{}", stdout(&out));
}

#[test]
fn a_bad_csv_row_is_reported_and_the_others_imported() {
    let site = Site::init();
    site.write(
        "subscribers/daily.csv",
        "email,name\nada@example.com,Ada\nnot an address,Bob\nlin@example.com,Lin\n",
    );
    let out = site.herald(&["run", "--now", "2026-11-24T07:00:00Z"]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    let csv = site.file("subscribers/daily.csv");
    assert!(
        err.contains(&format!(
            "{}:3: `not an address` is not a valid email address",
            csv.display()
        )),
        "{err}"
    );
    assert_eq!(site.outbox().len(), 2, "the two good rows got their mail");
}

#[test]
fn a_bad_config_value_names_its_line() {
    let site = Site::init();
    let path = site.file("herald.toml");
    let text = std::fs::read_to_string(&path).unwrap();
    let text = text.replace("timezone = \"Europe/Lisbon\"", "timezone = \"Atlantis/Capital\"");
    let text = text.replace("concurrency = 8", "concurrency = 0");
    std::fs::write(&path, &text).unwrap();
    let tz_line = text.lines().position(|l| l.contains("Atlantis")).unwrap() + 1;
    let conc_line = text.lines().position(|l| l.starts_with("concurrency")).unwrap() + 1;

    let out = site.herald(&["check"]);
    assert_eq!(out.status.code(), Some(1));
    let report = stdout(&out);
    assert!(
        report.contains(&format!("herald.toml:{tz_line}: list `daily`: `Atlantis/Capital`")),
        "{report}"
    );
    assert!(
        report.contains(&format!(
            "herald.toml:{conc_line}: mail.concurrency must be between 1 and 256"
        )),
        "{report}"
    );

    // Stages refuse to run on a broken config, and say why.
    let out = site.herald(&["run"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("Atlantis/Capital"), "{}", stderr(&out));
    assert!(site.outbox().is_empty());

    // An environment override with a bad value names the variable.
    std::fs::write(
        &path,
        text.replace("Atlantis/Capital", "UTC").replace("concurrency = 0", "concurrency = 8"),
    )
    .unwrap();
    let out = site.herald_env(&["check"], &[("HERALD_MAIL_TRANSPORT", "pigeon")]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stdout(&out).contains("environment variable HERALD_MAIL_TRANSPORT"),
        "{}",
        stdout(&out)
    );
}

#[test]
fn a_good_site_checks_clean() {
    let site = Site::init();
    let out = site.herald(&["check"]);
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    assert!(stdout(&out).contains("no problems found"));
}

#[test]
fn template_errors_name_file_and_line() {
    let site = Site::init();
    site.write(
        "templates/digest.txt",
        "{{ list.name }}\n{% for a in articles %}\n{{ a.title }\n{% endfor %}\n",
    );
    let out = site.herald(&["check"]);
    assert_eq!(out.status.code(), Some(1));
    let report = stdout(&out);
    assert!(
        report.contains(&format!("{}:3:", site.file("templates/digest.txt").display())),
        "{report}"
    );

    // A template that reads the environment is refused at render time.
    site.write("templates/digest.txt", "{{ get_env(name=\"HERALD_SECRET\") }}\n");
    let out = site.herald(&["check"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stdout(&out).contains("get_env is disabled"), "{}", stdout(&out));
}

#[test]
fn usage_errors_exit_2_and_missing_config_says_what_to_do() {
    let site = Site::init();
    assert_eq!(site.herald(&["frobnicate"]).status.code(), Some(2));
    assert_eq!(site.herald(&["run", "--now", "yesterday"]).status.code(), Some(2));
    let out = site.herald(&["--config", "missing.toml", "run"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("herald init"), "{}", stderr(&out));
}

#[test]
fn init_refuses_to_overwrite_without_force() {
    let site = Site::init();
    site.write("herald.toml", "# mine\n");
    let out = site.herald(&["init", "."]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("already exists") && stderr(&out).contains("--force"),
        "{}",
        stderr(&out)
    );
    assert_eq!(std::fs::read_to_string(site.file("herald.toml")).unwrap(), "# mine\n");
    assert!(site.herald(&["init", ".", "--force"]).status.success());
    assert!(std::fs::read_to_string(site.file("herald.toml")).unwrap().contains("[site]"));
}

#[test]
fn every_command_has_help() {
    let site = Site::init();
    for args in [
        vec!["--help"],
        vec!["run", "--help"],
        vec!["init", "--help"],
        vec!["subscribers", "import", "--help"],
        vec!["status", "--help"],
    ] {
        let out = site.herald(&args);
        assert!(out.status.success(), "{args:?}");
        assert!(stdout(&out).contains("Usage: herald"), "{args:?}: {}", stdout(&out));
    }
}

#[test]
fn a_member_file_without_a_list_is_reported() {
    let site = Site::init();
    site.write("subscribers/weekly.csv", "email,name\nw@example.com,W\n");
    let out = site.herald(&["run", "--now", "2026-11-24T07:00:00Z"]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(err.contains("weekly.csv: no [[lists]] entry reads this file"), "{err}");
    assert!(err.contains("slug = \"weekly\""), "{err}");
    assert_eq!(site.outbox().len(), 4, "the daily list was still delivered");
}

#[test]
fn published_feeds_pass_the_validator_rules_and_breakage_is_named() {
    let site = Site::init();
    assert!(site.herald(&["run", "--now", "2026-11-24T07:00:00Z"]).status.success());
    let out = site.herald(&["check", "--feeds"]);
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));

    // Break the RSS feed the ways validators complain about.
    let rss = site.file("public/feed.xml");
    let text = std::fs::read_to_string(&rss).unwrap();
    let start = text.find("<guid").unwrap();
    let end = text[start..].find("</guid>").unwrap() + start + "</guid>".len();
    let broken = format!("{}{}", &text[..start], &text[end..]).replacen(
        "<pubDate>Tue, 24 Nov 2026 07:15:00 +0000</pubDate>",
        "<pubDate>yesterday</pubDate>",
        1,
    );
    std::fs::write(&rss, broken).unwrap();
    let atom = site.file("public/atom.xml");
    let text = std::fs::read_to_string(&atom).unwrap();
    std::fs::write(
        &atom,
        text.replacen("href=\"https://news.example.com/blog/", "href=\"/blog/", 1),
    )
    .unwrap();
    let json = site.file("public/feed.json");
    std::fs::write(&json, "{ \"version\": \"1\" ").unwrap();

    let out = site.herald(&["check", "--feeds"]);
    assert_eq!(out.status.code(), Some(1));
    let report = stdout(&out);
    let rss = rss.display().to_string();
    assert!(report.contains(&format!("{rss}:")) && report.contains("has no <guid>"), "{report}");
    // Feeds are written one element a line, so the line points at the item.
    let guid_line = report.lines().find(|l| l.contains("has no <guid>")).unwrap();
    let line: usize = guid_line.split(':').nth(1).unwrap().parse().unwrap();
    assert!(line > 5, "{guid_line}");
    assert!(report.contains("<pubDate> `yesterday` is not an RFC 822 date"), "{report}");
    assert!(
        report.contains("atom.xml:")
            && report.contains("`/blog/")
            && report.contains("not an absolute URL"),
        "{report}"
    );
    assert!(report.contains("feed.json:") && report.contains("not valid JSON"), "{report}");

    // Not well-formed at all: the line is named.
    std::fs::write(
        site.file("public/atom.xml"),
        "<?xml version=\"1.0\"?>\n<feed>\n<title>x</title>\n<entry>\n</feed>\n",
    )
    .unwrap();
    let report = stdout(&site.herald(&["check", "--feeds"]));
    assert!(report.contains("atom.xml:5: not well-formed XML"), "{report}");
}

#[test]
fn a_templates_dir_that_does_not_exist_is_a_problem_not_a_silent_fallback() {
    let site = Site::init();
    let out = site.herald_env(&["check"], &[("HERALD_SITE_TEMPLATES_DIR", "tempaltes")]);
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    let report = stdout(&out);
    assert!(report.contains("tempaltes") && report.contains("does not exist"), "{report}");
    // The stages still run on the built-in templates, and say so.
    let out = site.herald_env(&["run"], &[("HERALD_SITE_TEMPLATES_DIR", "tempaltes")]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("tempaltes") && stderr(&out).contains("built-in"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn an_output_folder_that_holds_the_store_is_refused_by_every_command() {
    // On SQLite whatever HERALD_TEST_STORE says: only a SQLite store is a
    // file that an output folder can hold.
    let site = Site::init_sqlite();
    for command in [&["check"][..], &["run"], &["serve", "--listen", "127.0.0.1:0"]] {
        let out = site.herald_env(command, &[("HERALD_FEEDS_OUTPUT_DIR", ".")]);
        assert_eq!(out.status.code(), Some(1), "{command:?}");
        let said = format!("{}{}", stdout(&out), stderr(&out));
        assert!(said.contains("feeds.output_dir `.` holds the store"), "{command:?}: {said}");
    }
    assert!(!site.file("public").exists() && !site.file("outbox").exists());
}

#[test]
fn a_warning_from_the_html_parser_names_the_file() {
    let site = Site::init();
    // Text directly inside a table is moved out of it by the HTML parser
    // ("foster parenting"), which html5ever reports as a warning.
    site.write(
        "content/tables.md",
        "+++\ntitle = \"Tables\"\ndate = 2026-11-23\n+++\n<table>loose text<tr><td>cell</td></tr></table>\n",
    );
    let out = site.herald(&["collect", "--now", "2026-11-24T07:00:00Z"]);
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    let err = stderr(&out);
    let warning = err.lines().find(|l| l.contains("foster parenting")).unwrap_or_else(|| {
        panic!("the parser's warning is shown: {err}");
    });
    assert!(warning.contains("content/tables.md") && warning.contains("blog"), "{warning}");
}

#[test]
fn errors_say_each_cause_once() {
    let dir = tempfile::tempdir().unwrap();
    let out = crate::support::herald_in(dir.path(), &["run"], &[]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        stderr(&out),
        "error: cannot read herald.toml: No such file or directory (os error 2). Run `herald init` to create a ready-to-run configuration, or pass --config PATH\n"
    );
    let site = Site::init();
    let out = site.herald_env(&["serve", "--listen", "127.0.0.1:0"], &[("HERALD_SECRET", "short")]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        stderr(&out),
        "error: cannot set up the subscription pages: HERALD_SECRET is set but shorter than 32 characters; use a long random value (e.g. `openssl rand -hex 32`)\n"
    );
}
