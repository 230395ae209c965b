//! A fault-injecting SMTP server for the tests: it answers from a script
//! chosen by the recipient's local part, so one run can exercise every
//! failure branch at once. The script is the local part up to its first
//! `-`; with `-once` in it (`rcpt451-once@…`) the fault hits that address's
//! first transaction only, and later ones go through.
//!
//! | recipient        | the server                                            |
//! |------------------|-------------------------------------------------------|
//! | `rcpt450@…`      | 450 4.2.1 on RCPT                                     |
//! | `rcpt451@…`      | 451 4.3.0 on RCPT                                     |
//! | `rcpt452@…`      | 452 4.2.2 on RCPT                                     |
//! | `rcpt454@…`      | 454 4.7.1 on RCPT                                     |
//! | `rcpt550@…`      | 550 5.1.1 user unknown on RCPT                        |
//! | `rcpt421@…`      | 421 4.3.2 on RCPT, and closes the connection          |
//! | `datacmd451@…`   | 451 4.3.0 on the DATA command                         |
//! | `datacmd554@…`   | 554 5.7.1 on the DATA command                         |
//! | `data451@…`      | 451 4.3.0 after the message (at the end of DATA)      |
//! | `data550@…`      | 550 5.7.1 after the message                           |
//! | `data552@…`      | 552 5.3.4 after the message                           |
//! | `drop@…`         | closes the connection after the message, before a reply |
//! | `slow@…`         | replies after `slow` (past the client's timeout)      |
//! | anything else    | 250, and keeps the message                            |
//!
//! The server keeps the transaction's state as a real one does: RCPT needs
//! MAIL, DATA needs an accepted recipient (else 554 5.5.1, or with
//! `Options::data_without_recipients` a 354 and then the refusal after the
//! empty data), RSET and the end of the data start over. EHLO offers
//! PIPELINING unless `Options::pipelining` is off. Every command is logged
//! with the bytes that had already arrived behind it ([`Heard`]), which shows
//! whether the client waited for each reply or sent a group in one write.
//!
//! The first `refuse_first` connections are greeted with 421 and closed.
//! A message is kept only once its DATA has ended, before the 250 goes out:
//! when herald has recorded a message as sent, the server has it.

use std::collections::HashSet;
use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// How the server behaves beyond its per-recipient script.
#[derive(Clone, Debug)]
pub struct Options {
    /// Greet the first this many connections with 421 and close them.
    pub refuse_first: usize,
    /// How long to wait before that 421.
    pub refuse_after: Duration,
    /// How long `slow@…` waits before its reply.
    pub slow: Duration,
    /// EHLO offers PIPELINING.
    pub pipelining: bool,
    /// DATA gets 354 even when no recipient was accepted (as RFC 2920
    /// section 3.1 allows); the empty data is then refused.
    pub data_without_recipients: bool,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            refuse_first: 0,
            refuse_after: Duration::ZERO,
            slow: Duration::ZERO,
            pipelining: true,
            data_without_recipients: false,
        }
    }
}

/// One command as the server read it.
#[derive(Clone, Debug)]
pub struct Heard {
    /// The command line, without its CRLF.
    pub command: String,
    /// What the client had already sent behind it when the server read it,
    /// before any reply to it went out.
    pub early: String,
}

pub struct FaultySmtp {
    pub addr: SocketAddr,
    /// (recipient, message) of every message accepted with 250.
    pub accepted: Arc<Mutex<Vec<(String, String)>>>,
    pub connections: Arc<AtomicUsize>,
    /// Every command read, in order, over all connections.
    pub heard: Arc<Mutex<Vec<Heard>>>,
    stop: Arc<AtomicBool>,
}

/// What the connections share.
struct Shared {
    options: Options,
    accepted: Arc<Mutex<Vec<(String, String)>>>,
    heard: Arc<Mutex<Vec<Heard>>>,
    /// Recipients whose `-once` fault has hit.
    spent: Mutex<HashSet<String>>,
}

impl Shared {
    /// The script of `rcpt` if it still applies: its local part up to the
    /// first `-`, unless it is a `-once` fault that has already hit.
    /// Asking spends a `-once` fault, so ask only where it hits.
    fn script(&self, rcpt: &str, scripts: &[&str]) -> Option<String> {
        let local = rcpt.split('@').next().unwrap_or("");
        let mut words = local.split('-');
        let script = words.next().unwrap_or("");
        if !scripts.contains(&script) {
            return None;
        }
        if words.any(|w| w == "once") && !self.spent.lock().unwrap().insert(rcpt.to_owned()) {
            return None;
        }
        Some(script.to_owned())
    }
}

