//! What the agent does over time when a token server fails, through the
//! in-process fixture: the test moves the wall clock instead of sleeping.

#![allow(clippy::unwrap_used)]

mod fixture;

use std::time::Duration;

use a365_agent::clock::Clock;
use a365_proto::ErrorKind;
use a365_token_server::{Fault, ServerConfig};
use fixture::Fixture;

const HOUR: Duration = Duration::from_secs(3600);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_grant_means_reauthenticate_and_stop_asking() {
    let fx = Fixture::start(ServerConfig::default()).await;
    fx.add_refresh("work").await.unwrap();
    fx.server.set_fault(Fault::InvalidGrant, None);
    let e = fx.refresh("work").await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::NeedsReauth);
    assert!(e.message.contains("invalid_grant"), "{e:?}");
    assert!(
        e.message.contains("Get a new refresh token from 127.0.0.1"),
        "says what to do: {e:?}"
    );
    let requests = fx.server.requests();
    // The still-valid token is served; one that must outlive it is not.
    fx.token("work", Duration::ZERO).await.unwrap();
    let e = fx.token("work", 2 * HOUR).await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::NeedsReauth);
    assert_eq!(
        fx.refresh("work").await.unwrap_err().kind,
        ErrorKind::NeedsReauth
    );
    // Past the token's expiry and for hours after: nothing more is sent.
    for _ in 0..4 {
        fx.advance(HOUR).await;
    }
    assert_eq!(
        fx.server.requests(),
        requests,
        "no more requests for a dead credential"
    );
    assert_eq!(fx.status("work").await.state, "needs-reauth");
    fx.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_errors_back_off_and_the_cached_token_is_served_while_valid() {
    let fx = Fixture::start(ServerConfig::default()).await;
    fx.add_refresh("work").await.unwrap();
    let token = fx.token("work", Duration::ZERO).await.unwrap();
    fx.server.set_fault(Fault::Status(500), None);
    let before = fx.server.requests();
    let e = fx.refresh("work").await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::Unavailable);
    assert!(e.message.contains("HTTP 500"), "{e:?}");
    // Retries back off (about 1 s, 2 s, 4 s…), not a tight loop: 3.5 s
    // of wall clock, a tenth of a second at a time.
    for _ in 0..35 {
        fx.advance(Duration::from_millis(100)).await;
    }
    let retries = fx.server.requests() - before;
    assert!((2..=4).contains(&retries), "{retries} requests in 3.5 s");
    // The held token is still good for the default --min-valid.
    assert_eq!(fx.token("work", Duration::ZERO).await.unwrap(), token);
    // A guarantee it cannot give fails at once, with the documented kind.
    let e = fx.token("work", 2 * HOUR).await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::Unavailable);
    assert!(e.message.contains("HTTP 500"), "{e:?}");
    let status = fx.status("work").await;
    assert_eq!(status.state, "failing");
    assert!(status.last_error.unwrap().contains("HTTP 500"));
    // Recovery.
    fx.server.clear_fault();
    fx.refresh("work").await.unwrap();
    assert_ne!(fx.token("work", Duration::ZERO).await.unwrap(), token);
    fx.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_after_is_honoured() {
    let fx = Fixture::start(ServerConfig::default()).await;
    fx.add_refresh("work").await.unwrap();
    fx.server.set_fault(
        Fault::RateLimited {
            retry_after_secs: 3,
        },
        None,
    );
    let before = fx.server.requests();
    let e = fx.refresh("work").await.unwrap_err();
    assert!(e.message.contains("429"), "{e:?}");
    for _ in 0..29 {
        fx.advance(Duration::from_millis(100)).await;
    }
    assert_eq!(
        fx.server.requests() - before,
        1,
        "nothing before Retry-After"
    );
    fx.server.clear_fault();
    fx.advance(Duration::from_millis(200)).await;
    assert!(fx.requests_reach(before + 2).await, "retried after it");
    fx.stop().await;
}

/// A laptop that wakes 8 h later gets a new token at once; NTP then sets
/// the clock back: the newest token is still served, nothing is sent, and
/// the next refresh is not re-armed early.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clock_set_back_keeps_the_newest_token_and_sends_nothing() {
    let fx = Fixture::start(ServerConfig::default()).await;
    fx.add_refresh("work").await.unwrap();
    let before = fx.token("work", Duration::ZERO).await.unwrap();
    fx.advance(8 * HOUR).await;
    let woke = fx.token("work", Duration::ZERO).await.unwrap();
    assert_ne!(woke, before, "the expired token was served");
    assert_eq!(fx.server.requests(), 2);
    let eight_hours = i64::try_from((8 * HOUR).as_millis()).unwrap();
    fx.clock.advance(-eight_hours);
    for _ in 0..5 {
        fx.settle().await;
    }
    assert_eq!(fx.token("work", Duration::ZERO).await.unwrap(), woke);
    assert_eq!(
        fx.server.requests(),
        2,
        "a request after the clock went back"
    );
    let status = fx.status("work").await;
    assert_eq!(status.state, "fresh");
    let now_s = fx.clock.now_ms() / 1000;
    let next = status.next_refresh_at.unwrap();
    assert!(next > now_s + 8 * 3600, "re-armed early: {next} at {now_s}");
    fx.stop().await;
}

/// A refusal that waiting does not mend (RFC 6749 §5.2: a 4xx other than
/// 408 and 429, here a bare 400 with no body) is retried slowly, and after
/// the third in a row the profile needs the user; nothing more is sent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bare_400_three_times_in_a_row_needs_attention() {
    let fx = Fixture::start(ServerConfig::default()).await;
    fx.add_refresh("work").await.unwrap();
    fx.server.set_fault(Fault::Bare(400), None);
    let before = fx.server.requests();
    let e = fx.refresh("work").await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::Unavailable, "{e:?}");
    assert!(e.message.contains("HTTP 400, with an empty body"), "{e:?}");
    assert!(e.message.contains("--client-auth basic"), "{e:?}");
    fx.advance(Duration::from_secs(61)).await;
    assert!(
        fx.requests_reach(before + 2).await,
        "retried after a minute"
    );
    fx.advance(Duration::from_secs(121)).await;
    assert!(
        fx.requests_reach(before + 3).await,
        "retried after two more"
    );
    let status = fx.status("work").await;
    assert_eq!(status.state, "needs-reauth", "{status:?}");
    for _ in 0..3 {
        fx.advance(HOUR).await;
    }
    assert_eq!(fx.server.requests(), before + 3, "sent after the third");
    let e = fx.token("work", 2 * HOUR).await.unwrap_err();
    assert!(e.message.contains("3 times in a row"), "{e:?}");
    fx.stop().await;
}
