//! "Email me a link to manage my subscription": `GET /manage` (also
//! `/preferences` without a link) shows a form for an address, and its POST
//! mails that reader a signed link to their preferences page.
//!
//! The answer never tells whether the address is known: every valid post
//! gets the same page, with the same status, after the same work (the checks
//! of the form itself); the store lookup, the rationing and the mail happen
//! in a background task, so the answer's timing says nothing either.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{ConnectInfo, State};
use axum::http::{header, HeaderMap, Response, StatusCode};
use chrono::Utc;
use serde_json::json;

use super::links::FormBody;
use super::Signups;
use crate::email::EmailAddress;

/// The form. `?email=…` fills in the address.
pub(super) async fn form(
    State(s): State<Arc<Signups>>,
    headers: HeaderMap,
    uri: axum::http::Uri,
) -> Response<Body> {
    let email = super::routes::email_in_query(&uri);
    s.manage_page(StatusCode::OK, &headers, None, email.as_deref())
}

pub(super) async fn request(
    State(s): State<Arc<Signups>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: FormBody,
) -> Response<Body> {
    let form = match super::routes::posted_form(&s, peer, &headers, body) {
        Ok(form) => form,
        Err(answer) => return *answer,
    };
    let given = form.one("email").unwrap_or("");
    if !s.csrf_ok(&headers, &form) {
        let error = Some("The form had expired. Please send it again.");
        return s.manage_page(StatusCode::FORBIDDEN, &headers, error, Some(given));
    }
    let sent = || {
        s.notice(
            StatusCode::OK,
            "Check your inbox",
            &[
                "If the address is on our lists, a message with a link to manage your subscription is on its way.",
                "The link opens the page where you choose your lists.",
            ],
        )
    };
    // A bot filled the field people never see: answer as if all went well.
    if form.one("website").is_some_and(|v| !v.is_empty()) {
        tracing::info!(client = %s.client(peer, &headers), "ignored a manage-link request that filled the honeypot field");
        return sent();
    }
    let email = match EmailAddress::parse(given) {
        Ok(email) => email,
        Err(e) => {
            let message = format!("Please check the email address: {}.", e.reason);
            return s.manage_page(StatusCode::BAD_REQUEST, &headers, Some(&message), Some(given));
        }
    };
    if let Some(wait) = s.limit_address(&email) {
        return s.too_many(wait);
    }
    match Arc::clone(&s.manage_slots).try_acquire_owned() {
        Ok(slot) => {
            let s = Arc::clone(&s);
            tokio::spawn(async move {
                s.send_manage_link(&email, Utc::now()).await;
                drop(slot);
            });
        }
        Err(_) => {
            tracing::warn!(email = %email, "too many manage-link requests at once; this one was dropped")
        }
    }
    sent()
}

impl Signups {
    pub(super) fn manage_page(
        &self,
        status: StatusCode,
        headers: &HeaderMap,
        error: Option<&str>,
        email: Option<&str>,
    ) -> Response<Body> {
        let (cookie, set_cookie) = self.csrf_cookie_for(headers);
        let mut response = self.page(
            status,
            "web/manage.html",
            json!({
                "csrf": self.csrf_field(&cookie),
                "error": error,
                "email": email.unwrap_or(""),
            }),
        );
        if let Some(set_cookie) = set_cookie {
            response.headers_mut().insert(header::SET_COOKIE, set_cookie);
        }
        response
    }
}
