//! The web server (`herald serve`): serves `public/` over HTTP the way feed
//! readers want it. Strong ETags (a hash of the bytes) and Last-Modified,
//! answered with 304 (RFC 9110 section 13), HEAD, gzip and brotli when the
//! client asks, the feeds' own media types, Cache-Control from the config.
//! A file publish rewrote is served new at once. A path that would leave
//! `public/` is a 404, never a directory listing.
//!
//! It also counts the feed audience: aggregators announce their subscriber
//! counts in the User-Agent, other pollers are counted once a day each.
//!
//! This is the only module that knows HTTP request types.

pub mod admin;
mod audience;
mod conn;
pub mod files;
mod gone;
pub mod paths;
pub mod signup;
pub mod webhooks;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{ConnectInfo, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, Response, StatusCode, Uri};
use axum::Router;

use crate::config::Config;
use crate::store::Store;
use files::{Content, Encoding};

pub use audience::parse_aggregator;

#[derive(Debug, thiserror::Error)]
pub enum WebError {
    #[error(
        "cannot listen on {addr}: {cause}; is another server using it? (web.listen or --listen)"
    )]
    Bind { addr: SocketAddr, cause: std::io::Error },
    #[error(
        "cannot listen on {addr} for health and metrics: {cause}; is another server using it? (web.admin_listen)"
    )]
    BindAdmin { addr: SocketAddr, cause: std::io::Error },
    #[error("cannot set up the subscription pages: {0}")]
    Signup(signup::SignupError),
    #[error(transparent)]
    Admin(#[from] admin::AdminError),
    #[error("cannot set up the bounce webhooks: {0}")]
    Webhooks(webhooks::WebhookError),
}

impl From<webhooks::WebhookError> for WebError {
    fn from(e: webhooks::WebhookError) -> Self {
        WebError::Webhooks(e)
    }
}

// By hand, not `#[from]`: the message says the cause, so it is not also
// exposed as the source (it would be printed twice).
impl From<signup::SignupError> for WebError {
    fn from(e: signup::SignupError) -> Self {
        WebError::Signup(e)
    }
}

struct AppState {
    root: PathBuf,
    cache: files::FileCache,
    cache_control: HeaderValue,
    audience: audience::Audience,
    gone: gone::Gone,
}

/// Binds `addr` (port 0 picks a free port).
pub async fn bind(addr: SocketAddr) -> Result<tokio::net::TcpListener, WebError> {
    tokio::net::TcpListener::bind(addr).await.map_err(|cause| WebError::Bind { addr, cause })
}

/// Binds `web.admin_listen`.
pub async fn bind_admin(addr: SocketAddr) -> Result<tokio::net::TcpListener, WebError> {
    tokio::net::TcpListener::bind(addr).await.map_err(|cause| WebError::BindAdmin { addr, cause })
}

