//! `herald check --feeds`: reads the published feeds back and applies the
//! rules feed validators (the W3C Feed Validation Service) apply that matter
//! to readers: well-formed XML, every required element, dates a reader can
//! parse (RFC 822 in RSS, RFC 3339 in Atom and JSON Feed), stable ids,
//! absolute URLs, self links that point at the file itself. Each problem is
//! reported as `path:line: message`.

use std::path::{Path, PathBuf};

use quick_xml::events::Event;
use quick_xml::Reader;

use crate::types::BaseUrl;

/// An element of a feed document, with the line it starts on.
#[derive(Debug, Default)]
struct Node {
    name: String,
    attrs: Vec<(String, String)>,
    text: String,
    line: usize,
    children: Vec<Node>,
}

impl Node {
    fn child(&self, name: &str) -> Option<&Node> {
        self.children.iter().find(|c| c.name == name)
    }
    fn all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a Node> + 'a {
        self.children.iter().filter(move |c| c.name == name)
    }
    fn attr(&self, name: &str) -> Option<&str> {
        self.attrs.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }
}

/// Every problem in the feeds under `output_dir`.
pub fn check_feeds(output_dir: &Path, base_url: &BaseUrl, hub: Option<&url::Url>) -> Vec<String> {
    let mut problems = Vec::new();
    if !output_dir.join("feed.xml").is_file() {
        problems.push(format!("{}: no feed.xml: run `herald publish` first", output_dir.display()));
        return problems;
    }
    let mut files: Vec<PathBuf> = walkdir::WalkDir::new(output_dir)
        .into_iter()
        .filter_map(Result::ok)
        .map(|e| e.into_path())
        .filter(|p| {
            let name = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
            (name.ends_with(".xml") || name.ends_with(".json"))
                && (name.starts_with("feed") || name.starts_with("atom"))
        })
        .collect();
    files.sort();
    // (file, [(link, id)]) of each XML feed, to check that an article has
    // the same id in every format.
    let mut ids: Vec<(PathBuf, Vec<EntryId>)> = Vec::new();
    for path in files {
        let rel =
            path.strip_prefix(output_dir).unwrap_or(&path).to_string_lossy().replace('\\', "/");
        let url = base_url.join(&rel).to_string();
        let mut say = |line: usize, message: String| {
            problems.push(format!("{}:{line}: {message}", path.display()))
        };
        let Ok(text) = std::fs::read_to_string(&path) else {
            say(1, "cannot read the file as UTF-8".into());
            continue;
        };
        if rel.ends_with(".json") {
            check_json(&text, &url, &mut say);
            continue;
        }
        match parse(&text) {
            Err((line, message)) => say(line, format!("not well-formed XML: {message}")),
            Ok(root) => match root.name.as_str() {
                "rss" => {
                    check_rss(&root, &url, &mut say);
                    if let Some(channel) = root.child("channel") {
                        check_hub(channel.all("atom:link"), channel.line, hub, &mut say);
                        ids.push((path.clone(), collect_ids(channel.all("item"), "guid")));
                    }
                }
                "feed" => {
                    check_atom(&root, &url, &mut say);
                    check_hub(root.all("link"), root.line, hub, &mut say);
                    ids.push((path.clone(), collect_ids(root.all("entry"), "id")));
                }
                other => say(root.line, format!("not a feed: the root element is <{other}>")),
            },
        }
    }
    // RSS guid and Atom id of the same article (same link) must agree, or
    // a reader that switches formats sees every article again.
    let mut seen: std::collections::HashMap<&str, (&Path, &str)> = std::collections::HashMap::new();
    for (path, entries) in &ids {
        for (link, id, line) in entries {
            match seen.get(link.as_str()) {
                Some((other, other_id)) if other_id != id => problems.push(format!(
                    "{}:{line}: the article {link} has the id `{id}` here but `{other_id}` in {}",
                    path.display(),
                    other.display()
                )),
                Some(_) => {}
                None => {
                    seen.insert(link, (path, id));
                }
            }
        }
    }
    problems
}

/// (link, id, line) of an item or entry.
type EntryId = (String, String, usize);

