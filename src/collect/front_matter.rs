//! Front matter: the block of TOML between `+++` lines or of YAML between
//! `---` lines that opens a Markdown article, read into one JSON map with
//! the line of each problem, and the dates it may hold.

use chrono::{DateTime, NaiveDate, Utc};
use serde_json::Value;

#[derive(Debug, Clone, Copy)]
pub(super) enum Format {
    Toml,
    Yaml,
}

pub(super) struct FrontMatter<'a> {
    pub(super) format: Format,
    pub(super) text: &'a str,
    /// 1-based line in the file of the front matter's first line.
    pub(super) first_line: usize,
    pub(super) body: &'a str,
}

pub(super) fn split_front_matter(text: &str) -> Result<FrontMatter<'_>, (Option<usize>, String)> {
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

pub(super) fn parse_toml(
    text: &str,
) -> Result<serde_json::Map<String, Value>, (Option<usize>, String)> {
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

pub(super) fn parse_yaml(
    text: &str,
) -> Result<serde_json::Map<String, Value>, (Option<usize>, String)> {
    if text.trim().is_empty() {
        return Ok(serde_json::Map::new());
    }
    let value: serde_norway::Value = serde_norway::from_str(text).map_err(|e| {
        let line = e.location().map(|l| l.line());
        (line, format!("YAML front matter: {e}"))
    })?;
    match yaml_to_json(value) {
        Value::Object(map) => Ok(map),
        _ => Err((Some(1), "front matter must be keys and values (`title: ...`)".into())),
    }
}

fn yaml_to_json(v: serde_norway::Value) -> Value {
    match v {
        serde_norway::Value::Null => Value::Null,
        serde_norway::Value::Bool(b) => Value::Bool(b),
        serde_norway::Value::Number(n) => n
            .as_i64()
            .map(Value::from)
            .or_else(|| n.as_f64().map(Value::from))
            .unwrap_or(Value::Null),
        serde_norway::Value::String(s) => Value::String(s),
        serde_norway::Value::Sequence(items) => {
            Value::Array(items.into_iter().map(yaml_to_json).collect())
        }
        serde_norway::Value::Mapping(m) => Value::Object(
            m.into_iter()
                .filter_map(|(k, v)| match k {
                    serde_norway::Value::String(k) => Some((k, yaml_to_json(v))),
                    _ => None,
                })
                .collect(),
        ),
        serde_norway::Value::Tagged(t) => yaml_to_json(t.value),
    }
}

pub(super) fn kind_of(v: &Value) -> &'static str {
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
pub(super) fn key_line(fm: &str, key: &str) -> Option<usize> {
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
pub(super) fn parse_date(text: &str) -> Option<DateTime<Utc>> {
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

pub(super) fn date_error(key: &str, value: &str) -> String {
    format!(
        "`{key}` is `{value}`: use RFC 3339 with a time zone (2026-11-24T07:00:00Z, 2026-11-24T08:00:00+01:00) or a date (2026-11-24)"
    )
}
