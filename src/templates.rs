//! The Tera templates herald renders: the digest (HTML and text) and the
//! article page. The site's `templates/` folder overrides the built-in copies,
//! which ship inside the binary so herald always has something to render.
//!
//! Tera autoescapes by file suffix: `digest.html` is escaped, `digest.txt` is
//! not. Tera's `get_env` function is replaced by one that fails, so an
//! operator's template can never read secrets from the environment.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use tera::Tera;

use crate::text::error_chain;

/// Templates herald knows, with their built-in text.
pub const BUILTIN: &[(&str, &str)] = &[
    ("digest.html", include_str!("../templates/digest.html")),
    ("digest.txt", include_str!("../templates/digest.txt")),
    ("confirm.html", include_str!("../templates/confirm.html")),
    ("confirm.txt", include_str!("../templates/confirm.txt")),
    ("manage.html", include_str!("../templates/manage.html")),
    ("manage.txt", include_str!("../templates/manage.txt")),
    // The parent before the pages that extend it.
    ("web/base.html", include_str!("../templates/web/base.html")),
    ("web/article.html", include_str!("../templates/web/article.html")),
    ("web/archive.html", include_str!("../templates/web/archive.html")),
    ("web/edition.html", include_str!("../templates/web/edition.html")),
    ("web/index.html", include_str!("../templates/web/index.html")),
    ("web/subscribe.html", include_str!("../templates/web/subscribe.html")),
    ("web/notice.html", include_str!("../templates/web/notice.html")),
    ("web/confirm.html", include_str!("../templates/web/confirm.html")),
    ("web/unsubscribe.html", include_str!("../templates/web/unsubscribe.html")),
    ("web/preferences.html", include_str!("../templates/web/preferences.html")),
    ("web/manage.html", include_str!("../templates/web/manage.html")),
];

/// Templates herald renders only when the site has them, with no built-in
/// fallback: without them, that mail is not sent. `herald init` writes these
/// copies.
pub const OPTIONAL: &[(&str, &str)] = &[
    ("welcome.html", include_str!("../templates/welcome.html")),
    ("welcome.txt", include_str!("../templates/welcome.txt")),
];

#[derive(Debug, Clone, thiserror::Error)]
#[error("{place}: {message}")]
pub struct TemplateError {
    /// `path:line:column` where known, else the path.
    pub place: String,
    pub message: String,
}

/// The loaded templates, which of them fell back to the built-in copy, and
/// which could not be loaded. A broken template leaves out only itself (and
/// the templates that extend it): each stage asks for the ones it needs
/// ([`Templates::require`]), so a typo in the digest stops compose and
/// deliver, not collect and publish.
#[derive(Clone)]
pub struct Templates {
    pub tera: Tera,
    pub builtin_used: Vec<&'static str>,
    pub broken: Vec<(&'static str, TemplateError)>,
}

/// The templates `publish` renders.
pub const PAGES: &[&str] =
    &["web/article.html", "web/archive.html", "web/edition.html", "web/index.html"];
/// The templates `compose` and `deliver` render.
pub const DIGEST: &[&str] = &["digest.html", "digest.txt"];

impl Templates {
    /// Whether the template `name` is loaded (an optional one is only when
    /// the site has it).
    pub fn has(&self, name: &str) -> bool {
        self.tera.get_template_names().any(|n| n == name)
    }

