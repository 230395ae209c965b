//! The listener's protocol, driven over loopback by a client written
//! here: what a sender sees for each edge case, and what reaches the
//! intake. Most tests hand messages to a stand-in that records them; the
//! last ones use the real [`Intake`] on a SQLite store.

use std::sync::atomic::AtomicBool;
use std::sync::Mutex;

use chrono::{DateTime, Utc};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::sync::oneshot;

use super::*;
use crate::bounces::verp::Tag;
use crate::bounces::Shape;

/// A message as it reached the intake, with its envelope recipients.
type Taken = (Vec<u8>, Vec<String>);

/// A stand-in for the intake: `bounces@bounce.test` is the bounce address,
/// `bounces+1-7-ok@bounce.test` a valid VERP address; with `failing`, the
/// store is down.
#[derive(Clone, Default)]
struct Recorder {
    taken: Arc<Mutex<Vec<Taken>>>,
    failing: Arc<AtomicBool>,
}

impl Take for Recorder {
    fn recipient(&self, address: &str) -> Recipient {
        match address.to_ascii_lowercase().as_str() {
            "bounces@bounce.test" => Recipient::Plain,
            "bounces+1-7-ok@bounce.test" => Recipient::Tagged(Tag { edition: 1, subscriber: 7 }),
            a if a.ends_with("@bounce.test") => Recipient::Unknown,
            _ => Recipient::Elsewhere,
        }
    }

    async fn take(
        &self,
        raw: &[u8],
        recipients: &[String],
        _now: DateTime<Utc>,
    ) -> Result<Outcome, StoreError> {
        if self.failing.load(Ordering::SeqCst) {
            return Err(StoreError::Corrupt("the store is down, for this test".to_owned()));
        }
        self.taken.lock().unwrap().push((raw.to_vec(), recipients.to_vec()));
        Ok(Outcome { shape: Shape::NotABounce, taken: Vec::new() })
    }

    fn hostname(&self) -> String {
        "bounce.test".to_owned()
    }
}

impl Recorder {
    fn messages(&self) -> Vec<Taken> {
        self.taken.lock().unwrap().clone()
    }
}

fn limits() -> Limits {
    Limits {
        max_message_bytes: 4096,
        max_connections: 4,
        max_recipients: 3,
        timeout: Duration::from_secs(10),
    }
}

struct Server {
    addr: SocketAddr,
    counters: Arc<Counters>,
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
}

impl Server {
    async fn start<T: Take>(take: T, limits: Limits) -> Self {
        let listener = bind("127.0.0.1:0".parse().unwrap()).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let counters = Arc::new(Counters::default());
        let (stop, stopped) = oneshot::channel::<()>();
        let clock: Clock = Arc::new(Utc::now);
        let task =
            tokio::spawn(serve(listener, take, limits, clock, Arc::clone(&counters), async {
                let _ = stopped.await;
            }));
        Self { addr, counters, stop: Some(stop), task }
    }

    async fn client(&self) -> Client {
        let mut client = Client::connect(self.addr).await;
        let greeting = client.reply().await;
        assert!(greeting.starts_with("220 bounce.test "), "{greeting}");
        client
    }

    /// A client that has said EHLO and MAIL FROM:<>.
    async fn in_transaction(&self) -> Client {
        let mut c = self.client().await;
        assert!(c.send("EHLO mta.example.org").await.starts_with("250"));
        assert_eq!(c.send("MAIL FROM:<>").await, "250 2.1.0 Ok");
        c
    }

    async fn stop(mut self) {
        let _ = self.stop.take().unwrap().send(());
        tokio::time::timeout(Duration::from_secs(10), self.task)
            .await
            .expect("the listener stops")
            .unwrap();
    }
}

struct Client {
    reader: BufReader<OwnedReadHalf>,
    writer: OwnedWriteHalf,
}

impl Client {
    async fn connect(addr: SocketAddr) -> Self {
        let (read, writer) = TcpStream::connect(addr).await.unwrap().into_split();
        Self { reader: BufReader::new(read), writer }
    }

