//! `serve --web ADDR`: the live console, on the server's own runtime. A page (served from the
//! binary: no CDN, no framework) lists live connections and follows the transcript through
//! server-sent events; a form answers one client or all; a button disconnects one.
//! `/metrics` speaks Prometheus, `/api/connections` JSON.
//!
//! A view, never a bottleneck: the transcript comes from the sink's broadcast, which never
//! waits, and each browser gets at most [`events::LINES_PER_TICK`] lines per tick, the rest
//! counted as skipped.
//!
//! Access: with `--web-token` every request must carry it (`Authorization: Bearer` or
//! `?token=`, which an `EventSource` can send); without one the console serves loopback only
//! and only to requests addressed to a loopback name (no DNS rebinding). Requests that change
//! anything are JSON POSTs, which a page of another origin cannot send without CORS.

mod events;
mod listener;
mod metrics;

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::extract::{Path, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Value, json};
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;

use crate::output::Written;
use crate::server::{ConnectionView, Console, NotSent};

/// The page: HTML, CSS and script in one file, compiled in.
const PAGE: &str = include_str!("console.html");
/// Longest line the console sends to clients.
const MAX_SEND_BYTES: usize = 4096;

/// Why the console cannot start.
#[derive(Debug, thiserror::Error)]
pub enum WebError {
    /// A non-loopback address without a token.
    #[error(
        "the web console on {0} would be open to the network: give --web-token (or serve it on 127.0.0.1)"
    )]
    NeedsToken(SocketAddr),
    /// A token too short to keep anyone out (an empty `HUBCAT_WEB_TOKEN`, say).
    #[error("--web-token must be at least 16 characters, like the output of `openssl rand -hex 16`")]
    WeakToken,
}

/// The shortest token accepted.
const MIN_TOKEN_BYTES: usize = 16;

#[derive(Clone)]
struct App {
    console: Console,
    watch: broadcast::Sender<Written>,
    token: Option<Arc<str>>,
}

/// Checks that the console may listen on `addr` with `token`.
pub fn check_access(addr: SocketAddr, token: Option<&str>) -> Result<(), WebError> {
    if token.is_some_and(|token| token.trim().len() < MIN_TOKEN_BYTES) {
        return Err(WebError::WeakToken);
    }
    if token.is_none() && !addr.ip().is_loopback() {
        return Err(WebError::NeedsToken(addr));
    }
    Ok(())
}

/// Serves the console on `listener` until `stop` is cancelled.
pub async fn serve(
    listener: tokio::net::TcpListener,
    console: Console,
    watch: broadcast::Sender<Written>,
    token: Option<String>,
    stop: CancellationToken,
) -> std::io::Result<()> {
    let app = App { console, watch, token: token.map(|token| Arc::from(token.trim())) };
    let router = Router::new()
        .route("/", get(page))
        .route("/api/connections", get(connections))
        .route("/api/send", post(send))
        .route("/api/disconnect/{id}", post(disconnect))
        .route("/events", get(events::stream))
        .route("/metrics", get(metrics))
        // Browsers ask for it; an empty answer keeps their consoles free of 404s.
        .route("/favicon.ico", get(|| async { StatusCode::NO_CONTENT }))
        .layer(middleware::from_fn_with_state(app.clone(), guard))
        .with_state(app);
    axum::serve(listener::Bounded::new(listener), router).with_graceful_shutdown(stop.cancelled_owned()).await
}

/// The access check every request goes through.
async fn guard(State(app): State<App>, request: Request, next: Next) -> Response {
    let allowed = match &app.token {
        Some(token) => {
            presented_token(&request).is_some_and(|given| same(given.as_bytes(), token.as_bytes()))
        }
        None => host_is_loopback(request.headers()),
    };
    if !allowed {
        let (status, why) = match app.token {
            Some(_) => {
                (StatusCode::UNAUTHORIZED, "this console needs its token: add ?token=... to the address\n")
            }
            None => (
                StatusCode::FORBIDDEN,
                "this console answers only to loopback names (127.0.0.1, localhost)\n",
            ),
        };
        return (status, why).into_response();
    }
    let mut response = next.run(request).await;
    // The page is the only thing that may run script, and only its own.
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        header::HeaderValue::from_static(
            "default-src 'none'; script-src 'self' 'unsafe-inline'; style-src 'unsafe-inline'; connect-src 'self'; img-src 'self'; form-action 'none'; frame-ancestors 'none'",
        ),
    );
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, header::HeaderValue::from_static("nosniff"));
    // The token may be in the address: never pass it on, never keep the page.
    headers.insert(header::REFERRER_POLICY, header::HeaderValue::from_static("no-referrer"));
    headers.insert(header::CACHE_CONTROL, header::HeaderValue::from_static("no-store"));
    response
}

fn presented_token(request: &Request) -> Option<String> {
    if let Some(bearer) = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split_once(' '))
        .and_then(|(scheme, token)| scheme.eq_ignore_ascii_case("bearer").then_some(token))
    {
        return Some(bearer.trim().to_string());
    }
    let query = request.uri().query()?;
    query
        .split('&')
        .find_map(|pair| pair.strip_prefix("token="))
        .map(|token| percent_decode(token).trim().to_string())
}

