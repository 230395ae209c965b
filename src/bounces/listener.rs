//! The inbound SMTP listener of `herald daemon` (`[bounces] listen`): the
//! MX of the bounce domain, or the operator's own MTA, hands it the reports
//! that come back (RFC 3464 delivery status notifications, RFC 5965
//! complaints), and each whole message goes to [`Intake::message`].
//!
//! It is a small SMTP server (RFC 5321) that receives and never sends:
//! it takes mail only for the bounce address's domain (a valid VERP address
//! or the plain bounce address), refuses every other domain as relaying,
//! and answers like a well-behaved MTA. The 250 after DATA goes out only
//! once what the report says is committed to the store; when the store
//! cannot take it the answer is `451 4.3.0`, so the sender keeps the report
//! and tries again, and nothing is lost. A report handed over twice (the
//! gap between the commit and the 250, RFC 1047) is acted on once: the store
//! knows it by its Message-ID.
//!
//! Everything that comes in is hostile: lines, messages, recipients,
//! connections and time are capped, and nothing that comes in is executed,
//! relayed or answered by mail.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Semaphore};
use tokio::task::JoinSet;
use tokio::time::Instant;

use super::verp::Recipient;
use super::{Intake, Outcome, Via};
use crate::config::Bounces;
use crate::store::StoreError;

/// The longest command line taken, CRLF included. RFC 5321 4.5.3.1.4 sets
/// 512 octets for a command line and lets extensions lengthen it (SIZE and
/// SMTPUTF8 parameters do); 1000 is the text-line limit of 4.5.3.1.6.
pub const MAX_COMMAND_LINE: usize = 1000;
/// Recipients taken for one message (RFC 5321 4.5.3.1.8 asks for at least
/// 100); more get `452 4.5.3`, and the sender sends them in another
/// transaction.
pub const MAX_RECIPIENTS: usize = 100;
/// Bad commands in one session before it is closed.
const MAX_ERRORS: usize = 20;
/// The most of a message read in one piece: a text line longer than this
/// (a broken sender's) is read in pieces, so memory stays bounded by the
/// message cap however long a line is.
const DATA_PIECE: usize = 64 * 1024;

/// Where the listener reads the time each report is stamped with.
pub type Clock = Arc<dyn Fn() -> chrono::DateTime<chrono::Utc> + Send + Sync>;

#[derive(Debug, thiserror::Error)]
pub enum ListenerError {
    #[error(
        "cannot listen on {addr} for delivery reports: {cause}; is another server using it? (bounces.listen)"
    )]
    Bind { addr: SocketAddr, cause: std::io::Error },
}

/// Binds `bounces.listen` (port 0 picks a free port).
pub async fn bind(addr: SocketAddr) -> Result<TcpListener, ListenerError> {
    TcpListener::bind(addr).await.map_err(|cause| ListenerError::Bind { addr, cause })
}

/// What the listener takes: sizes, counts and time.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// The largest message, in bytes (announced as SIZE).
    pub max_message_bytes: usize,
    /// Sessions at once; one more is answered 421 and closed.
    pub max_connections: usize,
    pub max_recipients: usize,
    /// How long one session may last, and how long the listener waits for
    /// each line (and for the store to take a report).
    pub timeout: Duration,
}

impl Limits {
    pub fn from_config(bounces: &Bounces) -> Self {
        Self {
            max_message_bytes: bounces.max_message_bytes,
            max_connections: bounces.max_connections,
            max_recipients: MAX_RECIPIENTS,
            timeout: Duration::from_secs(bounces.timeout_secs),
        }
    }
}

/// What the listener did since it started, for `/metrics`.
#[derive(Debug, Default)]
pub struct Counters {
    /// Messages answered 250 after DATA: handed to the intake and stored.
    pub accepted: AtomicU64,
    /// Messages refused for good after DATA (too big).
    pub refused: AtomicU64,
    /// Messages answered 451 because the store could not take them; the
    /// sender tries again.
    pub deferred: AtomicU64,
    /// Recipients refused: not at the bounce domain (relaying), or not an
    /// address herald made.
    pub recipients_refused: AtomicU64,
    /// Connections turned away with 421 over `max_connections`.
    pub connections_refused: AtomicU64,
}

