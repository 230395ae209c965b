//! `Article`: the normalised unit every source produces and every output
//! (feeds, digests, article pages) consumes.

use chrono::{DateTime, Utc};
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::types::{BaseUrl, Slug};

/// An article as a source produced it, before the store gave it an id.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Article {
    /// The source's name from the config.
    pub source: String,
    /// Stable within the source: the slug, or the file's path without `.md`.
    pub guid: String,
    /// The absolute permalink.
    pub url: String,
    pub title: String,
    pub author: Option<String>,
    pub published: DateTime<Utc>,
    pub updated: Option<DateTime<Utc>>,
    /// Plain text.
    pub summary: Option<String>,
    /// Sanitised HTML, safe to embed as is.
    pub content_html: String,
    pub tags: Vec<String>,
}

impl Article {
    /// A hash of everything a reader sees: an edit changes it.
    pub fn content_hash(&self) -> String {
        let mut h = Sha256::new();
        for part in [
            self.url.as_str(),
            self.title.as_str(),
            self.author.as_deref().unwrap_or(""),
            &self.published.to_rfc3339(),
            &self.updated.map(|u| u.to_rfc3339()).unwrap_or_default(),
            self.summary.as_deref().unwrap_or(""),
            self.content_html.as_str(),
            &self.tags.join("\u{1f}"),
        ] {
            h.update(part.as_bytes());
            h.update([0u8]);
        }
        hex::encode(h.finalize())
    }
}

impl Article {
    /// The slug of this article's page on herald's own site, when its URL is
    /// that page (`<base_url><source>/<slug>/`): every `dir` article, and an
    /// upstream entry that had no usable link of its own. `None` for an
    /// entry that links to its upstream page.
    pub fn own_page(&self, base_url: &BaseUrl) -> Option<Slug> {
        own_page(&self.source, &self.guid, &self.url, base_url)
    }
}

/// The slug of an article's page on herald's own site, when `url` is that
/// page; see [`Article::own_page`].
pub fn own_page(source: &str, guid: &str, url: &str, base_url: &BaseUrl) -> Option<Slug> {
    let slug = Slug::of_guid(guid);
    (base_url.join(&format!("{source}/{slug}/")).as_str() == url).then_some(slug)
}

/// An article as stored: with its id and the time herald first saw it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StoredArticle {
    pub id: i64,
    #[serde(flatten)]
    pub article: Article,
    pub content_hash: String,
    pub first_seen: DateTime<Utc>,
}

impl StoredArticle {
    /// When the article last changed, for feeds: `updated`, else `published`.
    pub fn last_changed(&self) -> DateTime<Utc> {
        self.article.updated.unwrap_or(self.article.published).max(self.article.published)
    }
}

/// The first `words` words of `text`, with an ellipsis when cut.
pub fn first_words(text: &str, words: usize) -> String {
    let mut parts = crate::text::words(text);
    let head: Vec<&str> = parts.by_ref().take(words).collect();
    let mut out = head.join(" ");
    if parts.next().is_some() {
        out.push('…');
    }
    out
}

/// Visible text of an HTML fragment: what a reader would see, for
/// summaries and titles. The fragment is read by html5ever's tokenizer (the
/// one ammonia parses with), so entities are decoded as a browser decodes
/// them and a `>` inside an attribute does not end a tag. Block-level
/// boundaries leave a space, inline ones do not; the contents of elements
/// that are never shown (script, style, template, …) are dropped;
/// whitespace is collapsed.
pub fn html_to_text(html: &str) -> String {
    use html5ever::tendril::StrTendril;
    use html5ever::tokenizer::{BufferQueue, Tokenizer, TokenizerOpts};

    let input = BufferQueue::default();
    input.push_back(StrTendril::from(html));
    let tokenizer = Tokenizer::new(TextSink::default(), TokenizerOpts::default());
    // The sink never asks to stop for a script, so one feed reads it all.
    let _ = tokenizer.feed(&input);
    tokenizer.end();
    let text = tokenizer.sink.text.take();
    // As a browser collapses HTML's white space: `&nbsp;` stays.
    crate::text::words(&text).collect::<Vec<_>>().join(" ")
}

/// Elements whose boundaries separate words.
const BLOCKS: &[&str] = &[
    "address",
    "article",
    "aside",
    "blockquote",
    "br",
    "caption",
    "dd",
    "details",
    "div",
    "dl",
    "dt",
    "figcaption",
    "figure",
    "footer",
    "h1",
    "h2",
    "h3",
    "h4",
    "h5",
    "h6",
    "header",
    "hr",
    "img",
    "li",
    "main",
    "nav",
    "ol",
    "option",
    "p",
    "pre",
    "section",
    "summary",
    "table",
    "tbody",
    "td",
    "tfoot",
    "th",
    "thead",
    "tr",
    "ul",
];

/// Elements whose text is raw (the tokenizer must not read markup in it)
/// and never shown.
const HIDDEN_RAW: &[&str] =
    &["script", "style", "noscript", "iframe", "noembed", "noframes", "xmp", "title"];

/// Elements whose contents are markup that is never shown as text.
const HIDDEN: &[&str] = &["template", "svg", "math", "head", "object"];

