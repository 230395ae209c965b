//! The routes' handlers: the form and its POST, the confirmation page and
//! its button, unsubscribe (page and RFC 8058 one-click), preferences.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{ConnectInfo, State};
use axum::http::{header, HeaderMap, Response, StatusCode};
use chrono::Utc;
use serde_json::json;

use crate::email::EmailAddress;
use crate::store::{MembershipStatus, Signup};
use crate::subscribe::token::{Action, Bearer, TokenError};

use super::links::{unreadable_body, urlencode, FormBody, TokenQuery};
use super::Form;
use super::{gone, store_failed, Signups};

/// The form. `?email=…` fills in the address (the front page's box hands it
/// on; the sign-up itself is the form's POST, with its CSRF field).
pub(super) async fn subscribe_form(
    State(s): State<Arc<Signups>>,
    headers: HeaderMap,
    uri: axum::http::Uri,
) -> Response<Body> {
    let prefilled = email_in_query(&uri).map(|email| Form(vec![("email".into(), email)]));
    s.form_page(StatusCode::OK, &headers, None, prefilled.as_ref())
}

/// The `email` of a page's query (`?email=…`, from the front page's box),
/// cut to the longest address.
pub(super) fn email_in_query(uri: &axum::http::Uri) -> Option<String> {
    url::form_urlencoded::parse(uri.query().unwrap_or("").as_bytes())
        .find(|(k, _)| k == "email")
        .map(|(_, v)| v.chars().take(254).collect::<String>())
}

/// A form's POST, read: within the client's rate limit and readable, or the
/// page that says why not.
pub(super) fn posted_form(
    s: &Signups,
    peer: SocketAddr,
    headers: &HeaderMap,
    body: FormBody,
) -> Result<Form, Box<Response<Body>>> {
    if let Some(wait) = s.limit_ip(s.client(peer, headers)) {
        return Err(Box::new(s.too_many(wait)));
    }
    match body {
        Ok(body) => Ok(Form::parse(&body)),
        Err(rejection) => Err(Box::new(unreadable_body(s, &rejection))),
    }
}

pub(super) async fn subscribe(
    State(s): State<Arc<Signups>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: FormBody,
) -> Response<Body> {
    let form = match posted_form(&s, peer, &headers, body) {
        Ok(form) => form,
        Err(answer) => return *answer,
    };
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

/// The page of a confirmation link: one button. Opening it changes
/// nothing, so a mail scanner that fetches every link confirms no one.
pub(super) async fn confirm_page(State(s): State<Arc<Signups>>, q: TokenQuery) -> Response<Body> {
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
pub(super) async fn confirm(State(s): State<Arc<Signups>>, q: TokenQuery) -> Response<Body> {
    let (signup, lists) = match s.signup_link(&q).await {
        Ok(found) => found,
        Err(page) => return page,
    };
    let slugs: Vec<&str> = lists.iter().map(String::as_str).collect();
    let now = Utc::now();
    match s.store.confirm_signup(&signup, &slugs, now).await {
        Ok(Some(done)) => {
            s.send_welcome(&signup, &done, now).await;
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
pub(super) async fn unsubscribe_link(
    s: &Signups,
    q: &TokenQuery,
) -> Result<(String, i64), Response<Body>> {
    let claims = s.reader_link(q, Action::Unsubscribe).await?;
    match &claims.lists[..] {
        [list] => Ok((list.clone(), claims.id)),
        _ => Err(s.bad_link(TokenError::Invalid)),
    }
}

pub(super) async fn unsubscribe_page(
    State(s): State<Arc<Signups>>,
    q: TokenQuery,
) -> Response<Body> {
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
pub(super) async fn unsubscribe(State(s): State<Arc<Signups>>, q: TokenQuery) -> Response<Body> {
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

pub(super) async fn left(
    s: &Signups,
    list: &str,
    email: &str,
    subscriber: i64,
    now: bool,
) -> Response<Body> {
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

pub(super) async fn preferences_page(
    State(s): State<Arc<Signups>>,
    q: TokenQuery,
    headers: HeaderMap,
) -> Response<Body> {
    // Without a link at hand: the form that mails one.
    if q.absent() {
        return s.manage_page(StatusCode::OK, &headers, None, None);
    }
    let subscriber = match s.reader_link(&q, Action::Preferences).await {
        Ok(claims) => claims.id,
        Err(page) => return page,
    };
    show_preferences(&s, subscriber, &q, &headers, false).await
}

pub(super) async fn show_preferences(
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
    // A time zone to choose when a list offered goes out at each reader's hour.
    let zones = if s.offered(&memberships).any(|l| l.local_time) {
        let mine = match s.store.time_zone(subscriber).await {
            Ok(zone) => zone,
            Err(e) => return store_failed(s, "look up a subscriber", &e),
        };
        Some(json!({ "chosen": mine.unwrap_or_default(), "names": zone_names() }))
    } else {
        None
    };
    let mut response = s.page(
        StatusCode::OK,
        "web/preferences.html",
        json!({
            "email": email,
            "lists": lists,
            "zones": zones,
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

pub(super) async fn preferences(
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
    let (email, memberships) = match s.store.memberships_of(subscriber).await {
        Ok(Some(found)) => found,
        Ok(None) => return gone(&s),
        Err(e) => return store_failed(&s, "look up a subscriber", &e),
    };
    // The reader's time zone, when the page offered one: a name from the
    // list, or empty for the lists' own. Anything else changes nothing.
    if let Some(zone) = form.one("timezone") {
        let zone = match zone.trim() {
            "" => Some(None),
            name => name.parse::<chrono_tz::Tz>().ok().map(|tz| Some(tz.name())),
        };
        if let Some(zone) = zone {
            if let Err(e) = s.store.set_time_zones(&[(email.as_str(), zone)]).await {
                return store_failed(&s, "change preferences", &e);
            }
        }
    }
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

/// The time zones a reader may choose: the IANA names of places
/// (`Area/City`), sorted.
fn zone_names() -> &'static [&'static str] {
    static NAMES: std::sync::OnceLock<Vec<&'static str>> = std::sync::OnceLock::new();
    NAMES.get_or_init(|| {
        let mut names: Vec<&'static str> = chrono_tz::TZ_VARIANTS
            .iter()
            .map(|tz| tz.name())
            .filter(|n| {
                n.contains('/')
                    && !n.starts_with("Etc/")
                    && !n.starts_with("US/")
                    && !n.starts_with("SystemV/")
            })
            .collect();
        names.sort_unstable();
        names
    })
}
