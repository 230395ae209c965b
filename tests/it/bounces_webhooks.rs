//! The providers' webhooks on a real `herald serve`, over HTTP: for each of
//! Amazon SES (through SNS), Postmark, Mailgun, SendGrid and the generic
//! endpoint, a correctly signed event acts on the reader it names (a hard
//! bounce suppresses, a complaint unsubscribes), a wrongly signed or
//! unsigned one changes nothing, a replay is acted on once, and a malformed
//! body is a 400 that changes nothing. For SNS the signing certificate comes
//! from a TLS server on loopback with a CA made by the test (trusted through
//! `ses_extra_ca_file`, found through the tests' DNS server), and a
//! certificate URL off Amazon's hosts is refused before anything is fetched.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine as _;
use hmac::{Hmac, Mac};

use crate::support::dns::FakeDns;
use crate::support::http::{send, Reply, Server};
use crate::support::{outside, stderr, stdout, with_store, Site, SECRET};

const NOW: &str = "2026-11-24T07:00:00Z";
const READERS: [&str; 4] =
    ["ada@example.com", "grace@example.org", "joao@example.net", "mei@example.com"];

/// A site whose digest went to its four readers (into the outbox), with
/// `config` added to its herald.toml.
fn mailed_site(config: &str) -> Site {
    let site = Site::init();
    let path = site.file("herald.toml");
    let mut text = std::fs::read_to_string(&path).unwrap();
    text.push_str(config);
    std::fs::write(&path, text).unwrap();
    let out = site.herald(&["run", "--now", NOW]);
    assert!(out.status.success(), "herald run failed:\n{}\n{}", stdout(&out), stderr(&out));
    assert_eq!(site.outbox().len(), READERS.len(), "one digest per reader");
    site
}

/// What the store says about the readers.
#[derive(Debug, PartialEq, Eq)]
struct State {
    /// (address, kind, action) of every bounce event, oldest first.
    events: Vec<(String, String, String)>,
    /// Confirmed members that are not suppressed.
    audience: i64,
    unsubscribed: Vec<String>,
}

fn state(site: &Site) -> State {
    with_store(site, async |store| {
        let mut events: Vec<(String, String, String)> = store
            .bounce_events(1000)
            .await
            .unwrap()
            .into_iter()
            .map(|e| (e.email.unwrap_or_default(), e.kind, e.action))
            .collect();
        events.reverse();
        let unsubscribed = store
            .members(Some("daily"))
            .await
            .unwrap()
            .into_iter()
            .filter(|m| m.status == herald::store::MembershipStatus::Unsubscribed)
            .map(|m| m.email)
            .collect();
        State { events, audience: store.audience("daily").await.unwrap(), unsubscribed }
    })
}

fn event(email: &str, kind: &str, action: &str) -> (String, String, String) {
    (email.to_owned(), kind.to_owned(), action.to_owned())
}

fn post(server: &Server, path: &str, headers: &[(&str, &str)], body: &[u8]) -> Reply {
    let mut all = vec![("Content-Type", "application/json")];
    all.extend_from_slice(headers);
    send(server.addr, "POST", path, &all, body)
}

fn assert_status(reply: &Reply, status: u16, what: &str) {
    assert_eq!(reply.status, status, "{what}: {}", reply.text());
}

fn hmac_hex(key: &[u8], parts: &[&[u8]]) -> String {
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(key).unwrap();
    for part in parts {
        mac.update(part);
    }
    hex::encode(mac.finalize().into_bytes())
}

fn unix_now() -> i64 {
    chrono::Utc::now().timestamp()
}

const WEBHOOK_SECRET: &str = "generic-webhook-secret-0123456789";

fn generic_headers(secret: &str, ts: i64, body: &[u8]) -> (String, String) {
    let ts = ts.to_string();
    let sig = format!("sha256={}", hmac_hex(secret.as_bytes(), &[ts.as_bytes(), b".", body]));
    (ts, sig)
}

