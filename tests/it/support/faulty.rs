//! A fault-injecting SMTP server for the tests: it answers from a script
//! chosen by the recipient's local part, so one run can exercise every
//! failure branch at once.
//!
//! | recipient        | the server                                       |
//! |------------------|--------------------------------------------------|
//! | `rcpt450@…`      | 450 4.2.1 on RCPT                                |
//! | `rcpt451@…`      | 451 4.3.0 on RCPT                                |
//! | `rcpt452@…`      | 452 4.2.2 on RCPT                                |
//! | `rcpt454@…`      | 454 4.7.1 on RCPT                                |
//! | `rcpt550@…`      | 550 5.1.1 user unknown on RCPT                   |
//! | `data550@…`      | 550 5.7.1 after DATA                             |
//! | `data552@…`      | 552 5.3.4 after DATA                             |
//! | `drop@…`         | closes the connection after DATA, before a reply |
//! | `slow@…`         | replies after `slow` (past the client's timeout) |
//! | anything else    | 250, and keeps the message                       |
//!
//! The first `refuse_first` connections are greeted with 421 and closed.
//! A message is kept only once its DATA has ended, before the 250 goes out:
//! when herald has recorded a message as sent, the server has it.

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

pub struct FaultySmtp {
    pub addr: SocketAddr,
    /// (recipient, message) of every message accepted with 250.
    pub accepted: Arc<Mutex<Vec<(String, String)>>>,
    pub connections: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
}

impl FaultySmtp {
    pub fn start(refuse_first: usize, slow: Duration) -> Self {
        Self::start_with(refuse_first, Duration::ZERO, slow)
    }

    /// A server that greets every connection with 421 after `delay`: a relay
    /// that is down, and slow to say so.
    pub fn refusing_after(delay: Duration) -> Self {
        Self::start_with(usize::MAX, delay, Duration::ZERO)
    }

    fn start_with(refuse_first: usize, refuse_after: Duration, slow: Duration) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind loopback");
        let addr = listener.local_addr().unwrap();
        listener.set_nonblocking(true).unwrap();
        let accepted = Arc::new(Mutex::new(Vec::new()));
        let connections = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (acc, conns, halt) = (accepted.clone(), connections.clone(), stop.clone());
        std::thread::spawn(move || {
            while !halt.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((stream, _)) => {
                        let n = conns.fetch_add(1, Ordering::SeqCst);
                        let acc = acc.clone();
                        std::thread::spawn(move || {
                            let refuse = (n < refuse_first).then_some(refuse_after);
                            let _ = serve(stream, refuse, slow, &acc);
                        });
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        Self { addr, accepted, connections, stop }
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
}

impl Drop for FaultySmtp {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

fn serve(
    stream: TcpStream,
    refuse: Option<Duration>,
    slow: Duration,
    accepted: &Mutex<Vec<(String, String)>>,
) -> std::io::Result<()> {
    stream.set_nonblocking(false)?;
    let mut out = stream.try_clone()?;
    if let Some(after) = refuse {
        std::thread::sleep(after);
        out.write_all(b"421 4.3.2 faulty.test busy, try again later\r\n")?;
        return Ok(());
    }
    out.write_all(b"220 faulty.test ESMTP\r\n")?;
    let mut reader = BufReader::new(stream);
    let mut rcpt = String::new();
    let mut line = String::new();
    loop {
        line.clear();
        if reader.read_line(&mut line)? == 0 {
            return Ok(());
        }
        let upper = line.to_ascii_uppercase();
        if upper.starts_with("EHLO") {
            out.write_all(
                b"250-faulty.test\r\n250-8BITMIME\r\n250-SMTPUTF8\r\n250 PIPELINING\r\n",
            )?;
        } else if upper.starts_with("HELO")
            || upper.starts_with("NOOP")
            || upper.starts_with("RSET")
        {
            out.write_all(b"250 2.0.0 ok\r\n")?;
        } else if upper.starts_with("MAIL FROM") {
            out.write_all(b"250 2.1.0 ok\r\n")?;
        } else if upper.starts_with("RCPT TO") {
            rcpt = line.split(['<', '>']).nth(1).unwrap_or("").to_string();
            let local = rcpt.split('@').next().unwrap_or("");
            let reply: &[u8] = match local {
                "rcpt450" => b"450 4.2.1 mailbox busy, try later\r\n",
                "rcpt451" => b"451 4.3.0 temporary failure, try again\r\n",
                "rcpt452" => b"452 4.2.2 mailbox full\r\n",
                "rcpt454" => b"454 4.7.1 relaying temporarily refused\r\n",
                "rcpt550" => b"550 5.1.1 user unknown\r\n",
                _ => b"250 2.1.5 ok\r\n",
            };
            out.write_all(reply)?;
        } else if upper.starts_with("DATA") {
            out.write_all(b"354 go ahead\r\n")?;
            let mut message = String::new();
            loop {
                line.clear();
                if reader.read_line(&mut line)? == 0 {
                    return Ok(());
                }
                if line == ".\r\n" || line == ".\n" {
                    break;
                }
                message.push_str(&line);
            }
            let local = rcpt.split('@').next().unwrap_or("").to_string();
            match local.as_str() {
                "data550" => out.write_all(b"550 5.7.1 message refused\r\n")?,
                "data552" => out.write_all(b"552 5.3.4 message too big\r\n")?,
                "drop" => return Ok(()),
                "slow" => {
                    std::thread::sleep(slow);
                    out.write_all(b"250 2.0.0 queued (late)\r\n")?;
                }
                _ => {
                    accepted.lock().unwrap().push((rcpt.clone(), message));
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
