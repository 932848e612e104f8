//! The wire contract, pinned: one message for every variant of every wire
//! enum (`Request`, `Response`, `Kind`, `StoreKind`, `ErrorKind`,
//! `EventKind`), in both encodings, compared byte for byte with the files
//! committed in `fuzz/corpus/wire/` (which also seed the `wire` fuzz
//! target). Reordering two variants changes what an older client decodes
//! (its exit codes among it) and fails here; a new variant does not compile
//! until it is listed below. `A365_BLESS=1 cargo test -p a365-proto --test
//! golden` writes the files of a deliberate change.

#![allow(clippy::unwrap_used)]

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use a365_proto::codec::{decode_request, decode_response, encode_request, encode_response};
use a365_proto::{
    AddProfile, Check, ClientAuth, CodecError, Encoding, ErrorKind, ErrorReply, Event, EventKind,
    Kind, ProfileSpec, ProfileStatus, Request, Response, Secrets, StoreKind, TokenReply,
    TokenRequest, Verdict, WireSecret,
};
use secrecy::SecretString;

fn corpus() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/corpus/wire")
}

fn secret(s: &str) -> Option<WireSecret> {
    Some(WireSecret::new(SecretString::from(s)))
}

/// A name for every request variant: a new variant fails to compile here.
fn request_name(r: &Request) -> String {
    match r {
        Request::Token(_) => "token".into(),
        Request::Status => "status".into(),
        Request::AddProfile(a) => match a.spec.client_auth {
            Some(auth) => format!("add-client-auth-{auth}"),
            None => format!("add-{}", a.spec.kind),
        },
        Request::RemoveProfile {
            keep_remote: false, ..
        } => "remove".into(),
        Request::RemoveProfile {
            keep_remote: true, ..
        } => "remove-keep-remote".into(),
        Request::Refresh { .. } => "refresh".into(),
        Request::Ping => "ping".into(),
        Request::Shutdown => "shutdown".into(),
        Request::MigrateStore { to, .. } => format!("migrate-{to}"),
        Request::Login { .. } => "login".into(),
        Request::LoginWait { .. } => "login-wait".into(),
        Request::Watch { .. } => "watch".into(),
        Request::StatusPage { .. } => "status-page".into(),
        Request::Doctor { .. } => "doctor".into(),
        Request::Restart => "restart".into(),
        Request::LoginReview { .. } => "login-review".into(),
        Request::LoginKeep { keep: true, .. } => "login-keep".into(),
        Request::LoginKeep { keep: false, .. } => "login-discard".into(),
        Request::Workspaces { .. } => "workspaces".into(),
        Request::SetDefault { .. } => "set-default".into(),
        Request::Set { .. } => "set".into(),
        Request::UpdateSecret { .. } => "update-secret".into(),
        Request::ProxyAdd { .. } => "proxy-add".into(),
        Request::ProxyRemove { .. } => "proxy-remove".into(),
        Request::ProxyList => "proxy-list".into(),
        Request::SinkAdd { .. } => "sink-add".into(),
        Request::SinkRemove { .. } => "sink-remove".into(),
        Request::SinkList => "sink-list".into(),
    }
}

fn response_name(r: &Response) -> String {
    match r {
        Response::Token(_) => "token".into(),
        Response::Status(_) => "status".into(),
        Response::Done { .. } => "done".into(),
        Response::Pong { .. } => "pong".into(),
        Response::Error(e) => format!("error-{}", error_name(e.kind)),
        Response::LoginUrl { .. } => "login-url".into(),
        Response::Event(e) => format!("event-{}", e.kind.as_str()),
        Response::StatusPage { .. } => "status-page".into(),
        Response::Doctor(_) => "doctor".into(),
        Response::Workspaces(_) => "workspaces".into(),
        Response::Routes(_) => "routes".into(),
        Response::Sinks(_) => "sinks".into(),
    }
}

