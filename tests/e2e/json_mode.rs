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