#[test]
fn the_generic_webhook_takes_signed_events_once() {
    let site = mailed_site("\n[bounces.webhooks]\nmax_body_kb = 4\n");
    let server = Server::start_env(&site, &[("HERALD_BOUNCES_WEBHOOK_SECRET", WEBHOOK_SECRET)]);
    let start = state(&site);
    assert_eq!(start, State { events: vec![], audience: 4, unsubscribed: vec![] });

    let body = br#"{"events":[
        {"id":"evt-1","type":"hard","email":"Grace@Example.org","status":"5.1.1","diagnostic":"550 5.1.1 no such user"},
        {"id":"evt-2","type":"complaint","email":"ada@example.com"},
        {"id":"evt-3","type":"delayed","email":"joao@example.net","status":"4.2.2"}]}"#;
    let (ts, sig) = generic_headers(WEBHOOK_SECRET, unix_now(), body);

    // Unsigned, wrongly signed, stale, or signed but not readable: refused,
    // and nothing changes.
    let reply = post(&server, "/webhooks/generic", &[], body);
    assert_status(&reply, 401, "no signature");
    let (_, wrong) = generic_headers("another secret, just as long!!", unix_now(), body);
    let reply = post(
        &server,
        "/webhooks/generic",
        &[("X-Herald-Timestamp", &ts), ("X-Herald-Signature", &wrong)],
        body,
    );
    assert_status(&reply, 403, "a signature with another secret");
    let (old_ts, old_sig) = generic_headers(WEBHOOK_SECRET, unix_now() - 3600, body);
    let reply = post(
        &server,
        "/webhooks/generic",
        &[("X-Herald-Timestamp", &old_ts), ("X-Herald-Signature", &old_sig)],
        body,
    );
    assert_status(&reply, 403, "an hour-old timestamp");
    let broken = br#"{"events":[{"id":"x","type":"hard"}"#;
    let (bts, bsig) = generic_headers(WEBHOOK_SECRET, unix_now(), broken);
    let reply = post(
        &server,
        "/webhooks/generic",
        &[("X-Herald-Timestamp", &bts), ("X-Herald-Signature", &bsig)],
        broken,
    );
    assert_status(&reply, 400, "a body cut short");
    assert!(reply.text().contains("not JSON"), "{}", reply.text());
    let big = format!(r#"{{"events":[],"pad":"{}"}}"#, "x".repeat(8 * 1024));
    let (bigts, bigsig) = generic_headers(WEBHOOK_SECRET, unix_now(), big.as_bytes());
    let reply = post(
        &server,
        "/webhooks/generic",
        &[("X-Herald-Timestamp", &bigts), ("X-Herald-Signature", &bigsig)],
        big.as_bytes(),
    );
    assert_status(&reply, 413, "a body over max_body_kb");
    assert_eq!(state(&site), start, "refused requests changed nothing");

    // Signed: taken.
    let headers = [("X-Herald-Timestamp", ts.as_str()), ("X-Herald-Signature", sig.as_str())];
    let reply = post(&server, "/webhooks/generic", &headers, body);
    assert_status(&reply, 200, "a signed request");
    let after = state(&site);
    assert_eq!(
        after.events,
        [
            event("grace@example.org", "hard", "suppressed"),
            event("ada@example.com", "complaint", "unsubscribed"),
            event("joao@example.net", "delayed", "none"),
        ]
    );
    assert_eq!(after.audience, 2, "grace is suppressed and ada left");
    assert_eq!(after.unsubscribed, ["ada@example.com"]);

    // The same request again: acknowledged, acted on once.
    let reply = post(&server, "/webhooks/generic", &headers, body);
    assert_status(&reply, 200, "a replay");
    assert!(reply.text().contains("seen before 3"), "{}", reply.text());
    assert_eq!(state(&site), after, "a replay changes nothing");

    // The providers' webhooks are off: nothing configures them.
    for path in ["/webhooks/ses", "/webhooks/postmark", "/webhooks/mailgun", "/webhooks/sendgrid"] {
        assert_status(&post(&server, path, &[], b"{}"), 404, path);
    }
    server.stop();
}

