//! The IMAP conversation itself (RFC 3501), for the few commands the bounce
//! mailbox needs: tagged commands, untagged data, continuations, quoted
//! strings and literals (`{n}` then n bytes). Every byte the server sends is
//! hostile input: each line and each literal has a cap, the untagged data
//! gathered for one command has a cap, every read has a deadline, and
//! nothing here panics on what it reads. Nothing is logged of what herald
//! sends, so a password never reaches a log.

use std::time::Duration;

use tokio::io::{
    AsyncBufRead, AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader,
};

/// What went wrong in the conversation.
#[derive(Debug, thiserror::Error)]
pub enum WireError {
    #[error("reading from the server failed: {0}")]
    Io(#[from] std::io::Error),
    #[error("the server closed the connection{}", .0.as_deref().map(|b| format!(" ({b})")).unwrap_or_default())]
    Closed(Option<String>),
    #[error("no answer from the server within {0}s")]
    Timeout(u64),
    #[error("the server sent {what} longer than the {limit} bytes herald takes")]
    TooLong { what: &'static str, limit: usize },
    #[error("the server sent something that is not IMAP: `{0}`")]
    Garbage(String),
    #[error("the server answered {status} to {command}: {text}")]
    Refused { command: String, status: &'static str, text: String },
}

/// The caps on what the server sends.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// One line of text (between literals).
    pub line: usize,
    /// One literal: the largest message herald fetches, and some room.
    pub literal: usize,
    /// Everything the server sends in answer to one command.
    pub response: usize,
    /// Waiting for the server's next response.
    pub timeout: Duration,
}

/// One piece of a response: the text of a line, or a literal's bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Part {
    Text(Vec<u8>),
    Literal(Vec<u8>),
}

/// One response from the server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Response {
    /// `TAG OK|NO|BAD text`.
    Tagged { tag: String, status: &'static str, text: String },
    /// `* ...`, without the `* `.
    Untagged(Vec<Part>),
    /// `+ text`, the server's go-ahead for a literal.
    Continue,
}

/// One value of the server's data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    /// An atom or number (`UID`, `BODY[]`, `42`, `\Seen`).
    Atom(Vec<u8>),
    /// A quoted string or a literal.
    Str(Vec<u8>),
    List(Vec<Value>),
    Nil,
}

impl Value {
    pub fn atom_is(&self, name: &str) -> bool {
        matches!(self, Value::Atom(a) if a.eq_ignore_ascii_case(name.as_bytes()))
    }

    pub fn number(&self) -> Option<u64> {
        match self {
            Value::Atom(a)
                if !a.is_empty() && a.len() <= 19 && a.iter().all(u8::is_ascii_digit) =>
            {
                std::str::from_utf8(a).ok()?.parse().ok()
            }
            _ => None,
        }
    }

    /// An atom's or a string's bytes.
    pub fn bytes(&self) -> Option<&[u8]> {
        match self {
            Value::Atom(b) | Value::Str(b) => Some(b),
            _ => None,
        }
    }
}

/// `bytes` for an error message: printable, at most 80 characters.
pub fn shown(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(bytes);
    let mut shown: String = text.chars().take(80).flat_map(char::escape_default).collect();
    if text.chars().count() > 80 {
        shown.push('…');
    }
    shown
}

