//! What a message that came back is: a delivery status notification
//! (RFC 3464), a complaint (an RFC 5965 feedback report), an auto-reply
//! (RFC 3834, vacation notices), a bounce written as plain text by a mail
//! system that does not write reports, or none of these. mail-parser reads
//! the MIME structure and decodes every charset; what it does not know, the
//! fields of a report (`Action`, `Status`, `Final-Recipient`,
//! `Feedback-Type`, ...), is read here.
//!
//! Everything here is hostile input: nothing panics, every text kept is
//! capped, and nothing is interpreted beyond these fields.

use std::borrow::Cow;

use mail_parser::{Message, MessageParser, MessagePart, MimeHeaders, PartType};

/// What one report says about one recipient.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    /// The address does not exist or is disabled (RFC 3463 5.1.x, 5.2.1).
    Hard,
    /// A permanent failure that is not about the address (mailbox full, a
    /// message refused as spam, a system error), or a temporary one that
    /// the reporting system gave up on.
    Soft,
    /// Not delivered yet; the reporting system goes on trying.
    Delayed,
    /// The reader reported the message as spam.
    Complaint,
    /// An automatic answer (vacation, out of office): not a bounce.
    AutoReply,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Hard => "hard",
            Kind::Soft => "soft",
            Kind::Delayed => "delayed",
            Kind::Complaint => "complaint",
            Kind::AutoReply => "auto_reply",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        [Kind::Hard, Kind::Soft, Kind::Delayed, Kind::Complaint, Kind::AutoReply]
            .into_iter()
            .find(|k| k.as_str() == text)
    }
}

/// The shape a message came in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    /// An RFC 3464 delivery status notification.
    Dsn,
    /// An RFC 5965 feedback report.
    Arf,
    /// A plain-text bounce: from a mailer daemon, or with a bounce's
    /// subject, and an SMTP status in its text.
    Plain,
    /// An RFC 3834 automatic answer or a vacation notice.
    AutoReply,
    /// Ordinary mail, or nothing herald understands.
    NotABounce,
}

/// One recipient a report is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    pub kind: Kind,
    /// The address as the report gives it (Final-Recipient,
    /// Original-Rcpt-To, ...), when it gives one.
    pub address: Option<String>,
    /// The RFC 3463 status (`5.1.1`), when there is one.
    pub status: Option<String>,
    /// What the receiving system said, capped.
    pub diagnostic: Option<String>,
}

/// What a message says.
#[derive(Debug, Clone)]
pub struct Report {
    pub shape: Shape,
    pub findings: Vec<Finding>,
    /// The Message-IDs of the original message the report quotes, without
    /// angle brackets.
    pub original_message_ids: Vec<String>,
    /// The report's own Message-ID, without angle brackets.
    pub message_id: Option<String>,
    /// The header text where a VERP address may stand: the report's own
    /// To, Delivered-To and X-Original-To, and the quoted original's
    /// headers (its Return-Path).
    pub addressed: String,
    /// The report's subject, for logs, capped.
    pub subject: String,
}

/// The longest diagnostic kept, in characters.
const DIAGNOSTIC_CHARS: usize = 500;
/// The most text searched for a plain bounce's status and address.
const PLAIN_TEXT_BYTES: usize = 64 * 1024;
/// The most header text kept for VERP addresses.
const ADDRESSED_BYTES: usize = 64 * 1024;
/// The most recipients read from one report.
const MAX_FINDINGS: usize = 1000;

/// Reads `raw`, a whole message as it came in. A message the MIME parser
/// cannot make sense of is ordinary mail: mail-parser checks its own state
/// with debug assertions, which some malformed messages trip (the fuzzer
/// found one), so a panic inside it is caught here rather than taking down
/// the listener's connection or the poll.
pub fn classify(raw: &[u8]) -> Report {
    std::panic::catch_unwind(|| read(raw)).unwrap_or_else(|_| {
        tracing::warn!(
            "a message the MIME parser could not read ({} bytes): not a report",
            raw.len()
        );
        unreadable()
    })
}

fn unreadable() -> Report {
    Report {
        shape: Shape::NotABounce,
        findings: Vec::new(),
        original_message_ids: Vec::new(),
        message_id: None,
        addressed: String::new(),
        subject: String::new(),
    }
}

