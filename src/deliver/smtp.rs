//! The transports: SMTP, or the outbox folder (one `.eml` file per message).
//! Both take the same message ready for the wire from the one message
//! builder (`compose::Outgoing`) and answer with the same `SendOutcome`, so
//! the worker cannot tell them apart.
//!
//! SMTP connections are herald's own, one per delivery worker, each reused
//! for many messages: herald connects the TCP stream itself so it can set
//! TCP_NODELAY (lettre's own connector leaves Nagle's algorithm on, and
//! every SMTP command then waits for a delayed ACK, about 29 ms a message),
//! then hands the stream to lettre's `AsyncSmtpConnection` for the protocol.
//! herald bounds the number of connections itself (`mail.concurrency`).
//!
//! Transactions are herald's own too (lettre's `send` stops at the first
//! negative reply and cannot pipeline). When the server offers PIPELINING
//! (RFC 2920), MAIL, every RCPT and DATA go in one write and their replies
//! are read in order, then the message in a second write: two round trips a
//! message instead of four. A server without it gets one command at a time.
//! Either way each negative reply is reported against its own command
//! ("RCPT TO:<a@b> refused: 550 5.1.1 …"), and when the session's state is
//! still known after one (RSET, or the end of the data phase) the
//! connection carries on with the next message.

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use lettre::address::Envelope;
use lettre::transport::smtp::authentication::{Credentials, Mechanism};
use lettre::transport::smtp::client::{AsyncSmtpConnection, AsyncTokioStream, TlsParameters};
use lettre::transport::smtp::commands::{Data, Ehlo, Mail as MailCommand, Rcpt, Rset};
use lettre::transport::smtp::extension::{ClientId, Extension, MailParameter};
use lettre::transport::smtp::response::Response;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

use crate::compose::Outgoing;
use crate::config::{Mail, Transport as TransportKind, ENV_SMTP_PASSWORD};
use crate::fsutil::{write_atomic_mode, Durability};

/// What one send attempt came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SendOutcome {
    /// The server accepted the message (2xx after DATA) or it is in the outbox.
    Sent { reply: String },
    /// A 4xx reply, a timeout, a refused or dropped connection: try again
    /// later. `unreachable` when no connection could be opened at all (the
    /// server is down or refuses everyone), not just this message.
    Retry { error: String, unreachable: bool },
    /// A 5xx reply: the server will never take this message. `bounce`: the
    /// refusal is about the reader (RCPT, DATA, the message), so it counts
    /// as their bounce; a refused sender (MAIL) or a message that could not
    /// be built is no fault of theirs.
    Failed { error: String, bounce: bool },
}

#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    #[error("the SMTP URL for {host} has a user ({user}) but {var} is not set")]
    MissingPassword { host: String, user: String, var: String },
    #[error("cannot set up TLS for {host}: {message}")]
    Tls { host: String, message: String },
    #[error("mail.smtp_url: unknown tls={0} (expected required, opportunistic or none)")]
    TlsMode(String),
}

/// How a connection is encrypted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TlsMode {
    /// `smtps://`: TLS from the first byte.
    Implicit,
    /// STARTTLS, and refuse to go on without it.
    Required,
    /// STARTTLS when the server offers it.
    Opportunistic,
    None,
}

/// Where and how to reach one SMTP server.
pub struct SmtpServer {
    pub host: String,
    pub port: u16,
    pub tls: TlsMode,
    tls_parameters: Option<TlsParameters>,
    tls_connector: Option<tokio_rustls::TlsConnector>,
    credentials: Option<Credentials>,
    hello: ClientId,
    /// Bounds connecting and each command.
    pub timeout: Duration,
    /// Reconnect after this many messages on one connection (0: never).
    pub messages_per_connection: usize,
}

impl fmt::Debug for SmtpServer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SmtpServer")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("tls", &self.tls)
            .finish_non_exhaustive()
    }
}

