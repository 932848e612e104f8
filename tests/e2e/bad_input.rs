//! Clients that send garbage, lie about sizes, vanish or never speak.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;

use a365_token_server::ServerConfig;

use crate::harness::{Env, Session};

/// Sends `bytes`, returns everything the agent answers until it closes.
fn exchange(env: &Env, bytes: &[u8]) -> Vec<u8> {
    let mut stream = env.connect_raw();
    stream.write_all(bytes).unwrap();
    stream.shutdown(std::net::Shutdown::Write).unwrap();
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer);
    answer
}

fn decode(answer: &[u8]) -> a365_proto::Response {
    assert!(answer.len() > 4, "no answer: {answer:?}");
    a365_proto::codec::decode_response(&answer[4..], a365_proto::Encoding::Binary).unwrap()
}

#[track_caller]
fn assert_bad_request(answer: &[u8], needle: &str) {
    match decode(answer) {
        a365_proto::Response::Error(e) => {
            assert_eq!(e.kind, a365_proto::ErrorKind::BadRequest);
            assert!(e.message.contains(needle), "{}", e.message);
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn garbage_and_lies_get_a_clear_error_and_the_agent_keeps_serving() {
    let Session {
        server: _server,
        env,
        agent,
    } = Session::start(ServerConfig::default());

    assert_bad_request(
        &exchange(&env, b"GET / HTTP/1.1\r\n\r\n"),
        "not an a365 client",
    );
    // A header announcing 4 GB is not even a frame: its first byte (0xff) is
    // neither encoding's, so it is refused before its length is read.
    assert_bad_request(
        &exchange(&env, &[0xff, 0xff, 0xff, 0xff, 1, 2, 3]),
        "not an a365 client",
    );
    // 16 MiB: a binary header, over the limit.
    assert_bad_request(&exchange(&env, &[0x00, 0xff, 0xff, 0xff]), "limit");
    // A truncated frame, then the client goes away.
    assert!(exchange(&env, &[0, 0, 0, 100, 1, 2]).is_empty());
    // A frame cut off at the header.
    assert!(exchange(&env, &[0, 0]).is_empty());
    // Truncated JSON.
    assert!(String::from_utf8_lossy(&exchange(&env, b"{\"version\":1,")).contains("error"));

    // An unknown request variant: an error, and the connection stays usable.
    let mut stream = env.connect_raw();
    let version = u8::try_from(a365_proto::PROTOCOL_VERSION).unwrap();
    stream.write_all(&[0, 0, 0, 2, version, 99]).unwrap();
    let mut header = [0u8; 4];
    stream.read_exact(&mut header).unwrap();
    let mut payload = vec![0u8; u32::from_be_bytes(header) as usize];
    stream.read_exact(&mut payload).unwrap();
    let answer = [&header[..], &payload].concat();
    assert_bad_request(&answer, "unknown variant");
    stream
        .write_all(
            &a365_proto::codec::encode_request(
                &a365_proto::Request::Ping,
                a365_proto::Encoding::Binary,
            )
            .unwrap(),
        )
        .unwrap();
    stream.read_exact(&mut header).unwrap();
    let mut payload = vec![0u8; u32::from_be_bytes(header) as usize];
    stream.read_exact(&mut payload).unwrap();
    assert!(matches!(
        a365_proto::codec::decode_response(&payload, a365_proto::Encoding::Binary).unwrap(),
        a365_proto::Response::Pong { .. }
    ));

    // Malformed JSON gets a JSON error; the line after it is served.
    let mut stream = env.connect_raw();
    stream
        .write_all(b"{not json}\n{\"version\":1,\"request\":\"ping\"}\n")
        .unwrap();
    let mut text = String::new();
    let mut reader = std::io::BufReader::new(stream);
    std::io::BufRead::read_line(&mut reader, &mut text).unwrap();
    assert!(
        text.contains("\"error\"") && text.contains("bad_request"),
        "{text}"
    );
    text.clear();
    std::io::BufRead::read_line(&mut reader, &mut text).unwrap();
    assert!(text.contains("\"pong\""), "{text}");

    env.a365(&["token", "work"]).ok();
    assert!(env.a365(&["status"]).code == 0, "{}", agent.log());
}

/// At the connection cap, the oldest idle connection makes room: a client
/// that has a request to make is served, not refused.
#[test]
fn at_the_cap_the_oldest_idle_connection_makes_room() {
    crate::harness::raise_fd_limit();
    let server = a365_token_server::TokenServer::start(ServerConfig::default()).unwrap();
    let env = Env::new();
    let agent = env.spawn_agent(&["--max-connections", "50"]);
    agent.wait_ready(&env.socket);
    env.add_refresh("work", &server);
    let idle: Vec<UnixStream> = (0..200).map(|_| env.connect_raw()).collect();
    for _ in 0..10 {
        env.a365(&["token", "work"]).ok();
    }
    // The oldest were closed: reading them gives end-of-file at once.
    let closed = idle
        .iter()
        .filter(|s| {
            s.set_read_timeout(Some(std::time::Duration::from_millis(20)))
                .unwrap();
            matches!(std::io::Read::read(&mut &**s, &mut [0u8; 1]), Ok(0))
        })
        .count();
    assert!(
        closed >= 150,
        "only {closed} of 200 idle connections were closed"
    );
    // A connection busy with a message is not "idle": a stalled one would
    // be closed by its read timeout, not evicted.
    assert!(!agent.log().contains("refusing"), "{}", agent.log());
}

/// Slowloris (a byte now and then), a client that goes silent mid-message,
/// one that hangs up mid-message and one that never says anything: each is
/// closed on its own timeout, and a normal client is served meanwhile.
#[test]
fn slow_stalled_and_vanishing_clients_are_closed_and_others_served() {
    use std::io::Read;
    use std::time::{Duration, Instant};
    let server = a365_token_server::TokenServer::start(ServerConfig::default()).unwrap();
    let env = Env::new();
    let agent = env.spawn_agent(&["--read-timeout", "1", "--idle-timeout", "2"]);
    agent.wait_ready(&env.socket);
    env.add_refresh("work", &server);

    // A frame header promising 16 bytes, then one byte every 300 ms.
    let slow = env.connect_raw();
    let start = Instant::now();
    let mut slow_w = &slow;
    slow_w.write_all(&[0, 0, 0, 16]).unwrap();
    let mut answer = Vec::new();
    let mut reader = &slow;
    reader
        .set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    loop {
        let _ = slow_w.write_all(&[1]);
        let mut buf = [0u8; 256];
        match reader.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => answer.extend_from_slice(&buf[..n]),
            Err(_) if start.elapsed() < Duration::from_secs(5) => {}
            Err(e) => panic!("still open after 5 s: {e}"),
        }
        env.a365(&["token", "work"]).ok();
    }
    assert!(
        start.elapsed() < Duration::from_secs(3),
        "{:?}",
        start.elapsed()
    );
    assert_bad_request(&answer, "timed out");

    // Half a message, then hang up: nothing to answer, nothing breaks.
    let vanishing = env.connect_raw();
    (&vanishing).write_all(&[0, 0, 0, 40, 1, 2, 3]).unwrap();
    drop(vanishing);

    // Says nothing at all: closed after the idle timeout.
    let silent = env.connect_raw();
    let start = Instant::now();
    silent
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    assert_eq!((&silent).read(&mut [0u8; 1]).unwrap_or(1), 0);
    let idle = start.elapsed();
    assert!(
        (Duration::from_millis(1500)..Duration::from_secs(4)).contains(&idle),
        "{idle:?}"
    );
    env.a365(&["token", "work"]).ok();
    assert!(!agent.log().contains("panicked"));
}

/// Numbers no person would send (2^64 - 1 milliseconds) get an answer in
/// both encodings, and the agent lives on: it once recursed without end
/// formatting `-i64::MIN` and died of a stack overflow in release builds
/// (CI also runs this test against release binaries).
#[test]
fn absurd_numbers_get_a_clear_answer_and_the_agent_lives() {
    let Session {
        server: _server,
        env,
        agent,
    } = Session::start(ServerConfig::default());
    // 2^63 was -i64::MIN once cast; 2^64 - 1 is the most a u64 holds.
    for min_valid_ms in [1 << 63, u64::MAX, (1 << 63) + 1] {
        let request = a365_proto::Request::Token(a365_proto::TokenRequest {
            profile: Some("work".into()),
            min_valid_ms,
            scopes: Vec::new(),
            workspace: None,
        });
        let bytes =
            a365_proto::codec::encode_request(&request, a365_proto::Encoding::Binary).unwrap();
        match decode(&exchange(&env, &bytes)) {
            a365_proto::Response::Error(e) => {
                assert_eq!(e.kind, a365_proto::ErrorKind::Unavailable, "{}", e.message);
                assert!(e.message.contains("valid"), "{}", e.message);
            }
            other => panic!("{other:?}"),
        }
        let line = format!(
            "{{\"version\":1,\"request\":{{\"token\":{{\"profile\":\"work\",\"min_valid_ms\":{min_valid_ms}}}}}}}\n"
        );
        let text = String::from_utf8(exchange(&env, line.as_bytes())).unwrap();
        assert!(text.contains("\"unavailable\""), "{text}");
    }
    // --min-valid at its most from the command line too.
    let out = env
        .a365(&["token", "work", "--min-valid", "9000000h"])
        .code(6);
    assert!(out.stderr.contains("valid"), "{out:#?}");
    env.a365(&["token", "work"]).ok();
    assert!(agent.log().contains("listening"), "{}", agent.log());
}