#[test]
fn postmark_needs_its_basic_credentials() {
    let site = mailed_site("\n[bounces.webhooks]\npostmark_user = \"postmark-hook\"\n");
    let password = "postmark-password-0123456789";
    let server = Server::start_env(&site, &[("HERALD_BOUNCES_POSTMARK_PASSWORD", password)]);
    let basic = |user: &str, pw: &str| {
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pw}"))
        )
    };
    let bounce = br#"{"RecordType":"Bounce","ID":692560173,"Type":"HardBounce","TypeCode":1,
        "MessageID":"2c1b63fe-43f2-4db5-91b0-8bdfa44a9316","Email":"mei@example.com",
        "Details":"smtp;550 5.1.1 The email account that you tried to reach does not exist",
        "BouncedAt":"2026-11-24T07:01:00Z","Inactive":true}"#;
    let start = state(&site);

    let reply = post(&server, "/webhooks/postmark", &[], bounce);
    assert_status(&reply, 401, "no credentials");
    assert!(reply.header("WWW-Authenticate").is_some_and(|v| v.starts_with("Basic")));
    let wrong = basic("postmark-hook", "guess");
    assert_status(
        &post(&server, "/webhooks/postmark", &[("Authorization", &wrong)], bounce),
        403,
        "a wrong password",
    );
    let good = basic("postmark-hook", password);
    let auth = [("Authorization", good.as_str())];
    assert_status(
        &post(&server, "/webhooks/postmark", &auth, br#"{"RecordType":"Bounce","ID":1}"#),
        400,
        "a bounce without an address",
    );
    assert_eq!(state(&site), start, "refused requests changed nothing");

    assert_status(&post(&server, "/webhooks/postmark", &auth, bounce), 200, "a bounce");
    let complaint = br#"{"RecordType":"SpamComplaint","ID":692560174,"Type":"SpamComplaint","TypeCode":100001,"Email":"joao@example.net"}"#;
    assert_status(&post(&server, "/webhooks/postmark", &auth, complaint), 200, "a complaint");
    let open = br#"{"RecordType":"Open","MessageID":"x","Recipient":"ada@example.com"}"#;
    assert_status(&post(&server, "/webhooks/postmark", &auth, open), 200, "an open");
    let after = state(&site);
    assert_eq!(
        after.events,
        [
            event("mei@example.com", "hard", "suppressed"),
            event("joao@example.net", "complaint", "unsubscribed")
        ]
    );
    assert_eq!(after.audience, 2);

    assert_status(&post(&server, "/webhooks/postmark", &auth, bounce), 200, "a replay");
    assert_eq!(state(&site), after, "a replay changes nothing");
    server.stop();
}

