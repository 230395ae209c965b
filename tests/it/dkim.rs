//! DKIM: every message is signed after all its headers are set, with each
//! key of `[[mail.dkim]]` (RSA, Ed25519, or both), so the signature covers
//! List-Unsubscribe and List-Unsubscribe-Post (RFC 8058) and Content-Type.
//! Two independent verifiers check each signature: Python's dkimpy and the
//! mail-auth crate, which looks the keys up in a DNS server of the test's
//! own. Messages are checked as written to the outbox and as received over
//! SMTP (dot-stuffed on the way). Skipped, saying so, where dkimpy, openssl
//! or smtp-sink is not installed.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::support::dns::FakeDns;
use crate::support::{outside, stderr, stdout, Site, SmtpSink};

/// Verifies every signature of every message named; prints one line per
/// signature: the file, the signature's index and pass or FAIL.
const VERIFY: &str = r#"
import sys, json, dkim
records = json.loads(sys.argv[1])
def dns(name, timeout=5):
    name = name.decode().rstrip(".")
    return records[name].encode() if name in records else None
ok = True
for path in sys.argv[2:]:
    raw = open(path, "rb").read()
    # smtp-sink's dumps may end lines with LF alone; messages use CRLF.
    raw = raw.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
    d = dkim.DKIM(raw)
    count = sum(1 for line in raw.split(b"\r\n\r\n")[0].split(b"\r\n")
                if line.lower().startswith(b"dkim-signature:"))
    if count == 0:
        print(path, "none FAIL")
        ok = False
    for i in range(count):
        good = d.verify(idx=i, dnsfunc=dns)
        print(path, i, "pass" if good else "FAIL")
        ok = ok and good
sys.exit(0 if ok else 1)
"#;

fn openssl(args: &[&str], dir: &Path) -> Vec<u8> {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("openssl (Debian package openssl)");
    assert!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    out.stdout
}

/// A key made with openssl in the site, and the TXT record that publishes it.
struct Key {
    selector: &'static str,
    algorithm: &'static str,
    file: &'static str,
    record: String,
}

fn rsa_key(site: &Site, selector: &'static str) -> Key {
    let file = "dkim-rsa.pem";
    // PKCS#8 ("BEGIN PRIVATE KEY"), openssl's default.
    openssl(&["genrsa", "-out", file, "2048"], site.path());
    let public = openssl(&["rsa", "-in", file, "-pubout", "-outform", "DER"], site.path());
    Key { selector, algorithm: "rsa", file, record: format!("v=DKIM1; k=rsa; p={}", b64(&public)) }
}

fn ed25519_key(site: &Site, selector: &'static str) -> Key {
    let file = "dkim-ed25519.pem";
    openssl(&["genpkey", "-algorithm", "ed25519", "-out", file], site.path());
    let public = openssl(&["pkey", "-in", file, "-pubout", "-outform", "DER"], site.path());
    // RFC 8463: the record carries the 32 bytes of the key, not its SPKI.
    let raw = &public[public.len() - 32..];
    Key {
        selector,
        algorithm: "ed25519",
        file,
        record: format!("v=DKIM1; k=ed25519; p={}", b64(raw)),
    }
}

/// A site whose mail is signed with `keys` and carries what is hard to sign
/// right: Unicode display names (the example readers), a long Subject with
/// encoded words, a long List-Unsubscribe (two URIs), and a text part with
/// lines that start with a dot or "From ", white space runs and trailing
/// white space.
fn signed_site(keys: &dyn Fn(&Site) -> Vec<Key>) -> (Site, Vec<Key>) {
    let site = Site::init();
    let keys = keys(&site);
    let config = std::fs::read_to_string(site.file("herald.toml")).unwrap();
    let config = config
        .replace(
            "subject = \"{{ list.name }}, {{ date }}: {{ articles | length }} new article{{ articles | length | pluralize }}\"",
            "subject = \"{{ list.name }} — Lëtzebuerger Morgenzeitung, 港口新闻, {{ date }}: {{ articles | length }} new articles about the harbour, the ferry and the market\"",
        )
        .replace(
            "# unsubscribe_mailto = \"leave@news.example.com\"",
            "unsubscribe_mailto = \"leave-the-morning-digest@news.example.com\"",
        );
    let mut config = config;
    for key in &keys {
        config.push_str(&format!(
            "\n[[mail.dkim]]\nselector = \"{}\"\nkey_file = \"{}\"\nalgorithm = \"{}\"\n",
            key.selector, key.file, key.algorithm
        ));
    }
    site.write("herald.toml", &config);
    let text = std::fs::read_to_string(site.file("templates/digest.txt")).unwrap();
    site.write(
        "templates/digest.txt",
        &format!(
            ".A line that starts with a dot\n..and one with two\nFrom the editor: a line that starts with \"From \"\n\
             spaces   and\ttabs\tinside, and at the end   \n.\n{text}"
        ),
    );
    (site, keys)
}