impl SmtpServer {
    /// An SMTP server from its URL; the password, when the URL has a user,
    /// comes from the environment variable `password_var`.
    pub fn new(url: &url::Url, password_var: &str, mail: &Mail) -> Result<Self, TransportError> {
        // Config validation guarantees a host.
        let host = url.host_str().unwrap_or("127.0.0.1").trim_matches(['[', ']']).to_owned();
        let implicit = url.scheme() == "smtps";
        let port = url.port().unwrap_or(if implicit { 465 } else { 25 });
        let mode = url.query_pairs().find(|(k, _)| k == "tls").map(|(_, v)| v.into_owned());
        // A password never crosses the network in clear by accident: with a
        // user and no explicit `tls=`, STARTTLS is required unless the server
        // is on this machine.
        let loopback = host == "localhost"
            || host.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback());
        let mode = match mode {
            None if !url.username().is_empty() && !loopback => Some("required".to_owned()),
            other => other,
        };
        let tls = match (implicit, mode.as_deref()) {
            (true, _) => TlsMode::Implicit,
            (false, None | Some("opportunistic")) => TlsMode::Opportunistic,
            (false, Some("required")) => TlsMode::Required,
            (false, Some("none")) => TlsMode::None,
            (false, Some(other)) => return Err(TransportError::TlsMode(other.to_owned())),
        };
        let tls_error = |message: String| TransportError::Tls { host: host.clone(), message };
        let tls_parameters = match tls {
            TlsMode::Required | TlsMode::Opportunistic => {
                Some(TlsParameters::new(host.clone()).map_err(|e| tls_error(e.to_string()))?)
            }
            TlsMode::Implicit | TlsMode::None => None,
        };
        let tls_connector = match tls {
            TlsMode::Implicit => Some(rustls_connector().map_err(tls_error)?),
            _ => None,
        };
        let credentials = if url.username().is_empty() {
            None
        } else {
            let user = percent_encoding::percent_decode_str(url.username())
                .decode_utf8_lossy()
                .into_owned();
            let password =
                std::env::var(password_var).map_err(|_| TransportError::MissingPassword {
                    host: host.clone(),
                    user: user.clone(),
                    var: password_var.to_owned(),
                })?;
            Some(Credentials::new(user, password))
        };
        Ok(Self {
            host,
            port,
            tls,
            tls_parameters,
            tls_connector,
            credentials,
            hello: ClientId::default(),
            timeout: Duration::from_secs(mail.timeout_secs),
            messages_per_connection: mail.messages_per_connection,
        })
    }

    /// Opens a connection: TCP with TCP_NODELAY, TLS as configured, EHLO,
    /// and AUTH when there are credentials.
    pub async fn connect(&self) -> Result<Connection, String> {
        let address = format!("{}:{}", self.host, self.port);
        let tcp = tokio::time::timeout(self.timeout, TcpStream::connect(&address))
            .await
            .map_err(|_| {
                format!("connecting to {address} timed out after {}s", self.timeout.as_secs())
            })?
            .map_err(|e| format!("cannot connect to {address}: {e}"))?;
        tcp.set_nodelay(true).map_err(|e| format!("cannot set TCP_NODELAY on {address}: {e}"))?;
        let stream: Box<dyn AsyncTokioStream> = match (&self.tls, &self.tls_connector) {
            (TlsMode::Implicit, Some(connector)) => {
                let name = rustls::pki_types::ServerName::try_from(self.host.clone())
                    .map_err(|e| format!("{}: not a name TLS can check: {e}", self.host))?;
                let tls = tokio::time::timeout(self.timeout, connector.connect(name, tcp))
                    .await
                    .map_err(|_| format!("TLS handshake with {address} timed out"))?
                    .map_err(|e| format!("TLS handshake with {address} failed: {e}"))?;
                Box::new(TlsTcp(tls))
            }
            _ => Box::new(tcp),
        };
        let connect = async {
            let mut conn = AsyncSmtpConnection::connect_with_transport(stream, &self.hello)
                .await
                .map_err(|e| format!("{address}: {}", crate::text::error_chain(&e)))?;
            if let Some(params) = &self.tls_parameters {
                if conn.can_starttls() {
                    conn.starttls(params.clone(), &self.hello).await.map_err(|e| {
                        format!("{address}: STARTTLS failed: {}", crate::text::error_chain(&e))
                    })?;
                } else if self.tls == TlsMode::Required {
                    conn.abort().await;
                    return Err(format!(
                        "{address} does not offer STARTTLS, and it is required (add ?tls=none to the URL to send in clear)"
                    ));
                }
            }
            // lettre keeps only the EHLO keywords it knows, and PIPELINING is
            // not one of them: ask again and read the keywords here (after
            // STARTTLS, whose EHLO is the one that counts, and before AUTH).
            // A repeated EHLO resets nothing that matters (RFC 5321 section
            // 4.1.4); one round trip per connection.
            let ehlo = conn
                .command(Ehlo::new(self.hello.clone()))
                .await
                .map_err(|e| format!("{address}: EHLO failed: {}", crate::text::error_chain(&e)))?;
            let pipelining = offers(&ehlo, "PIPELINING");
            if let Some(credentials) = &self.credentials {
                conn.auth(&[Mechanism::Plain, Mechanism::Login], credentials).await.map_err(
                    |e| {
                        format!(
                            "{address}: authentication failed: {}",
                            crate::text::error_chain(&e)
                        )
                    },
                )?;
            }
            Ok::<_, String>(Connection { smtp: conn, pipelining })
        };
        tokio::time::timeout(self.timeout * 2, connect).await.map_err(|_| {
            format!("{address}: no greeting within {}s", (self.timeout * 2).as_secs())
        })?
    }
}

