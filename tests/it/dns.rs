//! `herald check --dns` against a DNS server of the test's own on loopback:
//! it finds SPF, the DKIM key and DMARC, names what is missing, and says so
//! plainly when no DNS server answers.

use crate::support::dns::FakeDns;
use crate::support::{stdout, Site};

const DOMAIN: &str = "news.example.com";

/// The public half of `dkim.key` below, as its DNS record carries it.
const PUBLIC: &str = "v=DKIM1; k=ed25519; p=A6EHv/POEL4dcN0Y50vAmWfk1jCbpQ1fHdyGZBJVMbg=";

fn dkim_site() -> Site {
    let site = Site::init();
    // Any 32 bytes are an Ed25519 private key.
    site.write("dkim.key", "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=\n");
    site
}

fn check(site: &Site, dns: &str) -> std::process::Output {
    site.herald_env(
        &["check", "--dns"],
        &[
            ("HERALD_DNS_SERVER", dns),
            ("HERALD_MAIL_DKIM_SELECTOR", "herald"),
            ("HERALD_MAIL_DKIM_KEY_FILE", "dkim.key"),
            ("HERALD_MAIL_DKIM_ALGORITHM", "ed25519"),
        ],
    )
}

#[test]
fn finds_every_record() {
    let dns = FakeDns::start(&[
        (DOMAIN, &["v=spf1 ip4:192.0.2.10 -all", "google-site-verification=xyz"]),
        ("herald._domainkey.news.example.com", &[PUBLIC]),
        ("_dmarc.news.example.com", &["v=DMARC1; p=quarantine"]),
    ]);
    let site = dkim_site();
    let out = check(&site, &dns.addr.to_string());
    let text = stdout(&out);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("ok: SPF for news.example.com: v=spf1 ip4:192.0.2.10 -all"), "{text}");
    assert!(text.contains("ok: DKIM key at herald._domainkey.news.example.com"), "{text}");
    assert!(text.contains("ok: DMARC at _dmarc.news.example.com"), "{text}");
}

#[test]
fn names_what_is_missing_or_wrong() {
    let dns = FakeDns::start(&[
        (DOMAIN, &["v=spf1 -all", "v=spf1 include:relay.example ~all"]),
        ("herald._domainkey.news.example.com", &["v=DKIM1; k=rsa; p=MIIBIjANBgkq"]),
    ]);
    let site = dkim_site();
    let out = check(&site, &dns.addr.to_string());
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(text.contains("has 2 SPF records"), "{text}");
    assert!(text.contains("publishes a k=rsa key but herald signs with ed25519"), "{text}");
    assert!(text.contains("DMARC: no record at _dmarc.news.example.com"), "{text}");
}

#[test]
fn another_key_than_ours_is_named_with_the_record_to_publish() {
    let dns = FakeDns::start(&[
        (DOMAIN, &["v=spf1 ip4:192.0.2.10 -all"]),
        (
            "herald._domainkey.news.example.com",
            &["v=DKIM1; k=ed25519; p=11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo="],
        ),
        ("_dmarc.news.example.com", &["v=DMARC1; p=none"]),
    ]);
    let site = dkim_site();
    let out = check(&site, &dns.addr.to_string());
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(
        text.contains("publishes another key than") && text.contains(&format!("\"{PUBLIC}\"")),
        "{text}"
    );
}

#[test]
fn no_dns_server_means_skipped_not_failed() {
    let site = dkim_site();
    // A loopback port where nothing answers.
    let silent = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let out = check(&site, &silent.local_addr().unwrap().to_string());
    let text = stdout(&out);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("DNS checks skipped") && text.contains("did not answer"), "{text}");
}

#[test]
fn a_lost_answer_is_asked_for_again() {
    let dns = FakeDns::start_dropping(
        &[
            (DOMAIN, &["v=spf1 ip4:192.0.2.10 -all"]),
            ("herald._domainkey.news.example.com", &[PUBLIC]),
            ("_dmarc.news.example.com", &["v=DMARC1; p=none"]),
        ],
        1,
    );
    let site = dkim_site();
    let out = check(&site, &dns.addr.to_string());
    let text = stdout(&out);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("ok: SPF for news.example.com"), "{text}");
}