impl Counters {
    fn add(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

/// Where the listener hands what comes in: [`Intake`], or a stand-in in the
/// tests of the protocol.
pub trait Take: Clone + Send + Sync + 'static {
    /// What an envelope recipient is to herald.
    fn recipient(&self, address: &str) -> Recipient;
    /// Reads and acts on one whole message; `Ok` only once it is committed.
    fn take(
        &self,
        raw: &[u8],
        recipients: &[String],
        now: chrono::DateTime<chrono::Utc>,
    ) -> impl Future<Output = Result<Outcome, StoreError>> + Send;
    /// The name the listener greets with.
    fn hostname(&self) -> String;
}

impl Take for Intake {
    fn recipient(&self, address: &str) -> Recipient {
        Intake::recipient(self, address)
    }

    fn take(
        &self,
        raw: &[u8],
        recipients: &[String],
        now: chrono::DateTime<chrono::Utc>,
    ) -> impl Future<Output = Result<Outcome, StoreError>> + Send {
        self.message(raw, Via::Smtp, recipients, now)
    }

    fn hostname(&self) -> String {
        self.bounce_address()
            .and_then(|a| a.as_str().rsplit_once('@').map(|(_, d)| d.to_owned()))
            .unwrap_or_else(|| "localhost".to_owned())
    }
}

/// Serves SMTP sessions on `listener` until `shutdown` completes. Then it
/// accepts no more connections; each open session is answered 421 at its
/// next read (a report being stored is stored and answered first), and
/// sessions still open after `limits.timeout` are dropped.
pub async fn serve<T: Take>(
    listener: TcpListener,
    take: T,
    limits: Limits,
    clock: Clock,
    counters: Arc<Counters>,
    shutdown: impl Future<Output = ()> + Send,
) {
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let writes = Arc::new(tokio::sync::Mutex::new(()));
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut sessions = JoinSet::new();
    let hostname = take.hostname();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            () = &mut shutdown => break,
            Some(_) = sessions.join_next(), if !sessions.is_empty() => {}
            accepted = listener.accept() => {
                let (stream, peer) = match accepted {
                    Ok(pair) => pair,
                    Err(e) => {
                        // Out of file descriptors, most likely: wait a little
                        // rather than spin.
                        tracing::warn!("the bounce listener cannot accept a connection: {e}");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                };
                let _ = stream.set_nodelay(true);
                match Arc::clone(&slots).try_acquire_owned() {
                    Ok(slot) => {
                        let session = Session {
                            take: take.clone(),
                            limits,
                            clock: Arc::clone(&clock),
                            counters: Arc::clone(&counters),
                            hostname: hostname.clone(),
                            stop: stop_rx.clone(),
                            peer,
                            pending: Vec::new(),
                            writes: Arc::clone(&writes),
                        };
                        sessions.spawn(async move {
                            session.run(stream).await;
                            drop(slot);
                        });
                    }
                    Err(_) => {
                        Counters::add(&counters.connections_refused);
                        tracing::warn!(%peer, max = limits.max_connections, "bounce listener: too many connections; one turned away with 421");
                        sessions.spawn(turn_away(stream));
                    }
                }
            }
        }
    }
    drop(listener);
    let _ = stop_tx.send(true);
    let drained = tokio::time::timeout(limits.timeout, async {
        while sessions.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        tracing::warn!("bounce listener: sessions still open at shutdown were dropped");
        sessions.shutdown().await;
    }
    tracing::info!("the bounce listener stopped");
}

/// Answers a connection over the cap (RFC 5321 3.8: 421 and close).
async fn turn_away(mut stream: TcpStream) {
    let reply = b"421 4.3.2 Too many connections; try again later\r\n";
    let _ = tokio::time::timeout(Duration::from_secs(2), async {
        stream.write_all(reply).await?;
        stream.shutdown().await
    })
    .await;
}

struct Session<T> {
    take: T,
    limits: Limits,
    clock: Clock,
    counters: Arc<Counters>,
    hostname: String,
    stop: watch::Receiver<bool>,
    peer: SocketAddr,
    /// Replies not written yet: with PIPELINING (RFC 2920) a sender may
    /// send several commands at once, and their replies go out together,
    /// when no more input is waiting.
    pending: Vec<u8>,
    /// Held while a report is stored: the store takes one writer at a time
    /// (SQLite's write lock, PostgreSQL's advisory lock), and sessions that
    /// wait their turn here, in order, wait less than writers that collide
    /// in the store (SQLite's busy handler sleeps 1 to 100 ms a try).
    writes: Arc<tokio::sync::Mutex<()>>,
}

/// Why a session ends.
#[derive(Debug)]
enum End {
    /// QUIT, or the client went away.
    Done,
    /// The listener stops: 421.
    Stopping,
    /// No line within the timeout, or the session lasted too long: 421.
    TimedOut,
    /// Too many bad commands: 421.
    TooManyErrors,
    /// Reading or writing failed: nothing more to say.
    Broken,
}

/// What one read brought.
enum Read {
    /// A piece of a line (`ended`: it ends with LF).
    Piece { ended: bool },
    /// The client closed the connection.
    Closed,
}

/// The transaction in progress (RFC 5321 3.3).
#[derive(Default)]
struct Transaction {
    /// The reverse path of MAIL FROM (empty for the null sender of reports).
    from: Option<String>,
    recipients: Vec<String>,
}

impl<T: Take> Session<T> {
    async fn run(mut self, stream: TcpStream) {
        let (read, mut write) = stream.into_split();
        let mut reader = BufReader::with_capacity(16 * 1024, read);
        let deadline = Instant::now() + self.limits.timeout;
        let end = self.converse(&mut reader, &mut write, deadline).await;
        let farewell = match end {
            End::Done | End::Broken => None,
            End::Stopping => Some("421 4.3.2 Service shutting down; try again later"),
            End::TimedOut => Some("421 4.4.2 Timeout; closing the connection"),
            End::TooManyErrors => Some("421 4.7.0 Too many errors; closing the connection"),
        };
        if let Some(line) = farewell {
            tracing::debug!(peer = %self.peer, "bounce listener: {line}");
            self.reply(line);
        }
        let _ = self.flush(&mut write).await;
        let _ = tokio::time::timeout(Duration::from_secs(2), write.shutdown()).await;
    }

