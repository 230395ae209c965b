//! The reader's side of the lists: `/subscribe` (a form, double opt-in),
//! `/confirm`, `/unsubscribe` (a page with one button, and RFC 8058
//! one-click POST) and `/preferences`.
//!
//! Every action is authorised by a signed token in the link herald mailed
//! (`subscribe::token`), so there are no accounts, sessions or logins. The
//! form is guarded by a CSRF field bound to a cookie, a honeypot field, and
//! rate limits per client address and per email address; at most one
//! confirmation mail goes to an address per `web.confirm_mail_interval_minutes`.
//! The page after a sign-up is the same whether or not the address was
//! known, and the mail goes out in the background, so neither the page nor
//! its timing tells who is subscribed. The same holds for `/manage` ("email
//! me a link to manage my subscription"), whose store lookup and mail are
//! entirely in the background. A confirmation that joins a list sends the
//! welcome mail when the site has its templates. `/c/TOKEN` is the click
//! redirect of lists that count clicks (`clicks.rs`).

use std::net::{IpAddr, SocketAddr};
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{header, HeaderMap, HeaderValue, Response, StatusCode};
use axum::routing::get;
use axum::Router;
use chrono::{DateTime, Utc};
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use rand::RngCore;
use serde_json::json;

use crate::compose::{self, ConfirmationContext, Letterhead, ManageContext, WelcomeContext};
use crate::config::Config;
use crate::deliver::{MailQueue, Mailer, Transport};
use crate::email::EmailAddress;
use crate::store::{Confirmed, MembershipStatus, SignupRecord, Store};
use crate::subscribe::token::{self, Action, Bearer, TokenError};
use crate::subscribe::Secret;
use crate::templates::Templates;

mod clicks;
mod links;
mod manage;
mod routes;
mod samples;

pub use samples::samples;

use links::MAX_FORM_BYTES;
use routes::{
    confirm, confirm_page, preferences, preferences_page, subscribe, subscribe_form, unsubscribe,
    unsubscribe_page,
};

const CSRF_COOKIE: &str = "herald_csrf";

/// A list as the pages show it.
#[derive(Debug, Clone)]
struct ListInfo {
    slug: String,
    name: String,
    description: String,
    public: bool,
    /// Sent at each reader's hour: the page offers a time zone.
    local_time: bool,
    track_clicks: bool,
    individual: bool,
}

pub struct Signups {
    store: Store,
    secret: Secret,
    templates: Templates,
    site: serde_json::Value,
    base_url: String,
    base: crate::types::BaseUrl,
    lists: Vec<ListInfo>,
    letterhead: Letterhead,
    confirm_expiry: chrono::Duration,
    confirm_interval: chrono::Duration,
    behind_proxy: bool,
    secure_cookie: bool,
    per_ip: DefaultKeyedRateLimiter<IpAddr>,
    per_address: DefaultKeyedRateLimiter<String>,
    mail: MailQueue,
    /// Manage-link requests being handled in the background: a bound, so a
    /// flood cannot pile up tasks (past it a request is dropped, with the
    /// same answer).
    manage_slots: Arc<tokio::sync::Semaphore>,
}

