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
//! its timing tells who is subscribed.

use std::net::{IpAddr, SocketAddr};
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{ConnectInfo, State};
use axum::http::{header, HeaderMap, HeaderValue, Response, StatusCode};
use axum::routing::get;
use axum::Router;
use chrono::{DateTime, Utc};
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use rand::RngCore;
use serde_json::json;

use crate::compose::{self, ConfirmationContext, Letterhead};
use crate::config::Config;
use crate::deliver::{MailQueue, Mailer, Transport};
use crate::email::EmailAddress;
use crate::store::{MembershipStatus, Signup, SignupRecord, Store};
use crate::subscribe::token::{self, Action, Bearer, Claims, TokenError};
use crate::subscribe::Secret;
use crate::templates::Templates;

const CSRF_COOKIE: &str = "herald_csrf";

/// A list as the pages show it.
#[derive(Debug, Clone)]
struct ListInfo {
    slug: String,
    name: String,
    description: String,
    public: bool,
}

pub struct Signups {
    store: Store,
    secret: Secret,
    templates: Templates,
    site: serde_json::Value,
    base_url: String,
    lists: Vec<ListInfo>,
    letterhead: Letterhead,
    confirm_expiry: chrono::Duration,
    confirm_interval: chrono::Duration,
    behind_proxy: bool,
    secure_cookie: bool,
    per_ip: DefaultKeyedRateLimiter<IpAddr>,
    per_address: DefaultKeyedRateLimiter<String>,
    mail: MailQueue,
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
        let letterhead = Letterhead::from_config(config)?;
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
            lists: config
                .lists
                .iter()
                .map(|l| ListInfo {
                    slug: l.slug.to_string(),
                    name: l.name.clone(),
                    description: l.description.clone(),
                    public: l.public,
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
                tracing::error!("cannot render {template}: {}", crate::templates::error_chain(&e));
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

/// The `token` of a link's query string. Read by hand rather than with
/// axum's `Query`, whose rejections (a repeated `token`, say) are plain text
/// instead of the site's page: a repeated token is a link that was tampered
/// with, and answered as one.
struct TokenQuery(Result<Option<String>, TokenError>);

impl TokenQuery {
    fn parse(query: Option<&str>) -> Self {
        let mut tokens = url::form_urlencoded::parse(query.unwrap_or("").as_bytes())
            .filter(|(k, _)| k == "token")
            .map(|(_, v)| v.into_owned());
        let first = tokens.next();
        Self(if tokens.next().is_some() { Err(TokenError::Invalid) } else { Ok(first) })
    }

    /// The token as it came (empty when there was none).
    fn raw(&self) -> &str {
        match &self.0 {
            Ok(Some(token)) => token,
            _ => "",
        }
    }
}

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for TokenQuery {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        _: &S,
    ) -> Result<Self, Self::Rejection> {
        Ok(Self::parse(parts.uri.query()))
    }
}

/// A form's body, or the page that says why it could not be read (too
/// large: 413).
type FormBody = Result<Bytes, axum::extract::rejection::BytesRejection>;

/// Forms on these pages are a few hundred bytes.
const MAX_FORM_BYTES: usize = 64 * 1024;

fn unreadable_body(
    s: &Signups,
    rejection: &axum::extract::rejection::BytesRejection,
) -> Response<Body> {
    let status = rejection.status();
    let what = if status == StatusCode::PAYLOAD_TOO_LARGE {
        "The form sent far more than it can hold. Nothing was changed."
    } else {
        "The form could not be read. Nothing was changed."
    };
    s.notice(status, "The form could not be read", &[what])
}

impl Signups {
    /// Checks a link for `action`: the token's MAC against the key of the
    /// reader its id names. A token for a reader who is gone gets the "not
    /// on our lists" page; anything else that fails gets the bad-link page.
    async fn reader_link(&self, q: &TokenQuery, action: Action) -> Result<Claims, Response<Body>> {
        let token = match &q.0 {
            Ok(token) => token.as_deref().unwrap_or(""),
            Err(e) => return Err(self.bad_link(*e)),
        };
        let unverified = token::parse(token).map_err(|e| self.bad_link(e))?;
        let key = match self.store.token_key(unverified.id).await {
            Ok(Some(key)) => key,
            Ok(None) => return Err(gone(self)),
            Err(e) => return Err(store_failed(self, "look up a subscriber", &e)),
        };
        let now = Utc::now().timestamp();
        match unverified.verify(&self.secret, action, &key.key, now) {
            Ok(claims) => Ok(claims),
            // Unsubscribe links mailed before links had keys, for the
            // subscribers who existed then.
            Err(e) if key.legacy && action == Action::Unsubscribe => {
                unverified.verify_legacy(&self.secret, now).map_err(|_| self.bad_link(e))
            }
            Err(e) => Err(self.bad_link(e)),
        }
    }

    /// Checks a confirmation link: it names a sign-up, and is made with the
    /// key of the sign-up's reader.
    async fn signup_link(
        &self,
        q: &TokenQuery,
    ) -> Result<(SignupRecord, Vec<String>), Response<Body>> {
        let token = match &q.0 {
            Ok(token) => token.as_deref().unwrap_or(""),
            Err(e) => return Err(self.bad_link(*e)),
        };
        let unverified = token::parse(token).map_err(|e| self.bad_link(e))?;
        let signup =
            match self.store.signup(unverified.id).await {
                Ok(Some(signup)) => signup,
                Ok(None) => return Err(self.notice(
                    StatusCode::GONE,
                    "This sign-up no longer exists",
                    &["The address was removed from our lists, so there is nothing to confirm."],
                )),
                Err(e) => return Err(store_failed(self, "look up a sign-up", &e)),
            };
        let claims = unverified
            .verify(&self.secret, Action::Confirm, &signup.key, Utc::now().timestamp())
            .map_err(|e| self.bad_link(e))?;
        // Lists since removed from the config are left out.
        let lists = claims.lists.into_iter().filter(|slug| self.list(slug).is_some()).collect();
        Ok((signup, lists))
    }

    fn names(&self, slugs: &[String]) -> String {
        slugs
            .iter()
            .map(|slug| self.list(slug).map_or(slug.as_str(), |l| l.name.as_str()))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// The form. `?email=…` fills in the address (the front page's box hands it
/// on; the sign-up itself is the form's POST, with its CSRF field).
async fn subscribe_form(
    State(s): State<Arc<Signups>>,
    headers: HeaderMap,
    uri: axum::http::Uri,
) -> Response<Body> {
    let email = url::form_urlencoded::parse(uri.query().unwrap_or("").as_bytes())
        .find(|(k, _)| k == "email")
        .map(|(_, v)| v.chars().take(254).collect::<String>());
    let prefilled = email.map(|email| Form(vec![("email".into(), email)]));
    s.form_page(StatusCode::OK, &headers, None, prefilled.as_ref())
}

async fn subscribe(
    State(s): State<Arc<Signups>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: FormBody,
) -> Response<Body> {
    if let Some(wait) = s.limit_ip(s.client(peer, &headers)) {
        return s.too_many(wait);
    }
    let body = match body {
        Ok(body) => body,
        Err(rejection) => return unreadable_body(&s, &rejection),
    };
    let form = Form::parse(&body);
    if !s.csrf_ok(&headers, &form) {
        return s.form_page(
            StatusCode::FORBIDDEN,
            &headers,
            Some("The form had expired. Please send it again.".into()),
            Some(&form),
        );
    }
    let check_inbox = || {
        s.notice(
            StatusCode::OK,
            "Check your inbox",
            &[
                "If the address can receive our mail, a message with a confirmation link is on its way.",
                "Open the link to start getting the lists you chose. Nothing is sent until then.",
            ],
        )
    };
    // A bot filled the field people never see: answer as if all went well.
    if form.one("website").is_some_and(|v| !v.is_empty()) {
        tracing::info!(client = %s.client(peer, &headers), "ignored a sign-up that filled the honeypot field");
        return check_inbox();
    }
    let email = match EmailAddress::parse(form.one("email").unwrap_or("")) {
        Ok(email) => email,
        Err(e) => {
            let message = format!("Please check the email address: {}.", e.reason);
            return s.form_page(StatusCode::BAD_REQUEST, &headers, Some(message), Some(&form));
        }
    };
    let name = form.one("name").and_then(crate::email::clean_display_name);
    let lists: Vec<&str> = form
        .all("list")
        .into_iter()
        .filter(|slug| s.public_lists().any(|l| l.slug == *slug))
        .collect();
    if lists.is_empty() {
        let message = "Please choose at least one list.".to_owned();
        return s.form_page(StatusCode::BAD_REQUEST, &headers, Some(message), Some(&form));
    }
    if let Some(wait) = s.limit_address(&email) {
        return s.too_many(wait);
    }
    let now = Utc::now();
    match s.store.web_signup(&email, name.as_deref(), &lists, s.confirm_interval, now).await {
        Ok(Signup::Confirm { signup, subscriber, key }) => {
            let bearer = Bearer { id: signup, key: &key };
            s.send_confirmation(bearer, subscriber, &email, name.as_deref(), &lists, now).await;
        }
        Ok(Signup::Quiet { why }) => tracing::info!(email = %email, "no confirmation mail: {why}"),
        Err(e) => {
            tracing::error!(email = %email, "cannot record a sign-up: {e}");
            return s.notice(
                StatusCode::SERVICE_UNAVAILABLE,
                "Please try again",
                &["Your sign-up could not be recorded just now. Nothing was changed."],
            );
        }
    }
    check_inbox()
}

fn store_failed(s: &Signups, what: &str, e: &crate::store::StoreError) -> Response<Body> {
    tracing::error!("cannot {what}: {e}");
    s.notice(
        StatusCode::SERVICE_UNAVAILABLE,
        "Please try again",
        &["This could not be done just now. Nothing was changed."],
    )
}

/// The page of a confirmation link: one button. Opening it changes
/// nothing, so a mail scanner that fetches every link confirms no one.
async fn confirm_page(State(s): State<Arc<Signups>>, q: TokenQuery) -> Response<Body> {
    let (signup, lists) = match s.signup_link(&q).await {
        Ok(found) => found,
        Err(page) => return page,
    };
    let email = match s.store.memberships_of(signup.subscriber).await {
        Ok(Some((email, _))) => email,
        Ok(None) => return gone(&s),
        Err(e) => return store_failed(&s, "look up a subscriber", &e),
    };
    if signup.confirmed_at.is_some() {
        return s.page(
            StatusCode::OK,
            "web/notice.html",
            json!({
                "heading": "Already confirmed",
                "paragraphs": [format!("This link was used already; {email}'s lists are as they were left since.")],
                "preferences_url": s.preferences_url(Bearer { id: signup.subscriber, key: &signup.key }),
            }),
        );
    }
    s.page(
        StatusCode::OK,
        "web/confirm.html",
        json!({
            "email": email,
            "lists": s.names(&lists),
            "action": format!("confirm?token={}", urlencode(q.raw())),
        }),
    )
}

/// The button on the confirmation page: confirms the sign-up's lists, once.
async fn confirm(State(s): State<Arc<Signups>>, q: TokenQuery) -> Response<Body> {
    let (signup, lists) = match s.signup_link(&q).await {
        Ok(found) => found,
        Err(page) => return page,
    };
    let slugs: Vec<&str> = lists.iter().map(String::as_str).collect();
    match s.store.confirm_signup(&signup, &slugs, Utc::now()).await {
        Ok(Some(done)) => {
            let mut paragraphs = Vec::new();
            if !done.newly.is_empty() {
                tracing::info!(email = %done.email, lists = %done.newly.join(","), "confirmed a subscription");
                paragraphs.push(format!(
                    "{} will get {} from now on.",
                    done.email,
                    s.names(&done.newly)
                ));
            }
            if !done.already.is_empty() {
                paragraphs.push(format!(
                    "{} was already confirmed for {}; nothing needed doing.",
                    done.email,
                    s.names(&done.already)
                ));
            }
            if !done.left.is_empty() {
                paragraphs.push(format!(
                    "{} left {} after this link was sent, so it does not sign them up again. To join again, subscribe once more.",
                    done.email,
                    s.names(&done.left)
                ));
            }
            let heading =
                if done.newly.is_empty() { "Already confirmed" } else { "Subscription confirmed" };
            s.page(
                StatusCode::OK,
                "web/notice.html",
                json!({
                    "heading": heading,
                    "paragraphs": paragraphs,
                    "preferences_url": s.preferences_url(Bearer { id: done.subscriber, key: &signup.key }),
                    "subscribe_url": (!done.left.is_empty()).then(|| format!("{}subscribe", s.base_url)),
                }),
            )
        }
        Ok(None) => gone(&s),
        Err(e) => store_failed(&s, "confirm a subscription", &e),
    }
}

/// The list of a valid unsubscribe link, and the reader it is for.
async fn unsubscribe_link(s: &Signups, q: &TokenQuery) -> Result<(String, i64), Response<Body>> {
    let claims = s.reader_link(q, Action::Unsubscribe).await?;
    match &claims.lists[..] {
        [list] => Ok((list.clone(), claims.id)),
        _ => Err(s.bad_link(TokenError::Invalid)),
    }
}

async fn unsubscribe_page(State(s): State<Arc<Signups>>, q: TokenQuery) -> Response<Body> {
    let (list, subscriber) = match unsubscribe_link(&s, &q).await {
        Ok(found) => found,
        Err(page) => return page,
    };
    let email = match s.store.memberships_of(subscriber).await {
        Ok(Some((email, memberships))) => {
            if memberships
                .iter()
                .any(|(l, status)| *l == list && *status == MembershipStatus::Unsubscribed)
            {
                return left(&s, &list, &email, subscriber, false).await;
            }
            email
        }
        Ok(None) => return gone(&s),
        Err(e) => return store_failed(&s, "look up a subscriber", &e),
    };
    let name = s.list(&list).map_or(list.clone(), |l| l.name.clone());
    s.page(
        StatusCode::OK,
        "web/unsubscribe.html",
        json!({
            "list": { "slug": list, "name": name },
            "email": email,
            "action": format!("unsubscribe?token={}", urlencode(q.raw())),
        }),
    )
}

/// RFC 8058 one-click: the token in the URL is the authority; no cookie, no
/// confirmation step. The page's own button posts the same body.
async fn unsubscribe(State(s): State<Arc<Signups>>, q: TokenQuery) -> Response<Body> {
    let (list, subscriber) = match unsubscribe_link(&s, &q).await {
        Ok(found) => found,
        Err(page) => return page,
    };
    match s.store.unsubscribe_id(&list, subscriber, Utc::now()).await {
        Ok(changed) => match s.store.memberships_of(subscriber).await {
            Ok(Some((email, _))) => {
                if changed {
                    tracing::info!(email = %email, list = %list, "unsubscribed");
                }
                left(&s, &list, &email, subscriber, changed).await
            }
            Ok(None) => gone(&s),
            Err(e) => store_failed(&s, "look up a subscriber", &e),
        },
        Err(e) => store_failed(&s, "unsubscribe", &e),
    }
}

async fn left(s: &Signups, list: &str, email: &str, subscriber: i64, now: bool) -> Response<Body> {
    let name = s.list(list).map_or(list.to_owned(), |l| l.name.clone());
    let said = if now {
        format!("{email} will get no more mail from {name}.")
    } else {
        format!("{email} had already left {name}; nothing needed doing.")
    };
    // The preferences link is made with the reader's current key.
    let preferences_url = match s.store.token_key(subscriber).await {
        Ok(Some(key)) => Some(s.preferences_url(Bearer { id: subscriber, key: &key.key })),
        _ => None,
    };
    s.page(
        StatusCode::OK,
        "web/notice.html",
        json!({
            "heading": "You are unsubscribed",
            "paragraphs": [said],
            "preferences_url": preferences_url,
            "subscribe_url": format!("{}subscribe", s.base_url),
        }),
    )
}

fn gone(s: &Signups) -> Response<Body> {
    s.notice(
        StatusCode::OK,
        "You are not on our lists",
        &["The address this link was made for is not on our lists; it gets no mail from us."],
    )
}

async fn preferences_page(
    State(s): State<Arc<Signups>>,
    q: TokenQuery,
    headers: HeaderMap,
) -> Response<Body> {
    let subscriber = match s.reader_link(&q, Action::Preferences).await {
        Ok(claims) => claims.id,
        Err(page) => return page,
    };
    show_preferences(&s, subscriber, &q, &headers, false).await
}

async fn show_preferences(
    s: &Signups,
    subscriber: i64,
    q: &TokenQuery,
    headers: &HeaderMap,
    saved: bool,
) -> Response<Body> {
    let (email, memberships) = match s.store.memberships_of(subscriber).await {
        Ok(Some(found)) => found,
        Ok(None) => return gone(s),
        Err(e) => return store_failed(s, "look up a subscriber", &e),
    };
    let (cookie, set_cookie) = s.csrf_cookie_for(headers);
    let lists: Vec<serde_json::Value> = s
        .offered(&memberships)
        .map(|l| {
            let checked = memberships
                .iter()
                .any(|(m, status)| *m == l.slug && *status != MembershipStatus::Unsubscribed);
            json!({ "slug": l.slug, "name": l.name, "description": l.description, "checked": checked })
        })
        .collect();
    let mut response = s.page(
        StatusCode::OK,
        "web/preferences.html",
        json!({
            "email": email,
            "lists": lists,
            "csrf": s.csrf_field(&cookie),
            "action": format!("preferences?token={}", urlencode(q.raw())),
            "saved": saved,
        }),
    );
    if let Some(set_cookie) = set_cookie {
        response.headers_mut().insert(header::SET_COOKIE, set_cookie);
    }
    response
}

async fn preferences(
    State(s): State<Arc<Signups>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    q: TokenQuery,
    headers: HeaderMap,
    body: FormBody,
) -> Response<Body> {
    if let Some(wait) = s.limit_ip(s.client(peer, &headers)) {
        return s.too_many(wait);
    }
    let subscriber = match s.reader_link(&q, Action::Preferences).await {
        Ok(claims) => claims.id,
        Err(page) => return page,
    };
    let body = match body {
        Ok(body) => body,
        Err(rejection) => return unreadable_body(&s, &rejection),
    };
    let form = Form::parse(&body);
    if !s.csrf_ok(&headers, &form) {
        return s.notice(
            StatusCode::FORBIDDEN,
            "The form had expired",
            &["Nothing was changed. Please open the link from your mail again and save once more."],
        );
    }
    let memberships = match s.store.memberships_of(subscriber).await {
        Ok(Some((_, memberships))) => memberships,
        Ok(None) => return gone(&s),
        Err(e) => return store_failed(&s, "look up a subscriber", &e),
    };
    let offered: Vec<&str> = s.offered(&memberships).map(|l| l.slug.as_str()).collect();
    let keep: Vec<&str> = if form.one("do") == Some("leave") {
        Vec::new()
    } else {
        form.all("list").into_iter().filter(|l| offered.contains(l)).collect()
    };
    match s.store.set_lists(subscriber, &offered, &keep, Utc::now()).await {
        Ok(true) => {
            tracing::info!(subscriber, lists = %keep.join(","), "changed preferences");
            show_preferences(&s, subscriber, &q, &headers, true).await
        }
        Ok(false) => gone(&s),
        Err(e) => store_failed(&s, "change preferences", &e),
    }
}

/// A token as it goes back into a form's `action`: percent-encoded, so a
/// link that was altered cannot add parameters of its own.
fn urlencode(token: &str) -> String {
    url::form_urlencoded::byte_serialize(token.as_bytes()).collect()
}

/// Each page and mail template with a context of the shape its route gives
/// it, so `herald check` can render them before a reader meets an error.
pub fn samples(config: &Config) -> Vec<(&'static str, serde_json::Value)> {
    let site = crate::templates::site_context(config);
    let base = config.site.base_url.to_string();
    let list = json!({
        "slug": "daily",
        "name": "A list",
        "description": "What it brings.",
        "checked": true,
    });
    let csrf = "0".repeat(32);
    let email = "reader@example.com";
    let confirm_url = format!("{base}confirm?token=sample");
    // The confirmation mail's context has one type, for the mail and here.
    let confirm = serde_json::to_value(ConfirmationContext {
        site: &site,
        email,
        name: Some("Sample Reader"),
        lists: vec!["A list"],
        confirm_url: &confirm_url,
        expiry_days: 7,
    })
    .unwrap_or_default();
    vec![
        (
            "web/subscribe.html",
            json!({
                "site": site, "csrf": csrf, "lists": [list], "error": "A problem.",
                "email": email, "name": "Sample Reader",
            }),
        ),
        (
            "web/notice.html",
            json!({
                "site": site, "heading": "A heading", "paragraphs": ["Some text."],
                "preferences_url": format!("{base}preferences?token=sample"),
                "subscribe_url": format!("{base}subscribe"),
            }),
        ),
        (
            "web/confirm.html",
            json!({
                "site": site, "email": email, "lists": "A list",
                "action": "confirm?token=sample",
            }),
        ),
        (
            "web/unsubscribe.html",
            json!({
                "site": site, "list": { "slug": "daily", "name": "A list" }, "email": email,
                "action": "unsubscribe?token=sample",
            }),
        ),
        (
            "web/preferences.html",
            json!({
                "site": site, "email": email, "lists": [list], "csrf": csrf,
                "action": "preferences?token=sample", "saved": true,
            }),
        ),
        ("confirm.html", confirm.clone()),
        ("confirm.txt", confirm),
    ]
}
