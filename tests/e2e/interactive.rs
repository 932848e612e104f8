//! `a365 add` on a terminal, as a new user meets it: each answer is
//! checked as it is given (the realm prompt also takes a token URL), and
//! every mistake in the settings shows up before a secret is typed.
//! A pseudo-terminal (Python's `pty`) plays the user.

use a365_token_server::{ServerConfig, TokenServer};

use crate::harness::{Env, Out, bin};

/// Runs ARGV on a pseudo-terminal and answers: each step waits for its
/// text to appear after the previous one, then types its answer (none
/// for `null`); an answer marked hidden waits until the prompt has turned
/// the terminal's echo off, as a person would be too slow not to. Prints
/// everything the terminal showed; exits as ARGV did.
const PLAY: &str = r#"
import json, os, pty, select, sys, termios, time
def echo_off(fd):
    for _ in range(100):
        if not termios.tcgetattr(fd)[3] & termios.ECHO:
            return
        time.sleep(0.02)
plan = json.loads(sys.argv[1])
pid, fd = pty.fork()
if pid == 0:
    os.execv(sys.argv[2], sys.argv[2:])
seen, pos, step, deadline = b"", 0, 0, time.time() + 30
while time.time() < deadline:
    if select.select([fd], [], [], 0.1)[0]:
        try:
            data = os.read(fd, 4096)
        except OSError:
            break
        if not data:
            break
        seen += data
    while step < len(plan):
        at = seen.find(plan[step][0].encode(), pos)
        if at < 0:
            break
        pos = at + len(plan[step][0])
        if plan[step][1] is not None:
            if len(plan[step]) > 2:
                echo_off(fd)
            os.write(fd, plan[step][1].encode() + b"\n")
        step += 1
sys.stdout.write(seen.decode(errors="replace"))
_, status = os.waitpid(pid, 0)
sys.exit(os.waitstatus_to_exitcode(status))
"#;

fn play(env: &Env, args: &[&str], plan: serde_json::Value) -> Out {
    play_with(env, args, plan, &[])
}

/// [`play`], with more variables in `a365`'s environment.
pub(crate) fn play_with(
    env: &Env,
    args: &[&str],
    plan: serde_json::Value,
    vars: &[(&str, &std::path::Path)],
) -> Out {
    let a365 = bin("a365");
    let mut command = env.command("python3");
    for (name, value) in vars {
        command.env(name, value);
    }
    Out::from(
        command
            .args(["-c", PLAY, &plan.to_string()])
            .arg(&a365)
            .args(args)
            .output()
            .unwrap(),
    )
}

#[test]
fn each_answer_is_checked_before_any_secret_is_asked_for() {
    let server = TokenServer::start(ServerConfig::default()).unwrap();
    let rt = server.issue_refresh_token("test-client");
    let env = Env::new();
    let _agent = env.start_agent();
    let url = server.token_url();
    let plan = serde_json::json!([
        ["Realm", "nope"],
        ["unknown realm 'nope'", null],
        ["Realm", "http://auth.example/connect/token"],
        ["plain http", null],
        ["or token URL", url],
        ["Client id", ""],
        ["a client id is needed", null],
        ["Client id", "test-client"],
        ["Client secret", "test-secret", "hidden"],
        ["Refresh token", rt, "hidden"],
    ]);
    let out = play(&env, &["add", "work", "--kind", "refresh"], plan).ok();
    assert!(
        out.stdout.contains("a token was obtained"),
        "{}",
        out.stdout
    );
    assert!(
        !out.stdout.contains("test-secret"),
        "secrets are not echoed"
    );
    assert!(!out.stdout.contains(&rt), "secrets are not echoed");
    let config = std::fs::read_to_string(env.config_file()).unwrap();
    assert!(
        config.contains(&format!("token_url = \"{url}\"")),
        "{config}"
    );

    // The same name again: refused at once, no secret asked for.
    let plan = serde_json::json!([["or token URL", url], ["Client id", "test-client"]]);
    let out = play(&env, &["add", "work", "--kind", "refresh"], plan).code(8);
    assert!(
        out.stdout.contains("exists: add --replace"),
        "{}",
        out.stdout
    );
    assert!(!out.stdout.contains("Client secret"), "{}", out.stdout);

    // An unknown kind is asked again.
    let plan = serde_json::json!([
        ["Kind", "oauth"],
        ["unknown kind 'oauth'", null],
        ["Kind", "static"],
        ["Access token", "a-static-token", "hidden"],
    ]);
    let out = play(&env, &["add", "fixed"], plan).ok();
    assert!(
        out.stdout.contains("profile 'fixed' (static) added"),
        "{}",
        out.stdout
    );
}

/// An empty hidden answer (a paste that did not arrive) is asked again
/// instead of ending `add`, so the next paste does not land in the shell.
#[test]
fn an_empty_hidden_answer_is_asked_again() {
    let env = Env::new();
    let _agent = env.start_agent();
    let plan = serde_json::json!([
        ["Access token", "", "hidden"],
        ["is empty; paste it again", null],
        ["Access token", "tok-after-an-empty-answer", "hidden"],
    ]);
    let out = play(&env, &["add", "fixed", "--kind", "static"], plan).ok();
    assert!(
        out.stdout.contains("profile 'fixed' (static) added"),
        "{}",
        out.stdout
    );
    assert_eq!(env.token("fixed"), "tok-after-an-empty-answer");
}

/// On a terminal `add` says what it waits for; Ctrl-C there, before the
/// token server answered, keeps nothing (the refresh token is refused).
#[test]
fn add_shows_its_wait_and_ctrl_c_keeps_nothing() {
    let server = TokenServer::start(ServerConfig::default()).unwrap();
    server.set_fault(
        a365_token_server::Fault::Delay(std::time::Duration::from_secs(3)),
        Some(1),
    );
    let env = Env::new();
    let _agent = env.start_agent();
    let url = server.token_url();
    let plan = serde_json::json!([
        ["Client secret", "test-secret", "hidden"],
        ["Refresh token", "rt-nobody-issued", "hidden"],
        ["getting a first token from the token server", "\u{3}"],
    ]);
    let args = [
        "add",
        "work",
        "--kind",
        "refresh",
        "--token-url",
        &url,
        "--client-id",
        "test-client",
    ];
    let out = play(&env, &args, plan);
    assert_ne!(out.code, 0, "{}", out.stdout);
    assert!(
        crate::harness::wait_until(std::time::Duration::from_secs(15), || env
            .a365(&["status", "--json"])
            .stdout
            .trim()
            == "[]"),
        "the interrupted add was undone"
    );
}