    /// The next reply, its lines joined with `\n`; "" when the server
    /// closed the connection.
    async fn reply(&mut self) -> String {
        let mut lines = Vec::new();
        loop {
            let mut line = String::new();
            let n = tokio::time::timeout(Duration::from_secs(10), self.reader.read_line(&mut line))
                .await
                .expect("a reply within 10 s")
                .unwrap_or(0);
            if n == 0 {
                return lines.join("\n");
            }
            let line = line.trim_end().to_owned();
            let last = line.as_bytes().get(3) != Some(&b'-');
            lines.push(line);
            if last {
                return lines.join("\n");
            }
        }
    }

    async fn write(&mut self, bytes: &[u8]) {
        self.writer.write_all(bytes).await.unwrap();
    }

    async fn send(&mut self, line: &str) -> String {
        self.write(format!("{line}\r\n").as_bytes()).await;
        self.reply().await
    }

    /// DATA, then `body` as it goes on the wire (dot-stuffed by the
    /// caller), then the final dot; the reply to it.
    async fn data(&mut self, body: &str) -> String {
        assert!(self.send("DATA").await.starts_with("354 "));
        self.write(body.as_bytes()).await;
        self.write(b".\r\n").await;
        self.reply().await
    }
}

const REPORT: &str = "From: MAILER-DAEMON@mta.example.org\r\nTo: bounces@bounce.test\r\nSubject: Undelivered Mail\r\n\r\nThe mail could not be delivered.\r\n";

#[tokio::test]
async fn a_report_for_the_bounce_domain_is_taken_with_its_recipients() {
    let take = Recorder::default();
    let server = Server::start(take.clone(), limits()).await;
    let mut c = server.client().await;
    let ehlo = c.send("EHLO mta.example.org").await;
    assert!(ehlo.contains("250-SIZE 4096"), "the size limit is announced: {ehlo}");
    assert!(ehlo.contains("ENHANCEDSTATUSCODES"), "{ehlo}");
    assert_eq!(c.send("MAIL FROM:<> SIZE=200").await, "250 2.1.0 Ok");
    assert_eq!(c.send("RCPT TO:<bounces+1-7-ok@bounce.test>").await, "250 2.1.5 Ok");
    assert_eq!(c.send("RCPT TO:<Bounces@BOUNCE.test>").await, "250 2.1.5 Ok");
    let reply = c.data(REPORT).await;
    assert!(reply.starts_with("250 2.0.0 "), "{reply}");
    assert_eq!(c.send("QUIT").await, "221 2.0.0 Bye");
    assert_eq!(c.reply().await, "", "closed after QUIT");
    let taken = take.messages();
    assert_eq!(taken.len(), 1);
    assert_eq!(String::from_utf8_lossy(&taken[0].0), REPORT);
    assert_eq!(taken[0].1, ["bounces+1-7-ok@bounce.test", "Bounces@BOUNCE.test"]);
    assert_eq!(server.counters.accepted.load(Ordering::Relaxed), 1);
    server.stop().await;
}

#[tokio::test]
async fn pipelined_commands_are_answered_in_order() {
    let take = Recorder::default();
    let server = Server::start(take.clone(), limits()).await;
    let mut c = server.client().await;
    let ehlo = c.send("EHLO mta.example.org").await;
    assert!(ehlo.contains("250-PIPELINING"), "{ehlo}");
    // RFC 2920: MAIL, RCPT and DATA in one write, the replies in order.
    c.write(b"MAIL FROM:<>\r\nRCPT TO:<elsewhere@example.org>\r\nRCPT TO:<bounces@bounce.test>\r\nDATA\r\n")
        .await;
    assert_eq!(c.reply().await, "250 2.1.0 Ok");
    assert!(c.reply().await.starts_with("554 5.7.1 "));
    assert_eq!(c.reply().await, "250 2.1.5 Ok");
    assert!(c.reply().await.starts_with("354 "));
    c.write(REPORT.as_bytes()).await;
    c.write(b".\r\nNOOP\r\nQUIT\r\n").await;
    assert!(c.reply().await.starts_with("250 2.0.0 Ok"));
    assert_eq!(c.reply().await, "250 2.0.0 Ok");
    assert_eq!(c.reply().await, "221 2.0.0 Bye");
    assert_eq!(take.messages()[0].1, ["bounces@bounce.test"]);
    server.stop().await;
}

