//! The transports: SMTP, or the outbox folder (one `.eml` file per message).
//! Both take the same message ready for the wire from the one message
//! builder (`compose::Outgoing`) and
//! answer with the same `SendOutcome`, so the worker cannot tell them apart.
//!
//! SMTP connections are herald's own, one per delivery worker, each reused
//! for many messages: herald connects the TCP stream itself so it can set
//! TCP_NODELAY (lettre's own connector leaves Nagle's algorithm on, and
//! every SMTP command then waits for a delayed ACK, about 29 ms a message),
//! then hands the stream to lettre's `AsyncSmtpConnection` for the protocol.
//! herald bounds the number of connections itself (`mail.concurrency`).

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
use lettre::transport::smtp::extension::ClientId;
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
    /// A 5xx reply: the server will never take this message.
    Failed { error: String },
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
    pub async fn connect(&self) -> Result<AsyncSmtpConnection, String> {
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
            Ok::<_, String>(conn)
        };
        tokio::time::timeout(self.timeout * 2, connect).await.map_err(|_| {
            format!("{address}: no greeting within {}s", (self.timeout * 2).as_secs())
        })?
    }
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
    connection: Option<AsyncSmtpConnection>,
    sent_on_connection: usize,
}

impl Sender {
    pub fn new(transport: Arc<Transport>, lane: usize) -> Self {
        Self { transport, lane, connection: None, sent_on_connection: 0 }
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
        if limit > 0 && self.sent_on_connection >= limit {
            self.close().await;
        }
        if self.connection.as_ref().is_some_and(AsyncSmtpConnection::has_broken) {
            self.connection = None;
        }
        if self.connection.is_none() {
            match server.connect().await {
                Ok(conn) => {
                    self.connection = Some(conn);
                    self.sent_on_connection = 0;
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
                self.sent_on_connection += 1;
                let text: Vec<&str> = response.message().collect();
                SendOutcome::Sent { reply: format!("{} {}", response.code(), text.join(" ")) }
            }
            Ok(Err(e)) => {
                // lettre closes the connection after any error.
                self.connection = None;
                let error = crate::text::error_chain(&e);
                if e.is_permanent() {
                    SendOutcome::Failed { error }
                } else {
                    SendOutcome::Retry { error, unreachable: false }
                }
            }
        }
    }

    /// Ends the connection politely (QUIT).
    pub async fn close(&mut self) {
        if let Some(mut conn) = self.connection.take() {
            let _ = tokio::time::timeout(Duration::from_secs(5), conn.quit()).await;
        }
        self.sent_on_connection = 0;
    }
}

/// One mail transaction on an open connection: MAIL, RCPT, DATA, the
/// message, and the server's reply to it. The same commands as lettre's
/// `send`, with the message body written in one piece: lettre's own writer
/// dot-stuffs byte by byte, which was an eighth of herald's sending time.
async fn transaction(
    conn: &mut AsyncSmtpConnection,
    envelope: &Envelope,
    bytes: &[u8],
) -> Result<lettre::transport::smtp::response::Response, lettre::transport::smtp::Error> {
    use lettre::transport::smtp::commands::{Data, Mail, Rcpt};
    use lettre::transport::smtp::extension::{Extension, MailParameter};
    let mut parameters = Vec::new();
    // RFC 6531: non-ASCII addresses need SMTPUTF8.
    let non_ascii = envelope
        .from()
        .into_iter()
        .chain(envelope.to())
        .any(|a: &lettre::Address| !AsRef::<str>::as_ref(a).is_ascii());
    if non_ascii && conn.server_info().supports_feature(Extension::SmtpUtfEight) {
        parameters.push(MailParameter::SmtpUtfEight);
    }
    conn.command(Mail::new(envelope.from().cloned(), parameters)).await?;
    for to in envelope.to() {
        conn.command(Rcpt::new(to.clone(), Vec::new())).await?;
    }
    conn.command(Data).await?;
    conn.command(DataBody(bytes)).await
}

/// A message as the DATA phase sends it (RFC 5321 section 4.5.2): a line
/// that starts with "." gets another one, then CRLF "." CRLF ends it.
struct DataBody<'a>(&'a [u8]);

impl fmt::Display for DataBody<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Messages from lettre's builder are 7-bit (headers and bodies are
        // encoded), so the bytes are text; anything else is sent lossily
        // rather than not at all.
        let text = match std::str::from_utf8(self.0) {
            Ok(text) => std::borrow::Cow::Borrowed(text),
            Err(_) => String::from_utf8_lossy(self.0),
        };
        let mut rest: &str = &text;
        if rest.starts_with('.') {
            f.write_str(".")?;
        }
        while let Some(at) = rest.find("\n.") {
            f.write_str(&rest[..at + 2])?;
            f.write_str(".")?;
            rest = &rest[at + 2..];
        }
        f.write_str(rest)?;
        f.write_str("\r\n.\r\n")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn data_is_dot_stuffed_and_terminated() {
        let body = DataBody(b".first\r\nmiddle\r\n.dot\r\n..two\r\nend");
        assert_eq!(body.to_string(), "..first\r\nmiddle\r\n..dot\r\n...two\r\nend\r\n.\r\n");
        assert_eq!(DataBody(b"plain").to_string(), "plain\r\n.\r\n");
    }
}
