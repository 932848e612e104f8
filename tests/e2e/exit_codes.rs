//! Every exit code of `a365`, pinned in one place: each is produced by the
//! real binaries, and `a365 --help` and the README list exactly these.

use std::collections::BTreeMap;

use a365_token_server::{Fault, ServerConfig, TokenServer};

use crate::harness::{Env, Out, bin};

#[test]
fn every_exit_code_is_produced_and_documented() {
    let env = Env::new();
    let mut seen = BTreeMap::<i32, &str>::new();
    let mut expect = |code: i32, what: &'static str, out: Out| {
        assert_eq!(out.code, code, "{what}: {out:?}");
        seen.insert(code, what);
    };
    expect(3, "no agent", env.a365(&["status"]));
    expect(2, "a bad flag", env.a365(&["status", "--no-such-flag"]));
    let token_socket = env.path("run").join("a365").join("token.sock");
    let agent = env.spawn_agent(&["--token-socket", token_socket.to_str().unwrap()]);
    agent.wait_ready(&env.socket);
    let server = TokenServer::start(ServerConfig::default()).unwrap();
    env.add_refresh("work", &server);
    expect(0, "a token", env.a365(&["token", "work"]));
    expect(4, "an unknown profile", env.a365(&["token", "nope"]));
    expect(
        6,
        "--min-valid past the lifetime",
        env.a365(&["token", "work", "--min-valid", "2h"]),
    );
    expect(
        7,
        "a scope not granted",
        env.a365(&["token", "work", "--scope", "not-granted"]),
    );
    expect(
        8,
        "an invalid setting",
        env.a365_with_stdin(
            &[
                "add",
                "bad",
                "--kind",
                "refresh",
                "--token-url",
                "ftp://auth.example/token",
                "--client-id",
                "c",
                "--secrets-from",
                "-",
            ],
            br#"{"client_secret":"s","refresh_token":"r"}"#,
        ),
    );
    let on_token_socket = env
        .command(bin("a365"))
        .env("A365_AGENT_SOCK", &token_socket)
        .args(["remove", "work"])
        .output()
        .unwrap();
    expect(
        9,
        "a change asked on the token socket",
        Out::from(on_token_socket),
    );
    server.set_fault(Fault::InvalidGrant, None);
    expect(5, "a dead credential", env.a365(&["refresh", "work"]));
    expect(1, "doctor's checks failed", env.a365(&["doctor"]));

    let codes: Vec<i32> = seen.keys().copied().collect();
    assert_eq!(codes, (0..=9).collect::<Vec<_>>(), "{seen:?}");
    // `a365 --help` and the README list the same codes.
    let help = env.a365(&["--help"]).ok().stdout;
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    for code in codes {
        assert!(
            help.lines()
                .any(|l| l.trim_start().starts_with(&format!("{code}  "))),
            "--help lacks exit code {code}:\n{help}"
        );
        assert!(
            readme.contains(&format!("| {code} | ")),
            "the README lacks exit code {code}"
        );
    }
}