fn records(keys: &[Key]) -> Vec<(String, String)> {
    keys.iter()
        .map(|k| (format!("{}._domainkey.news.example.com", k.selector), k.record.clone()))
        .collect()
}

/// A DNS server publishing the keys, and `more` records.
fn dns(keys: &[Key], more: &[(&str, &str)]) -> FakeDns {
    let records = records(keys);
    let mut table: Vec<(&str, Vec<&str>)> =
        records.iter().map(|(n, r)| (n.as_str(), vec![r.as_str()])).collect();
    table.extend(more.iter().map(|(n, r)| (*n, vec![*r])));
    let table: Vec<(&str, &[&str])> = table.iter().map(|(n, r)| (*n, r.as_slice())).collect();
    FakeDns::start(&table)
}

/// `n` readers, `reader0@example.com` on.
fn readers(site: &Site, n: usize) {
    let mut csv = String::from("email,name\n");
    for i in 0..n {
        csv.push_str(&format!("reader{i}@example.com,Reader {i}\n"));
    }
    site.write("subscribers/daily.csv", &csv);
}

/// How many readers the messages went to, each counted once.
fn distinct_readers(messages: &[crate::support::Mail]) -> usize {
    let mut to: Vec<String> = messages
        .iter()
        .map(|m| m.parsed().to().unwrap().first().unwrap().address().unwrap().to_owned())
        .collect();
    to.sort();
    to.dedup();
    to.len()
}

/// The messages a sink received, as files in the site.
fn saved(site: &Site, messages: &[crate::support::Mail]) -> Vec<PathBuf> {
    messages
        .iter()
        .enumerate()
        .map(|(i, m)| {
            let path = site.file(&format!("received-{i}.eml"));
            std::fs::write(&path, &m.raw).unwrap();
            path
        })
        .collect()
}

fn dkimpy(keys: &[Key], files: &[PathBuf]) -> std::process::Output {
    let table: serde_json::Map<String, serde_json::Value> =
        records(keys).into_iter().map(|(n, r)| (n, r.into())).collect();
    let mut cmd = Command::new("python3");
    cmd.arg("-c").arg(VERIFY).arg(serde_json::Value::Object(table).to_string());
    cmd.args(files);
    cmd.output().expect("python3")
}

/// mail-auth's verdict on each signature of `raw`, asking `dns` for keys.
fn mail_auth(dns: &FakeDns, raw: &[u8]) -> Vec<String> {
    use hickory_resolver::config::{
        ConnectionConfig, NameServerConfig, ProtocolConfig, ResolverConfig, ResolverOpts,
    };
    let mut connection = ConnectionConfig::new(ProtocolConfig::Udp);
    connection.port = dns.addr.port();
    let server = NameServerConfig::new(dns.addr.ip(), true, vec![connection]);
    let config = ResolverConfig::from_parts(None, Vec::new(), vec![server]);
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    runtime.block_on(async {
        let authenticator =
            mail_auth::MessageAuthenticator::new(config, ResolverOpts::default()).unwrap();
        let message = mail_auth::AuthenticatedMessage::parse(raw).expect("a message");
        authenticator
            .verify_dkim(&message)
            .await
            .iter()
            .map(|o| match o.result() {
                mail_auth::DkimResult::Pass => "pass".to_owned(),
                other => format!("{other:?}"),
            })
            .collect()
    })
}