    async fn converse<R, W>(
        &mut self,
        reader: &mut BufReader<R>,
        out: &mut W,
        deadline: Instant,
    ) -> End
    where
        R: AsyncRead + Unpin,
        W: AsyncWrite + Unpin,
    {
        let greeting = format!("220 {} ESMTP herald: delivery reports only", self.hostname);
        self.reply(&greeting);
        let mut line = Vec::with_capacity(MAX_COMMAND_LINE);
        let mut helo = false;
        let mut tx: Transaction = Transaction::default();
        let mut errors = 0;
        loop {
            if errors >= MAX_ERRORS {
                return End::TooManyErrors;
            }
            let too_long = match self.read_command(reader, out, &mut line, deadline).await {
                Ok(Some(too_long)) => too_long,
                Ok(None) => return End::Done,
                Err(end) => return end,
            };
            if too_long {
                errors += 1;
                self.reply("500 5.5.2 Line too long");
                continue;
            }
            let text = String::from_utf8_lossy(trim_crlf(&line)).into_owned();
            let (verb, arg) = match text.split_once(' ') {
                Some((verb, arg)) => (verb.to_ascii_uppercase(), arg.trim()),
                None => (text.trim().to_ascii_uppercase(), ""),
            };
            let reply: String = match verb.as_str() {
                "EHLO" | "HELO" if arg.is_empty() => {
                    errors += 1;
                    format!("501 5.5.4 Syntax: {verb} hostname")
                }
                "EHLO" => {
                    helo = true;
                    tx = Transaction::default();
                    format!(
                        "250-{}\r\n250-PIPELINING\r\n250-SIZE {}\r\n250-8BITMIME\r\n250-SMTPUTF8\r\n250 ENHANCEDSTATUSCODES",
                        self.hostname, self.limits.max_message_bytes
                    )
                }
                "HELO" => {
                    helo = true;
                    tx = Transaction::default();
                    format!("250 {}", self.hostname)
                }
                "MAIL" => match self.mail(arg, helo, &tx) {
                    Ok(from) => {
                        tx = Transaction { from: Some(from), recipients: Vec::new() };
                        "250 2.1.0 Ok".to_owned()
                    }
                    Err(reply) => {
                        errors += 1;
                        reply
                    }
                },
                "RCPT" => match self.rcpt(arg, &tx) {
                    Ok(to) => {
                        tx.recipients.push(to);
                        "250 2.1.5 Ok".to_owned()
                    }
                    Err(reply) => {
                        errors += 1;
                        reply
                    }
                },
                "DATA" if tx.from.is_none() => {
                    errors += 1;
                    "503 5.5.1 Error: need MAIL command".to_owned()
                }
                "DATA" if tx.recipients.is_empty() => {
                    errors += 1;
                    "554 5.5.1 Error: no valid recipients".to_owned()
                }
                "DATA" => {
                    let taken = std::mem::take(&mut tx);
                    match self.data(reader, out, deadline, taken).await {
                        Ok(reply) => reply,
                        Err(end) => return end,
                    }
                }
                "RSET" => {
                    tx = Transaction::default();
                    "250 2.0.0 Ok".to_owned()
                }
                "NOOP" => "250 2.0.0 Ok".to_owned(),
                "QUIT" => {
                    self.reply("221 2.0.0 Bye");
                    return End::Done;
                }
                // RFC 5321 3.5.3: neither confirmed nor denied.
                "VRFY" => "252 2.5.2 Cannot VRFY user; send mail and it will be tried".to_owned(),
                "" => {
                    errors += 1;
                    "500 5.5.2 Error: bad syntax".to_owned()
                }
                _ => {
                    errors += 1;
                    "502 5.5.1 Error: command not recognized".to_owned()
                }
            };
            self.reply(&reply);
        }
    }