impl FaultySmtp {
    pub fn start(refuse_first: usize, slow: Duration) -> Self {
        Self::with(Options { refuse_first, slow, ..Options::default() })
    }

    /// A server that greets every connection with 421 after `delay`: a relay
    /// that is down, and slow to say so.
    pub fn refusing_after(delay: Duration) -> Self {
        Self::with(Options { refuse_first: usize::MAX, refuse_after: delay, ..Options::default() })
    }

    pub fn with(options: Options) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind loopback");
        let addr = listener.local_addr().unwrap();
        listener.set_nonblocking(true).unwrap();
        let accepted = Arc::new(Mutex::new(Vec::new()));
        let heard = Arc::new(Mutex::new(Vec::new()));
        let connections = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let refuse_first = options.refuse_first;
        let shared = Arc::new(Shared {
            options,
            accepted: accepted.clone(),
            heard: heard.clone(),
            spent: Mutex::new(HashSet::new()),
        });
        let (conns, halt) = (connections.clone(), stop.clone());
        std::thread::spawn(move || {
            while !halt.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((stream, _)) => {
                        let n = conns.fetch_add(1, Ordering::SeqCst);
                        let shared = shared.clone();
                        std::thread::spawn(move || {
                            let _ = serve(stream, n < refuse_first, &shared);
                        });
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        Self { addr, accepted, connections, heard, stop }
    }

    pub fn url(&self) -> String {
        format!("smtp://{}", self.addr)
    }

    /// How many messages the server accepted so far.
    pub fn count(&self) -> usize {
        self.accepted.lock().unwrap().len()
    }

    /// The accepted messages, waiting up to 10 s until there are `n`.
    pub fn messages(&self, n: usize) -> Vec<super::Mail> {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while self.count() < n && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        let accepted = self.accepted.lock().unwrap();
        accepted.iter().map(|(_, m)| super::Mail { raw: m.clone().into_bytes() }).collect()
    }

    pub fn accepted_for(&self, local: &str) -> usize {
        self.accepted
            .lock()
            .unwrap()
            .iter()
            .filter(|(r, _)| r.starts_with(&format!("{local}@")))
            .count()
    }

    /// The commands read so far.
    pub fn heard(&self) -> Vec<Heard> {
        self.heard.lock().unwrap().clone()
    }
}

impl Drop for FaultySmtp {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// The bytes the client has sent that the server has not read yet: those in
/// the reader's buffer and those waiting in the socket.
fn early(reader: &BufReader<TcpStream>) -> String {
    let mut early = String::from_utf8_lossy(reader.buffer()).into_owned();
    let socket = reader.get_ref();
    let mut waiting = [0u8; 8192];
    if socket.set_nonblocking(true).is_ok() {
        if let Ok(n) = socket.peek(&mut waiting) {
            early.push_str(&String::from_utf8_lossy(&waiting[..n]));
        }
        let _ = socket.set_nonblocking(false);
    }
    early
}

/// Reads the data phase up to the lone "."; `None` when the client hung up.
fn read_data(reader: &mut BufReader<TcpStream>) -> std::io::Result<Option<String>> {
    let mut message = String::new();
    let mut line = String::new();
    loop {
        line.clear();
        if reader.read_line(&mut line)? == 0 {
            return Ok(None);
        }
        if line == ".\r\n" || line == ".\n" {
            return Ok(Some(message));
        }
        message.push_str(&line);
    }
}

fn serve(stream: TcpStream, refuse: bool, shared: &Shared) -> std::io::Result<()> {
    let options = &shared.options;
    stream.set_nonblocking(false)?;
    let mut out = stream.try_clone()?;
    if refuse {
        std::thread::sleep(options.refuse_after);
        out.write_all(b"421 4.3.2 faulty.test busy, try again later\r\n")?;
        return Ok(());
    }
    out.write_all(b"220 faulty.test ESMTP\r\n")?;
    let mut reader = BufReader::new(stream);
    // The transaction: MAIL seen, and the recipients accepted.
    let mut mail = false;
    let mut recipients: Vec<String> = Vec::new();
    let mut line = String::new();
    loop {
        line.clear();
        if reader.read_line(&mut line)? == 0 {
            return Ok(());
        }
        shared
            .heard
            .lock()
            .unwrap()
            .push(Heard { command: line.trim_end().to_owned(), early: early(&reader) });
        let upper = line.to_ascii_uppercase();
        if upper.starts_with("EHLO") {
            (mail, recipients) = (false, Vec::new());
            let extensions: &[u8] = if options.pipelining {
                b"250-faulty.test\r\n250-8BITMIME\r\n250-SMTPUTF8\r\n250 PIPELINING\r\n"
            } else {
                b"250-faulty.test\r\n250-8BITMIME\r\n250 SMTPUTF8\r\n"
            };
            out.write_all(extensions)?;
        } else if upper.starts_with("HELO") || upper.starts_with("RSET") {
            (mail, recipients) = (false, Vec::new());
            out.write_all(b"250 2.0.0 ok\r\n")?;
        } else if upper.starts_with("NOOP") {
            out.write_all(b"250 2.0.0 ok\r\n")?;
        } else if upper.starts_with("MAIL FROM") {
            if mail {
                out.write_all(b"503 5.5.1 nested MAIL command\r\n")?;
            } else if upper.contains("<MAIL553@") {
                // A sender this server will not take, whoever the reader.
                out.write_all(b"553 5.1.8 sender address rejected: domain not found\r\n")?;
            } else {
                mail = true;
                out.write_all(b"250 2.1.0 ok\r\n")?;
            }
        } else if upper.starts_with("RCPT TO") {
            if !mail {
                out.write_all(b"503 5.5.1 need MAIL before RCPT\r\n")?;
                continue;
            }
            let rcpt = line.split(['<', '>']).nth(1).unwrap_or("").to_string();
            let scripts = ["rcpt450", "rcpt451", "rcpt452", "rcpt454", "rcpt550", "rcpt421"];
            let reply: &[u8] = match shared.script(&rcpt, &scripts).as_deref() {
                Some("rcpt421") => {
                    out.write_all(b"421 4.3.2 shutting down\r\n")?;
                    return Ok(());
                }
                Some("rcpt450") => b"450 4.2.1 mailbox busy, try later\r\n",
                Some("rcpt451") => b"451 4.3.0 temporary failure, try again\r\n",
                Some("rcpt452") => b"452 4.2.2 mailbox full\r\n",
                Some("rcpt454") => b"454 4.7.1 relaying temporarily refused\r\n",
                Some(_) => b"550 5.1.1 user unknown\r\n",
                None => {
                    recipients.push(rcpt);
                    b"250 2.1.5 ok\r\n"
                }
            };
            out.write_all(reply)?;
        } else if upper.starts_with("DATA") {
            if !mail {
                out.write_all(b"503 5.5.1 need MAIL before DATA\r\n")?;
                continue;
            }
            let Some(rcpt) = recipients.first().cloned() else {
                if options.data_without_recipients {
                    out.write_all(b"354 go ahead\r\n")?;
                    if read_data(&mut reader)?.is_none() {
                        return Ok(());
                    }
                    (mail, recipients) = (false, Vec::new());
                }
                out.write_all(b"554 5.5.1 no valid recipients\r\n")?;
                continue;
            };
            match shared.script(&rcpt, &["datacmd451", "datacmd554"]).as_deref() {
                Some("datacmd451") => {
                    out.write_all(b"451 4.3.0 cannot take data now, try again\r\n")?;
                    continue;
                }
                Some(_) => {
                    out.write_all(b"554 5.7.1 transaction refused\r\n")?;
                    continue;
                }
                None => {}
            }
            out.write_all(b"354 go ahead\r\n")?;
            let Some(message) = read_data(&mut reader)? else { return Ok(()) };
            mail = false;
            let recipients = std::mem::take(&mut recipients);
            let scripts = ["data451", "data550", "data552", "drop", "slow"];
            match shared.script(&rcpt, &scripts).as_deref() {
                Some("data451") => out.write_all(b"451 4.3.0 local error, try again\r\n")?,
                Some("data550") => out.write_all(b"550 5.7.1 message refused\r\n")?,
                Some("data552") => out.write_all(b"552 5.3.4 message too big\r\n")?,
                Some("drop") => return Ok(()),
                Some(_) => {
                    std::thread::sleep(options.slow);
                    out.write_all(b"250 2.0.0 queued (late)\r\n")?;
                }
                None => {
                    let mut accepted = shared.accepted.lock().unwrap();
                    accepted.extend(recipients.into_iter().map(|r| (r, message.clone())));
                    out.write_all(b"250 2.0.0 queued\r\n")?;
                }
            }
        } else if upper.starts_with("QUIT") {
            out.write_all(b"221 2.0.0 bye\r\n")?;
            return Ok(());
        } else {
            out.write_all(b"502 5.5.2 command not recognised\r\n")?;
        }
    }
}
