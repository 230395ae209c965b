//! The fast path (one render per edition, the reader's values spliced in)
//! against one render per reader: what each reader gets, and which
//! templates take which path.

use std::path::Path;

use chrono::{NaiveDate, TimeZone, Utc};

use super::*;
use crate::templates;

fn config() -> Config {
    crate::config::parse(Path::new("/site/herald.toml"), crate::config::GOOD, &[]).unwrap()
}

fn edition() -> Edition {
    Edition {
        id: 1,
        list: "daily".into(),
        edition_date: NaiveDate::from_ymd_opt(2026, 11, 24).unwrap(),
        subject: "Today".into(),
        html: String::new(),
        text: String::new(),
        article_ids: Vec::new(),
        article_cursor: 0,
        done: false,
        composed_at: Utc.with_ymd_and_hms(2026, 11, 24, 7, 0, 0).unwrap(),
    }
}

/// The digest templates as a site writes them (the rest built in).
fn site_templates(html: &str, text: &str) -> Templates {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("digest.html"), html).unwrap();
    std::fs::write(dir.path().join("digest.txt"), text).unwrap();
    let t = templates::load(dir.path());
    assert!(t.broken.is_empty(), "{:?}", t.broken);
    t
}

/// Templates under any names, for includes, parents and macro files.
fn raw_templates(files: &[(&str, &str)]) -> Templates {
    let mut tera = tera::Tera::default();
    tera.add_raw_templates(files.to_vec()).unwrap();
    tera.set_escape_fn(templates::escape_html);
    Templates { tera, builtin_used: Vec::new(), broken: Vec::new() }
}

fn digest(templates: Templates) -> Digest {
    let secret = Secret::new(b"test-secret-0123456789abcdef0123456789".to_vec());
    Digest::new(&config(), templates, secret, &edition(), &[]).unwrap()
}

fn reader(id: i64, name: Option<&str>, email: &str) -> Recipient {
    Recipient {
        subscriber: id,
        email: email.into(),
        name: name.map(str::to_owned),
        token_key: format!("key-{id}"),
        message_id: format!("<herald.test.{id}@news.example.com>"),
    }
}

fn readers() -> Vec<Recipient> {
    vec![
        reader(1, Some("Grace Hopper"), "grace@example.org"),
        reader(2, Some("Ada Lovelace"), "ada@example.com"),
        reader(3, None, "joao@example.net"),
        reader(4, Some("Zoë & <O'Brien> \"Jr\""), "zoe+test@example.com"),
        reader(5, Some("MEI Chen"), "Mei.Chen@Example.COM"),
    ]
}

/// A reader's text and HTML parts as their mail client shows them.
fn bodies(digest: &Digest, r: &Recipient) -> (String, String) {
    let now = Utc.with_ymd_and_hms(2026, 11, 24, 7, 0, 0).unwrap();
    let raw = digest.message(r, now).unwrap().bytes;
    let m = mail_parser::MessageParser::default().parse(&raw).unwrap();
    let text = m.body_text(0).unwrap().replace("\r\n", "\n");
    let html = m.body_html(0).unwrap().replace("\r\n", "\n");
    (text, html)
}

/// The same templates rendered once per reader: what every reader must get.
fn slow(templates: Templates) -> Digest {
    let mut d = digest(templates);
    d.fast = None;
    d
}

/// The reader's fields as a digest template sees them, by the path a
/// template names them with (`subscriber.email`, `unsubscribe_url`, …):
/// whatever `insert_reader` puts in the context.
fn inserted(digest: &Digest, r: &Recipient) -> Vec<(String, Option<String>)> {
    let unsubscribe_url = digest.unsubscribe_url(r.bearer());
    let preferences_url = digest.preferences_url(r.bearer());
    let mut context = tera::Context::new();
    insert_reader(
        &mut context,
        Some(&ReaderFields {
            name: r.name.as_deref(),
            email: &r.email,
            unsubscribe_url: &unsubscribe_url,
            preferences_url: &preferences_url,
        }),
    );
    let mut out = Vec::new();
    fn leaves(prefix: &str, v: &serde_json::Value, out: &mut Vec<(String, Option<String>)>) {
        match v {
            serde_json::Value::Object(map) => {
                for (k, v) in map {
                    let path = if prefix.is_empty() { k.clone() } else { format!("{prefix}.{k}") };
                    leaves(&path, v, out);
                }
            }
            serde_json::Value::Null => out.push((prefix.to_owned(), None)),
            serde_json::Value::String(s) => out.push((prefix.to_owned(), Some(s.clone()))),
            other => out.push((prefix.to_owned(), Some(other.to_string()))),
        }
    }
    leaves("", &context.into_json(), &mut out);
    out
}