#[test]
fn mailgun_signatures_and_tokens() {
    let site = mailed_site("");
    let key = "mailgun-signing-key-0123456789abcdef";
    let server = Server::start_env(&site, &[("HERALD_BOUNCES_MAILGUN_KEY", key)]);
    let signed = |token: &str, event_data: &str, key: &str| {
        let ts = unix_now().to_string();
        let sig = hmac_hex(key.as_bytes(), &[ts.as_bytes(), token.as_bytes()]);
        format!(
            r#"{{"signature":{{"timestamp":"{ts}","token":"{token}","signature":"{sig}"}},"event-data":{event_data}}}"#
        )
    };
    let failed = r#"{"event":"failed","id":"mg-1","severity":"permanent","reason":"bounce",
        "recipient":"grace@example.org","delivery-status":{"code":550,"enhanced-code":"5.1.1","message":"No such user"}}"#;
    let start = state(&site);

    let wrong = signed("token-a", failed, "not-the-key-0123456789abcdef");
    assert_status(&post(&server, "/webhooks/mailgun", &[], wrong.as_bytes()), 403, "another key");
    let unsigned = format!(r#"{{"event-data":{failed}}}"#);
    assert_status(&post(&server, "/webhooks/mailgun", &[], unsigned.as_bytes()), 401, "unsigned");
    assert_status(&post(&server, "/webhooks/mailgun", &[], b"{\"signature\":"), 400, "cut short");
    let no_recipient = signed("token-b", r#"{"event":"failed","severity":"permanent"}"#, key);
    assert_status(
        &post(&server, "/webhooks/mailgun", &[], no_recipient.as_bytes()),
        400,
        "a failure without a recipient",
    );
    assert_eq!(state(&site), start, "refused requests changed nothing");

    let good = signed("token-c", failed, key);
    assert_status(&post(&server, "/webhooks/mailgun", &[], good.as_bytes()), 200, "signed");
    let complained = signed(
        "token-d",
        r#"{"event":"complained","id":"mg-2","recipient":"mei@example.com"}"#,
        key,
    );
    assert_status(
        &post(&server, "/webhooks/mailgun", &[], complained.as_bytes()),
        200,
        "complaint",
    );
    let after = state(&site);
    assert_eq!(
        after.events,
        [
            event("grace@example.org", "hard", "suppressed"),
            event("mei@example.com", "complaint", "unsubscribed")
        ]
    );

    // The same request, and its token on another event: both ignored.
    assert_status(&post(&server, "/webhooks/mailgun", &[], good.as_bytes()), 200, "a replay");
    let reused = good.replace("grace@example.org", "ada@example.com").replace("mg-1", "mg-9");
    assert_status(
        &post(&server, "/webhooks/mailgun", &[], reused.as_bytes()),
        200,
        "a reused token",
    );
    assert_eq!(state(&site), after, "replays change nothing");
    server.stop();
}

#[test]
fn sendgrid_signed_event_batches() {
    use ring::rand::SystemRandom;
    use ring::signature::{EcdsaKeyPair, KeyPair, ECDSA_P256_SHA256_ASN1_SIGNING};
    let rng = SystemRandom::new();
    let new_key = || {
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, &rng).unwrap();
        EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, pkcs8.as_ref(), &rng).unwrap()
    };
    let key = new_key();
    // The verification key as SendGrid shows it: a base64 DER
    // SubjectPublicKeyInfo of the P-256 point.
    let mut spki = hex::decode("3059301306072a8648ce3d020106082a8648ce3d030107034200").unwrap();
    spki.extend_from_slice(key.public_key().as_ref());
    let spki = base64::engine::general_purpose::STANDARD.encode(spki);
    let site = mailed_site(&format!("\n[bounces.webhooks]\nsendgrid_public_key = \"{spki}\"\n"));
    let server = Server::start(&site);
    let sign = |key: &EcdsaKeyPair, ts: &str, body: &[u8]| {
        let mut signed = ts.as_bytes().to_vec();
        signed.extend_from_slice(body);
        base64::engine::general_purpose::STANDARD.encode(key.sign(&rng, &signed).unwrap())
    };
    let body = br#"[
      {"email":"ada@example.com","timestamp":1795503660,"event":"bounce","type":"bounce","status":"5.1.1","reason":"550 5.1.1 unknown user","sg_event_id":"sg-1"},
      {"email":"mei@example.com","timestamp":1795503660,"event":"spamreport","sg_event_id":"sg-2"},
      {"email":"joao@example.net","timestamp":1795503660,"event":"delivered","sg_event_id":"sg-3"}
    ]"#;
    let ts = unix_now().to_string();
    let start = state(&site);

    let post_signed = |sig: &str, ts: &str, body: &[u8]| {
        post(
            &server,
            "/webhooks/sendgrid",
            &[
                ("X-Twilio-Email-Event-Webhook-Signature", sig),
                ("X-Twilio-Email-Event-Webhook-Timestamp", ts),
            ],
            body,
        )
    };
    assert_status(&post(&server, "/webhooks/sendgrid", &[], body), 401, "unsigned");
    assert_status(&post_signed(&sign(&new_key(), &ts, body), &ts, body), 403, "another key");
    let other_ts = (unix_now() + 1).to_string();
    assert_status(&post_signed(&sign(&key, &ts, body), &other_ts, body), 403, "another timestamp");
    assert_status(&post_signed(&sign(&key, &ts, b"[{"), &ts, b"[{"), 400, "cut short");
    assert_eq!(state(&site), start, "refused requests changed nothing");

    let sig = sign(&key, &ts, body);
    assert_status(&post_signed(&sig, &ts, body), 200, "signed");
    let after = state(&site);
    assert_eq!(
        after.events,
        [
            event("ada@example.com", "hard", "suppressed"),
            event("mei@example.com", "complaint", "unsubscribed")
        ]
    );
    assert_status(&post_signed(&sig, &ts, body), 200, "a replay");
    assert_eq!(state(&site), after, "a replay changes nothing");
    server.stop();
}

// ---- Amazon SES through SNS ----

const TOPIC: &str = "arn:aws:sns:us-east-1:123456789012:herald-bounces";
const SNS_HOST: &str = "sns.us-east-1.amazonaws.com";

