//! A tiny blocking HTTP/1.1 client over a raw socket: it sees exactly what
//! the server sent, including "nothing at all" (the Drop faults).
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use a365_token_server::{ServerConfig, TokenServer};
use base64::Engine;

#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Reply {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("{e}: {}", self.body))
    }

    /// The `error` of an RFC 6749 §5.2 error body.
    pub fn error(&self) -> String {
        self.json()["error"].as_str().unwrap_or_default().to_owned()
    }
}

pub fn form_encode(fields: &[(&str, &str)]) -> String {
    let encode = |s: &str| {
        s.bytes()
            .map(|b| match b {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                    (b as char).to_string()
                }
                b' ' => "+".to_owned(),
                b => format!("%{b:02X}"),
            })
            .collect::<String>()
    };
    fields
        .iter()
        .map(|(k, v)| format!("{}={}", encode(k), encode(v)))
        .collect::<Vec<_>>()
        .join("&")
}

pub fn basic(id: &str, secret: &str) -> (String, String) {
    let encoded = base64::engine::general_purpose::STANDARD.encode(format!("{id}:{secret}"));
    ("Authorization".to_owned(), format!("Basic {encoded}"))
}

/// Sends one request and returns every byte the server sent before closing.
pub fn raw(
    addr: SocketAddr,
    content_type: &str,
    body: &str,
    headers: &[(String, String)],
    timeout: Duration,
) -> std::io::Result<Vec<u8>> {
    let mut stream = TcpStream::connect(addr)?;
    stream.set_read_timeout(Some(timeout))?;
    let mut request = format!(
        "POST /connect/token HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\
         Content-Type: {content_type}\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("\r\n");
    request.push_str(body);
    stream.write_all(request.as_bytes())?;
    let mut bytes = Vec::new();
    stream.read_to_end(&mut bytes)?;
    Ok(bytes)
}

pub fn parse(bytes: &[u8]) -> Reply {
    let text = String::from_utf8_lossy(bytes);
    let (head, body) = text.split_once("\r\n\r\n").expect("a complete response");
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok())
        .expect("a status line");
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_owned(), v.trim().to_owned()))
        .collect();
    Reply {
        status,
        headers,
        body: body.to_owned(),
    }
}

/// A form POST to `/connect/token`.
pub fn post(addr: SocketAddr, fields: &[(&str, &str)]) -> Reply {
    post_with(addr, fields, &[])
}

pub fn post_with(addr: SocketAddr, fields: &[(&str, &str)], headers: &[(String, String)]) -> Reply {
    let bytes = raw(
        addr,
        "application/x-www-form-urlencoded",
        &form_encode(fields),
        headers,
        Duration::from_secs(10),
    )
    .expect("a response");
    parse(&bytes)
}

/// Decodes (without verifying) a JWT's payload.
pub fn jwt_payload(token: &str) -> serde_json::Value {
    let parts: Vec<&str> = token.split('.').collect();
    assert_eq!(parts.len(), 3, "three parts: {token}");
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(parts[1])
        .expect("base64url payload");
    serde_json::from_slice(&bytes).expect("JSON payload")
}

pub fn jwt_header(token: &str) -> serde_json::Value {
    let first = token.split('.').next().unwrap_or_default();
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(first)
        .expect("base64url header");
    serde_json::from_slice(&bytes).expect("JSON header")
}

pub const ID: &str = "test-client";
pub const SECRET: &str = "test-secret";

pub fn start() -> TokenServer {
    TokenServer::start(ServerConfig::default()).unwrap()
}

pub fn refresh(server: &TokenServer, rt: &str) -> Reply {
    post(
        server.addr(),
        &[
            ("grant_type", "refresh_token"),
            ("refresh_token", rt),
            ("client_id", ID),
            ("client_secret", SECRET),
        ],
    )
}

pub fn client_credentials(server: &TokenServer) -> Reply {
    post(
        server.addr(),
        &[
            ("grant_type", "client_credentials"),
            ("client_id", ID),
            ("client_secret", SECRET),
        ],
    )
}

/// A GET of `path_and_query`; redirects are not followed.
pub fn get(addr: SocketAddr, path_and_query: &str) -> Reply {
    let mut stream = TcpStream::connect(addr).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let request =
        format!("GET {path_and_query} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).expect("write");
    let mut bytes = Vec::new();
    stream.read_to_end(&mut bytes).expect("read");
    parse(&bytes)
}
