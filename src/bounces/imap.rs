//! The bounce mailbox, polled over IMAP (`[bounces.imap]`). Each poll logs
//! in (inside TLS: `imaps://`, or `imap://` with STARTTLS), selects the
//! mailbox, and reads every message not flagged `\Deleted`: its size first,
//! so a message over `bounces.max_message_kb` is left alone (and logged),
//! then the whole message with `BODY.PEEK[]`, which does not set `\Seen`.
//! Each goes to the [`Intake`]. A report herald understood (a bounce, a
//! complaint, an auto-reply) is then moved to the processed folder (created
//! when missing): with MOVE (RFC 6851) when the server offers it, else
//! COPY, `\Deleted` and UID EXPUNGE (RFC 4315) of that one message, never
//! a bare EXPUNGE, which would also remove mail someone else flagged.
//! Ordinary mail is left as it was. herald never deletes a message: a
//! server with neither MOVE nor UIDPLUS keeps the flagged original for its
//! user to expunge.
//!
//! A message is moved only after the store recorded what it says; when the
//! store fails, the poll stops and the message waits for the next one. A
//! report moved twice (a move cut short) is recorded once: the store knows
//! it by its Message-ID.
//!
//! The daemon polls every `every_secs`, on the leading node only, so two
//! nodes never move the same message; `herald bounces --poll` polls once.
//! The conversation itself is in `wire.rs`: a small client of our own, so
//! that every cap and deadline on what the server sends is ours.

mod wire;

use std::collections::{BTreeMap, HashSet};
use std::fmt::Write as _;
use std::path::Path;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use chrono::{DateTime, Utc};
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

use super::{Intake, Shape, Via};
use crate::config::{Bounces, Imap, ImapTls, ENV_IMAP_PASSWORD};
use crate::store::{BounceAction, StoreError};
use wire::{Arg, Conn, Limits, Part, Value, WireError};

/// The most messages one poll reads; the rest wait for the next poll.
const MAX_PER_POLL: usize = 1000;
/// UIDs per size query.
const UIDS_PER_FETCH: usize = 200;
/// The longest line herald takes from the server: a SEARCH answer for a
/// mailbox of about a million messages.
const MAX_LINE: usize = 8 * 1024 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum ImapError {
    #[error("{ENV_IMAP_PASSWORD} is not set: the IMAP user {user} of bounces.imap.url needs its password there")]
    MissingPassword { user: String },
    #[error("bounces.imap.ca_file {path}: {cause}")]
    CaFile { path: String, cause: String },
    #[error("cannot connect to the IMAP server {server}: {cause}")]
    Connect { server: String, cause: String },
    #[error("cannot set up TLS with the IMAP server {server}: {cause}")]
    Tls { server: String, cause: String },
    #[error("the IMAP server {server} does not offer STARTTLS, and herald sends the password only inside TLS: use imaps://, or set bounces.imap.tls = \"none\" to send it in clear")]
    NoStartTls { server: String },
    #[error("the IMAP server {server} refuses LOGIN (LOGINDISABLED): it may take it inside TLS (imaps://, or imap:// with STARTTLS), and herald has no other way to log in")]
    LoginDisabled { server: String },
    #[error("the IMAP server {server}, {doing}: {cause}")]
    Wire { server: String, doing: String, cause: WireError },
    #[error("the store failed, so the message stays in the mailbox for the next poll: {0}")]
    Store(#[from] StoreError),
}

/// What one poll did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Polled {
    /// Messages fetched and read.
    pub read: usize,
    /// Delivery reports: RFC 3464 and plain-text bounces (delays too).
    pub bounces: usize,
    pub complaints: usize,
    pub auto_replies: usize,
    /// Ordinary mail, and messages too large to read: left as they were.
    pub left_alone: usize,
    /// Of those left alone, the ones over `bounces.max_message_kb`.
    pub too_large: usize,
    /// Reports moved to the processed folder.
    pub moved: usize,
    /// Reports the server would not move; they are read again next poll.
    pub not_moved: usize,
    /// Readers suppressed by what was read.
    pub suppressed: usize,
    /// Readers a complaint took off every list.
    pub unsubscribed: usize,
}

