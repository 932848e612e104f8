//! A package upgrade replaces the agent's binary on disk while it runs.
//! The next `a365` command notices (Linux shows the old binary as
//! "(deleted)") and asks the agent to stop once nothing would be lost: a
//! refresh in flight finishes and is saved. The command after that starts
//! the new binary, which serves the saved token without a new exchange.
//! With no command at all, the agent notices by itself (what it does on
//! macOS and Windows too; tests/windows/run shows it under Wine).

#![cfg(target_os = "linux")]

use std::time::Duration;

use a365_token_server::{Fault, ServerConfig, TokenServer};

use crate::harness::{Agent, Env, OtherUser, Out, bin, require_root, wait_until};

/// The agent, started from a copy of its binary that an upgrade can
/// replace; that copy's path.
fn start_installed(env: &Env) -> (Agent, std::path::PathBuf) {
    start_installed_with(env, &[])
}

fn start_installed_with(env: &Env, args: &[&str]) -> (Agent, std::path::PathBuf) {
    let installed = env.path("bin/a365-agent");
    std::fs::create_dir_all(env.path("bin")).unwrap();
    std::fs::copy(bin("a365-agent"), &installed).unwrap();
    let mut command = env.command(&installed);
    command.args(args);
    let agent = env.spawn_agent_command(command);
    agent.wait_ready(&env.socket);
    (agent, installed)
}

/// `a365 token work` with autostart on: the token, from whichever agent
/// answers or is started.
fn autostarted_token(env: &Env) -> String {
    let out = Out::from(
        env.command(bin("a365"))
            .args(["token", "work"])
            .env_remove("A365_NO_AUTOSTART")
            .output()
            .unwrap(),
    )
    .ok();
    out.stdout.trim_end().to_owned()
}

/// Stops the autostarted agent, which no `Agent` handle owns.
fn kill_agent(env: &Env) {
    Out::from(
        env.command(bin("a365-agent"))
            .arg("--kill")
            .output()
            .unwrap(),
    )
    .ok();
}

/// What dpkg does: the new file is renamed over the old name.
fn upgrade(env: &Env, installed: &std::path::Path) {
    let staged = env.path("bin/a365-agent.new");
    std::fs::copy(bin("a365-agent"), &staged).unwrap();
    std::fs::rename(&staged, installed).unwrap();
}

#[test]
fn an_upgraded_agent_stops_for_its_new_binary_and_loses_nothing() {
    let server = TokenServer::start(ServerConfig::default()).unwrap();
    let env = Env::new();
    let (agent, installed) = start_installed(&env);
    env.add_refresh("work", &server);
    env.token("work");

    // A refresh is in flight (the server takes 1.5 s) when the upgrade lands.
    server.set_fault(Fault::Delay(Duration::from_millis(1500)), Some(1));
    let before = server.requests();
    let refreshed = std::thread::scope(|scope| {
        let refresh = scope.spawn(|| env.a365(&["refresh", "work"]));
        assert!(wait_until(Duration::from_secs(5), || server.requests() > before));
        upgrade(&env, &installed);
        let out = env.a365(&["status"]).ok();
        assert!(
            out.stderr.contains("a365-agent was upgraded"),
            "{}",
            out.stderr
        );
        refresh.join().unwrap()
    });
    refreshed.ok();
    let (status, log) = agent.wait(Duration::from_secs(30));
    assert!(status.success(), "{log}");
    let saved = env.stored_refresh_token("work").unwrap();
    assert!(
        server.is_refresh_token_valid(&saved),
        "the rotation was saved"
    );
    let held = server.last_access_token().unwrap();
    let requests = server.requests();

    // The next command starts the new binary (autostart), which serves the
    // token the refresh brought, from the store.
    assert_eq!(autostarted_token(&env), held);
    assert_eq!(server.requests(), requests, "no new exchange");
    kill_agent(&env);
}

/// The agent is not dumpable, so a normal user's `a365` cannot read its
/// `/proc/PID/exe`: it sees the binary changed after the agent started,
/// and the agent checks itself. (The tests above run as root, who can.)
#[test]
fn a_normal_users_next_command_notices_the_upgrade_at_once() {
    if !require_root("run the agent as a normal user") {
        return;
    }
    let user = OtherUser::create();
    let server = TokenServer::start(ServerConfig::default()).unwrap();
    let mut env = Env::new();
    let installed = env.path("bin/a365-agent");
    std::fs::create_dir_all(env.path("bin")).unwrap();
    std::fs::copy(bin("a365-agent"), &installed).unwrap();
    env.hand_to(&user);
    // Its own look at the binary (every 30 s by default) is off: only the
    // client can notice within this test.
    let mut command = env.command(&installed);
    command.args(["--upgrade-check", "0"]);
    let agent = env.spawn_agent_command(command);
    // Asked as its user: the test's own client would refuse an agent of
    // another user.
    let up = crate::harness::wait_until(Duration::from_secs(10), || env.a365(&["ping"]).code == 0);
    assert!(up, "{}", agent.log());
    env.add_refresh("work", &server);
    env.token("work");
    // A command that finds nothing changed says nothing and sends nothing.
    let out = env.a365(&["status"]).ok();
    assert!(!out.stderr.contains("upgraded"), "{}", out.stderr);
    upgrade(&env, &installed);
    let out = env.a365(&["status"]).ok();
    assert!(
        out.stderr.contains("a365-agent was upgraded"),
        "{}\n{}",
        out.stderr,
        agent.log()
    );
    let (status, log) = agent.wait(Duration::from_secs(30));
    assert!(status.success(), "{log}");
}

/// A profile whose secrets live only in memory would be lost: the agent
/// refuses, says why, and keeps serving.
#[test]
fn an_agent_with_secrets_in_memory_does_not_stop_for_an_upgrade() {
    let server = TokenServer::start(ServerConfig::default()).unwrap();
    let env = Env::new();
    let (agent, installed) = start_installed_with(&env, &["--upgrade-check", "1"]);
    env.try_add_refresh("mem", &server, &["--store", "memory"])
        .1
        .ok();
    upgrade(&env, &installed);
    let out = env.a365(&["status"]).ok();
    assert!(
        out.stderr.contains("keeps its secrets in memory"),
        "{}",
        out.stderr
    );
    // The agent's own look is refused too, said once, and it keeps serving.
    std::thread::sleep(Duration::from_millis(3500));
    env.token("mem");
    let (_, log) = agent.terminate();
    assert_eq!(
        log.matches("keeps its secrets in memory").count(),
        1,
        "{log}"
    );
}

/// No command runs after the upgrade: the agent sees its binary replaced
/// by itself, within its check interval, and stops losing nothing.
#[test]
fn the_agent_notices_its_upgrade_without_any_command() {
    let server = TokenServer::start(ServerConfig::default()).unwrap();
    let env = Env::new();
    let (agent, installed) = start_installed_with(&env, &["--upgrade-check", "1"]);
    env.add_refresh("work", &server);
    let token = env.token("work");
    let requests = server.requests();
    upgrade(&env, &installed);
    let (status, log) = agent.wait(Duration::from_secs(15));
    assert!(status.success(), "{log}");
    assert!(log.contains("binary was replaced on disk"), "{log}");
    assert_eq!(autostarted_token(&env), token);
    assert_eq!(server.requests(), requests, "no new exchange");
    kill_agent(&env);
}
