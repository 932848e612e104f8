//! Editor plugins speak JSON lines; the documented Python example works.

use a365_token_server::ServerConfig;

use crate::harness::Session;

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

/// The Neovim snippet, in a headless Neovim: the token for a profile, and
/// the agent's message for an unknown one.
#[test]
fn the_neovim_snippet_gets_a_token() {
    if std::process::Command::new("nvim")
        .arg("--version")
        .output()
        .is_err()
    {
        assert!(
            std::env::var_os("A365_REQUIRE_NVIM").is_none(),
            "A365_REQUIRE_NVIM is set but nvim is missing"
        );
        eprintln!("SKIPPED: nvim is not installed (Debian package neovim)");
        return;
    }
    let Session {
        server,
        env,
        agent: _agent,
    } = Session::start(ServerConfig::default());
    let examples = concat!(env!("CARGO_MANIFEST_DIR"), "/docs/examples");
    let lua = format!(
        "package.path = '{examples}/?.lua;' .. package.path\n\
         local a365 = require('a365')\n\
         local token, err = a365.token('work')\n\
         io.stdout:write(tostring(token), '\\n')\n\
         local none, why = a365.token('nope')\n\
         io.stdout:write(tostring(none), ' ', tostring(why), '\\n')\n"
    );
    let script = env.path("home/check.lua");
    std::fs::write(&script, lua).unwrap();
    // `:luafile` and quit: works from Neovim 0.5 on (`-l` needs 0.9).
    let out = env
        .command("nvim")
        .args(["--headless", "-u", "NONE", "-i", "NONE", "-n", "-c"])
        .arg(format!("luafile {}", script.display()))
        .args(["-c", "qa!"])
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let mut lines = stdout.lines();
    assert_eq!(
        lines.next(),
        Some(server.last_access_token().unwrap().as_str()),
        "{stdout} / {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let second = lines.next().unwrap_or_default();
    assert!(
        second.starts_with("nil ") && second.contains("nope"),
        "{second}"
    );
}
