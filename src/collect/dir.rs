//! `dir` sources: a folder of Markdown files with front matter, TOML between
//! `+++` lines or YAML between `---` lines. `title` and `date` are required;
//! `updated`, `author`, `tags`, `summary`, `slug` and `draft` are optional.
//! A file that cannot be read is reported with its path and line and
//! skipped; the others are still collected.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use chrono::{DateTime, NaiveDate, Utc};
use serde_json::Value;

use super::sanitize::{clean_line, sanitize_html};
use super::Problem;
use crate::article::Article;
use crate::types::{BaseUrl, Slug};

/// Reads every Markdown file under `root`. Returns the articles, sorted by
/// file path, and a problem for each file that was skipped.
pub fn read_dir_source(
    source: &str,
    root: &Path,
    source_tags: &[String],
    base_url: &BaseUrl,
) -> Result<(Vec<Article>, Vec<Problem>), String> {
    if !root.is_dir() {
        return Err(format!("folder {} does not exist or is not a folder", root.display()));
    }
    let mut articles: Vec<Article> = Vec::new();
    let mut problems = Vec::new();
    let mut seen: HashMap<String, PathBuf> = HashMap::new();
    let walker = walkdir::WalkDir::new(root).follow_links(true).sort_by_file_name().into_iter();
    for entry in
        walker.filter_entry(|e| e.depth() == 0 || !e.file_name().to_string_lossy().starts_with('.'))
    {
        let entry = match entry {
            Ok(entry) => entry,
            Err(e) => {
                let path = e.path().map(Path::to_path_buf).unwrap_or_else(|| root.to_owned());
                problems.push(Problem::new(&path, None, format!("cannot read: {e}")));
                continue;
            }
        };
        if !entry.file_type().is_file() || !is_markdown(entry.path()) {
            continue;
        }
        let path = entry.path();
        let rel = path.strip_prefix(root).unwrap_or(path);
        let text = match std::fs::read(path) {
            Ok(bytes) => match String::from_utf8(bytes) {
                Ok(text) => text,
                Err(_) => {
                    problems.push(Problem::new(
                        path,
                        None,
                        "is not UTF-8 text; save it as UTF-8".into(),
                    ));
                    continue;
                }
            },
            Err(e) => {
                problems.push(Problem::new(path, None, format!("cannot read: {e}")));
                continue;
            }
        };
        // Whatever the Markdown or HTML parsers log while reading this file
        // (html5ever warns through `log`) names the file. A WARN span, so
        // it is on whenever warnings are shown.
        let span = tracing::warn_span!("article", source, file = %path.display()).entered();
        let parsed = parse_article(source, rel, &text, source_tags, base_url);
        drop(span);
        match parsed {
            Ok(None) => {} // a draft
            Ok(Some(article)) => {
                if let Some(other) = seen.get(&article.guid) {
                    problems.push(Problem::new(
                        path,
                        None,
                        format!(
                            "its slug `{}` is already used by {}; give one of them another slug",
                            article.guid,
                            other.display()
                        ),
                    ));
                    continue;
                }
                seen.insert(article.guid.clone(), path.to_owned());
                articles.push(article);
            }
            Err((line, message)) => problems.push(Problem::new(path, line, message)),
        }
    }
    Ok((articles, problems))
}

fn is_markdown(path: &Path) -> bool {
    matches!(path.extension().and_then(|e| e.to_str()), Some("md" | "markdown"))
}

