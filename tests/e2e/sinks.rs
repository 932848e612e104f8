//! File sinks: a profile's token kept in a file, rewritten atomically on
//! every refresh (a reader in a loop never sees part of one), 0600, in a
//! directory nobody else can write, emptied when the profile is gone,
//! with the user's command run after each write.

use std::collections::HashSet;
use std::os::unix::fs::PermissionsExt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use a365_token_server::ServerConfig;

use crate::harness::{Session, set_mode, wait_until};

#[test]
fn a_sink_follows_every_refresh_and_is_never_read_half_written() {
    let s = Session::start(ServerConfig::default());
    let dir = s.env.path("out");
    std::fs::create_dir(&dir).unwrap();
    set_mode(&dir, 0o700);
    let file = dir.join("token");
    let ran = dir.join("ran");
    let command = format!(
        "echo \"$A365_SINK $A365_PROFILE ${{A365_TOKEN-none}}\" >> {}",
        ran.display()
    );
    let out = s
        .env
        .a365(&[
            "sink",
            "add",
            "ci",
            "--path",
            file.to_str().unwrap(),
            "--profile",
            "work",
            "--command",
            &command,
        ])
        .ok();
    assert!(
        out.stderr.contains("rewritten whenever it changes"),
        "{}",
        out.stderr
    );
    let first = s.env.token("work");
    assert!(
        wait_until(Duration::from_secs(10), || std::fs::read_to_string(&file)
            .is_ok_and(|t| t == format!("{first}\n"))),
        "the sink never held the token"
    );
    let mode = std::fs::metadata(&file).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);

    // A reader in a loop while the token is refreshed 200 times.
    let stop = Arc::new(AtomicBool::new(false));
    let reader = {
        let (stop, file) = (Arc::clone(&stop), file.clone());
        std::thread::spawn(move || {
            let mut seen = HashSet::new();
            let mut reads = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let text = std::fs::read_to_string(&file).expect("the file is always there");
                seen.insert(text);
                reads += 1;
            }
            (seen, reads)
        })
    };
    for _ in 0..200 {
        s.env.a365(&["refresh", "work"]).ok();
    }
    let last = s.env.token("work");
    assert!(
        wait_until(Duration::from_secs(10), || std::fs::read_to_string(&file)
            .is_ok_and(|t| t == format!("{last}\n"))),
        "the sink does not hold the last token"
    );
    stop.store(true, Ordering::Relaxed);
    let (seen, reads) = reader.join().unwrap();
    let issued: HashSet<String> = s
        .server
        .issued_access_tokens()
        .into_iter()
        .map(|t| format!("{t}\n"))
        .collect();
    for text in &seen {
        assert!(
            issued.contains(text),
            "a read saw something not issued whole: {} bytes",
            text.len()
        );
    }
    assert!(
        seen.len() > 20,
        "{} distinct contents in {reads} reads",
        seen.len()
    );

    // The command ran after writes, and was never given the token.
    let lines = std::fs::read_to_string(&ran).unwrap();
    assert!(lines.lines().count() >= 2, "{lines}");
    assert!(lines.lines().all(|l| l == "ci work none"), "{lines}");

    // Another format, and the list.
    let env_file = dir.join("nexar.env");
    s.env
        .a365(&[
            "sink",
            "add",
            "env",
            "--path",
            env_file.to_str().unwrap(),
            "--profile",
            "work",
            "--format",
            "env",
            "--var",
            "NEXAR_TOKEN",
        ])
        .ok();
    assert!(wait_until(Duration::from_secs(10), || {
        std::fs::read_to_string(&env_file)
            .is_ok_and(|t| t.starts_with(&format!("NEXAR_TOKEN={last}\nNEXAR_TOKEN_EXPIRES_AT=")))
    }));
    let list = s.env.a365(&["sink", "list", "--json"]).ok().json();
    let ci = list
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["name"] == "ci")
        .unwrap();
    assert!(ci["writes"].as_u64().unwrap() >= 2, "{ci}");
    assert!(ci["error"].is_null(), "{ci}");
    let config = std::fs::read_to_string(s.env.config_file()).unwrap();
    assert!(
        config.contains("[[sink]]") && config.contains("format = \"env\""),
        "{config}"
    );

    // The profile goes: the files hold no token, and say so.
    s.env.a365(&["remove", "work"]).ok();
    assert!(
        wait_until(Duration::from_secs(10), || std::fs::metadata(&file)
            .is_ok_and(|m| m.len() == 0)
            && std::fs::metadata(&env_file).is_ok_and(|m| m.len() == 0)),
        "a removed profile's token stayed in a sink"
    );
    let list = s.env.a365(&["sink", "list"]).ok();
    assert!(list.stdout.contains("NO TOKEN"), "{}", list.stdout);

    // A sink moved elsewhere leaves no file behind.
    let moved = dir.join("moved.env");
    let move_to = |profile: &str| {
        let path = moved.to_str().unwrap();
        let args = [
            "sink",
            "add",
            "env",
            "--replace",
            "--path",
            path,
            "--profile",
            profile,
        ];
        s.env.a365(&args)
    };
    move_to("ci-gone").code(4);
    s.env.add_refresh("again", &s.server);
    move_to("again").ok();
    assert!(!env_file.exists(), "the replaced sink's file stayed");
    let again = s.env.token("again");
    assert!(wait_until(Duration::from_secs(10), || {
        std::fs::read_to_string(&moved).is_ok_and(|t| t == format!("{again}\n"))
    }));

    // Removing a sink deletes its file: nothing would keep it fresh.
    let out = s.env.a365(&["sink", "remove", "ci"]).ok();
    assert!(out.stderr.contains("removed"), "{}", out.stderr);
    assert!(!file.exists());
    s.env.a365(&["sink", "remove", "ci"]).code(1);
}

