//! The wall clock moves while tokio's timers sleep (a laptop lid closed for
//! a night) or jumps back (NTP): an expired token is never served.

// In tests a panic is a failed test with its message: unwrap freely.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::Duration;

use a365_agent::clock::ManualClock;
use a365_agent::endpoint::Endpoint;
use a365_agent::profile::Profile;
use a365_agent::shared::Shared;
use a365_agent::stores::Placed;
use a365_proto::{ErrorKind, ErrorReply, Kind, ProfileSpec, StoreKind};
use a365_store::{Credential, MemoryStore};
use secrecy::{ExposeSecret, SecretString};

const NOW: i64 = 1_900_000_000_000;
const HOUR: i64 = 3_600_000;

fn shared(clock: Arc<ManualClock>) -> Arc<Shared> {
    Arc::new(Shared {
        http: a365_agent::http::Clients::new(&Default::default(), Duration::from_secs(2)).unwrap(),
        tick: a365_agent::tick::start(Arc::clone(&clock) as _, 30_000),
        clock,
        events: Default::default(),
        default_lifetime: Duration::from_secs(3600),
        client_wait: Duration::from_secs(25),
        http_timeout_ms: 2_000,
        answer_wait: Duration::from_secs(2),
        tick_ms: 30_000,
        spent: a365_agent::spent::Spent::new(None),
        budgets: a365_agent::budget::Budgets::new(None),
    })
}

fn memory() -> Placed {
    Placed {
        kind: StoreKind::Memory,
        store: Ok(Arc::new(MemoryStore::new())),
    }
}

fn refresh_spec() -> (ProfileSpec, Option<Endpoint>) {
    // Nothing listens on port 9 of loopback: every exchange is refused.
    let spec = ProfileSpec {
        kind: Kind::Refresh,
        realm: None,
        token_url: Some("http://127.0.0.1:9/connect/token".into()),
        client_id: Some("cid".into()),
        scopes: vec![],
        secure: None,
        ..Default::default()
    };
    let endpoint = a365_agent::provider::endpoint(&spec).unwrap();
    (spec, endpoint)
}

fn cached(expires_at_ms: i64) -> Credential {
    Credential {
        client_secret: Some(SecretString::from("cs")),
        refresh_token: Some(SecretString::from("rt")),
        access_token: Some(SecretString::from("cached-access-token")),
        access_expires_at_ms: Some(expires_at_ms),
        access_scopes: vec!["openid".into()],
        updated_at_ms: expires_at_ms - HOUR,
        ..Default::default()
    }
}

#[tokio::test]
async fn a_night_of_sleep_never_yields_an_expired_token() {
    let clock = Arc::new(ManualClock::new(NOW));
    let (spec, endpoint) = refresh_spec();
    let profile = Profile::start(
        "work".into(),
        spec,
        endpoint,
        memory(),
        Ok(Some(cached(NOW + HOUR))),
        shared(Arc::clone(&clock)),
    );

    let token = profile.token(0, &[]).await.unwrap();
    assert_eq!(
        token.secret.expose_secret(),
        "cached-access-token",
        "served from the cache, no request"
    );
    assert_eq!(token.expires_at_ms, Some(NOW + HOUR));

    // The lid opens 8 hours later: tokio's timers have not fired, but the
    // wall clock moved. The cached token must not be served.
    clock.advance(8 * HOUR);
    let err = ErrorReply::from(profile.token(0, &[]).await.unwrap_err());
    assert_eq!(err.kind, ErrorKind::Unavailable, "{}", err.message);
    assert!(err.message.contains("cannot connect"), "{}", err.message);
    let status = profile.status(true);
    assert_eq!(status.state, "failing");
    profile.stop().await;
}

#[tokio::test]
async fn min_valid_is_a_guarantee_across_clock_jumps() {
    let clock = Arc::new(ManualClock::new(NOW));
    let (spec, endpoint) = refresh_spec();
    let profile = Profile::start(
        "work".into(),
        spec,
        endpoint,
        memory(),
        Ok(Some(cached(NOW + HOUR))),
        shared(Arc::clone(&clock)),
    );
    // Valid for an hour: 30 minutes is fine, 2 hours is not (and the
    // refresh that would be needed fails).
    assert!(profile.token(30 * 60_000, &[]).await.is_ok());
    assert_eq!(
        ErrorReply::from(profile.token(2 * HOUR as u64, &[]).await.unwrap_err()).kind,
        ErrorKind::Unavailable
    );
    // NTP moves the clock back an hour: the token is simply valid longer.
    clock.advance(-HOUR);
    assert!(profile.token(90 * 60_000, &[]).await.is_ok());
    profile.stop().await;
}

#[tokio::test]
async fn an_expired_static_token_asks_for_a_new_one() {
    let clock = Arc::new(ManualClock::new(NOW));
    let spec = ProfileSpec {
        kind: Kind::Static,
        realm: None,
        token_url: None,
        client_id: None,
        scopes: vec![],
        secure: None,
        ..Default::default()
    };
    let credential = Credential {
        client_secret: None,
        refresh_token: None,
        access_token: Some(SecretString::from("static-token")),
        access_expires_at_ms: Some(NOW + HOUR),
        access_scopes: vec![],
        updated_at_ms: NOW,
        ..Default::default()
    };
    let profile = Profile::start(
        "lt".into(),
        spec,
        None,
        memory(),
        Ok(Some(credential)),
        shared(Arc::clone(&clock)),
    );
    assert!(profile.token(0, &[]).await.is_ok());
    let err = ErrorReply::from(profile.token(2 * HOUR as u64, &[]).await.unwrap_err());
    assert_eq!(err.kind, ErrorKind::Unavailable);
    clock.advance(2 * HOUR);
    let err = ErrorReply::from(profile.token(0, &[]).await.unwrap_err());
    assert_eq!(err.kind, ErrorKind::NeedsReauth);
    assert!(err.message.contains("Admin → Developer"), "{}", err.message);
    assert_eq!(profile.status(true).state, "expired");
}

#[tokio::test]
async fn a_memory_store_after_restart_says_what_to_do() {
    let clock = Arc::new(ManualClock::new(NOW));
    let (spec, endpoint) = refresh_spec();
    let shared = shared(Arc::clone(&clock));
    let placed = memory();
    assert!(
        placed
            .store
            .as_ref()
            .unwrap()
            .load("work")
            .unwrap()
            .is_none()
    );
    let profile = Profile::start("work".into(), spec, endpoint, placed, Ok(None), shared);
    assert_eq!(profile.status(true).state, "needs-reauth");
    let err = ErrorReply::from(profile.token(0, &[]).await.unwrap_err());
    assert_eq!(err.kind, ErrorKind::NeedsReauth);
    assert!(
        err.message.contains("a365 add work --replace"),
        "{}",
        err.message
    );
}