fn error_name(kind: ErrorKind) -> &'static str {
    match kind {
        ErrorKind::BadRequest => "bad-request",
        ErrorKind::UnknownProfile => "unknown-profile",
        ErrorKind::NeedsReauth => "needs-reauth",
        ErrorKind::Unavailable => "unavailable",
        ErrorKind::MissingScope => "missing-scope",
        ErrorKind::InvalidProfile => "invalid-profile",
        ErrorKind::PermissionDenied => "permission-denied",
        ErrorKind::Internal => "internal",
    }
}

/// Every error kind, in wire order: each names the one after it, so a new
/// kind fails to compile here until it is put in the chain.
fn error_kinds() -> Vec<ErrorKind> {
    let after = |kind: Option<ErrorKind>| match kind {
        None => Some(ErrorKind::BadRequest),
        Some(ErrorKind::BadRequest) => Some(ErrorKind::UnknownProfile),
        Some(ErrorKind::UnknownProfile) => Some(ErrorKind::NeedsReauth),
        Some(ErrorKind::NeedsReauth) => Some(ErrorKind::Unavailable),
        Some(ErrorKind::Unavailable) => Some(ErrorKind::MissingScope),
        Some(ErrorKind::MissingScope) => Some(ErrorKind::InvalidProfile),
        Some(ErrorKind::InvalidProfile) => Some(ErrorKind::PermissionDenied),
        Some(ErrorKind::PermissionDenied) => Some(ErrorKind::Internal),
        Some(ErrorKind::Internal) => None,
    };
    std::iter::successors(after(None), |k| after(Some(*k))).collect()
}

/// Every event kind, the same way.
fn event_kinds() -> Vec<EventKind> {
    let after = |kind: Option<EventKind>| match kind {
        None => Some(EventKind::Refreshed),
        Some(EventKind::Refreshed) => Some(EventKind::RefreshFailed),
        Some(EventKind::RefreshFailed) => Some(EventKind::NeedsReauth),
        Some(EventKind::NeedsReauth) => Some(EventKind::ExpiresSoon),
        Some(EventKind::ExpiresSoon) => Some(EventKind::Removed),
        Some(EventKind::Removed) => Some(EventKind::Replayed),
        Some(EventKind::Replayed) => Some(EventKind::HeldBack),
        Some(EventKind::HeldBack) => None,
    };
    std::iter::successors(after(None), |k| after(Some(*k))).collect()
}

/// A sink with every field filled.
fn sink() -> a365_proto::FileSink {
    a365_proto::FileSink {
        name: "ci".into(),
        path: "/run/secrets/nexar-token".into(),
        profile: "nexar".into(),
        workspace: Some("acme.365.altium.com".into()),
        format: a365_proto::SinkFormat::Env,
        newline: false,
        var: Some("NEXAR_TOKEN".into()),
        group: Some("docker".into()),
        command: Some("systemctl --user reload app".into()),
    }
}

/// A route with every field filled.
fn route() -> a365_proto::ProxyRoute {
    a365_proto::ProxyRoute {
        name: "nexar".into(),
        listen: "127.0.0.1:7365".into(),
        upstream: "https://api.nexar.com/graphql/".into(),
        profile: "work".into(),
        workspace: Some("acme.365.altium.com".into()),
        headers: [("x-api-version".to_owned(), "2".to_owned())].into(),
        require_secret: true,
        allow_origins: vec!["https://ide.example".into()],
    }
}

