//! One message builder for every transport: an edition and a reader in, a
//! message ready for the wire ([`Outgoing`]) out, signed when DKIM keys are
//! set, with the headers bulk mail needs (RFC 2369 / 2919
//! List-* headers, RFC 8058 one-click unsubscribe) and a Message-ID that is
//! the same on every attempt.

use std::time::SystemTime;

use chrono::{DateTime, Utc};
use lettre::message::header::{ContentTransferEncoding, ContentType};
use lettre::message::header::{HeaderName, HeaderValue};
use lettre::message::{Body, Mailbox, MultiPart, SinglePart};
use lettre::Message;

use super::dkim::Signer;
use super::inline;
use super::splice::{self, ReaderPath};
use super::{digest_context, insert_reader, render_digest, ComposeError, ReaderFields};
use crate::bounces::verp::{self, Tag};
use crate::config::{Config, List};
use crate::email::EmailAddress;
use crate::store::{Edition, Store};
use crate::subscribe::token::{self, Action};
use crate::subscribe::{unsubscribe_token, Bearer, Secret};
use crate::templates::{self, Templates};
use crate::types::{BaseUrl, Schedule, Slug};

/// A reader of an edition, as the delivery ledger names them.
#[derive(Debug, Clone)]
pub struct Recipient {
    pub subscriber: i64,
    pub email: String,
    pub name: Option<String>,
    /// The key the reader's links are made with (see `subscribe::token`).
    pub token_key: String,
    pub message_id: String,
}

impl Recipient {
    fn bearer(&self) -> Bearer<'_> {
        Bearer { id: self.subscriber, key: &self.token_key }
    }
}

/// Everything needed to build any reader's copy of one edition. Owns its
/// data, so delivery tasks can share it behind an `Arc`.
pub struct Digest {
    pub edition_id: i64,
    list: String,
    list_id: String,
    subject: String,
    letterhead: Letterhead,
    base_url: BaseUrl,
    unsubscribe_mailto: Option<EmailAddress>,
    secret: Secret,
    templates: Templates,
    context: tera::Context,
    /// The bodies rendered once for every reader, when the templates allow it.
    fast: Option<Prerendered>,
    /// The list counts clicks with the reader (`individual`): each reader's
    /// article links are their own, so each reader gets a render of their own.
    clicks_by_reader: bool,
}

/// A message ready for the wire: its envelope and its bytes (CRLF line
/// ends, 7-bit), signed when DKIM keys are set.
#[derive(Debug, Clone)]
pub struct Outgoing {
    pub envelope: lettre::address::Envelope,
    pub bytes: Vec<u8>,
}

/// What every mail herald sends carries from its sender: From, Reply-To,
/// the domain of its Message-IDs and the DKIM keys that sign it. The one
/// place a message is put together, for digests and confirmation mails
/// alike.
pub struct Letterhead {
    from: Mailbox,
    reply_to: Option<Mailbox>,
    domain: String,
    dkim: Option<Signer>,
    /// `mail.bounce_address` and the secret its VERP tokens are signed with.
    verp: Option<(EmailAddress, Secret)>,
}

impl Letterhead {
    /// From the `[mail]` settings; reads the DKIM keys when some are set.
    /// `secret` signs the VERP tokens of the envelope senders.
    pub fn from_config(config: &Config, secret: &Secret) -> Result<Self, ComposeError> {
        let mail = &config.mail;
        Ok(Self {
            verp: mail.bounce_address.clone().map(|a| (a, secret.clone())),
            from: mail.from.clone(),
            reply_to: mail.reply_to.clone(),
            domain: super::message_id_domain(config).to_owned(),
            dkim: load_dkim(&mail.dkim)?,
        })
    }

    /// The domain Message-IDs end in: the sender's.
    pub fn domain(&self) -> &str {
        &self.domain
    }

    /// Whether building a message costs an RSA signature (a fifth of a
    /// millisecond); an Ed25519 one costs a tenth of that.
    pub fn signs_slowly(&self) -> bool {
        self.dkim.as_ref().is_some_and(Signer::has_rsa)
    }