    /// `Ok` when every template in `names` loaded; else each one's problem,
    /// on one line each.
    pub fn require(&self, names: &[&str]) -> Result<(), String> {
        let problems: Vec<String> = self
            .broken
            .iter()
            .filter(|(name, _)| names.contains(name))
            .map(|(_, e)| e.to_string())
            .collect();
        if problems.is_empty() {
            Ok(())
        } else {
            Err(format!(
                "{} (fix the template; `herald check` lists every template problem)",
                problems.join("; ")
            ))
        }
    }
}

/// Adds one template, or notes why it cannot be. Tera keeps a template that
/// failed to load and then refuses every later one: each is tried on a copy,
/// kept only when it loads.
fn add(
    tera: &mut tera::Tera,
    broken: &mut Vec<(&'static str, TemplateError)>,
    name: &'static str,
    text: &str,
    source: &Path,
) {
    let mut trial = tera.clone();
    match trial.add_raw_template(name, text) {
        Ok(()) => *tera = trial,
        Err(e) => broken.push((name, tera_error(source, &e))),
    }
}

/// Loads every template, from `dir` where the file exists, else built in.
/// A template that cannot be read or parsed, or extends one that could not,
/// is left out and listed in [`Templates::broken`].
pub fn load(dir: &Path) -> Templates {
    let mut tera = Tera::default();
    let mut builtin_used = Vec::new();
    let mut broken = Vec::new();
    // In BUILTIN's order, parents before the pages that extend them.
    for (name, builtin) in BUILTIN {
        let path = dir.join(name);
        let (text, source) = match std::fs::read_to_string(&path) {
            Ok(text) => (text, path.clone()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                builtin_used.push(*name);
                (builtin.to_string(), PathBuf::from(format!("(built-in) {name}")))
            }
            Err(e) => {
                let error =
                    TemplateError { place: path.display().to_string(), message: e.to_string() };
                broken.push((*name, error));
                continue;
            }
        };
        add(&mut tera, &mut broken, name, &text, &source);
    }
    // Optional ones only from the site's folder.
    for (name, _) in OPTIONAL {
        let path = dir.join(name);
        let text = match std::fs::read_to_string(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => {
                let error =
                    TemplateError { place: path.display().to_string(), message: e.to_string() };
                broken.push((*name, error));
                continue;
            }
        };
        add(&mut tera, &mut broken, name, &text, &path);
    }
    disable_env(&mut tera);
    tera.register_filter("wrap", wrap_filter);
    tera.set_escape_fn(escape_html);
    Templates { tera, builtin_used, broken }
}

/// Renders a one-line template string (never autoescaped).
pub fn render_string(text: &str, context: &tera::Context) -> Result<String, String> {
    let mut tera = Tera::default();
    disable_env(&mut tera);
    tera.add_raw_template("subject", text).map_err(|e| error_chain(&e))?;
    tera.render("subject", context).map_err(|e| error_chain(&e))
}

/// HTML escaping for `.html` templates: the five characters that matter in
/// text and quoted attributes. Tera's default also escapes `/`, which turns
/// every URL into `https:&#x2F;&#x2F;…`: valid, but unreadable in mail source.
pub fn escape_html(input: &str) -> String {
    let mut out = String::with_capacity(input.len() + input.len() / 8);
    for c in input.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            _ => out.push(c),
        }
    }
    out
}

/// The `wrap` filter: `{{ text | wrap(width=72) }}` for the plain-text
/// digest (see [`wrap`]).
fn wrap_filter(
    value: &tera::Value,
    args: &HashMap<String, tera::Value>,
) -> tera::Result<tera::Value> {
    let text = value.as_str().ok_or_else(|| tera::Error::msg("wrap takes text"))?;
    let width = match args.get("width") {
        None => 72,
        Some(w) => w
            .as_u64()
            .and_then(|w| usize::try_from(w).ok())
            .filter(|w| *w > 0)
            .ok_or_else(|| tera::Error::msg("wrap: width must be a whole number above 0"))?,
    };
    Ok(wrap(text, width).into())
}

/// `text` with each line broken at spaces so that none is longer than
/// `width` characters, unless one word is (a long URL stays whole). Only
/// the ordinary space breaks: a no-break space (U+00A0, U+202F) keeps its
/// words together, as the writer meant.
pub fn wrap(text: &str, width: usize) -> String {
    let mut out = String::with_capacity(text.len() + text.len() / width.max(1));
    for (i, line) in text.split('\n').enumerate() {
        if i > 0 {
            out.push('\n');
        }
        let mut column = 0;
        for word in line.split(' ').filter(|w| !w.is_empty()) {
            let len = word.chars().count();
            if column > 0 && column + 1 + len > width {
                out.push('\n');
                column = 0;
            } else if column > 0 {
                out.push(' ');
                column += 1;
            }
            out.push_str(word);
            column += len;
        }
    }
    out
}

fn disable_env(tera: &mut Tera) {
    tera.register_function("get_env", |_: &HashMap<String, tera::Value>| {
        Err(tera::Error::msg(
            "get_env is disabled in herald templates: templates must not read the environment",
        ))
    });
}

/// A Tera error as one line: the whole cause chain, and the template's
/// line and column where the parser gives them.
pub fn tera_error(path: &Path, e: &tera::Error) -> TemplateError {
    let message = error_chain(e);
    // Tera's parse errors carry the pest position as ` --> LINE:COL`.
    let position = message.split("--> ").nth(1).and_then(|rest| {
        let pos: String = rest.chars().take_while(|c| c.is_ascii_digit() || *c == ':').collect();
        (!pos.is_empty()).then_some(pos)
    });
    let place = match position {
        Some(pos) => format!("{}:{}", path.display(), pos.trim_end_matches(':')),
        None => path.display().to_string(),
    };
    TemplateError { place, message }
}