fn requests() -> Vec<Request> {
    let mut all = vec![
        Request::Token(TokenRequest {
            profile: Some("work".into()),
            min_valid_ms: 300_000,
            scopes: vec!["a365:requirements".into(), "design.read".into()],
            workspace: Some("Design".into()),
        }),
        Request::Status,
        Request::RemoveProfile {
            name: "old".into(),
            keep_remote: false,
        },
        Request::RemoveProfile {
            name: "old".into(),
            keep_remote: true,
        },
        Request::Refresh {
            profile: Some("nexar".into()),
        },
        Request::Ping,
        Request::Shutdown,
        Request::Login {
            profile: "design".into(),
            timeout_ms: 120_000,
            select_workspace: Some("strict".into()),
        },
        Request::LoginWait {
            profile: "design".into(),
        },
        Request::Watch {
            profile: Some("work".into()),
        },
        Request::StatusPage {
            after: Some("m".into()),
        },
        Request::Doctor {
            profile: Some("work".into()),
        },
        Request::Restart,
        Request::Workspaces {
            profile: Some("a365".into()),
        },
        Request::SetDefault {
            profile: "work".into(),
        },
        Request::Set {
            profile: "work".into(),
            key: "ca_file".into(),
            value: "/etc/ssl/corp-ca.pem".into(),
        },
        Request::UpdateSecret {
            profile: "work".into(),
            secrets: a365_proto::Secrets {
                client_secret: Some(a365_proto::WireSecret::new("cs-new".to_owned().into())),
                refresh_token: Some(a365_proto::WireSecret::new("rt-new".to_owned().into())),
                access_token: Some(a365_proto::WireSecret::new("at-new".to_owned().into())),
                password: Some(a365_proto::WireSecret::new("pw-new".to_owned().into())),
                username: Some("ann".into()),
            },
        },
        Request::ProxyAdd {
            route: route(),
            replace: true,
        },
        Request::ProxyRemove {
            name: "nexar".into(),
        },
        Request::ProxyList,
        Request::SinkAdd {
            sink: sink(),
            replace: true,
        },
        Request::SinkRemove { name: "ci".into() },
        Request::SinkList,
        Request::LoginReview {
            profile: "design".into(),
        },
        Request::LoginKeep {
            profile: "design".into(),
            keep: true,
        },
        Request::LoginKeep {
            profile: "design".into(),
            keep: false,
        },
    ];
    for kind in Kind::ALL {
        all.push(Request::AddProfile(AddProfile {
            name: "gov".into(),
            // Every field filled, whether the kind uses it or not: these
            // messages pin the encoding, not what the agent accepts.
            spec: ProfileSpec {
                kind,
                realm: Some("altium365-gov".into()),
                token_url: Some("https://auth.example/connect/token".into()),
                client_id: Some("cid-123".into()),
                scopes: vec!["openid".into(), "offline_access".into()],
                secure: Some(true),
                store: Some(StoreKind::File),
                authorize_url: Some("https://auth.example/connect/authorize".into()),
                redirect_uri: Some("http://localhost:3000/login".into()),
                base_url: Some("https://designer.example".into()),
                renew_lifetime_secs: Some(86_400),
                // Filled in the messages below, named by it.
                client_auth: None,
                revocation_url: Some("https://auth.example/connect/revocation".into()),
                authorize_params: [("prompt".into(), "consent".into())].into(),
                token_params: [("audience".into(), "https://api.example".into())].into(),
                headers: [("X-Tenant".into(), "t1".into())].into(),
                introspection_url: Some("https://auth.example/connect/introspect".into()),
                workspace: Some("Design".into()),
                workspace_of: Some("a365".into()),
                ca_file: Some("/etc/ssl/corp-ca.pem".into()),
                limits: [("15m".into(), 200), ("1s".into(), 2)].into(),
            },
            secrets: Secrets {
                client_secret: secret("s3cr3t"),
                refresh_token: secret("rt-0001"),
                access_token: secret("at-0001"),
                password: secret("pw-0001"),
                username: Some("ann".into()),
            },
            replace: false,
            check_only: false,
            shared: false,
        }));
    }
    for to in StoreKind::ALL {
        all.push(Request::MigrateStore {
            to,
            profile: Some("work".into()),
        });
    }
    for auth in ClientAuth::ALL {
        all.push(Request::AddProfile(AddProfile {
            name: format!("auth-{auth}"),
            spec: ProfileSpec {
                kind: Kind::ClientCredentials,
                realm: Some("nexar".into()),
                client_id: Some("cid-123".into()),
                client_auth: Some(auth),
                revocation_url: Some("https://auth.example/connect/revocation".into()),
                token_params: [("audience".into(), "https://api.example".into())].into(),
                ..ProfileSpec::default()
            },
            secrets: Secrets {
                client_secret: secret("s3cr3t"),
                refresh_token: None,
                access_token: None,
                ..Secrets::default()
            },
            replace: false,
            check_only: false,
            shared: false,
        }));
    }
    all
}