/// Runs openssl in `dir` with `args` (split on spaces; none has one).
fn openssl(dir: &Path, args: &str) {
    let args: Vec<&str> = args.split_whitespace().collect();
    let out = Command::new("openssl").current_dir(dir).args(&args).output().expect("run openssl");
    assert!(
        out.status.success(),
        "openssl {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A root CA (ca.pem, the one herald is told to trust), an intermediate CA
/// it signed (inter.pem, inter.der, which herald is not given), and a
/// certificate for Amazon's SNS host signed by the intermediate (sns.pem,
/// sns.key: it serves TLS and signs SNS messages) that names `issuer_url`
/// as where its issuer's certificate is, as Amazon's do; also a
/// self-signed certificate no one trusts (rogue.pem, rogue.key).
fn make_certificates(dir: &Path, issuer_url: &str) {
    std::fs::write(
        dir.join("ca.ext"),
        "basicConstraints=critical,CA:TRUE\nkeyUsage=critical,keyCertSign,cRLSign\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("sns.ext"),
        format!("subjectAltName=DNS:{SNS_HOST},DNS:sns.amazonaws.com\nbasicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\nauthorityInfoAccess=caIssuers;URI:{issuer_url}\n"),
    )
    .unwrap();
    openssl(dir, "req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.pem -days 3 -subj /CN=herald-test-root -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign");
    openssl(dir, "req -newkey rsa:2048 -nodes -keyout inter.key -out inter.csr -subj /CN=herald-test-intermediate");
    openssl(dir, "x509 -req -in inter.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out inter.pem -days 3 -extfile ca.ext");
    openssl(dir, "x509 -in inter.pem -outform DER -out inter.der");
    openssl(
        dir,
        "req -newkey rsa:2048 -nodes -keyout sns.key -out sns.csr -subj /CN=sns.amazonaws.com",
    );
    openssl(dir, "x509 -req -in sns.csr -CA inter.pem -CAkey inter.key -CAcreateserial -out sns.pem -days 3 -extfile sns.ext");
    openssl(dir, &format!("req -x509 -newkey rsa:2048 -nodes -keyout rogue.key -out rogue.pem -days 3 -subj /CN=sns.amazonaws.com -addext subjectAltName=DNS:{SNS_HOST}"));
}

/// A plain HTTP server on loopback that answers every GET with `body`, and
/// counts the requests.
fn issuer_server(listener: TcpListener, body: Vec<u8>) -> Arc<AtomicUsize> {
    let count = Arc::new(AtomicUsize::new(0));
    let seen = Arc::clone(&count);
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
            let mut head = Vec::new();
            let mut buf = [0u8; 4096];
            while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                match stream.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => head.extend_from_slice(&buf[..n]),
                }
            }
            seen.fetch_add(1, Ordering::SeqCst);
            let _ = write!(
                stream,
                "HTTP/1.1 200 OK\r\nContent-Type: application/pkix-cert\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            );
            let _ = stream.write_all(&body);
        }
    });
    count
}

/// Signs `text` with `key` (SHA-1 for SignatureVersion 1, SHA-256 for 2).
fn rsa_sign(dir: &Path, key: &str, version: u8, text: &str) -> String {
    let input = dir.join("to-sign.txt");
    std::fs::write(&input, text).unwrap();
    let digest = if version == 1 { "-sha1" } else { "-sha256" };
    let out = Command::new("openssl")
        .current_dir(dir)
        .args(["dgst", digest, "-sign", key, "to-sign.txt"])
        .output()
        .expect("run openssl");
    assert!(out.status.success(), "openssl dgst: {}", String::from_utf8_lossy(&out.stderr));
    base64::engine::general_purpose::STANDARD.encode(out.stdout)
}

/// A TLS server on loopback for Amazon's SNS host: serves the files it is
/// given by path, answers every other GET with 200, and counts connections
/// and the request lines it saw.
struct AmazonServer {
    port: u16,
    connections: Arc<AtomicUsize>,
    requests: Arc<Mutex<Vec<String>>>,
}

impl AmazonServer {
    fn start(dir: &Path, files: Vec<(String, Vec<u8>)>) -> Self {
        use rustls_pki_types::pem::PemObject;
        use rustls_pki_types::{CertificateDer, PrivateKeyDer};
        let certs: Vec<CertificateDer<'static>> = ["sns.pem", "inter.pem"]
            .iter()
            .flat_map(|f| CertificateDer::pem_file_iter(dir.join(f)).unwrap())
            .map(Result::unwrap)
            .collect();
        let key = PrivateKeyDer::from_pem_file(dir.join("sns.key")).unwrap();
        let config = Arc::new(
            rustls::ServerConfig::builder_with_provider(Arc::new(
                rustls::crypto::ring::default_provider(),
            ))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(certs, key)
            .unwrap(),
        );
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let connections = Arc::new(AtomicUsize::new(0));
        let requests = Arc::new(Mutex::new(Vec::new()));
        let (count, seen) = (Arc::clone(&connections), Arc::clone(&requests));
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { continue };
                count.fetch_add(1, Ordering::SeqCst);
                let (config, seen, files) = (Arc::clone(&config), Arc::clone(&seen), files.clone());
                std::thread::spawn(move || {
                    let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
                    let Ok(conn) = rustls::ServerConnection::new(config) else { return };
                    let mut tls = rustls::StreamOwned::new(conn, stream);
                    let mut head = Vec::new();
                    let mut buf = [0u8; 4096];
                    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                        match tls.read(&mut buf) {
                            Ok(0) | Err(_) => return,
                            Ok(n) => head.extend_from_slice(&buf[..n]),
                        }
                    }
                    let line =
                        String::from_utf8_lossy(&head).lines().next().unwrap_or("").to_owned();
                    seen.lock().unwrap().push(line.clone());
                    let path = line.split_whitespace().nth(1).unwrap_or("/").to_owned();
                    let body = files
                        .iter()
                        .find(|(p, _)| *p == path)
                        .map(|(_, b)| b.clone())
                        .unwrap_or_else(|| b"<ConfirmSubscriptionResponse/>".to_vec());
                    let _ = write!(
                        tls,
                        "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                        body.len()
                    );
                    let _ = tls.write_all(&body);
                    let _ = tls.flush();
                    tls.conn.send_close_notify();
                    let _ = tls.flush();
                });
            }
        });
        Self { port, connections, requests }
    }

    fn requests(&self) -> Vec<String> {
        self.requests.lock().unwrap().clone()
    }
}

