//! What a failed HTTP request to a provider means, in words a person can
//! act on: an untrusted certificate, a TLS handshake with something that
//! is not TLS, a timeout, a closed connection. Never quotes a request.

pub(crate) fn describe_send_error(e: &reqwest::Error, url: &reqwest::Url) -> String {
    let host = url.host_str().unwrap_or("?");
    // The innermost causes (hyper, rustls) name what went wrong; they hold
    // no secret (the URL has no credentials, the form is not in errors).
    let mut causes = Vec::new();
    let mut source = std::error::Error::source(e);
    while let Some(cause) = source {
        causes.push(cause.to_string());
        source = cause.source();
    }
    let chain = causes.join(": ");
    if chain.contains("certificate") {
        format!(
            "the TLS certificate of the token server {host} is not trusted ({}); if a corporate CA \
             signs it, set ca_file to that CA's PEM file (in config.toml, or `a365 set PROFILE ca_file \
             FILE`; no restart needed)",
            // The reason's name, without its byte-level details.
            causes
                .last()
                .and_then(|c| c.split(" {").next())
                .unwrap_or("")
        )
    } else if is_tls_failure(&chain) {
        format!(
            "the TLS handshake with the token server {host} failed ({}): is it an https server?",
            causes
                .last()
                .and_then(|c| c.split(" {").next())
                .unwrap_or("")
        )
    } else if e.is_timeout() {
        format!("the token server {host} did not answer in time")
    } else if chain.contains("closed before message completed")
        || chain.contains("connection reset")
        || chain.contains("IncompleteMessage")
    {
        format!("the token server {host} closed the connection without answering")
    } else if e.is_connect() {
        format!("cannot connect to the token server {host}")
    } else {
        format!("the request to the token server {host} failed")
    }
}

/// rustls and hyper-rustls name handshake failures in a few ways.
fn is_tls_failure(chain: &str) -> bool {
    let chain = chain.to_ascii_lowercase();
    [
        "corrupt message",
        "invalidcontenttype",
        "handshake",
        "tls",
        "alert",
    ]
    .iter()
    .any(|w| chain.contains(w))
}
