//! How a client proves who it is to a token endpoint: the method a
//! profile uses (configured, or learned from its server), HTTP Basic as
//! RFC 6749 §2.3.1 encodes it and as many servers read it, and the hint a
//! refused client authentication gets.

use a365_proto::{ClientAuth, ProfileSpec};
use a365_store::Credential;
use secrecy::{ExposeSecret, SecretString};
use zeroize::Zeroizing;

use super::ProviderError;
use super::oauth::{Call, Client, Wiped};

/// The profile's client authentication, but for what was learned of its
/// server: one that took HTTP Basic only as it is (`basic-raw`).
pub fn learned_client_auth(credential: &Credential, spec: &ProfileSpec) -> ClientAuth {
    match (credential.client_auth, client_auth(spec)) {
        (Some(ClientAuth::BasicRaw), ClientAuth::Basic) => ClientAuth::BasicRaw,
        (_, configured) => configured,
    }
}

/// How a profile's client id and secret reach the token endpoint unless
/// it says: HTTP Basic for a confidential login client of Altium Identity
/// (its SPEC §2: `client_id` not in the body), else the form body, as
/// Altium's Developer Center documents for its refresh tokens.
pub fn client_auth(spec: &ProfileSpec) -> ClientAuth {
    use crate::endpoint::{Issuer, issuer};
    spec.client_auth.unwrap_or(
        match spec.kind.facts().browser_login && issuer(spec) == Issuer::Altium {
            true => ClientAuth::Basic,
            false => ClientAuth::Post,
        },
    )
}

/// Whether a refusal may be the encoding of HTTP Basic: the profile sends
/// Basic, no answer has accepted it yet, and form-encoding changes its id
/// or secret (`+ / : %`, a space, …).
pub(super) fn raw_basic_may_help(call: Call<'_>, client: Client<'_>, e: &ProviderError) -> bool {
    let changed = |s: &str| form_urlencoded::byte_serialize(s.as_bytes()).ne(std::iter::once(s));
    call.client_auth == ClientAuth::Basic
        && !call.proven
        && client
            .secret
            .is_some_and(|secret| changed(client.id) || changed(secret.expose_secret()))
        && refuses_client(e)
}

/// A refusal that can be the client's authentication: `invalid_client`,
/// a bare 401, or a bare 400 (as some servers answer every refusal).
pub(super) fn refuses_client(e: &ProviderError) -> bool {
    match e {
        ProviderError::Dead(message) => message.starts_with(a365_token::oauth::CLIENT_REJECTED),
        ProviderError::Rejected(message) => message.starts_with(a365_token::oauth::BARE_400),
        _ => false,
    }
}

/// `Authorization: Basic …` of RFC 6749 §2.3.1: id and secret each
/// form-urlencoded first.
pub(super) fn basic_authorization(id: &str, secret: &SecretString) -> reqwest::header::HeaderValue {
    let secret = secret.expose_secret();
    // Sized for the worst case (every byte percent-encoded): never grown.
    let mut pair = Zeroizing::new(String::with_capacity(3 * (id.len() + secret.len()) + 1));
    pair.extend(form_urlencoded::byte_serialize(id.as_bytes()));
    pair.push(':');
    pair.extend(form_urlencoded::byte_serialize(secret.as_bytes()));
    basic_header(&pair)
}

/// `Authorization: Basic …` of a name and password as they are (RFC
/// 7617): logins that are not OAuth clients, and `basic-raw` clients.
pub(crate) fn basic_login(user: &str, password: &SecretString) -> reqwest::header::HeaderValue {
    let password = password.expose_secret();
    let mut pair = Zeroizing::new(String::with_capacity(user.len() + 1 + password.len()));
    pair.push_str(user);
    pair.push(':');
    pair.push_str(password);
    basic_header(&pair)
}

/// `Basic base64(pair)`, in buffers wiped when dropped, marked sensitive
/// (hidden from `Debug` and HTTP/2 header compression).
fn basic_header(pair: &str) -> reqwest::header::HeaderValue {
    use base64::Engine as _;
    let encoded = Zeroizing::new(base64::engine::general_purpose::STANDARD.encode(pair.as_bytes()));
    let mut value = Zeroizing::new(Vec::with_capacity(6 + encoded.len()));
    value.extend_from_slice(b"Basic ");
    value.extend_from_slice(encoded.as_bytes());
    // Base64 and a fixed prefix: always a valid header value.
    let bytes = bytes::Bytes::from_owner(Wiped(value));
    match reqwest::header::HeaderValue::from_maybe_shared(bytes) {
        Ok(mut value) => {
            value.set_sensitive(true);
            value
        }
        Err(_) => reqwest::header::HeaderValue::from_static("Basic"),
    }
}

/// A refused client authentication names the other method to try: servers
/// that enforce the registered one answer `invalid_client` to the other.
pub(super) fn client_hint(e: ProviderError, used: ClientAuth, had_secret: bool) -> ProviderError {
    let (how, other) = match used {
        ClientAuth::Post => ("in the form body", ClientAuth::Basic),
        ClientAuth::Basic => ("as HTTP Basic", ClientAuth::Post),
        ClientAuth::BasicRaw => ("as HTTP Basic, not form-encoded", ClientAuth::Post),
    };
    let hint = |message: &str| {
        format!(
            "{message}. The id and secret were sent {how}; if they are right, the server may \
             want them the other way: add the profile again with `--client-auth {other}`"
        )
    };
    match e {
        ProviderError::Dead(message)
            if had_secret && message.starts_with(a365_token::oauth::CLIENT_REJECTED) =>
        {
            ProviderError::Dead(hint(&message))
        }
        // Some servers refuse a client they cannot authenticate with a
        // bare 400.
        ProviderError::Rejected(message)
            if had_secret && message.starts_with(a365_token::oauth::BARE_400) =>
        {
            ProviderError::Rejected(hint(&message))
        }
        other => other,
    }
}