/// Serves `feeds.output_dir` and the subscription pages on `listener` until
/// `shutdown` completes; confirmation mails still queued then are sent
/// before it returns. With `admin`, also `/healthz` and `/metrics`, on
/// their own listener or behind the admin token.
pub async fn serve(
    config: &Config,
    store: Store,
    templates: crate::templates::Templates,
    listener: tokio::net::TcpListener,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    admin: Option<admin::Admin>,
) -> Result<(), WebError> {
    let (signups, mailer) = signup::Signups::new(config, store.clone(), templates).await?;
    let webhooks = webhooks::Webhooks::new(config, store.clone()).await?;
    let state = Arc::new(AppState {
        root: config.feeds.output_dir.clone(),
        cache: files::FileCache::new(config.web.cache_bytes).confined_to(&config.feeds.output_dir),
        cache_control: HeaderValue::from_str(&format!(
            "public, max-age={}",
            config.web.cache_max_age
        ))
        .unwrap_or(HeaderValue::from_static("public, max-age=300")),
        audience: audience::Audience::default(),
        gone: gone::Gone::new(&config.feeds.output_dir),
    });
    let flusher = {
        let (state, store) = (Arc::clone(&state), store.clone());
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(10));
            loop {
                tick.tick().await;
                state.audience.flush(&store).await;
            }
        })
    };
    // One shutdown for both listeners.
    let (stop, stopping) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        shutdown.await;
        let _ = stop.send(true);
    });
    let stopped = |mut stopping: tokio::sync::watch::Receiver<bool>| async move {
        let _ = stopping.wait_for(|stop| *stop).await;
    };
    let limits = conn::Limits::from_config(&config.web).fitted_to_open_files();
    let mut app = signups.router().merge(webhooks.router());
    let mut admin_server = None;
    if let Some(admin::Admin { health, access }) = admin {
        let routes = admin::router(health, access.token.clone());
        match access.listener {
            Some(listener) => {
                // A few connections are plenty for a monitor.
                let few = conn::Limits { max_connections: 16, ..limits };
                let serving = conn::serve(listener, routes, few, stopped(stopping.clone()));
                admin_server = Some(tokio::spawn(serving));
            }
            None if access.token.is_some() => app = app.merge(routes),
            None => {}
        }
    }
    let app = app.merge(Router::new().fallback(handle).with_state(Arc::clone(&state)));
    drop(signups); // the router holds it now; the mailer ends when the router is gone
    conn::serve(listener, app, limits, stopped(stopping)).await;
    if let Some(admin_server) = admin_server {
        let _ = admin_server.await;
    }
    flusher.abort();
    state.audience.flush(&store).await;
    mailer.finish(Duration::from_secs(10)).await;
    Ok(())
}

/// At most this much of a request path (or any text a client chose) goes
/// into a log line.
const SHOWN: usize = 200;

/// `text` cut to a length fit for a log line, saying how long it was.
pub(crate) fn shown(text: &str) -> std::borrow::Cow<'_, str> {
    if text.len() <= SHOWN {
        return text.into();
    }
    let mut end = SHOWN;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}… ({} bytes)", &text[..end], text.len()).into()
}

/// What every response for `public/` carries: whatever a source's folder
/// holds (an SVG or HTML file with a script in it) is served on the
/// subscription pages' origin, so no script may run there. herald's own
/// pages use none.
macro_rules! no_scripts {
    () => {
        "default-src 'none'; img-src * data:; media-src *; style-src 'self' 'unsafe-inline'; font-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
    };
}
const NO_SCRIPTS: &str = no_scripts!();
const NO_SCRIPTS_SANDBOXED: &str = concat!(no_scripts!(), "; sandbox");

async fn handle(
    State(state): State<Arc<AppState>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
) -> Response<Body> {
    let path = paths::resolve(&state.root, uri.path());
    // An SVG opened on its own is a document: sandboxed as well.
    let svg = path.as_deref().is_some_and(|p| paths::content_type(p) == "image/svg+xml");
    let mut response = respond(&state, peer, &method, &uri, &headers, path).await;
    // A 304 leaves the cached response's own headers in force (RFC 9111
    // section 4.3.4), the policy among them: it needs none of its own, and
    // feed readers' conditional polls are the busiest answers herald gives.
    if response.status() == StatusCode::NOT_MODIFIED {
        return response;
    }
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        if svg {
            HeaderValue::from_static(NO_SCRIPTS_SANDBOXED)
        } else {
            HeaderValue::from_static(NO_SCRIPTS)
        },
    );
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    response
}