/// An open SMTP session: lettre's connection, and what herald read of the
/// server's EHLO that lettre does not keep.
pub struct Connection {
    smtp: AsyncSmtpConnection,
    /// The server offers PIPELINING (RFC 2920).
    pipelining: bool,
}

impl fmt::Debug for Connection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Connection").field("pipelining", &self.pipelining).finish_non_exhaustive()
    }
}

/// Whether an EHLO reply lists `keyword` (RFC 5321 section 4.1.1.1: one
/// extension per line, the keyword first, in any case).
fn offers(ehlo: &Response, keyword: &str) -> bool {
    // The first line is the server's name, not an extension.
    ehlo.message()
        .skip(1)
        .any(|line| line.split_whitespace().next().is_some_and(|k| k.eq_ignore_ascii_case(keyword)))
}

pub(crate) fn rustls_connector() -> Result<tokio_rustls::TlsConnector, String> {
    let roots = rustls::RootCertStore { roots: webpki_roots::TLS_SERVER_ROOTS.to_vec() };
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| e.to_string())?
    .with_root_certificates(roots)
    .with_no_client_auth();
    Ok(tokio_rustls::TlsConnector::from(Arc::new(config)))
}

/// A TLS stream lettre can drive (implicit TLS, `smtps://`).
struct TlsTcp(tokio_rustls::client::TlsStream<TcpStream>);

impl fmt::Debug for TlsTcp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("TlsTcp")
    }
}

impl AsyncRead for TlsTcp {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl AsyncWrite for TlsTcp {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }
}

impl AsyncTokioStream for TlsTcp {
    fn peer_addr(&self) -> io::Result<SocketAddr> {
        self.0.get_ref().0.peer_addr()
    }
}

/// One SMTP server of the transport, with its share of the sending.
#[derive(Debug)]
pub struct Relay {
    pub name: String,
    pub server: SmtpServer,
    pub concurrency: usize,
    pub rate_per_second: f64,
    /// Messages per UTC day at most (0: no limit).
    pub daily_cap: u64,
}

/// Where messages go: chosen once from the config, shared by all workers.
#[derive(Debug)]
pub enum Transport {
    Outbox { dir: PathBuf, concurrency: usize, rate_per_second: f64 },
    Smtp(Vec<Relay>),
}