#[tokio::test]
async fn other_domains_are_refused_as_relaying_and_unknown_local_parts_as_unknown() {
    let take = Recorder::default();
    let server = Server::start(take.clone(), limits()).await;
    let mut c = server.in_transaction().await;
    assert_eq!(
        c.send("RCPT TO:<reader@example.org>").await,
        "554 5.7.1 Recipient address rejected: relay access denied"
    );
    assert_eq!(
        c.send("RCPT TO:<bounces@bounce.test.example.org>").await,
        "554 5.7.1 Recipient address rejected: relay access denied"
    );
    assert_eq!(
        c.send("RCPT TO:<editor@bounce.test>").await,
        "550 5.1.1 Recipient address rejected: no such user"
    );
    assert_eq!(
        c.send("RCPT TO:<bounces+1-7-forged@bounce.test>").await,
        "550 5.1.1 Recipient address rejected: no such user"
    );
    // No recipient was taken, so there is nothing to send.
    assert_eq!(c.send("DATA").await, "554 5.5.1 Error: no valid recipients");
    assert!(take.messages().is_empty());
    assert_eq!(server.counters.recipients_refused.load(Ordering::Relaxed), 4);
    server.stop().await;
}

#[tokio::test]
async fn a_message_over_the_size_limit_is_refused_and_the_session_goes_on() {
    let take = Recorder::default();
    let server = Server::start(take.clone(), limits()).await;
    let mut c = server.client().await;
    assert!(c.send("EHLO mta.example.org").await.starts_with("250"));
    // Declared too big: refused at once (RFC 1870).
    assert_eq!(
        c.send("MAIL FROM:<> SIZE=5000").await,
        "552 5.3.4 Message size exceeds fixed limit"
    );
    assert_eq!(c.send("MAIL FROM:<>").await, "250 2.1.0 Ok");
    assert_eq!(c.send("RCPT TO:<bounces@bounce.test>").await, "250 2.1.5 Ok");
    // Not declared: read to the final dot, then refused.
    let big = "x".repeat(998) + "\r\n";
    let reply = c.data(&big.repeat(5)).await;
    assert_eq!(reply, "552 5.3.4 Message size exceeds fixed limit");
    // Exactly at the limit is taken.
    assert_eq!(c.send("MAIL FROM:<>").await, "250 2.1.0 Ok");
    assert_eq!(c.send("RCPT TO:<bounces@bounce.test>").await, "250 2.1.5 Ok");
    let exact = big.repeat(4) + &"y".repeat(4096 - 4000 - 2) + "\r\n";
    assert_eq!(exact.len(), 4096);
    assert!(c.data(&exact).await.starts_with("250 "));
    assert_eq!(c.send("NOOP").await, "250 2.0.0 Ok");
    let taken = take.messages();
    assert_eq!(taken.len(), 1, "only the message within the limit reached the intake");
    assert_eq!(taken[0].0.len(), 4096);
    assert_eq!(server.counters.refused.load(Ordering::Relaxed), 1);
    server.stop().await;
}

#[tokio::test]
async fn a_command_line_over_1000_octets_gets_500_and_the_session_goes_on() {
    let server = Server::start(Recorder::default(), limits()).await;
    let mut c = server.in_transaction().await;
    let long = format!("RCPT TO:<{}@bounce.test>", "a".repeat(2000));
    assert_eq!(c.send(&long).await, "500 5.5.2 Line too long");
    assert_eq!(c.send("NOOP").await, "250 2.0.0 Ok");
    // A line of exactly 1000 octets with its CRLF is a line.
    let fits = format!("NOOP {}", "b".repeat(1000 - 5 - 2));
    assert_eq!(c.send(&fits).await, "250 2.0.0 Ok");
    server.stop().await;
}

