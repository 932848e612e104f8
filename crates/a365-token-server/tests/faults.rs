//! Faults: what a misbehaving token server does, and how long it lasts.
// Test helpers outside #[test] fns: a panic is the failure report.
#![allow(clippy::unwrap_used)]

mod http;

use std::time::{Duration, Instant};

use a365_token_server::Fault;
use http::{ID, SECRET, client_credentials, jwt_payload, raw, refresh, start};

#[test]
fn rate_limiting_sends_retry_after() {
    let server = start();
    server.set_fault(
        Fault::RateLimited {
            retry_after_secs: 7,
        },
        Some(1),
    );
    let reply = client_credentials(&server);
    assert_eq!(reply.status, 429);
    assert_eq!(reply.header("retry-after"), Some("7"));
    assert_eq!(reply.error(), "slow_down");
    assert_eq!(client_credentials(&server).status, 200);
}

#[test]
fn faults_expire_after_their_count_or_when_cleared() {
    let server = start();
    let rt = server.issue_refresh_token(ID);
    server.set_fault(Fault::Status(503), Some(2));
    assert_eq!(refresh(&server, &rt).status, 503);
    let reply = refresh(&server, &rt);
    assert_eq!(
        (reply.status, reply.error().as_str()),
        (503, "server_error")
    );
    assert!(
        server.is_refresh_token_valid(&rt),
        "a fault consumes nothing"
    );
    assert_eq!(refresh(&server, &rt).status, 200);
    assert_eq!(server.requests(), 3);

    server.set_fault(Fault::Status(502), None);
    for _ in 0..3 {
        assert_eq!(client_credentials(&server).status, 502);
    }
    server.clear_fault();
    assert_eq!(client_credentials(&server).status, 200);
    let statuses: Vec<u16> = server.recorded().iter().map(|r| r.status).collect();
    assert_eq!(statuses, [503, 503, 200, 502, 502, 502, 200]);
}

#[test]
fn lying_answers() {
    let server = start();
    let rt = server.issue_refresh_token(ID);

    server.set_fault(Fault::MalformedJson, Some(1));
    let reply = refresh(&server, &rt);
    assert_eq!(reply.status, 200);
    assert!(serde_json::from_str::<serde_json::Value>(&reply.body).is_err());

    server.set_fault(Fault::MissingAccessToken, Some(1));
    let reply = refresh(&server, &rt);
    assert_eq!(reply.status, 200);
    assert!(reply.json().get("access_token").is_none());
    assert!(server.is_refresh_token_valid(&rt));

    server.set_fault(Fault::InvalidGrant, Some(1));
    assert_eq!(refresh(&server, &rt).error(), "invalid_grant");
    server.set_fault(Fault::InvalidClient, Some(1));
    let reply = refresh(&server, &rt);
    assert_eq!(
        (reply.status, reply.error().as_str()),
        (401, "invalid_client")
    );
    assert!(server.is_refresh_token_valid(&rt));

    server.set_fault(Fault::MissingExpiresIn, Some(1));
    let reply = refresh(&server, &rt);
    assert_eq!(reply.status, 200);
    let body = reply.json();
    assert!(body.get("expires_in").is_none());
    assert!(jwt_payload(body["access_token"].as_str().unwrap())["exp"].is_i64());
    assert!(!server.is_refresh_token_valid(&rt), "a success consumes");
}

#[test]
fn drop_sends_nothing_and_consumes_nothing() {
    let server = start();
    let rt = server.issue_refresh_token(ID);
    server.set_fault(Fault::Drop, Some(1));
    let body = http::form_encode(&[
        ("grant_type", "refresh_token"),
        ("refresh_token", &rt),
        ("client_id", ID),
        ("client_secret", SECRET),
    ]);
    let form = "application/x-www-form-urlencoded";
    // Either a clean EOF or a reset: never a byte of response.
    if let Ok(bytes) = raw(server.addr(), form, &body, &[], Duration::from_secs(5)) {
        assert!(bytes.is_empty(), "{}", String::from_utf8_lossy(&bytes));
    }
    assert!(server.is_refresh_token_valid(&rt));
    assert_eq!(server.recorded()[0].status, 0);

    server.set_fault(Fault::RotateThenDrop, Some(1));
    let issued_before = server.issued_refresh_tokens().len();
    if let Ok(bytes) = raw(server.addr(), form, &body, &[], Duration::from_secs(5)) {
        assert!(bytes.is_empty(), "{}", String::from_utf8_lossy(&bytes));
    }
    assert!(
        !server.is_refresh_token_valid(&rt),
        "rotated: the old one died"
    );
    let issued = server.issued_refresh_tokens();
    assert_eq!(issued.len(), issued_before + 1);
    assert!(server.is_refresh_token_valid(issued.last().unwrap()));
    assert_eq!(refresh(&server, &rt).error(), "invalid_grant");
    assert_eq!(server.requests(), 3);
}

#[test]
fn delay_answers_late_and_hang_never_answers_but_counts() {
    let server = start();
    server.set_fault(Fault::Delay(Duration::from_millis(300)), Some(1));
    let started = Instant::now();
    assert_eq!(client_credentials(&server).status, 200);
    assert!(started.elapsed() >= Duration::from_millis(300));

    server.set_fault(Fault::Hang, None);
    let addr = server.addr();
    let body = http::form_encode(&[("grant_type", "client_credentials")]);
    let form = "application/x-www-form-urlencoded";
    let timed_out = raw(addr, form, &body, &[], Duration::from_millis(300)).unwrap_err();
    assert!(
        matches!(
            timed_out.kind(),
            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
        ),
        "{timed_out}"
    );
    assert_eq!(server.requests(), 2, "a hung request counts on arrival");

    // Shutting down ends the held request instead of waiting for it.
    let client = std::thread::spawn(move || raw(addr, form, &body, &[], Duration::from_secs(20)));
    std::thread::sleep(Duration::from_millis(200));
    let stopping = Instant::now();
    server.shutdown();
    assert!(stopping.elapsed() < Duration::from_secs(5));
    match client.join().unwrap() {
        Ok(bytes) => assert!(bytes.is_empty()),
        Err(e) => assert_ne!(e.kind(), std::io::ErrorKind::WouldBlock, "{e}"),
    }
    assert!(
        std::net::TcpStream::connect(addr).is_err(),
        "no longer listening"
    );
}
