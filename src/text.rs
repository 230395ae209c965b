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
}