async fn respond(
    state: &AppState,
    peer: SocketAddr,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    path: Option<std::path::PathBuf>,
) -> Response<Body> {
    if method != Method::GET && method != Method::HEAD {
        return Response::builder()
            .status(StatusCode::METHOD_NOT_ALLOWED)
            .header(header::ALLOW, "GET, HEAD")
            .body(Body::empty())
            .unwrap_or_default();
    }
    // Retracted articles: before the file, which may still be there.
    if state.gone.contains(uri.path()) {
        return withdrawn();
    }
    let Some(path) = path else {
        return not_found();
    };
    // A stat per request (cheap); a read, off the request threads, only
    // when the file changed. A file replaced between the stat and the
    // read is looked up once more.
    for _ in 0..2 {
        let entry = match state.cache.get(&path).await {
            Ok(Some(entry)) => entry,
            Ok(None) => {
                // /blog/hello → /blog/hello/ when that is a page.
                if !uri.path().ends_with('/') && path.join("index.html").is_file() {
                    return Response::builder()
                        .status(StatusCode::PERMANENT_REDIRECT)
                        .header(header::LOCATION, format!("{}/", uri.path()))
                        .body(Body::empty())
                        .unwrap_or_default();
                }
                return not_found();
            }
            Err(e) => return cannot_read(&path, &e),
        };
        if let Some(response) = serve_file(state, peer, method, uri, headers, &entry).await {
            return response;
        }
    }
    not_found()
}

/// The response for one version of a file; `None` when the file changed
/// under it.
async fn serve_file(
    state: &AppState,
    peer: SocketAddr,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    entry: &Arc<files::Entry>,
) -> Option<Response<Body>> {
    if is_feed(entry.content_type) {
        let agent = headers.get(header::USER_AGENT).and_then(|v| v.to_str().ok()).unwrap_or("");
        let file = uri.path().trim_start_matches('/');
        state.audience.observe(peer.ip(), agent, file);
    }

    // The representation: brotli, gzip or identity, each with its own ETag.
    let accept = headers.get(header::ACCEPT_ENCODING).and_then(|v| v.to_str().ok()).unwrap_or("");
    let mut encoding = match entry.compressible() {
        true if accepts(accept, "br") => Encoding::Brotli,
        true if accepts(accept, "gzip") => Encoding::Gzip,
        _ => Encoding::Identity,
    };

    // RFC 9110 section 13.2.2: If-None-Match wins over If-Modified-Since.
    // Decided before any compressing: a 304 needs no body.
    let etag = entry.etag_value(encoding);
    let not_modified = match headers.get(header::IF_NONE_MATCH).and_then(|v| v.to_str().ok()) {
        Some(tags) => none_match(tags, &[etag.to_str().unwrap_or(""), &entry.etag]),
        None => headers
            .get(header::IF_MODIFIED_SINCE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| httpdate::parse_http_date(v).ok())
            .is_some_and(|since| entry.modified <= since),
    };
    let content = if not_modified {
        None
    } else {
        let mut content = state.cache.content(entry, encoding).await;
        if matches!(content, Ok(None)) {
            // No compressed copy could be made: the file as it is.
            encoding = Encoding::Identity;
            content = state.cache.content(entry, encoding).await;
        }
        match content {
            Ok(Some(Content::Changed)) => return None,
            Ok(Some(content)) => Some(content),
            Ok(None) => return Some(not_found()),
            Err(e) => return Some(cannot_read(&entry.path, &e)),
        }
    };

    let mut response = Response::builder()
        .header(header::ETAG, entry.etag_value(encoding).clone())
        .header(header::LAST_MODIFIED, entry.last_modified.clone())
        .header(header::CACHE_CONTROL, state.cache_control.clone());
    if entry.compressible() {
        response = response.header(header::VARY, HeaderValue::from_static("Accept-Encoding"));
    }
    let Some(content) = content else {
        return Some(
            response.status(StatusCode::NOT_MODIFIED).body(Body::empty()).unwrap_or_default(),
        );
    };
    let length = match &content {
        Content::Memory(bytes) => bytes.len() as u64,
        _ => entry.file_len(),
    };
    response = response
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, entry.content_type_value.clone())
        .header(header::CONTENT_LENGTH, length);
    if let Some(coding) = encoding.coding() {
        response = response.header(header::CONTENT_ENCODING, HeaderValue::from_static(coding));
    }
    let body = match content {
        _ if *method == Method::HEAD => Body::empty(),
        Content::Memory(bytes) => Body::from(bytes),
        Content::Disk(file) => files::stream(file, length),
        Content::Changed => Body::empty(),
    };
    Some(response.body(body).unwrap_or_default())
}

