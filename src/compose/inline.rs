//! The digest's CSS written into each element's `style` attribute, for mail
//! clients that drop `<style>` (Gmail's apps for other accounts, many
//! webmails), with css-inline. The rules no attribute can hold (`@media`
//! queries: the phone layout and dark mode) stay in a `<style>` block for
//! the clients that read it.
//!
//! css-inline is built without its network and file features and told not
//! to load linked stylesheets: a template's `<link rel="stylesheet">` is
//! dropped, never fetched.

/// Whether `html` has a `<style>` block to inline. A digest without one is
/// left exactly as Tera wrote it (no reparse, no cost). Article bodies are
/// sanitised (no `<style>` survives) and text is escaped, so only a template
/// can write one.
pub fn has_style(html: &str) -> bool {
    html.as_bytes().windows(6).any(|w| w.eq_ignore_ascii_case(b"<style"))
}

/// `html` with its `<style>` rules inlined, the `@`-rules kept in a
/// `<style>` block; unchanged when it has none. The document is parsed and
/// written again by html5ever: text and attribute values come out escaped
/// the way [`escape_text`] and [`escape_attribute`] say.
pub fn inline_css(html: &str) -> Result<String, String> {
    if !has_style(html) {
        return Ok(html.to_owned());
    }
    let inliner = css_inline::CSSInliner::options()
        .load_remote_stylesheets(false)
        .keep_style_tags(false)
        .keep_link_tags(false)
        .keep_at_rules(true)
        .build();
    inliner.inline(html).map_err(|e| format!("cannot inline its CSS: {e}"))
}

/// Text as html5ever's serializer writes it in an element's text.
pub fn escape_text(input: &str) -> String {
    let mut out = String::with_capacity(input.len() + input.len() / 8);
    for c in input.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '\u{a0}' => out.push_str("&nbsp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            _ => out.push(c),
        }
    }
    out
}

/// Text as html5ever's serializer writes it in a (double-quoted) attribute
/// value.
pub fn escape_attribute(input: &str) -> String {
    let mut out = String::with_capacity(input.len() + input.len() / 8);
    for c in input.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '\u{a0}' => out.push_str("&nbsp;"),
            '"' => out.push_str("&quot;"),
            _ => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const DOC: &str = "<!doctype html><html><head><style>\
        .card { background: #ffffff; color: #1d1d1b; }\
        @media (prefers-color-scheme: dark) { .card { background: #1f1f1d !important; } }\
        </style></head><body><div class=\"card\" style=\"padding: 4px\">Hi</div></body></html>";

    #[test]
    fn rules_go_into_the_elements_and_media_queries_stay() {
        let out = inline_css(DOC).unwrap();
        assert!(out.contains("background: #ffffff"), "{out}");
        assert!(out.contains("padding: 4px"), "the element's own style is kept: {out}");
        assert!(out.contains("@media (prefers-color-scheme: dark)"), "{out}");
        assert_eq!(out.matches("<style").count(), 1, "{out}");
    }

    #[test]
    fn linked_stylesheets_are_never_loaded() {
        let html = "<html><head><link rel=\"stylesheet\" href=\"http://127.0.0.1:9/x.css\">\
                    <style>p { color: red }</style></head><body><p>x</p></body></html>";
        let out = inline_css(html).unwrap();
        assert!(!out.contains("<link"), "{out}");
        assert!(out.contains("color: red"), "{out}");
    }

    #[test]
    fn without_a_style_block_the_html_is_untouched() {
        let html = "Hello &#39;x&#39;\n";
        assert_eq!(inline_css(html).unwrap(), html);
    }

    #[test]
    fn the_escapes_match_what_the_serializer_writes() {
        let value = "Zoë & <O'Brien> \"Jr\"\u{a0}";
        let html = format!(
            "<html><head><style>p {{ margin: 0 }}</style></head><body><p title=\"{}\">{}</p></body></html>",
            crate::templates::escape_html(value),
            crate::templates::escape_html(value)
        );
        let out = inline_css(&html).unwrap();
        assert!(out.contains(&format!("title=\"{}\"", escape_attribute(value))), "{out}");
        assert!(out.contains(&format!(">{}</p>", escape_text(value))), "{out}");
    }
}