/// Checks every message with both verifiers: `signatures` each, all pass.
fn all_verify(keys: &[Key], files: &[PathBuf], signatures: usize) {
    let out = dkimpy(keys, files);
    assert!(out.status.success(), "dkimpy: {}{}", stdout(&out), stderr(&out));
    assert_eq!(stdout(&out).matches(" pass").count(), files.len() * signatures, "{}", stdout(&out));
    let dns = dns(keys, &[]);
    for file in files {
        let raw = std::fs::read(file).unwrap();
        let verdicts = mail_auth(&dns, &raw);
        assert_eq!(verdicts, vec!["pass"; signatures], "mail-auth on {}", file.display());
    }
}

/// A copy of `file` with `from` replaced by `to` once; the copy's path.
fn altered(site: &Site, file: &Path, name: &str, from: &str, to: &str) -> PathBuf {
    let raw = std::fs::read_to_string(file).unwrap();
    assert!(raw.contains(from), "{} has no {from:?}", file.display());
    let path = site.file(name);
    std::fs::write(&path, raw.replacen(from, to, 1)).unwrap();
    path
}

fn signed_run(keys: &dyn Fn(&Site) -> Vec<Key>, signatures: usize) {
    if !outside::available(&outside::DKIMPY) {
        return;
    }
    let (site, keys) = signed_site(keys);
    let out = site.herald(&["run", "--now", "2026-11-24T07:00:00Z"]);
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    let files = site.outbox();
    assert_eq!(files.len(), 4);
    let raw = std::fs::read_to_string(&files[0]).unwrap();
    let head = raw.split("\r\n\r\n").next().unwrap();
    assert_eq!(head.matches("DKIM-Signature:").count(), signatures, "{head}");
    // The hard cases are really there: folded encoded Subject, folded
    // List-Unsubscribe, a dot and "From " at the start of body lines.
    let unfolded = head.replace("\r\n ", " ").replace("\r\n\t", " ");
    let subject = unfolded.lines().find(|l| l.starts_with("Subject:")).unwrap();
    assert!(subject.len() > 150 && subject.contains("=?utf-8?"), "{head}");
    assert!(head.contains("harbour,\r\n the ferry") || head.contains("\r\n about"), "{head}");
    assert!(head.contains(">,\r\n <mailto:"), "List-Unsubscribe is folded: {head}");
    let signature = unfolded.lines().find(|l| l.starts_with("DKIM-Signature:")).unwrap();
    let h = signature.split("h=").nth(1).unwrap().split(';').next().unwrap().to_ascii_lowercase();
    for name in [
        "from",
        "reply-to",
        "to",
        "subject",
        "date",
        "message-id",
        "list-id",
        "list-unsubscribe",
        "list-unsubscribe-post",
        "mime-version",
        "content-type",
    ] {
        assert!(h.split(':').any(|n| n.trim() == name), "h= lacks {name}: {h}");
    }
    assert!(signature.contains("d=news.example.com"), "{signature}");
    assert!(raw.contains("\r\n.A line that starts with a dot\r\n"), "{raw}");
    assert!(raw.contains("\r\nFrom the editor"), "{raw}");
    all_verify(&keys, &files, signatures);

    // Any change after signing fails both verifiers: the unsubscribe link,
    // the subject, one byte of the body.
    let tampered = [
        altered(
            &site,
            &files[0],
            "unsub.eml",
            "unsubscribe?token=daily.",
            "unsubscribe?token=evil.",
        ),
        altered(&site, &files[0], "subject.eml", "Subject: The Morning", "Subject: The Evening"),
        altered(
            &site,
            &files[0],
            "body.eml",
            "A line that starts with a dot",
            "A line that starts with a dog",
        ),
    ];
    let out = dkimpy(&keys, &tampered);
    assert!(!out.status.success(), "dkimpy took an altered message: {}", stdout(&out));
    assert_eq!(stdout(&out).matches(" pass").count(), 0, "{}", stdout(&out));
    let dns = dns(&keys, &[]);
    for file in &tampered {
        let verdicts = mail_auth(&dns, &std::fs::read(file).unwrap());
        assert_eq!(verdicts.len(), signatures);
        assert!(verdicts.iter().all(|v| v != "pass"), "mail-auth took {}", file.display());
    }
}