/// Branches, tests and filters on the field at `path`: each reader must get
/// their own result, and the edition takes the slow path.
fn check_field(path: &str) {
    let first = &readers()[0];
    let probe = digest(site_templates("", ""));
    let value_of = |r: &Recipient| {
        inserted(&probe, r)
            .into_iter()
            .find(|(p, _)| p == path)
            .unwrap_or_else(|| panic!("insert_reader has no {path}"))
            .1
    };
    let target = value_of(first).expect("the first reader has every field");
    let suffix: String =
        target.chars().rev().take(6).collect::<Vec<_>>().into_iter().rev().collect();
    let yes = |b: bool, y: &str, n: &str| if b { y.to_owned() } else { n.to_owned() };
    // Each use on its own, with what a reader whose value is `v` must get.
    type Expect = Box<dyn Fn(Option<&str>) -> String>;
    let (t, sfx) = (target.clone(), suffix.clone());
    let cases: Vec<(String, Expect)> = vec![
        (
            format!("{{% if {path} == \"{target}\" %}}SAME{{% else %}}DIFF{{% endif %}}"),
            Box::new({
                let t = t.clone();
                move |v| yes(v == Some(t.as_str()), "SAME", "DIFF")
            }),
        ),
        (
            format!("{{% if {path} != \"{target}\" %}}DIFF{{% else %}}SAME{{% endif %}}"),
            Box::new({
                let t = t.clone();
                move |v| yes(v == Some(t.as_str()), "SAME", "DIFF")
            }),
        ),
        (
            format!("{{% if {path} and \"{target}\" in {path} %}}IN{{% else %}}OUT{{% endif %}}"),
            Box::new({
                let t = t.clone();
                move |v| yes(v.is_some_and(|v| v.contains(&t)), "IN", "OUT")
            }),
        ),
        (
            format!(
                "{{% if {path} and {path} is containing(\"{target}\") %}}YES{{% else %}}NO{{% endif %}}"
            ),
            Box::new(move |v| yes(v.is_some_and(|v| v.contains(&t)), "YES", "NO")),
        ),
        (
            format!(
                "{{% if {path} and {path} is ending_with(\"{suffix}\") %}}YES{{% else %}}NO{{% endif %}}"
            ),
            Box::new(move |v| yes(v.is_some_and(|v| v.ends_with(&sfx)), "YES", "NO")),
        ),
        (
            format!("{{{{ {path} | default(value=\"none\") | upper }}}}"),
            Box::new(|v| v.unwrap_or("none").to_uppercase()),
        ),
        (
            format!("{{{{ {path} | default(value=\"none\") | lower }}}}"),
            Box::new(|v| v.unwrap_or("none").to_lowercase()),
        ),
    ];
    for (template, expect) in cases {
        let d = digest(site_templates(&format!("{template}\n"), &format!("{template}\n")));
        for r in readers() {
            let want = expect(value_of(&r).as_deref());
            let (text, html) = bodies(&d, &r);
            assert_eq!(text, format!("{want}\n"), "{template}, text part for {}", r.email);
            let want = templates::escape_html(&want);
            assert_eq!(html, format!("{want}\n"), "{template}, HTML part for {}", r.email);
        }
        assert!(d.fast.is_none(), "{path}: the fast path was taken for {template}");
    }
    // `| safe` skips the HTML escaping the splice applies.
    let template = format!("{{{{ {path} | safe }}}}\n");
    let d = digest(site_templates(&template, ""));
    for r in readers() {
        let (_, html) = bodies(&d, &r);
        assert_eq!(html, format!("{}\n", value_of(&r).unwrap_or_default()), "{template}");
    }
    assert!(d.fast.is_none(), "{path}: the fast path was taken for {template}");
}

#[test]
fn branches_tests_and_filters_on_each_reader_field_are_per_reader() {
    for path in ["subscriber.email", "subscriber.name", "unsubscribe_url", "preferences_url"] {
        check_field(path);
    }
}

