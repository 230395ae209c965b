//! HTML sanitising for everything a source hands herald: no script, style,
//! event attributes or `javascript:` URLs survive; relative links and images
//! are rewritten to absolute URLs against the article's base, so the HTML
//! works the same in a feed reader, a mail client and a browser.

use url::Url;

use crate::text::strip_control;

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
}