    /// MAIL FROM:<path> [parameters]: the reverse path, or the reply.
    fn mail(&self, arg: &str, helo: bool, tx: &Transaction) -> Result<String, String> {
        if !helo {
            return Err("503 5.5.1 Error: send HELO/EHLO first".to_owned());
        }
        if tx.from.is_some() {
            return Err("503 5.5.1 Error: nested MAIL command".to_owned());
        }
        let Some((from, params)) = path_after(arg, "FROM:") else {
            return Err("501 5.5.4 Syntax: MAIL FROM:<address>".to_owned());
        };
        for param in params.split_whitespace() {
            let (key, value) = param.split_once('=').unwrap_or((param, ""));
            // RFC 1870: a declared size over the cap is refused at once.
            if key.eq_ignore_ascii_case("SIZE") {
                match value.parse::<u64>() {
                    Ok(size) if size > self.limits.max_message_bytes as u64 => {
                        return Err("552 5.3.4 Message size exceeds fixed limit".to_owned());
                    }
                    Ok(_) => {}
                    Err(_) => return Err("501 5.5.4 Bad SIZE parameter".to_owned()),
                }
            }
        }
        Ok(from)
    }

    /// RCPT TO:<path>: the recipient, or the reply.
    fn rcpt(&self, arg: &str, tx: &Transaction) -> Result<String, String> {
        if tx.from.is_none() {
            return Err("503 5.5.1 Error: need MAIL command".to_owned());
        }
        let Some((to, _params)) = path_after(arg, "TO:") else {
            return Err("501 5.5.4 Syntax: RCPT TO:<address>".to_owned());
        };
        if tx.recipients.len() >= self.limits.max_recipients {
            return Err("452 4.5.3 Error: too many recipients".to_owned());
        }
        let refused = |reply: &str| {
            Counters::add(&self.counters.recipients_refused);
            tracing::info!(peer = %self.peer, to = %to, "bounce listener: recipient refused: {reply}");
            Err(reply.to_owned())
        };
        match self.take.recipient(&to) {
            Recipient::Tagged(_) | Recipient::Plain => Ok(to),
            Recipient::Unknown => refused("550 5.1.1 Recipient address rejected: no such user"),
            // Never a relay (RFC 5321 3.6.2 and 7.1).
            Recipient::Elsewhere => {
                refused("554 5.7.1 Recipient address rejected: relay access denied")
            }
        }
    }