    /// A message to `to`, with `headers` beside the usual ones, signed last
    /// (after every header is set) when DKIM keys are configured. With a
    /// bounce address, its envelope sender carries `tag`'s VERP token.
    #[allow(clippy::too_many_arguments)]
    fn message(
        &self,
        tag: Tag,
        to: Mailbox,
        subject: String,
        now: DateTime<Utc>,
        message_id: String,
        headers: Vec<HeaderValue>,
        body: MultiPart,
    ) -> Result<Outgoing, String> {
        let recipient = to.email.clone();
        let mut builder = Message::builder()
            .from(self.from.clone())
            .to(to)
            .subject(subject)
            .date(SystemTime::from(now))
            .message_id(Some(message_id));
        for header in headers {
            builder = builder.raw_header(header);
        }
        if let Some(reply_to) = &self.reply_to {
            builder = builder.reply_to(reply_to.clone());
        }
        if let Some((bounce, secret)) = &self.verp {
            let sender = verp::envelope_sender(secret, bounce, tag);
            let sender: lettre::Address =
                sender.parse().map_err(|e| format!("bad VERP address {sender}: {e}"))?;
            let envelope = lettre::address::Envelope::new(Some(sender), vec![recipient])
                .map_err(|e| e.to_string())?;
            builder = builder.envelope(envelope);
        }
        let message = builder.multipart(body).map_err(|e| e.to_string())?;
        let envelope = message.envelope().clone();
        let mut bytes = message.formatted();
        if let Some(signer) = &self.dkim {
            let mut signed = signer.sign(&bytes, now.timestamp());
            signed.append(&mut bytes);
            bytes = signed;
        }
        Ok(Outgoing { envelope, bytes })
    }
}

/// What the confirmation mail's templates (`confirm.html`, `confirm.txt`)
/// see; `web::signup` fills it for a sign-up, `herald check` with samples.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ConfirmationContext<'a> {
    pub site: &'a serde_json::Value,
    pub email: &'a str,
    pub name: Option<&'a str>,
    /// The names of the lists signed up for.
    pub lists: Vec<&'a str>,
    pub confirm_url: &'a str,
    pub expiry_days: i64,
}

/// The confirmation mail of a web sign-up by `subscriber`.
pub fn confirmation(
    letterhead: &Letterhead,
    templates: &Templates,
    context: &ConfirmationContext<'_>,
    subscriber: i64,
    now: DateTime<Utc>,
) -> Result<Outgoing, ComposeError> {
    let title = context.site["title"].as_str().unwrap_or("");
    Mail {
        kind: "confirmation",
        templates: ("confirm.html", "confirm.txt"),
        email: context.email,
        name: context.name,
        subject: format!("Confirm your subscription to {title}"),
        message_id: format!(
            "<herald.confirm.{subscriber}.{}@{}>",
            now.timestamp_micros(),
            letterhead.domain()
        ),
        subscriber,
    }
    .build(letterhead, templates, context, now)
}

/// One list of a welcome mail.
#[derive(Debug, Clone, serde::Serialize)]
pub struct WelcomeList<'a> {
    pub slug: &'a str,
    pub name: &'a str,
    pub description: &'a str,
    /// The page of the list's latest edition in the web archive
    /// (`archive/LIST/DATE/`), when it has one.
    pub latest_edition_url: Option<String>,
    /// The reader's one-click unsubscribe link for this list.
    pub unsubscribe_url: String,
}

/// What the welcome mail's templates (`welcome.html`, `welcome.txt`) see:
/// the reader and the lists they have just joined.
#[derive(Debug, Clone, serde::Serialize)]
pub struct WelcomeContext<'a> {
    pub site: &'a serde_json::Value,
    pub email: &'a str,
    pub name: Option<&'a str>,
    pub lists: Vec<WelcomeList<'a>>,
    /// The reader's preferences page (every list).
    pub preferences_url: &'a str,
    /// The archive of every edition (`archive/`).
    pub archive_url: &'a str,
}

/// The welcome mail after `signup` was confirmed. Its Message-ID is derived
/// from the sign-up, so should it ever be built twice the copies are one
/// message to the receiving systems.
pub fn welcome(
    letterhead: &Letterhead,
    templates: &Templates,
    context: &WelcomeContext<'_>,
    subscriber: i64,
    signup: i64,
    now: DateTime<Utc>,
) -> Result<Outgoing, ComposeError> {
    let title = context.site["title"].as_str().unwrap_or("");
    Mail {
        kind: "welcome",
        templates: (WELCOME.0, WELCOME.1),
        email: context.email,
        name: context.name,
        subject: format!("Welcome to {title}"),
        message_id: format!("<herald.welcome.{signup}@{}>", letterhead.domain()),
        subscriber,
    }
    .build(letterhead, templates, context, now)
}

