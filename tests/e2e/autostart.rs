//! With no agent running, the first client starts one; ten at once start
//! exactly one.

use std::time::Duration;

use crate::harness::{Env, bin, wait_until};

/// Agents (by pid) whose command line names this test's socket.
fn agents_for(socket: &std::path::Path) -> Vec<u32> {
    let wanted = socket.to_string_lossy().into_owned();
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|c| {
                let text = String::from_utf8_lossy(&c).replace('\0', " ");
                text.contains("a365-agent") && text.contains(&wanted) && !text.contains("--daemon")
            })
        })
        .collect()
}

#[test]
fn ten_clients_at_once_start_exactly_one_agent() {
    let env = Env::new();
    let clients: Vec<_> = (0..10)
        .map(|_| {
            env.command(bin("a365"))
                .env_remove("A365_NO_AUTOSTART")
                .args(["status", "--json"])
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let mut started = 0;
    for client in clients {
        let out = client.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{stderr}");
        assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "[]");
        started += usize::from(stderr.contains("started a365-agent"));
    }
    assert_eq!(
        started, 1,
        "one client started the agent, the others found it"
    );
    let agents = agents_for(&env.socket);
    assert_eq!(agents.len(), 1, "{agents:?}");

    // `ping` only answers whether an agent runs; it never starts one.
    env.a365(&["ping"]).ok();
    let socket = env.socket.to_str().unwrap();
    std::process::Command::new(bin("a365-agent"))
        .args(["--kill", "--socket", socket])
        .status()
        .unwrap();
    assert!(wait_until(Duration::from_secs(5), || agents_for(
        &env.socket
    )
    .is_empty()));
    let out = env
        .command(bin("a365"))
        .env_remove("A365_NO_AUTOSTART")
        .arg("ping")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3));
}
