//! HTML sanitising for everything a source hands herald: no script, style,
//! event attributes or `javascript:` URLs survive; relative links and images
//! are rewritten to absolute URLs against the article's base, so the HTML
//! works the same in a feed reader, a mail client and a browser.

use url::Url;

thread_local! {
    /// ammonia's default policy is a few hundred hash-set entries; building it
    /// for every article cost more than the cleaning, so each thread keeps one
    /// and only swaps the base URL.
    static CLEANER: std::cell::RefCell<ammonia::Builder<'static>> = {
        let mut builder = ammonia::Builder::default();
        builder.link_rel(Some("noopener noreferrer"));
        std::cell::RefCell::new(builder)
    };
}

/// Sanitises `html`, resolving relative URLs against `base`.
pub fn sanitize_html(html: &str, base: &Url) -> String {
    let cleaned = CLEANER.with_borrow_mut(|builder| {
        builder.url_relative(ammonia::UrlRelative::RewriteWithBase(base.clone()));
        builder.clean(html).to_string()
    });
    strip_control(&cleaned)
}

/// Removes control characters that XML 1.0 and mail clients reject (all C0
/// controls but tab, line feed and carriage return, and DEL).
pub fn strip_control(text: &str) -> String {
    if !text.chars().any(is_bad_control) {
        return text.to_owned();
    }
    text.chars().filter(|c| !is_bad_control(*c)).collect()
}

fn is_bad_control(c: char) -> bool {
    (c.is_control() && !matches!(c, '\t' | '\n' | '\r')) || matches!(c, '\u{FFFE}' | '\u{FFFF}')
}

/// One-line text for titles, names and subjects: control characters and
/// bidi controls removed, whitespace collapsed. A bidi override (U+202E)
/// in a name or a subject would make what follows it read backwards, in a
/// greeting, a header or a mail client's list of mails.
pub fn clean_line(text: &str) -> String {
    strip_control(text)
        .split_whitespace()
        .map(|word| word.chars().filter(|c| !is_bidi_control(*c)).collect::<String>())
        .filter(|word| !word.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

/// The invisible characters that change the direction of the text around
/// them (Unicode's embeddings, overrides, isolates and marks).
pub fn is_bidi_control(c: char) -> bool {
    matches!(c, '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}' | '\u{200E}' | '\u{200F}' | '\u{061C}')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base() -> Url {
        Url::parse("https://news.example.com/blog/").unwrap()
    }

    #[test]
    fn removes_active_content() {
        let out = sanitize_html(
            r#"<p onclick="x()">Hi<script>alert(1)</script><style>p{}</style><a href="javascript:alert(1)">x</a></p>"#,
            &base(),
        );
        assert!(
            !out.contains("script") && !out.contains("onclick") && !out.contains("javascript"),
            "{out}"
        );
        assert!(!out.contains("style"), "{out}");
        assert!(out.contains("Hi"));
    }

    #[test]
    fn rewrites_relative_urls_and_keeps_images() {
        let out = sanitize_html(
            r#"<img src="images/a.svg" alt="A"> <a href="../about/">about</a>"#,
            &base(),
        );
        assert!(out.contains(r#"src="https://news.example.com/blog/images/a.svg""#), "{out}");
        assert!(out.contains(r#"href="https://news.example.com/about/""#), "{out}");
        assert!(out.contains(r#"alt="A""#));
    }

    #[test]
    fn strips_controls_only() {
        assert_eq!(strip_control("a\u{1}b\u{b}c\td\n"), "abc\td\n");
        assert_eq!(clean_line(" Привет \u{7}  мир 🌊 "), "Привет мир 🌊");
        // Bidi overrides and isolates would reorder what follows them in a
        // subject, a name or a title.
        assert_eq!(clean_line("Sale \u{202e}txt.exe\u{202c} today"), "Sale txt.exe today");
        assert_eq!(clean_line("a\u{2067}b\u{2069}c\u{200e}"), "abc");
    }
}
