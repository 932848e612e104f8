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