/// The `site` object every template sees.
pub fn site_context(config: &crate::Config) -> tera::Value {
    serde_json::json!({
        "title": config.site.title,
        "base_url": config.site.base_url.as_str(),
        "language": config.site.language,
        "direction": config.site.direction.as_str(),
        "author": config.site.author,
        "description": config.site.description,
        "postal_address": config.site.postal_address,
        // The sign-up form, when it offers a list.
        "subscribe_url": config
            .lists
            .iter()
            .any(|l| l.public)
            .then(|| config.site.base_url.join("subscribe").to_string()),
    })
}

/// The `article` object templates see: the stored fields plus
/// `published_date` (YYYY-MM-DD) and `summary` always set (the first words
/// of the text when the source gave none).
pub fn article_context(a: &crate::article::StoredArticle) -> tera::Value {
    let summary = a.article.summary.clone().unwrap_or_else(|| {
        crate::article::first_words(&crate::article::html_to_text(&a.article.content_html), 40)
    });
    serde_json::json!({
        "id": a.id,
        "source": a.article.source,
        "url": a.article.url,
        "title": a.article.title,
        "author": a.article.author,
        "published": a.article.published.to_rfc3339(),
        "published_date": a.article.published.format("%Y-%m-%d").to_string(),
        "updated": a.article.updated.map(|u| u.to_rfc3339()),
        "summary": summary,
        "content_html": a.article.content_html,
        "tags": a.article.tags,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtins_load_and_env_is_closed() {
        let dir = tempfile::tempdir().unwrap();
        let t = load(dir.path());
        assert!(t.broken.is_empty());
        assert_eq!(t.builtin_used.len(), BUILTIN.len());
        let err = render_string("{{ get_env(name=\"HOME\") }}", &tera::Context::new()).unwrap_err();
        assert!(err.contains("get_env is disabled"), "{err}");
    }

    #[test]
    fn optional_templates_load_only_from_the_site() {
        let dir = tempfile::tempdir().unwrap();
        let t = load(dir.path());
        assert!(!t.has("welcome.html") && !t.has("welcome.txt"));
        assert!(t.has("manage.html"));
        std::fs::write(dir.path().join("welcome.html"), "Hi {{ email }}").unwrap();
        std::fs::write(dir.path().join("welcome.txt"), "{% if %}").unwrap();
        let t = load(dir.path());
        assert!(t.has("welcome.html"));
        assert!(!t.has("welcome.txt"));
        assert_eq!(t.broken.len(), 1, "{:?}", t.broken.iter().map(|b| b.0).collect::<Vec<_>>());
        assert!(t.broken[0].1.place.contains("welcome.txt:1:"), "{}", t.broken[0].1.place);
    }

    #[test]
    fn wrap_breaks_at_spaces_only() {
        assert_eq!(wrap("one two three four", 9), "one two\nthree\nfour");
        assert_eq!(
            wrap("a https://example.com/a/very/long/path b", 10),
            "a\nhttps://example.com/a/very/long/path\nb"
        );
        assert_eq!(wrap("7\u{202f}h\u{a0}30 sharp", 5), "7\u{202f}h\u{a0}30\nsharp");
        assert_eq!(wrap("first\nsecond line", 6), "first\nsecond\nline");
    }

    #[test]
    fn syntax_errors_name_file_and_line() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("digest.txt"), "line one\n{% for x in %}\n{% endfor %}\n")
            .unwrap();
        let t = load(dir.path());
        assert_eq!(t.broken.len(), 1);
        let place = &t.broken[0].1.place;
        assert!(place.contains("digest.txt:2:"), "{place}");
    }

    #[test]
    fn a_broken_template_leaves_out_only_itself_and_what_extends_it() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("web")).unwrap();
        std::fs::write(dir.path().join("digest.html"), "{{ oops }").unwrap();
        std::fs::write(dir.path().join("web/base.html"), "{% block main %}").unwrap();
        let t = load(dir.path());
        assert!(t.require(DIGEST).unwrap_err().contains("digest.html:1:"));
        assert!(t.require(PAGES).is_ok(), "the article pages do not need the digest");
        // The pages that extend the broken base are left out with it.
        let broken: Vec<&str> = t.broken.iter().map(|(name, _)| *name).collect();
        for name in ["digest.html", "web/base.html", "web/subscribe.html", "web/notice.html"] {
            assert!(broken.contains(&name), "{name}: {broken:?}");
        }
        assert!(!broken.contains(&"digest.txt"), "{broken:?}");
        assert!(t.tera.get_template_names().any(|name| name == "digest.txt"));
    }
}
