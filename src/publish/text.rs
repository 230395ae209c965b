//! Text and dates exactly as every feed writes them: strings cleared of the
//! characters XML 1.0 forbids, summaries, and timestamps at whole seconds so
//! RSS, Atom and JSON Feed agree on every date.

use chrono::{DateTime, SecondsFormat, Timelike, Utc};

use crate::article::{first_words, html_to_text, StoredArticle};

/// The number of words in a summary made from the article's text; the same
/// as templates.rs uses for the `article.summary` that pages and digests see.
const SUMMARY_WORDS: usize = 40;

/// Whether XML 1.0 allows `c` in a document (XML 1.0 §2.2, production
/// `Char`): tab, LF, CR, and everything from U+0020 except U+FFFE and U+FFFF.
/// Surrogates (U+D800–U+DFFF) cannot occur in a Rust `char`.
fn is_xml_char(c: char) -> bool {
    matches!(c, '\t' | '\n' | '\r' | '\u{20}'..='\u{D7FF}' | '\u{E000}'..='\u{FFFD}' | '\u{10000}'..)
}

/// `text` without the characters XML 1.0 forbids. One stray control
/// character (pasted from a word processor, say) would otherwise make the
/// whole feed unreadable for every strict parser. Escaping `&` and `<` is the
/// XML writers' job, not this function's.
pub fn xml_safe(text: &str) -> String {
    if text.chars().all(is_xml_char) {
        text.to_owned()
    } else {
        text.chars().filter(|c| is_xml_char(*c)).collect()
    }
}

/// The article's plain-text summary: the source's own, else the first words
/// of its text; empty only when the article has no text at all.
pub fn summary(a: &StoredArticle) -> String {
    let text = match &a.article.summary {
        Some(summary) if !crate::text::trim(summary).is_empty() => {
            crate::text::trim(summary).to_owned()
        }
        _ => first_words(&html_to_text(&a.article.content_html), SUMMARY_WORDS),
    };
    xml_safe(&text)
}

/// Plain text as HTML (RSS `<description>` holds HTML, so a summary such as
/// "A < B & C" must be escaped once more to be read as text).
pub fn text_to_html(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            _ => out.push(c),
        }
    }
    out
}

/// `t` without its fraction of a second. The store keeps microseconds, RSS
/// dates have none; cutting them everywhere keeps the three feeds in step.
pub fn whole_seconds(t: DateTime<Utc>) -> DateTime<Utc> {
    // with_nanosecond(0) cannot fail: 0 is always in range.
    t.with_nanosecond(0).unwrap_or(t)
}

/// An RSS date: RFC 822 as updated by RFC 1123 (four-digit year), in UTC,
/// e.g. `Fri, 20 Nov 2026 08:00:00 +0000`.
pub fn rfc822(t: DateTime<Utc>) -> String {
    whole_seconds(t).to_rfc2822()
}

/// An Atom or JSON Feed date: RFC 3339 in UTC at whole seconds,
/// e.g. `2026-11-20T08:00:00Z`.
pub fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn xml_safe_drops_only_forbidden_characters() {
        assert_eq!(xml_safe("a\u{0}b\u{1}c\u{8}d\u{B}e\u{C}f\u{1F}g"), "abcdefg");
        assert_eq!(xml_safe("tab\tlf\ncr\r"), "tab\tlf\ncr\r");
        assert_eq!(xml_safe("x\u{FFFE}y\u{FFFF}z"), "xyz");
        let kept = "Пример 例子 😀 &amp; < > ]]> \u{7F}\u{85}\u{FFFD}\u{10FFFF}";
        assert_eq!(xml_safe(kept), kept);
        assert_eq!(xml_safe(""), "");
    }

    #[test]
    fn text_to_html_escapes_markup() {
        assert_eq!(text_to_html("A < B & C > D \"q\""), "A &lt; B &amp; C &gt; D \"q\"");
    }

    #[test]
    fn dates_are_whole_seconds_in_utc() {
        let t: DateTime<Utc> = "2026-11-05T08:09:10.123456Z".parse().unwrap();
        assert_eq!(rfc822(t), "Thu, 5 Nov 2026 08:09:10 +0000");
        assert_eq!(rfc3339(t), "2026-11-05T08:09:10Z");
        assert_eq!(whole_seconds(t).timestamp_subsec_nanos(), 0);
        let back = DateTime::parse_from_rfc2822(&rfc822(t)).unwrap();
        assert_eq!(back, whole_seconds(t));
    }

    #[test]
    fn summary_prefers_the_sources_own() {
        let mut a = StoredArticle {
            id: 1,
            article: crate::Article {
                source: "blog".into(),
                guid: "a".into(),
                url: "https://example.com/blog/a/".into(),
                title: "A".into(),
                author: None,
                published: "2026-11-20T08:00:00Z".parse().unwrap(),
                updated: None,
                summary: Some(" Short\u{1}. ".into()),
                content_html: "<p>Long &amp; text</p>".into(),
                tags: vec![],
            },
            content_hash: String::new(),
            first_seen: "2026-11-20T08:00:00Z".parse().unwrap(),
        };
        assert_eq!(summary(&a), "Short.");
        a.article.summary = None;
        assert_eq!(summary(&a), "Long & text");
    }
}
