//! `herald subscribers`: add, remove, import, export and list, and the rule
//! that an address that left is never subscribed again by an import.

use crate::support::{stderr, stdout, Site};

#[test]
fn add_remove_import_export() {
    let site = Site::init();
    let out =
        site.herald(&["subscribers", "add", "Zoe@Example.com", "--name", "Zoë", "--list", "daily"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("added zoe@example.com to daily"));

    site.write("import.csv", "email,name\nbob@example.com,Bob\nnope,Nope\nzoe@example.com,Zoë\n");
    let out = site.herald(&["subscribers", "import", "import.csv", "--list", "daily"]);
    assert_eq!(out.status.code(), Some(1), "a bad row makes the exit code 1");
    assert!(
        stdout(&out).contains("1 added") && stdout(&out).contains("1 already members"),
        "{}",
        stdout(&out)
    );
    assert!(
        stderr(&out).contains("import.csv:3: `nope` is not a valid email address"),
        "{}",
        stderr(&out)
    );

    let out = site.herald(&["subscribers", "remove", "bob@example.com", "--list", "daily"]);
    assert!(out.status.success(), "{}", stderr(&out));

    // The export is confirmed members only, and reads back as an import.
    let out = site.herald(&["subscribers", "export", "--list", "daily"]);
    assert!(out.status.success());
    assert_eq!(stdout(&out), "email,name\nzoe@example.com,Zoë\n");
    let out = site.herald(&["subscribers", "export", "--list", "daily", "--all"]);
    let all = stdout(&out);
    assert!(all.starts_with("email,name,status,origin,subscribed_at,changed_at\n"), "{all}");
    assert!(all.contains("bob@example.com,Bob,unsubscribed,csv,"), "{all}");

    // An import never brings back someone who left.
    let out = site.herald(&["subscribers", "import", "import.csv", "--list", "daily"]);
    assert!(stdout(&out).contains("1 refused (unsubscribed)"), "{}", stdout(&out));
    let out = site.herald(&["subscribers", "add", "bob@example.com", "--list", "daily"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("unsubscribed"), "{}", stderr(&out));

    let out = site.herald(&["subscribers", "list", "--list", "daily"]);
    let listing = stdout(&out);
    assert!(listing.contains("bob@example.com") && listing.contains("unsubscribed"), "{listing}");
    assert!(listing.contains("zoe@example.com") && listing.contains("confirmed"), "{listing}");
}

#[test]
fn someone_who_left_gets_no_digest_even_if_still_in_the_csv() {
    let site = Site::init();
    // Sync the list file, then one reader leaves before the first edition.
    assert!(site.herald(&["compose", "--now", "2026-11-23T07:00:00Z"]).status.success());
    let out = site.herald(&["subscribers", "remove", "ada@example.com", "--list", "daily"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = site.herald(&["run", "--now", "2026-11-24T07:00:00Z"]);
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    assert!(stdout(&out).contains("3 sent"), "{}", stdout(&out));
    let outbox: Vec<String> =
        site.outbox().iter().map(|p| std::fs::read_to_string(p).unwrap()).collect();
    assert_eq!(outbox.len(), 3);
    assert!(outbox.iter().all(|m| !m.contains("ada@example.com")));
}

#[test]
fn unknown_lists_and_bad_addresses_are_refused() {
    let site = Site::init();
    let out = site.herald(&["subscribers", "add", "x@example.com", "--list", "weekly"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("no list `weekly`") && stderr(&out).contains("daily"),
        "{}",
        stderr(&out)
    );
    let out = site.herald(&["subscribers", "add", "x@", "--list", "daily"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("`x@` is not a valid email address"), "{}", stderr(&out));
}

#[test]
fn someone_who_leaves_after_the_edition_is_composed_is_skipped() {
    let site = Site::init();
    for stage in ["collect", "compose"] {
        assert!(site.herald(&[stage, "--now", "2026-11-24T07:00:00Z"]).status.success());
    }
    for who in ["ada@example.com", "grace@example.org"] {
        assert!(site.herald(&["subscribers", "remove", who, "--list", "daily"]).status.success());
    }
    let out = site.herald(&["deliver", "--now", "2026-11-24T07:00:00Z"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("2 sent, 0 deferred, 0 failed"), "{}", stdout(&out));
    let skipped = stdout(&site.herald(&["deliveries", "--state", "skipped"]));
    assert!(
        skipped.contains("ada@example.com") && skipped.contains("grace@example.org"),
        "{skipped}"
    );
    assert!(skipped.contains("left the list"), "{skipped}");
    assert_eq!(site.outbox().len(), 2);
}

#[test]
fn pausing_a_list_holds_its_mail_until_resumed() {
    let site = Site::init();
    for stage in ["collect", "compose"] {
        assert!(site.herald(&[stage, "--now", "2026-11-24T07:00:00Z"]).status.success());
    }
    assert!(site.herald(&["deliver", "--pause", "daily"]).status.success());
    let out = site.herald(&["deliver", "--now", "2026-11-24T07:00:00Z"]);
    assert!(
        stdout(&out).contains("0 sent") && stdout(&out).contains("paused: daily"),
        "{}",
        stdout(&out)
    );
    assert!(site.outbox().is_empty());
    let out = site.herald(&["deliver", "--dry-run", "--now", "2026-11-24T07:00:00Z"]);
    assert!(stdout(&out).contains("paused"), "{}", stdout(&out));
    assert!(site.herald(&["deliver", "--resume", "daily"]).status.success());
    let out = site.herald(&["deliver", "--now", "2026-11-24T07:00:00Z"]);
    assert!(stdout(&out).contains("4 sent"), "{}", stdout(&out));
}

#[test]
fn a_forgotten_reader_leaves_only_a_hash_and_is_never_imported_again() {
    // On SQLite whatever HERALD_TEST_STORE says: the test reads the store's
    // file and its write-ahead log.
    let site = Site::init_sqlite();
    // A digest went to everyone, so there are delivery records too.
    assert!(site.herald(&["run", "--now", "2026-11-24T07:00:00Z"]).status.success());
    let out = site.herald(&["subscribers", "forget", "Ada@Example.com"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("forgot ada@example.com"), "{}", stdout(&out));
    let listed = stdout(&site.herald(&["subscribers", "list"]));
    assert!(!listed.contains("ada@example.com"), "{listed}");
    let deliveries = stdout(&site.herald(&["deliveries"]));
    assert!(!deliveries.contains("ada@example.com"), "{deliveries}");
    let db = std::fs::read(site.file("herald.db")).unwrap();
    let wal = std::fs::read(site.file("herald.db-wal")).unwrap_or_default();
    let needle = b"ada@example.com";
    assert!(
        !db.windows(needle.len()).any(|w| w == needle)
            && !wal.windows(needle.len()).any(|w| w == needle),
        "the address is nowhere in the store's pages"
    );
    // The list file still has her: the import refuses her, as does the CLI.
    let out = site.herald(&["subscribers", "import", "subscribers/daily.csv", "--list", "daily"]);
    assert!(stdout(&out).contains("1 refused (suppressed)"), "{}", stdout(&out));
    let out = site.herald(&["subscribers", "add", "ada@example.com", "--list", "daily"]);
    assert_eq!(out.status.code(), Some(1));
}

#[test]
fn exported_cells_never_become_spreadsheet_formulas_and_names_read_back_exactly() {
    let site = Site::init();
    let names = [
        ("eve@example.com", "=HYPERLINK(\"http://evil.example/\",\"click\")"),
        ("pat@example.com", "+1 555 0100"),
        ("sam@example.com", "-Sam"),
        ("ava@example.com", "@Ava"),
        ("kim@example.com", "Hopper, Grace \"Amazing\""),
        ("zoe@example.com", "Zoë O'Brien"),
    ];
    for (email, name) in names {
        let name = format!("--name={name}");
        let out = site.herald(&["subscribers", "add", email, &name, "--list", "daily"]);
        assert!(out.status.success(), "{}", stderr(&out));
    }
    for all in [false, true] {
        let args: &[&str] = if all {
            &["subscribers", "export", "--list", "daily", "--all"]
        } else {
            &["subscribers", "export", "--list", "daily"]
        };
        let csv = stdout(&site.herald(args));
        for line in csv.lines().skip(1) {
            for cell in line.split(',').map(|c| c.trim_start_matches('"')) {
                assert!(
                    !cell.starts_with(['=', '+', '-', '@', '\t', '\r']),
                    "a cell a spreadsheet would run: {cell:?} in {line}"
                );
            }
        }
        // Read back into another list: every name exactly as it was.
        let list = if all { "weekly-all" } else { "weekly" };
        let mut config = std::fs::read_to_string(site.file("herald.toml")).unwrap();
        config.push_str(&format!("\n[[lists]]\nslug = \"{list}\"\nname = \"{list}\"\n"));
        std::fs::write(site.file("herald.toml"), config).unwrap();
        site.write("export.csv", &csv);
        let out = site.herald(&["subscribers", "import", "export.csv", "--list", list]);
        assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
        let back = stdout(&site.herald(&["subscribers", "list", "--list", list]));
        for (email, name) in names {
            let line = back.lines().find(|l| l.contains(email)).unwrap_or_default();
            assert!(line.ends_with(&format!("  {name}")), "{name:?} came back as {line:?}");
        }
    }
}