#[tokio::test]
async fn dots_at_the_start_of_lines_are_unstuffed() {
    let take = Recorder::default();
    let server = Server::start(take.clone(), limits()).await;
    let mut c = server.in_transaction().await;
    assert_eq!(c.send("RCPT TO:<bounces@bounce.test>").await, "250 2.1.5 Ok");
    // As it goes on the wire: each line that starts with a period has a
    // second one (RFC 5321 4.5.2). ".\r\n" inside a line is not the end,
    // and neither is a dot after a bare LF.
    let wire = "Subject: dots\r\n\r\n..\r\n...leading\r\nin.the.middle\r\n.\r.\r\nbare\n.\nend\r\n";
    assert!(c.data(wire).await.starts_with("250 "));
    let taken = take.messages();
    assert_eq!(
        String::from_utf8_lossy(&taken[0].0),
        "Subject: dots\r\n\r\n.\r\n..leading\r\nin.the.middle\r\n\r.\r\nbare\n.\nend\r\n"
    );
    server.stop().await;
}

#[tokio::test]
async fn the_store_down_gets_451_so_the_sender_keeps_the_report() {
    let take = Recorder::default();
    let server = Server::start(take.clone(), limits()).await;
    take.failing.store(true, Ordering::SeqCst);
    let mut c = server.in_transaction().await;
    assert_eq!(c.send("RCPT TO:<bounces@bounce.test>").await, "250 2.1.5 Ok");
    let reply = c.data(REPORT).await;
    assert!(reply.starts_with("451 4.3.0 "), "{reply}");
    // The store is back: the sender's retry is taken.
    take.failing.store(false, Ordering::SeqCst);
    assert_eq!(c.send("MAIL FROM:<>").await, "250 2.1.0 Ok");
    assert_eq!(c.send("RCPT TO:<bounces@bounce.test>").await, "250 2.1.5 Ok");
    assert!(c.data(REPORT).await.starts_with("250 "));
    assert_eq!(take.messages().len(), 1);
    assert_eq!(server.counters.deferred.load(Ordering::Relaxed), 1);
    server.stop().await;
}

