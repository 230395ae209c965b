//! One message builder for every transport: an edition and a reader in, a
//! lettre `Message` out, with the headers bulk mail needs (RFC 2369 / 2919
//! List-* headers, RFC 8058 one-click unsubscribe) and a Message-ID that is
//! the same on every attempt.

use std::time::SystemTime;

use chrono::{DateTime, Utc};
use lettre::message::header::{HeaderName, HeaderValue};
use lettre::message::{Mailbox, MultiPart};
use lettre::Message;

use super::{digest_context, render_digest, ComposeError};
use crate::config::{Config, List};
use crate::email::EmailAddress;
use crate::store::{Edition, Store};
use crate::subscribe::{unsubscribe_token, Secret};
use crate::templates::Templates;
use crate::types::{BaseUrl, Schedule, Slug};

/// A reader of an edition, as the delivery ledger names them.
#[derive(Debug, Clone)]
pub struct Recipient {
    pub subscriber: i64,
    pub email: String,
    pub name: Option<String>,
    pub message_id: String,
}

/// Everything needed to build any reader's copy of one edition. Owns its
/// data, so delivery tasks can share it behind an `Arc`.
pub struct Digest {
    pub edition_id: i64,
    list: String,
    list_id: String,
    subject: String,
    from: Mailbox,
    reply_to: Option<Mailbox>,
    base_url: BaseUrl,
    unsubscribe_mailto: Option<EmailAddress>,
    secret: Secret,
    templates: Templates,
    context: tera::Context,
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
                };
                &fallback
            }
        };
        let mut context = digest_context(config, list, edition.edition_date, &articles);
        context.insert("subject", &edition.subject);
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
        Ok(Self {
            edition_id: edition.id,
            list: edition.list.clone(),
            list_id,
            subject: edition.subject.clone(),
            from: config.mail.from.clone(),
            reply_to: config.mail.reply_to.clone(),
            base_url: config.site.base_url.clone(),
            unsubscribe_mailto: config.mail.unsubscribe_mailto.clone(),
            secret,
            templates,
            context,
        })
    }

    pub fn list(&self) -> &str {
        &self.list
    }

    /// The one-click unsubscribe URL for a reader.
    pub fn unsubscribe_url(&self, subscriber: i64) -> String {
        let token = unsubscribe_token(&self.secret, &self.list, subscriber);
        let mut url = self.base_url.join("unsubscribe");
        url.query_pairs_mut().append_pair("token", &token);
        url.to_string()
    }

    /// Builds one reader's message, dated `now`.
    pub fn message(&self, r: &Recipient, now: DateTime<Utc>) -> Result<Message, ComposeError> {
        let fail = |message: String| ComposeError::Message {
            list: self.list.clone(),
            email: r.email.clone(),
            message,
        };
        let address: lettre::Address =
            r.email.parse().map_err(|e| fail(format!("bad address: {e}")))?;
        let unsubscribe_url = self.unsubscribe_url(r.subscriber);

        let mut context = self.context.clone();
        context.insert("subscriber", &serde_json::json!({ "name": r.name, "email": r.email }));
        context.insert("unsubscribe_url", &unsubscribe_url);
        let (html, text) = render_digest(&self.templates, &context, &self.list)?;

        // RFC 2369: angle-bracketed URIs, most preferred first.
        let mut list_unsubscribe = format!("<{unsubscribe_url}>");
        if let Some(mailto) = &self.unsubscribe_mailto {
            let token = unsubscribe_token(&self.secret, &self.list, r.subscriber);
            list_unsubscribe
                .push_str(&format!(", <mailto:{mailto}?subject=unsubscribe%20{token}>"));
        }

        let mut builder = Message::builder()
            .from(self.from.clone())
            .to(Mailbox::new(r.name.clone(), address))
            .subject(self.subject.clone())
            .date(SystemTime::from(now))
            .message_id(Some(r.message_id.clone()))
            .raw_header(HeaderValue::new(
                HeaderName::new_from_ascii_str("List-Id"),
                self.list_id.clone(),
            ))
            .raw_header(HeaderValue::new(
                HeaderName::new_from_ascii_str("List-Unsubscribe"),
                list_unsubscribe,
            ))
            // RFC 8058: a POST to the https URI unsubscribes without a page.
            .raw_header(HeaderValue::new(
                HeaderName::new_from_ascii_str("List-Unsubscribe-Post"),
                "List-Unsubscribe=One-Click".to_owned(),
            ));
        if let Some(reply_to) = &self.reply_to {
            builder = builder.reply_to(reply_to.clone());
        }
        builder
            .multipart(MultiPart::alternative_plain_html(text, html))
            .map_err(|e| fail(e.to_string()))
    }
}
