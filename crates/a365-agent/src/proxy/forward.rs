//! One request through a route: admitted (same user, or the route's
//! secret), its headers cleaned (RFC 9110 §7.6.1), the profile's token
//! added, sent; an answer that refuses the token makes one refresh and
//! one replay, and a second refusal is passed on as it came.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, Request, Response, StatusCode};
use secrecy::ExposeSecret;

use super::body::{self, Outgoing};
use super::owner::Access;
use super::{Route, refused};
use crate::agent::{Agent, Answer};
use crate::profile::{Held, Profile};

/// What a token handed to a route must stay valid for: a request and its
/// answer fit in it.
const MIN_VALID_MS: u64 = 30_000;

/// The most time the first MiB of a request's body may take to come.
const BODY_WAIT: Duration = Duration::from_secs(60);

/// One forced refresh per profile in this long at most: an upstream that
/// refuses every token must not spend the (rate-limited) token service.
const RENEW_FLOOR: Duration = Duration::from_secs(10);

/// Headers that belong to one connection, never forwarded (RFC 9110
/// §7.6.1), with the ones a route replaces.
const HOP_BY_HOP: [HeaderName; 8] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
    header::PROXY_AUTHORIZATION,
];

type Out = Response<reqwest::Body>;

/// The answer to `req`, from the upstream or (with a reason) from us.
pub(crate) async fn serve<B>(route: &Route, access: &Access, req: Request<B>) -> Out
where
    B: http_body::Body + Send + Sync + Unpin + 'static,
    B::Data: Into<Bytes>,
    B::Error: Into<body::BoxError>,
{
    if let Err(why) = route.admit(access, req.headers()) {
        route.stats.refused.fetch_add(1, Ordering::Relaxed);
        tracing::info!(route = %route.name, "refused a client: {why}");
        let mut refusal = plain(StatusCode::FORBIDDEN, &why);
        refusal
            .headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
        return refusal;
    }
    if req.method() == Method::CONNECT || req.uri().authority().is_some() {
        return plain(
            StatusCode::BAD_REQUEST,
            &format!(
                "this route forwards to {}: send requests to it as to that API (a path such as \
                 /), not as to an HTTP proxy",
                route.base
            ),
        );
    }
    let (parts, incoming) = req.into_parts();
    let path = parts.uri.path().to_owned();
    let Some(url) = route.target(&parts.uri) else {
        return plain(
            StatusCode::BAD_REQUEST,
            "the request's path cannot be forwarded",
        );
    };
    let headers = forwarded_headers(&parts.headers, &route.headers);
    let declared = parts
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse().ok());
    let outgoing = match tokio::time::timeout(BODY_WAIT, body::take(incoming, declared)).await {
        Ok(Ok(outgoing)) => outgoing,
        Ok(Err(e)) => {
            return plain(
                StatusCode::BAD_REQUEST,
                &format!("reading the request's body: {e}"),
            );
        }
        Err(_) => {
            return plain(
                StatusCode::REQUEST_TIMEOUT,
                "the request's body did not come in time",
            );
        }
    };
    let Some(agent) = route.agent.upgrade() else {
        return plain(StatusCode::SERVICE_UNAVAILABLE, "the agent is stopping");
    };
    let (profile, held) = match route.token(&agent).await {
        Ok(got) => got,
        Err(why) => return plain(StatusCode::SERVICE_UNAVAILABLE, &why),
    };
    if let Some(why) = refused::partition(held.secret.expose_secret(), route.gov_upstream) {
        route.stats.refused.fetch_add(1, Ordering::Relaxed);
        tracing::warn!(route = %route.name, method = %parts.method, path, "421: {why}");
        return plain(StatusCode::MISDIRECTED_REQUEST, why);
    }
    let replayable = match &outgoing {
        Outgoing::Whole(bytes) => Some(bytes.clone()),
        Outgoing::Streamed(_) => None,
    };
    let client = match route.client(&agent, &profile) {
        Ok(client) => client,
        Err(why) => return plain(StatusCode::BAD_GATEWAY, &why),
    };
    let first = route
        .send(
            &client,
            &parts.method,
            &url,
            &headers,
            &held,
            into_body(outgoing),
        )
        .await;
    let answer = match first {
        Sent::Refused { answer, why } if replayable.is_some() => {
            match route.renewed(&agent, &held).await {
                Some((_, renewed))
                    if refused::partition(renewed.secret.expose_secret(), route.gov_upstream)
                        .is_some() =>
                {
                    tracing::warn!(route = %route.name, "421: the refreshed token is of the other cloud");
                    plain(
                        StatusCode::MISDIRECTED_REQUEST,
                        "the refreshed token is of the other Altium cloud: it is not sent there",
                    )
                }
                Some((profile, renewed)) => {
                    let body = reqwest::Body::from(replayable.unwrap_or_default());
                    let again = route
                        .send(&client, &parts.method, &url, &headers, &renewed, body)
                        .await
                        .into_response();
                    route.stats.replays.fetch_add(1, Ordering::Relaxed);
                    let message = format!(
                        "proxy route '{}': {} {path} was refused by the upstream ({why}); the \
                         token was refreshed and the request sent again: {}",
                        route.name,
                        parts.method,
                        again.status().as_u16()
                    );
                    tracing::info!("{message}");
                    agent.shared().events.emit(
                        &profile.name,
                        a365_proto::EventKind::Replayed,
                        renewed.expires_at_ms,
                        message,
                    );
                    again
                }
                None => answer,
            }
        }
        sent => sent.into_response(),
    };
    drop(profile);
    route.stats.served.fetch_add(1, Ordering::Relaxed);
    tracing::debug!(
        route = %route.name,
        method = %parts.method,
        path,
        status = answer.status().as_u16(),
        "forwarded"
    );
    answer
}

