//! `GET /c/TOKEN`: the click redirect of lists that count clicks
//! (`[[lists]] track_clicks`). The token names an edition and one of its
//! articles (and, with `individual`, the reader), signed with the site's
//! secret (`subscribe::token::click_token`); the answer is a 302 to the
//! article's URL as the store holds it for that edition. The target never
//! comes from the request, so this is no open redirect: a token for an
//! article that is not in its edition gets 404, a forged one 400.
//!
//! A click is counted only on GET (not HEAD, which link checkers send), and
//! only while the list still counts clicks; a link from an older digest of
//! a list that stopped keeps working and records nothing. With a reader in
//! the token, each reader counts once per link; without, every click adds
//! one (forwarded copies and link scanners that follow links included).

use std::sync::Arc;

use axum::body::Body;
use axum::extract::State;
use axum::http::{header, HeaderValue, Method, Response, StatusCode, Uri};
use chrono::Utc;

use super::{store_failed, Signups};
use crate::subscribe::token::{ClickToken, TokenError};

pub(super) async fn click(
    State(s): State<Arc<Signups>>,
    method: Method,
    uri: Uri,
) -> Response<Body> {
    // Read from the path by hand: axum's own rejection is plain text.
    let raw = uri.path().rsplit('/').next().unwrap_or("");
    let Ok(token) = ClickToken::parse(raw) else {
        return s.bad_link(TokenError::Invalid);
    };
    // With a reader in it, the MAC is made with their key. A reader who is
    // gone (forgotten) cannot be checked: their link still leads to its
    // article, since the target comes from the store, but counts nothing.
    let verified = match token.reader {
        None => Some(token.verify(&s.secret, None).is_ok()),
        Some(reader) => match s.store.token_key(reader).await {
            Ok(Some(key)) => Some(token.verify(&s.secret, Some(&key.key)).is_ok()),
            Ok(None) => None,
            Err(e) => return store_failed(&s, "look up a subscriber", &e),
        },
    };
    if verified == Some(false) {
        return s.bad_link(TokenError::Invalid);
    }
    let target = match s.store.click_target(token.edition, token.article).await {
        Ok(Some(target)) => target,
        Ok(None) => return not_here(&s),
        Err(e) => return store_failed(&s, "look up a link", &e),
    };
    let Some(location) = url::Url::parse(&target.url)
        .ok()
        .filter(|u| matches!(u.scheme(), "http" | "https"))
        .and_then(|u| HeaderValue::from_str(u.as_str()).ok())
    else {
        tracing::warn!(edition = token.edition, article = token.article, url = %target.url, "a click link whose article has no web address to go to");
        return not_here(&s);
    };
    let list = s.list(&target.list);
    if verified == Some(true) && method == Method::GET && list.is_some_and(|l| l.track_clicks) {
        let reader = token.reader.filter(|_| list.is_some_and(|l| l.individual));
        if let Err(e) = s.store.record_click(token.edition, token.article, reader, Utc::now()).await
        {
            tracing::warn!("a click was not counted: {e}");
        }
    }
    let mut response = Response::new(Body::empty());
    *response.status_mut() = StatusCode::FOUND;
    response.headers_mut().insert(header::LOCATION, location);
    // Every click reaches the server, and no cache keeps a reader's link.
    response.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

fn not_here(s: &Signups) -> Response<Body> {
    s.notice(
        StatusCode::NOT_FOUND,
        "This link leads nowhere",
        &["The edition this link names does not hold that article. Nothing was counted."],
    )
}