#[test]
fn a_sink_where_others_could_swap_the_file_is_refused() {
    let s = Session::start(ServerConfig::default());
    // `a365 sink add x --path PATH --profile PROFILE EXTRA…`
    let add = |path: &std::path::Path, profile: &str, extra: &[&str]| {
        let path = path.to_str().unwrap();
        let mut args = vec!["sink", "add", "x", "--path", path, "--profile", profile];
        args.extend_from_slice(extra);
        s.env.a365(&args)
    };
    let open = s.env.path("open");
    std::fs::create_dir(&open).unwrap();
    set_mode(&open, 0o777);
    let out = add(&open.join("token"), "work", &[]).code(8);
    assert!(out.stderr.contains("other users"), "{}", out.stderr);
    let mine = s.env.path("mine");
    std::fs::create_dir(&mine).unwrap();
    set_mode(&mine, 0o700);
    let path = mine.join("token");
    // An unknown profile, a bad format or variable, a missing directory.
    add(&path, "nobody", &[]).code(4);
    add(&path, "work", &["--format", "yaml"]).code(2);
    add(&path, "work", &["--format", "env", "--var", "1X"]).code(8);
    add(&mine.join("no/token"), "work", &[]).code(8);
    // Nothing refused was kept.
    let config = std::fs::read_to_string(s.env.config_file()).unwrap();
    assert!(!config.contains("[[sink]]"), "{config}");
    assert!(!path.exists());
}

#[test]
fn a_group_may_read_a_sink_and_a_dead_profile_empties_it() {
    let s = Session::start(ServerConfig {
        lifetime: Duration::from_secs(6),
        ..ServerConfig::default()
    });
    let dir = s.env.path("svc");
    std::fs::create_dir(&dir).unwrap();
    // The service's group may enter the directory, not write it.
    set_mode(&dir, 0o750);
    let file = dir.join("token");
    let group = "daemon";
    s.env
        .a365(&[
            "sink",
            "add",
            "svc",
            "--path",
            file.to_str().unwrap(),
            "--profile",
            "work",
            "--group",
            group,
            "--format",
            "header",
        ])
        .ok();
    let token = s.env.token("work");
    assert!(wait_until(Duration::from_secs(10), || {
        std::fs::read_to_string(&file)
            .is_ok_and(|t| t == format!("Authorization: Bearer {token}\n"))
    }));
    let meta = std::fs::metadata(&file).unwrap();
    assert_eq!(meta.permissions().mode() & 0o777, 0o640);
    let gid = std::fs::read_to_string("/etc/group")
        .unwrap()
        .lines()
        .find_map(|l| {
            l.strip_prefix("daemon:x:")?
                .split(':')
                .next()?
                .parse::<u32>()
                .ok()
        })
        .unwrap();
    assert_eq!(std::os::unix::fs::MetadataExt::gid(&meta), gid);

    // The refresh token is refused: the access token still works until
    // it expires, and is kept that long; then the file holds nothing, and
    // `sink list` says why, without the token.
    s.server
        .set_fault(a365_token_server::Fault::InvalidGrant, None);
    s.env.a365(&["refresh", "work"]).code(5);
    assert!(std::fs::metadata(&file).is_ok_and(|m| m.len() > 0));
    assert!(
        wait_until(Duration::from_secs(15), || std::fs::metadata(&file)
            .is_ok_and(|m| m.len() == 0)),
        "a dead profile's expired token stayed in its sink"
    );
    let list = s.env.a365(&["sink", "list", "--json"]).ok();
    assert!(list.stdout.contains("refresh token"), "{}", list.stdout);
    assert!(!list.stdout.contains(&token));
}
