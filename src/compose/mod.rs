//! The compose stage: for each list, picks the articles new for it (none of
//! its editions considered them yet), renders the digest from the Tera
//! templates and stores it as the edition of the day, together with its
//! delivery ledger.
//! A list never gets two editions for one date, so composing twice is safe.

pub mod dkim;
pub mod fit;
pub mod inline;
pub mod local;
mod message;
mod splice;
#[cfg(test)]
mod tests;

use chrono::{DateTime, NaiveDate, Utc};

use crate::article::StoredArticle;
use crate::config::{Config, List};
use crate::store::{Edition, NewEdition, Store, StoreError};
use crate::templates::{self, Templates};

pub use message::{
    confirmation, load_dkim, manage_link, welcome, ConfirmationContext, Digest, Letterhead,
    ManageContext, Outgoing, Recipient, WelcomeContext, WelcomeList, WELCOME,
};

#[derive(Debug, Clone)]
pub struct ComposedEdition {
    pub list: String,
    pub date: NaiveDate,
    pub subject: String,
    pub articles: usize,
    pub recipients: u64,
    /// The size of the HTML part as mailed (see `fit`).
    pub html_bytes: usize,
    /// What the operator should hear about the edition's size: what was cut
    /// to fit `max_html_kb`, or that it nears Gmail's clip.
    pub notes: Vec<String>,
}

#[derive(Debug, Clone, Default)]
pub struct ComposeReport {
    pub composed: Vec<ComposedEdition>,
    /// Lists with no edition this time, and why.
    pub skipped: Vec<(String, String)>,
}

#[derive(Debug, thiserror::Error)]
pub enum ComposeError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("list `{list}`: cannot render {template}: {message}")]
    Render { list: String, template: String, message: String },
    #[error("DKIM key {path}: {message}")]
    Dkim { path: String, message: String },
    #[error("list `{list}`: cannot build the message to {email}: {message}")]
    Message { list: String, email: String, message: String },
}

/// Composes today's edition of every list (today in each list's time zone).
pub async fn compose(
    config: &Config,
    store: &Store,
    templates: &Templates,
    now: DateTime<Utc>,
) -> Result<ComposeReport, ComposeError> {
    compose_lists(config, store, templates, now, None).await
}

/// Composes the edition of one list (`only`), or of every list.
/// The date of `list`'s edition composed at `at` (the daemon passes the
/// fire time): the day of `at` on the list's wall clock.
pub fn edition_date(list: &List, at: DateTime<Utc>) -> NaiveDate {
    at.with_timezone(&list.timezone).date_naive()
}