/// An SNS message of `kind`, signed as SNS signs with `key` (a key file in
/// `dir`) and SignatureVersion `version`.
fn sns_message(
    dir: &Path,
    (key, version): (&str, u8),
    cert_url: &str,
    kind: &str,
    message_id: &str,
    message: &str,
    subscribe_url: Option<&str>,
) -> String {
    let timestamp = "2026-11-24T07:05:00.000Z";
    let canonical = match subscribe_url {
        None => format!(
            "Message\n{message}\nMessageId\n{message_id}\nTimestamp\n{timestamp}\nTopicArn\n{TOPIC}\nType\n{kind}\n"
        ),
        Some(url) => format!(
            "Message\n{message}\nMessageId\n{message_id}\nSubscribeURL\n{url}\nTimestamp\n{timestamp}\nToken\ntoken-123\nTopicArn\n{TOPIC}\nType\n{kind}\n"
        ),
    };
    let mut value = serde_json::json!({
        "Type": kind,
        "MessageId": message_id,
        "TopicArn": TOPIC,
        "Message": message,
        "Timestamp": timestamp,
        "SignatureVersion": version.to_string(),
        "Signature": rsa_sign(dir, key, version, &canonical),
        "SigningCertURL": cert_url,
    });
    if let Some(url) = subscribe_url {
        value["SubscribeURL"] = url.into();
        value["Token"] = "token-123".into();
    }
    value.to_string()
}