fn cannot_read(path: &std::path::Path, e: &std::io::Error) -> Response<Body> {
    tracing::error!(path = %shown(&path.to_string_lossy()), "cannot read: {e}");
    Response::builder()
        .status(StatusCode::INTERNAL_SERVER_ERROR)
        .body(Body::from("cannot read the file\n"))
        .unwrap_or_default()
}

fn is_feed(content_type: &str) -> bool {
    matches!(content_type, "application/rss+xml" | "application/atom+xml" | "application/feed+json")
}

/// Whether an If-None-Match value matches one of our tags (weak comparison,
/// RFC 9110 section 13.1.2: a `W/` prefix is ignored).
fn none_match(header: &str, tags: &[&str]) -> bool {
    header.split(',').map(str::trim).any(|t| t == "*" || tags.contains(&t.trim_start_matches("W/")))
}

/// Whether Accept-Encoding accepts `coding` (q > 0).
fn accepts(header: &str, coding: &str) -> bool {
    header.split(',').any(|item| {
        let mut parts = item.split(';').map(str::trim);
        let name = parts.next().unwrap_or("");
        if !name.eq_ignore_ascii_case(coding) {
            return false;
        }
        parts
            .find_map(|p| p.strip_prefix("q=").and_then(|q| q.trim().parse::<f32>().ok()))
            .is_none_or(|q| q > 0.0)
    })
}

fn not_found() -> Response<Body> {
    Response::builder()
        .status(StatusCode::NOT_FOUND)
        .header(header::CONTENT_TYPE, "text/html; charset=utf-8")
        .header(header::CACHE_CONTROL, "public, max-age=60")
        .body(Body::from(
            "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>Not found</title>\
             <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\"></head>\
             <body style=\"font-family:Georgia,serif;max-width:36rem;margin:3rem auto;padding:0 1rem\">\
             <h1>Not found</h1><p>There is no page here. The <a href=\"/\">front page</a> and the \
             <a href=\"/feed.xml\">feed</a> are.</p></body></html>\n",
        ))
        .unwrap_or_default()
}

/// The 410 page of a retracted article.
fn withdrawn() -> Response<Body> {
    Response::builder()
        .status(StatusCode::GONE)
        .header(header::CONTENT_TYPE, "text/html; charset=utf-8")
        .header(header::CACHE_CONTROL, "public, max-age=60")
        .body(Body::from(
            "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>Withdrawn</title>\
             <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\"></head>\
             <body style=\"font-family:Georgia,serif;max-width:36rem;margin:3rem auto;padding:0 1rem\">\
             <h1>This article was withdrawn</h1><p>The newsroom took it down, and it will not \
             come back at this address. The <a href=\"/\">front page</a> has today's news.</p>\
             </body></html>\n",
        ))
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_texts_are_cut_for_the_log() {
        assert_eq!(shown("/feed.xml"), "/feed.xml");
        let long = format!("/{}", "é".repeat(3_000));
        let cut = shown(&long);
        assert!(cut.len() < SHOWN + 30, "{cut}");
        assert!(cut.ends_with("… (6001 bytes)"), "{cut}");
    }

    #[test]
    fn conditional_and_encoding_headers() {
        assert!(none_match("\"abc\"", &["\"abc\""]));
        assert!(none_match("W/\"abc\", \"x\"", &["\"abc\""]));
        assert!(none_match("*", &["\"abc\""]));
        assert!(!none_match("\"abd\"", &["\"abc\""]));
        assert!(accepts("gzip, deflate, br", "br"));
        assert!(accepts("gzip;q=0.5", "gzip"));
        assert!(!accepts("gzip;q=0, br;q=0", "gzip"));
        assert!(!accepts("identity", "br"));
    }
}