#[tokio::test]
async fn a_connection_over_max_connections_gets_421() {
    let server =
        Server::start(Recorder::default(), Limits { max_connections: 2, ..limits() }).await;
    let mut first = server.client().await;
    let _second = server.client().await;
    let mut third = Client::connect(server.addr).await;
    assert_eq!(third.reply().await, "421 4.3.2 Too many connections; try again later");
    assert_eq!(third.reply().await, "", "and closed");
    assert_eq!(first.send("QUIT").await, "221 2.0.0 Bye");
    // The slot is free again once the first session has ended.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let mut again = Client::connect(server.addr).await;
        let greeting = again.reply().await;
        if greeting.starts_with("220 ") {
            break;
        }
        assert!(Instant::now() < deadline, "no slot came free: {greeting}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(server.counters.connections_refused.load(Ordering::Relaxed) >= 1);
    server.stop().await;
}

#[tokio::test]
async fn recipients_per_message_are_capped() {
    let server = Server::start(Recorder::default(), limits()).await;
    let mut c = server.in_transaction().await;
    for _ in 0..3 {
        assert_eq!(c.send("RCPT TO:<bounces@bounce.test>").await, "250 2.1.5 Ok");
    }
    assert_eq!(
        c.send("RCPT TO:<bounces@bounce.test>").await,
        "452 4.5.3 Error: too many recipients"
    );
    server.stop().await;
}

#[tokio::test]
async fn commands_out_of_order_or_unknown_are_answered_and_vrfy_neither_confirms_nor_denies() {
    let take = Recorder::default();
    let server = Server::start(take.clone(), limits()).await;
    let mut c = server.client().await;
    assert_eq!(c.send("MAIL FROM:<>").await, "503 5.5.1 Error: send HELO/EHLO first");
    assert_eq!(c.send("HELO").await, "501 5.5.4 Syntax: HELO hostname");
    assert_eq!(c.send("helo mta.example.org").await, "250 bounce.test");
    assert_eq!(c.send("RCPT TO:<bounces@bounce.test>").await, "503 5.5.1 Error: need MAIL command");
    assert_eq!(c.send("DATA").await, "503 5.5.1 Error: need MAIL command");
    assert_eq!(c.send("MAIL TO:<>").await, "501 5.5.4 Syntax: MAIL FROM:<address>");
    assert_eq!(c.send("mail from: <mta@example.org>").await, "250 2.1.0 Ok");
    assert_eq!(c.send("MAIL FROM:<>").await, "503 5.5.1 Error: nested MAIL command");
    assert_eq!(c.send("RSET").await, "250 2.0.0 Ok");
    assert_eq!(c.send("RCPT TO:<bounces@bounce.test>").await, "503 5.5.1 Error: need MAIL command");
    assert!(c.send("VRFY bounces").await.starts_with("252 2.5.2 "));
    assert_eq!(c.send("STARTTLS").await, "502 5.5.1 Error: command not recognized");
    assert_eq!(c.send("EXPN staff").await, "502 5.5.1 Error: command not recognized");
    assert_eq!(c.send("").await, "500 5.5.2 Error: bad syntax");
    assert!(take.messages().is_empty());
    server.stop().await;
}

#[tokio::test]
async fn too_many_bad_commands_end_the_session() {
    let server = Server::start(Recorder::default(), limits()).await;
    let mut c = server.client().await;
    for _ in 0..MAX_ERRORS {
        assert!(c.send("BOGUS").await.starts_with("502 "));
    }
    assert_eq!(c.reply().await, "421 4.7.0 Too many errors; closing the connection");
    assert_eq!(c.reply().await, "", "and closed");
    server.stop().await;
}

#[tokio::test]
async fn a_silent_client_is_closed_after_the_timeout() {
    let server = Server::start(
        Recorder::default(),
        Limits { timeout: Duration::from_millis(300), ..limits() },
    )
    .await;
    let mut c = server.client().await;
    assert_eq!(c.reply().await, "421 4.4.2 Timeout; closing the connection");
    assert_eq!(c.reply().await, "");
    server.stop().await;
}

#[tokio::test]
async fn stopping_the_listener_closes_idle_sessions_with_421() {
    let server = Server::start(Recorder::default(), limits()).await;
    let mut c = server.in_transaction().await;
    let addr = server.addr;
    server.stop().await;
    assert_eq!(c.reply().await, "421 4.3.2 Service shutting down; try again later");
    assert!(TcpStream::connect(addr).await.is_err(), "no longer listening");
}

/// The real intake, on a fresh store (SQLite, or PostgreSQL under
/// `HERALD_TEST_STORE=postgres`); the folder lives as long as the store.
async fn intake() -> (Intake, tempfile::TempDir) {
    let text = format!("{}bounce_address = \"bounces@bounce.test\"\n", crate::config::GOOD);
    let config =
        crate::config::parse(std::path::Path::new("/site/herald.toml"), &text, &[]).unwrap();
    let (store, dir) = crate::store::test_store().await;
    let secret = crate::subscribe::Secret::new(b"0123456789abcdef0123456789abcdef".to_vec());
    (Intake::new(store, secret, &config), dir)
}

/// A delivery status notification (RFC 3464) for `to`, as a relay writes it.
fn dsn(to: &str, id: &str) -> String {
    format!(
        "From: MAILER-DAEMON@mta.example.org\r\n\
         To: bounces@bounce.test\r\n\
         Subject: Undelivered Mail Returned to Sender\r\n\
         Message-ID: <{id}@mta.example.org>\r\n\
         MIME-Version: 1.0\r\n\
         Content-Type: multipart/report; report-type=delivery-status; boundary=\"b\"\r\n\
         \r\n\
         --b\r\n\
         Content-Type: text/plain\r\n\
         \r\n\
         Your message could not be delivered.\r\n\
         --b\r\n\
         Content-Type: message/delivery-status\r\n\
         \r\n\
         Reporting-MTA: dns; mta.example.org\r\n\
         \r\n\
         Final-Recipient: rfc822; {to}\r\n\
         Action: failed\r\n\
         Status: 5.1.1\r\n\
         Diagnostic-Code: smtp; 550 5.1.1 no such user\r\n\
         \r\n\
         --b--\r\n"
    )
}

#[tokio::test]
async fn a_report_is_stored_before_the_250_and_a_resent_one_is_acted_on_once() {
    let (intake, _dir) = intake().await;
    let store = intake.store().clone();
    let server = Server::start(intake, limits()).await;
    let mut c = server.in_transaction().await;
    assert_eq!(c.send("RCPT TO:<bounces@bounce.test>").await, "250 2.1.5 Ok");
    let reply = c.data(&dsn("stranger@example.org", "r1")).await;
    assert_eq!(reply, "250 2.0.0 Ok: delivery report: ignored");
    let events = store.bounce_events(10).await.unwrap();
    assert_eq!(events.len(), 1, "stored when the 250 came");
    assert_eq!(events[0].via, "smtp");
    assert_eq!(events[0].email.as_deref(), Some("stranger@example.org"));
    // The sender did not see the 250 and sends the report again.
    assert_eq!(c.send("MAIL FROM:<>").await, "250 2.1.0 Ok");
    assert_eq!(c.send("RCPT TO:<bounces@bounce.test>").await, "250 2.1.5 Ok");
    let reply = c.data(&dsn("stranger@example.org", "r1")).await;
    assert_eq!(reply, "250 2.0.0 Ok: delivery report: duplicate");
    assert_eq!(store.bounce_events(10).await.unwrap().len(), 1);
    server.stop().await;
    store.close().await;
}

#[tokio::test]
async fn a_closed_store_gets_451_and_nothing_is_lost() {
    let (intake, _dir) = intake().await;
    intake.store().close().await;
    let server = Server::start(intake, limits()).await;
    let mut c = server.in_transaction().await;
    assert_eq!(c.send("RCPT TO:<bounces@bounce.test>").await, "250 2.1.5 Ok");
    let reply = c.data(&dsn("stranger@example.org", "r2")).await;
    assert_eq!(reply, "451 4.3.0 Error: cannot store the message now; try again later");
    assert_eq!(server.counters.deferred.load(Ordering::Relaxed), 1);
    assert_eq!(server.counters.accepted.load(Ordering::Relaxed), 0);
    server.stop().await;
}

#[test]
fn paths_are_read_as_senders_write_them() {
    assert_eq!(path_after("FROM:<>", "FROM:"), Some((String::new(), "")));
    assert_eq!(
        path_after("from: <a@b.example> SIZE=10 BODY=8BITMIME", "FROM:"),
        Some(("a@b.example".to_owned(), "SIZE=10 BODY=8BITMIME"))
    );
    assert_eq!(path_after("TO:a@b.example", "TO:"), Some(("a@b.example".to_owned(), "")));
    assert_eq!(
        path_after("TO:<@relay.example,@other.example:a@b.example>", "TO:"),
        Some(("a@b.example".to_owned(), ""))
    );
    assert_eq!(path_after("TO:<a@b.example", "TO:"), None);
    assert_eq!(path_after("TO", "TO:"), None);
    assert_eq!(path_after("TO:<a b@c>", "TO:"), None);
    // Not on a char boundary: no panic.
    assert_eq!(path_after("é", "TO:"), None);
}