/// Parses one file. `rel` is its path inside the source folder. Errors carry
/// the 1-based line in the file where known.
pub fn parse_article(
    source: &str,
    rel: &Path,
    text: &str,
    source_tags: &[String],
    base_url: &BaseUrl,
) -> Result<Option<Article>, (Option<usize>, String)> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let fm = split_front_matter(text)?;
    let fields = match fm.format {
        Format::Toml => {
            parse_toml(fm.text).map_err(|(line, m)| (line.map(|l| l + fm.first_line - 1), m))?
        }
        Format::Yaml => {
            parse_yaml(fm.text).map_err(|(line, m)| (line.map(|l| l + fm.first_line - 1), m))?
        }
    };
    let line_of = |key: &str| {
        key_line(fm.text, key).map(|l| l + fm.first_line - 1).or(Some(fm.first_line - 1))
    };
    let string = |key: &str| -> Result<Option<String>, (Option<usize>, String)> {
        match fields.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(other) => {
                Err((line_of(key), format!("`{key}` must be text, not {}", kind_of(other))))
            }
        }
    };

    if fields.get("draft") == Some(&Value::Bool(true)) {
        return Ok(None);
    }
    let title = string("title")?.map(|t| clean_line(&t)).unwrap_or_default();
    if title.is_empty() {
        return Err((line_of("title"), "`title` is required in the front matter".into()));
    }
    let date_text = string("date")?.ok_or_else(|| {
        (line_of("date"), "`date` is required in the front matter (RFC 3339 like 2026-11-24T07:00:00Z, or 2026-11-24)".into())
    })?;
    let published =
        parse_date(&date_text).ok_or_else(|| (line_of("date"), date_error("date", &date_text)))?;
    let updated = match string("updated")? {
        Some(u) => {
            Some(parse_date(&u).ok_or_else(|| (line_of("updated"), date_error("updated", &u)))?)
        }
        None => None,
    };
    let author = string("author")?.map(|a| clean_line(&a)).filter(|a| !a.is_empty());
    let summary = string("summary")?.map(|s| clean_line(&s)).filter(|s| !s.is_empty());
    let mut tags: Vec<String> = source_tags.to_vec();
    match fields.get("tags") {
        None | Some(Value::Null) => {}
        Some(Value::String(s)) => tags.extend(s.split(',').map(clean_line)),
        Some(Value::Array(items)) => {
            for item in items {
                match item {
                    Value::String(s) => tags.push(clean_line(s)),
                    other => {
                        return Err((
                            line_of("tags"),
                            format!("`tags` must be a list of text, found {}", kind_of(other)),
                        ))
                    }
                }
            }
        }
        Some(other) => {
            return Err((
                line_of("tags"),
                format!("`tags` must be a list of text, not {}", kind_of(other)),
            ))
        }
    }
    let mut unique = Vec::with_capacity(tags.len());
    for t in tags {
        if !t.is_empty() && !unique.contains(&t) {
            unique.push(t);
        }
    }

    let guid = match string("slug")? {
        Some(slug) => Slug::parse_path(&slug).map_err(|e| (line_of("slug"), e.to_string()))?.to_string(),
        None => path_slug(rel).ok_or_else(|| {
            (
                None,
                format!(
                    "the file name gives no URL slug (only a-z, 0-9 and '-' can be kept from `{}`): add slug = \"...\" to the front matter",
                    rel.display()
                ),
            )
        })?,
    };
    let url = base_url.join(&format!("{source}/{guid}/"));
    // Relative links in the Markdown are relative to the file's folder, whose
    // other files publish copies to {source}/{folder}/.
    let folder = rel.parent().map(|p| p.to_string_lossy().replace('\\', "/")).unwrap_or_default();
    let link_base = if folder.is_empty() {
        base_url.join(&format!("{source}/"))
    } else {
        base_url.join(&format!("{source}/{folder}/"))
    };
    let content_html = sanitize_html(&markdown_to_html(fm.body), &link_base);

    Ok(Some(Article {
        source: source.to_owned(),
        guid,
        url: url.to_string(),
        title,
        author,
        published,
        updated,
        summary,
        content_html,
        tags: unique,
    }))
}

#[derive(Debug, Clone, Copy)]
enum Format {
    Toml,
    Yaml,
}

struct FrontMatter<'a> {
    format: Format,
    text: &'a str,
    /// 1-based line in the file of the front matter's first line.
    first_line: usize,
    body: &'a str,
}

fn split_front_matter(text: &str) -> Result<FrontMatter<'_>, (Option<usize>, String)> {
    let first = text.lines().next().unwrap_or("").trim_end();
    let (format, fence) = match first {
        "+++" => (Format::Toml, "+++"),
        "---" => (Format::Yaml, "---"),
        _ => {
            return Err((
                Some(1),
                "no front matter: start the file with a +++ (TOML) or --- (YAML) line, then title and date, then the same line again".into(),
            ))
        }
    };
    let start = text.find('\n').map_or(text.len(), |i| i + 1);
    let mut offset = start;
    for line in text[start..].split_inclusive('\n') {
        if line.trim_end() == fence {
            return Ok(FrontMatter {
                format,
                text: &text[start..offset],
                first_line: 2,
                body: &text[offset + line.len()..],
            });
        }
        offset += line.len();
    }
    Err((Some(1), format!("the front matter opened with `{fence}` on line 1 is never closed")))
}