impl Polled {
    /// One line for the operator.
    pub fn summary(&self, processed_folder: &str) -> String {
        let n = |count: usize, one: &str, many: &str| {
            format!("{count} {}", if count == 1 { one } else { many })
        };
        let mut out = format!(
            "{} read: {}, {}, {}, {} left alone",
            n(self.read, "message", "messages"),
            n(self.bounces, "bounce", "bounces"),
            n(self.complaints, "complaint", "complaints"),
            n(self.auto_replies, "auto-reply", "auto-replies"),
            self.left_alone,
        );
        if self.too_large > 0 {
            let _ = write!(out, " ({} over bounces.max_message_kb)", self.too_large);
        }
        let _ = write!(out, "; {} moved to {processed_folder}", self.moved);
        if self.not_moved > 0 {
            let _ = write!(
                out,
                ", {} the server would not move (read again next poll)",
                self.not_moved
            );
        }
        let _ = write!(
            out,
            "; {} suppressed, {} unsubscribed from every list",
            n(self.suppressed, "reader", "readers"),
            self.unsubscribed
        );
        out
    }
}

/// What the daemon remembers between polls: the messages it left alone,
/// so ordinary mail is read once per process, not once per poll. Valid for
/// one UIDVALIDITY of the mailbox.
#[derive(Debug, Default)]
struct LeftAlone {
    uidvalidity: Option<u64>,
    uids: HashSet<u64>,
}

/// Polls one bounce mailbox.
pub struct Poller {
    intake: Intake,
    imap: Imap,
    password: String,
    limits: Limits,
    max_message_bytes: usize,
    tls: tokio_rustls::TlsConnector,
    left_alone: LeftAlone,
    /// Set when the daemon stops: the poll ends after the message in hand.
    stopping: Option<Arc<AtomicBool>>,
}

impl Poller {
    /// A poller for `bounces.imap`, its password read from
    /// `HERALD_BOUNCES_IMAP_PASSWORD`.
    pub fn new(intake: Intake, bounces: &Bounces, imap: &Imap) -> Result<Self, ImapError> {
        let password = std::env::var(ENV_IMAP_PASSWORD)
            .ok()
            .filter(|p| !p.is_empty())
            .ok_or_else(|| ImapError::MissingPassword { user: imap.user.clone() })?;
        Self::with_password(intake, bounces, imap, password)
    }

    fn with_password(
        intake: Intake,
        bounces: &Bounces,
        imap: &Imap,
        password: String,
    ) -> Result<Self, ImapError> {
        let literal = bounces.max_message_bytes + 64 * 1024;
        Ok(Self {
            intake,
            imap: imap.clone(),
            password,
            limits: Limits {
                line: MAX_LINE,
                literal,
                response: literal + MAX_LINE + 1024 * 1024,
                timeout: Duration::from_secs(bounces.timeout_secs),
            },
            max_message_bytes: bounces.max_message_bytes,
            tls: connector(imap.ca_file.as_deref())?,
            left_alone: LeftAlone::default(),
            stopping: None,
        })
    }