#[test]
fn ses_through_sns_verifies_the_certificate_and_the_signature() {
    if !outside::available(&outside::OPENSSL) {
        return;
    }
    let certs = tempfile::tempdir().unwrap();
    let dir = certs.path();
    // Amazon publishes its intermediates on crt.*.amazontrust.com, over http.
    let issuer_listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let issuer_url = format!(
        "http://crt.test.amazontrust.com:{}/inter.cer",
        issuer_listener.local_addr().unwrap().port()
    );
    make_certificates(dir, &issuer_url);
    let issuer_fetches =
        issuer_server(issuer_listener, std::fs::read(dir.join("inter.der")).unwrap());
    let amazon = AmazonServer::start(
        dir,
        vec![
            (
                "/SimpleNotificationService-test.pem".into(),
                std::fs::read(dir.join("sns.pem")).unwrap(),
            ),
            (
                "/SimpleNotificationService-rogue.pem".into(),
                std::fs::read(dir.join("rogue.pem")).unwrap(),
            ),
        ],
    );
    let evil = "sns.us-east-1.amazonaws.com.evil.example";
    let dns =
        FakeDns::loopback_hosts(&[SNS_HOST, "evil.example", evil, "crt.test.amazontrust.com"]);
    let site = mailed_site(&format!(
        "\n[bounces.webhooks]\nses_topic_arns = [\"{TOPIC}\"]\nses_extra_ca_file = \"{}\"\n",
        dir.join("ca.pem").display()
    ));
    let bounce_address = "bounces@news.example.com";
    let dns_addr = dns.addr.to_string();
    let server = Server::start_env(
        &site,
        &[("HERALD_DNS_SERVER", &dns_addr), ("HERALD_MAIL_BOUNCE_ADDRESS", bounce_address)],
    );
    let port = amazon.port;
    let cert_url = format!("https://{SNS_HOST}:{port}/SimpleNotificationService-test.pem");
    let start = state(&site);

    // The subscription is confirmed by fetching its SubscribeURL.
    let subscribe = format!(
        "https://{SNS_HOST}:{port}/?Action=ConfirmSubscription&TopicArn={TOPIC}&Token=token-123"
    );
    let confirmation = sns_message(
        dir,
        ("sns.key", 1),
        &cert_url,
        "SubscriptionConfirmation",
        "c0ffee00-0000-4000-8000-000000000001",
        "You have chosen to subscribe to the topic. To confirm, visit the SubscribeURL.",
        Some(&subscribe),
    );
    let reply = post(&server, "/webhooks/ses", &[], confirmation.as_bytes());
    assert_status(&reply, 200, "a subscription confirmation");
    let requests = amazon.requests();
    assert!(
        requests.iter().any(|r| r.starts_with("GET /?Action=ConfirmSubscription&")),
        "the SubscribeURL was not fetched: {requests:?}"
    );

    // Certificate URLs off Amazon's SNS hosts are refused before any fetch.
    let connections = amazon.connections.load(Ordering::SeqCst);
    let hard = serde_json::json!({
        "notificationType": "Bounce",
        "bounce": {"bounceType": "Permanent", "bounceSubType": "General",
                   "bouncedRecipients": [{"emailAddress": "grace@example.org", "action": "failed",
                                          "status": "5.1.1", "diagnosticCode": "smtp; 550 5.1.1 user unknown"}]},
        "mail": {"source": "digest@news.example.com", "destination": ["grace@example.org"]}
    })
    .to_string();
    for url in [
        format!("https://evil.example:{port}/SimpleNotificationService-test.pem"),
        format!("http://{SNS_HOST}:{port}/SimpleNotificationService-test.pem"),
        format!("https://{evil}:{port}/SimpleNotificationService-test.pem"),
        format!("https://{SNS_HOST}:{port}/SimpleNotificationService-test.txt"),
    ] {
        let forged = sns_message(dir, ("sns.key", 1), &url, "Notification", "m-evil", &hard, None);
        let reply = post(&server, "/webhooks/ses", &[], forged.as_bytes());
        assert_status(&reply, 403, &url);
    }
    assert_eq!(
        amazon.connections.load(Ordering::SeqCst),
        connections,
        "a refused certificate URL was fetched"
    );

    // A certificate at an Amazon URL that chains to no trusted root, a
    // signature by another key, an unknown topic, no signature: refused.
    let rogue_url = format!("https://{SNS_HOST}:{port}/SimpleNotificationService-rogue.pem");
    let rogue =
        sns_message(dir, ("rogue.key", 1), &rogue_url, "Notification", "m-rogue", &hard, None);
    assert_status(
        &post(&server, "/webhooks/ses", &[], rogue.as_bytes()),
        403,
        "an untrusted certificate",
    );
    let wrong_key =
        sns_message(dir, ("rogue.key", 2), &cert_url, "Notification", "m-wrong", &hard, None);
    assert_status(&post(&server, "/webhooks/ses", &[], wrong_key.as_bytes()), 403, "another key");
    let good = sns_message(dir, ("sns.key", 1), &cert_url, "Notification", "m-1", &hard, None);
    let other_topic = good.replace(TOPIC, "arn:aws:sns:us-east-1:999999999999:someone-else");
    assert_status(
        &post(&server, "/webhooks/ses", &[], other_topic.as_bytes()),
        403,
        "another topic",
    );
    let mut unsigned: serde_json::Value = serde_json::from_str(&good).unwrap();
    unsigned.as_object_mut().unwrap().remove("Signature");
    assert_status(
        &post(&server, "/webhooks/ses", &[], unsigned.to_string().as_bytes()),
        401,
        "no signature",
    );
    let tampered = good.replace("grace@example.org", "ada@example.com");
    assert_status(
        &post(&server, "/webhooks/ses", &[], tampered.as_bytes()),
        403,
        "a changed message",
    );
    assert_status(&post(&server, "/webhooks/ses", &[], b"{\"Type\":"), 400, "not JSON");
    let no_recipients = sns_message(
        dir,
        ("sns.key", 2),
        &cert_url,
        "Notification",
        "m-bad",
        r#"{"notificationType":"Bounce","bounce":{"bounceType":"Permanent"}}"#,
        None,
    );
    assert_status(
        &post(&server, "/webhooks/ses", &[], no_recipients.as_bytes()),
        400,
        "no recipients",
    );
    assert_eq!(state(&site), start, "refused requests changed nothing");

    // Signed (SignatureVersion 1 and 2): taken, and a replay once.
    assert_status(&post(&server, "/webhooks/ses", &[], good.as_bytes()), 200, "a signed bounce");
    let complaint = serde_json::json!({
        "notificationType": "Complaint",
        "complaint": {"complainedRecipients": [{"emailAddress": "ada@example.com"}], "complaintFeedbackType": "abuse"},
        "mail": {"source": "digest@news.example.com"}
    })
    .to_string();
    let complained =
        sns_message(dir, ("sns.key", 2), &cert_url, "Notification", "m-2", &complaint, None);
    assert_status(&post(&server, "/webhooks/ses", &[], complained.as_bytes()), 200, "a complaint");
    let after = state(&site);
    assert_eq!(
        after.events,
        [
            event("grace@example.org", "hard", "suppressed"),
            event("ada@example.com", "complaint", "unsubscribed")
        ]
    );
    assert_status(&post(&server, "/webhooks/ses", &[], good.as_bytes()), 200, "a replay");
    assert_eq!(state(&site), after, "a replay changes nothing");

    // A bounce for an address herald never mailed names its reader by the
    // VERP address SES saw as the envelope sender.
    let joao = with_store(&site, async |store| {
        let members = store.members(Some("daily")).await.unwrap();
        members.into_iter().find(|m| m.email == "joao@example.net").unwrap().subscriber_id
    });
    // The site's one edition so far is its first.
    let edition = 1;
    let secret = herald::subscribe::Secret::new(SECRET.as_bytes().to_vec());
    let verp = herald::bounces::verp::envelope_sender(
        &secret,
        &herald::EmailAddress::parse(bounce_address).unwrap(),
        herald::bounces::verp::Tag { edition, subscriber: joao },
    );
    let forwarded = serde_json::json!({
        "notificationType": "Bounce",
        "bounce": {"bounceType": "Permanent", "bouncedRecipients": [{"emailAddress": "joao@forwarded.example", "status": "5.1.1"}]},
        "mail": {"source": verp, "destination": ["joao@forwarded.example"]}
    })
    .to_string();
    let tagged =
        sns_message(dir, ("sns.key", 2), &cert_url, "Notification", "m-3", &forwarded, None);
    assert_status(
        &post(&server, "/webhooks/ses", &[], tagged.as_bytes()),
        200,
        "a VERP-tagged bounce",
    );
    let last = state(&site);
    assert_eq!(last.events.last(), Some(&event("joao@example.net", "hard", "suppressed")));
    assert_eq!(last.audience, 1);

    // The signing certificate was fetched once, then kept.
    let fetched = amazon
        .requests()
        .iter()
        .filter(|r| r.starts_with("GET /SimpleNotificationService-test.pem"))
        .count();
    assert_eq!(fetched, 1, "{:?}", amazon.requests());
    // Its issuer too: the file at SigningCertURL holds the certificate alone,
    // and the chain to the trusted root needs the intermediate.
    assert_eq!(issuer_fetches.load(Ordering::SeqCst), 1, "the issuer's certificate fetched once");
    server.stop();
}