fn parse_toml(text: &str) -> Result<serde_json::Map<String, Value>, (Option<usize>, String)> {
    let table: toml::Table = text.parse().map_err(|e: toml::de::Error| {
        let line = e.span().map(|s| text[..s.start.min(text.len())].matches('\n').count() + 1);
        (line, format!("TOML front matter: {}", e.message().trim()))
    })?;
    match toml_to_json(toml::Value::Table(table)) {
        Value::Object(map) => Ok(map),
        _ => Err((Some(1), "front matter must be a table of keys".into())),
    }
}

fn toml_to_json(v: toml::Value) -> Value {
    match v {
        toml::Value::String(s) => Value::String(s),
        toml::Value::Integer(i) => Value::from(i),
        toml::Value::Float(f) => Value::from(f),
        toml::Value::Boolean(b) => Value::Bool(b),
        toml::Value::Datetime(d) => Value::String(d.to_string()),
        toml::Value::Array(a) => Value::Array(a.into_iter().map(toml_to_json).collect()),
        toml::Value::Table(t) => {
            Value::Object(t.into_iter().map(|(k, v)| (k, toml_to_json(v))).collect())
        }
    }
}

fn parse_yaml(text: &str) -> Result<serde_json::Map<String, Value>, (Option<usize>, String)> {
    if text.trim().is_empty() {
        return Ok(serde_json::Map::new());
    }
    let value: serde_yaml::Value = serde_yaml::from_str(text).map_err(|e| {
        let line = e.location().map(|l| l.line());
        (line, format!("YAML front matter: {e}"))
    })?;
    match yaml_to_json(value) {
        Value::Object(map) => Ok(map),
        _ => Err((Some(1), "front matter must be keys and values (`title: ...`)".into())),
    }
}

fn yaml_to_json(v: serde_yaml::Value) -> Value {
    match v {
        serde_yaml::Value::Null => Value::Null,
        serde_yaml::Value::Bool(b) => Value::Bool(b),
        serde_yaml::Value::Number(n) => n
            .as_i64()
            .map(Value::from)
            .or_else(|| n.as_f64().map(Value::from))
            .unwrap_or(Value::Null),
        serde_yaml::Value::String(s) => Value::String(s),
        serde_yaml::Value::Sequence(items) => {
            Value::Array(items.into_iter().map(yaml_to_json).collect())
        }
        serde_yaml::Value::Mapping(m) => Value::Object(
            m.into_iter()
                .filter_map(|(k, v)| match k {
                    serde_yaml::Value::String(k) => Some((k, yaml_to_json(v))),
                    _ => None,
                })
                .collect(),
        ),
        serde_yaml::Value::Tagged(t) => yaml_to_json(t.value),
    }
}

fn kind_of(v: &Value) -> &'static str {
    match v {
        Value::Null => "nothing",
        Value::Bool(_) => "true/false",
        Value::Number(_) => "a number",
        Value::String(_) => "text",
        Value::Array(_) => "a list",
        Value::Object(_) => "a table",
    }
}

/// 1-based line of `key` inside the front matter text.
fn key_line(fm: &str, key: &str) -> Option<usize> {
    fm.lines()
        .position(|line| {
            let line = line.trim_start().trim_start_matches('"');
            line.strip_prefix(key)
                .map(|rest| rest.trim_start_matches('"').trim_start())
                .is_some_and(|rest| rest.starts_with('=') || rest.starts_with(':'))
        })
        .map(|i| i + 1)
}

/// RFC 3339 (with offset), or a plain date taken as midnight UTC.
pub fn parse_date(text: &str) -> Option<DateTime<Utc>> {
    let text = text.trim();
    if let Ok(t) = DateTime::parse_from_rfc3339(text) {
        return Some(t.with_timezone(&Utc));
    }
    // TOML writes offset datetimes with a space as well.
    if let Ok(t) = DateTime::parse_from_rfc3339(&text.replacen(' ', "T", 1)) {
        return Some(t.with_timezone(&Utc));
    }
    NaiveDate::parse_from_str(text, "%Y-%m-%d")
        .ok()
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .map(|t| t.and_utc())
}

