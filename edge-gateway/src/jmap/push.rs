//! Push over EventSource (RFC 8620 §7.3):
//! `GET /jmap/eventsource?types=*&closeafter=no&ping=30`.
//!
//! The stream waits on the change feed of every mailbox of the account
//! (in this process a change wakes it at once; on the AWS backend the
//! feed's poll interval bounds the wait), and at least every
//! [`RECHECK`] reads the account again (a mailbox made or renamed
//! elsewhere moves no mailbox's feed). When a type's state moved, it
//! sends a `state` event naming the new states; `ping` events keep the
//! connection open through proxies. A user has at most
//! [`super::MAX_CONCURRENT_REQUESTS`] streams open; every stream ends
//! when the server shuts down.

use std::collections::BTreeMap;
use std::pin::Pin;
use std::task::{Context as TaskContext, Poll};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{Query, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;
use tokio::sync::mpsc;

use super::{Slot, User, view};
use crate::http::Context;

/// How often the account is read again whatever the feed says.
const RECHECK: Duration = Duration::from_secs(15);
/// The shortest and longest ping interval a client may ask for.
const MIN_PING: u64 = 10;
const MAX_PING: u64 = 300;

#[derive(Debug, Deserialize)]
pub struct PushQuery {
    types: Option<String>,
    closeafter: Option<String>,
    ping: Option<String>,
}

/// The event stream's body: what the task sends, until it ends.
struct Events(mpsc::Receiver<Bytes>);

impl futures_core::Stream for Events {
    type Item = Result<Bytes, std::convert::Infallible>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<Option<Self::Item>> {
        self.0.poll_recv(cx).map(|b| b.map(Ok))
    }
}

/// The states of the types a client follows, and the account's
/// mailboxes.
async fn states(
    ctx: &Context,
    user: &User,
) -> Option<(BTreeMap<&'static str, String>, Vec<String>)> {
    let view = view::load(ctx, user).await.ok()?;
    let s = view.state();
    let states = BTreeMap::from([("Email", s.clone()), ("Mailbox", s.clone()), ("Thread", s)]);
    Some((
        states,
        view.mailboxes.iter().map(|m| m.id.clone()).collect(),
    ))
}

pub async fn eventsource(
    State(ctx): State<Context>,
    Query(q): Query<PushQuery>,
    request: axum::extract::Request,
) -> Response {
    let (parts, _) = request.into_parts();
    let user = match super::authenticate(&ctx, &parts).await {
        Ok(u) => u,
        Err(r) => return r,
    };
    let types: Option<Vec<String>> = match q.types.as_deref() {
        None | Some("*") | Some("") => None,
        Some(list) => Some(list.split(',').map(str::to_string).collect()),
    };
    let close_after_state = match q.closeafter.as_deref() {
        None | Some("no") => false,
        Some("state") => true,
        Some(_) => {
            return crate::http::problem(StatusCode::BAD_REQUEST, "closeafter is state or no");
        }
    };
    let ping = match q.ping.as_deref() {
        None => 0,
        Some(p) => match p.parse::<u64>() {
            Ok(0) => 0,
            Ok(n) => n.clamp(MIN_PING, MAX_PING),
            Err(_) => {
                return crate::http::problem(
                    StatusCode::BAD_REQUEST,
                    "ping is a number of seconds",
                );
            }
        },
    };
    let Some(slot) = Slot::take(&format!("push:{}", user.account)) else {
        return super::request_error(
            StatusCode::TOO_MANY_REQUESTS,
            "limit",
            "too many event streams open for this account",
            Some(("limit", "maxConcurrentRequests")),
        );
    };
    let Some((mut last, mut mailboxes)) = states(&ctx, &user).await else {
        return crate::http::problem(StatusCode::SERVICE_UNAVAILABLE, "try again");
    };
    let (tx, rx) = mpsc::channel::<Bytes>(8);
    let task_ctx = ctx.clone();
    tokio::spawn(async move {
        let _slot = slot;
        let ctx = task_ctx;
        let mut shutdown = ctx.shared.shutdown.clone();
        let every = (ping > 0).then(|| Duration::from_secs(ping));
        let mut last_sent = tokio::time::Instant::now();
        loop {
            // Listen first, then read: a change between the two still
            // wakes the wait below.
            let feed = &ctx.shared.stores.changes;
            let subscriptions: Vec<_> = mailboxes.iter().map(|m| feed.subscribe(m)).collect();
            let mut waits: Vec<_> = subscriptions
                .iter()
                .map(|s| Box::pin(s.notified()))
                .collect();
            for w in &mut waits {
                w.as_mut().enable();
            }
            let Some((now, ids)) = states(&ctx, &user).await else {
                return;
            };
            mailboxes = ids;
            let changed: serde_json::Map<String, serde_json::Value> = now
                .iter()
                .filter(|(t, s)| last.get(*t) != Some(*s))
                .filter(|(t, _)| types.as_ref().is_none_or(|l| l.iter().any(|x| x == *t)))
                .map(|(t, s)| (t.to_string(), json!(s)))
                .collect();
            last = now;
            let due = every.is_some_and(|e| last_sent.elapsed() >= e);
            let event = if !changed.is_empty() {
                let data = json!({
                    "@type": "StateChange",
                    "changed": { user.account.clone(): changed },
                });
                Some(format!("event: state\ndata: {data}\n\n"))
            } else if due {
                Some(format!(
                    "event: ping\ndata: {}\n\n",
                    json!({"interval": ping})
                ))
            } else {
                None
            };
            if let Some(event) = event {
                let state = event.starts_with("event: state");
                if tx.send(Bytes::from(event)).await.is_err() {
                    return;
                }
                last_sent = tokio::time::Instant::now();
                if state && close_after_state {
                    return;
                }
            }
            let poll = subscriptions
                .iter()
                .filter_map(|s| s.poll_interval())
                .min()
                .unwrap_or(RECHECK)
                .min(RECHECK);
            let wait = match every {
                Some(e) => poll.min(e.saturating_sub(last_sent.elapsed())),
                None => poll,
            };
            tokio::select! {
                _ = select_any(waits) => {}
                _ = tokio::time::sleep(wait) => {}
                _ = shutdown.changed() => return,
                _ = tx.closed() => return,
            }
        }
    });
    let mut r = (StatusCode::OK, Body::from_stream(Events(rx))).into_response();
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("no-cache, no-store"),
    );
    h.insert(
        header::HeaderName::from_static("x-accel-buffering"),
        HeaderValue::from_static("no"),
    );
    r
}

/// Completes when the first of `futures` does (never, with none).
async fn select_any<F: std::future::Future + Unpin>(futures: Vec<F>) {
    let mut futures = futures;
    std::future::poll_fn(move |cx| {
        for f in futures.iter_mut() {
            if Pin::new(f).poll(cx).is_ready() {
                return Poll::Ready(());
            }
        }
        Poll::Pending
    })
    .await
}