#[test]
fn a_store_that_cannot_take_events_answers_503() {
    use sqlx::Connection as _;
    // The site's SQLite file, held by another writer past herald's busy
    // timeout: the provider is told to try again, and its retry is taken.
    let site = Site::init_sqlite();
    let out = site.herald(&["run", "--now", NOW]);
    assert!(out.status.success(), "herald run failed:\n{}", stderr(&out));
    let server = Server::start_env(&site, &[("HERALD_BOUNCES_WEBHOOK_SECRET", WEBHOOK_SECRET)]);
    let body =
        br#"{"events":[{"id":"held-1","type":"hard","email":"mei@example.com","status":"5.1.1"}]}"#;
    let (ts, sig) = generic_headers(WEBHOOK_SECRET, unix_now(), body);
    let headers = [("X-Herald-Timestamp", ts.as_str()), ("X-Herald-Signature", sig.as_str())];

    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let mut holder = runtime.block_on(async {
        let mut conn = sqlx::SqliteConnection::connect(site.store_url()).await.unwrap();
        sqlx::query("BEGIN IMMEDIATE").execute(&mut conn).await.unwrap();
        conn
    });
    let reply = post(&server, "/webhooks/generic", &headers, body);
    assert_status(&reply, 503, "a store held by another writer");
    runtime.block_on(async {
        sqlx::query("ROLLBACK").execute(&mut holder).await.unwrap();
        holder.close().await.unwrap();
    });
    assert!(state(&site).events.is_empty(), "nothing was recorded");

    let reply = post(&server, "/webhooks/generic", &headers, body);
    assert_status(&reply, 200, "the provider's retry");
    assert_eq!(state(&site).events, [event("mei@example.com", "hard", "suppressed")]);
    server.stop();
}
