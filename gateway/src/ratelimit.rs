//! The REST rate limit: Discord's global limit (50 requests per second per bot token by
//! default), keyed by token, or by client address for requests without one.
//!
//! A refused request gets Discord's global 429: body `{message, retry_after, global:
//! true}` with `retry_after` in seconds (a float), `Retry-After` in whole seconds
//! (rounded up), `X-RateLimit-Global: true`, `X-RateLimit-Scope: user` and `Via: 1.1
//! google` (discord.py only retries a 429 that carries `Via`). Discord reports only its
//! per-route buckets in `X-RateLimit-Limit/Remaining/Reset/Reset-After/Bucket`; Chorus has
//! no per-route buckets, so successful responses carry none of those headers (the
//! libraries then apply no bucket limits of their own).

use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;
use std::net::{IpAddr, SocketAddr};
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use axum::extract::{ConnectInfo, Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use governor::clock::Clock;
use governor::{DefaultKeyedRateLimiter, Quota};

/// Who a request is counted against.
#[derive(Clone, PartialEq, Eq, Hash, Debug)]
enum Key {
    /// A token, by a keyed hash (tokens are not kept in memory).
    Token(u64),
    /// A client address (when the server knows it).
    Address(IpAddr),
    /// Requests without a token from an unknown address.
    Anonymous,
}

/// The limiter shared by all requests of a router.
#[derive(Clone)]
pub struct RateLimiter {
    inner: Option<Arc<Inner>>,
}

struct Inner {
    limiter: DefaultKeyedRateLimiter<Key>,
    hasher: RandomState,
    requests: AtomicU64,
}

impl RateLimiter {
    /// A limiter allowing `per_second` requests per second per key (bursts of as many);
    /// 0 disables rate limiting.
    pub fn new(per_second: u32) -> RateLimiter {
        RateLimiter {
            inner: NonZeroU32::new(per_second).map(|n| {
                Arc::new(Inner {
                    limiter: DefaultKeyedRateLimiter::keyed(Quota::per_second(n)),
                    hasher: RandomState::new(),
                    requests: AtomicU64::new(0),
                })
            }),
        }
    }
}

fn key(inner: &Inner, req: &Request) -> Key {
    if let Some(token) = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .map(|t| {
            t.strip_prefix("Bot ")
                .or_else(|| t.strip_prefix("Bearer "))
                .unwrap_or(t)
        })
        .filter(|t| !t.is_empty())
    {
        return Key::Token(inner.hasher.hash_one(token));
    }
    match req.extensions().get::<ConnectInfo<SocketAddr>>() {
        Some(ConnectInfo(addr)) => Key::Address(addr.ip()),
        None => Key::Anonymous,
    }
}

/// The middleware: counts the request against its key, or answers 429.
pub async fn limit(State(limiter): State<RateLimiter>, req: Request, next: Next) -> Response {
    let Some(inner) = limiter.inner.as_deref() else {
        return next.run(req).await;
    };
    // The gateway's WebSocket upgrade has its own limits.
    if !req.uri().path().starts_with("/api") {
        return next.run(req).await;
    }
    let key = key(inner, &req);
    // Forget idle keys now and then, so the table does not grow without bound.
    if inner.requests.fetch_add(1, Ordering::Relaxed) % 4096 == 4095 {
        inner.limiter.retain_recent();
        inner.limiter.shrink_to_fit();
    }
    match inner.limiter.check_key(&key) {
        Ok(()) => next.run(req).await,
        Err(not_until) => {
            let wait = not_until.wait_time_from(inner.limiter.clock().now());
            too_many_requests(wait.as_secs_f64())
        }
    }
}

/// Discord's global 429.
fn too_many_requests(retry_after: f64) -> Response {
    // Never tell a client to retry in 0 s: it would come straight back.
    let retry_after = (retry_after * 1000.0).ceil().max(1.0) / 1000.0;
    let body = serde_json::json!({
        "message": "You are being rate limited.",
        "retry_after": retry_after,
        "global": true,
        "code": 0,
    });
    let mut response = crate::json_body(&body);
    *response.status_mut() = StatusCode::TOO_MANY_REQUESTS;
    let h = response.headers_mut();
    let whole = retry_after.ceil().max(1.0) as u64;
    h.insert(header::RETRY_AFTER, HeaderValue::from(whole));
    h.insert(header::VIA, HeaderValue::from_static("1.1 google"));
    h.insert("x-ratelimit-global", HeaderValue::from_static("true"));
    h.insert("x-ratelimit-scope", HeaderValue::from_static("user"));
    response.into_response()
}
