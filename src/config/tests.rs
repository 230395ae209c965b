use super::*;

use super::GOOD;

fn parse_str(text: &str, env: &[(&str, &str)]) -> Result<Config, ConfigError> {
    let env: Vec<(String, String)> =
        env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    parse(Path::new("/site/herald.toml"), text, &env)
}

fn problems(text: &str, env: &[(&str, &str)]) -> Vec<String> {
    match parse_str(text, env) {
        Ok(_) => panic!("config was accepted"),
        Err(e) => e.problems(),
    }
}

#[test]
fn good_config_gets_defaults_and_absolute_paths() {
    let c = parse_str(GOOD, &[]).unwrap();
    assert_eq!(c.site.base_url.as_str(), "https://news.example.com/");
    assert_eq!(c.store.url, "sqlite:///site/herald.db");
    assert_eq!(c.feeds.items, 50);
    assert_eq!(c.feeds.output_dir, Path::new("/site/public"));
    assert_eq!(c.mail.transport, Transport::Outbox);
    assert_eq!(c.mail.concurrency, 8);
    assert_eq!(c.lists[0].subscribers, Path::new("/site/subscribers/daily.csv"));
    assert_eq!(c.lists[0].schedule.as_str(), "0 0 7 * * *");
    match &c.sources[0].kind {
        SourceKind::Dir { path } => assert_eq!(path, Path::new("/site/content")),
        other => panic!("{other:?}"),
    }
}

#[test]
fn environment_overrides_every_section_key() {
    let c = parse_str(
        GOOD,
        &[
            ("HERALD_MAIL_TRANSPORT", "smtp"),
            ("HERALD_MAIL_SMTP_URL", "smtp://127.0.0.1:2525"),
            ("HERALD_MAIL_CONCURRENCY", "3"),
            ("HERALD_FEEDS_ITEMS", "7"),
            ("HERALD_SITE_TITLE", "123"),
            ("HERALD_MAIL_UNSUBSCRIBE_MAILTO", "leave@example.com"),
            ("HERALD_SECRET", "not an override"),
        ],
    )
    .unwrap();
    assert_eq!(c.mail.transport, Transport::Smtp);
    assert_eq!(c.mail.smtp_url.as_str(), "smtp://127.0.0.1:2525");
    assert_eq!(c.mail.concurrency, 3);
    assert_eq!(c.feeds.items, 7);
    assert_eq!(c.site.title, "123");
    assert_eq!(c.mail.unsubscribe_mailto.unwrap().as_str(), "leave@example.com");
}

#[test]
fn bad_values_are_reported_with_their_line() {
    let text = GOOD.replace("name = \"Daily\"", "name = \"Daily\"\ntimezone = \"Mars/Olympus\"");
    let p = problems(&text, &[]);
    assert_eq!(p.len(), 1, "{p:?}");
    assert!(p[0].starts_with("/site/herald.toml:14: list `daily`:"), "{}", p[0]);
    assert!(p[0].contains("Mars/Olympus"));
}

#[test]
fn every_problem_is_listed() {
    let text = GOOD
        .replace("https://news.example.com", "news.example.com")
        .replace("kind = \"dir\"", "kind = \"ftp\"")
        .replace("<news@example.com>", "<not-an-address>");
    let p = problems(&text, &[]);
    assert_eq!(p.len(), 3, "{p:?}");
    assert!(p[0].contains(":4:") && p[0].contains("base_url"), "{}", p[0]);
    assert!(p[1].contains(":8:") && p[1].contains("ftp"), "{}", p[1]);
    assert!(p[2].contains(":16:") && p[2].contains("mail.from"), "{}", p[2]);
}

#[test]
fn syntax_and_unknown_keys_name_the_line() {
    let p = problems("[site]\ntitle = \"x\"\nbase_urll = \"https://a.example\"\n", &[]);
    assert!(p[0].starts_with("/site/herald.toml:3:"), "{}", p[0]);
    assert!(p[0].contains("base_urll"), "{}", p[0]);
    let p = problems("[site\n", &[]);
    assert!(p[0].starts_with("/site/herald.toml:1:"), "{}", p[0]);
}