#[test]
fn every_field_insert_reader_inserts_is_covered() {
    let probe = digest(site_templates("", ""));
    let paths: Vec<String> = inserted(&probe, &readers()[0]).into_iter().map(|(p, _)| p).collect();
    assert!(paths.len() >= 4, "{paths:?}");
    for path in paths {
        check_field(&path);
    }
}

#[test]
fn a_test_on_the_address_gives_each_reader_their_branch() {
    let branch = "{% if subscriber.email and subscriber.email is ending_with(\"example.org\") %}ORG{% else %}OTHER{% endif %}\n";
    let d = digest(site_templates(branch, branch));
    for r in readers() {
        let (text, html) = bodies(&d, &r);
        let want = if r.email == "grace@example.org" { "ORG" } else { "OTHER" };
        assert_eq!(text.trim(), want, "{}", r.email);
        assert_eq!(html.trim(), want, "{}", r.email);
    }
    assert!(d.fast.is_none());
}

#[test]
fn a_filtered_name_and_a_compared_address_are_per_reader() {
    let template = "{{ subscriber.name | default(value=\"reader\") | upper }}\n\
                    {% if subscriber.email == \"ada@example.com\" %}ADA{% else %}NOT ADA{% endif %}\n";
    let d = digest(site_templates(template, template));
    let (text, _) = bodies(&d, &readers()[1]);
    assert_eq!(text, "ADA LOVELACE\nADA\n");
    let (text, _) = bodies(&d, &readers()[0]);
    assert_eq!(text, "GRACE HOPPER\nNOT ADA\n");
    let (text, html) = bodies(&d, &readers()[3]);
    assert_eq!(text, "ZOË & <O'BRIEN> \"JR\"\nNOT ADA\n");
    assert_eq!(html, "ZOË &amp; &lt;O&#39;BRIEN&gt; &quot;JR&quot;\nNOT ADA\n");
    let (text, _) = bodies(&d, &readers()[2]);
    assert_eq!(text, "READER\nNOT ADA\n");
}

/// Templates that must take the slow path, each with its own reason.
#[test]
fn any_use_of_the_reader_beyond_interpolation_takes_the_slow_path() {
    let cases = [
        "{{ subscriber.email | safe }}",
        "{{ subscriber.email | lower }}",
        "{{ subscriber.name | default(value=\"reader\") }}",
        "{% if subscriber.email is containing(\"@\") %}x{% endif %}",
        "{% if subscriber.email is not ending_with(\".org\") %}x{% endif %}",
        "{% if subscriber.email == \"x@y\" %}x{% endif %}",
        "{% if \"ada\" in subscriber.email %}x{% endif %}",
        "{% if subscriber.email not in [\"ada@example.com\"] %}x{% endif %}",
        "{{ subscriber.email ~ \"!\" }}",
        "{{ subscriber.email | length + 1 }}",
        "{{ not subscriber.name }}",
        "{% set e = subscriber.email %}{{ e }}",
        "{% set_global e = subscriber.email %}{{ e }}",
        "{% for c in [subscriber.email] %}{{ c }}{% endfor %}",
        "{% for k, v in subscriber %}{{ v }}{% endfor %}",
        "{{ subscriber }}",
        "{{ subscriber[\"email\"] }}",
        "{{ __tera_context }}",
        "{% macro m(x) %}{{ x }}{% endmacro m %}{{ self::m(x=subscriber.email) }}",
        "{% macro m() %}{{ subscriber.email }}{% endmacro m %}{{ self::m() }}",
        "{{ \"ada\" | replace(from=\"a\", to=subscriber.email) }}",
        "{% filter upper %}{{ subscriber.name }}{% endfilter %}",
        "{% if subscriber.name | length > 3 %}x{% endif %}",
    ];
    for case in cases {
        let d = digest(site_templates("", case));
        assert!(d.fast.is_none(), "fast path for {case}");
        let d = digest(site_templates(case, ""));
        assert!(d.fast.is_none(), "fast path for {case} in digest.html");
    }
}

