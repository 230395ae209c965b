//! The links herald mails, as the pages read them: the `token` of the query
//! string, checked against the key of the reader it names, and form bodies.

use axum::body::{Body, Bytes};
use axum::http::{Response, StatusCode};
use chrono::Utc;

use crate::store::SignupRecord;
use crate::subscribe::token::{self, Action, Claims, TokenError};

use super::{gone, store_failed, Signups};

/// The `token` of a link's query string. Read by hand rather than with
/// axum's `Query`, whose rejections (a repeated `token`, say) are plain text
/// instead of the site's page: a repeated token is a link that was tampered
/// with, and answered as one.
pub(super) struct TokenQuery(Result<Option<String>, TokenError>);

impl TokenQuery {
    pub(super) fn parse(query: Option<&str>) -> Self {
        let mut tokens = url::form_urlencoded::parse(query.unwrap_or("").as_bytes())
            .filter(|(k, _)| k == "token")
            .map(|(_, v)| v.into_owned());
        let first = tokens.next();
        Self(if tokens.next().is_some() { Err(TokenError::Invalid) } else { Ok(first) })
    }

    /// Whether the query has no `token` at all.
    pub(super) fn absent(&self) -> bool {
        matches!(self.0, Ok(None))
    }

    /// The token as it came (empty when there was none).
    pub(super) fn raw(&self) -> &str {
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
pub(super) type FormBody = Result<Bytes, axum::extract::rejection::BytesRejection>;

/// Forms on these pages are a few hundred bytes.
pub(super) const MAX_FORM_BYTES: usize = 64 * 1024;

pub(super) fn unreadable_body(
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
    pub(super) async fn reader_link(
        &self,
        q: &TokenQuery,
        action: Action,
    ) -> Result<Claims, Response<Body>> {
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
    pub(super) async fn signup_link(
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

    pub(super) fn names(&self, slugs: &[String]) -> String {
        slugs
            .iter()
            .map(|slug| self.list(slug).map_or(slug.as_str(), |l| l.name.as_str()))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// A token as it goes back into a form's `action`: percent-encoded, so a
/// link that was altered cannot add parameters of its own.
pub(super) fn urlencode(token: &str) -> String {
    url::form_urlencoded::byte_serialize(token.as_bytes()).collect()
}