/// (link, id, line) of each item or entry.
fn collect_ids<'a>(entries: impl Iterator<Item = &'a Node>, id_name: &str) -> Vec<EntryId> {
    entries
        .filter_map(|e| {
            let id = e.child(id_name)?;
            let link = match e.child("link") {
                Some(l) if !l.text.trim().is_empty() => l.text.trim().to_owned(),
                _ => e
                    .all("link")
                    .find(|l| l.attr("rel").unwrap_or("alternate") == "alternate")?
                    .attr("href")?
                    .to_owned(),
            };
            Some((link, id.text.trim().to_owned(), id.line))
        })
        .collect()
}

fn check_hub<'a>(
    mut links: impl Iterator<Item = &'a Node>,
    line: usize,
    hub: Option<&url::Url>,
    say: &mut impl FnMut(usize, String),
) {
    if let Some(hub) = hub {
        if !links.any(|l| l.attr("rel") == Some("hub") && l.attr("href") == Some(hub.as_str())) {
            say(
                line,
                format!(
                    "no hub link (<link rel=\"hub\" href=\"{hub}\"/>) although feeds.hub is set"
                ),
            );
        }
    }
}

fn parse(text: &str) -> Result<Node, (usize, String)> {
    let line_at = |pos: u64| text[..(pos as usize).min(text.len())].matches('\n').count() + 1;
    let mut reader = Reader::from_str(text);
    let mut stack: Vec<Node> = vec![Node::default()];
    loop {
        let pos = reader.buffer_position();
        match reader.read_event() {
            Err(e) => return Err((line_at(reader.error_position()), e.to_string())),
            Ok(Event::Eof) => break,
            Ok(event @ (Event::Start(_) | Event::Empty(_))) => {
                let (e, empty) = match &event {
                    Event::Start(e) => (e, false),
                    Event::Empty(e) => (e, true),
                    _ => unreachable!("matched above"),
                };
                let mut node = Node {
                    name: String::from_utf8_lossy(e.name().as_ref()).into_owned(),
                    line: line_at(pos),
                    ..Node::default()
                };
                for attr in e.attributes() {
                    let attr = attr.map_err(|err| (line_at(pos), err.to_string()))?;
                    let value = attr
                        .normalized_value(quick_xml::XmlVersion::Implicit1_0)
                        .map_err(|err| (line_at(pos), err.to_string()))?;
                    node.attrs.push((
                        String::from_utf8_lossy(attr.key.as_ref()).into_owned(),
                        value.into_owned(),
                    ));
                }
                if empty {
                    if let Some(parent) = stack.last_mut() {
                        parent.children.push(node);
                    }
                } else {
                    stack.push(node);
                }
            }
            Ok(Event::End(_)) => {
                let node = stack
                    .pop()
                    .ok_or((line_at(pos), "an end tag without its start".to_string()))?;
                match stack.last_mut() {
                    Some(parent) => parent.children.push(node),
                    None => return Err((line_at(pos), "an end tag without its start".into())),
                }
            }
            Ok(Event::Text(t)) => {
                let text = t.decode().map_err(|e| (line_at(pos), e.to_string()))?;
                if let Some(node) = stack.last_mut() {
                    node.text.push_str(&text);
                }
            }
            // `&amp;`, `&#233;`: the reader gives references apart from
            // the text around them.
            Ok(Event::GeneralRef(r)) => {
                let name = r.decode().map_err(|e| (line_at(pos), e.to_string()))?;
                let resolved = match r.resolve_char_ref() {
                    Ok(Some(c)) => c.to_string(),
                    Ok(None) => match quick_xml::escape::resolve_predefined_entity(&name) {
                        Some(text) => text.to_owned(),
                        None => {
                            return Err((
                                line_at(pos),
                                format!("the entity `&{name};` is not defined"),
                            ))
                        }
                    },
                    Err(e) => return Err((line_at(pos), e.to_string())),
                };
                if let Some(node) = stack.last_mut() {
                    node.text.push_str(&resolved);
                }
            }
            Ok(Event::CData(c)) => {
                if let Some(node) = stack.last_mut() {
                    node.text.push_str(&String::from_utf8_lossy(&c));
                }
            }
            Ok(_) => {}
        }
    }
    let mut document = stack.pop().ok_or((1, "empty document".to_string()))?;
    if !stack.is_empty() {
        return Err((text.lines().count(), "the document ends inside an element".into()));
    }
    document.children.pop().ok_or((1, "no root element".to_string()))
}