fn into_body(outgoing: Outgoing) -> reqwest::Body {
    match outgoing {
        Outgoing::Whole(bytes) => reqwest::Body::from(bytes),
        Outgoing::Streamed(body) => body,
    }
}

/// What the upstream answered.
enum Sent {
    Answer(Out),
    /// It refused the token (`why`: 401, or the GraphQL error code).
    Refused {
        answer: Out,
        why: &'static str,
    },
    /// No answer: our own, saying why.
    Failed(Out),
}

impl Sent {
    fn into_response(self) -> Out {
        match self {
            Sent::Answer(a) | Sent::Refused { answer: a, .. } | Sent::Failed(a) => a,
        }
    }
}

impl Route {
    /// Counts and logs another user's connection, refused at once.
    pub(crate) fn refused_foreign(&self, who: &str) {
        self.stats.refused.fetch_add(1, Ordering::Relaxed);
        tracing::info!(route = %self.name, "refused a connection of another user ({who})");
    }

    /// Whether the client may use this route: the same user, or (where
    /// that cannot be told, or the route wants it always) its secret.
    fn admit(&self, access: &Access, headers: &HeaderMap) -> Result<(), String> {
        self.check_page(headers)?;
        let why = match access {
            Access::Foreign(who) => format!(
                "this connection belongs to another user ({who}): a365's proxy routes serve only \
                 the user who runs the agent"
            ),
            Access::Owner if !self.require_secret => return Ok(()),
            _ => {
                let given = headers.get(a365_proto::ROUTE_SECRET_HEADER);
                match (&self.secret, given) {
                    (Some(secret), Some(given))
                        if super::secret::matches(secret, given.as_bytes()) =>
                    {
                        return Ok(());
                    }
                    (_, Some(_)) => format!(
                        "the {} header does not match this route's secret",
                        a365_proto::ROUTE_SECRET_HEADER
                    ),
                    (_, None) => format!(
                        "this route needs the header {}: the value `a365 proxy list {}` shows",
                        a365_proto::ROUTE_SECRET_HEADER,
                        self.name
                    ),
                }
            }
        };
        Err(why)
    }

    /// Refuses what a web page sent: a `Host` that is not the route's (a
    /// DNS-rebinding page), or an `Origin` not allowed.
    fn check_page(&self, headers: &HeaderMap) -> Result<(), String> {
        if let Some(host) = headers.get(header::HOST)
            && !self.hosts.is_empty()
        {
            let host = host.to_str().unwrap_or_default().to_ascii_lowercase();
            if !self.hosts.contains(&host) {
                return Err(format!(
                    "the request names the host '{}', not this route's address (a web page \
                     reaching a local port under its own name?)",
                    host.escape_default()
                ));
            }
        }
        let origin = headers
            .get(header::ORIGIN)
            .map(|o| o.to_str().unwrap_or_default().to_ascii_lowercase());
        // A page of another site that sends no Origin (an image, a
        // script, a link followed) still says where it comes from.
        let site = headers
            .get("sec-fetch-site")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default();
        if origin.is_none() && (site == "cross-site" || site == "same-site") {
            return Err(format!(
                "a web page of another site sent this request (Sec-Fetch-Site: {site}): a route \
                 serves browser pages only of the origins it allows"
            ));
        }
        if let Some(origin) = origin
            && !self.allow_origins.contains(&origin)
        {
            return Err(format!(
                "a web page of origin '{}' sent this request: a route serves browser pages only \
                 of the origins it allows (`a365 proxy add {} --replace --allow-origin ORIGIN …`)",
                origin.escape_default(),
                self.name
            ));
        }
        Ok(())
    }