fn status() -> ProfileStatus {
    ProfileStatus {
        name: "work".into(),
        kind: Kind::Refresh,
        realm: Some("altium365".into()),
        token_url: Some("https://auth.example/connect/token".into()),
        state: a365_proto::state::FRESH.into(),
        expires_at: Some(1_900_000_000),
        next_refresh_at: Some(1_899_999_100),
        scopes: vec!["a365:workspace:abc".into()],
        workspace: Some("abc".into()),
        last_error: Some("the last refresh failed (HTTP 503); retried in 5s".into()),
        store: "keyring".into(),
        scopes_not_granted: vec!["a365:admin".into()],
        is_default: true,
        rotates: Some(true),
        account: Some("ann@example.com".into()),
        refreshed_by: Some("runner-7".into()),
        client_auth: Some(a365_proto::ClientAuth::BasicRaw),
        assumed_lifetime_secs: Some(3600),
        budget: vec![a365_proto::BudgetWindow {
            secs: 900,
            limit: 200,
            used: 17,
        }],
    }
}

fn responses() -> Vec<Response> {
    let mut all = vec![
        Response::Token(TokenReply {
            profile: "work".into(),
            token: WireSecret::new(SecretString::from("eyJhbGciOiJSUzI1NiJ9.e30.c2ln")),
            expires_at: Some(1_900_000_000),
            scopes: vec!["openid".into()],
        }),
        Response::Status(vec![status()]),
        Response::Done {
            message: "profile 'work' removed".into(),
        },
        Response::Pong {
            protocol: a365_proto::PROTOCOL_VERSION,
            agent_version: "0.1.0".into(),
            pid: 4242,
        },
        Response::LoginUrl {
            url: "http://127.0.0.1:3000/start/abc".into(),
        },
        Response::StatusPage {
            profiles: vec![status()],
            next: Some("work".into()),
        },
        Response::Doctor(
            [Verdict::Pass, Verdict::Warn, Verdict::Fail]
                .into_iter()
                .map(|verdict| Check {
                    subject: "work".into(),
                    verdict,
                    detail: "what was seen".into(),
                })
                .collect(),
        ),
        Response::Workspaces(vec![a365_proto::Workspace {
            id: "ws-1".into(),
            name: "Design".into(),
            url: "https://design.365.altium.com".into(),
            location: "US GovCloud".into(),
            gov: true,
            profile: Some("a365.ws-ws-1".into()),
        }]),
        Response::Routes(vec![a365_proto::RouteStatus {
            route: route(),
            url: "http://127.0.0.1:7365/".into(),
            error: Some("why not".into()),
            served: 12,
            replays: 1,
            refused: 2,
            secret: secret("route-secret"),
        }]),
        Response::Sinks(vec![a365_proto::SinkStatus {
            sink: sink(),
            written_at: Some(1_899_999_000),
            expires_at: Some(1_900_000_000),
            writes: 3,
            error: Some("why not".into()),
        }]),
    ];
    for kind in error_kinds() {
        all.push(Response::Error(ErrorReply::new(kind, "what happened")));
    }
    for kind in event_kinds() {
        all.push(Response::Event(Event {
            profile: "work".into(),
            kind,
            expires_at: Some(1_900_000_000),
            message: "what happened".into(),
        }));
    }
    all
}

/// Compares `bytes` with the committed file, or writes it when blessing.
fn check(name: &str, bytes: &[u8], bless: bool) -> Option<String> {
    let path = corpus().join(name);
    if bless {
        std::fs::write(&path, bytes).unwrap();
        return None;
    }
    match std::fs::read(&path) {
        Ok(committed) if committed == bytes => None,
        Ok(_) => Some(format!("{name}: the encoding changed")),
        Err(e) => Some(format!("{name}: {e}")),
    }
}

