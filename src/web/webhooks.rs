//! The providers' webhooks: `POST /webhooks/ses`, `/webhooks/postmark`,
//! `/webhooks/mailgun`, `/webhooks/sendgrid` and `/webhooks/generic`. Each
//! is on only when its key or secret is configured (else 404). The request's
//! signature and body are read by `bounces::providers`, and each finding is
//! handed to [`Intake::finding`], the one way in for every report.
//!
//! Answers, as providers expect them: 200 when taken (a replay too: it
//! changes nothing, and is no error to the provider), 401 for a request
//! without a signature or credentials, 403 for a wrong one, 400 for a body
//! that cannot be read (with a short reason), 413 over
//! `bounces.webhooks.max_body_kb`, and 503 when the store cannot take the
//! events, so the provider tries again. A refused request changes nothing.

use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{header, HeaderMap, Response, StatusCode};
use axum::routing::post;
use axum::Router;
use chrono::Utc;

use crate::bounces::providers::{
    self, fetch::SnsFetcher, generic, mailgun, postmark, sendgrid, ses, Event, Refusal, Verp,
};
use crate::bounces::{Intake, Via};
use crate::config::{Config, ENV_MAILGUN_KEY, ENV_POSTMARK_PASSWORD, ENV_WEBHOOK_SECRET};
use crate::store::{BounceAction, Store};
use crate::subscribe::Secret;

/// The shortest secret taken from the environment.
const MIN_SECRET: usize = 16;

pub struct Webhooks {
    intake: Intake,
    max_body: usize,
    ses: Option<Ses>,
    postmark: Option<(String, String)>,
    mailgun: Option<(Vec<u8>, mailgun::Tokens)>,
    sendgrid: Option<Vec<u8>>,
    generic: Option<Vec<u8>>,
}

struct Ses {
    topics: Vec<String>,
    fetcher: SnsFetcher,
}

#[derive(Debug, thiserror::Error)]
pub enum WebhookError {
    #[error(transparent)]
    Secret(#[from] crate::subscribe::token::SecretError),
    #[error("{0}")]
    Setup(String),
}

impl Webhooks {
    /// Sets the webhooks up from `[bounces.webhooks]` and the environment.
    pub async fn new(config: &Config, store: Store) -> Result<Arc<Self>, WebhookError> {
        let settings = &config.bounces.webhooks;
        let secret = |var: &str| -> Result<Option<Vec<u8>>, WebhookError> {
            match std::env::var(var) {
                Ok(v) if v.len() >= MIN_SECRET => Ok(Some(v.into_bytes())),
                Ok(v) if v.is_empty() => Ok(None),
                Ok(_) => Err(WebhookError::Setup(format!(
                    "{var} is shorter than {MIN_SECRET} characters; use the provider's key as it is, or a long random value (e.g. `openssl rand -hex 32`)"
                ))),
                Err(_) => Ok(None),
            }
        };
        let ses = match settings.ses_topic_arns.is_empty() {
            true => None,
            false => Some(Ses {
                topics: settings.ses_topic_arns.clone(),
                fetcher: SnsFetcher::new(settings.ses_extra_ca_file.as_deref())
                    .map_err(WebhookError::Setup)?,
            }),
        };
        let postmark = match (&settings.postmark_user, secret(ENV_POSTMARK_PASSWORD)?) {
            (Some(user), Some(password)) => {
                Some((user.clone(), String::from_utf8_lossy(&password).into_owned()))
            }
            (Some(_), None) => {
                tracing::warn!("bounces.webhooks.postmark_user is set but {ENV_POSTMARK_PASSWORD} is not: /webhooks/postmark stays off");
                None
            }
            _ => None,
        };
        let webhooks = Self {
            intake: Intake::new(store.clone(), Secret::resolve(&store).await?, config),
            max_body: settings.max_body_bytes,
            ses,
            postmark,
            mailgun: secret(ENV_MAILGUN_KEY)?.map(|key| (key, mailgun::Tokens::default())),
            sendgrid: settings.sendgrid_public_key.clone(),
            generic: secret(ENV_WEBHOOK_SECRET)?,
        };
        let on: Vec<&str> = [
            ("ses", webhooks.ses.is_some()),
            ("postmark", webhooks.postmark.is_some()),
            ("mailgun", webhooks.mailgun.is_some()),
            ("sendgrid", webhooks.sendgrid.is_some()),
            ("generic", webhooks.generic.is_some()),
        ]
        .into_iter()
        .filter_map(|(name, on)| on.then_some(name))
        .collect();
        if !on.is_empty() {
            tracing::info!("bounce webhooks on: /webhooks/{{{}}}", on.join(","));
        }
        Ok(Arc::new(webhooks))
    }