fn read(raw: &[u8]) -> Report {
    let Some(message) = MessageParser::default().parse(raw) else {
        return unreadable();
    };
    let mut report = Report {
        shape: Shape::NotABounce,
        findings: Vec::new(),
        original_message_ids: Vec::new(),
        message_id: message.message_id().map(|id| cap(id.trim(), 300)),
        addressed: String::new(),
        subject: cap(message.subject().unwrap_or_default().trim(), 200),
    };
    for name in ["To", "Delivered-To", "X-Original-To", "Envelope-To", "X-Envelope-To"] {
        for value in header_texts(&message, name) {
            push_capped(&mut report.addressed, &format!("{name}: {value}\n"));
        }
    }

    let mut status_fields = None;
    let mut feedback_fields = None;
    for part in &message.parts {
        if is_type(part, "message", &["delivery-status", "global-delivery-status"]) {
            status_fields.get_or_insert_with(|| String::from_utf8_lossy(part.contents()));
        } else if is_type(part, "message", &["feedback-report"]) {
            feedback_fields.get_or_insert_with(|| String::from_utf8_lossy(part.contents()));
        } else if is_type(part, "text", &["rfc822-headers", "global-headers"])
            || is_type(part, "message", &["rfc822-headers"])
        {
            let headers = String::from_utf8_lossy(part.contents());
            quote_original(&mut report, &headers);
        } else if let PartType::Message(original) = &part.body {
            if let Some(id) = original.message_id() {
                push_id(&mut report.original_message_ids, id);
            }
            let headers = original.raw_message().get(..header_end(original)).unwrap_or_default();
            push_capped(&mut report.addressed, &String::from_utf8_lossy(headers));
        }
    }

    if let Some(fields) = status_fields {
        report.shape = Shape::Dsn;
        report.findings = dsn_findings(&fields);
        return report;
    }
    if let Some(fields) = feedback_fields {
        report.shape = Shape::Arf;
        report.findings = arf_findings(&fields, &message).into_iter().collect();
        return report;
    }
    if let Some(finding) = plain_bounce(&message, &mut report.addressed) {
        report.shape = Shape::Plain;
        report.findings = vec![finding];
        return report;
    }
    if is_auto_reply(&message) {
        report.shape = Shape::AutoReply;
        report.findings = vec![Finding {
            kind: Kind::AutoReply,
            address: message
                .from()
                .and_then(|from| from.first())
                .and_then(|a| a.address())
                .map(|a| cap(a.trim(), 320)),
            status: None,
            diagnostic: None,
        }];
    }
    report
}

/// The kind of a failure with RFC 3463 status `status`: hard when it says
/// the address does not exist or is disabled (5.1.x, 5.2.1), soft for any
/// other. The SMTP conversation's own refusals are read the same way.
pub fn failure_kind(status: &str) -> Kind {
    let status = status.trim();
    if status == "5.2.1" || (status.starts_with("5.1.") && status.len() > 4) {
        Kind::Hard
    } else {
        Kind::Soft
    }
}

/// The first RFC 3463 status in `text` (`5.1.1`, `4.2.2`), as a word of its own.
pub fn status_in(text: &str) -> Option<String> {
    text.split(|c: char| !(c.is_ascii_digit() || c == '.'))
        .find(|word| is_status(word))
        .map(str::to_owned)
}

fn is_status(word: &str) -> bool {
    let mut parts = word.split('.');
    let (Some(class), Some(subject), Some(detail), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return false;
    };
    matches!(class, "2" | "4" | "5")
        && (1..=3).contains(&subject.len())
        && (1..=3).contains(&detail.len())
        && subject.bytes().all(|b| b.is_ascii_digit())
        && detail.bytes().all(|b| b.is_ascii_digit())
}

