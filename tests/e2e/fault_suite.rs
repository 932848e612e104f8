//! Every way a token server can misbehave, one test each (they run in
//! parallel): the agent stays up, `a365 refresh` fails with the documented
//! exit code and words a person understands, `status` says the same, the
//! next attempt is bounded, and the still-valid token keeps being served.

use std::time::Duration;

use a365_token_server::{Fault, ServerConfig};

use crate::harness::{Session, jwt_payload, now_secs};

/// What a fault must lead to.
struct Expect {
    /// Exit code of `a365 refresh`.
    code: i32,
    /// Words in its message and in `status`'s last error.
    words: &'static str,
    /// Longest wait before the next attempt, in seconds.
    retry_within: i64,
    /// Exit code of `a365 refresh` once the server behaves again: 0 when
    /// nothing was lost; 5 where the answer to a sent refresh token never
    /// fully arrived (the server may have rotated it: a365 does not send
    /// it again), or the credential was refused.
    then: i32,
}

/// Token requests time out after this long here (20 s by default), and a
/// sent refresh token's answer is waited for as long (5 minutes by
/// default), so a server that hangs or trickles costs the suite seconds.
const HTTP_TIMEOUT_SECS: &str = "3";

fn check(fault: Fault, expect: Expect) {
    let Session { server, env, agent } = Session::start_with(
        ServerConfig::default(),
        &[
            "--http-timeout",
            HTTP_TIMEOUT_SECS,
            "--answer-wait",
            HTTP_TIMEOUT_SECS,
        ],
    );
    let token = env.token("work");
    server.set_fault(fault, None);
    let out = env.a365(&["refresh", "work"]).code(expect.code);
    assert!(out.stderr.contains(expect.words), "{}", out.stderr);
    // The token held from before is still served within --min-valid.
    assert_eq!(env.token("work"), token);
    let status = env.a365(&["status", "--json"]).ok().json();
    let profile = &status[0];
    let last_error = profile["last_error"].as_str().unwrap_or_default();
    assert!(last_error.contains(expect.words), "{last_error}");
    if expect.code == 6 {
        assert_eq!(profile["state"], "failing");
        let next = profile["next_refresh_at"].as_i64().unwrap();
        let wait = next - now_secs() as i64;
        assert!(
            (0..=expect.retry_within).contains(&wait),
            "next attempt in {wait} s"
        );
    } else {
        assert_eq!(profile["state"], "needs-reauth");
    }
    // Never a token or a secret in what the user sees.
    for secret in server
        .issued_access_tokens()
        .into_iter()
        .chain(server.issued_refresh_tokens())
        .chain(["test-secret".to_owned()])
    {
        assert!(!out.stderr.contains(&secret) && !last_error.contains(&secret));
    }
    // The server mends: whether the credential survived the fault.
    server.clear_fault();
    let before = server.recorded().len();
    let out = env.a365(&["refresh", "work"]);
    assert_eq!(out.code, expect.then, "after the fault: {}", out.stderr);
    let after: Vec<_> = server.recorded().into_iter().skip(before).collect();
    if expect.code != 6 {
        // A credential refused as dead is never sent again.
        assert!(after.is_empty(), "sent again: {after:?}");
    } else if expect.then == 5 {
        // Sent, and refused: the server had rotated it during the fault.
        assert!(
            after.iter().any(|r| r.status == 400),
            "the server refused the old refresh token: {after:?}"
        );
    } else {
        assert!(
            after.iter().any(|r| r.status == 200),
            "a new token came: {after:?}"
        );
    }
    env.a365(&["ping"]).ok();
    assert!(!agent.log().contains("panicked"), "{}", agent.log());
}

#[test]
fn http_500() {
    check(
        Fault::Status(500),
        Expect {
            code: 6,
            words: "HTTP 500",
            retry_within: 2,
            then: 0,
        },
    );
}

#[test]
fn http_502() {
    // A gateway's 502: the server behind it may have spent the refresh
    // token, so it is not sent again blindly.
    check(
        Fault::Status(502),
        Expect {
            code: 5,
            words: "HTTP 502",
            retry_within: 0,
            then: 5,
        },
    );
}

#[test]
fn http_503() {
    check(
        Fault::Status(503),
        Expect {
            code: 6,
            words: "HTTP 503",
            retry_within: 2,
            then: 0,
        },
    );
}

#[test]
fn rate_limited_with_retry_after_seconds() {
    let fault = Fault::RateLimited {
        retry_after_secs: 120,
    };
    check(
        fault,
        Expect {
            code: 6,
            words: "rate limiting (HTTP 429)",
            retry_within: 121,
            then: 0,
        },
    );
}

#[test]
fn rate_limited_with_retry_after_as_a_date() {
    let fault = Fault::RateLimitedUntil { secs: 90 };
    check(
        fault,
        Expect {
            code: 6,
            words: "rate limiting (HTTP 429)",
            retry_within: 91,
            then: 0,
        },
    );
}

#[test]
fn malformed_json() {
    let words = "not a token response";
    check(
        Fault::MalformedJson,
        // A 200 that is not JSON may have spent the refresh token.
        Expect {
            code: 5,
            words,
            retry_within: 0,
            then: 5,
        },
    );
}