/// The welcome mail's templates; the mail goes only when the site has both.
pub const WELCOME: (&str, &str) = ("welcome.html", "welcome.txt");

/// What the manage-link mail's templates (`manage.html`, `manage.txt`) see.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ManageContext<'a> {
    pub site: &'a serde_json::Value,
    pub email: &'a str,
    /// The reader's preferences page, signed for them.
    pub preferences_url: &'a str,
}

/// The mail with a link to `subscriber`'s preferences page, asked for on
/// the web ("email me a link to manage my subscription").
pub fn manage_link(
    letterhead: &Letterhead,
    templates: &Templates,
    context: &ManageContext<'_>,
    subscriber: i64,
    now: DateTime<Utc>,
) -> Result<Outgoing, ComposeError> {
    let title = context.site["title"].as_str().unwrap_or("");
    Mail {
        kind: "manage-link",
        templates: ("manage.html", "manage.txt"),
        email: context.email,
        name: None,
        subject: format!("Your link to manage your subscription to {title}"),
        message_id: format!(
            "<herald.manage.{subscriber}.{}@{}>",
            now.timestamp_micros(),
            letterhead.domain()
        ),
        subscriber,
    }
    .build(letterhead, templates, context, now)
}

/// A mail to one reader outside the ledger (confirmation, welcome, manage
/// link): two templates rendered with one typed context.
struct Mail<'a> {
    /// For errors: which mail it is.
    kind: &'static str,
    /// The HTML and text templates.
    templates: (&'static str, &'static str),
    email: &'a str,
    name: Option<&'a str>,
    subject: String,
    message_id: String,
    subscriber: i64,
}

impl Mail<'_> {
    fn build(
        self,
        letterhead: &Letterhead,
        templates: &Templates,
        context: &impl serde::Serialize,
        now: DateTime<Utc>,
    ) -> Result<Outgoing, ComposeError> {
        let list = format!("({})", self.kind);
        let fail = |message: String| ComposeError::Message {
            list: list.clone(),
            email: self.email.to_owned(),
            message,
        };
        let render = |name: &str| -> Result<String, ComposeError> {
            tera::Context::from_serialize(context)
                .and_then(|c| templates.tera.render(name, &c))
                .map_err(|e| ComposeError::Render {
                    list: list.clone(),
                    template: name.to_owned(),
                    message: crate::text::error_chain(&e),
                })
        };
        let (html, text) = (render(self.templates.0)?, render(self.templates.1)?);
        let address: lettre::Address =
            self.email.parse().map_err(|e| fail(format!("bad address: {e}")))?;
        letterhead
            .message(
                Tag { edition: 0, subscriber: self.subscriber },
                Mailbox::new(self.name.map(str::to_owned), address),
                self.subject,
                now,
                self.message_id,
                Vec::new(),
                MultiPart::alternative_plain_html(text, html),
            )
            .map_err(fail)
    }
}

/// Rewrites each article's `url` in a digest context to its click link
/// (`/c/TOKEN`) for the edition, signed for `reader` when given. Only the
/// articles' own links: the reader's unsubscribe and preferences links, the
/// archive link and links inside articles are left as they are.
fn track_links(
    context: &mut tera::Context,
    secret: &Secret,
    base_url: &BaseUrl,
    edition: i64,
    reader: Option<Bearer<'_>>,
) {
    let Some(serde_json::Value::Array(articles)) = context.get("articles").cloned() else {
        return;
    };
    let tracked: Vec<serde_json::Value> = articles
        .into_iter()
        .map(|mut article| {
            if let Some(id) = article.get("id").and_then(serde_json::Value::as_i64) {
                let token = token::click_token(secret, edition, id, reader);
                article["url"] = base_url.join(&format!("c/{token}")).to_string().into();
            }
            article
        })
        .collect();
    context.insert("articles", &tracked);
}

impl Digest {
    /// Prepares an edition for sending: loads its articles and the templates'
    /// shared context once.
    pub async fn load(
        config: &Config,
        store: &Store,
        templates: Templates,
        secret: Secret,
        edition: &Edition,
    ) -> Result<Self, ComposeError> {
        let articles = store.articles_by_ids(&edition.article_ids).await?;
        Self::new(config, templates, secret, edition, &articles)
    }

