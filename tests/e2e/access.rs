//! Only the agent's own user gets anything from it, even if someone
//! loosened the permissions of its socket.

use std::os::unix::process::CommandExt;

use a365_token_server::ServerConfig;

use crate::harness::{Session, bin, set_mode};

/// `nobody` on Debian and most distributions.
const OTHER_UID: u32 = 65534;

#[test]
fn another_user_is_refused_and_the_owner_is_still_served() {
    if !rustix::process::geteuid().is_root() {
        eprintln!("skipped: switching to another uid needs root (CI runs as root)");
        return;
    }
    let Session {
        server: _server,
        env,
        agent,
    } = Session::start(ServerConfig::default());
    // Open every door the filesystem has: the directories, the socket.
    set_mode(env.dir.path(), 0o755);
    set_mode(&env.path("run"), 0o755);
    set_mode(env.socket.parent().unwrap(), 0o755);
    set_mode(&env.socket, 0o666);

    let out = env
        .command(bin("a365"))
        .args(["token", "work"])
        .uid(OTHER_UID)
        .gid(OTHER_UID)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(9), "permission denied: {stderr}");
    assert!(out.stdout.is_empty(), "nothing but an error");
    assert!(stderr.contains("only its own user"), "{stderr}");
    assert!(
        agent.log().contains("refused a connection"),
        "{}",
        agent.log()
    );
    // The owner is still served.
    env.a365(&["token", "work"]).ok();
}