/// The findings of a `message/delivery-status` part: one per recipient
/// block that failed or was delayed. Delivered, relayed and expanded
/// recipients are not bounces.
fn dsn_findings(fields: &str) -> Vec<Finding> {
    let mut findings = Vec::new();
    // The first block is about the message; the others each about a recipient.
    for block in field_blocks(fields).into_iter().skip(1) {
        if findings.len() >= MAX_FINDINGS {
            break;
        }
        let get = |name: &str| {
            block.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
        };
        let address = get("Final-Recipient")
            .or_else(|| get("Original-Recipient"))
            .or_else(|| get("X-Actual-Recipient"))
            .and_then(address_of_field);
        let diagnostic =
            get("Diagnostic-Code").map(|d| cap(strip_type(d).trim(), DIAGNOSTIC_CHARS));
        let status = get("Status")
            .and_then(|s| s.split_whitespace().next())
            .filter(|s| is_status(s))
            .map(str::to_owned)
            .or_else(|| diagnostic.as_deref().and_then(status_in));
        let action = get("Action").map(|a| a.trim().to_ascii_lowercase());
        let kind = match action.as_deref() {
            Some("delayed") => Kind::Delayed,
            Some("failed") => match status.as_deref() {
                Some(s) if s.starts_with('5') => failure_kind(s),
                // A temporary failure the reporting system gave up on.
                _ => Kind::Soft,
            },
            // delivered, relayed, expanded: not a failure.
            Some(_) => continue,
            // No Action (against the RFC): read the status.
            None => match status.as_deref() {
                Some(s) if s.starts_with('5') => failure_kind(s),
                Some(s) if s.starts_with('4') => Kind::Delayed,
                _ => continue,
            },
        };
        if address.is_none() && status.is_none() {
            continue;
        }
        findings.push(Finding { kind, address, status, diagnostic });
    }
    findings
}

/// The finding of a `message/feedback-report` part. Abuse, fraud, virus and
/// other reports are complaints; `not-spam` and `auth-failure` reports are
/// not about the reader's wish, and are not.
fn arf_findings(fields: &str, message: &Message<'_>) -> Option<Finding> {
    let block: Vec<(String, String)> = field_blocks(fields).into_iter().flatten().collect();
    let get = |name: &str| {
        block.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    };
    let feedback = get("Feedback-Type").unwrap_or("abuse").trim().to_ascii_lowercase();
    if !matches!(feedback.as_str(), "abuse" | "fraud" | "virus" | "other") {
        return None;
    }
    // The recipient: the report's field, else the quoted original's To.
    let address = get("Original-Rcpt-To").and_then(address_of_field).or_else(|| {
        message.parts.iter().find_map(|part| match &part.body {
            PartType::Message(original) => original
                .to()
                .and_then(|to| to.first())
                .and_then(|a| a.address())
                .map(|a| cap(a.trim(), 320)),
            _ => None,
        })
    });
    Some(Finding {
        kind: Kind::Complaint,
        address,
        status: None,
        diagnostic: Some(cap(&format!("feedback type {feedback}"), DIAGNOSTIC_CHARS)),
    })
}