    /// Prepares an edition for sending from its articles, already loaded.
    fn new(
        config: &Config,
        templates: Templates,
        secret: Secret,
        edition: &Edition,
        articles: &[crate::article::StoredArticle],
    ) -> Result<Self, ComposeError> {
        // An edition outlives config edits: a list removed since keeps its slug as name.
        let fallback;
        let list = match config.list(&edition.list) {
            Some(list) => list,
            None => {
                fallback = List {
                    slug: Slug::parse(&edition.list)
                        .unwrap_or_else(|_| Slug::slugify("list").expect("constant")),
                    name: edition.list.clone(),
                    description: String::new(),
                    schedule: Schedule::parse("0 0 7 * * *").expect("constant schedule parses"),
                    timezone: chrono_tz::UTC,
                    subject: String::new(),
                    min_articles: 0,
                    max_articles: 1,
                    subscribers: Default::default(),
                    public: false,
                    local_time: false,
                    track_clicks: false,
                    individual: false,
                    full_text: false,
                    max_html_bytes: None,
                    preheader: None,
                };
                &fallback
            }
        };
        let mut context = digest_context(config, list, edition.edition_date, articles);
        context.insert("subject", &edition.subject);
        if list.track_clicks && !list.individual {
            track_links(&mut context, &secret, &config.site.base_url, edition.id, None);
        }
        // The same choice compose reported: a pure function of the
        // articles, the templates and the list's cap. Without a cap there is
        // nothing to choose (compose measured and warned).
        if list.max_html_bytes.is_some() {
            let fit = super::fit_mail(&templates, &mut context, list, &config.site.base_url)?;
            if fit.over_cap() {
                tracing::warn!(list = %edition.list, "{}", fit.notes(&edition.list, &edition.edition_date.to_string()).join("; "));
            }
        }
        let host = config.site.base_url.host();
        // RFC 2919: a phrase and an angle-bracketed id. The phrase is only
        // written when it needs no encoding.
        let list_id =
            if list.name.chars().all(|c| c.is_ascii_graphic() && c != '"' && c != '\\' || c == ' ')
            {
                format!("\"{}\" <{}.{}>", list.name, edition.list, host)
            } else {
                format!("<{}.{}>", edition.list, host)
            };
        let mut digest = Self {
            edition_id: edition.id,
            list: edition.list.clone(),
            list_id,
            subject: edition.subject.clone(),
            letterhead: Letterhead::from_config(config, &secret)?,
            base_url: config.site.base_url.clone(),
            unsubscribe_mailto: config.mail.unsubscribe_mailto.clone(),
            secret,
            templates,
            context,
            fast: None,
            clicks_by_reader: list.track_clicks && list.individual,
        };
        let uses =
            splice::per_reader_uses(&digest.templates.tera, templates::DIGEST, &reader_paths());
        if digest.clicks_by_reader {
            tracing::info!(
                list = %digest.list,
                "the list counts clicks per reader (individual = true): one render per reader"
            );
        } else if uses.is_empty() {
            digest.fast = Some(Prerendered::prepare(&digest)?);
        } else {
            tracing::info!(
                list = %digest.list,
                "the digest templates use the reader's fields in a way that needs one render per reader: {}",
                uses.join("; ")
            );
        }
        Ok(digest)
    }

    /// Renders both parts for one reader with Tera (the slow path, and the
    /// prerender's, with markers for values).
    /// `clicker` is the reader whose click links these are, when the list
    /// counts clicks per reader.
    fn render_for(
        &self,
        reader: &ReaderFields<'_>,
        clicker: Option<Bearer<'_>>,
    ) -> Result<(String, String), ComposeError> {
        let mut context = self.context.clone();
        insert_reader(&mut context, Some(reader));
        if let Some(bearer) = clicker.filter(|_| self.clicks_by_reader) {
            track_links(&mut context, &self.secret, &self.base_url, self.edition_id, Some(bearer));
        }
        render_digest(&self.templates, &context, &self.list)
    }

    /// The prerender's parts, and whether the HTML part's CSS was inlined.
    fn render_marked(
        &self,
        reader: &ReaderFields<'_>,
    ) -> Result<(String, String, bool), ComposeError> {
        let mut context = self.context.clone();
        insert_reader(&mut context, Some(reader));
        let (html, inlined) = super::render_html(&self.templates, &context, &self.list)?;
        let text = super::render_template(&self.templates, &context, &self.list, "digest.txt")?;
        Ok((html, super::tidy_text(&text), inlined))
    }

