//! `dir` sources: a folder of Markdown files with front matter, TOML between
//! `+++` lines or YAML between `---` lines. `title` and `date` are required;
//! `updated`, `author`, `tags`, `summary`, `slug` and `draft` are optional.
//! A file that cannot be read is reported with its path and line and
//! skipped; the others are still collected. Which file owns which slug, and
//! which stored articles collect takes down, is settled by [`resolve`] from
//! the files read and the store's record of each article's file.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::article::Article;
use crate::store::{Withdrawal, Withdrawn};
use crate::text::clean_line;
use crate::types::{BaseUrl, Slug};

use super::front_matter::{
    date_error, key_line, kind_of, parse_date, parse_toml, parse_yaml, split_front_matter, Format,
};
use super::sanitize::sanitize_html;
use super::Problem;

/// Reads every Markdown file under `root` and settles who owns each slug
/// with no history: the first file in path order. Returns the articles,
/// sorted by file path, and a problem for each file that was skipped. What
/// `herald check` shows; collect settles slugs with the store's history
/// ([`read_dir_files`], then [`resolve`]).
pub fn read_dir_source(
    source: &str,
    root: &Path,
    source_tags: &[String],
    base_url: &BaseUrl,
) -> Result<(Vec<Article>, Vec<Problem>), String> {
    let read = read_dir_files(source, root, source_tags, base_url)?;
    let resolved = resolve(read, &HashMap::new());
    Ok((resolved.articles.into_iter().map(|(a, _)| a).collect(), resolved.problems))
}

/// Every Markdown file of a `dir` source, read.
#[derive(Debug)]
pub struct DirRead {
    /// The source's folder.
    pub root: PathBuf,
    /// In path order.
    pub files: Vec<DirFile>,
    /// Parts of the folder that could not be walked: whatever lies there
    /// was not seen, so nothing is taken down for being missing.
    pub unwalked: Vec<Problem>,
}

/// One Markdown file and what it gave.
#[derive(Debug)]
pub struct DirFile {
    /// Relative to the source's folder, `/`-separated.
    pub rel: String,
    pub read: FileRead,
}

#[derive(Debug)]
pub enum FileRead {
    /// An article, with the line of its `slug` key (`None` when the slug
    /// comes from the file's path).
    Article { article: Article, slug_line: Option<usize> },
    /// `draft = true`: the article the file owns is taken down.
    Draft,
    /// Could not be read or parsed: the article the file owns is left as
    /// it is, published or not.
    Broken(Problem),
}

/// Reads every Markdown file under `root`, in path order (hidden files and
/// folders skipped). Fails only when `root` is not a folder.
pub fn read_dir_files(
    source: &str,
    root: &Path,
    source_tags: &[String],
    base_url: &BaseUrl,
) -> Result<DirRead, String> {
    if !root.is_dir() {
        return Err(format!("folder {} does not exist or is not a folder", root.display()));
    }
    let mut read = DirRead { root: root.to_owned(), files: Vec::new(), unwalked: Vec::new() };
    let walker = walkdir::WalkDir::new(root).follow_links(true).sort_by_file_name().into_iter();
    for entry in
        walker.filter_entry(|e| e.depth() == 0 || !e.file_name().to_string_lossy().starts_with('.'))
    {
        let entry = match entry {
            Ok(entry) => entry,
            Err(e) => {
                let path = e.path().map(Path::to_path_buf).unwrap_or_else(|| root.to_owned());
                read.unwalked.push(Problem::new(&path, None, format!("cannot read: {e}")));
                continue;
            }
        };
        if !entry.file_type().is_file() || !is_markdown(entry.path()) {
            continue;
        }
        let path = entry.path();
        // Entries of a walk from `root` are under `root`.
        let Ok(rel) = path.strip_prefix(root) else { continue };
        let rel_text = rel.to_string_lossy().replace('\\', "/");
        let file = match std::fs::read(path) {
            Ok(bytes) => match String::from_utf8(bytes) {
                Ok(text) => read_file(source, path, rel, &text, source_tags, base_url),
                Err(_) => FileRead::Broken(Problem::new(
                    path,
                    None,
                    "is not UTF-8 text; save it as UTF-8".into(),
                )),
            },
            Err(e) => FileRead::Broken(Problem::new(path, None, format!("cannot read: {e}"))),
        };
        read.files.push(DirFile { rel: rel_text, read: file });
    }
    Ok(read)
}