    /// After DATA: reads the message to the final dot, hands it over, and
    /// says what became of it.
    async fn data<R, W>(
        &mut self,
        reader: &mut BufReader<R>,
        out: &mut W,
        deadline: Instant,
        tx: Transaction,
    ) -> Result<String, End>
    where
        R: AsyncRead + Unpin,
        W: AsyncWrite + Unpin,
    {
        self.reply("354 End data with <CR><LF>.<CR><LF>");
        let cap = self.limits.max_message_bytes;
        let mut message = Vec::new();
        let mut too_big = false;
        let mut piece = Vec::with_capacity(DATA_PIECE);
        // At the start of a line: the previous one ended with CRLF.
        let mut line_start = true;
        loop {
            let ended = match self.read_piece(reader, out, &mut piece, DATA_PIECE, deadline).await?
            {
                Read::Piece { ended } => ended,
                Read::Closed => return Err(End::Done),
            };
            // RFC 5321 4.1.1.4: the data ends with <CRLF>.<CRLF>.
            if line_start && piece == b".\r\n" {
                break;
            }
            // RFC 5321 4.5.2: a line that starts with a period had one
            // added by the sender.
            let bytes =
                if line_start && piece.first() == Some(&b'.') { &piece[1..] } else { &piece[..] };
            if !too_big {
                if message.len() + bytes.len() > cap {
                    // Read on to the end of the data, keeping nothing.
                    too_big = true;
                    message = Vec::new();
                } else {
                    message.extend_from_slice(bytes);
                }
            }
            line_start = ended && piece.ends_with(b"\r\n");
        }

        let from = tx.from.unwrap_or_default();
        let from = if from.is_empty() { "<>" } else { from.as_str() };
        if too_big {
            Counters::add(&self.counters.refused);
            tracing::info!(peer = %self.peer, from, max = cap, "bounce listener: a message over bounces.max_message_kb refused");
            return Ok("552 5.3.4 Message size exceeds fixed limit".to_owned());
        }
        let taken = tokio::time::timeout(self.limits.timeout, async {
            let _turn = self.writes.lock().await;
            let now = (self.clock)();
            self.take.take(&message, &tx.recipients, now).await
        })
        .await;
        Ok(match taken {
            Ok(Ok(outcome)) => {
                Counters::add(&self.counters.accepted);
                let done = summary(&outcome);
                tracing::info!(
                    peer = %self.peer,
                    from,
                    to = %tx.recipients.join(", "),
                    bytes = message.len(),
                    "bounce listener: message taken: {done}"
                );
                format!("250 2.0.0 Ok: {done}")
            }
            Ok(Err(e)) => {
                Counters::add(&self.counters.deferred);
                tracing::error!(peer = %self.peer, from, bytes = message.len(), "bounce listener: the store cannot take a message; answered 451 so the sender tries again: {e}");
                "451 4.3.0 Error: cannot store the message now; try again later".to_owned()
            }
            Err(_) => {
                Counters::add(&self.counters.deferred);
                tracing::error!(peer = %self.peer, from, bytes = message.len(), "bounce listener: the store took longer than bounces.timeout_secs; answered 451 so the sender tries again");
                "451 4.3.0 Error: the store is slow; try again later".to_owned()
            }
        })
    }

    /// Reads one command line into `line`. `Ok(Some(too_long))`, or
    /// `Ok(None)` when the client closed the connection. A line over
    /// [`MAX_COMMAND_LINE`] is read to its end and dropped.
    async fn read_command<R: AsyncRead + Unpin, W: AsyncWrite + Unpin>(
        &mut self,
        reader: &mut BufReader<R>,
        out: &mut W,
        line: &mut Vec<u8>,
        deadline: Instant,
    ) -> Result<Option<bool>, End> {
        match self.read_piece(reader, out, line, MAX_COMMAND_LINE, deadline).await? {
            Read::Closed => Ok(None),
            Read::Piece { ended: true } => Ok(Some(false)),
            Read::Piece { ended: false } => {
                let mut rest = Vec::with_capacity(MAX_COMMAND_LINE);
                loop {
                    match self
                        .read_piece(reader, out, &mut rest, MAX_COMMAND_LINE, deadline)
                        .await?
                    {
                        Read::Closed => return Ok(None),
                        Read::Piece { ended: true } => return Ok(Some(true)),
                        Read::Piece { ended: false } => {}
                    }
                }
            }
        }
    }