#[test]
fn daemon_and_web_settings_are_checked() {
    let c = parse_str(GOOD, &[]).unwrap();
    assert_eq!(c.daemon.catch_up, CatchUp::OnceIfLate);
    assert_eq!(c.daemon.max_lateness, chrono::Duration::hours(6));
    assert_eq!(c.collect.schedule.as_str(), "0 */15 * * * *");
    assert_eq!(c.web.confirm_expiry_days, 7);
    let text = format!("{GOOD}\n[daemon]\ncatch_up = \"sometimes\"\ngrace_secs = -1\n");
    let p = problems(&text, &[("HERALD_COLLECT_SCHEDULE", "every minute")]);
    assert_eq!(p.len(), 3, "{p:?}");
    assert!(p.iter().any(|p| p.contains("daemon.catch_up is `sometimes`")), "{p:?}");
    assert!(p.iter().any(|p| p.contains("daemon.grace_secs must be between 0 and 86400")), "{p:?}");
    assert!(
        p.iter().any(|p| p.starts_with("environment variable HERALD_COLLECT_SCHEDULE:")),
        "{p:?}"
    );
    let p = problems(GOOD, &[("HERALD_WEB_CONFIRM_EXPIRY_DAYS", "0")]);
    assert!(p[0].contains("web.confirm_expiry_days must be between 1 and 365"), "{p:?}");
}

#[test]
fn the_servers_limits_have_defaults_and_are_checked() {
    let c = parse_str(GOOD, &[("HERALD_ADMIN_TOKEN", "not an override either")]).unwrap();
    assert_eq!(c.web.header_timeout, std::time::Duration::from_secs(10));
    assert_eq!(c.web.idle_timeout, std::time::Duration::from_secs(60));
    assert_eq!(c.web.max_connections, 512);
    assert_eq!(c.web.cache_bytes, 64 << 20);
    assert_eq!(c.web.admin_listen, None);
    let c = parse_str(GOOD, &[("HERALD_WEB_ADMIN_LISTEN", "127.0.0.1:9090")]).unwrap();
    assert_eq!(c.web.admin_listen, Some("127.0.0.1:9090".parse().unwrap()));
    let text = format!(
        "{GOOD}\n[web]\nmax_connections = 0\nheader_timeout_secs = 0\nadmin_listen = \"9090\"\n"
    );
    let p = problems(&text, &[]);
    assert_eq!(p.len(), 3, "{p:?}");
    assert!(p.iter().any(|p| p.contains("web.max_connections must be 1 or more")), "{p:?}");
    assert!(
        p.iter().any(|p| p.contains("web.header_timeout_secs must be between 1 and 3600")),
        "{p:?}"
    );
    assert!(p.iter().any(|p| p.contains(":21:") && p.contains("admin_listen")), "{p:?}");
    let p = problems(GOOD, &[("HERALD_WEB_ADMIN_LISTEN", "127.0.0.1:8080")]);
    assert!(p[0].contains("the same address as web.listen"), "{p:?}");
}

#[test]
fn numbers_out_of_range_name_the_key_the_values_allowed_and_the_value_found() {
    let text = format!("{GOOD}\n[collect]\nconcurrency = 0\n\n[daemon]\ngrace_secs = -1\n");
    let p = problems(
        &text,
        &[("HERALD_WEB_CONFIRM_EXPIRY_DAYS", "0"), ("HERALD_FEEDS_ITEMS", "10001")],
    );
    assert_eq!(
        p,
        [
            "/site/herald.toml:19: collect.concurrency must be between 1 and 256, not 0",
            "/site/herald.toml:22: daemon.grace_secs must be between 0 and 86400, not -1",
            "environment variable HERALD_FEEDS_ITEMS: feeds.items must be between 1 and 10000, not 10001",
            "environment variable HERALD_WEB_CONFIRM_EXPIRY_DAYS: web.confirm_expiry_days must be between 1 and 365, not 0",
        ]
    );
}