    /// Polls every `every_secs` while this node leads, until `stop` says
    /// so (or its sender is gone). `stopping` ends a poll early.
    pub async fn run(
        mut self,
        leader: Arc<AtomicBool>,
        stopping: Arc<AtomicBool>,
        mut stop: tokio::sync::watch::Receiver<bool>,
        clock: Arc<dyn Fn() -> DateTime<Utc> + Send + Sync>,
    ) {
        self.stopping = Some(Arc::clone(&stopping));
        let mut tick = tokio::time::interval(Duration::from_secs(self.imap.every_secs));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = stop.changed() => break,
                _ = tick.tick() => {}
            }
            if *stop.borrow() || stopping.load(Ordering::Relaxed) {
                break;
            }
            if !leader.load(Ordering::Acquire) {
                continue;
            }
            match self.poll(clock()).await {
                Ok(polled) if polled.read > 0 || polled.not_moved > 0 => {
                    tracing::info!(mailbox = %self.imap.mailbox, "bounce mailbox polled: {}", polled.summary(&self.imap.processed_folder))
                }
                Ok(_) => {
                    tracing::debug!(mailbox = %self.imap.mailbox, "bounce mailbox polled: nothing new")
                }
                Err(e) => {
                    tracing::warn!(mailbox = %self.imap.mailbox, "cannot poll the bounce mailbox: {e}")
                }
            }
        }
    }

    fn server(&self) -> String {
        format!("{}:{}", self.imap.host, self.imap.port)
    }

    fn wire(&self, doing: impl Into<String>) -> impl FnOnce(WireError) -> ImapError + '_ {
        let doing = doing.into();
        move |cause| ImapError::Wire { server: self.server(), doing, cause }
    }

    /// One poll: every message in the mailbox read, the reports moved.
    pub async fn poll(&mut self, now: DateTime<Utc>) -> Result<Polled, ImapError> {
        let mut conn = self.connect().await?;
        let result = self.work(&mut conn, now).await;
        // Polite, and of no consequence when it fails.
        let _ = tokio::time::timeout(Duration::from_secs(5), conn.command("LOGOUT", &[])).await;
        result
    }

    async fn connect(&self) -> Result<Conn<Stream>, ImapError> {
        let server = self.server();
        let connect = TcpStream::connect((self.imap.host.as_str(), self.imap.port));
        let tcp = match tokio::time::timeout(self.limits.timeout, connect).await {
            Ok(Ok(tcp)) => tcp,
            Ok(Err(e)) => return Err(ImapError::Connect { server, cause: e.to_string() }),
            Err(_) => {
                return Err(ImapError::Connect {
                    server,
                    cause: format!("no connection within {}s", self.limits.timeout.as_secs()),
                })
            }
        };
        let _ = tcp.set_nodelay(true);
        let (mut conn, preauth) = match self.imap.tls {
            ImapTls::Implicit => {
                let mut conn = Conn::new(self.handshake(tcp).await?, self.limits);
                let preauth = conn.greeting().await.map_err(self.wire("greeting"))?;
                (conn, preauth)
            }
            ImapTls::None => {
                let mut conn = Conn::new(Stream::Plain(tcp), self.limits);
                let preauth = conn.greeting().await.map_err(self.wire("greeting"))?;
                (conn, preauth)
            }
            ImapTls::StartTls => {
                let mut conn = Conn::new(Stream::Plain(tcp), self.limits);
                let preauth = conn.greeting().await.map_err(self.wire("greeting"))?;
                let caps = capabilities(&mut conn)
                    .await
                    .map_err(self.wire("asking for its capabilities"))?;
                if caps.contains("STARTTLS") && !preauth {
                    conn.command("STARTTLS", &[]).await.map_err(self.wire("starting TLS"))?;
                    let Some(Stream::Plain(tcp)) = conn.into_stream() else {
                        return Err(ImapError::Tls {
                            server,
                            cause: "the server sent more after its answer to STARTTLS; text in clear must not pass for text inside TLS".into(),
                        });
                    };
                    (Conn::new(self.handshake(tcp).await?, self.limits), false)
                } else if self.imap.loopback() {
                    tracing::debug!(server = %server, "the IMAP server on this machine offers no STARTTLS; going on without TLS");
                    (conn, preauth)
                } else {
                    return Err(ImapError::NoStartTls { server });
                }
            }
        };
        if !preauth {
            let caps =
                capabilities(&mut conn).await.map_err(self.wire("asking for its capabilities"))?;
            if caps.contains("LOGINDISABLED") {
                return Err(ImapError::LoginDisabled { server });
            }
            conn.command(
                "LOGIN",
                &[Arg::Str(self.imap.user.as_bytes()), Arg::Str(self.password.as_bytes())],
            )
            .await
            .map_err(self.wire(format!("logging in as {}", self.imap.user)))?;
        }
        Ok(conn)
    }

    async fn handshake(&self, tcp: TcpStream) -> Result<Stream, ImapError> {
        let server = self.server();
        let name = ServerName::try_from(self.imap.host.clone())
            .map_err(|e| ImapError::Tls { server: server.clone(), cause: e.to_string() })?;
        match tokio::time::timeout(self.limits.timeout, self.tls.connect(name, tcp)).await {
            Ok(Ok(tls)) => Ok(Stream::Tls(Box::new(tls))),
            Ok(Err(e)) => Err(ImapError::Tls { server, cause: e.to_string() }),
            Err(_) => Err(ImapError::Tls {
                server,
                cause: format!("no TLS handshake within {}s", self.limits.timeout.as_secs()),
            }),
        }
    }

    async fn work(
        &mut self,
        conn: &mut Conn<Stream>,
        now: DateTime<Utc>,
    ) -> Result<Polled, ImapError> {
        let mut polled = Polled::default();
        let caps = capabilities(conn).await.map_err(self.wire("asking for its capabilities"))?;
        let mailbox = self.imap.mailbox.clone();
        let folder = self.imap.processed_folder.clone();
        let selected = conn
            .command("SELECT", &[Arg::Str(mailbox.as_bytes())])
            .await
            .map_err(self.wire(format!("selecting {mailbox}")))?;
        let uidvalidity = selected.iter().find_map(|parts| code_number(parts, "UIDVALIDITY"));
        if uidvalidity.is_none() || uidvalidity != self.left_alone.uidvalidity {
            self.left_alone = LeftAlone { uidvalidity, uids: HashSet::new() };
        }

        let found = conn
            .command("UID SEARCH", &[Arg::Raw("UNDELETED")])
            .await
            .map_err(self.wire(format!("searching {mailbox}")))?;
        let mut uids: Vec<u64> = found
            .iter()
            .filter_map(|parts| {
                let values = wire::values(parts).ok()?;
                values
                    .first()?
                    .atom_is("SEARCH")
                    .then(|| values.iter().filter_map(Value::number).collect::<Vec<_>>())
            })
            .flatten()
            .filter(|uid| {
                (1..=u64::from(u32::MAX)).contains(uid) && !self.left_alone.uids.contains(uid)
            })
            .collect();
        uids.sort_unstable();
        uids.dedup();
        if uids.len() > MAX_PER_POLL {
            tracing::info!(mailbox = %mailbox, "{} messages to read; reading {MAX_PER_POLL} now, the rest next poll", uids.len());
            uids.truncate(MAX_PER_POLL);
        }
        if uids.is_empty() {
            return Ok(polled);
        }

        let mut sizes = BTreeMap::new();
        for chunk in uids.chunks(UIDS_PER_FETCH) {
            let set = uid_set(chunk);
            let data = conn
                .command("UID FETCH", &[Arg::Raw(&set), Arg::Raw("(UID RFC822.SIZE)")])
                .await
                .map_err(self.wire(format!("fetching the sizes of messages in {mailbox}")))?;
            for parts in &data {
                if let Some(items) = fetch_items(parts) {
                    if let (Some(uid), Some(size)) = (
                        item(&items, "UID").and_then(Value::number),
                        item(&items, "RFC822.SIZE").and_then(Value::number),
                    ) {
                        sizes.insert(uid, size);
                    }
                }
            }
        }

        let mut folder_ready = false;
        for uid in uids {
            if self.stopping.as_ref().is_some_and(|s| s.load(Ordering::Relaxed)) {
                break;
            }
            // Gone since the search (another client moved it).
            let Some(&size) = sizes.get(&uid) else { continue };
            if size > self.max_message_bytes as u64 {
                tracing::warn!(mailbox = %mailbox, uid, size, "a message of {size} bytes, over bounces.max_message_kb ({} KiB): left alone in {mailbox}", self.max_message_bytes / 1024);
                self.left_alone.uids.insert(uid);
                polled.left_alone += 1;
                polled.too_large += 1;
                continue;
            }
            let data = conn
                .command("UID FETCH", &[Arg::Raw(&uid.to_string()), Arg::Raw("(UID BODY.PEEK[])")])
                .await
                .map_err(self.wire(format!("fetching message UID {uid} of {mailbox}")))?;
            let body = data.iter().filter_map(|parts| fetch_items(parts)).find_map(|items| {
                (item(&items, "UID").and_then(Value::number) == Some(uid))
                    .then(|| item(&items, "BODY[]").and_then(Value::bytes).map(<[u8]>::to_vec))
                    .flatten()
            });
            let Some(body) = body else { continue };
            if body.len() > self.max_message_bytes {
                // The server said it was smaller.
                self.left_alone.uids.insert(uid);
                polled.left_alone += 1;
                polled.too_large += 1;
                continue;
            }
            polled.read += 1;
            let outcome = self.intake.message(&body, Via::Imap, &[], now).await?;
            if !outcome.understood() {
                tracing::debug!(mailbox = %mailbox, uid, "not a report: left alone");
                self.left_alone.uids.insert(uid);
                polled.left_alone += 1;
                continue;
            }
            match outcome.shape {
                Shape::Arf => polled.complaints += 1,
                Shape::AutoReply => polled.auto_replies += 1,
                Shape::Dsn | Shape::Plain | Shape::NotABounce => polled.bounces += 1,
            }
            for taken in &outcome.taken {
                match taken.action {
                    BounceAction::Suppressed => polled.suppressed += 1,
                    BounceAction::Unsubscribed => polled.unsubscribed += 1,
                    _ => {}
                }
            }
            if !folder_ready {
                self.make_folder(conn, &folder).await?;
                folder_ready = true;
            }
            match self.move_one(conn, &caps, uid, &folder).await {
                Ok(()) => polled.moved += 1,
                Err(ImapError::Wire {
                    cause: WireError::Refused { command, status, text },
                    ..
                }) => {
                    tracing::warn!(mailbox = %mailbox, uid, "the server answered {status} to {command} ({text}); the report stays in {mailbox} and is read again next poll");
                    polled.not_moved += 1;
                }
                Err(e) => return Err(e),
            }
        }
        Ok(polled)
    }

    /// Creates the processed folder when it is missing.
    async fn make_folder(&self, conn: &mut Conn<Stream>, folder: &str) -> Result<(), ImapError> {
        let listed = conn
            .command("LIST", &[Arg::Str(b""), Arg::Str(folder.as_bytes())])
            .await
            .map_err(self.wire(format!("looking for the folder {folder}")))?;
        let exists = listed.iter().any(|parts| {
            wire::values(parts).ok().is_some_and(|v| {
                v.first().is_some_and(|w| w.atom_is("LIST"))
                    && v.get(3).and_then(Value::bytes) == Some(folder.as_bytes())
            })
        });
        if exists {
            return Ok(());
        }
        match conn.command("CREATE", &[Arg::Str(folder.as_bytes())]).await {
            Ok(_) => {
                tracing::info!("created the folder {folder} for processed reports");
                Ok(())
            }
            // Made meanwhile by someone else: as good.
            Err(WireError::Refused { text, .. })
                if text.to_ascii_uppercase().contains("[ALREADYEXISTS]") =>
            {
                Ok(())
            }
            Err(e) => Err(self.wire(format!("creating the folder {folder}"))(e)),
        }
    }

    /// Moves message `uid` to `folder`, touching no other message.
    async fn move_one(
        &self,
        conn: &mut Conn<Stream>,
        caps: &HashSet<String>,
        uid: u64,
        folder: &str,
    ) -> Result<(), ImapError> {
        let uid_text = uid.to_string();
        let doing = |what: &str| format!("{what} message UID {uid} to {folder}");
        if caps.contains("MOVE") {
            conn.command("UID MOVE", &[Arg::Raw(&uid_text), Arg::Str(folder.as_bytes())])
                .await
                .map_err(self.wire(doing("moving")))?;
            return Ok(());
        }
        conn.command("UID COPY", &[Arg::Raw(&uid_text), Arg::Str(folder.as_bytes())])
            .await
            .map_err(self.wire(doing("copying")))?;
        conn.command("UID STORE", &[Arg::Raw(&uid_text), Arg::Raw("+FLAGS.SILENT (\\Deleted)")])
            .await
            .map_err(self.wire(format!(
                "flagging message UID {uid} \\Deleted after copying it to {folder}"
            )))?;
        if caps.contains("UIDPLUS") {
            conn.command("UID EXPUNGE", &[Arg::Raw(&uid_text)])
                .await
                .map_err(self.wire(format!("expunging message UID {uid}, copied to {folder}")))?;
        } else {
            tracing::warn!(uid, "the IMAP server offers neither MOVE nor UIDPLUS: the report is copied to {folder} and flagged \\Deleted in {}, for its user to expunge (herald never expunges the whole mailbox)", self.imap.mailbox);
        }
        Ok(())
    }
}