fn read_file(
    source: &str,
    path: &Path,
    rel: &Path,
    text: &str,
    source_tags: &[String],
    base_url: &BaseUrl,
) -> FileRead {
    // Whatever the Markdown or HTML parsers log while reading this file
    // (html5ever warns through `log`) names the file. A WARN span, so
    // it is on whenever warnings are shown.
    let _span = tracing::warn_span!("article", source, file = %path.display()).entered();
    match parse_article(source, rel, text, source_tags, base_url) {
        Ok(None) => FileRead::Draft,
        Ok(Some(Parsed { article, slug_line })) => FileRead::Article { article, slug_line },
        Err((line, message)) => FileRead::Broken(Problem::new(path, line, message)),
    }
}

/// What a `dir` source's files give once slugs are settled.
#[derive(Debug, Default)]
pub struct Resolved {
    /// The articles to store, each with the file that owns it, in path order.
    pub articles: Vec<(Article, String)>,
    /// Stored articles to take down.
    pub withdrawals: Vec<Withdrawal>,
    /// Files skipped: broken ones, and newcomers refused a slug.
    pub problems: Vec<Problem>,
}

/// Settles which file owns each slug. `owners` is the store's history: the
/// file that owns each stored article, by guid (`None`: unknown).
///
/// First come keeps its slug: a file that owns a slug keeps it while it
/// exists and claims it (a draft or a broken file still holds it), and any
/// other file claiming it is refused, with its path and the line of its
/// `slug` key. A slug whose owner is gone or claims another slug is free,
/// and the first claimant in path order takes it. A stored article nobody
/// holds any more is withdrawn as deleted, unless part of the folder could
/// not be walked (or, for an article whose file was never recorded, some
/// file could not be read): then it may only be out of sight.
pub fn resolve(read: DirRead, owners: &HashMap<String, Option<String>>) -> Resolved {
    let mut out = Resolved { problems: read.unwalked, ..Resolved::default() };
    let walked = out.problems.is_empty();
    let by_path: HashMap<&str, &FileRead> =
        read.files.iter().map(|f| (f.rel.as_str(), &f.read)).collect();
    let all_read = !read.files.iter().any(|f| matches!(f.read, FileRead::Broken(_)));

    // Slugs that stay with the file that owns them.
    let mut taken: HashMap<&str, &str> = HashMap::new();
    let mut stored: Vec<(&String, &Option<String>)> = owners.iter().collect();
    stored.sort();
    for (guid, path) in &stored {
        let Some(path) = path.as_deref() else { continue };
        let holds = match by_path.get(path) {
            Some(FileRead::Broken(_)) => true,
            Some(FileRead::Draft) => {
                out.withdrawals
                    .push(Withdrawal { guid: (*guid).clone(), reason: Withdrawn::Draft });
                true
            }
            Some(FileRead::Article { article, .. }) => article.guid == **guid,
            None => false,
        };
        if holds {
            taken.insert(guid.as_str(), path);
        }
    }

    // Claims, in path order.
    let held: std::collections::HashSet<&str> = taken.keys().copied().collect();
    let mut winners: Vec<usize> = Vec::new();
    for (i, file) in read.files.iter().enumerate() {
        let FileRead::Article { article, slug_line } = &file.read else { continue };
        match taken.get(article.guid.as_str()) {
            Some(owner) if *owner == file.rel => winners.push(i),
            Some(owner) => out.problems.push(Problem::new(
                &read.root.join(&file.rel),
                *slug_line,
                format!(
                    "its slug `{}` belongs to {}, {}; this file was skipped: give it another slug",
                    article.guid,
                    read.root.join(owner).display(),
                    if held.contains(article.guid.as_str()) {
                        "whose article it is"
                    } else {
                        "which claims it too and comes first"
                    }
                ),
            )),
            None => {
                taken.insert(&article.guid, &file.rel);
                winners.push(i);
            }
        }
    }

    // Stored articles nobody holds: their file is gone.
    for (guid, path) in &stored {
        if taken.contains_key(guid.as_str()) || !walked || (path.is_none() && !all_read) {
            continue;
        }
        out.withdrawals.push(Withdrawal { guid: (*guid).clone(), reason: Withdrawn::Deleted });
    }

    let mut files = read.files;
    let mut winners = winners.into_iter().peekable();
    for (i, file) in files.drain(..).enumerate() {
        match file.read {
            FileRead::Article { article, .. } if winners.peek() == Some(&i) => {
                winners.next();
                out.articles.push((article, file.rel));
            }
            FileRead::Broken(problem) => out.problems.push(problem),
            _ => {}
        }
    }
    out.problems.sort_by(|a, b| a.path.cmp(&b.path).then(a.line.cmp(&b.line)));
    out
}

