//! The agent run in-process through its seams: `run` with a manual clock,
//! millisecond timeouts and a shutdown future of the test's, against the
//! local token server. What a user does, without processes or sleeps.

#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::Duration;

mod fixture;

use a365_agent::clock::ManualClock;
use a365_proto::{AddProfile, Kind, ProfileSpec, Request, Response, Secrets, WireSecret};
use a365_token_server::{ServerConfig, TokenServer};
use secrecy::SecretString;

fn token(response: Response) -> String {
    match response {
        Response::Token(reply) => reply.token.expose().to_owned(),
        other => panic!("{other:?}"),
    }
}

fn now_ms() -> i64 {
    jiff::Timestamp::now().as_millisecond()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clock_jump_past_expiry_serves_a_new_token_and_shutdown_is_clean() {
    let server = TokenServer::start(ServerConfig {
        lifetime: Duration::from_secs(3600),
        ..ServerConfig::default()
    })
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("run/a365/agent.sock");
    let options = fixture::options(dir.path(), socket.clone());
    let clock = Arc::new(ManualClock::new(now_ms()));
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let agent = tokio::spawn(a365_agent::run(
        options,
        None,
        Arc::clone(&clock) as Arc<dyn a365_agent::clock::Clock>,
        async move {
            let _ = stopped.await;
        },
    ));
    for _ in 0..200 {
        if socket.exists() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    let rt = server.issue_refresh_token("test-client");
    let add = Request::AddProfile(AddProfile {
        name: "work".into(),
        spec: ProfileSpec {
            kind: Kind::Refresh,
            token_url: Some(server.token_url()),
            client_id: Some("test-client".into()),
            ..ProfileSpec::default()
        },
        secrets: Secrets {
            client_secret: Some(WireSecret::new(SecretString::from("test-secret"))),
            refresh_token: Some(WireSecret::new(SecretString::from(rt))),
            access_token: None,
            ..Secrets::default()
        },
        replace: false,
        check_only: false,
        shared: false,
    });
    match fixture::call(&socket, add).await {
        Response::Done { message } => {
            assert!(message.contains("a token was obtained"), "{message}")
        }
        other => panic!("{other:?}"),
    }
    let ask = || {
        Request::Token(a365_proto::TokenRequest {
            profile: Some("work".into()),
            min_valid_ms: 0,
            scopes: vec![],
            workspace: None,
        })
    };
    let first = token(fixture::call(&socket, ask()).await);
    assert_eq!(
        token(fixture::call(&socket, ask()).await),
        first,
        "served, not asked again"
    );
    assert_eq!(server.requests(), 1);

    // The lid opens two hours later: the held token has expired by the
    // wall clock, although no timer of the agent has fired.
    clock.advance(2 * 3_600_000);
    let second = token(fixture::call(&socket, ask()).await);
    assert_ne!(second, first, "an expired token is never served");
    assert_eq!(server.requests(), 2);

    // The next jump, and no client asks: the refresher's tick sees the
    // wall clock and renews ahead, so the next client waits for nothing.
    clock.advance(2 * 3_600_000);
    for _ in 0..100 {
        if server.requests() == 3 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(server.requests(), 3, "renewed with no client asking");
    let third = token(fixture::call(&socket, ask()).await);
    assert_ne!(third, second);
    assert_eq!(
        server.requests(),
        3,
        "the client was served what was renewed"
    );

    stop.send(()).unwrap();
    tokio::time::timeout(Duration::from_secs(10), agent)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert!(!socket.exists(), "the socket it bound is removed");
}