fn absolute(url: &str) -> bool {
    url::Url::parse(url).is_ok_and(|u| u.scheme() == "http" || u.scheme() == "https")
}

fn check_rss(rss: &Node, url: &str, say: &mut impl FnMut(usize, String)) {
    if rss.attr("version") != Some("2.0") {
        say(rss.line, "<rss> must have version=\"2.0\"".into());
    }
    let Some(channel) = rss.child("channel") else {
        say(rss.line, "no <channel>".into());
        return;
    };
    for required in ["title", "link", "description"] {
        match channel.child(required) {
            Some(n) if !n.text.trim().is_empty() => {}
            _ => say(channel.line, format!("<channel> has no <{required}> (required by RSS 2.0)")),
        }
    }
    if let Some(link) = channel.child("link") {
        if !absolute(link.text.trim()) {
            say(link.line, format!("<link> `{}` is not an absolute URL", link.text.trim()));
        }
    }
    if let Some(date) = channel.child("lastBuildDate") {
        if chrono::DateTime::parse_from_rfc2822(date.text.trim()).is_err() {
            say(
                date.line,
                format!("<lastBuildDate> `{}` is not an RFC 822 date", date.text.trim()),
            );
        }
    }
    check_self_link(channel.all("atom:link"), channel.line, url, say);
    let mut guids = std::collections::HashSet::new();
    for item in channel.all("item") {
        if item.child("title").is_none() && item.child("description").is_none() {
            say(item.line, "<item> has neither <title> nor <description>".into());
        }
        match item.child("guid") {
            None => say(
                item.line,
                "<item> has no <guid>: readers cannot tell it from the others".into(),
            ),
            Some(guid) => {
                let permalink = guid.attr("isPermaLink").unwrap_or("true") == "true";
                if permalink && !absolute(guid.text.trim()) {
                    say(
                        guid.line,
                        format!(
                            "<guid> `{}` is a permalink but not an absolute URL",
                            guid.text.trim()
                        ),
                    );
                }
                if !guids.insert(guid.text.trim().to_owned()) {
                    say(guid.line, format!("<guid> `{}` appears twice", guid.text.trim()));
                }
            }
        }
        match item.child("pubDate") {
            None => say(item.line, "<item> has no <pubDate>".into()),
            Some(d) if chrono::DateTime::parse_from_rfc2822(d.text.trim()).is_err() => {
                say(d.line, format!("<pubDate> `{}` is not an RFC 822 date", d.text.trim()))
            }
            Some(_) => {}
        }
        if let Some(link) = item.child("link") {
            if !absolute(link.text.trim()) {
                say(link.line, format!("<link> `{}` is not an absolute URL", link.text.trim()));
            }
        }
        if let Some(author) = item.child("author") {
            if !author.text.contains('@') {
                say(
                    author.line,
                    "<author> must be an email address; put a name in <dc:creator>".into(),
                );
            }
        }
    }
}

fn check_atom(feed: &Node, url: &str, say: &mut impl FnMut(usize, String)) {
    for required in ["id", "title", "updated"] {
        if feed.child(required).is_none_or(|n| n.text.trim().is_empty()) {
            say(feed.line, format!("<feed> has no <{required}> (required by RFC 4287)"));
        }
    }
    check_rfc3339(feed.child("updated"), say);
    check_self_link(feed.all("link"), feed.line, url, say);
    let feed_author = feed.child("author").is_some();
    let mut ids = std::collections::HashSet::new();
    for entry in feed.all("entry") {
        for required in ["id", "title", "updated"] {
            if entry.child(required).is_none_or(|n| n.text.trim().is_empty()) {
                say(entry.line, format!("<entry> has no <{required}> (required by RFC 4287)"));
            }
        }
        check_rfc3339(entry.child("updated"), say);
        check_rfc3339(entry.child("published"), say);
        if let Some(id) = entry.child("id") {
            if !ids.insert(id.text.trim().to_owned()) {
                say(id.line, format!("<id> `{}` appears twice", id.text.trim()));
            }
        }
        if !feed_author && entry.child("author").is_none() {
            say(
                entry.line,
                "<entry> has no <author> and neither has the feed (RFC 4287 section 4.1.1)".into(),
            );
        }
        let alternate =
            entry.all("link").find(|l| l.attr("rel").unwrap_or("alternate") == "alternate");
        match alternate {
            None => say(entry.line, "<entry> has no <link rel=\"alternate\">".into()),
            Some(link) if !link.attr("href").is_some_and(absolute) => say(
                link.line,
                format!("<link> href `{}` is not an absolute URL", link.attr("href").unwrap_or("")),
            ),
            Some(_) => {}
        }
    }
}