/// The server's capabilities, in upper case.
async fn capabilities<S: AsyncRead + AsyncWrite + Unpin>(
    conn: &mut Conn<S>,
) -> Result<HashSet<String>, WireError> {
    let data = conn.command("CAPABILITY", &[]).await?;
    Ok(data
        .iter()
        .filter_map(|parts| match parts.first() {
            Some(Part::Text(text)) => Some(text),
            _ => None,
        })
        .filter(|text| text.len() > 11 && text[..11].eq_ignore_ascii_case(b"CAPABILITY "))
        .flat_map(|text| {
            String::from_utf8_lossy(&text[11..])
                .split(' ')
                .map(str::to_ascii_uppercase)
                .collect::<Vec<_>>()
        })
        .collect())
}

/// The number in a status response's code: `OK [UIDVALIDITY 42] ...`.
fn code_number(parts: &[Part], code: &str) -> Option<u64> {
    let Some(Part::Text(text)) = parts.first() else { return None };
    let text = std::str::from_utf8(text).ok()?;
    let rest = text.strip_prefix("OK [")?;
    let (name, rest) = rest.split_once(' ')?;
    if !name.eq_ignore_ascii_case(code) {
        return None;
    }
    rest.split(']').next()?.trim().parse().ok()
}

/// The items of a FETCH response: `N FETCH (NAME VALUE ...)`.
fn fetch_items(parts: &[Part]) -> Option<Vec<Value>> {
    let values = wire::values(parts).ok()?;
    values.first()?.number()?;
    if !values.get(1)?.atom_is("FETCH") {
        return None;
    }
    match values.into_iter().nth(2)? {
        Value::List(items) => Some(items),
        _ => None,
    }
}