/// A bounce that is not a report: from a mailer daemon or postmaster, or
/// with a bounce's subject, and an SMTP status in its text.
fn plain_bounce(message: &Message<'_>, addressed: &mut String) -> Option<Finding> {
    let from = message
        .from()
        .and_then(|f| f.first())
        .and_then(|a| a.address())
        .unwrap_or_default()
        .to_ascii_lowercase();
    let from_daemon = ["mailer-daemon@", "postmaster@", "mail-daemon@", "mailerdaemon@"]
        .iter()
        .any(|p| from.starts_with(p))
        || header_texts(message, "Return-Path")
            .next()
            .is_some_and(|r| r.trim().trim_matches(['<', '>', ' ']).is_empty());
    let subject = message.subject().unwrap_or_default().to_lowercase();
    let bounce_subject = [
        "undeliver",
        "delivery status notification",
        "delivery failure",
        "mail delivery failed",
        "failure notice",
        "returned mail",
        "delivery has failed",
        "could not be delivered",
        "non remis",
        "unzustellbar",
    ]
    .iter()
    .any(|s| subject.contains(s));
    if !from_daemon && !bounce_subject {
        return None;
    }
    let text = body_text(message);
    // The copy of the original after the notice is not searched for the
    // recipient; its headers may carry the VERP address.
    let (text, copy) = split_copy(&text);
    push_capped(addressed, copy);
    let text = text.get(..floor_char(text, PLAIN_TEXT_BYTES)).unwrap_or_default();
    let status = status_in(text).filter(|s| !s.starts_with('2'));
    // Without an enhanced status, a basic SMTP reply code at a line's start
    // or after "said:" (qmail, Exim's plain texts).
    let basic = || {
        text.lines().find_map(|line| {
            let line = line.trim_start();
            let after = line.find("said:").map_or(line, |i| line[i + 5..].trim_start());
            let code = after.get(..3)?;
            let next = after[3..].chars().next();
            (code.bytes().all(|b| b.is_ascii_digit())
                && matches!(code.as_bytes()[0], b'4' | b'5')
                && next.is_none_or(|c| c == ' ' || c == '-'))
            .then(|| format!("{}.0.0", &code[..1]))
        })
    };
    let status = status.or_else(basic)?;
    let kind = if status.starts_with('4') { Kind::Delayed } else { failure_kind(&status) };
    // The recipient, when the text names exactly one address in angle
    // brackets (or at a line's start before a colon, as qmail writes it)
    // other than the sender's own.
    let mut addresses: Vec<String> = Vec::new();
    for line in text.lines() {
        let line = line.trim();
        let candidates = line
            .split(['<', '>'])
            .enumerate()
            .filter(|(i, _)| i % 2 == 1)
            .map(|(_, a)| a)
            .chain(line.strip_suffix(':').filter(|l| !l.contains(' ')));
        for candidate in candidates {
            let candidate = candidate.trim().trim_start_matches("mailto:");
            if looks_like_address(candidate)
                && !candidate.eq_ignore_ascii_case(&from)
                && !addresses.iter().any(|a| a.eq_ignore_ascii_case(candidate))
            {
                addresses.push(cap(candidate, 320));
            }
        }
    }
    let address = (addresses.len() == 1).then(|| addresses.remove(0));
    let diagnostic = text
        .lines()
        .find(|l| l.contains(status.as_str()) || l.trim_start().starts_with(&status[..1]))
        .map(|l| cap(l.trim(), DIAGNOSTIC_CHARS));
    Some(Finding { kind, address, status: Some(status), diagnostic })
}

/// A plain bounce's notice and the copy of the original message after it.
fn split_copy(text: &str) -> (&str, &str) {
    let lower = text.to_ascii_lowercase();
    [
        "below this line is a copy of the message",
        "this is a copy of the message",
        "original message follows",
        "----- original message -----",
        "------ this is a copy of",
    ]
    .iter()
    .filter_map(|marker| lower.find(marker))
    .min()
    .map_or((text, ""), |at| {
        // The marker is ASCII, so `at` is a char boundary of `text` too.
        (&text[..at], &text[at..])
    })
}

/// RFC 3834's Auto-Submitted (any value but `no`), the older headers that
/// vacation programs set, or a vacation notice's subject.
fn is_auto_reply(message: &Message<'_>) -> bool {
    let header =
        |name: &str| header_texts(message, name).next().map(|v| v.trim().to_ascii_lowercase());
    if header("Auto-Submitted").is_some_and(|v| !v.is_empty() && v != "no") {
        return true;
    }
    if ["X-Autoreply", "X-Autorespond"]
        .iter()
        .any(|h| header(h).is_some_and(|v| !v.is_empty() && v != "no"))
    {
        return true;
    }
    if header("Precedence").is_some_and(|v| v == "auto_reply") {
        return true;
    }
    let subject = message.subject().unwrap_or_default().trim().to_lowercase();
    [
        "auto:",
        "automatic reply",
        "auto reply",
        "autoreply",
        "auto-reply",
        "out of office",
        "out of the office",
        "away from the office",
        "vacation",
        "on holiday",
        "abwesenheit",
        "absence",
        "réponse automatique",
        "respuesta automática",
    ]
    .iter()
    .any(|s| {
        subject.starts_with(s)
            || subject.contains(&format!(": {s}"))
            || (s.len() > 8 && subject.contains(s))
    })
}

