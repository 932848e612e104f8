//! Editor plugins speak JSON lines; the documented Python example works.

use a365_token_server::ServerConfig;

use crate::harness::{Env, Session, skip};

#[test]
fn the_python_example_client_gets_a_token() {
    let Session {
        server,
        env,
        agent: _agent,
    } = Session::start(ServerConfig::default());
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/docs/examples/a365_token.py");
    let out = env
        .command("python3")
        .arg(script)
        .arg("work")
        .output()
        .expect("python3");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8(out.stdout).unwrap(),
        format!("{}\n", server.last_access_token().unwrap())
    );

    let out = env
        .command("python3")
        .arg(script)
        .arg("nope")
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(4),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Node's standard library: the token, and `watch` telling a plugin that
/// the token changed (so it need not poll).
#[test]
fn the_node_example_client_gets_a_token_and_watches_for_refreshes() {
    use std::io::BufRead;
    let Session {
        server,
        env,
        agent: _agent,
    } = Session::start(ServerConfig::default());
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/docs/examples/a365_token.js");
    let out = env
        .command("node")
        .arg(script)
        .arg("work")
        .output()
        .expect("node");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8(out.stdout).unwrap(),
        format!("{}\n", server.last_access_token().unwrap())
    );
    let out = env
        .command("node")
        .arg(script)
        .arg("nope")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(4));

    let mut watcher = env
        .command("node")
        .args([script, "work", "--watch"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Subscribed once it printed "watching".
    let mut stderr = std::io::BufReader::new(watcher.stderr.take().unwrap());
    let mut line = String::new();
    stderr.read_line(&mut line).unwrap();
    assert!(line.contains("watching profile 'work'"), "{line}");
    env.a365(&["refresh", "work"]).ok();
    let mut stdout = std::io::BufReader::new(watcher.stdout.take().unwrap());
    line.clear();
    stdout.read_line(&mut line).unwrap();
    assert_eq!(line.trim(), "work refreshed");
    let _ = watcher.kill();
    let _ = watcher.wait();
}

/// Runs the Neovim snippet headless in `env` (with `vars`): its answers
/// for profile `work` and for an unknown profile, one line each; `None`
/// (after saying so) where nvim is missing, unless every test must run.
pub fn run_lua(env: &Env, vars: &[(&str, &std::path::Path)]) -> Option<Vec<String>> {
    if std::process::Command::new("nvim")
        .arg("--version")
        .output()
        .is_err()
    {
        skip("nvim is not installed (Debian package neovim)");
        return None;
    }
    let examples = concat!(env!("CARGO_MANIFEST_DIR"), "/docs/examples");
    let lua = format!(
        "package.path = '{examples}/?.lua;' .. package.path\n\
         local a365 = require('a365')\n\
         local token, err = a365.token('work')\n\
         io.stdout:write(tostring(token), ' ', tostring(err), '\\n')\n\
         local none, why = a365.token('nope')\n\
         io.stdout:write(tostring(none), ' ', tostring(why), '\\n')\n"
    );
    let script = env.path("home/check.lua");
    std::fs::write(&script, lua).unwrap();
    // `:luafile` and quit: works from Neovim 0.5 on (`-l` needs 0.9).
    let mut cmd = env.command("nvim");
    cmd.args(["--headless", "-u", "NONE", "-i", "NONE", "-n", "-c"])
        .arg(format!("luafile {}", script.display()))
        .args(["-c", "qa!"])
        .stdin(std::process::Stdio::null());
    for (name, value) in vars {
        cmd.env(name, value);
    }
    let out = cmd.output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<String> = stdout.lines().map(str::to_owned).collect();
    assert!(
        lines.len() >= 2,
        "{stdout} / {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Some(lines)
}

/// The Neovim snippet, in a headless Neovim: the token for a profile, and
/// the agent's message for an unknown one.
#[test]
fn the_neovim_snippet_gets_a_token() {
    let Session {
        server,
        env,
        agent: _agent,
    } = Session::start(ServerConfig::default());
    let Some(lines) = run_lua(&env, &[]) else {
        return;
    };
    assert_eq!(
        lines[0],
        format!("{} nil", server.last_access_token().unwrap())
    );
    assert!(
        lines[1].starts_with("nil ") && lines[1].contains("nope"),
        "{}",
        lines[1]
    );
}
