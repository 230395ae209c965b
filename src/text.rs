//! One-line text as it may go into a title, a name, a subject or a header:
//! the characters herald never lets through there. A leaf: it depends on
//! nothing of herald's, so every room can use it.

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
/// bidi controls removed, runs of ordinary white space made one space. A
/// bidi override (U+202E) in a name or a subject would make what follows it
/// read backwards, in a greeting, a header or a mail client's list of mails.
/// Deliberate spacing (a no-break space, a narrow one) stays as written: see
/// [`is_collapsible`].
pub fn clean_line(text: &str) -> String {
    words(&strip_control(text))
        .map(|word| word.chars().filter(|c| !is_bidi_control(*c)).collect::<String>())
        .filter(|word| !word.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

/// Whether `c` is white space that only separates words, and so collapses
/// to one space where text is put on one line: the ASCII white space (space,
/// tab, line feed, vertical tab, form feed, carriage return; HTML's and
/// CSS's collapsible white space) and the Unicode line breaks (U+0085,
/// U+2028, U+2029). Not the spaces writers choose on purpose, which Rust's
/// `char::is_whitespace` counts in: the no-break spaces (U+00A0, U+202F,
/// U+2007), the fixed-width spaces (U+2000 to U+200A), the medium
/// mathematical space (U+205F) and the ideographic space (U+3000), which
/// Chinese and Japanese text uses deliberately.
pub fn is_collapsible(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\n' | '\u{b}' | '\u{c}' | '\r' | '\u{85}' | '\u{2028}' | '\u{2029}')
}

/// The words of `text`: what lies between runs of [`is_collapsible`] white
/// space (like `str::split_whitespace`, which also splits at no-break spaces).
pub fn words(text: &str) -> impl Iterator<Item = &str> {
    text.split(is_collapsible).filter(|w| !w.is_empty())
}

/// `text` without collapsible white space at either end.
pub fn trim(text: &str) -> &str {
    text.trim_matches(is_collapsible)
}

/// The invisible characters that change the direction of the text around
/// them (Unicode's embeddings, overrides, isolates and marks).
pub fn is_bidi_control(c: char) -> bool {
    matches!(c, '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}' | '\u{200E}' | '\u{200F}' | '\u{061C}')
}

/// The error and all its causes, joined, with whitespace collapsed.
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut parts = vec![e.to_string()];
    let mut source = e.source();
    while let Some(s) = source {
        parts.push(s.to_string());
        source = s.source();
    }
    parts.join(": ").split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strips_controls_only() {
        assert_eq!(strip_control("a\u{1}b\u{b}c\td\n"), "abc\td\n");
        assert_eq!(clean_line(" Привет \u{7}  мир 🌊 "), "Привет мир 🌊");
        // Bidi overrides and isolates would reorder what follows them in a
        // subject, a name or a title.
        assert_eq!(clean_line("Sale \u{202e}txt.exe\u{202c} today"), "Sale txt.exe today");
        assert_eq!(clean_line("a\u{2067}b\u{2069}c\u{200e}"), "abc");
    }

    #[test]
    fn deliberate_spaces_stay_and_ordinary_ones_collapse() {
        let title = "Le port\u{a0}: 7\u{202f}h, 1\u{2007}000 t, 東京\u{3000}駅";
        assert_eq!(clean_line(title), title);
        assert_eq!(clean_line(" a \t\r\n b\u{2028}c\u{2029}d \u{c} "), "a b c d");
        assert_eq!(words("x\u{a0}y  z").collect::<Vec<_>>(), ["x\u{a0}y", "z"]);
        assert_eq!(trim("\n a\u{a0} "), "a\u{a0}");
    }
}