impl Transport {
    pub fn from_config(mail: &Mail) -> Result<Self, TransportError> {
        match mail.transport {
            TransportKind::Outbox => Ok(Self::Outbox {
                dir: mail.outbox_dir.clone(),
                concurrency: mail.concurrency,
                rate_per_second: mail.rate_per_second,
            }),
            TransportKind::Smtp if mail.relays.is_empty() => Ok(Self::Smtp(vec![Relay {
                name: "default".into(),
                server: SmtpServer::new(&mail.smtp_url, ENV_SMTP_PASSWORD, mail)?,
                concurrency: mail.concurrency,
                rate_per_second: mail.rate_per_second,
                daily_cap: 0,
            }])),
            TransportKind::Smtp => mail
                .relays
                .iter()
                .map(|r| {
                    Ok(Relay {
                        name: r.name.to_string(),
                        server: SmtpServer::new(&r.url, &r.password_var(), mail)?,
                        concurrency: r.concurrency,
                        rate_per_second: r.rate_per_second,
                        daily_cap: r.daily_cap,
                    })
                })
                .collect::<Result<Vec<_>, _>>()
                .map(Self::Smtp),
        }
    }

    /// Where messages go, for people.
    pub fn describe(&self) -> String {
        match self {
            Self::Outbox { dir, .. } => format!("the outbox folder {}", dir.display()),
            Self::Smtp(relays) if relays.len() == 1 => {
                format!("the SMTP server {}:{}", relays[0].server.host, relays[0].server.port)
            }
            Self::Smtp(relays) => {
                let names: Vec<String> = relays
                    .iter()
                    .map(|r| format!("{} ({}:{})", r.name, r.server.host, r.server.port))
                    .collect();
                format!("the relays {}", names.join(", "))
            }
        }
    }

    /// (name, concurrency, rate per second, daily cap) of each way out.
    pub fn lanes(&self) -> Vec<(String, usize, f64, u64)> {
        match self {
            Self::Outbox { concurrency, rate_per_second, .. } => {
                vec![("outbox".into(), *concurrency, *rate_per_second, 0)]
            }
            Self::Smtp(relays) => relays
                .iter()
                .map(|r| (r.name.clone(), r.concurrency, r.rate_per_second, r.daily_cap))
                .collect(),
        }
    }
}

/// One delivery worker's end of the transport: for SMTP, its own connection,
/// opened on first use and reused until it breaks or reaches
/// `messages_per_connection`.
pub struct Sender {
    transport: Arc<Transport>,
    /// Which relay (lane) this sender uses.
    lane: usize,
    connection: Option<Connection>,
    /// Transactions run on the connection, accepted or not.
    transactions_on_connection: usize,
}

impl Sender {
    pub fn new(transport: Arc<Transport>, lane: usize) -> Self {
        Self { transport, lane, connection: None, transactions_on_connection: 0 }
    }

    /// Sends one message. `name` is a stable, file-safe name for it (the
    /// outbox file, so a resend overwrites instead of duplicating).
    pub async fn send(&mut self, message: &Outgoing, name: &str) -> SendOutcome {
        let transport = Arc::clone(&self.transport);
        match &*transport {
            Transport::Outbox { dir, .. } => {
                let path = dir.join(format!("{name}.eml"));
                let bytes = message.bytes.clone();
                let written = path.clone();
                match tokio::task::spawn_blocking(move || {
                    write_atomic_mode(&written, &bytes, Durability::ProcessCrash, 0o600)
                })
                .await
                {
                    Ok(Ok(())) => {
                        SendOutcome::Sent { reply: format!("written to {}", path.display()) }
                    }
                    Ok(Err(e)) => SendOutcome::Retry {
                        error: format!("cannot write {}: {e}", path.display()),
                        unreachable: true,
                    },
                    Err(e) => SendOutcome::Retry {
                        error: format!("cannot write {}: {e}", path.display()),
                        unreachable: true,
                    },
                }
            }
            Transport::Smtp(relays) => {
                let Some(relay) = relays.get(self.lane) else {
                    return SendOutcome::Retry { error: "no such relay".into(), unreachable: true };
                };
                self.send_smtp(&relay.server, &message.envelope, &message.bytes).await
            }
        }
    }

