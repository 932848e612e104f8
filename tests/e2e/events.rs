//! Events: `a365 watch`, the `on_event` command, `expires-soon` for tokens
//! that cannot be renewed. None of them ever carries a secret.

use std::io::BufRead;
use std::process::Stdio;
use std::time::Duration;

use a365_token_server::{Fault, ServerConfig, TokenServer};

use crate::harness::{Env, bin, now_secs, wait_until};

fn hook_config(env: &Env) -> std::path::PathBuf {
    let log = env.path("home/events.log");
    let dir = env.config_file();
    std::fs::create_dir_all(dir.parent().unwrap()).unwrap();
    std::fs::write(
        &dir,
        format!(
            "on_event = 'printf \"%s %s %s\\n\" \"$A365_EVENT\" \"$A365_PROFILE\" \"$A365_EXPIRES_AT\" >> {0}; env >> {0}.env'\n",
            log.display()
        ),
    )
    .unwrap();
    log
}

#[test]
fn watch_and_on_event_are_told_what_happens_and_never_the_token() {
    let server = TokenServer::start(ServerConfig::default()).unwrap();
    let env = Env::new();
    let log = hook_config(&env);
    let _agent = env.start_agent();
    let mut watch = env
        .command(bin("a365"))
        .args(["watch", "--json"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Subscribed once it says so: only then can no event be missed.
    let mut said = String::new();
    std::io::BufReader::new(watch.stderr.take().unwrap())
        .read_line(&mut said)
        .unwrap();
    assert!(said.contains("watching all profiles"), "{said}");
    let rt = env.add_refresh("work", &server);
    let mut lines = std::io::BufReader::new(watch.stdout.take().unwrap()).lines();
    let first: serde_json::Value = serde_json::from_str(&lines.next().unwrap().unwrap()).unwrap();
    assert_eq!(first["profile"], "work");
    assert_eq!(first["kind"], "refreshed");
    assert!(first["expires_at"].as_i64().unwrap() > now_secs() as i64);

    server.set_fault(Fault::InvalidGrant, Some(1));
    env.a365(&["refresh", "work"]).code(5);
    let dead: serde_json::Value = serde_json::from_str(&lines.next().unwrap().unwrap()).unwrap();
    assert_eq!(dead["kind"], "needs-reauth");
    assert!(
        dead["message"]
            .as_str()
            .unwrap()
            .contains("Get a new refresh token from 127.0.0.1")
    );
    env.a365(&["remove", "work"]).ok();
    let removed: serde_json::Value = serde_json::from_str(&lines.next().unwrap().unwrap()).unwrap();
    assert_eq!(removed["kind"], "removed");
    let _ = watch.kill();
    let _ = watch.wait();

    assert!(wait_until(Duration::from_secs(5), || {
        std::fs::read_to_string(&log).is_ok_and(|t| t.contains("removed work"))
            && std::fs::read_to_string(format!("{}.env", log.display()))
                .is_ok_and(|t| t.contains("A365_EVENT=removed"))
    }));
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(text.starts_with("refreshed work 1"), "{text}");
    assert!(text.contains("needs-reauth work \n"), "{text}");
    let environment = std::fs::read_to_string(format!("{}.env", log.display())).unwrap();
    assert!(environment.contains("A365_EVENT=refreshed"));
    for secret in server
        .issued_access_tokens()
        .into_iter()
        .chain(server.issued_refresh_tokens())
        .chain([rt, "test-secret".to_owned()])
    {
        assert!(!text.contains(&secret) && !environment.contains(&secret));
    }
}

#[test]
fn a_static_token_close_to_expiry_is_announced() {
    let env = Env::new();
    let log = hook_config(&env);
    let _agent = env.start_agent();
    let exp = now_secs() as i64 + 3 * 86_400;
    let payload = base64_url(&format!(r#"{{"exp":{exp},"scope":["openid"]}}"#));
    let token = format!("eyJhbGciOiJSUzI1NiJ9.{payload}.c2ln");
    env.a365_with_stdin(
        &["add", "ci", "--kind", "static", "--secrets-from", "-"],
        format!(r#"{{"access_token":"{token}"}}"#).as_bytes(),
    )
    .ok();
    assert!(wait_until(Duration::from_secs(5), || {
        std::fs::read_to_string(&log).is_ok_and(|t| t.contains(&format!("expires-soon ci {exp}")))
    }));
    // The command writes its environment after the line above.
    let env_file = format!("{}.env", log.display());
    assert!(wait_until(Duration::from_secs(5), || {
        std::fs::read_to_string(&env_file).is_ok_and(|t| t.contains("A365_MESSAGE="))
    }));
    let environment = std::fs::read_to_string(&env_file).unwrap();
    assert!(
        environment.contains("A365_MESSAGE=the token of profile 'ci' expires in 2d 23h"),
        "{environment}"
    );
    assert!(!environment.contains(&token));
}

pub fn base64_url(text: &str) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let bytes = text.as_bytes();
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, b)| n | (u32::from(*b) << (16 - 8 * i)));
        for i in 0..=chunk.len() {
            out.push(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize] as char);
        }
    }
    out
}