/// Decodes a query value: `+` is a space and `%XX` escapes are decoded (a token pasted into an
/// address bar may carry them); a malformed escape leaves the value as it is.
fn percent_decode(text: &str) -> String {
    let text = text.replace('+', " ");
    match crate::addr::percent_decode(&text) {
        Some(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
        None => text,
    }
}

/// Compares without stopping at the first difference, so timing says nothing of the token.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn host_is_loopback(headers: &HeaderMap) -> bool {
    let Some(host) = headers.get(header::HOST).and_then(|h| h.to_str().ok()) else { return false };
    let name = match host.rsplit_once(':') {
        Some((name, port)) if port.bytes().all(|b| b.is_ascii_digit()) => name,
        _ => host,
    };
    let name = crate::addr::strip_brackets(name);
    name.eq_ignore_ascii_case("localhost")
        || name.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

async fn page() -> Html<&'static str> {
    Html(PAGE)
}

async fn connections(State(app): State<App>) -> axum::Json<Value> {
    axum::Json(connections_json(&app.console.connections(), usize::MAX))
}

/// The connection list as the API and the event stream send it: at most `limit` rows, and the
/// total.
fn connections_json(views: &[ConnectionView], limit: usize) -> Value {
    let rows: Vec<Value> = views
        .iter()
        .take(limit)
        .map(|view| {
            json!({
                "id": view.id,
                "peer": view.peer,
                "nick": view.nick,
                "connected_at": humantime::format_rfc3339_millis(view.opened_at).to_string(),
                "age_ms": view.age.as_millis() as u64,
                "idle_ms": view.idle.as_millis() as u64,
                "bytes_in": view.bytes_in,
                "bytes_out": view.bytes_out,
            })
        })
        .collect();
    json!({ "total": views.len(), "connections": rows })
}

/// `{"to": ID or null, "text": "..."}`: a line to one client, or to all.
async fn send(State(app): State<App>, axum::Json(body): axum::Json<Value>) -> Response {
    let Some(text) = body.get("text").and_then(Value::as_str) else {
        return (StatusCode::BAD_REQUEST, "expected {\"to\": ID or null, \"text\": \"...\"}\n")
            .into_response();
    };
    if text.len() > MAX_SEND_BYTES || text.contains(['\n', '\r']) {
        return (StatusCode::BAD_REQUEST, "one line of at most 4096 bytes\n").into_response();
    }
    let to = match body.get("to") {
        None | Some(Value::Null) => None,
        Some(id) => match id.as_u64() {
            Some(id) => Some(id),
            None => {
                return (StatusCode::BAD_REQUEST, "\"to\" is a connection number or null\n").into_response();
            }
        },
    };
    let sent = match app.console.send(to, text) {
        Ok(sent) => sent,
        Err(why) => {
            let (status, error) = match why {
                NotSent::NoSuchConnection => (StatusCode::NOT_FOUND, "no such connection"),
                NotSent::Busy => {
                    (StatusCode::TOO_MANY_REQUESTS, "the connection has not taken the earlier lines yet")
                }
                NotSent::NotServing => (StatusCode::CONFLICT, "this server sends nothing to its clients"),
            };
            return (status, axum::Json(json!({ "sent_to": 0, "error": error }))).into_response();
        }
    };
    match to {
        Some(id) => tracing::info!("web console: sent a line to #{id}"),
        None => tracing::info!("web console: sent a line to {sent} clients"),
    }
    axum::Json(json!({ "sent_to": sent })).into_response()
}

async fn disconnect(
    State(app): State<App>,
    Path(id): Path<u64>,
    axum::Json(_): axum::Json<Value>,
) -> StatusCode {
    if !app.console.disconnect(id) {
        return StatusCode::NOT_FOUND;
    }
    tracing::info!("web console: disconnecting #{id}");
    StatusCode::NO_CONTENT
}

async fn metrics(State(app): State<App>) -> Response {
    let text = metrics::render(&app.console.metrics());
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], text).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_compare_whole_and_decode() {
        assert!(same(b"secret", b"secret"));
        assert!(!same(b"secret", b"secreT"));
        assert!(!same(b"secret", b"secret2"));
        assert_eq!(percent_decode("a%2Fb+c"), "a/b c");
        assert_eq!(percent_decode("bad%zz%"), "bad%zz%");
    }

    #[test]
    fn only_loopback_hosts_pass_without_a_token() {
        let check = |host: &str| {
            let mut headers = HeaderMap::new();
            headers.insert(header::HOST, host.parse().expect("header"));
            host_is_loopback(&headers)
        };
        assert!(
            check("127.0.0.1:8080") && check("localhost:8080") && check("[::1]:8080") && check("LOCALHOST")
        );
        assert!(!check("evil.example:8080") && !check("10.0.0.1:8080"));
        assert!(check_access("0.0.0.0:8080".parse().expect("addr"), None).is_err());
        assert!(check_access("0.0.0.0:8080".parse().expect("addr"), Some("0123456789abcdef")).is_ok());
        assert!(check_access("127.0.0.1:8080".parse().expect("addr"), Some("short")).is_err());
    }
}