    async fn send_smtp(
        &mut self,
        server: &SmtpServer,
        envelope: &Envelope,
        bytes: &[u8],
    ) -> SendOutcome {
        let limit = server.messages_per_connection;
        if limit > 0 && self.transactions_on_connection >= limit {
            self.close().await;
        }
        if self.connection.as_ref().is_some_and(|c| c.smtp.has_broken()) {
            self.connection = None;
        }
        if self.connection.is_none() {
            match server.connect().await {
                Ok(conn) => {
                    self.connection = Some(conn);
                    self.transactions_on_connection = 0;
                }
                // A 421 greeting, a refused or timed-out connection: the
                // message waits for a later attempt.
                Err(error) => return SendOutcome::Retry { error, unreachable: true },
            }
        }
        let Some(conn) = self.connection.as_mut() else {
            return SendOutcome::Retry { error: "no connection".into(), unreachable: true };
        };
        // lettre bounds each command only when connecting with its own
        // connector; this bounds the whole transaction.
        let result = tokio::time::timeout(server.timeout, transaction(conn, envelope, bytes)).await;
        match result {
            Err(_) => {
                // The transaction's state is unknown: never reuse the connection.
                self.connection = None;
                SendOutcome::Retry {
                    error: format!("no reply within {}s", server.timeout.as_secs()),
                    unreachable: false,
                }
            }
            Ok(Ok(response)) => {
                self.transactions_on_connection += 1;
                let text: Vec<&str> = response.message().collect();
                SendOutcome::Sent { reply: format!("{} {}", response.code(), text.join(" ")) }
            }
            Ok(Err(Failure::Refused { refusal, usable })) => {
                if usable {
                    self.transactions_on_connection += 1;
                } else {
                    self.connection = None;
                }
                let error = refusal.to_string();
                if refusal.permanent() {
                    SendOutcome::Failed { error, bounce: !refusal.of_sender() }
                } else {
                    SendOutcome::Retry { error, unreachable: false }
                }
            }
            Ok(Err(Failure::Broken(error))) => {
                self.connection = None;
                SendOutcome::Retry { error, unreachable: false }
            }
        }
    }

    /// Ends the connection politely (QUIT).
    pub async fn close(&mut self) {
        if let Some(mut conn) = self.connection.take() {
            let _ = tokio::time::timeout(Duration::from_secs(5), conn.smtp.quit()).await;
        }
        self.transactions_on_connection = 0;
    }
}

/// How a transaction ended short of the server's acceptance.
#[derive(Debug)]
enum Failure {
    /// A negative reply, the first of the transaction. `usable`: the session
    /// is back at its start (RSET, or the data phase ended) and can carry
    /// the next message.
    Refused { refusal: Refusal, usable: bool },
    /// The connection broke, or answered out of turn: the session's state
    /// is unknown.
    Broken(String),
}

/// A command's negative reply as the ledger records it, naming the command:
/// `RCPT TO:<a@example.com> refused: 550 5.1.1 user unknown`.
#[derive(Debug)]
struct Refusal {
    /// What was refused: "RCPT TO:<a@example.com> refused", "DATA refused".
    what: String,
    code: u16,
    text: String,
}

impl Refusal {
    /// A 5xx: the server will never take the message. (Anything else that
    /// is negative is a 4xx.)
    fn permanent(&self) -> bool {
        self.code >= 500
    }

    /// A refusal of MAIL FROM: about the sender, whoever the reader.
    fn of_sender(&self) -> bool {
        self.what.starts_with("MAIL FROM")
    }