/// The bytes of one message on the wire.
type Encoded = Result<zeroize::Zeroizing<Vec<u8>>, CodecError>;

/// One message type's codec, for [`Golden::check`].
struct Codec<T> {
    prefix: &'static str,
    name: fn(&T) -> String,
    encode: fn(&T, Encoding) -> Encoded,
    decode: fn(&[u8], Encoding) -> Result<T, CodecError>,
}

/// What the check found: every name seen, and every mismatch.
#[derive(Default)]
struct Golden {
    bless: bool,
    names: BTreeSet<String>,
    problems: Vec<String>,
}

impl Golden {
    /// Encodes each of `messages` in both encodings, compares with the
    /// committed files `PREFIX-NAME.{bin,json}`, and decodes them back.
    fn check<T: PartialEq + std::fmt::Debug>(&mut self, codec: &Codec<T>, messages: Vec<T>) {
        for message in messages {
            let name = format!("{}-{}", codec.prefix, (codec.name)(&message));
            assert!(self.names.insert(name.clone()), "{name} twice");
            for (encoding, ext) in [(Encoding::Binary, "bin"), (Encoding::Json, "json")] {
                let bytes = (codec.encode)(&message, encoding).unwrap();
                self.problems
                    .extend(check(&format!("{name}.{ext}"), &bytes, self.bless));
                let payload = match encoding {
                    Encoding::Binary => &bytes[4..],
                    Encoding::Json => &bytes[..bytes.len() - 1],
                };
                assert_eq!(
                    (codec.decode)(payload, encoding).unwrap(),
                    message,
                    "{name}"
                );
            }
        }
    }
}

#[test]
fn every_variant_encodes_as_committed_in_both_encodings() {
    let mut golden = Golden {
        bless: std::env::var_os("A365_BLESS").is_some_and(|v| v == "1"),
        ..Golden::default()
    };
    let requests_codec = Codec {
        prefix: "request",
        name: request_name,
        encode: encode_request,
        decode: decode_request,
    };
    golden.check(&requests_codec, requests());
    let responses_codec = Codec {
        prefix: "response",
        name: response_name,
        encode: encode_response,
        decode: decode_response,
    };
    golden.check(&responses_codec, responses());
    let Golden {
        names, problems, ..
    } = golden;
    assert!(
        problems.is_empty(),
        "{}\n(if the change is deliberate, and a new protocol version or an appended variant, \
         run with A365_BLESS=1 and commit the files)",
        problems.join("\n")
    );
    // Every variant of every enum is covered (the lists above are by hand).
    let requests = names.iter().filter(|n| n.starts_with("request-")).count();
    assert_eq!(
        requests,
        // 26 variants; `add` and `migrate` named per kind, store and
        // client auth; `remove` and `login-keep` twice each.
        26 - 2 + 2 + Kind::ALL.len() + StoreKind::ALL.len() + ClientAuth::ALL.len()
    );
    let errors = names
        .iter()
        .filter(|n| n.starts_with("response-error-"))
        .count();
    assert_eq!(errors, error_kinds().len());
    let events = names
        .iter()
        .filter(|n| n.starts_with("response-event-"))
        .count();
    assert_eq!(events, event_kinds().len());
}

/// Every field of every message is filled (not null, not empty) in at
/// least one golden message: a field that is always empty could change
/// its type without changing a byte of what is pinned.
#[test]
fn every_field_is_filled_in_some_golden_message() {
    let mut filled = std::collections::BTreeMap::<String, bool>::new();
    let mut walk_all = |prefix: &str, encoded: Vec<Vec<u8>>| {
        for bytes in encoded {
            let value: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
            walk(&value, prefix.to_owned(), &mut filled);
        }
    };
    walk_all(
        "request",
        requests()
            .iter()
            .map(|r| encode_request(r, Encoding::Json).unwrap().to_vec())
            .collect(),
    );
    walk_all(
        "response",
        responses()
            .iter()
            .map(|r| encode_response(r, Encoding::Json).unwrap().to_vec())
            .collect(),
    );
    let empty: Vec<_> = filled
        .iter()
        .filter(|(_, f)| !**f)
        .map(|(p, _)| p)
        .collect();
    assert!(
        empty.is_empty(),
        "never filled in a golden message: {empty:?}"
    );
}