/// The value after the item named `name`.
fn item<'a>(items: &'a [Value], name: &str) -> Option<&'a Value> {
    items.chunks(2).find(|pair| pair[0].atom_is(name)).and_then(|pair| pair.get(1))
}

/// `uids` (sorted) as an IMAP sequence set: `1:3,7,9:10`.
fn uid_set(uids: &[u64]) -> String {
    let mut out = String::new();
    let mut i = 0;
    while i < uids.len() {
        let start = uids[i];
        let mut end = start;
        while i + 1 < uids.len() && uids[i + 1] == end + 1 {
            i += 1;
            end = uids[i];
        }
        if !out.is_empty() {
            out.push(',');
        }
        if start == end {
            let _ = write!(out, "{start}");
        } else {
            let _ = write!(out, "{start}:{end}");
        }
        i += 1;
    }
    out
}

/// TLS with the public roots and, when set, the certificates of
/// `ca_file`.
fn connector(ca_file: Option<&Path>) -> Result<tokio_rustls::TlsConnector, ImapError> {
    let mut roots = rustls::RootCertStore { roots: webpki_roots::TLS_SERVER_ROOTS.to_vec() };
    if let Some(path) = ca_file {
        let failed = |cause: String| ImapError::CaFile { path: path.display().to_string(), cause };
        let pem = std::fs::read(path).map_err(|e| failed(e.to_string()))?;
        let certs = CertificateDer::pem_slice_iter(&pem)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| failed(format!("not PEM certificates: {e}")))?;
        if certs.is_empty() {
            return Err(failed(
                "holds no certificate (expected PEM, -----BEGIN CERTIFICATE-----)".into(),
            ));
        }
        for cert in certs {
            roots.add(cert).map_err(|e| failed(e.to_string()))?;
        }
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| ImapError::Tls { server: "(any)".into(), cause: e.to_string() })?
    .with_root_certificates(roots)
    .with_no_client_auth();
    Ok(tokio_rustls::TlsConnector::from(Arc::new(config)))
}