    /// 421: the server is closing the session (RFC 5321 section 3.8).
    fn closing(&self) -> bool {
        self.code == 421
    }
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.what, self.code)?;
        if !self.text.is_empty() {
            write!(f, " {}", self.text)?;
        }
        Ok(())
    }
}

/// One reply: `Ok(Ok)` when positive, `Ok(Err)` when negative (4xx, 5xx),
/// `Err` when the connection failed or the reply was not SMTP. `command`
/// names it for the ledger, `what` the refusal.
fn reply(
    result: Result<Response, lettre::transport::smtp::Error>,
    command: &str,
    what: impl FnOnce() -> String,
) -> Result<Result<Response, Refusal>, Failure> {
    match result {
        Ok(response) => Ok(Ok(response)),
        Err(e) => match e.status() {
            Some(code) => Ok(Err(Refusal {
                what: what(),
                code: code.into(),
                // lettre's error for a negative reply has the reply's text
                // as its source.
                text: std::error::Error::source(&e).map(|s| s.to_string()).unwrap_or_default(),
            })),
            None => Err(Failure::Broken(format!("at {command}: {e}"))),
        },
    }
}

fn refused(command: &str) -> impl FnOnce() -> String + '_ {
    move || format!("{command} refused")
}

/// The replies to MAIL, RCPT and DATA.
struct Opening {
    /// The first negative reply to MAIL or a RCPT.
    refusal: Option<Refusal>,
    mail_accepted: bool,
    /// RCPTs answered with 2xx.
    recipients: usize,
    /// The reply to DATA, when DATA was sent and its reply read.
    data: Option<Result<Response, Refusal>>,
    /// The connection failed after a refusal, before the group's last
    /// reply: the refusal stands, the connection is lost.
    lost: bool,
}

/// One mail transaction on an open connection: MAIL, RCPT, DATA (in one
/// write when the server pipelines), the message, and the server's reply to
/// it. The message is written in one piece with herald's own dot-stuffer:
/// lettre's writer goes byte by byte, which was an eighth of herald's
/// sending time.
async fn transaction(
    conn: &mut Connection,
    envelope: &Envelope,
    bytes: &[u8],
) -> Result<Response, Failure> {
    let mut parameters = Vec::new();
    // RFC 6531: non-ASCII addresses need SMTPUTF8.
    let non_ascii = envelope
        .from()
        .into_iter()
        .chain(envelope.to())
        .any(|a: &lettre::Address| !AsRef::<str>::as_ref(a).is_ascii());
    if non_ascii && conn.smtp.server_info().supports_feature(Extension::SmtpUtfEight) {
        parameters.push(MailParameter::SmtpUtfEight);
    }
    let mail = MailCommand::new(envelope.from().cloned(), parameters).to_string();
    let rcpts: Vec<String> =
        envelope.to().iter().map(|to| Rcpt::new(to.clone(), Vec::new()).to_string()).collect();
    let opening = if conn.pipelining {
        pipelined(&mut conn.smtp, &mail, &rcpts).await?
    } else {
        stepwise(&mut conn.smtp, &mail, &rcpts).await?
    };
    let smtp = &mut conn.smtp;
    let Opening { refusal, mail_accepted, recipients, data, lost } = opening;
    let go_ahead = matches!(&data, Some(Ok(r)) if r.has_code(354));
    match (refusal, data) {
        (None, Some(Ok(_))) if go_ahead => {
            let result = smtp.command(data_body(bytes).as_str()).await;
            match reply(result, "the end of the message", || {
                "the message was refused at the end of DATA".into()
            })? {
                Ok(response) => Ok(response),
                // The data phase is over either way: the session is ready for
                // the next MAIL (RFC 5321 section 4.1.1.4).
                Err(refusal) => {
                    let usable = !refusal.closing();
                    Err(Failure::Refused { refusal, usable })
                }
            }
        }
        (None, Some(Ok(other))) => {
            Err(Failure::Broken(format!("DATA answered {} instead of 354", other.code())))
        }
        (None, Some(Err(refusal))) => {
            let usable = !refusal.closing() && reset(smtp, mail_accepted).await;
            Err(Failure::Refused { refusal, usable })
        }
        (Some(refusal), Some(Ok(_))) if go_ahead => {
            // A pipelined DATA took 354 although MAIL or RCPT was refused.
            let usable = if recipients == 0 {
                // RFC 2920 section 3.1: end the data phase with "." alone;
                // with no recipient nobody gets the empty message. Its reply
                // does not matter.
                let result = smtp.command(".\r\n").await;
                match reply(result, "the end of an empty DATA", String::new) {
                    Ok(Ok(_)) => !refusal.closing(),
                    Ok(Err(end)) => !refusal.closing() && !end.closing(),
                    Err(_) => false,
                }
            } else {
                // Some recipients were accepted and would get whatever ends
                // the data phase; only dropping the connection cancels it.
                false
            };
            Err(Failure::Refused { refusal, usable })
        }
        (Some(refusal), Some(Ok(_))) => Err(Failure::Refused { refusal, usable: false }),
        (Some(refusal), Some(Err(_)) | None) => {
            let usable = !lost && !refusal.closing() && reset(smtp, mail_accepted).await;
            Err(Failure::Refused { refusal, usable })
        }
        (None, None) => Err(Failure::Broken("DATA was not sent".into())),
    }
}

