//! `a365 exec` with the variables tools read: `--nexar` (NEXAR_TOKEN),
//! `--env NAME=PROFILE` for several profiles at once, and
//! `--refresh-signal`, which tells a long-running command that its token
//! was refreshed; `a365 token --format env --nexar` the same names.

use std::time::Duration;

use a365_token_server::ServerConfig;

use crate::harness::{Session, wait_until};

#[test]
fn exec_nexar_sets_nexar_token_and_only_that() {
    let s = Session::start(ServerConfig::default());
    let token = s.env.token("work");
    let script = "printf '%s|%s' \"$NEXAR_TOKEN\" \"${A365_TOKEN-unset}\"";
    let out = s
        .env
        .a365(&["exec", "work", "--nexar", "--", "sh", "-c", script])
        .ok();
    assert_eq!(out.stdout, format!("{token}|unset"));
    let out = s
        .env
        .a365(&["token", "work", "--format", "env", "--nexar"])
        .ok();
    assert!(
        out.stdout
            .starts_with(&format!("export NEXAR_TOKEN='{token}'")),
        "{}",
        out.stdout
    );
    let out = s
        .env
        .a365(&[
            "token",
            "work",
            "--format",
            "powershell",
            "--var",
            "MY_TOKEN",
        ])
        .ok();
    assert!(
        out.stdout.starts_with("$env:MY_TOKEN = '"),
        "{}",
        out.stdout
    );
    s.env
        .a365(&["token", "work", "--format", "env", "--var", "X;rm -rf /"])
        .code(2);
    // --altium: the name Altium 365 API scripts read.
    let script = "printf '%s' \"$ALTIUM365_TOKEN\"";
    let out = s
        .env
        .a365(&["exec", "work", "--altium", "--", "sh", "-c", script])
        .ok();
    assert_eq!(out.stdout, token);
    let out = s
        .env
        .a365(&["token", "work", "--format", "env", "--altium"])
        .ok();
    assert!(
        out.stdout
            .starts_with(&format!("export ALTIUM365_TOKEN='{token}'")),
        "{}",
        out.stdout
    );
}

#[test]
fn exec_gives_several_profiles_at_once_under_their_names() {
    let s = Session::start(ServerConfig::default());
    s.env.add_refresh("ci", &s.server);
    let (work, ci) = (s.env.token("work"), s.env.token("ci"));
    assert_ne!(work, ci);
    let out = s
        .env
        .a365(&[
            "exec",
            "--env",
            "FIRST=work",
            "--env",
            "SECOND=ci",
            "--",
            "sh",
            "-c",
            "printf '%s|%s' \"$FIRST\" \"$SECOND\"",
        ])
        .ok();
    assert_eq!(out.stdout, format!("{work}|{ci}"));
    for bad in ["1X=work", "NOEQUALS", "X=no/such"] {
        let out = s.env.a365(&["exec", "--env", bad, "--", "true"]).code(2);
        assert!(out.stderr.contains("--env"), "{bad}: {}", out.stderr);
    }
    let out = s
        .env
        .a365(&["exec", "--env", "X=nobody", "--", "true"])
        .code(4);
    assert!(out.stderr.contains("nobody"), "{}", out.stderr);
}

/// The command gets the signal (USR1 here: a test run under `nohup`
/// inherits SIGHUP ignored, and a shell cannot trap a signal ignored on
/// entry) after its profile is refreshed, and `exec` ends with the
/// command's status.
#[test]
fn exec_sends_the_refresh_signal_after_a_refresh() {
    let s = Session::start(ServerConfig::default());
    let marker = s.env.path("got-signal");
    let ready = s.env.path("trap-set");
    let script = format!(
        "trap 'echo usr1 >> {m}' USR1; : > {r}; i=0; while [ $i -lt 300 ]; do \
         if [ -s {m} ]; then exit 5; fi; sleep 0.1; i=$((i+1)); done; exit 9",
        m = marker.display(),
        r = ready.display()
    );
    let mut child = s
        .env
        .command(crate::harness::bin("a365"))
        .args([
            "exec",
            "work",
            "--refresh-signal",
            "USR1",
            "--",
            "sh",
            "-c",
            &script,
        ])
        .spawn()
        .unwrap();
    // `exec` watches before it starts the command; the command has set
    // its trap before the refresh is made.
    assert!(
        wait_until(Duration::from_secs(20), || ready.exists()),
        "the command did not start"
    );
    s.env.a365(&["refresh", "work"]).ok();
    assert!(
        wait_until(Duration::from_secs(20), || marker.exists()),
        "no SIGUSR1 reached the command"
    );
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(5), "exec ends as the command ended");
    s.env
        .a365(&["exec", "work", "--refresh-signal", "KILL", "--", "true"])
        .code(2);
}