#[test]
fn no_access_token() {
    let words = "without an access_token";
    check(
        Fault::MissingAccessToken,
        Expect {
            code: 6,
            words,
            retry_within: 2,
            then: 0,
        },
    );
}

#[test]
fn expires_in_zero_or_negative() {
    for secs in [0, -60] {
        let words = "expires_in of zero or less";
        check(
            Fault::ExpiresIn(secs),
            Expect {
                code: 6,
                words,
                retry_within: 2,
                then: 0,
            },
        );
    }
}

#[test]
fn connection_reset_mid_body() {
    check(
        Fault::CutMidBody,
        Expect {
            code: 5,
            words: "was cut off",
            retry_within: 0,
            then: 5,
        },
    );
}

#[test]
fn connection_dropped_before_any_answer() {
    let words = "closed the connection without answering";
    check(
        Fault::Drop,
        Expect {
            code: 5,
            words,
            retry_within: 0,
            then: 5,
        },
    );
}

#[test]
fn a_server_that_never_answers() {
    let words = "did not answer in time";
    check(
        Fault::Hang,
        Expect {
            code: 5,
            words,
            retry_within: 0,
            then: 5,
        },
    );
}

#[test]
fn a_server_that_answers_one_byte_at_a_time() {
    // 21 s of body for a ~300-byte answer: past the request timeout.
    let fault = Fault::Trickle(Duration::from_millis(70));
    check(
        fault,
        Expect {
            code: 5,
            words: "timed out",
            retry_within: 0,
            then: 5,
        },
    );
}

#[test]
fn invalid_scope_is_refused_and_retried_slowly() {
    let words = "invalid_scope";
    check(
        Fault::InvalidScope,
        Expect {
            code: 6,
            words,
            retry_within: 60,
            then: 0,
        },
    );
}

#[test]
fn invalid_grant_and_invalid_client_need_reauthentication() {
    check(
        Fault::InvalidGrant,
        Expect {
            code: 5,
            words: "invalid_grant",
            retry_within: 0,
            then: 5,
        },
    );
    check(
        Fault::InvalidClient,
        Expect {
            code: 5,
            words: "invalid_client",
            retry_within: 0,
            then: 5,
        },
    );
}

/// Not faults but facts of life: no `expires_in` (the JWT's `exp` says
/// it), an opaque token (`expires_in` says it), an opaque token without
/// `expires_in` (nothing says it: `default_lifetime_secs` is assumed, and
/// `status` and `doctor` say so, also after a restart).
#[test]
fn odd_but_valid_answers_are_served() {
    let Session {
        server,
        env,
        agent: _agent,
    } = Session::start(ServerConfig::default());
    server.set_fault(Fault::MissingExpiresIn, Some(1));
    env.a365(&["refresh", "work"]).ok();
    let token = env.token("work");
    let status = env.a365(&["status", "--json"]).ok().json();
    assert_eq!(status[0]["expires_at"], jwt_payload(&token)["exp"]);

    server.set_fault(Fault::OpaqueToken, Some(1));
    env.a365(&["refresh", "work"]).ok();
    let opaque = env.token("work");
    assert!(opaque.starts_with("opaque-"));
    let status = env.a365(&["status", "--json"]).ok().json();
    let expires = status[0]["expires_at"].as_i64().unwrap() - now_secs() as i64;
    assert!((3590..=3600).contains(&expires), "{expires}");
    assert_eq!(status[0]["state"], "fresh");
    assert_eq!(status[0]["assumed_lifetime_secs"], serde_json::Value::Null);

    server.set_fault(Fault::OpaqueNoExpiry, Some(1));
    env.a365(&["refresh", "work"]).ok();
    let status = env.a365(&["status", "--json"]).ok().json();
    assert_eq!(status[0]["assumed_lifetime_secs"], 3600, "{status}");
    drop(_agent);
    let _agent = env.start_agent();
    let table = env.a365(&["status"]).ok().stdout;
    assert!(
        table.contains("work: the token stated no lifetime: assumed to live 1h 0m"),
        "{table}"
    );
    let doctor = env.a365(&["doctor", "work"]).ok().stdout;
    assert!(
        doctor.contains("warn  work: token lifetime: the token stated none"),
        "{doctor}"
    );
}

/// An `https` endpoint that answers the TLS handshake with garbage.
#[test]
fn a_tls_handshake_that_fails() {
    use std::io::Write;
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for mut stream in listener.incoming().flatten() {
            let _ = stream.write_all(b"HTTP/1.1 400 Bad Request\r\n\r\nnot TLS at all");
        }
    });
    let env = crate::harness::Env::new();
    let _agent = env.start_agent();
    let url = format!("https://127.0.0.1:{port}/connect/token");
    let out = env.a365_with_stdin(
        &[
            "add",
            "work",
            "--kind",
            "refresh",
            "--token-url",
            &url,
            "--client-id",
            "c",
            "--secrets-from",
            "-",
        ],
        br#"{"client_secret":"s","refresh_token":"r"}"#,
    );
    assert!(
        out.stderr
            .contains("TLS handshake with the token server 127.0.0.1 failed"),
        "{}",
        out.stderr
    );
    // Kept (a new name, the server never answered): it tries again.
    assert!(crate::harness::wait_until(
        std::time::Duration::from_secs(10),
        || env.a365(&["status", "--json"]).ok().json()[0]["state"] == "failing"
    ));
    env.a365(&["ping"]).ok();
}