    /// Reads into `buf` up to and including the next LF, or `cap` bytes,
    /// whichever comes first; within the read timeout and the session's
    /// deadline, and only until the listener stops. Before waiting for
    /// input, the replies so far go out.
    async fn read_piece<R: AsyncRead + Unpin, W: AsyncWrite + Unpin>(
        &mut self,
        reader: &mut BufReader<R>,
        out: &mut W,
        buf: &mut Vec<u8>,
        cap: usize,
        deadline: Instant,
    ) -> Result<Read, End> {
        buf.clear();
        let until = deadline.min(Instant::now() + self.limits.timeout);
        let pending = &mut self.pending;
        let read = async {
            loop {
                if reader.buffer().is_empty() && !pending.is_empty() {
                    out.write_all(pending).await?;
                    out.flush().await?;
                    pending.clear();
                }
                let available = reader.fill_buf().await?;
                if available.is_empty() {
                    return Ok::<_, std::io::Error>(Read::Closed);
                }
                let room = cap - buf.len();
                let (n, ended) = match available.iter().take(room).position(|&b| b == b'\n') {
                    Some(at) => (at + 1, true),
                    None => (available.len().min(room), false),
                };
                buf.extend_from_slice(&available[..n]);
                reader.consume(n);
                if ended || buf.len() >= cap {
                    return Ok(Read::Piece { ended });
                }
            }
        };
        let stop = self.stop.wait_for(|stopping| *stopping);
        tokio::select! {
            read = tokio::time::timeout_at(until, read) => match read {
                Ok(Ok(piece)) => Ok(piece),
                Ok(Err(_)) => Err(End::Broken),
                Err(_) => Err(End::TimedOut),
            },
            _ = stop => Err(End::Stopping),
        }
    }

    /// Queues one reply (its lines joined with CRLF); it goes out before
    /// the session next waits for input, or when it ends.
    fn reply(&mut self, text: &str) {
        self.pending.extend_from_slice(text.as_bytes());
        self.pending.extend_from_slice(b"\r\n");
    }

    /// Writes the queued replies, within the timeout.
    async fn flush<W: AsyncWrite + Unpin>(&mut self, out: &mut W) -> Result<(), ()> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let pending = std::mem::take(&mut self.pending);
        match tokio::time::timeout(self.limits.timeout, async {
            out.write_all(&pending).await?;
            out.flush().await
        })
        .await
        {
            Ok(Ok(())) => Ok(()),
            _ => Err(()),
        }
    }
}

/// What became of a message, for the 250 reply and the log.
fn summary(outcome: &Outcome) -> String {
    let shape = match outcome.shape {
        super::Shape::Dsn => "delivery report",
        super::Shape::Arf => "feedback report",
        super::Shape::Plain => "plain bounce",
        super::Shape::AutoReply => "auto-reply",
        super::Shape::NotABounce => "not a report, nothing to do",
    };
    if outcome.taken.is_empty() {
        return shape.to_owned();
    }
    let actions: Vec<&str> = outcome.taken.iter().map(|t| t.action.as_str()).collect();
    format!("{shape}: {}", actions.join(", "))
}

fn trim_crlf(line: &[u8]) -> &[u8] {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    line.strip_suffix(b"\r").unwrap_or(line)
}

/// The path after `keyword` (`FROM:` or `TO:`, in any case, with or
/// without a space before the path) and the parameters after it. The
/// angle brackets are taken off, and a source route (`<@a,@b:user@d>`,
/// RFC 5321 4.1.2) is dropped.
fn path_after<'a>(arg: &'a str, keyword: &str) -> Option<(String, &'a str)> {
    let head = arg.get(..keyword.len())?;
    if !head.eq_ignore_ascii_case(keyword) {
        return None;
    }
    let rest = arg[keyword.len()..].trim_start();
    let (path, params) = if let Some(inner) = rest.strip_prefix('<') {
        let close = inner.find('>')?;
        (&inner[..close], &inner[close + 1..])
    } else {
        rest.split_once(' ').unwrap_or((rest, ""))
    };
    let path = match path.strip_prefix('@') {
        Some(routed) => routed.split_once(':').map(|(_, addr)| addr)?,
        None => path,
    };
    if path.chars().any(|c| c.is_whitespace() || c.is_control()) || path.len() > 320 {
        return None;
    }
    Some((path.to_owned(), params.trim()))
}

#[cfg(test)]
mod tests;