fn check_rfc3339(node: Option<&Node>, say: &mut impl FnMut(usize, String)) {
    if let Some(n) = node {
        if chrono::DateTime::parse_from_rfc3339(n.text.trim()).is_err() {
            say(n.line, format!("<{}> `{}` is not an RFC 3339 date", n.name, n.text.trim()));
        }
    }
}

fn check_self_link<'a>(
    mut links: impl Iterator<Item = &'a Node>,
    line: usize,
    url: &str,
    say: &mut impl FnMut(usize, String),
) {
    match links.find(|l| l.attr("rel") == Some("self")) {
        None => say(line, format!("no self link (<link rel=\"self\" href=\"{url}\"/>)")),
        Some(link) if link.attr("href") != Some(url) => say(
            link.line,
            format!(
                "the self link `{}` is not this file's URL `{url}`",
                link.attr("href").unwrap_or("")
            ),
        ),
        Some(_) => {}
    }
}

fn check_json(text: &str, url: &str, say: &mut impl FnMut(usize, String)) {
    let value: serde_json::Value = match serde_json::from_str(text) {
        Ok(v) => v,
        Err(e) => return say(e.line(), format!("not valid JSON: {e}")),
    };
    let line_of =
        |needle: &str| text.find(needle).map_or(1, |at| text[..at].matches('\n').count() + 1);
    if value["version"] != "https://jsonfeed.org/version/1.1" {
        say(
            line_of("\"version\""),
            "\"version\" must be \"https://jsonfeed.org/version/1.1\"".into(),
        );
    }
    if value["title"].as_str().is_none_or(str::is_empty) {
        say(1, "no \"title\"".into());
    }
    if value["feed_url"].as_str() != Some(url) {
        say(line_of("\"feed_url\""), format!("\"feed_url\" is not this file's URL `{url}`"));
    }
    let mut ids = std::collections::HashSet::new();
    for item in value["items"].as_array().into_iter().flatten() {
        let id = item["id"].as_str().unwrap_or("");
        if id.is_empty() {
            say(line_of("\"items\""), "an item has no \"id\"".into());
        } else if !ids.insert(id) {
            say(
                line_of(&format!("\"id\": {}", serde_json::Value::from(id))),
                format!("\"id\" `{id}` appears twice"),
            );
        }
        for key in ["date_published", "date_modified"] {
            if let Some(d) = item[key].as_str() {
                if chrono::DateTime::parse_from_rfc3339(d).is_err() {
                    say(line_of(d), format!("\"{key}\" `{d}` is not an RFC 3339 date"));
                }
            }
        }
        if let Some(u) = item["url"].as_str() {
            if !absolute(u) {
                say(line_of(u), format!("\"url\" `{u}` is not an absolute URL"));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_json_feed_with_one_id_twice_is_a_problem() {
        let url = "https://example.com/feed.json";
        let feed = |ids: &[&str]| {
            let items: Vec<_> = ids
                .iter()
                .map(|id| serde_json::json!({ "id": id, "url": id, "content_html": "" }))
                .collect();
            serde_json::to_string_pretty(&serde_json::json!({
                "version": "https://jsonfeed.org/version/1.1",
                "title": "T",
                "feed_url": url,
                "items": items,
            }))
            .unwrap()
        };
        let problems = |text: String| {
            let mut out = Vec::new();
            check_json(&text, url, &mut |line, message| out.push(format!("{line}: {message}")));
            out
        };
        assert!(problems(feed(&["https://example.com/a/", "https://example.com/b/"])).is_empty());
        let twice = problems(feed(&["https://example.com/a/", "https://example.com/a/"]));
        assert_eq!(twice.len(), 1, "{twice:?}");
        assert!(twice[0].contains("appears twice"), "{twice:?}");
    }
}