/// RFC 2920: MAIL, every RCPT and DATA in one write (DATA ends the group:
/// the message waits for its 354), then every reply read in order, even
/// after a refusal, so the next reply read is the next command's.
async fn pipelined(
    smtp: &mut AsyncSmtpConnection,
    mail: &str,
    rcpts: &[String],
) -> Result<Opening, Failure> {
    let mut group = String::with_capacity(mail.len() + rcpts.len() * 48 + 6);
    group.push_str(mail);
    rcpts.iter().for_each(|r| group.push_str(r));
    group.push_str(&Data.to_string());
    let name = mail.trim_end();
    // `command` writes the whole group at once and reads MAIL's reply.
    let mail_reply = reply(smtp.command(group).await, name, refused(name))?;
    let mail_accepted = mail_reply.is_ok();
    let mut opening = Opening {
        refusal: mail_reply.err(),
        mail_accepted,
        recipients: 0,
        data: None,
        lost: false,
    };
    // A connection lost after a refusal leaves the refusal as the outcome.
    let lost = |mut opening: Opening, failure: Failure| {
        if opening.refusal.is_none() {
            return Err(failure);
        }
        opening.lost = true;
        Ok(opening)
    };
    // After a 421 the server has hung up: no more replies come.
    let closed = |opening: &Opening| opening.refusal.as_ref().is_some_and(Refusal::closing);
    for rcpt in rcpts {
        if closed(&opening) {
            return Ok(opening);
        }
        let name = rcpt.trim_end();
        match reply(smtp.read_response().await, name, refused(name)) {
            Ok(Ok(_)) => opening.recipients += usize::from(mail_accepted),
            Ok(Err(no)) => {
                opening.refusal.get_or_insert(no);
            }
            Err(failure) => return lost(opening, failure),
        }
    }
    if closed(&opening) {
        return Ok(opening);
    }
    match reply(smtp.read_response().await, "DATA", refused("DATA")) {
        Ok(data) => opening.data = Some(data),
        Err(failure) => return lost(opening, failure),
    }
    Ok(opening)
}