/// Marks each path of `value` filled or not; a path filled once stays so.
fn walk(
    value: &serde_json::Value,
    path: String,
    filled: &mut std::collections::BTreeMap<String, bool>,
) {
    use serde_json::Value;
    let full = match value {
        Value::Null => false,
        Value::Array(items) => !items.is_empty(),
        Value::Object(fields) => !fields.is_empty(),
        _ => true,
    };
    *filled.entry(path.clone()).or_insert(false) |= full;
    match value {
        Value::Array(items) => items
            .iter()
            .for_each(|v| walk(v, format!("{path}[]"), filled)),
        Value::Object(fields) => {
            for (key, v) in fields {
                walk(v, format!("{path}.{key}"), filled);
            }
        }
        _ => {}
    }
}

/// The other seeds of the corpus say what they are meant to.
#[test]
fn the_other_seeds_decode_as_intended() {
    let read = |name: &str| std::fs::read(corpus().join(name)).unwrap();
    // Another protocol version: refused, naming it.
    let v5 = read("version-5.json");
    assert!(matches!(
        decode_request(v5.trim_ascii_end(), Encoding::Json),
        Err(CodecError::Version(5))
    ));
    let v5 = read("version-5.bin");
    assert!(matches!(
        decode_request(&v5[4..], Encoding::Binary),
        Err(CodecError::Version(5))
    ));
    // Version 1: positional binary is refused; JSON (plugins) still works.
    let v1 = read("version-1.bin");
    assert!(matches!(
        decode_request(&v1[4..], Encoding::Binary),
        Err(CodecError::Version(1))
    ));
    // Not an a365 client at all.
    assert_eq!(Encoding::sniff(read("http.txt")[0]), None);
    // A request written by hand, fields omitted.
    let hand = read("hand-token.json");
    assert!(matches!(
        decode_request(hand.trim_ascii_end(), Encoding::Json),
        Ok(Request::Token(_))
    ));
    // Several requests on one connection, in each encoding: the same ones.
    let lines: Vec<Request> = read("requests.json")
        .split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
        .map(|l| decode_request(l, Encoding::Json).unwrap())
        .collect();
    let bin = read("requests.bin");
    let mut frames = Vec::new();
    let mut rest = &bin[..];
    while !rest.is_empty() {
        let payload = a365_proto::frame::read_frame(&mut rest).unwrap();
        frames.push(decode_request(&payload, Encoding::Binary).unwrap());
    }
    assert!(!lines.is_empty());
    assert_eq!(lines, frames);
}

/// The agent's hot path encodes a token reply from borrowed parts: the
/// same bytes as the owned `Response::Token`, in both encodings.
#[test]
fn a_borrowed_token_reply_encodes_like_the_owned_one() {
    use a365_proto::codec::{TokenReplyRef, encode_token_reply};
    let scopes = vec!["openid".to_owned(), "a365:workspace:abc".to_owned()];
    for expires_at in [Some(1_900_000_000), None] {
        let owned = Response::Token(TokenReply {
            profile: "work".into(),
            token: WireSecret::new(SecretString::from("tok-123")),
            expires_at,
            scopes: scopes.clone(),
        });
        let borrowed = TokenReplyRef {
            profile: "work",
            token: "tok-123",
            expires_at,
            scopes: &scopes,
        };
        for encoding in [Encoding::Binary, Encoding::Json] {
            assert_eq!(
                &encode_token_reply(&borrowed, encoding).unwrap()[..],
                &encode_response(&owned, encoding).unwrap()[..],
                "{encoding:?}"
            );
        }
    }
}