/// Collects the text tokens of a fragment.
#[derive(Default)]
struct TextSink {
    text: std::cell::RefCell<String>,
    /// Inside a raw element that is never shown, until its end tag.
    in_raw: std::cell::Cell<bool>,
    /// How many hidden elements are open.
    hidden: std::cell::Cell<usize>,
}

impl html5ever::tokenizer::TokenSink for TextSink {
    type Handle = ();

    fn process_token(
        &self,
        token: html5ever::tokenizer::Token,
        _line: u64,
    ) -> html5ever::tokenizer::TokenSinkResult<()> {
        use html5ever::tokenizer::states::RawKind;
        use html5ever::tokenizer::{TagKind, Token, TokenSinkResult};
        match token {
            Token::TagToken(tag) => {
                let name: &str = &tag.name;
                if BLOCKS.contains(&name) {
                    self.text.borrow_mut().push(' ');
                }
                match tag.kind {
                    TagKind::StartTag if HIDDEN_RAW.contains(&name) && !tag.self_closing => {
                        self.in_raw.set(true);
                        let kind = match name {
                            "script" => RawKind::ScriptData,
                            "title" => RawKind::Rcdata,
                            _ => RawKind::Rawtext,
                        };
                        return TokenSinkResult::RawData(kind);
                    }
                    // A textarea's text is shown, as text.
                    TagKind::StartTag if name == "textarea" => {
                        return TokenSinkResult::RawData(RawKind::Rcdata)
                    }
                    TagKind::StartTag if HIDDEN.contains(&name) && !tag.self_closing => {
                        self.hidden.set(self.hidden.get() + 1);
                    }
                    TagKind::EndTag if HIDDEN_RAW.contains(&name) => self.in_raw.set(false),
                    TagKind::EndTag if HIDDEN.contains(&name) => {
                        self.hidden.set(self.hidden.get().saturating_sub(1));
                    }
                    _ => {}
                }
            }
            Token::CharacterTokens(text) if !self.in_raw.get() && self.hidden.get() == 0 => {
                self.text.borrow_mut().push_str(&text);
            }
            _ => {}
        }
        TokenSinkResult::Continue
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Article {
        Article {
            source: "blog".into(),
            guid: "hello".into(),
            url: "https://example.com/blog/hello/".into(),
            title: "Hello".into(),
            author: None,
            published: "2026-11-20T08:00:00Z".parse().unwrap(),
            updated: None,
            summary: None,
            content_html: "<p>Hi</p>".into(),
            tags: vec![],
        }
    }

    #[test]
    fn own_page_is_the_page_herald_writes() {
        let base = BaseUrl::parse("https://example.com/").unwrap();
        let mut a = sample();
        assert_eq!(a.own_page(&base).map(|s| s.to_string()).as_deref(), Some("hello"));
        a.url = "https://upstream.example.org/hello".into();
        assert_eq!(a.own_page(&base), None);
    }

    #[test]
    fn hash_changes_with_content_only() {
        let a = sample();
        let mut b = sample();
        assert_eq!(a.content_hash(), b.content_hash());
        b.content_html = "<p>Hi!</p>".into();
        assert_ne!(a.content_hash(), b.content_hash());
    }

    #[test]
    fn text_helpers() {
        assert_eq!(first_words("one two  three four", 3), "one two three…");
        assert_eq!(html_to_text("<p>A &amp; B</p><p>C</p>"), "A & B C");
        assert_eq!(html_to_text("<p>call <em>pão</em>.</p>"), "call pão.");
    }

    #[test]
    fn text_is_what_a_reader_sees() {
        // The contents of script, style and other never-shown elements are
        // not text.
        assert_eq!(
            html_to_text(
                "<p>Ferries<script>var x = '<b>';</script> run</p><style>p{color:red}</style>"
            ),
            "Ferries run"
        );
        assert_eq!(
            html_to_text("<template><p>hidden</p></template><noscript>Enable JS</noscript>shown"),
            "shown"
        );
        // Block boundaries separate words; inline ones do not.
        assert_eq!(html_to_text("word<br>word<br/>end"), "word word end");
        assert_eq!(html_to_text("<p>one</p><p>two</p>"), "one two");
        assert_eq!(
            html_to_text("<ul><li>one</li><li>two</li></ul><dl><dt>a</dt><dd>b</dd></dl>"),
            "one two a b"
        );
        assert_eq!(html_to_text("<table><tr><td>a</td><td>b</td></tr></table>"), "a b");
        assert_eq!(html_to_text("<span>a</span><span>b</span> <b>c</b>d"), "ab cd");
        // Every entity is decoded once: numeric, named, and an escaped one
        // stays escaped text; a no-break space stays one, as a browser shows it.
        assert_eq!(
            html_to_text("it&#8217;s &mdash; caf&eacute; &#x2014; &amp;lt; a&nbsp;b"),
            "it\u{2019}s \u{2014} café \u{2014} &lt; a\u{a0}b"
        );
        // A `>` inside an attribute does not end the tag; comments are not text.
        assert_eq!(html_to_text(r#"<a title="a > b">link</a>"#), "link");
        assert_eq!(html_to_text("a<!-- <p>b</p> -->c"), "ac");
    }
}