#[test]
fn bad_overrides_name_the_variable() {
    let p = problems(GOOD, &[("HERALD_MAIL_CONCURRENCY", "many")]);
    assert!(p[0].starts_with("environment variable HERALD_MAIL_CONCURRENCY:"), "{}", p[0]);
    let p = problems(GOOD, &[("HERALD_MAIL_TRANSPRT", "smtp")]);
    assert!(p[0].contains("HERALD_MAIL_TRANSPRT") && p[0].contains("transprt"), "{}", p[0]);
    let p = problems(GOOD, &[("HERALD_MAIL_TRANSPORT", "pigeon")]);
    assert!(p[0].starts_with("environment variable HERALD_MAIL_TRANSPORT:"), "{}", p[0]);
    let p = problems(GOOD, &[("HERALD_NOPE_X", "1")]);
    assert!(p[0].contains("HERALD_NOPE_X"), "{}", p[0]);
}

#[test]
fn a_password_in_a_bad_smtp_url_is_never_echoed() {
    for url in [
        "smtp://news:hunter2@mail example.com:587",
        "smtp://news:hunter2@:587",
        "smtp://news:hunter2@[::1:587",
        "smtps//news:hunter2@mail.example.com",
        "ftp://news:hunter2@mail.example.com",
        "smtp://news:hunter2@mail.example.com:99999",
    ] {
        let p = problems(GOOD, &[("HERALD_MAIL_SMTP_URL", url)]);
        assert!(!p.is_empty(), "{url} was accepted");
        assert!(p.iter().all(|p| !p.contains("hunter2")), "{p:?}");
        assert!(p[0].contains("HERALD_MAIL_SMTP_URL"), "{p:?}");
        let text = format!("{GOOD}\n[[mail.relays]]\nname = \"r\"\nurl = \"{url}\"\n");
        let p = problems(&text, &[]);
        assert!(p.iter().all(|p| !p.contains("hunter2")), "{p:?}");
    }
}

#[test]
fn the_output_folder_never_holds_the_store_config_lists_outbox_or_templates() {
    for (dir, what) in [
        (".", "the store"),
        ("/site", "the store"),
        ("/", "the store"),
        ("subscribers", "subscriber lists"),
        ("subscribers/public", "subscriber lists"),
        ("outbox/../outbox", "outbox"),
        ("templates/web", "templates"),
        ("/site/./templates/../outbox/x", "outbox"),
    ] {
        let p = problems(GOOD, &[("HERALD_FEEDS_OUTPUT_DIR", dir)]);
        assert_eq!(p.len(), 1, "{dir}: {p:?}");
        assert!(p[0].contains("feeds.output_dir") && p[0].contains(what), "{dir}: {p:?}");
    }
    let p = problems(
        GOOD,
        &[("HERALD_FEEDS_OUTPUT_DIR", "data"), ("HERALD_STORE_URL", "sqlite://data/herald.db")],
    );
    assert!(p[0].contains("the store"), "{p:?}");
    for fine in ["public", "/srv/www/news", "site-public"] {
        assert!(parse_str(GOOD, &[("HERALD_FEEDS_OUTPUT_DIR", fine)]).is_ok(), "{fine}");
    }
}

#[test]
fn passwords_stay_out_of_the_file() {
    let text = format!("{GOOD}smtp_url = \"smtp://user:hunter2@mail.example.com\"\n");
    let p = problems(&text, &[]);
    assert!(p[0].contains(ENV_SMTP_PASSWORD), "{}", p[0]);
}

#[test]
fn durations_too_long_for_the_calendar_are_problems_not_crashes() {
    let huge = i64::MAX.to_string();
    for var in [
        "HERALD_DAEMON_MAX_LATENESS_MINUTES",
        "HERALD_DAEMON_GRACE_SECS",
        "HERALD_DAEMON_LEASE_SECS",
        "HERALD_WEB_CONFIRM_EXPIRY_DAYS",
        "HERALD_WEB_CONFIRM_MAIL_INTERVAL_MINUTES",
        "HERALD_MAIL_RETRY_BASE_SECS",
        "HERALD_MAIL_TIMEOUT_SECS",
        "HERALD_WEB_HEADER_TIMEOUT_SECS",
        "HERALD_WEB_IDLE_TIMEOUT_SECS",
    ] {
        let p = problems(GOOD, &[(var, huge.as_str())]);
        assert_eq!(p.len(), 1, "{var}: {p:?}");
        assert!(p[0].starts_with(&format!("environment variable {var}:")), "{p:?}");
    }
}