    pub fn router(self: &Arc<Self>) -> Router {
        Router::new()
            .route("/webhooks/ses", post(ses_hook))
            .route("/webhooks/postmark", post(postmark_hook))
            .route("/webhooks/mailgun", post(mailgun_hook))
            .route("/webhooks/sendgrid", post(sendgrid_hook))
            .route("/webhooks/generic", post(generic_hook))
            .layer(axum::extract::DefaultBodyLimit::max(self.max_body))
            .with_state(Arc::clone(self))
    }

    fn verp(&self) -> Verp<'_> {
        Verp { secret: self.intake.secret(), bounce_address: self.intake.bounce_address() }
    }

    /// Hands each event to the intake; 503 at the first the store cannot
    /// take (those before it stay taken, and a retry finds them duplicates).
    async fn take(&self, via: Via, events: Vec<Event>) -> Response<Body> {
        let now = Utc::now();
        let (mut taken, mut duplicates) = (0usize, 0usize);
        for event in events {
            match self.intake.finding(via, &event.finding, event.tag, event.reference, now).await {
                Ok(recorded) if recorded.action == BounceAction::Duplicate => duplicates += 1,
                Ok(_) => taken += 1,
                Err(e) => {
                    tracing::error!(via = via.as_str(), "cannot record a webhook's event: {e}");
                    return plain(
                        StatusCode::SERVICE_UNAVAILABLE,
                        "the store cannot take events just now; try again\n",
                    );
                }
            }
        }
        plain(StatusCode::OK, &format!("taken {taken}, seen before {duplicates}\n"))
    }
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

fn plain(status: StatusCode, text: &str) -> Response<Body> {
    Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, "text/plain; charset=utf-8")
        .header(header::CACHE_CONTROL, "no-store")
        .body(Body::from(text.to_owned()))
        .unwrap_or_default()
}

fn off() -> Response<Body> {
    plain(StatusCode::NOT_FOUND, "not found\n")
}

fn refused(via: Via, refusal: &Refusal) -> Response<Body> {
    let status = match refusal {
        Refusal::Unsigned(_) => StatusCode::UNAUTHORIZED,
        Refusal::Forbidden(_) => StatusCode::FORBIDDEN,
        Refusal::Malformed(_) => StatusCode::BAD_REQUEST,
    };
    tracing::warn!(via = via.as_str(), "webhook request {}: {refusal}", status.as_u16());
    let mut response = plain(status, &format!("{refusal}\n"));
    if via == Via::Postmark && status == StatusCode::UNAUTHORIZED {
        response.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            header::HeaderValue::from_static("Basic realm=\"herald webhooks\""),
        );
    }
    response
}