    /// `{upstream}{path}?{query}`, the path taken relative to the base.
    fn target(&self, uri: &http::Uri) -> Option<reqwest::Url> {
        let pq = uri.path_and_query()?.as_str();
        let relative = pq.strip_prefix('/').unwrap_or(pq);
        let mut url = self.base.clone();
        let (path, query) = match relative.split_once('?') {
            Some((p, q)) => (p, Some(q)),
            None => (relative, None),
        };
        // Dot segments stay within the base: `..` could leave its path.
        let dot = |s: &str| {
            let s = s.to_ascii_lowercase().replace("%2e", ".");
            s == ".." || s == "."
        };
        if path.contains('\\') || path.split('/').any(dot) {
            return None;
        }
        url.set_path(&format!("{}{path}", self.base.path()));
        url.set_query(query);
        Some(url)
    }

    /// The profile's (or its workspace's) current token.
    async fn token(&self, agent: &Agent) -> Result<(Arc<Profile>, Arc<Held>), String> {
        let request = a365_proto::Request::Token(a365_proto::TokenRequest {
            profile: Some(self.profile.clone()),
            min_valid_ms: MIN_VALID_MS,
            scopes: Vec::new(),
            workspace: self.workspace.clone(),
        });
        match agent.handle(request).await {
            Answer::Token { profile, held } => Ok((profile, held)),
            Answer::Response(a365_proto::Response::Error(e)) => Err(format!(
                "no token for proxy route '{}': {}",
                self.name, e.message
            )),
            Answer::Response(_) => Err("no token: the agent answered something else".into()),
        }
    }

    /// A newer token than `failed`: one another request got meanwhile, or
    /// one refresh now (one at a time, at most once per [`RENEW_FLOOR`]
    /// per profile); `None` when there is none to be had.
    async fn renewed(&self, agent: &Agent, failed: &Held) -> Option<(Arc<Profile>, Arc<Held>)> {
        let (profile, held) = self.token(agent).await.ok()?;
        let lock = {
            let mut all = self.renewing.lock().ok()?;
            Arc::clone(all.entry(profile.name.clone()).or_default())
        };
        let mut last = lock.lock().await;
        let (profile, held) = match held.secret.expose_secret() == failed.secret.expose_secret() {
            // Another request may have renewed it while this one waited.
            true => self.token(agent).await.ok()?,
            false => (profile, held),
        };
        if held.secret.expose_secret() != failed.secret.expose_secret() {
            return Some((profile, held));
        }
        if last.is_some_and(|at| at.elapsed() < RENEW_FLOOR) {
            tracing::info!(route = %self.name, "the upstream refused a token refreshed moments ago: its answer is passed on");
            return None;
        }
        *last = Some(Instant::now());
        if let Err(e) = profile.force_refresh().await {
            tracing::warn!(route = %self.name, "refreshing after the upstream refused the token: {e}");
            return None;
        }
        let (profile, held) = self.token(agent).await.ok()?;
        (held.secret.expose_secret() != failed.secret.expose_secret()).then_some((profile, held))
    }

    /// Sends one request with `held`'s token, and reads as much of the
    /// answer as tells whether it refuses the token.
    /// The HTTP client trusting `profile`'s CAs (its `ca_file`, else the
    /// global one), as the bundle is now.
    fn client(&self, agent: &Agent, profile: &Profile) -> Result<reqwest::Client, String> {
        let ca = profile.spec.ca_file.as_deref().map(std::path::Path::new);
        agent
            .shared()
            .http
            .for_route(ca)
            .map_err(|e| format!("the CAs to trust cannot be read: {e}"))
    }