#[test]
fn a_variable_that_is_not_herald_s_is_no_crash() {
    let env = vec![("LANG".to_string(), "C".to_string()), ("HERALD".to_string(), "x".to_string())];
    let _ = parse(Path::new("/site/herald.toml"), GOOD, &env);
}

#[test]
fn the_bounce_listener_needs_a_bounce_address() {
    let listening = format!("{GOOD}\n[bounces]\nlisten = \"127.0.0.1:2525\"\n");
    let found = problems(&listening, &[]);
    assert_eq!(found.len(), 1, "{found:?}");
    assert!(found[0].contains("bounces.listen"), "{found:?}");
    assert!(found[0].contains("mail.bounce_address is not set"), "{found:?}");
    let with_address =
        listening.replace("[bounces]", "bounce_address = \"bounces@news.example.com\"\n[bounces]");
    let c = parse_str(&with_address, &[]).unwrap();
    assert_eq!(c.bounces.listen, Some("127.0.0.1:2525".parse().unwrap()));
    assert_eq!(c.bounces.max_connections, 64);
    // An environment override is named as the place.
    let found = problems(GOOD, &[("HERALD_BOUNCES_LISTEN", "127.0.0.1:2525")]);
    assert!(found[0].contains("HERALD_BOUNCES_LISTEN"), "{found:?}");
}

#[test]
fn click_counts_are_off_by_default_and_individual_needs_them_on() {
    let c = parse_str(GOOD, &[]).unwrap();
    assert!(!c.lists[0].track_clicks && !c.lists[0].individual);
    let on = GOOD.replacen("slug = \"daily\"\n", "slug = \"daily\"\ntrack_clicks = true\n", 1);
    let c = parse_str(&on, &[]).unwrap();
    assert!(c.lists[0].track_clicks && !c.lists[0].individual);
    let alone = GOOD.replacen("slug = \"daily\"\n", "slug = \"daily\"\nindividual = true\n", 1);
    let p = problems(&alone, &[]).join("\n");
    assert!(p.contains("individual = true") && p.contains("track_clicks = true"), "{p}");
    assert!(p.contains("herald.toml:"), "with its line: {p}");
}

#[test]
fn the_digest_size_cap_direction_and_preheader_are_read_and_checked() {
    let c = parse_str(GOOD, &[]).unwrap();
    assert_eq!(c.lists[0].max_html_bytes, None);
    assert_eq!(c.site.direction, super::Direction::Ltr);
    let text = GOOD.replace(
        "name = \"Daily\"",
        "name = \"Daily\"\nmax_html_kb = 90\npreheader = \"  The  harbour\u{a0}news \"",
    );
    let c = parse_str(&text, &[("HERALD_SITE_LANGUAGE", "he")]).unwrap();
    assert_eq!(c.lists[0].max_html_bytes, Some(90 * 1024));
    assert_eq!(c.lists[0].preheader.as_deref(), Some("The harbour\u{a0}news"));
    assert_eq!(c.site.direction, super::Direction::Rtl, "Hebrew runs right to left");
    let c = parse_str(GOOD, &[("HERALD_SITE_LANGUAGE", "he"), ("HERALD_SITE_DIRECTION", "ltr")])
        .unwrap();
    assert_eq!(c.site.direction, super::Direction::Ltr, "a direction set wins");

    let text = GOOD.replace("name = \"Daily\"", "name = \"Daily\"\nmax_html_kb = 200");
    let p = problems(&text, &[("HERALD_SITE_DIRECTION", "down")]);
    assert_eq!(p.len(), 2, "{p:?}");
    assert!(p.iter().any(|p| p.contains("max_html_kb must be 10 to 102") && p.contains("200")));
    assert!(p.iter().any(|p| p.contains("site.direction must be \"ltr\" or \"rtl\"")));
}