async fn generic_hook(
    State(w): State<Arc<Webhooks>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response<Body> {
    let Some(secret) = &w.generic else { return off() };
    match generic::read(
        header(&headers, "x-herald-timestamp"),
        header(&headers, "x-herald-signature"),
        &body,
        secret,
        Utc::now(),
        &w.verp(),
    ) {
        Ok(events) => w.take(Via::Webhook, events).await,
        Err(refusal) => refused(Via::Webhook, &refusal),
    }
}

async fn postmark_hook(
    State(w): State<Arc<Webhooks>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response<Body> {
    let Some((user, password)) = &w.postmark else { return off() };
    match postmark::read(
        header(&headers, header::AUTHORIZATION.as_str()),
        &body,
        user,
        password,
        &w.verp(),
    ) {
        Ok(events) => w.take(Via::Postmark, events).await,
        Err(refusal) => refused(Via::Postmark, &refusal),
    }
}

async fn mailgun_hook(State(w): State<Arc<Webhooks>>, body: Bytes) -> Response<Body> {
    let Some((key, tokens)) = &w.mailgun else { return off() };
    match mailgun::read(&body, key, tokens, Utc::now(), &w.verp()) {
        Ok(mailgun::Read::Events(events)) => w.take(Via::Mailgun, events).await,
        Ok(mailgun::Read::Replay) => {
            tracing::info!(via = "mailgun", "a signature token seen before: ignored");
            plain(StatusCode::OK, "taken 0, seen before 1\n")
        }
        Err(refusal) => refused(Via::Mailgun, &refusal),
    }
}

async fn sendgrid_hook(
    State(w): State<Arc<Webhooks>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response<Body> {
    let Some(key) = &w.sendgrid else { return off() };
    match sendgrid::read(
        header(&headers, "x-twilio-email-event-webhook-signature"),
        header(&headers, "x-twilio-email-event-webhook-timestamp"),
        &body,
        key,
        &w.verp(),
    ) {
        Ok(events) => w.take(Via::Sendgrid, events).await,
        Err(refusal) => refused(Via::Sendgrid, &refusal),
    }
}

async fn ses_hook(State(w): State<Arc<Webhooks>>, body: Bytes) -> Response<Body> {
    let Some(ses) = &w.ses else { return off() };
    let envelope = match ses::envelope(&body, &ses.topics) {
        Ok(envelope) => envelope,
        Err(refusal) => return refused(Via::Ses, &refusal),
    };
    let url = &envelope.signing_cert_url;
    let pem = match ses.fetcher.certificate(url).await {
        Ok(pem) => pem,
        Err(e) => {
            tracing::warn!(via = "ses", "cannot fetch the SNS signing certificate: {e}");
            return plain(
                StatusCode::SERVICE_UNAVAILABLE,
                "the signing certificate cannot be fetched just now; try again\n",
            );
        }
    };
    let now = Utc::now();
    let mut issuers = Vec::new();
    let certificate = loop {
        match ses::signing_certificate(&pem, ses.fetcher.extra(), &issuers, now) {
            Ok(ses::Chain::Trusted(certificate)) => break certificate,
            // Asked once: `signing_certificate` gives this only without issuers.
            Ok(ses::Chain::NeedsIssuer(issuer)) if issuers.is_empty() => {
                match ses.fetcher.issuer(&issuer).await {
                    Ok(bytes) => issuers = ses::issuer_certificates(&bytes),
                    Err(e) => {
                        tracing::warn!(
                            via = "ses",
                            "cannot fetch the SNS certificate's issuer: {e}"
                        );
                        return plain(
                            StatusCode::SERVICE_UNAVAILABLE,
                            "the signing certificate's issuer cannot be fetched just now; try again\n",
                        );
                    }
                }
                if issuers.is_empty() {
                    ses.fetcher.forget(&issuer);
                    let why = format!("no certificate at {}", providers::shown(issuer.as_str()));
                    return refused(Via::Ses, &Refusal::Forbidden(why));
                }
            }
            Ok(ses::Chain::NeedsIssuer(issuer)) => {
                ses.fetcher.forget(&issuer);
                ses.fetcher.forget(url);
                let why = "the signing certificate does not chain to a trusted root".to_owned();
                return refused(Via::Ses, &Refusal::Forbidden(why));
            }
            Err(e) => {
                ses.fetcher.forget(url);
                return refused(Via::Ses, &Refusal::Forbidden(e));
            }
        }
    };
    if let Err(refusal) = ses::verify(&envelope, &certificate) {
        return refused(Via::Ses, &refusal);
    }
    let topic = providers::shown(&envelope.topic_arn);
    match envelope.kind {
        ses::MessageType::SubscriptionConfirmation => {
            let Some(subscribe) = &envelope.subscribe_url else {
                return refused(Via::Ses, &Refusal::Malformed("no SubscribeURL".into()));
            };
            match ses.fetcher.confirm(subscribe).await {
                Ok(()) => {
                    tracing::warn!(via = "ses", topic = %topic, url = %providers::shown(subscribe.as_str()), "confirmed the SNS subscription");
                    plain(StatusCode::OK, "subscription confirmed\n")
                }
                Err(e) => {
                    tracing::warn!(via = "ses", topic = %topic, "cannot confirm the SNS subscription: {e}");
                    plain(
                        StatusCode::SERVICE_UNAVAILABLE,
                        "cannot confirm the subscription just now\n",
                    )
                }
            }
        }
        ses::MessageType::UnsubscribeConfirmation => {
            tracing::warn!(via = "ses", topic = %topic, "SNS says this endpoint was unsubscribed from the topic");
            plain(StatusCode::OK, "noted\n")
        }
        ses::MessageType::Notification => match ses::events(&envelope, &w.verp()) {
            Ok(events) => w.take(Via::Ses, events).await,
            Err(refusal) => refused(Via::Ses, &refusal),
        },
    }
}