#[test]
fn templates_reached_through_includes_parents_and_imports_are_checked() {
    let text = ("digest.txt", "plain");
    let cases: [&[(&str, &str)]; 5] = [
        &[("digest.html", "{% include \"part.html\" %}"), ("part.html", "{{ subscriber.email | upper }}"), text],
        &[
            ("base.html", "{% block main %}{% endblock main %}{% if subscriber.email is ending_with(\"org\") %}ORG{% endif %}"),
            ("digest.html", "{% extends \"base.html\" %}{% block main %}{{ subscriber.email }}{% endblock main %}"),
            text,
        ],
        &[
            ("macros.html", "{% macro f() %}{{ subscriber.email }}{% endmacro f %}"),
            ("digest.html", "{% import \"macros.html\" as m %}{{ m::f() | upper }}"),
            text,
        ],
        &[("digest.html", "{% filter upper %}{% include \"part.html\" %}{% endfilter %}"), ("part.html", "{{ subscriber.name }}"), text],
        &[
            ("base.html", "{% filter upper %}{% block main %}{% endblock main %}{% endfilter %}"),
            ("digest.html", "{% extends \"base.html\" %}{% block main %}{{ subscriber.name }}{% endblock main %}"),
            text,
        ],
    ];
    for files in cases {
        let d = digest(raw_templates(files));
        assert!(d.fast.is_none(), "fast path for {files:?}");
        for r in readers() {
            assert_eq!(bodies(&d, &r), bodies(&slow(raw_templates(files)), &r), "{files:?}");
        }
    }
}

/// Plain interpolation and truthiness take the fast path, and every reader
/// gets what a render of their own would give.
#[test]
fn plain_interpolation_takes_the_fast_path() {
    let plain =
        "{% if subscriber.name %}Hello {{ subscriber.name }},{% else %}Hello reader,{% endif %}\n\
                 {% if not subscriber.name %}(no name){% endif %}\n\
                 {% if subscriber.email and unsubscribe_url %}{{ subscriber.email }}{% endif %}\n\
                 {{ unsubscribe_url }} {{ preferences_url }}\n\
                 Yours, {{ subscriber.name }}\n";
    let cases: Vec<Templates> = vec![
        site_templates(plain, plain),
        // The built-in templates.
        templates::load(tempfile::tempdir().unwrap().path()),
        raw_templates(&[
            ("digest.html", "{% include \"part.html\" %}"),
            ("part.html", plain),
            ("base.txt", "{% block main %}{% endblock main %}!"),
            ("digest.txt", "{% extends \"base.txt\" %}{% block main %}{{ subscriber.email }}{% endblock main %}"),
        ]),
    ];
    let mut odd = readers();
    // An empty name reads as no name; a name that ends in spaces is trimmed
    // with the text part's line ends.
    odd.push(reader(6, Some(""), "empty@example.com"));
    odd.push(reader(7, Some("Bob  "), "bob@example.com"));
    for templates in cases {
        let d = digest(templates.clone());
        assert!(
            d.fast.is_some(),
            "slow path for {:?}",
            templates.tera.get_template_names().collect::<Vec<_>>()
        );
        let reference = slow(templates);
        for r in &odd {
            assert_eq!(bodies(&d, r), bodies(&reference, r), "{}", r.email);
        }
    }
    let d = digest(site_templates(plain, plain));
    let (text, _) = bodies(&d, &reader(6, Some(""), "empty@example.com"));
    assert!(text.starts_with("Hello reader,\n(no name)\n"), "{text}");
}

/// An article from outside that quotes what a marker looks like must reach
/// every reader as written, never with the reader's own address in it.
#[test]
fn marker_text_in_an_article_is_not_spliced() {
    let mut article = crate::store::test_article("quoted", "");
    article.summary = Some(
        "Seen: \u{E000}herald:email\u{E001} and \u{E000}herald:unsubscribe\u{E001}".to_owned(),
    );
    let stored = crate::article::StoredArticle {
        id: 1,
        article,
        content_hash: String::new(),
        first_seen: Utc.with_ymd_and_hms(2026, 11, 24, 6, 0, 0).unwrap(),
    };
    let templates = templates::load(tempfile::tempdir().unwrap().path());
    let secret = Secret::new(b"test-secret-0123456789abcdef0123456789".to_vec());
    let d = Digest::new(&config(), templates, secret, &edition(), &[stored]).unwrap();
    assert!(d.fast.is_some(), "the built-in templates take the fast path");
    for r in readers() {
        let (text, html) = bodies(&d, &r);
        for part in [&text, &html] {
            assert!(part.contains("Seen: \u{E000}herald:email\u{E001}"), "{}: {part}", r.email);
            assert_eq!(part.matches(&r.email).count(), 0, "{}: {part}", r.email);
        }
    }
}