/// One command at a time, each after the previous one's reply; the first
/// refusal ends the transaction.
async fn stepwise(
    smtp: &mut AsyncSmtpConnection,
    mail: &str,
    rcpts: &[String],
) -> Result<Opening, Failure> {
    let mut opening =
        Opening { refusal: None, mail_accepted: false, recipients: 0, data: None, lost: false };
    let name = mail.trim_end();
    if let Err(no) = reply(smtp.command(mail).await, name, refused(name))? {
        opening.refusal = Some(no);
        return Ok(opening);
    }
    opening.mail_accepted = true;
    for rcpt in rcpts {
        let name = rcpt.trim_end();
        match reply(smtp.command(rcpt).await, name, refused(name))? {
            Ok(_) => opening.recipients += 1,
            Err(no) => {
                opening.refusal = Some(no);
                return Ok(opening);
            }
        }
    }
    opening.data = Some(reply(smtp.command(Data).await, "DATA", refused("DATA"))?);
    Ok(opening)
}

/// Ends an open transaction with RSET; whether the session is usable after.
/// Without an accepted MAIL there is no transaction to end.
async fn reset(smtp: &mut AsyncSmtpConnection, mail_accepted: bool) -> bool {
    !mail_accepted || smtp.command(Rset).await.is_ok()
}

/// A message as the DATA phase sends it (RFC 5321 section 4.5.2): a line
/// that starts with "." gets another one, then CRLF "." CRLF ends it. One
/// pass that copies the runs between line starts with a dot (found with
/// memchr's SIMD search) into a buffer of the right size.
fn data_body(bytes: &[u8]) -> String {
    // Messages from the builder are 7-bit (headers and bodies are encoded),
    // so the bytes are text; anything else is sent lossily rather than not
    // at all.
    let text = match std::str::from_utf8(bytes) {
        Ok(text) => std::borrow::Cow::Borrowed(text),
        Err(_) => String::from_utf8_lossy(bytes),
    };
    let text = text.as_bytes();
    let mut out = String::with_capacity(text.len() + text.len() / 64 + 8);
    let mut push = |part: &[u8]| out.push_str(std::str::from_utf8(part).unwrap_or_default());
    if text.first() == Some(&b'.') {
        push(b".");
    }
    let mut rest = text;
    let finder = memchr::memmem::Finder::new(b"\n.");
    while let Some(at) = finder.find(rest) {
        push(&rest[..at + 2]);
        push(b".");
        rest = &rest[at + 2..];
    }
    push(rest);
    push(b"\r\n.\r\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn data_is_dot_stuffed_and_terminated() {
        let body = data_body(b".first\r\nmiddle\r\n.dot\r\n..two\r\nend");
        assert_eq!(body, "..first\r\nmiddle\r\n..dot\r\n...two\r\nend\r\n.\r\n");
        assert_eq!(data_body(b"plain"), "plain\r\n.\r\n");
        assert_eq!(data_body(b""), "\r\n.\r\n");
        assert_eq!(data_body(b"a\n.\n."), "a\n..\n..\r\n.\r\n");
    }

    #[test]
    fn pipelining_is_read_from_the_ehlo_keywords() {
        let ehlo = |text: &str| text.parse::<Response>().unwrap();
        let postfix =
            ehlo("250-mx.example.com\r\n250-SIZE 10240000\r\n250-pipelining\r\n250 8BITMIME\r\n");
        assert!(offers(&postfix, "PIPELINING"));
        // Only a keyword of its own counts, and never the server's name.
        assert!(!offers(&ehlo("250-mx.example.com\r\n250 XPIPELINING\r\n"), "PIPELINING"));
        assert!(!offers(&ehlo("250 PIPELINING\r\n"), "PIPELINING"));
    }

    #[test]
    fn a_refusal_names_its_command_and_the_reply() {
        let refusal = Refusal {
            what: "RCPT TO:<a@example.com> refused".into(),
            code: 550,
            text: "5.1.1 user unknown".into(),
        };
        assert_eq!(refusal.to_string(), "RCPT TO:<a@example.com> refused: 550 5.1.1 user unknown");
        assert!(refusal.permanent() && !refusal.closing());
        let refusal = Refusal { what: "DATA refused".into(), code: 421, text: String::new() };
        assert_eq!(refusal.to_string(), "DATA refused: 421");
        assert!(!refusal.permanent() && refusal.closing());
    }
}