/// Report fields as blocks of (name, value), unfolded; blocks are separated
/// by empty lines.
fn field_blocks(text: &str) -> Vec<Vec<(String, String)>> {
    let mut blocks: Vec<Vec<(String, String)>> = vec![Vec::new()];
    for line in text.lines() {
        let line = line.trim_end_matches('\r');
        if line.trim().is_empty() {
            if blocks.last().is_some_and(|b| !b.is_empty()) {
                blocks.push(Vec::new());
            }
            continue;
        }
        let Some(block) = blocks.last_mut() else { continue };
        if line.starts_with([' ', '\t']) {
            if let Some((_, value)) = block.last_mut() {
                if value.len() < 4 * DIAGNOSTIC_CHARS {
                    value.push(' ');
                    value.push_str(line.trim());
                }
            }
            continue;
        }
        if let Some((name, value)) = line.split_once(':') {
            if block.len() < 100 {
                block.push((name.trim().to_owned(), cap(value.trim(), 4 * DIAGNOSTIC_CHARS)));
            }
        }
    }
    blocks.retain(|b| !b.is_empty());
    blocks
}

/// The address of `rfc822; reader@example.org` (or `utf-8; ...`).
fn address_of_field(value: &str) -> Option<String> {
    let address = strip_type(value).trim().trim_start_matches('<').trim_end_matches('>').trim();
    looks_like_address(address).then(|| cap(address, 320))
}

/// `smtp; 550 ...` → `550 ...`: the part after the type, when there is one.
fn strip_type(value: &str) -> &str {
    match value.split_once(';') {
        Some((kind, rest)) if !kind.contains(' ') && kind.len() < 20 => rest,
        _ => value,
    }
}

fn looks_like_address(text: &str) -> bool {
    match text.rsplit_once('@') {
        Some((local, domain)) => {
            !local.is_empty()
                && domain.contains('.')
                && !text
                    .chars()
                    .any(|c| c.is_whitespace() || c.is_control() || "<>,;\"".contains(c))
        }
        None => false,
    }
}

fn is_type(part: &MessagePart<'_>, ctype: &str, subtypes: &[&str]) -> bool {
    part.content_type().is_some_and(|ct| {
        ct.ctype().eq_ignore_ascii_case(ctype)
            && ct.subtype().is_some_and(|s| subtypes.iter().any(|t| s.eq_ignore_ascii_case(t)))
    })
}

/// The raw values of every `name` header of `message`'s top level.
fn header_texts<'a>(
    message: &'a Message<'a>,
    name: &'a str,
) -> impl Iterator<Item = Cow<'a, str>> + 'a {
    message.root_part().headers().iter().filter(move |h| h.name().eq_ignore_ascii_case(name)).map(
        move |h| {
            let raw = message
                .raw_message()
                .get(h.offset_start() as usize..h.offset_end() as usize)
                .unwrap_or_default();
            String::from_utf8_lossy(raw)
        },
    )
}

/// Where `message`'s header block ends in its raw bytes.
fn header_end(message: &Message<'_>) -> usize {
    usize::try_from(message.root_part().offset_body).unwrap_or(0).min(message.raw_message().len())
}

/// The quoted original's headers (a `text/rfc822-headers` part): its
/// Message-ID, and the text where its Return-Path stands.
fn quote_original(report: &mut Report, headers: &str) {
    for line in headers.lines() {
        if let Some((name, value)) = line.split_once(':') {
            if name.trim().eq_ignore_ascii_case("Message-ID") {
                push_id(&mut report.original_message_ids, value);
            }
        }
    }
    push_capped(&mut report.addressed, headers);
}

fn push_id(ids: &mut Vec<String>, id: &str) {
    let id = id.trim().trim_start_matches('<').trim_end_matches('>').trim();
    if !id.is_empty() && ids.len() < 10 && !ids.iter().any(|i| i == id) {
        ids.push(cap(id, 300));
    }
}

fn push_capped(into: &mut String, text: &str) {
    let room = ADDRESSED_BYTES.saturating_sub(into.len());
    into.push_str(&text[..floor_char(text, room)]);
}

/// The text of the message's first text part (its HTML's text when it has
/// only HTML).
fn body_text(message: &Message<'_>) -> String {
    message.body_text(0).map(Cow::into_owned).unwrap_or_default()
}