#[test]
fn rsa_signatures_verify_and_cover_the_unsubscribe_headers() {
    signed_run(&|site| vec![rsa_key(site, "herald")], 1);
}

#[test]
fn ed25519_signatures_verify() {
    signed_run(&|site| vec![ed25519_key(site, "herald-ed")], 1);
}

#[test]
fn dual_signed_mail_verifies_with_each_key() {
    signed_run(&|site| vec![ed25519_key(site, "herald-ed"), rsa_key(site, "herald")], 2);
}

#[test]
fn signatures_survive_the_trip_over_smtp() {
    if !outside::available(&outside::DKIMPY) {
        return;
    }
    let Some(sink) = SmtpSink::start() else { return };
    let (site, keys) =
        signed_site(&|site| vec![ed25519_key(site, "herald-ed"), rsa_key(site, "herald")]);
    let env = [("HERALD_MAIL_TRANSPORT", "smtp"), ("HERALD_MAIL_SMTP_URL", &sink.url())];
    let out = site.herald_env(&["run", "--now", "2026-11-24T07:00:00Z"], &env);
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    let messages = sink.messages(4);
    assert_eq!(messages.len(), 4);
    let files = saved(&site, &messages);
    let received = String::from_utf8_lossy(&messages[0].raw).into_owned();
    assert!(received.contains("\n.A line that starts with a dot"), "{received}");
    all_verify(&keys, &files, 2);
}

#[test]
fn a_bad_key_is_a_clear_error() {
    let site = Site::init();
    site.write("dkim.pem", "not a key\n");
    let env = [("HERALD_MAIL_DKIM_SELECTOR", "herald"), ("HERALD_MAIL_DKIM_KEY_FILE", "dkim.pem")];
    let out = site.herald_env(&["run", "--now", "2026-11-24T07:00:00Z"], &env);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(err.contains("dkim.pem") && err.contains("RSA private key"), "{err}");
    assert!(site.outbox().is_empty(), "nothing unsigned goes out");
    let out = site.herald_env(&["check"], &env);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stdout(&out).contains("dkim.pem") && stdout(&out).contains("RSA private key"),
        "{}",
        stdout(&out)
    );
    let out = site.herald_env(&["check"], &[("HERALD_MAIL_DKIM_SELECTOR", "herald")]);
    assert!(stdout(&out).contains("dkim_key_file"), "{}", stdout(&out));
}

#[test]
fn a_short_rsa_key_is_refused() {
    if !outside::available(&outside::DKIMPY) {
        return;
    }
    let site = Site::init();
    openssl(&["genrsa", "-out", "dkim.pem", "1024"], site.path());
    let env = [("HERALD_MAIL_DKIM_SELECTOR", "herald"), ("HERALD_MAIL_DKIM_KEY_FILE", "dkim.pem")];
    let out = site.herald_env(&["check"], &env);
    assert_eq!(out.status.code(), Some(1));
    assert!(stdout(&out).contains("1024 bits"), "{}", stdout(&out));
}

#[test]
fn two_keys_with_one_selector_are_a_config_problem() {
    let site = Site::init();
    let mut config = std::fs::read_to_string(site.file("herald.toml")).unwrap();
    config.push_str("\n[[mail.dkim]]\nselector = \"one\"\nkey_file = \"a.pem\"\n\n[[mail.dkim]]\nselector = \"one\"\nkey_file = \"b.pem\"\nalgorithm = \"ed25519\"\n");
    site.write("herald.toml", &config);
    let out = site.herald(&["check"]);
    assert_eq!(out.status.code(), Some(1));
    let text = format!("{}{}", stdout(&out), stderr(&out));
    assert!(text.contains("herald.toml") && text.contains("selector `one`"), "{text}");
}