    pub fn list(&self) -> &str {
        &self.list
    }

    /// Whether each message costs an RSA signature, which delivery makes
    /// off the tasks that drive the connections.
    pub fn signs_slowly(&self) -> bool {
        self.letterhead.signs_slowly()
    }

    /// The one-click unsubscribe URL for a reader.
    pub fn unsubscribe_url(&self, bearer: Bearer<'_>) -> String {
        let token = unsubscribe_token(&self.secret, &self.list, bearer);
        let mut url = self.base_url.join("unsubscribe");
        url.query_pairs_mut().append_pair("token", &token);
        url.to_string()
    }

    /// The URL of a reader's preferences page (every list).
    pub fn preferences_url(&self, bearer: Bearer<'_>) -> String {
        let token = token::sign(&self.secret, Action::Preferences, &["*"], bearer, None);
        let mut url = self.base_url.join("preferences");
        url.query_pairs_mut().append_pair("token", &token);
        url.to_string()
    }

    /// Builds one reader's message, dated `now`.
    pub fn message(&self, r: &Recipient, now: DateTime<Utc>) -> Result<Outgoing, ComposeError> {
        let fail = |message: String| ComposeError::Message {
            list: self.list.clone(),
            email: r.email.clone(),
            message,
        };
        let address: lettre::Address =
            r.email.parse().map_err(|e| fail(format!("bad address: {e}")))?;
        let unsubscribe_url = self.unsubscribe_url(r.bearer());
        let preferences_url = self.preferences_url(r.bearer());
        let reader = ReaderFields {
            name: r.name.as_deref(),
            email: &r.email,
            unsubscribe_url: &unsubscribe_url,
            preferences_url: &preferences_url,
        };
        let body = match self.fast.as_ref().and_then(|fast| fast.pieces(&reader)) {
            Some((html, text)) => Prerendered::assemble(html, text, &reader),
            None => {
                let (html, text) = self.render_for(&reader, Some(r.bearer()))?;
                MultiPart::alternative_plain_html(text, html)
            }
        };

        // RFC 2369: angle-bracketed URIs, most preferred first.
        let mut list_unsubscribe = format!("<{unsubscribe_url}>");
        if let Some(mailto) = &self.unsubscribe_mailto {
            let token = unsubscribe_token(&self.secret, &self.list, r.bearer());
            list_unsubscribe
                .push_str(&format!(", <mailto:{mailto}?subject=unsubscribe%20{token}>"));
        }

        let headers = vec![
            HeaderValue::new(HeaderName::new_from_ascii_str("List-Id"), self.list_id.clone()),
            HeaderValue::new(HeaderName::new_from_ascii_str("List-Unsubscribe"), list_unsubscribe),
            // RFC 8058: a POST to the https URI unsubscribes without a page;
            // the signature covers both headers (section 4).
            HeaderValue::new(
                HeaderName::new_from_ascii_str("List-Unsubscribe-Post"),
                "List-Unsubscribe=One-Click".to_owned(),
            ),
        ];
        self.letterhead
            .message(
                Tag { edition: self.edition_id, subscriber: r.subscriber },
                Mailbox::new(r.name.clone(), address),
                self.subject.clone(),
                now,
                r.message_id.clone(),
                headers,
                body,
            )
            .map_err(fail)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Field {
    Name,
    Email,
    Unsubscribe,
    Preferences,
}

/// What stands for each field in one edition's prerender: the field's name
/// and a random nonce between Unicode private use characters, so that no
/// text from outside (an article quoting a marker) can pose as one.
///
/// Each marker ends in a `"`, which tells where it landed: Tera's escaping
/// writes it `&quot;` in the HTML part; when the CSS is inlined, the HTML is
/// parsed and written anew, and html5ever's serializer writes it `"` in an
/// element's text and `&quot;` in an attribute value. The reader's value is
/// then escaped as that writer would have escaped it.
struct Marks([(String, Field); 4]);

/// How a reader's value is written where its marker stood.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Escape {
    /// As it is (the text part).
    None,
    /// As Tera escapes HTML (`templates::escape_html`).
    Tera,
    /// As html5ever writes an element's text.
    Text,
    /// As html5ever writes an attribute value.
    Attribute,
}

impl Marks {
    fn new() -> Self {
        let nonce: u128 = rand::random();
        let mark = |name: &str| format!("\u{E000}herald:{nonce:032x}:{name}\"\u{E001}");
        Self([
            (mark("name"), Field::Name),
            (mark("email"), Field::Email),
            (mark("unsubscribe"), Field::Unsubscribe),
            (mark("preferences"), Field::Preferences),
        ])
    }