/// A connection in clear or inside TLS.
enum Stream {
    Plain(TcpStream),
    Tls(Box<tokio_rustls::client::TlsStream<TcpStream>>),
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_flush(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use tokio::io::{AsyncBufReadExt as _, AsyncWriteExt as _, BufReader};

    /// A fake IMAP server on loopback that answers one session as Dovecot
    /// would, until the message is fetched: then it sends `body` (with
    /// `TAG` replaced by the command's tag).
    async fn fake_server(body: &'static str) -> (u16, tokio::task::JoinHandle<()>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let task = tokio::spawn(async move {
            let (socket, _) = listener.accept().await.unwrap();
            let mut socket = BufReader::new(socket);
            socket.get_mut().write_all(b"* OK fake ready\r\n").await.unwrap();
            let mut line = String::new();
            loop {
                line.clear();
                if socket.read_line(&mut line).await.unwrap_or(0) == 0 {
                    return;
                }
                let (tag, command) = line.trim_end().split_once(' ').unwrap();
                let answer = match command {
                    "CAPABILITY" => {
                        format!("* CAPABILITY IMAP4rev1 MOVE UIDPLUS\r\n{tag} OK done\r\n")
                    }
                    c if c.starts_with("LOGIN ") => format!("{tag} OK logged in\r\n"),
                    "SELECT \"INBOX\"" => {
                        format!("* OK [UIDVALIDITY 7] ok\r\n{tag} OK [READ-WRITE] selected\r\n")
                    }
                    "UID SEARCH UNDELETED" => format!("* SEARCH 1\r\n{tag} OK searched\r\n"),
                    "UID FETCH 1 (UID RFC822.SIZE)" => {
                        format!("* 1 FETCH (UID 1 RFC822.SIZE 100)\r\n{tag} OK\r\n")
                    }
                    "UID FETCH 1 (UID BODY.PEEK[])" => body.replace("TAG", tag),
                    "LOGOUT" => format!("* BYE bye\r\n{tag} OK\r\n"),
                    _ => format!("{tag} BAD unexpected\r\n"),
                };
                if socket.get_mut().write_all(answer.as_bytes()).await.is_err() {
                    return;
                }
            }
        });
        (port, task)
    }

    async fn poll_fake(
        body: &'static str,
    ) -> (Result<Polled, ImapError>, Vec<crate::store::BounceEvent>) {
        let (port, server) = fake_server(body).await;
        let text = format!(
            "{}\n[bounces]\nmax_message_kb = 64\ntimeout_secs = 5\n\n[bounces.imap]\nurl = \"imap://herald@127.0.0.1:{port}/\"\n",
            crate::config::GOOD
        );
        let config = crate::config::parse(Path::new("/site/herald.toml"), &text, &[]).unwrap();
        let (store, _dir) = crate::store::test_store().await;
        let secret =
            crate::subscribe::Secret::new(b"test-secret-0123456789abcdef0123456789".to_vec());
        let intake = Intake::new(store.clone(), secret, &config);
        let imap = config.bounces.imap.clone().unwrap();
        let mut poller =
            Poller::with_password(intake, &config.bounces, &imap, "pw".into()).unwrap();
        let polled = poller.poll(Utc::now()).await;
        server.abort();
        let events = store.bounce_events(10).await.unwrap();
        (polled, events)
    }

    #[tokio::test]
    async fn a_server_that_announces_a_huge_literal_fails_the_poll_cleanly() {
        let (polled, events) = poll_fake("* 1 FETCH (UID 1 BODY[] {4294967296000}\r\n").await;
        let e = polled.unwrap_err().to_string();
        assert!(e.contains("fetching message UID 1") && e.contains("a literal longer than"), "{e}");
        assert!(events.is_empty());
    }

    #[tokio::test]
    async fn a_server_that_answers_garbage_fails_the_poll_cleanly() {
        let (polled, events) = poll_fake("HTTP/1.1 400 Bad Request\r\n\r\n").await;
        let e = polled.unwrap_err().to_string();
        assert!(e.contains("not IMAP") && e.contains("HTTP/1.1 400"), "{e}");
        assert!(events.is_empty());
    }

    #[tokio::test]
    async fn a_body_larger_than_the_size_the_server_gave_is_left_alone() {
        // RFC822.SIZE said 100; the literal holds 70 KiB, over the 64 KiB cap
        // but under the literal's room: read, then refused.
        const BODY: &str = "* 1 FETCH (UID 1 BODY[] {71680}\r\n";
        let big: &'static str =
            Box::leak(format!("{BODY}{})\r\nTAG OK\r\n", "x".repeat(71680)).into_boxed_str());
        let (polled, events) = poll_fake(big).await;
        let polled = polled.unwrap();
        assert_eq!((polled.read, polled.left_alone, polled.too_large, polled.moved), (0, 1, 1, 0));
        assert!(events.is_empty());
    }

    #[tokio::test]
    async fn ordinary_mail_is_read_and_left_alone() {
        let (polled, events) = poll_fake(
            "* 1 FETCH (UID 1 BODY[] {58}\r\nFrom: ann@example.org\r\nSubject: lunch?\r\n\r\nAt noon, then.\r\n)\r\nTAG OK\r\n",
        )
        .await;
        let polled = polled.unwrap();
        assert_eq!((polled.read, polled.left_alone, polled.moved), (1, 1, 0));
        assert!(events.is_empty());
    }

    #[tokio::test]
    async fn a_node_that_does_not_lead_never_connects() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let port = listener.local_addr().unwrap().port();
        let text = format!(
            "{}\n[bounces.imap]\nurl = \"imap://herald@127.0.0.1:{port}/\"\nevery_secs = 10\n",
            crate::config::GOOD
        );
        let config = crate::config::parse(Path::new("/site/herald.toml"), &text, &[]).unwrap();
        let (store, _dir) = crate::store::test_store().await;
        let secret =
            crate::subscribe::Secret::new(b"test-secret-0123456789abcdef0123456789".to_vec());
        let intake = Intake::new(store, secret, &config);
        let imap = config.bounces.imap.clone().unwrap();
        let poller = Poller::with_password(intake, &config.bounces, &imap, "pw".into()).unwrap();
        // Paused once the store is open (its pool has deadlines of its own).
        tokio::time::pause();
        let leader = Arc::new(AtomicBool::new(false));
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let task = tokio::spawn(poller.run(
            Arc::clone(&leader),
            Arc::default(),
            stopped,
            Arc::new(Utc::now),
        ));
        // Three polls' time (the clock is paused: this takes no real time).
        tokio::time::sleep(Duration::from_secs(35)).await;
        tokio::task::yield_now().await;
        assert_eq!(
            listener.accept().map(|_| ()).map_err(|e| e.kind()),
            Err(std::io::ErrorKind::WouldBlock),
            "a follower connected to the bounce mailbox"
        );
        stop.send(true).unwrap();
        task.await.unwrap();
    }

    #[test]
    fn uid_sets_are_compact() {
        assert_eq!(uid_set(&[1, 2, 3, 7, 9, 10]), "1:3,7,9:10");
        assert_eq!(uid_set(&[5]), "5");
        assert_eq!(uid_set(&[]), "");
    }

    #[test]
    fn uidvalidity_is_read_from_the_status_code() {
        let parts = [Part::Text(b"OK [UIDVALIDITY 1732900000] UIDs valid".to_vec())];
        assert_eq!(code_number(&parts, "UIDVALIDITY"), Some(1_732_900_000));
        let parts = [Part::Text(b"OK [UIDNEXT 5] Predicted next UID".to_vec())];
        assert_eq!(code_number(&parts, "UIDVALIDITY"), None);
        let parts = [Part::Text(b"OK [UIDVALIDITY banana] hm".to_vec())];
        assert_eq!(code_number(&parts, "UIDVALIDITY"), None);
    }

    #[test]
    fn the_summary_says_what_a_poll_did() {
        let polled = Polled {
            read: 5,
            bounces: 2,
            complaints: 1,
            auto_replies: 1,
            left_alone: 1,
            moved: 4,
            suppressed: 1,
            unsubscribed: 1,
            ..Polled::default()
        };
        assert_eq!(
            polled.summary("herald-processed"),
            "5 messages read: 2 bounces, 1 complaint, 1 auto-reply, 1 left alone; 4 moved to herald-processed; 1 reader suppressed, 1 unsubscribed from every list"
        );
    }
}