pub async fn compose_lists(
    config: &Config,
    store: &Store,
    templates: &Templates,
    now: DateTime<Utc>,
    only: Option<&str>,
) -> Result<ComposeReport, ComposeError> {
    let mut report = ComposeReport::default();
    let lists: Vec<&crate::config::List> =
        config.lists.iter().filter(|l| only.is_none_or(|slug| l.slug.as_str() == slug)).collect();
    for list in lists {
        let slug = list.slug.to_string();
        let date = edition_date(list, now);
        let (articles, considered) = match select(store, list, date).await? {
            Selection::New { articles, considered } => (articles, considered),
            Selection::Exists(_) => {
                report.skipped.push((slug, format!("already has its edition for {date}")));
                continue;
            }
            Selection::None { why } => {
                tracing::info!(list = %slug, "no edition: {why}");
                report.skipped.push((slug, why));
                continue;
            }
        };
        let context = digest_context(config, list, date, &articles);
        let subject = templates::render_string(&list.subject, &context).map_err(|message| {
            ComposeError::Render { list: slug.clone(), template: "the subject".into(), message }
        })?;
        let subject = crate::text::clean_line(&subject);
        let mut mail = context.clone();
        mail.insert("subject", &subject);
        let fit = fit_mail(templates, &mut mail, list, &config.site.base_url)?;
        let notes = fit.notes(&slug, &date.to_string());
        let (html, text) = render_web_copy(templates, context, &subject, &slug)?;
        let new = NewEdition {
            list: slug.clone(),
            edition_date: date,
            subject: subject.clone(),
            html,
            text,
            article_ids: articles.iter().map(|a| a.id).collect(),
            considered,
            composed_at: now,
        };
        let hold = list.local_time.then(|| local::hold(list, now));
        let hold = hold.as_ref().map(|h| h as &crate::store::Hold<'_>);
        match store.create_edition_held(&new, message_id_domain(config), hold).await? {
            Some((_, recipients)) => {
                tracing::info!(list = %slug, %date, articles = articles.len(), recipients, html_bytes = fit.bytes, "composed edition");
                for note in &notes {
                    tracing::warn!("{note}");
                }
                report.composed.push(ComposedEdition {
                    list: slug,
                    date,
                    subject,
                    articles: articles.len(),
                    recipients,
                    html_bytes: fit.bytes,
                    notes,
                });
            }
            // Another process composed it between our check and our insert.
            None => report.skipped.push((slug, format!("already has its edition for {date}"))),
        }
    }
    Ok(report)
}

/// What a list's edition for a date holds: the one place that decides it,
/// for `compose` and for `compose --preview` / `--dry-run`.
#[derive(Debug)]
pub enum Selection {
    /// The list has its edition for the date already.
    Exists(Edition),
    /// A new edition would hold `articles` (newest first), chosen among
    /// `considered`: every article the list had not considered yet, those
    /// left out included (the same story twice, beyond `max_articles`, taken
    /// down, not for digests). Stored with the edition, they are never new
    /// for the list again; an article stored since is new for the next one.
    New { articles: Vec<StoredArticle>, considered: Vec<i64> },
    /// No edition for the date, and why.
    None { why: String },
}

/// Chooses the articles of `list`'s edition for `date`: the published ones
/// meant for digests that no edition of the list considered yet (for a new
/// list, every one stored), the same story through two sources once (the
/// newest copy), at least `min_articles`, at most the newest `max_articles`.
pub async fn select(store: &Store, list: &List, date: NaiveDate) -> Result<Selection, StoreError> {
    let slug = list.slug.as_str();
    if let Some(edition) = store.edition(slug, date).await? {
        return Ok(Selection::Exists(edition));
    }
    let unconsidered = store.unconsidered_articles(slug).await?;
    let considered: Vec<i64> = unconsidered.iter().map(|a| a.id).collect();
    let mut seen = std::collections::HashSet::new();
    let mut ids: Vec<i64> = unconsidered
        .iter()
        .filter(|a| a.eligible && seen.insert(crate::collect::feed::story_key(&a.url)))
        .map(|a| a.id)
        .collect();
    let fresh = ids.len();
    if fresh < list.min_articles {
        let why = match fresh {
            0 => "no new articles".to_string(),
            n => format!("{n} new article(s), fewer than min_articles = {}", list.min_articles),
        };
        return Ok(Selection::None { why });
    }
    if fresh > list.max_articles {
        tracing::warn!(
            list = %slug,
            "{fresh} new articles; the edition holds the newest {} (max_articles)",
            list.max_articles
        );
        ids.truncate(list.max_articles);
    }
    let articles = store.articles_by_ids(&ids).await?;
    Ok(Selection::New { articles, considered })
}

/// A digest as a list would get it now, rendered for a sample reader.
pub struct Preview {
    /// The HTML part.
    pub html: String,
    pub subject: String,
    pub articles: usize,
    /// Whether the edition is stored already (else it is what compose
    /// would store now).
    pub stored: bool,
}

/// What `list`'s reader would get for the day of `now`: the stored edition,
/// or the one compose would make from the same [`select`]ion; `Ok(None)`
/// and why when compose would make none.
pub async fn preview(
    config: &Config,
    store: &Store,
    templates: &Templates,
    list: &List,
    now: DateTime<Utc>,
) -> Result<Result<Preview, String>, ComposeError> {
    let date = edition_date(list, now);
    let (articles, stored) = match select(store, list, date).await? {
        Selection::Exists(edition) => (store.articles_by_ids(&edition.article_ids).await?, true),
        Selection::New { articles, .. } => (articles, false),
        Selection::None { why } => return Ok(Err(why)),
    };
    let mut context = digest_context(config, list, date, &articles);
    let subject = templates::render_string(&list.subject, &context).map_err(|message| {
        ComposeError::Render {
            list: list.slug.to_string(),
            template: "the subject".into(),
            message,
        }
    })?;
    let subject = crate::text::clean_line(&subject);
    context.insert("subject", &subject);
    insert_sample_reader(&mut context, &config.site.base_url);
    let (html, _) = render_digest(templates, &context, list.slug.as_str())?;
    Ok(Ok(Preview { html, subject, articles: articles.len(), stored }))
}

/// The domain in Message-IDs: the sender's.
pub fn message_id_domain(config: &Config) -> &str {
    config.mail.from.email.domain()
}

/// The context every digest template sees, before the reader's own fields
/// (`subscriber`, `unsubscribe_url`) are added.
pub fn digest_context(
    config: &Config,
    list: &List,
    date: NaiveDate,
    articles: &[StoredArticle],
) -> tera::Context {
    let mut context = tera::Context::new();
    context.insert("site", &templates::site_context(config));
    context.insert(
        "list",
        &serde_json::json!({
            "slug": list.slug.as_str(),
            "name": list.name,
            "description": list.description,
            "full_text": list.full_text,
        }),
    );
    context.insert("date", &date.to_string());
    // The edition's page in the web archive (publish writes it there).
    context.insert("web_url", &edition_url(&config.site.base_url, list.slug.as_str(), date));
    let preheader = list.preheader.clone().unwrap_or_else(|| preheader_of(articles));
    context.insert("preheader", &preheader);
    let articles: Vec<_> = articles.iter().map(mail_article).collect();
    context.insert("articles", &articles);
    // Set by `fit` when the mail leaves the oldest articles to the archive.
    context.insert("omitted_articles", &0);
    context
}

/// The page of `list`'s edition of `date` in the web archive
/// (`archive/LIST/DATE/`, where publish writes it).
pub fn edition_url(base_url: &crate::types::BaseUrl, list: &str, date: NaiveDate) -> String {
    base_url.join(&format!("archive/{list}/{}/", date.format("%Y-%m-%d"))).to_string()
}

/// The line a mail client shows after the subject when the list sets none:
/// the first articles' titles, up to about 140 characters.
fn preheader_of(articles: &[StoredArticle]) -> String {
    let mut line = String::new();
    for a in articles.iter().take(3) {
        if !line.is_empty() {
            if line.chars().count() + a.article.title.chars().count() > 140 {
                break;
            }
            line.push_str(" · ");
        }
        line.push_str(&a.article.title);
    }
    line
}

/// An article as a digest shows it: the fields every template sees, every
/// image with an `alt` (an image the writer gave none is marked decorative,
/// `alt=""`, so screen readers skip it rather than read its file name; the
/// title above it says what the article is), and `shortened` false (see
/// `fit`).
fn mail_article(a: &StoredArticle) -> serde_json::Value {
    let mut article = templates::article_context(a);
    if let Some(map) = article.as_object_mut() {
        map.insert("content_html".into(), images_with_alt(&a.article.content_html).into());
        map.insert("shortened".into(), false.into());
    }
    article
}

/// `html` with `alt=""` added to every `<img>` that has no `alt`. The HTML is
/// sanitised markup as ammonia writes it (quoted attribute values).
pub fn images_with_alt(html: &str) -> String {
    let mut out = String::with_capacity(html.len() + 16);
    let mut rest = html;
    while let Some(at) = rest.as_bytes().windows(4).position(|w| w.eq_ignore_ascii_case(b"<img")) {
        let after = &rest[at + 4..];
        if !after.starts_with(|c: char| c.is_ascii_whitespace() || c == '/' || c == '>') {
            out.push_str(&rest[..at + 4]);
            rest = after;
            continue;
        }
        // The tag's end: the first `>` outside a quoted value.
        let mut quote = None;
        let mut unquoted = String::new();
        let mut end = None;
        for (i, c) in after.char_indices() {
            match (quote, c) {
                (None, '"' | '\'') => quote = Some(c),
                (Some(q), c) if c == q => quote = None,
                (None, '>') => {
                    end = Some(i);
                    break;
                }
                (None, c) => unquoted.push(c.to_ascii_lowercase()),
                (Some(_), _) => {}
            }
        }
        let Some(end) = end else { break };
        let has_alt = unquoted
            .split(|c: char| c.is_ascii_whitespace() || c == '/')
            .any(|attr| attr == "alt" || attr.starts_with("alt="));
        out.push_str(&rest[..at + 4]);
        if !has_alt {
            out.push_str(" alt=\"\"");
        }
        out.push_str(&after[..=end]);
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    out
}

/// One reader's own values in a digest.
#[derive(Debug, Clone, Copy)]
pub struct ReaderFields<'a> {
    pub name: Option<&'a str>,
    pub email: &'a str,
    pub unsubscribe_url: &'a str,
    pub preferences_url: &'a str,
}

/// Adds the sample reader that `herald check` and `compose --preview`
/// render for.
pub fn insert_sample_reader(context: &mut tera::Context, base_url: &crate::types::BaseUrl) {
    let unsubscribe_url = base_url.join("unsubscribe?token=sample").to_string();
    let preferences_url = base_url.join("preferences?token=sample").to_string();
    let sample = ReaderFields {
        name: Some("Sample Reader"),
        email: "reader@example.com",
        unsubscribe_url: &unsubscribe_url,
        preferences_url: &preferences_url,
    };
    insert_reader(context, Some(&sample));
}

/// Adds a reader's fields to a digest context (`subscriber.name`,
/// `subscriber.email`, `unsubscribe_url`, `preferences_url`): the one place
/// they are named, for every message, preview and sample render. `None` is
/// the archive copy that is nobody's: empty fields and links. What it inserts
/// is what the fast path checks the templates' use of (see `splice`).
pub fn insert_reader(context: &mut tera::Context, reader: Option<&ReaderFields<'_>>) {
    match reader {
        Some(r) => {
            context.insert("subscriber", &serde_json::json!({ "name": r.name, "email": r.email }));
            context.insert("unsubscribe_url", r.unsubscribe_url);
            context.insert("preferences_url", r.preferences_url);
        }
        None => {
            context.insert("subscriber", &serde_json::json!({ "name": null, "email": null }));
            context.insert("unsubscribe_url", "");
            context.insert("preferences_url", "");
        }
    }
}

/// Renders the copy of an edition kept with it for the web archive, from
/// its `digest_context`: nobody's (no reader fields, no links of a reader's
/// own).
pub fn render_web_copy(
    templates: &Templates,
    mut context: tera::Context,
    subject: &str,
    list: &str,
) -> Result<(String, String), ComposeError> {
    context.insert("subject", subject);
    insert_reader(&mut context, None);
    render_digest(templates, &context, list)
}

/// Renders the HTML and text parts of a digest, the HTML part's CSS
/// inlined (see `inline`).
pub fn render_digest(
    templates: &Templates,
    context: &tera::Context,
    list: &str,
) -> Result<(String, String), ComposeError> {
    let (html, _) = render_html(templates, context, list)?;
    let text = render_template(templates, context, list, "digest.txt")?;
    Ok((html, tidy_text(&text)))
}

/// The HTML part, and whether its CSS was inlined (which writes the
/// document anew: see `inline::escape_text`).
fn render_html(
    templates: &Templates,
    context: &tera::Context,
    list: &str,
) -> Result<(String, bool), ComposeError> {
    let html = render_template(templates, context, list, "digest.html")?;
    if !inline::has_style(&html) {
        return Ok((html, false));
    }
    let inlined = inline::inline_css(&html).map_err(|message| ComposeError::Render {
        list: list.to_owned(),
        template: "digest.html".into(),
        message,
    })?;
    Ok((inlined, true))
}

fn render_template(
    templates: &Templates,
    context: &tera::Context,
    list: &str,
    name: &str,
) -> Result<String, ComposeError> {
    templates.tera.render(name, context).map_err(|e| ComposeError::Render {
        list: list.to_owned(),
        template: name.to_owned(),
        message: crate::text::error_chain(&e),
    })
}

/// Fits `context` (a digest context with its subject) to `list`'s
/// `max_html_kb` (see `fit`): the articles as the mail shows them, and how
/// big its HTML part comes out for a reader with long values. Without a
/// cap the articles stay as they are and the size is only measured.
pub fn fit_mail(
    templates: &Templates,
    context: &mut tera::Context,
    list: &List,
    base_url: &crate::types::BaseUrl,
) -> Result<fit::Fit, ComposeError> {
    let articles: Vec<serde_json::Value> = match context.get("articles") {
        Some(serde_json::Value::Array(articles)) => articles.clone(),
        _ => Vec::new(),
    };
    let slug = list.slug.as_str();
    let mut sizing = context.clone();
    insert_sizing_reader(&mut sizing, base_url);
    let mut size = |shortened: usize, omitted: usize| -> Result<usize, ComposeError> {
        sizing.insert("articles", &fit::arrange(&articles, shortened, omitted));
        sizing.insert("omitted_articles", &omitted);
        Ok(render_html(templates, &sizing, slug)?.0.len())
    };
    let full_bytes = size(0, 0)?;
    let (shortened, omitted, bytes) = match list.max_html_bytes {
        Some(cap) if full_bytes > cap => fit::choose(articles.len(), cap, &mut size)?,
        _ => (0, 0, full_bytes),
    };
    if shortened + omitted > 0 {
        context.insert("articles", &fit::arrange(&articles, shortened, omitted));
        context.insert("omitted_articles", &omitted);
    }
    Ok(fit::Fit { bytes, full_bytes, shortened, omitted, cap: list.max_html_bytes })
}

/// A reader whose values are as long as a real reader's get: a size
/// measured with them is what the mail weighs.
fn insert_sizing_reader(context: &mut tera::Context, base_url: &crate::types::BaseUrl) {
    let token = "x".repeat(160);
    let unsubscribe_url = base_url.join(&format!("unsubscribe?token={token}")).to_string();
    let preferences_url = base_url.join(&format!("preferences?token={token}")).to_string();
    let name = "n".repeat(48);
    let email = format!("{}@{}.example.com", "e".repeat(32), "d".repeat(24));
    let reader = ReaderFields {
        name: Some(&name),
        email: &email,
        unsubscribe_url: &unsubscribe_url,
        preferences_url: &preferences_url,
    };
    insert_reader(context, Some(&reader));
}

/// Collapses the blank lines template tags leave behind (at most one in a row).
fn tidy_text(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut blank = 0;
    for line in text.lines() {
        let line = line.trim_end();
        if line.is_empty() {
            blank += 1;
            if blank > 1 {
                continue;
            }
        } else {
            blank = 0;
        }
        out.push_str(line);
        out.push('\n');
    }
    out.trim_start_matches('\n').to_owned()
}