/// `text` cut to at most `chars` characters, control characters but tab
/// and newline made spaces.
fn cap(text: &str, chars: usize) -> String {
    text.chars()
        .take(chars)
        .map(|c| if c.is_control() && c != '\n' && c != '\t' { ' ' } else { c })
        .collect()
}

/// The largest char boundary of `text` at or below `at`.
fn floor_char(text: &str, at: usize) -> usize {
    let mut at = at.min(text.len());
    while !text.is_char_boundary(at) {
        at -= 1;
    }
    at
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A sample from tests/fixtures/bounces, its VERP placeholder filled.
    pub(crate) fn sample(name: &str) -> Vec<u8> {
        let path = format!("{}/tests/fixtures/bounces/{name}", env!("CARGO_MANIFEST_DIR"));
        let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
        String::from_utf8_lossy(&bytes)
            .replace("BOUNCE_TO", "bounces+1-2-000000000000@bounce.test")
            .into_bytes()
    }

    fn finding(kind: Kind, address: &str, status: &str) -> (Kind, Option<String>, Option<String>) {
        (kind, Some(address.to_owned()), (!status.is_empty()).then(|| status.to_owned()))
    }

    fn summary(report: &Report) -> Vec<(Kind, Option<String>, Option<String>)> {
        report.findings.iter().map(|f| (f.kind, f.address.clone(), f.status.clone())).collect()
    }

    #[test]
    fn a_postfix_report_is_a_hard_bounce_with_its_original() {
        let report = classify(&sample("dsn-hard-verp.eml"));
        assert_eq!(report.shape, Shape::Dsn);
        assert_eq!(summary(&report), vec![finding(Kind::Hard, "gone@example.org", "5.1.1")]);
        let diagnostic = report.findings[0].diagnostic.as_deref().unwrap();
        assert!(
            diagnostic.starts_with(
                "550 5.1.1 <gone@example.org>: Recipient address rejected: User unknown"
            ),
            "{diagnostic}"
        );
        assert_eq!(report.original_message_ids, vec!["herald.daily.20261130.2@news.example.com"]);
        assert_eq!(report.message_id.as_deref(), Some("20261130070210.4QxYz@mx.example.org"));
        assert!(
            report.addressed.contains("bounces+1-2-000000000000@bounce.test"),
            "{}",
            report.addressed
        );
    }

    #[test]
    fn a_report_about_several_recipients_gives_each_its_kind() {
        let report = classify(&sample("dsn-several.eml"));
        assert_eq!(report.shape, Shape::Dsn);
        assert_eq!(
            summary(&report),
            vec![
                finding(Kind::Hard, "nobody@example.org", "5.1.1"),
                finding(Kind::Soft, "full@example.org", "5.2.2"),
                finding(Kind::Delayed, "slow@example.org", "4.4.1"),
            ],
            "the delivered recipient is no finding"
        );
        assert_eq!(report.original_message_ids, vec!["herald.daily.20261130.1@news.example.com"]);
    }

    #[test]
    fn a_report_quoting_only_the_original_headers_is_read() {
        let report = classify(&sample("headers-only.eml"));
        assert_eq!(summary(&report), vec![finding(Kind::Hard, "Gone@Example.org", "5.1.10")]);
        assert_eq!(report.original_message_ids, vec!["herald.daily.20261130.2@news.example.com"]);
        assert!(report.addressed.contains("bounces+1-2-"), "the quoted Return-Path is searched");
    }

    #[test]
    fn plain_text_bounces_in_any_charset_are_read() {
        let report = classify(&sample("plain-latin1.eml"));
        assert_eq!(report.shape, Shape::Plain);
        assert_eq!(summary(&report), vec![finding(Kind::Hard, "gone@example.org", "5.1.1")]);
        let diagnostic = report.findings[0].diagnostic.as_deref().unwrap();
        assert!(diagnostic.contains("Grüße"), "decoded from ISO-8859-1: {diagnostic}");

        let report = classify(&sample("qmail.eml"));
        assert_eq!(report.shape, Shape::Plain);
        assert_eq!(
            summary(&report),
            vec![finding(Kind::Soft, "gone@example.org", "5.0.0")],
            "a basic 550 without an enhanced status is a permanent failure of unknown cause"
        );
        assert!(report.addressed.contains("bounces+1-2-"), "the copy's Return-Path is searched");
    }

    #[test]
    fn a_feedback_report_is_a_complaint_about_its_recipient() {
        let report = classify(&sample("arf.eml"));
        assert_eq!(report.shape, Shape::Arf);
        assert_eq!(summary(&report), vec![finding(Kind::Complaint, "angry@example.org", "")]);
        assert_eq!(report.original_message_ids, vec!["herald.daily.20261130.3@news.example.com"]);
        // Not-spam reports are not complaints.
        let not_spam = String::from_utf8(sample("arf.eml"))
            .unwrap()
            .replace("Feedback-Type: abuse", "Feedback-Type: not-spam");
        assert!(classify(not_spam.as_bytes()).findings.is_empty());
    }

    #[test]
    fn auto_replies_and_ordinary_mail_are_not_bounces() {
        let report = classify(&sample("vacation.eml"));
        assert_eq!(report.shape, Shape::AutoReply);
        assert_eq!(
            summary(&report),
            vec![(Kind::AutoReply, Some("away@example.org".into()), None)]
        );
        assert_eq!(classify(&sample("out-of-office.eml")).shape, Shape::AutoReply);
        let report = classify(&sample("ordinary.eml"));
        assert_eq!(report.shape, Shape::NotABounce);
        assert!(report.findings.is_empty());
    }

    #[test]
    fn a_delay_notice_is_not_a_failure() {
        let report = classify(&sample("delayed.eml"));
        assert_eq!(summary(&report), vec![finding(Kind::Delayed, "slow@example.org", "4.2.2")]);
    }

    #[test]
    fn a_report_with_a_ten_megabyte_attachment_is_read() {
        let text = String::from_utf8(sample("dsn-hard-verp.eml")).unwrap();
        let line = "QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVphYmNkZWZnaGlqa2xtbm9wcXJzdHV2d3h5ejAxMjM0\n";
        let attachment = format!(
            "--B0UND.1\nContent-Type: application/octet-stream\nContent-Transfer-Encoding: base64\n\n{}\n",
            line.repeat(10 * 1024 * 1024 / line.len())
        );
        let big = text.replace("--B0UND.1--", &format!("{attachment}--B0UND.1--"));
        assert!(big.len() > 10 * 1024 * 1024);
        let report = classify(big.as_bytes());
        assert_eq!(summary(&report), vec![finding(Kind::Hard, "gone@example.org", "5.1.1")]);
    }

    #[test]
    fn a_message_that_upsets_the_mime_parser_is_not_a_bounce() {
        // Found by the fuzzer: a part whose parent multipart the parser
        // loses track of (a debug assertion of mail-parser's).
        let report = classify(&sample("fuzz-lost-multipart.eml"));
        assert_eq!(report.shape, Shape::NotABounce);
        assert!(report.findings.is_empty());
    }

    #[test]
    fn garbage_is_not_a_bounce() {
        for raw in [
            &b""[..],
            b"\xff\xfe\x00",
            b"Content-Type: multipart/report; boundary=\"\"\n\n--\n",
            b"From: MAILER-DAEMON@x\nSubject: undeliverable\n\n550",
        ] {
            let report = classify(raw);
            assert!(report
                .findings
                .iter()
                .all(|f| f.address.is_none() || f.kind != Kind::Complaint));
        }
    }

    fn hard(error: &str) -> bool {
        status_in(error).is_some_and(|s| failure_kind(&s) == Kind::Hard)
    }

    #[test]
    fn hard_bounces_are_the_address_classes() {
        assert!(hard("permanent error (550): 5.1.1 <x@example.com>: Recipient address rejected"));
        assert!(hard("permanent error (550): 5.2.1 mailbox disabled"));
        assert!(!hard("permanent error (552): 5.3.4 message too big"));
        assert!(!hard("permanent error (554): 5.7.1 spam"));
        assert!(!hard("permanent error (550): 5.1"));
        assert!(!hard("at 127.0.0.1 port 5.1.1.1"), "an IP address is not a status");
    }
}