/// An argument of a command: text herald wrote (a command name, a UID
/// set, a mailbox name checked at config time), or a string from outside
/// (the user, the password), sent as a quoted string or, when it cannot
/// be one, as a literal.
pub enum Arg<'a> {
    Raw(&'a str),
    Str(&'a [u8]),
}

/// One connection: a stream, the tags, the caps.
pub struct Conn<S> {
    io: BufReader<S>,
    next_tag: u32,
    limits: Limits,
}

impl<S: AsyncRead + AsyncWrite + Unpin> Conn<S> {
    pub fn new(stream: S, limits: Limits) -> Self {
        Self { io: BufReader::new(stream), next_tag: 1, limits }
    }

    /// The stream back, for STARTTLS. None when the server sent more after
    /// its answer: bytes that came in clear must not pass for bytes that
    /// came inside TLS (the STARTTLS injection of CVE-2011-0411).
    pub fn into_stream(self) -> Option<S> {
        self.io.buffer().is_empty().then(|| self.io.into_inner())
    }

    /// The server's greeting: `* OK`, or `* PREAUTH` (true); `* BYE` and
    /// anything else are errors.
    pub async fn greeting(&mut self) -> Result<bool, WireError> {
        match self.read().await? {
            Response::Untagged(parts) => {
                let first = first_text(&parts);
                let word = first.split(|&b| b == b' ').next().unwrap_or(b"");
                if word.eq_ignore_ascii_case(b"OK") {
                    Ok(false)
                } else if word.eq_ignore_ascii_case(b"PREAUTH") {
                    Ok(true)
                } else if word.eq_ignore_ascii_case(b"BYE") {
                    Err(WireError::Closed(Some(shown(first))))
                } else {
                    Err(WireError::Garbage(shown(first)))
                }
            }
            Response::Tagged { tag, text, .. } => Err(WireError::Garbage(format!("{tag} {text}"))),
            Response::Continue => Err(WireError::Garbage("+".into())),
        }
    }

    /// Sends one command and reads until its tagged answer; returns the
    /// untagged data that came with it. NO and BAD are errors naming
    /// `name` (the command without its arguments, so no password shows).
    pub async fn command(
        &mut self,
        name: &str,
        args: &[Arg<'_>],
    ) -> Result<Vec<Vec<Part>>, WireError> {
        // Each read has its deadline; the whole exchange has one too, so a
        // server that trickles small answers cannot hold a poll forever.
        let deadline = self.limits.timeout * 2;
        match tokio::time::timeout(deadline, self.exchange(name, args)).await {
            Ok(result) => result,
            Err(_) => Err(WireError::Timeout(deadline.as_secs())),
        }
    }

    async fn exchange(
        &mut self,
        name: &str,
        args: &[Arg<'_>],
    ) -> Result<Vec<Vec<Part>>, WireError> {
        let tag = format!("h{}", self.next_tag);
        self.next_tag += 1;
        let mut line = format!("{tag} {name}").into_bytes();
        let mut data = Vec::new();
        let mut total = 0usize;
        for arg in args {
            line.push(b' ');
            match arg {
                Arg::Raw(text) => line.extend_from_slice(text.as_bytes()),
                Arg::Str(bytes) if quotable(bytes) => {
                    line.push(b'"');
                    for &b in *bytes {
                        if b == b'"' || b == b'\\' {
                            line.push(b'\\');
                        }
                        line.push(b);
                    }
                    line.push(b'"');
                }
                Arg::Str(bytes) => {
                    // A synchronising literal: the server says go ahead
                    // before the bytes are sent (RFC 3501 7.5).
                    line.extend_from_slice(format!("{{{}}}\r\n", bytes.len()).as_bytes());
                    self.send(&line).await?;
                    line.clear();
                    loop {
                        match self.read().await? {
                            Response::Continue => break,
                            Response::Untagged(parts) => {
                                total += keep(&mut data, parts, self.limits.response, total)?
                            }
                            Response::Tagged { status, text, .. } => {
                                return Err(WireError::Refused {
                                    command: name.to_owned(),
                                    status,
                                    text,
                                })
                            }
                        }
                    }
                    line.extend_from_slice(bytes);
                }
            }
        }
        line.extend_from_slice(b"\r\n");
        self.send(&line).await?;
        loop {
            match self.read().await? {
                Response::Untagged(parts) => {
                    total += keep(&mut data, parts, self.limits.response, total)?;
                }
                Response::Tagged { tag: t, status, text } if t == tag => {
                    return match status {
                        "OK" => Ok(data),
                        _ => Err(WireError::Refused { command: name.to_owned(), status, text }),
                    };
                }
                Response::Tagged { tag: t, status, text } => {
                    return Err(WireError::Garbage(format!("{t} {status} {text}")))
                }
                Response::Continue => {
                    return Err(WireError::Garbage("+ (a go-ahead nothing asked for)".into()))
                }
            }
        }
    }

    async fn send(&mut self, bytes: &[u8]) -> Result<(), WireError> {
        let timeout = self.limits.timeout;
        let stream = self.io.get_mut();
        let write = async {
            stream.write_all(bytes).await?;
            stream.flush().await
        };
        match tokio::time::timeout(timeout, write).await {
            Ok(result) => Ok(result?),
            Err(_) => Err(WireError::Timeout(timeout.as_secs())),
        }
    }

    /// Reads one whole response, literals and all, within the deadline.
    pub async fn read(&mut self) -> Result<Response, WireError> {
        let timeout = self.limits.timeout;
        match tokio::time::timeout(timeout, read_response(&mut self.io, self.limits)).await {
            Ok(result) => result,
            Err(_) => Err(WireError::Timeout(timeout.as_secs())),
        }
    }
}

/// Whether `bytes` can go in a quoted string: 7-bit, no CR, LF or NUL.
fn quotable(bytes: &[u8]) -> bool {
    bytes.len() <= 1000
        && bytes.iter().all(|&b| (0x01..0x80).contains(&b) && b != b'\r' && b != b'\n')
}

/// Keeps one untagged response, unless that brings the answer over `cap`.
fn keep(
    data: &mut Vec<Vec<Part>>,
    parts: Vec<Part>,
    cap: usize,
    total: usize,
) -> Result<usize, WireError> {
    let size: usize = parts
        .iter()
        .map(|p| match p {
            Part::Text(b) | Part::Literal(b) => b.len() + 2,
        })
        .sum();
    if total.saturating_add(size) > cap {
        return Err(WireError::TooLong { what: "an answer", limit: cap });
    }
    data.push(parts);
    Ok(size)
}

fn first_text(parts: &[Part]) -> &[u8] {
    match parts.first() {
        Some(Part::Text(t)) => t,
        _ => b"",
    }
}

/// Reads one response: lines and the literals they announce.
pub async fn read_response<R: AsyncBufRead + Unpin>(
    io: &mut R,
    limits: Limits,
) -> Result<Response, WireError> {
    let mut parts = Vec::new();
    let mut total = 0usize;
    loop {
        let line = read_line(io, limits.line).await?;
        total += line.len() + 2;
        let literal = literal_size(&line)?;
        parts.push(Part::Text(line));
        let Some(size) = literal else { break };
        if size > limits.literal as u64 {
            return Err(WireError::TooLong { what: "a literal", limit: limits.literal });
        }
        // `size` fits in usize: it is below a usize cap.
        let size = size as usize;
        total = total.saturating_add(size);
        if total > limits.response {
            return Err(WireError::TooLong { what: "a response", limit: limits.response });
        }
        let mut bytes = Vec::new();
        let read = (&mut *io).take(size as u64).read_to_end(&mut bytes).await?;
        if read < size {
            return Err(WireError::Closed(None));
        }
        parts.push(Part::Literal(bytes));
    }
    let Some(Part::Text(first)) = parts.first() else {
        return Err(WireError::Garbage(String::new()));
    };
    if first.starts_with(b"* ") {
        if let Some(Part::Text(first)) = parts.first_mut() {
            first.drain(..2);
        }
        return Ok(Response::Untagged(parts));
    }
    if first.starts_with(b"+") {
        return Ok(Response::Continue);
    }
    if parts.len() > 1 {
        return Err(WireError::Garbage(shown(first)));
    }
    let text = String::from_utf8_lossy(first).into_owned();
    let mut words = text.splitn(3, ' ');
    let tag = words.next().unwrap_or("");
    let status = match words.next().map(str::to_ascii_uppercase).as_deref() {
        Some("OK") => "OK",
        Some("NO") => "NO",
        Some("BAD") => "BAD",
        _ => return Err(WireError::Garbage(shown(first))),
    };
    if tag.is_empty() || !tag.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'.') {
        return Err(WireError::Garbage(shown(first)));
    }
    // Shown to the operator: no control characters reach a terminal.
    let rest: String = words
        .next()
        .unwrap_or("")
        .chars()
        .take(500)
        .map(|c| if c.is_control() { '?' } else { c })
        .collect();
    Ok(Response::Tagged { tag: tag.to_owned(), status, text: rest })
}

/// One line without its CRLF (a bare LF is taken too), at most `cap` bytes.
async fn read_line<R: AsyncBufRead + Unpin>(io: &mut R, cap: usize) -> Result<Vec<u8>, WireError> {
    let mut line = Vec::new();
    loop {
        let available = io.fill_buf().await?;
        if available.is_empty() {
            let said = (!line.is_empty()).then(|| shown(&line));
            return Err(WireError::Closed(said));
        }
        match available.iter().position(|&b| b == b'\n') {
            Some(end) => {
                if line.len() + end > cap {
                    return Err(WireError::TooLong { what: "a line", limit: cap });
                }
                line.extend_from_slice(&available[..end]);
                io.consume(end + 1);
                if line.last() == Some(&b'\r') {
                    line.pop();
                }
                return Ok(line);
            }
            None => {
                let n = available.len();
                if line.len() + n > cap {
                    return Err(WireError::TooLong { what: "a line", limit: cap });
                }
                line.extend_from_slice(available);
                io.consume(n);
            }
        }
    }
}

/// The size of the literal a line announces at its end (`{123}`).
fn literal_size(line: &[u8]) -> Result<Option<u64>, WireError> {
    let Some(body) = line.strip_suffix(b"}") else { return Ok(None) };
    let Some(open) = body.iter().rposition(|&b| b == b'{') else { return Ok(None) };
    let digits = body[open + 1..].strip_suffix(b"+").unwrap_or(&body[open + 1..]);
    if digits.is_empty() || digits.len() > 19 || !digits.iter().all(u8::is_ascii_digit) {
        return Err(WireError::Garbage(shown(line)));
    }
    let size = std::str::from_utf8(digits)
        .ok()
        .and_then(|d| d.parse::<u64>().ok())
        .ok_or_else(|| WireError::Garbage(shown(line)))?;
    Ok(Some(size))
}

/// The most values in one response, and the deepest nesting.
const MAX_VALUES: usize = 100_000;
const MAX_DEPTH: usize = 16;

/// Reads the values of an untagged response's parts: atoms, quoted
/// strings, literals, NIL and parenthesised lists.
pub fn values(parts: &[Part]) -> Result<Vec<Value>, WireError> {
    let mut reader = Values { parts, part: 0, at: 0, count: 0 };
    let values = reader.list(0, false)?;
    Ok(values)
}

struct Values<'a> {
    parts: &'a [Part],
    part: usize,
    at: usize,
    count: usize,
}

impl<'a> Values<'a> {
    fn text(&self) -> &'a [u8] {
        match self.parts.get(self.part) {
            Some(Part::Text(t)) => t,
            _ => b"",
        }
    }

    fn garbage(&self) -> WireError {
        WireError::Garbage(shown(self.text()))
    }

    /// Values up to the end (or up to `)` when `nested`).
    fn list(&mut self, depth: usize, nested: bool) -> Result<Vec<Value>, WireError> {
        if depth > MAX_DEPTH {
            return Err(WireError::Garbage("lists nested too deep".into()));
        }
        let mut out = Vec::new();
        loop {
            while self.text().get(self.at) == Some(&b' ') {
                self.at += 1;
            }
            let text = self.text();
            let Some(&b) = text.get(self.at) else {
                return if nested { Err(self.garbage()) } else { Ok(out) };
            };
            self.count += 1;
            if self.count > MAX_VALUES {
                return Err(WireError::TooLong { what: "a response", limit: MAX_VALUES });
            }
            match b {
                b')' if nested => {
                    self.at += 1;
                    return Ok(out);
                }
                b'(' => {
                    self.at += 1;
                    out.push(Value::List(self.list(depth + 1, true)?));
                }
                b'"' => out.push(Value::Str(self.quoted()?)),
                b'{' => {
                    // The literal's announcement ends this text part; the
                    // bytes are the next part, and the text goes on after.
                    let close =
                        text[self.at..].iter().position(|&c| c == b'}').map(|i| self.at + i);
                    if close != Some(text.len() - 1) {
                        return Err(self.garbage());
                    }
                    let Some(Part::Literal(bytes)) = self.parts.get(self.part + 1) else {
                        return Err(self.garbage());
                    };
                    out.push(Value::Str(bytes.clone()));
                    self.part += 2;
                    self.at = 0;
                    if self.parts.get(self.part).is_none() {
                        return Err(WireError::Garbage("a literal with no line after it".into()));
                    }
                }
                _ => {
                    let atom = self.atom()?;
                    if atom.eq_ignore_ascii_case(b"NIL") {
                        out.push(Value::Nil);
                    } else {
                        out.push(Value::Atom(atom));
                    }
                }
            }
        }
    }

    fn quoted(&mut self) -> Result<Vec<u8>, WireError> {
        let text = self.text();
        let mut out = Vec::new();
        let mut i = self.at + 1;
        while let Some(&b) = text.get(i) {
            match b {
                b'"' => {
                    self.at = i + 1;
                    return Ok(out);
                }
                b'\\' => {
                    let Some(&next) = text.get(i + 1) else { break };
                    out.push(next);
                    i += 2;
                }
                _ => {
                    out.push(b);
                    i += 1;
                }
            }
        }
        Err(self.garbage())
    }

    /// An atom; a `[...]` section inside it (`BODY[HEADER.FIELDS (A B)]`)
    /// belongs to it, spaces and all.
    fn atom(&mut self) -> Result<Vec<u8>, WireError> {
        let text = self.text();
        let start = self.at;
        let mut i = start;
        let mut brackets = 0usize;
        while let Some(&b) = text.get(i) {
            match b {
                b'[' => brackets += 1,
                b']' if brackets > 0 => brackets -= 1,
                b' ' | b'(' | b')' if brackets == 0 => break,
                b'"' | b'{' if brackets == 0 => return Err(self.garbage()),
                0..=0x1f | 0x7f => return Err(self.garbage()),
                _ => {}
            }
            i += 1;
        }
        if i == start || brackets > 0 {
            return Err(self.garbage());
        }
        self.at = i;
        Ok(text[start..i].to_vec())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> Limits {
        Limits { line: 1024, literal: 4096, response: 16 * 1024, timeout: Duration::from_secs(5) }
    }

    async fn read_all(input: &[u8]) -> Result<Response, WireError> {
        let mut reader = BufReader::new(input);
        read_response(&mut reader, limits()).await
    }

    #[tokio::test]
    async fn a_fetch_with_a_literal_reads_as_values() {
        let input =
            b"* 3 FETCH (UID 41 RFC822.SIZE 12 BODY[] {12}\r\nHello\r\nWorld FLAGS (\\Seen))\r\n";
        let Response::Untagged(parts) = read_all(input).await.unwrap() else { panic!() };
        let values = values(&parts).unwrap();
        assert_eq!(values[0], Value::Atom(b"3".to_vec()));
        assert!(values[1].atom_is("fetch"));
        let Value::List(items) = &values[2] else { panic!("{values:?}") };
        assert_eq!(items[1].number(), Some(41));
        assert!(items[4].atom_is("BODY[]"));
        assert_eq!(items[5], Value::Str(b"Hello\r\nWorld".to_vec()));
        assert_eq!(items[7], Value::List(vec![Value::Atom(b"\\Seen".to_vec())]));
    }

    #[tokio::test]
    async fn quoted_strings_nil_and_sections_with_spaces() {
        let input =
            b"* LIST (\\HasNoChildren) \".\" \"a \\\"b\\\"\" NIL BODY[HEADER.FIELDS (TO FROM)]\r\n";
        let Response::Untagged(parts) = read_all(input).await.unwrap() else { panic!() };
        let values = values(&parts).unwrap();
        assert_eq!(values[2], Value::Str(b".".to_vec()));
        assert_eq!(values[3], Value::Str(b"a \"b\"".to_vec()));
        assert_eq!(values[4], Value::Nil);
        assert!(values[5].atom_is("BODY[HEADER.FIELDS (TO FROM)]"));
    }

    #[tokio::test]
    async fn tagged_answers_and_go_aheads() {
        assert_eq!(
            read_all(b"h7 NO [TRYCREATE] no such mailbox\r\n").await.unwrap(),
            Response::Tagged {
                tag: "h7".into(),
                status: "NO",
                text: "[TRYCREATE] no such mailbox".into()
            }
        );
        assert_eq!(read_all(b"+ go ahead\r\n").await.unwrap(), Response::Continue);
    }

    #[tokio::test]
    async fn a_huge_literal_is_refused_before_it_is_read() {
        let input = b"* 1 FETCH (BODY[] {99999999999}\r\nxx";
        let e = read_all(input).await.unwrap_err();
        assert!(matches!(e, WireError::TooLong { what: "a literal", .. }), "{e}");
        // Beyond any integer: garbage, not an overflow.
        let e = read_all(b"* 1 FETCH (BODY[] {184467440737095516160000}\r\n").await.unwrap_err();
        assert!(matches!(e, WireError::Garbage(_)), "{e}");
    }

    #[tokio::test]
    async fn a_literal_cut_short_or_a_line_without_end_fails_cleanly() {
        let e = read_all(b"* 1 FETCH (BODY[] {100}\r\nonly this").await.unwrap_err();
        assert!(matches!(e, WireError::Closed(_)), "{e}");
        let e = read_all(&[b'x'; 5000]).await.unwrap_err();
        assert!(matches!(e, WireError::TooLong { what: "a line", .. }), "{e}");
        let e = read_all(b"").await.unwrap_err();
        assert!(matches!(e, WireError::Closed(None)), "{e}");
    }

    #[tokio::test]
    async fn garbage_lines_are_errors_that_show_them_escaped() {
        for input in [&b"HTTP/1.1 200 OK\r\n"[..], b"h1 MAYBE later\r\n", b"\x00\xff\x1b[31m\r\n"] {
            let e = read_all(input).await.unwrap_err();
            assert!(matches!(e, WireError::Garbage(_)), "{e}");
            assert!(!e.to_string().contains('\x1b'), "{e}");
        }
        // Values that do not close, or nest without end.
        for input in
            [&b"* 1 FETCH (UID 3\r\n"[..], b"* X \"open\r\n", b"* 1 FETCH (BODY[ {3}\r\nabc)\r\n"]
        {
            let Response::Untagged(parts) = read_all(input).await.unwrap() else { panic!() };
            assert!(values(&parts).is_err(), "{input:?}");
        }
        let deep = format!("* X {}\r\n", "(".repeat(1000));
        let Response::Untagged(parts) = read_all(deep.as_bytes()).await.unwrap() else { panic!() };
        assert!(values(&parts).is_err());
    }

    #[tokio::test]
    async fn many_literals_in_one_response_stop_at_the_response_cap() {
        let mut input = b"* 1 FETCH (".to_vec();
        for _ in 0..10 {
            input.extend_from_slice(b"X {4000}\r\n");
            input.extend_from_slice(&[b'a'; 4000]);
        }
        input.extend_from_slice(b")\r\n");
        let e = read_all(&input).await.unwrap_err();
        assert!(matches!(e, WireError::TooLong { what: "a response", .. }), "{e}");
    }

    #[tokio::test]
    async fn a_command_with_a_literal_waits_for_the_go_ahead() {
        let (client, mut server) = tokio::io::duplex(4096);
        let mut conn = Conn::new(client, limits());
        let talk = tokio::spawn(async move {
            let mut buf = BufReader::new(&mut server);
            let mut line = String::new();
            buf.read_line(&mut line).await.unwrap();
            assert_eq!(line, "h1 LOGIN \"ann\" {6}\r\n");
            buf.get_mut().write_all(b"+ ok\r\n").await.unwrap();
            let mut rest = [0u8; 8];
            buf.read_exact(&mut rest).await.unwrap();
            assert_eq!(&rest, b"p\"ss\r\n\r\n");
            buf.get_mut().write_all(b"* CAPABILITY IMAP4rev1\r\nh1 OK done\r\n").await.unwrap();
        });
        let data =
            conn.command("LOGIN", &[Arg::Str(b"ann"), Arg::Str(b"p\"ss\r\n")]).await.unwrap();
        assert_eq!(data, vec![vec![Part::Text(b"CAPABILITY IMAP4rev1".to_vec())]]);
        talk.await.unwrap();
    }

    #[tokio::test]
    async fn a_refusal_reaches_the_terminal_without_control_characters() {
        let Response::Tagged { text, .. } =
            read_all(b"h1 NO \x1b]0;owned\x07 no\r\n").await.unwrap()
        else {
            panic!()
        };
        assert_eq!(text, "?]0;owned? no");
    }

    #[tokio::test(start_paused = true)]
    async fn a_server_that_trickles_answers_is_cut_off() {
        let (client, mut server) = tokio::io::duplex(4096);
        let mut conn =
            Conn::new(client, Limits { timeout: Duration::from_millis(200), ..limits() });
        let trickle = tokio::spawn(async move {
            let mut line = [0u8; 64];
            let _ = server.read(&mut line).await;
            // Each answer well within the read deadline, never the last one.
            while server.write_all(b"* OK still here\r\n").await.is_ok() {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        });
        assert!(matches!(conn.command("NOOP", &[]).await, Err(WireError::Timeout(_))));
        drop(conn);
        trickle.await.unwrap();
    }

    #[tokio::test]
    async fn text_sent_in_clear_after_starttls_is_not_carried_into_tls() {
        let (client, mut server) = tokio::io::duplex(4096);
        let mut conn = Conn::new(client, limits());
        let talk = tokio::spawn(async move {
            let mut line = [0u8; 64];
            let _ = server.read(&mut line).await;
            server
                .write_all(b"h1 OK begin TLS now\r\n* OK [CAPABILITY IMAP4rev1] injected\r\n")
                .await
                .unwrap();
            server
        });
        conn.command("STARTTLS", &[]).await.unwrap();
        let _server = talk.await.unwrap();
        assert!(conn.into_stream().is_none());
    }

    #[tokio::test(start_paused = true)]
    async fn a_silent_server_times_out() {
        let (client, _server) = tokio::io::duplex(64);
        let mut conn = Conn::new(client, Limits { timeout: Duration::from_millis(50), ..limits() });
        assert!(matches!(conn.greeting().await, Err(WireError::Timeout(_))));
    }
}