fn date_error(key: &str, value: &str) -> String {
    format!(
        "`{key}` is `{value}`: use RFC 3339 with a time zone (2026-11-24T07:00:00Z, 2026-11-24T08:00:00+01:00) or a date (2026-11-24)"
    )
}

/// The guid from a file's path: each folder and the file stem slugified.
fn path_slug(rel: &Path) -> Option<String> {
    let without_ext = rel.with_extension("");
    let mut parts = Vec::new();
    for part in without_ext.components() {
        let text = part.as_os_str().to_string_lossy();
        parts.push(Slug::slugify(&text)?.to_string());
    }
    (!parts.is_empty()).then(|| parts.join("/"))
}

fn markdown_to_html(markdown: &str) -> String {
    use pulldown_cmark::{html, Options, Parser};
    let options = Options::ENABLE_TABLES
        | Options::ENABLE_FOOTNOTES
        | Options::ENABLE_STRIKETHROUGH
        | Options::ENABLE_TASKLISTS;
    let mut out = String::with_capacity(markdown.len() * 3 / 2);
    html::push_html(&mut out, Parser::new_ext(markdown, options));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base() -> BaseUrl {
        BaseUrl::parse("https://news.example.com/").unwrap()
    }

    fn parse(rel: &str, text: &str) -> Result<Option<Article>, (Option<usize>, String)> {
        parse_article("blog", Path::new(rel), text, &["all".to_string()], &base())
    }

    #[test]
    fn toml_front_matter() {
        let a = parse(
            "2026/Hello World.md",
            "+++\ntitle = \"Hello\"\ndate = 2026-11-20T08:00:00Z\ntags = [\"a\", \"all\"]\n+++\nHi ![x](pic.png) <script>x</script>\n",
        )
        .unwrap()
        .unwrap();
        assert_eq!(a.guid, "2026/hello-world");
        assert_eq!(a.url, "https://news.example.com/blog/2026/hello-world/");
        assert_eq!(a.published.to_rfc3339(), "2026-11-20T08:00:00+00:00");
        assert_eq!(a.tags, vec!["all", "a"]);
        assert!(
            a.content_html.contains("https://news.example.com/blog/2026/pic.png"),
            "{}",
            a.content_html
        );
        assert!(!a.content_html.contains("script"));
    }

    #[test]
    fn yaml_front_matter_with_slug_and_plain_date() {
        let a = parse(
            "x.md",
            "---\ntitle: Olá «mundo»\ndate: 2026-11-20\nslug: hello/again\nauthor: Zé\n---\nBody\n",
        )
        .unwrap()
        .unwrap();
        assert_eq!(a.guid, "hello/again");
        assert_eq!(a.title, "Olá «mundo»");
        assert_eq!(a.author.as_deref(), Some("Zé"));
        assert_eq!(a.published.to_rfc3339(), "2026-11-20T00:00:00+00:00");
    }

    #[test]
    fn drafts_are_skipped() {
        assert!(parse("x.md", "+++\ntitle = \"x\"\ndate = 2026-11-20\ndraft = true\n+++\n")
            .unwrap()
            .is_none());
    }

    #[test]
    fn errors_name_the_line() {
        let (line, msg) =
            parse("x.md", "+++\ntitle = \"x\"\ndate = \"yesterday\"\n+++\n").unwrap_err();
        assert_eq!(line, Some(3));
        assert!(msg.contains("yesterday"), "{msg}");

        let (line, msg) =
            parse("x.md", "---\ntitle: x\ndate: 2026-11-20\ntags: [a\n---\n").unwrap_err();
        assert!(line.is_some_and(|l| l >= 4), "{line:?} {msg}");

        let (line, msg) = parse("x.md", "+++\ndate = 2026-11-20\n+++\n").unwrap_err();
        assert_eq!(line, Some(1));
        assert!(msg.contains("title"), "{msg}");

        let (line, msg) =
            parse("x.md", "+++\ntitle = \"x\"\ndate = 2026-11-20\nauthor = 3\n+++\n").unwrap_err();
        assert_eq!(line, Some(4));
        assert!(msg.contains("author"), "{msg}");

        let (line, _) = parse("x.md", "# No front matter\n").unwrap_err();
        assert_eq!(line, Some(1));

        let (_, msg) =
            parse("Привет.md", "+++\ntitle = \"x\"\ndate = 2026-11-20\n+++\n").unwrap_err();
        assert!(msg.contains("slug"), "{msg}");
    }
}