    async fn send(
        &self,
        client: &reqwest::Client,
        method: &Method,
        url: &reqwest::Url,
        headers: &HeaderMap,
        held: &Held,
        body: reqwest::Body,
    ) -> Sent {
        let mut bearer =
            match HeaderValue::try_from(format!("Bearer {}", held.secret.expose_secret())) {
                Ok(v) => v,
                Err(_) => {
                    return Sent::Failed(plain(
                        StatusCode::BAD_GATEWAY,
                        "the profile's token cannot be sent in a header",
                    ));
                }
            };
        bearer.set_sensitive(true);
        let mut headers = headers.clone();
        headers.insert(header::AUTHORIZATION, bearer);
        let sent = client
            .request(method.clone(), url.clone())
            .headers(headers)
            .body(body)
            .send()
            .await;
        let answer = match sent {
            Ok(answer) => answer,
            Err(e) => {
                let e = e.without_url();
                let status = match e.is_timeout() {
                    true => StatusCode::GATEWAY_TIMEOUT,
                    false => StatusCode::BAD_GATEWAY,
                };
                let host = url.host_str().unwrap_or_default().to_owned();
                tracing::warn!(route = %self.name, "the upstream {host} did not answer: {e}");
                return Sent::Failed(plain(
                    status,
                    &format!("the upstream {host} did not answer: {e}"),
                ));
            }
        };
        if let Some(why) = refused::by_status(answer.status()) {
            return Sent::Refused {
                answer: passed_on(answer.into()),
                why,
            };
        }
        if !refused::is_json(answer.headers().get(header::CONTENT_TYPE)) || *method == Method::HEAD
        {
            return Sent::Answer(passed_on(answer.into()));
        }
        match body::read_small(answer).await {
            Ok((parts, bytes)) => {
                let why = refused::by_graphql(&bytes);
                let answer = passed_on(Response::from_parts(parts, reqwest::Body::from(bytes)));
                match why {
                    Some(why) => Sent::Refused { answer, why },
                    None => Sent::Answer(answer),
                }
            }
            Err(streaming) => Sent::Answer(passed_on(streaming)),
        }
    }
}

/// The client's headers as the upstream gets them: without hop-by-hop
/// ones, `Host` (the upstream's is set), the client's own
/// `Authorization` (never sent alongside ours), the route's secret, and
/// the framing (the body sets it); with the route's own headers.
fn forwarded_headers(from: &HeaderMap, extra: &HeaderMap) -> HeaderMap {
    let mut headers = from.clone();
    strip_hop_by_hop(&mut headers);
    for name in [
        header::HOST,
        header::AUTHORIZATION,
        header::CONTENT_LENGTH,
        header::EXPECT,
    ] {
        headers.remove(name);
    }
    headers.remove(a365_proto::ROUTE_SECRET_HEADER);
    // Cookies of every local service share 127.0.0.1: none go upstream.
    headers.remove(header::COOKIE);
    // An answer is read to see whether it refuses the token: not
    // compressed (the client's loopback costs nothing).
    headers.insert(
        header::ACCEPT_ENCODING,
        HeaderValue::from_static("identity"),
    );
    for (name, value) in extra {
        headers.insert(name, value.clone());
    }
    headers
}

/// Removes the hop-by-hop headers, and the ones `Connection` names.
fn strip_hop_by_hop(headers: &mut HeaderMap) {
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|n| HeaderName::try_from(n.trim()).ok())
        .collect();
    for name in named.iter().chain(HOP_BY_HOP.iter()) {
        headers.remove(name);
    }
}

/// An upstream's answer as the client gets it: as it came, less the
/// hop-by-hop headers.
fn passed_on(mut answer: Out) -> Out {
    let headers = answer.headers_mut();
    strip_hop_by_hop(headers);
    headers.remove(header::PROXY_AUTHENTICATE);
    // Not on 127.0.0.1, for every local service to send.
    headers.remove(header::SET_COOKIE);
    // What the upstream sends is data here, not a page: no script of it
    // runs with the route's origin.
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static("sandbox"),
    );
    answer
}

/// Our own answer: `status` and why, as text.
pub(crate) fn plain(status: StatusCode, why: &str) -> Out {
    let mut answer = Response::new(reqwest::Body::from(format!("a365 proxy: {why}\n")));
    *answer.status_mut() = status;
    answer.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    answer
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hop_by_hop_and_credentials_are_not_forwarded() {
        let mut from = HeaderMap::new();
        for (k, v) in [
            ("connection", "keep-alive, x-private"),
            ("x-private", "1"),
            ("keep-alive", "timeout=5"),
            ("authorization", "Bearer theirs"),
            ("host", "127.0.0.1:1"),
            ("transfer-encoding", "chunked"),
            ("x-a365-route-secret", "s"),
            ("content-type", "application/json"),
            ("accept", "*/*"),
        ] {
            from.append(k, HeaderValue::from_static(v));
        }
        let mut extra = HeaderMap::new();
        extra.insert("x-extra", HeaderValue::from_static("e"));
        let out = forwarded_headers(&from, &extra);
        let mut names: Vec<&str> = out.keys().map(|k| k.as_str()).collect();
        names.sort_unstable();
        assert_eq!(
            names,
            ["accept", "accept-encoding", "content-type", "x-extra"]
        );
        assert_eq!(out["accept-encoding"], "identity");
    }
}