#[derive(Debug, thiserror::Error)]
pub enum SignupError {
    #[error(transparent)]
    Secret(#[from] crate::subscribe::token::SecretError),
    #[error(transparent)]
    Transport(#[from] crate::deliver::TransportError),
    #[error(transparent)]
    Dkim(#[from] crate::compose::ComposeError),
}

impl Signups {
    /// Sets up the pages; the mailer runs until every `Signups` is dropped.
    pub async fn new(
        config: &Config,
        store: Store,
        templates: Templates,
    ) -> Result<(Arc<Self>, Mailer), SignupError> {
        let secret = Secret::resolve(&store).await?;
        let transport = Arc::new(Transport::from_config(&config.mail)?);
        let letterhead = Letterhead::from_config(config, &secret)?;
        let (mail, mailer) = Mailer::start(transport);
        let web = &config.web;
        let quota = |n: u32, per: fn(NonZeroU32) -> Quota| {
            per(NonZeroU32::new(n).unwrap_or(NonZeroU32::MIN))
        };
        let signups = Self {
            store,
            secret,
            templates,
            site: crate::templates::site_context(config),
            base_url: config.site.base_url.to_string(),
            base: config.site.base_url.clone(),
            lists: config
                .lists
                .iter()
                .map(|l| ListInfo {
                    slug: l.slug.to_string(),
                    name: l.name.clone(),
                    description: l.description.clone(),
                    public: l.public,
                    local_time: l.local_time,
                    track_clicks: l.track_clicks,
                    individual: l.individual,
                })
                .collect(),
            letterhead,
            confirm_expiry: chrono::Duration::days(
                i64::try_from(web.confirm_expiry_days).unwrap_or(7),
            ),
            confirm_interval: chrono::Duration::minutes(
                i64::try_from(web.confirm_mail_interval_minutes).unwrap_or(60),
            ),
            behind_proxy: web.behind_proxy,
            secure_cookie: config.site.base_url.as_str().starts_with("https:"),
            per_ip: RateLimiter::keyed(quota(web.subscribe_per_ip_per_minute, Quota::per_minute)),
            per_address: RateLimiter::keyed(quota(
                web.subscribe_per_address_per_hour,
                Quota::per_hour,
            )),
            mail,
            manage_slots: Arc::new(tokio::sync::Semaphore::new(64)),
        };
        Ok((Arc::new(signups), mailer))
    }

    /// The routes, with security headers on every response.
    pub fn router(self: &Arc<Self>) -> Router {
        Router::new()
            .route("/subscribe", get(subscribe_form).post(subscribe))
            .route("/confirm", get(confirm_page).post(confirm))
            .route("/unsubscribe", get(unsubscribe_page).post(unsubscribe))
            .route("/preferences", get(preferences_page).post(preferences))
            .route("/manage", get(manage::form).post(manage::request))
            .route("/c/{token}", get(clicks::click))
            .layer(axum::extract::DefaultBodyLimit::max(MAX_FORM_BYTES))
            .layer(axum::middleware::map_response(security_headers))
            .with_state(Arc::clone(self))
    }

    fn public_lists(&self) -> impl Iterator<Item = &ListInfo> {
        self.lists.iter().filter(|l| l.public)
    }

    fn list(&self, slug: &str) -> Option<&ListInfo> {
        self.lists.iter().find(|l| l.slug == slug)
    }

    fn page(
        &self,
        status: StatusCode,
        template: &str,
        mut context: serde_json::Value,
    ) -> Response<Body> {
        context["site"] = self.site.clone();
        let rendered = tera::Context::from_value(context)
            .and_then(|c| self.templates.tera.render(template, &c));
        match rendered {
            Ok(html) => html_response(status, html),
            Err(e) => {
                tracing::error!("cannot render {template}: {}", crate::text::error_chain(&e));
                html_response(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "<!doctype html><title>Error</title><p>This page cannot be shown right now.</p>"
                        .into(),
                )
            }
        }
    }

    fn notice(&self, status: StatusCode, heading: &str, paragraphs: &[&str]) -> Response<Body> {
        self.page(
            status,
            "web/notice.html",
            json!({ "heading": heading, "paragraphs": paragraphs }),
        )
    }

    /// The 400 page for a link that is not genuine or has expired.
    fn bad_link(&self, error: TokenError) -> Response<Body> {
        let explain = match error {
            TokenError::Expired => "Links in our mails work for a limited time, and this one has expired.",
            TokenError::Invalid => "The link is incomplete or was changed on the way. Copy the whole link from the mail, or open it with one click.",
        };
        self.page(
            StatusCode::BAD_REQUEST,
            "web/notice.html",
            json!({
                "heading": format!("This link does not work: {error}"),
                "paragraphs": [explain, "Nothing was changed."],
                "subscribe_url": format!("{}subscribe", self.base_url),
            }),
        )
    }

    fn too_many(&self, wait: Duration) -> Response<Body> {
        let mut response = self.notice(
            StatusCode::TOO_MANY_REQUESTS,
            "Too many requests",
            &["Please wait a little and try again."],
        );
        let seconds = wait.as_secs().max(1).to_string();
        if let Ok(value) = HeaderValue::from_str(&seconds) {
            response.headers_mut().insert(header::RETRY_AFTER, value);
        }
        response
    }

    fn client(&self, peer: SocketAddr, headers: &HeaderMap) -> IpAddr {
        if self.behind_proxy {
            let forwarded = headers
                .get("x-forwarded-for")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.rsplit(',').next())
                .and_then(|ip| ip.trim().parse().ok());
            if let Some(ip) = forwarded {
                return ip;
            }
        }
        peer.ip()
    }

    /// Takes one request from a client address's allowance; the wait when
    /// there is none left.
    fn limit_ip(&self, ip: IpAddr) -> Option<Duration> {
        take(&self.per_ip, ip)
    }

    fn limit_address(&self, email: &EmailAddress) -> Option<Duration> {
        take(&self.per_address, email.as_str().to_owned())
    }

    /// The lists a reader's preferences page offers: the public ones and any
    /// they are on.
    fn offered<'a>(
        &'a self,
        memberships: &'a [(String, MembershipStatus)],
    ) -> impl Iterator<Item = &'a ListInfo> + 'a {
        self.lists.iter().filter(|l| l.public || memberships.iter().any(|(m, _)| *m == l.slug))
    }

    /// The CSRF field for a cookie value: a MAC of it, so a cookie planted
    /// by someone else is no use without the secret.
    fn csrf_field(&self, cookie: &str) -> String {
        self.secret.sign_bytes("csrf", cookie.as_bytes())
    }

    fn csrf_ok(&self, headers: &HeaderMap, form: &Form) -> bool {
        match (csrf_cookie(headers), form.one("csrf")) {
            (Some(cookie), Some(field)) => {
                self.secret.verify_bytes("csrf", cookie.as_bytes(), field)
            }
            _ => false,
        }
    }

    /// The cookie value to use, and the Set-Cookie header when it is new.
    fn csrf_cookie_for(&self, headers: &HeaderMap) -> (String, Option<HeaderValue>) {
        if let Some(existing) = csrf_cookie(headers) {
            return (existing, None);
        }
        let mut bytes = [0u8; 16];
        rand::thread_rng().fill_bytes(&mut bytes);
        let value = hex::encode(bytes);
        let secure = if self.secure_cookie { "; Secure" } else { "" };
        let cookie = format!("{CSRF_COOKIE}={value}; Path=/; HttpOnly; SameSite=Strict{secure}");
        (value, HeaderValue::from_str(&cookie).ok())
    }

    fn form_page(
        &self,
        status: StatusCode,
        headers: &HeaderMap,
        error: Option<String>,
        form: Option<&Form>,
    ) -> Response<Body> {
        let (cookie, set_cookie) = self.csrf_cookie_for(headers);
        let chosen: Vec<&str> = form.map(|f| f.all("list")).unwrap_or_default();
        let only_one = self.public_lists().count() == 1;
        let lists: Vec<serde_json::Value> = self
            .public_lists()
            .map(|l| {
                json!({
                    "slug": l.slug,
                    "name": l.name,
                    "description": l.description,
                    "checked": only_one || chosen.contains(&l.slug.as_str()),
                })
            })
            .collect();
        let mut response = self.page(
            status,
            "web/subscribe.html",
            json!({
                "csrf": self.csrf_field(&cookie),
                "lists": lists,
                "error": error,
                "email": form.and_then(|f| f.one("email")).unwrap_or(""),
                "name": form.and_then(|f| f.one("name")).unwrap_or(""),
            }),
        );
        if let Some(set_cookie) = set_cookie {
            response.headers_mut().insert(header::SET_COOKIE, set_cookie);
        }
        response
    }

    fn url(&self, path: &str, token: &str) -> String {
        format!("{}{path}?token={token}", self.base_url)
    }

    fn preferences_url(&self, reader: Bearer<'_>) -> String {
        self.url(
            "preferences",
            &token::sign(&self.secret, Action::Preferences, &["*"], reader, None),
        )
    }

    /// Queues the confirmation mail for `lists`. When the queue is full the
    /// request waits for room rather than drop the mail: the address has
    /// been marked as mailed, so a dropped mail would keep the reader
    /// waiting for an hour.
    async fn send_confirmation(
        &self,
        signup: Bearer<'_>,
        subscriber: i64,
        email: &EmailAddress,
        name: Option<&str>,
        lists: &[&str],
        now: DateTime<Utc>,
    ) {
        let expiry = (now + self.confirm_expiry).timestamp();
        let confirm_url = self.url(
            "confirm",
            &token::sign(&self.secret, Action::Confirm, lists, signup, Some(expiry)),
        );
        let context = ConfirmationContext {
            site: &self.site,
            email: email.as_str(),
            name,
            lists: lists
                .iter()
                .filter_map(|slug| self.list(slug))
                .map(|l| l.name.as_str())
                .collect(),
            confirm_url: &confirm_url,
            expiry_days: self.confirm_expiry.num_days(),
        };
        let message = match compose::confirmation(
            &self.letterhead,
            &self.templates,
            &context,
            subscriber,
            now,
        ) {
            Ok(message) => message,
            Err(e) => {
                tracing::error!(email = %email, "cannot build the confirmation mail: {e}");
                return;
            }
        };
        let file_name = format!("confirm-{subscriber}-{}", now.timestamp_micros());
        if !self.mail.send(message, file_name, "confirmation mail", email.to_string()).await {
            tracing::warn!(email = %email, "the confirmation mail was not queued: the server is stopping");
        }
    }

    /// Queues the welcome mail for the lists a confirmation joined, when the
    /// site has the welcome templates. Called once per confirmation: only
    /// the first use of a confirmation link joins lists (`done.newly`).
    async fn send_welcome(&self, signup: &SignupRecord, done: &Confirmed, now: DateTime<Utc>) {
        let (html, text) = compose::WELCOME;
        if done.newly.is_empty() || !self.templates.has(html) || !self.templates.has(text) {
            return;
        }
        let reader = Bearer { id: done.subscriber, key: &signup.key };
        let mut lists = Vec::new();
        for slug in &done.newly {
            let Some(list) = self.list(slug) else { continue };
            let latest_edition_url = match self.store.last_edition(slug).await {
                Ok(edition) => {
                    edition.map(|e| compose::edition_url(&self.base, &e.list, e.edition_date))
                }
                Err(e) => {
                    tracing::warn!(list = %slug, "the welcome mail goes without its latest edition: {e}");
                    None
                }
            };
            lists.push(compose::WelcomeList {
                slug: &list.slug,
                name: &list.name,
                description: &list.description,
                latest_edition_url,
                unsubscribe_url: self.url(
                    "unsubscribe",
                    &token::unsubscribe_token(&self.secret, &list.slug, reader),
                ),
            });
        }
        let preferences_url = self.preferences_url(reader);
        let archive_url = format!("{}archive/", self.base_url);
        let context = WelcomeContext {
            site: &self.site,
            email: &done.email,
            name: done.name.as_deref(),
            lists,
            preferences_url: &preferences_url,
            archive_url: &archive_url,
        };
        let message = match compose::welcome(
            &self.letterhead,
            &self.templates,
            &context,
            done.subscriber,
            signup.id,
            now,
        ) {
            Ok(message) => message,
            Err(e) => {
                tracing::error!(email = %done.email, "cannot build the welcome mail: {e}");
                return;
            }
        };
        let file_name =
            format!("welcome-{}-{}-{}", done.subscriber, signup.id, now.timestamp_micros());
        if !self.mail.send(message, file_name, "welcome mail", done.email.clone()).await {
            tracing::warn!(email = %done.email, "the welcome mail was not queued: the server is stopping");
        }
    }

    /// Mails a link to their preferences page to `email`, if herald knows
    /// the address, it is not suppressed and no such mail went to it within
    /// `web.confirm_mail_interval_minutes`. Runs in the background: the
    /// page that asked has its answer already, the same whatever happens here.
    async fn send_manage_link(&self, email: &EmailAddress, now: DateTime<Utc>) {
        let found = match self.store.manage_mail(email, self.confirm_interval, now).await {
            Ok(Some(found)) => found,
            Ok(None) => {
                tracing::info!(email = %email, "no manage-link mail: unknown, suppressed, or mailed one recently");
                return;
            }
            Err(e) => {
                tracing::error!(email = %email, "cannot look up a manage-link request: {e}");
                return;
            }
        };
        let preferences_url =
            self.preferences_url(Bearer { id: found.subscriber, key: &found.key });
        let context = ManageContext {
            site: &self.site,
            email: email.as_str(),
            preferences_url: &preferences_url,
        };
        let message = match compose::manage_link(
            &self.letterhead,
            &self.templates,
            &context,
            found.subscriber,
            now,
        ) {
            Ok(message) => message,
            Err(e) => {
                tracing::error!(email = %email, "cannot build the manage-link mail: {e}");
                return;
            }
        };
        let file_name = format!("manage-{}-{}", found.subscriber, now.timestamp_micros());
        if !self.mail.send(message, file_name, "manage-link mail", email.to_string()).await {
            tracing::warn!(email = %email, "the manage-link mail was not queued: the server is stopping");
        }
    }
}

fn store_failed(s: &Signups, what: &str, e: &crate::store::StoreError) -> Response<Body> {
    tracing::error!("cannot {what}: {e}");
    s.notice(
        StatusCode::SERVICE_UNAVAILABLE,
        "Please try again",
        &["This could not be done just now. Nothing was changed."],
    )
}

fn gone(s: &Signups) -> Response<Body> {
    s.notice(
        StatusCode::OK,
        "You are not on our lists",
        &["The address this link was made for is not on our lists; it gets no mail from us."],
    )
}

/// Takes one request from `key`'s allowance; the wait when there is none
/// left. Keys not seen for a while are dropped once there are many.
fn take<K>(limiter: &DefaultKeyedRateLimiter<K>, key: K) -> Option<Duration>
where
    K: std::hash::Hash + Eq + Clone,
{
    if limiter.len() > 100_000 {
        limiter.retain_recent();
    }
    limiter.check_key(&key).err().map(|n| n.wait_time_from(DefaultClock::default().now()))
}

fn html_response(status: StatusCode, html: String) -> Response<Body> {
    Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, "text/html; charset=utf-8")
        // Pages carry tokens and per-reader state: never cached or shared.
        .header(header::CACHE_CONTROL, "no-store")
        .body(Body::from(html))
        .unwrap_or_default()
}

async fn security_headers(mut response: Response<Body>) -> Response<Body> {
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; style-src 'unsafe-inline'; img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        ),
    );
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    // Tokens are in these pages' URLs: never send them on as a Referer.
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    response
}

fn csrf_cookie(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, value)| *name == CSRF_COOKIE && value.len() == 32)
        .map(|(_, value)| value.to_owned())
}

/// A form body (`application/x-www-form-urlencoded`), keeping repeated keys.
struct Form(Vec<(String, String)>);

impl Form {
    fn parse(body: &[u8]) -> Self {
        Self(url::form_urlencoded::parse(body).into_owned().collect())
    }

    fn one(&self, key: &str) -> Option<&str> {
        self.0.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
    }

    fn all(&self, key: &str) -> Vec<&str> {
        self.0.iter().filter(|(k, _)| k == key).map(|(_, v)| v.as_str()).collect()
    }
}