fn is_markdown(path: &Path) -> bool {
    matches!(path.extension().and_then(|e| e.to_str()), Some("md" | "markdown"))
}

/// A file's article, with the line of its `slug` key.
#[derive(Debug)]
pub struct Parsed {
    pub article: Article,
    /// `None` when the slug comes from the file's path.
    pub slug_line: Option<usize>,
}

/// Parses one file; `None` for a draft. `rel` is its path inside the
/// source folder. Errors carry the 1-based line in the file where known.
pub fn parse_article(
    source: &str,
    rel: &Path,
    text: &str,
    source_tags: &[String],
    base_url: &BaseUrl,
) -> Result<Option<Parsed>, (Option<usize>, String)> {
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

    let slug_line = fields.get("slug").and(line_of("slug"));
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

    let article = Article {
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
    };
    Ok(Some(Parsed { article, slug_line }))
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
            .map(|p| p.map(|p| p.article))
    }

    /// A folder read: each file `(rel, slug)` is an article with that slug
    /// (its `slug` key on line 4), `(rel, "draft")` a draft, `(rel, "broken")`
    /// a file that does not parse.
    fn folder(files: &[(&str, &str)]) -> DirRead {
        let files = files
            .iter()
            .map(|(rel, what)| DirFile {
                rel: (*rel).to_owned(),
                read: match *what {
                    "draft" => FileRead::Draft,
                    "broken" => {
                        FileRead::Broken(Problem::new(Path::new(rel), Some(2), "bad".into()))
                    }
                    slug => {
                        let text = format!(
                            "+++\ntitle = \"{rel}\"\ndate = 2026-11-20\nslug = \"{slug}\"\n+++\n"
                        );
                        let parsed = parse_article("blog", Path::new(rel), &text, &[], &base())
                            .unwrap()
                            .unwrap();
                        FileRead::Article { article: parsed.article, slug_line: parsed.slug_line }
                    }
                },
            })
            .collect();
        DirRead { root: PathBuf::from("/site/content"), files, unwalked: Vec::new() }
    }

    fn owners(pairs: &[(&str, Option<&str>)]) -> HashMap<String, Option<String>> {
        pairs.iter().map(|(g, p)| ((*g).to_owned(), p.map(str::to_owned))).collect()
    }

    type Kept = Vec<(String, String)>;

    /// (title, file) of each article kept, and each withdrawal.
    fn outcome(r: &Resolved) -> (Kept, Vec<(String, Withdrawn)>) {
        (
            r.articles.iter().map(|(a, f)| (a.title.clone(), f.clone())).collect(),
            r.withdrawals.iter().map(|w| (w.guid.clone(), w.reason)).collect(),
        )
    }

    #[test]
    fn first_come_keeps_its_slug() {
        // a-new.md sorts first but market-day.md owned the slug already.
        let read = folder(&[("a-new.md", "market-day"), ("market-day.md", "market-day")]);
        let r = resolve(read, &owners(&[("market-day", Some("market-day.md"))]));
        let (kept, withdrawn) = outcome(&r);
        assert_eq!(kept, [("market-day.md".to_string(), "market-day.md".to_string())]);
        assert!(withdrawn.is_empty());
        assert_eq!(r.problems.len(), 1);
        let p = &r.problems[0];
        assert_eq!((p.path.as_str(), p.line), ("/site/content/a-new.md", Some(4)));
        assert!(p.message.contains("/site/content/market-day.md"), "{}", p.message);

        // With no history, the first in path order wins.
        let read = folder(&[("a-new.md", "market-day"), ("market-day.md", "market-day")]);
        let r = resolve(read, &HashMap::new());
        assert_eq!(outcome(&r).0[0].1, "a-new.md");
        assert_eq!(r.problems[0].path, "/site/content/market-day.md");
    }

    #[test]
    fn a_slug_whose_owner_is_gone_or_moved_on_is_free() {
        // The owner was deleted: the first claimant takes the slug.
        let read = folder(&[("b.md", "x"), ("c.md", "x")]);
        let r = resolve(read, &owners(&[("x", Some("a.md"))]));
        assert_eq!(outcome(&r).0, [("b.md".to_string(), "b.md".to_string())]);
        assert!(outcome(&r).1.is_empty(), "the article lives on in b.md");
        assert_eq!(r.problems.len(), 1);

        // The owner claims another slug now: its old one is gone.
        let read = folder(&[("a.md", "y")]);
        let r = resolve(read, &owners(&[("x", Some("a.md"))]));
        assert_eq!(outcome(&r).1, [("x".to_string(), Withdrawn::Deleted)]);
    }

    #[test]
    fn drafts_come_down_and_broken_files_hold_theirs() {
        let read = folder(&[("a.md", "draft"), ("b.md", "broken"), ("c.md", "a"), ("d.md", "b")]);
        let r = resolve(read, &owners(&[("a", Some("a.md")), ("b", Some("b.md"))]));
        let (kept, withdrawn) = outcome(&r);
        assert!(kept.is_empty(), "neither slug is free: {kept:?}");
        assert_eq!(withdrawn, [("a".to_string(), Withdrawn::Draft)], "b stays up");
        let places: Vec<(&str, Option<usize>)> =
            r.problems.iter().map(|p| (p.path.as_str(), p.line)).collect();
        assert_eq!(
            places,
            [("/site/content/c.md", Some(4)), ("/site/content/d.md", Some(4)), ("b.md", Some(2))]
        );
    }

    #[test]
    fn nothing_comes_down_for_what_could_not_be_seen() {
        // Part of the folder could not be walked.
        let mut read = folder(&[("a.md", "a")]);
        read.unwalked.push(Problem::new(Path::new("/site/content/2025"), None, "denied".into()));
        let r = resolve(read, &owners(&[("a", Some("a.md")), ("old", Some("2025/old.md"))]));
        assert!(outcome(&r).1.is_empty());
        assert_eq!(r.problems.len(), 1);

        // An article stored before herald recorded files may belong to the
        // file that does not parse.
        let read = folder(&[("a.md", "a"), ("b.md", "broken")]);
        let r = resolve(read, &owners(&[("a", None), ("legacy", None)]));
        assert_eq!(outcome(&r).0.len(), 1);
        assert!(outcome(&r).1.is_empty());
        // Once every file parses, it is known to be gone.
        let read = folder(&[("a.md", "a")]);
        let r = resolve(read, &owners(&[("a", None), ("legacy", None)]));
        assert_eq!(outcome(&r).1, [("legacy".to_string(), Withdrawn::Deleted)]);
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