fn b64(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

#[test]
fn check_finds_the_published_rsa_and_ed25519_keys_to_be_ours() {
    if !outside::available(&outside::DKIMPY) {
        return;
    }
    let (site, keys) =
        signed_site(&|site| vec![ed25519_key(site, "herald-ed"), rsa_key(site, "herald")]);
    let dns = dns(
        &keys,
        &[("news.example.com", "v=spf1 -all"), ("_dmarc.news.example.com", "v=DMARC1; p=none")],
    );
    let out = site.herald_env(&["check", "--dns"], &[("HERALD_DNS_SERVER", &dns.addr.to_string())]);
    let text = stdout(&out);
    assert!(text.contains("ok: DKIM key at herald._domainkey.news.example.com"), "{text}");
    assert!(text.contains("ok: DKIM key at herald-ed._domainkey.news.example.com"), "{text}");
}

/// With an RSA key each worker takes its next reader while the current
/// message is sent, to sign it meanwhile: every reader still gets exactly
/// one message, each signed.
#[test]
fn rsa_signed_delivery_reaches_every_reader_once() {
    if !outside::available(&outside::DKIMPY) {
        return;
    }
    let Some(sink) = SmtpSink::start() else { return };
    let (site, keys) = signed_site(&|site| vec![rsa_key(site, "herald")]);
    readers(&site, 60);
    let env = [
        ("HERALD_MAIL_TRANSPORT", "smtp"),
        ("HERALD_MAIL_SMTP_URL", &sink.url()),
        ("HERALD_MAIL_CONCURRENCY", "3"),
    ];
    let out = site.herald_env(&["run", "--now", "2026-11-24T07:00:00Z"], &env);
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    assert!(stdout(&out).contains("60 sent, 0 deferred, 0 failed"), "{}", stdout(&out));
    let messages = sink.messages(60);
    assert_eq!(distinct_readers(&messages), 60, "each reader once");
    let files = saved(&site, &messages[..5]);
    all_verify(&keys, &files, 1);
}

/// A reader taken ahead when the sending stops (here: the relay's daily cap)
/// is handed back, and sent by a later run: nobody lost, nobody twice.
#[test]
fn a_reader_signed_ahead_of_a_stop_is_sent_later_once() {
    if !outside::available(&outside::DKIMPY) {
        return;
    }
    let Some(sink) = SmtpSink::start() else { return };
    let (site, _) = signed_site(&|site| vec![rsa_key(site, "herald")]);
    readers(&site, 25);
    let mut config = std::fs::read_to_string(site.file("herald.toml")).unwrap();
    config = config.replace("transport = \"outbox\"", "transport = \"smtp\"");
    config.push_str(&format!(
        "\n[[mail.relays]]\nname = \"capped\"\nurl = \"{}\"\nconcurrency = 3\ndaily_cap = 10\n",
        sink.url()
    ));
    site.write("herald.toml", &config);
    let mut seen = Vec::new();
    for (day, now) in
        [(1, "2026-11-24T07:00:00Z"), (2, "2026-11-25T07:00:00Z"), (3, "2026-11-26T07:00:00Z")]
    {
        let command = if day == 1 { "run" } else { "deliver" };
        let out = site.herald(&[command, "--now", now]);
        assert!(out.status.success(), "day {day}: {}{}", stdout(&out), stderr(&out));
        seen.push(sink.count());
    }
    assert_eq!(seen, [10, 20, 25], "10 a day, then the last 5");
    assert_eq!(distinct_readers(&sink.messages(25)), 25, "each reader once");
}

#[test]
fn the_one_key_shorthand_and_a_key_list_are_not_both_set() {
    let site = Site::init();
    let mut config = std::fs::read_to_string(site.file("herald.toml")).unwrap();
    config.push_str("\n[[mail.dkim]]\nselector = \"two\"\nkey_file = \"b.pem\"\n");
    site.write("herald.toml", &config);
    let env = [("HERALD_MAIL_DKIM_SELECTOR", "one"), ("HERALD_MAIL_DKIM_KEY_FILE", "a.pem")];
    let out = site.herald_env(&["check"], &env);
    assert_eq!(out.status.code(), Some(1));
    let text = format!("{}{}", stdout(&out), stderr(&out));
    assert!(text.contains("list every key under [[mail.dkim]]"), "{text}");
}