    /// A reader whose values are the markers, with or without a name.
    fn reader(&self, named: bool) -> ReaderFields<'_> {
        ReaderFields {
            name: named.then_some(self.0[0].0.as_str()),
            email: &self.0[1].0,
            unsubscribe_url: &self.0[2].0,
            preferences_url: &self.0[3].0,
        }
    }
}

/// The reader's fields as templates name them (`subscriber.email`,
/// `unsubscribe_url`), from what `insert_reader` puts in the context: a field
/// added there is checked in the templates without more ado, and spliced only
/// once a marker stands for it.
fn reader_paths() -> Vec<ReaderPath> {
    fn leaves(prefix: &str, value: &serde_json::Value, marks: &Marks, out: &mut Vec<ReaderPath>) {
        match value {
            serde_json::Value::Object(map) if !map.is_empty() => {
                for (key, value) in map {
                    let path =
                        if prefix.is_empty() { key.clone() } else { format!("{prefix}.{key}") };
                    leaves(&path, value, marks, out);
                }
            }
            _ => out.push(ReaderPath {
                path: prefix.to_owned(),
                spliced: marks.0.iter().any(|(mark, _)| value.as_str() == Some(mark.as_str())),
            }),
        }
    }
    let marks = Marks::new();
    let mut context = tera::Context::new();
    insert_reader(&mut context, Some(&marks.reader(true)));
    let mut paths = Vec::new();
    leaves("", &context.into_json(), &marks, &mut paths);
    paths
}

/// How a body was written: the text part, or the HTML part as Tera wrote
/// it or with its CSS inlined.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Written {
    Text,
    Html,
    Inlined,
}

/// One body rendered with markers where the reader's values go, cut at the
/// markers, each literal piece already quoted-printable encoded.
#[derive(Debug)]
struct Pieces {
    /// Literal (encoded), then field, literal, field, …, literal.
    literals: Vec<String>,
    fields: Vec<(Field, Escape)>,
    size: usize,
}

impl Pieces {
    fn cut(rendered: &str, written: Written, marks: &Marks) -> Self {
        // Each marker as it may appear (its `"` raw or escaped), and how
        // the value that replaces it is escaped there.
        let forms: Vec<(String, Field, Escape)> = marks
            .0
            .iter()
            .flat_map(|(mark, field)| {
                let escaped = mark.replace('"', "&quot;");
                let (raw, quoted) = match written {
                    Written::Text => (Escape::None, Escape::None),
                    Written::Html => (Escape::Tera, Escape::Tera),
                    Written::Inlined => (Escape::Text, Escape::Attribute),
                };
                [(mark.clone(), *field, raw), (escaped, *field, quoted)]
            })
            .collect();
        let mut literals = Vec::new();
        let mut raw = Vec::new();
        let mut fields = Vec::new();
        let mut rest = rendered;
        loop {
            let next = forms
                .iter()
                .filter_map(|(mark, field, escape)| {
                    rest.find(mark.as_str()).map(|at| (at, mark, *field, *escape))
                })
                .min_by_key(|(at, _, _, _)| *at);
            match next {
                Some((at, mark, field, escape)) => {
                    raw.push(rest[..at].to_owned());
                    fields.push((field, escape));
                    rest = &rest[at + mark.len()..];
                }
                None => {
                    raw.push(rest.to_owned());
                    break;
                }
            }
        }
        for piece in &raw {
            // As lettre's Body::new does: CRLF line ends, then quoted-printable.
            let crlf = piece.replace("\r\n", "\n").replace('\n', "\r\n");
            literals.push(quoted_printable::encode_to_str(crlf));
        }
        let size = literals.iter().map(String::len).sum();
        Self { literals, fields, size }
    }

