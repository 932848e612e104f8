//! What every profile of an agent shares: the HTTP client, the event bus,
//! the clock and the waits set at start.

use std::sync::Arc;
use std::time::Duration;

use crate::clock::Clock;

/// What every profile shares.
#[derive(Debug)]
pub struct Shared {
    pub http: crate::http::Clients,
    pub events: crate::events::Events,
    pub clock: Arc<dyn Clock>,
    pub default_lifetime: Duration,
    /// The longest a token request may take (the HTTP client's timeout):
    /// a fleet member sends one only with that much lease left.
    pub http_timeout_ms: i64,
    /// How long a sent refresh token's answer is waited for, past
    /// `http_timeout_ms`: it may be spent, so it is not sent again.
    pub answer_wait: Duration,
    /// How long a client waits for a refresh before being told to retry.
    pub client_wait: Duration,
    /// Every refresher looks at the wall clock at least this often (at
    /// multiples of it, so all profiles at once).
    pub tick_ms: i64,
    /// The tick itself ([`crate::tick`]).
    pub tick: crate::tick::Tick,
    /// Refresh tokens seen replaced by a rotation (their digests).
    pub spent: crate::spent::Spent,
    /// Token request budgets, by client id ([`crate::budget`]).
    pub budgets: crate::budget::Budgets,
}

impl Shared {
    /// The HTTP client for `spec`'s requests (its `ca_file`, else the
    /// global one).
    pub(crate) fn http_for(&self, spec: &a365_proto::ProfileSpec) -> &reqwest::Client {
        self.http
            .client(spec.ca_file.as_deref().map(std::path::Path::new))
    }

    /// What a token request of `profile` may use, now.
    pub(crate) fn exchange<'a>(
        &'a self,
        profile: &'a str,
        endpoint: &'a crate::endpoint::Endpoint,
        spec: &'a a365_proto::ProfileSpec,
    ) -> crate::provider::Exchange<'a> {
        crate::provider::Exchange {
            profile,
            http: self.http_for(spec),
            endpoint,
            spec,
            now_ms: self.clock.now_ms(),
            default_lifetime: self.default_lifetime,
            answer_wait: self.answer_wait,
        }
    }
}
