//! `/healthz` and `/metrics` for the operator, never for the public:
//! served on their own listener (`web.admin_listen`), or on the public one
//! only to requests that carry the bearer token in `HERALD_ADMIN_TOKEN`
//! (compared in constant time). With the token set, the admin listener asks
//! for it too. With neither, they are not served at all. What they say
//! comes from the daemon ([`Health`]); this module only does the HTTP.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::State;
use axum::http::{header, HeaderMap, Response, StatusCode};
use axum::routing::get;
use axum::Router;
use futures_util::future::BoxFuture;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::config::ENV_ADMIN_TOKEN;

/// What the health and metrics endpoints report (the daemon's jobs, the
/// store, the scheduler).
pub trait Health: Send + Sync + 'static {
    /// Whether all is well, and a JSON document saying what was checked.
    fn health(&self) -> BoxFuture<'_, (bool, serde_json::Value)>;
    /// The metrics in the Prometheus text format.
    fn metrics(&self) -> BoxFuture<'_, String>;
}

/// The endpoints' data and how they are reached.
pub struct Admin {
    pub health: Arc<dyn Health>,
    pub access: Access,
}

/// How the endpoints are reached: their own listener, the token, both or
/// neither (then they are not served).
pub struct Access {
    pub listener: Option<tokio::net::TcpListener>,
    pub token: Option<Token>,
}

impl Access {
    /// Binds `web.admin_listen`, if set; `token` is [`Token::from_env`]'s.
    pub async fn bind(
        web: &crate::config::Web,
        token: Option<Token>,
    ) -> Result<Self, super::WebError> {
        let listener = match web.admin_listen {
            Some(addr) => Some(super::bind_admin(addr).await?),
            None => None,
        };
        Ok(Self { listener, token })
    }

    /// Where an operator finds health and metrics, for the start message.
    pub fn describe(&self, public: std::net::SocketAddr) -> String {
        let addr = self.listener.as_ref().and_then(|l| l.local_addr().ok());
        let with_token = if self.token.is_some() {
            format!(" (with Authorization: Bearer and the token in {ENV_ADMIN_TOKEN})")
        } else {
            String::new()
        };
        match addr {
            Some(addr) => format!(
                "health at http://{addr}/healthz, metrics at http://{addr}/metrics{with_token}"
            ),
            None if self.token.is_some() => format!(
                "health at http://{public}/healthz, metrics at http://{public}/metrics{with_token}"
            ),
            None => format!(
                "health and metrics are off: set web.admin_listen (e.g. HERALD_WEB_ADMIN_LISTEN=127.0.0.1:9090) to serve /healthz and /metrics on their own address, or {ENV_ADMIN_TOKEN} to serve them here to requests with that bearer token"
            ),
        }
    }
}

/// The shortest token accepted: anything shorter can be guessed.
const MIN_TOKEN: usize = 16;

#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    #[error("{ENV_ADMIN_TOKEN} is shorter than {MIN_TOKEN} characters; use a long random value (e.g. `openssl rand -hex 32`)")]
    ShortToken,
}

/// The admin token; only its hash is kept. Not `Debug`, so it cannot be logged.
#[derive(Clone)]
pub struct Token([u8; 32]);

impl Token {
    /// `HERALD_ADMIN_TOKEN`, if set and not empty.
    pub fn from_env() -> Result<Option<Self>, AdminError> {
        match std::env::var(ENV_ADMIN_TOKEN) {
            Ok(value) if value.is_empty() => Ok(None),
            Ok(value) if value.chars().count() < MIN_TOKEN => Err(AdminError::ShortToken),
            Ok(value) => Ok(Some(Self(Sha256::digest(value.as_bytes()).into()))),
            Err(_) => Ok(None),
        }
    }

    /// Whether `Authorization: Bearer <token>` names this token. Both sides
    /// are hashed first, so the comparison takes the same time whatever the
    /// length or the first wrong character.
    fn admits(&self, headers: &HeaderMap) -> bool {
        let given = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split_once(' '))
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
            .map(|(_, token)| token.trim());
        let Some(given) = given else { return false };
        let given: [u8; 32] = Sha256::digest(given.as_bytes()).into();
        given.ct_eq(&self.0).into()
    }
}

struct Endpoints {
    health: Arc<dyn Health>,
    token: Option<Token>,
}

/// The two routes, asking for `token` when there is one.
pub fn router(health: Arc<dyn Health>, token: Option<Token>) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
        .with_state(Arc::new(Endpoints { health, token }))
}

fn unauthorized() -> Response<Body> {
    Response::builder()
        .status(StatusCode::UNAUTHORIZED)
        // RFC 6750 section 3: the scheme the client must use.
        .header(header::WWW_AUTHENTICATE, "Bearer")
        .header(header::CACHE_CONTROL, "no-store")
        .header(header::CONTENT_TYPE, "text/plain; charset=utf-8")
        .body(Body::from(format!(
            "send Authorization: Bearer with the token in {ENV_ADMIN_TOKEN}\n"
        )))
        .unwrap_or_default()
}

fn allowed(endpoints: &Endpoints, headers: &HeaderMap) -> bool {
    endpoints.token.as_ref().is_none_or(|t| t.admits(headers))
}

/// `GET /healthz`: 200 when all is well, 503 otherwise; the JSON says which.
async fn healthz(State(e): State<Arc<Endpoints>>, headers: HeaderMap) -> Response<Body> {
    if !allowed(&e, &headers) {
        return unauthorized();
    }
    let (healthy, body) = e.health.health().await;
    Response::builder()
        .status(if healthy { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE })
        .header(header::CONTENT_TYPE, "application/json")
        .header(header::CACHE_CONTROL, "no-store")
        .body(Body::from(body.to_string()))
        .unwrap_or_default()
}

/// `GET /metrics` in the Prometheus text format.
async fn metrics(State(e): State<Arc<Endpoints>>, headers: HeaderMap) -> Response<Body> {
    if !allowed(&e, &headers) {
        return unauthorized();
    }
    let text = e.health.metrics().await;
    Response::builder()
        .header(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")
        .header(header::CACHE_CONTROL, "no-store")
        .body(Body::from(text))
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(value: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(header::AUTHORIZATION, value.parse().unwrap());
        headers
    }

    #[test]
    fn only_the_exact_bearer_token_is_admitted() {
        let token = Token(Sha256::digest(b"0123456789abcdef-secret").into());
        assert!(token.admits(&with("Bearer 0123456789abcdef-secret")));
        assert!(token.admits(&with("bearer 0123456789abcdef-secret")));
        assert!(!token.admits(&with("Bearer 0123456789abcdef-secreT")));
        assert!(!token.admits(&with("Bearer 0123456789abcdef-secret2")));
        assert!(!token.admits(&with("Basic 0123456789abcdef-secret")));
        assert!(!token.admits(&with("Bearer")));
        assert!(!token.admits(&HeaderMap::new()));
    }
}