    fn value<'a>(
        field: Field,
        escape: Escape,
        reader: &'a ReaderFields<'_>,
    ) -> std::borrow::Cow<'a, str> {
        let value = match field {
            Field::Name => reader.name.unwrap_or(""),
            Field::Email => reader.email,
            Field::Unsubscribe => reader.unsubscribe_url,
            Field::Preferences => reader.preferences_url,
        };
        match escape {
            Escape::None => std::borrow::Cow::Borrowed(value),
            Escape::Tera => std::borrow::Cow::Owned(crate::templates::escape_html(value)),
            Escape::Text => std::borrow::Cow::Owned(inline::escape_text(value)),
            Escape::Attribute => std::borrow::Cow::Owned(inline::escape_attribute(value)),
        }
    }

    /// The body for a reader, quoted-printable encoded. Each piece is encoded
    /// on its own and joined with soft line breaks (`=` CRLF), which decode
    /// to nothing, so the result decodes to the whole body.
    fn encoded(&self, reader: &ReaderFields<'_>) -> String {
        let mut out = String::with_capacity(self.size + 512);
        for (i, literal) in self.literals.iter().enumerate() {
            out.push_str(literal);
            if let Some((field, escape)) = self.fields.get(i) {
                out.push_str("=\r\n");
                out.push_str(&quoted_printable::encode_to_str(
                    Self::value(*field, *escape, reader).as_bytes(),
                ));
                out.push_str("=\r\n");
            }
        }
        out
    }
}

/// The digest rendered once per edition (twice: readers with and without a
/// name), so each message costs string joins instead of a template render
/// and a full quoted-printable encoding. Used only when the templates write
/// the reader's fields as they are or test only their truth (see `splice`).
#[derive(Debug)]
struct Prerendered {
    named: (Pieces, Pieces),
    unnamed: (Pieces, Pieces),
}

impl Prerendered {
    /// Renders both parts with markers, for readers with a name and without.
    fn prepare(digest: &Digest) -> Result<Self, ComposeError> {
        let marks = Marks::new();
        let cut = |named: bool| -> Result<(Pieces, Pieces), ComposeError> {
            let (html, text, inlined) = digest.render_marked(&marks.reader(named))?;
            let written = if inlined { Written::Inlined } else { Written::Html };
            Ok((Pieces::cut(&html, written, &marks), Pieces::cut(&text, Written::Text, &marks)))
        };
        Ok(Self { named: cut(true)?, unnamed: cut(false)? })
    }

    /// The HTML and text pieces that stand for `reader`: those without a
    /// name when theirs is missing or empty (both false to `{% if %}`).
    /// `None` when a value could come out differently spliced than rendered:
    /// an empty one (false where the marker is true), one with a line break,
    /// or one with white space at either end (which tidying the text part
    /// trims at a line's end), or a NUL (which parsing the HTML part to
    /// inline its CSS replaces); that reader gets a render of their own.
    fn pieces(&self, reader: &ReaderFields<'_>) -> Option<(&Pieces, &Pieces)> {
        let splices = |v: &str| !v.is_empty() && v.trim() == v && !v.contains(['\n', '\r', '\0']);
        let (name, (html, text)) = match reader.name {
            Some(name) if !name.is_empty() => (Some(name), &self.named),
            _ => (None, &self.unnamed),
        };
        let values = [reader.email, reader.unsubscribe_url, reader.preferences_url];
        (name.is_none_or(splices) && values.into_iter().all(splices)).then_some((html, text))
    }

    fn assemble(html: &Pieces, text: &Pieces, reader: &ReaderFields<'_>) -> MultiPart {
        let part = |pieces: &Pieces, content_type: ContentType| {
            SinglePart::builder().header(content_type).body(Body::dangerous_pre_encoded(
                pieces.encoded(reader).into_bytes(),
                ContentTransferEncoding::QuotedPrintable,
            ))
        };
        MultiPart::alternative()
            .singlepart(part(text, ContentType::TEXT_PLAIN))
            .singlepart(part(html, ContentType::TEXT_HTML))
    }
}

/// Reads the DKIM keys: a signer, or none when no key is set.
pub fn load_dkim(keys: &[crate::config::Dkim]) -> Result<Option<Signer>, ComposeError> {
    if keys.is_empty() {
        return Ok(None);
    }
    Signer::load(keys)
        .map(Some)
        .map_err(|e| ComposeError::Dkim { path: e.path, message: e.message })
}

#[cfg(test)]
mod tests;
