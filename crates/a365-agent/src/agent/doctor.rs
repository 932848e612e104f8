//! `a365 doctor`: what could keep a profile from getting tokens, checked
//! without spending a refresh token or sending a secret. Settings and
//! state come from the agent's own view; each endpoint host is looked up
//! in DNS and asked a plain GET, whose TLS handshake checks the chain and
//! whose `Date` header shows the clock skew.

use std::sync::Arc;
use std::time::Duration;

use a365_proto::{Check, ErrorReply, ProfileStatus, Response, Verdict, state};

use super::Agent;
use crate::endpoint::Endpoint;
use crate::fleet::{Fleet, Role};
use crate::profile::Profile;

/// A long-lived token (static, Designer Cloud) this close to its expiry
/// deserves a warning.
const EXPIRY_WARNING_MS: i64 = 7 * 24 * 3600 * 1000;
/// Clock skew beyond this makes tokens look expired early or late.
const SKEW_WARNING_MS: i64 = 60_000;
/// One network check (DNS, or the GET) never takes longer than this.
const NETWORK_TIMEOUT: Duration = Duration::from_secs(10);

fn check(subject: &str, verdict: Verdict, detail: impl Into<String>) -> Check {
    Check {
        subject: subject.to_owned(),
        verdict,
        detail: detail.into(),
    }
}

impl Agent {
    pub(super) async fn doctor(&self, name: Option<&str>) -> Result<Response, ErrorReply> {
        let broken: Vec<Check> = match self.broken.read() {
            Ok(broken) => broken
                .iter()
                .filter(|(n, _)| name.is_none_or(|name| name == n.as_str()))
                .map(|(n, b)| check(n, Verdict::Fail, format!("not served: {}", b.why)))
                .collect(),
            Err(_) => Vec::new(),
        };
        let profiles = match name {
            Some(_) if !broken.is_empty() => Vec::new(),
            Some(name) => vec![self.profile(Some(name))?],
            None => self.all_profiles(),
        };
        let mut checks = vec![self.check_paths()];
        checks.extend(broken);
        if let Some(fleet) = &self.fleet {
            checks.extend(self.check_fleet(fleet).await);
        }
        let per_profile = profiles.iter().map(|p| self.check_profile(p));
        for found in futures_util::future::join_all(per_profile).await {
            checks.extend(found);
        }
        if name.is_none() {
            checks.extend(self.check_routes());
        }
        Ok(Response::Doctor(checks))
    }

    /// Each proxy route: serving at its URL, or why not.
    fn check_routes(&self) -> Vec<Check> {
        self.routes
            .list()
            .into_iter()
            .map(|r| {
                let subject = format!("proxy {}", r.route.name);
                match &r.error {
                    Some(why) => check(&subject, Verdict::Fail, format!("not served: {why}")),
                    None => check(
                        &subject,
                        Verdict::Pass,
                        format!(
                            "{} forwards to {} with profile '{}''s token; {} requests, {} \
                             replayed, {} refused",
                            r.url,
                            r.route.upstream,
                            r.route.profile,
                            r.served,
                            r.replays,
                            r.refused
                        ),
                    ),
                }
            })
            .collect()
    }

    /// The config file and the state directory: private, as at start-up.
    fn check_paths(&self) -> Check {
        match crate::strict::check_paths(&self.paths) {
            Ok(()) => check(
                "files",
                Verdict::Pass,
                format!(
                    "{} and {} are private to this user",
                    self.paths.config_file.display(),
                    self.paths.state_dir.display()
                ),
            ),
            Err(e) => check("files", Verdict::Fail, e.to_string()),
        }
    }

    /// The fleet: this member's part, and etcd read as it reads it (TLS,
    /// authentication and the records, in one request that sends no
    /// secret of a profile).
    async fn check_fleet(&self, fleet: &Fleet) -> Vec<Check> {
        let role = match fleet.role {
            Role::Refresher => "a refresher: it holds the fleet key and refreshes shared profiles",
            Role::Consumer => {
                "a consumer: it serves what the refreshers share and checks it with the fleet's \
                 public key"
            }
        };
        let member = check(
            "fleet",
            Verdict::Pass,
            format!("member '{}' is {role}", fleet.member),
        );
        let etcd = match fleet.profiles(self.now_ms()).await {
            Ok(found) => {
                let bad: Vec<String> = found
                    .iter()
                    .filter_map(|(name, record)| {
                        record.as_ref().err().map(|e| format!("{name}: {e}"))
                    })
                    .collect();
                match bad.is_empty() {
                    true => check(
                        "fleet",
                        Verdict::Pass,
                        format!(
                            "etcd: reached, TLS and authentication accepted, {} shared profile(s) \
                             whose records verify",
                            found.len()
                        ),
                    ),
                    false => check(
                        "fleet",
                        Verdict::Fail,
                        format!("etcd: records that are not served: {}", bad.join("; ")),
                    ),
                }
            }
            Err(e) => check("fleet", Verdict::Fail, format!("etcd: {e}")),
        };
        vec![member, etcd]
    }

    async fn check_profile(&self, profile: &Arc<Profile>) -> Vec<Check> {
        let name = profile.name.as_str();
        let status = profile.status(false);
        let mut checks = vec![
            settings(profile),
            store(&status),
            token_state(&status, self.now_ms()),
        ];
        checks.extend(rotation(&status));
        checks.extend(learned(&status));
        let consumer = self
            .fleet
            .as_ref()
            .is_some_and(|f| f.role == Role::Consumer);
        if profile.home.is_shared() && consumer {
            checks.push(check(
                name,
                Verdict::Pass,
                "token endpoint: never called here; the fleet's refreshers call it",
            ));
            return checks;
        }
        if let Some(endpoint) = profile.endpoint() {
            for url in urls(endpoint) {
                let http = self.shared.http_for(&profile.spec);
                checks.extend(self.check_url(name, http, &url).await);
            }
        }
        checks
    }

    fn now_ms(&self) -> i64 {
        self.shared.clock.now_ms()
    }

    /// DNS, then a GET whose handshake checks TLS and whose `Date` header
    /// gives the skew. Nothing is posted: no credential leaves.
    async fn check_url(
        &self,
        name: &str,
        http: &reqwest::Client,
        url: &reqwest::Url,
    ) -> Vec<Check> {
        let host = url.host_str().unwrap_or_default().to_owned();
        let port = url.port_or_known_default().unwrap_or(443);
        let lookup = tokio::time::timeout(
            NETWORK_TIMEOUT,
            tokio::net::lookup_host((host.as_str(), port)),
        );
        let dns = match lookup.await {
            Ok(Ok(mut addrs)) => match addrs.next() {
                Some(addr) => check(name, Verdict::Pass, format!("DNS: {host} is {}", addr.ip())),
                None => check(name, Verdict::Fail, format!("DNS: {host} has no address")),
            },
            Ok(Err(e)) => check(
                name,
                Verdict::Fail,
                format!("DNS: {host} does not resolve: {e}"),
            ),
            Err(_) => check(
                name,
                Verdict::Fail,
                format!("DNS: no answer for {host} in 10 s"),
            ),
        };
        if dns.verdict == Verdict::Fail {
            return vec![dns];
        }
        let sent = self.now_ms();
        let answer = tokio::time::timeout(NETWORK_TIMEOUT, http.get(url.clone()).send()).await;
        let response = match answer {
            Ok(Ok(response)) => response,
            Ok(Err(e)) => {
                let why = crate::provider::send_error::describe_send_error(&e, url);
                return vec![dns, check(name, Verdict::Fail, why)];
            }
            Err(_) => {
                return vec![
                    dns,
                    check(name, Verdict::Fail, format!("{host}: no answer in 10 s")),
                ];
            }
        };
        let reached = match url.scheme() {
            "https" => format!(
                "TLS: {host}'s certificate chain is trusted (HTTP {} to a GET)",
                response.status().as_u16()
            ),
            _ => format!("{host}: plain HTTP, allowed to a loopback host only"),
        };
        let mut checks = vec![dns, check(name, Verdict::Pass, reached)];
        let leaf = response
            .extensions()
            .get::<reqwest::tls::TlsInfo>()
            .and_then(|info| info.peer_certificate());
        if let Some(der) = leaf {
            checks.push(certificate_expiry(name, &host, der, self.now_ms()));
        }
        let date = response.headers().get(reqwest::header::DATE);
        let server_ms = date
            .and_then(|d| d.to_str().ok())
            .and_then(a365_token::oauth::parse_http_date);
        if let Some(server_ms) = server_ms {
            // The server's Date is whole seconds, taken while we waited.
            let midpoint = sent + (self.now_ms() - sent) / 2;
            checks.push(skew(name, &host, midpoint - server_ms));
        }
        checks
    }
}

/// The profile's settings resolve to endpoints on one Altium cloud, with
/// `secure` only towards Gov Cloud.
fn settings(profile: &Profile) -> Check {
    let name = profile.name.as_str();
    match crate::provider::endpoint(&profile.spec) {
        Ok(Some(endpoint)) => {
            let secure = if endpoint.secure {
                ", secure=1 (Gov Cloud)"
            } else {
                ""
            };
            check(
                name,
                Verdict::Pass,
                format!(
                    "settings: {} token endpoint {}{secure}",
                    profile.spec.kind, endpoint.token_url
                ),
            )
        }
        Ok(None) => check(
            name,
            Verdict::Pass,
            format!(
                "settings: a {} profile calls no endpoint",
                profile.spec.kind
            ),
        ),
        Err(e) => check(name, Verdict::Fail, format!("settings: {e}")),
    }
}

fn store(status: &ProfileStatus) -> Check {
    let verdict = match status.store.ends_with("(unavailable)") {
        true => Verdict::Fail,
        false => Verdict::Pass,
    };
    check(&status.name, verdict, format!("store: {}", status.store))
}

/// What the agent holds: dead, failing, expired soon (long-lived tokens).
fn token_state(status: &ProfileStatus, now_ms: i64) -> Check {
    let name = status.name.as_str();
    let error = status.last_error.as_deref().unwrap_or("");
    match status.state.as_str() {
        state::NEEDS_REAUTH => {
            return check(
                name,
                Verdict::Fail,
                format!("token: needs re-authentication: {error}"),
            );
        }
        state::FAILING => {
            return check(
                name,
                Verdict::Warn,
                format!("token: the last refresh failed: {error}"),
            );
        }
        state::EMPTY => return check(name, Verdict::Warn, "token: none yet"),
        _ => {}
    }
    let Some(expires_ms) = status.expires_at.map(|s| s.saturating_mul(1000)) else {
        return check(name, Verdict::Pass, "token: held, no expiry");
    };
    let left = expires_ms - now_ms;
    let in_words = a365_proto::human_ms(left.max(0));
    let renewable = status.kind.facts().renews_once_expired;
    if left <= 0 && renewable {
        check(
            name,
            Verdict::Warn,
            "token: expired; the agent renews it at the next request",
        )
    } else if left <= 0 {
        check(
            name,
            Verdict::Fail,
            "token: expired and cannot be renewed: add a new one with --replace",
        )
    } else if left < EXPIRY_WARNING_MS && status.kind.facts().warns_before_expiry {
        check(
            name,
            Verdict::Warn,
            format!(
                "token: expires in {in_words} and cannot be renewed: add a new one before then"
            ),
        )
    } else {
        check(
            name,
            Verdict::Pass,
            format!("token: held, valid for {in_words}"),
        )
    }
}

/// Whether the provider rotates refresh tokens, as seen at this agent's
/// refreshes (never by replaying one).
fn rotation(status: &ProfileStatus) -> Option<Check> {
    if !status.kind.facts().uses_refresh_token {
        return None;
    }
    let seen = match status.rotates {
        Some(true) => "the provider rotates refresh tokens (each new one is saved before use)",
        Some(false) => "the provider keeps the same refresh token",
        None => "no refresh seen yet in this agent",
    };
    Some(check(
        &status.name,
        Verdict::Pass,
        format!("rotation: {seen}"),
    ))
}

/// How the client authenticates, and a lifetime assumed for a token that
/// stated none: what `status` notes below its table.
fn learned(status: &ProfileStatus) -> Vec<Check> {
    let mut checks = Vec::new();
    if let Some(auth) = status.client_auth {
        let how = match auth {
            a365_proto::ClientAuth::Post => "in the form body (post)",
            a365_proto::ClientAuth::Basic => "as HTTP Basic, form-encoded (basic)",
            a365_proto::ClientAuth::BasicRaw => "as HTTP Basic, as they are (basic-raw)",
        };
        let detail = format!("client authentication: the id and secret are sent {how}");
        checks.push(check(&status.name, Verdict::Pass, detail));
    }
    if let Some(secs) = status.assumed_lifetime_secs {
        let detail = format!(
            "token lifetime: the token stated none (no expires_in, not a JWT with exp): assumed \
             {} (default_lifetime_secs in config.toml); if it dies sooner, lower that",
            a365_proto::human_ms(i64::try_from(secs.saturating_mul(1000)).unwrap_or(i64::MAX))
        );
        checks.push(check(&status.name, Verdict::Warn, detail));
    }
    checks
}

/// A certificate about to expire fails every token request from then on:
/// say so while the provider can still renew it.
const CERTIFICATE_WARNING_MS: i64 = 14 * 24 * 3600 * 1000;

fn certificate_expiry(name: &str, host: &str, der: &[u8], now_ms: i64) -> Check {
    use x509_cert::der::Decode;
    let not_after = x509_cert::Certificate::from_der(der).map(|cert| {
        let secs = cert
            .tbs_certificate()
            .validity()
            .not_after
            .to_unix_duration()
            .as_secs();
        i64::try_from(secs).unwrap_or(i64::MAX).saturating_mul(1000)
    });
    let Ok(not_after_ms) = not_after else {
        return check(
            name,
            Verdict::Warn,
            format!("TLS: {host}'s certificate could not be read for its expiry"),
        );
    };
    let left = not_after_ms.saturating_sub(now_ms);
    let until = jiff::Timestamp::from_millisecond(not_after_ms)
        .map(|t| t.strftime("%Y-%m-%d %H:%M UTC").to_string())
        .unwrap_or_else(|_| "a date out of range".into());
    let human = a365_proto::human_ms(left.max(0));
    if left < CERTIFICATE_WARNING_MS {
        check(
            name,
            Verdict::Warn,
            format!(
                "TLS: {host}'s certificate expires in {human} ({until}); after that every token \
                 request fails until the provider renews it"
            ),
        )
    } else {
        check(
            name,
            Verdict::Pass,
            format!("TLS: {host}'s certificate is valid for {human} more (until {until})"),
        )
    }
}

fn skew(name: &str, host: &str, skew_ms: i64) -> Check {
    let way = if skew_ms > 0 { "ahead of" } else { "behind" };
    let by = a365_proto::human_ms(skew_ms.abs());
    if skew_ms.abs() > SKEW_WARNING_MS {
        check(
            name,
            Verdict::Warn,
            format!(
                "clock: this machine is {by} {way} {host}: tokens look valid longer or shorter than they are; sync the clock (timedatectl set-ntp true)"
            ),
        )
    } else {
        check(
            name,
            Verdict::Pass,
            format!("clock: within a minute of {host}"),
        )
    }
}

/// Every distinct URL the profile calls (token, authorize, revocation).
fn urls(endpoint: &Endpoint) -> Vec<reqwest::Url> {
    let mut urls = vec![endpoint.token_url.clone()];
    let others = [
        endpoint.login.as_ref().map(|l| &l.authorize_url),
        endpoint.revocation_url.as_ref(),
    ];
    for url in others.into_iter().flatten() {
        if !urls.iter().any(|u| u.origin() == url.origin()) {
            urls.push(url.clone());
        }
    }
    urls
}

#[cfg(test)]
mod tests {
    use base64::Engine;

    use super::*;

    /// A self-signed certificate (`openssl req -x509 -days 1`), valid until
    /// 2026-12-03T21:50:27Z.
    const CERT: &str = "MIIBgDCCASegAwIBAgIUQ5YQ1tTxigRRVQNl+nRQaBDaepUwCgYIKoZIzj0EAwIwFjEUMBIGA1UEAwwLZG9jdG9yLXRlc3QwHhcNMjYxMjAyMjE1MDI3WhcNMjYxMjAzMjE1MDI3WjAWMRQwEgYDVQQDDAtkb2N0b3ItdGVzdDBZMBMGByqGSM49AgEGCCqGSM49AwEHA0IABEfWOM75N34XGPoCJ2eNksK368x/W9d3e/LA516P3iO4MYXiLvCksiZbch6BqZWdCw66TLSKyVPSmcfpZr1OCX2jUzBRMB0GA1UdDgQWBBR7VJnoDtajrnsC9JaDRieFxVkdHDAfBgNVHSMEGDAWgBR7VJnoDtajrnsC9JaDRieFxVkdHDAPBgNVHRMBAf8EBTADAQH/MAoGCCqGSM49BAMCA0cAMEQCIHk4/k2VqRsH2htw3YQN/DX0Un1dFtIRyhstFU30TWrdAiAPL10DnmkVAjtyWJgF3VzA3Kw0tIyPOcm2hcqcesKLXw==";

    #[test]
    fn a_certificate_near_its_end_warns_and_garbage_is_said_so() {
        let der = base64::engine::general_purpose::STANDARD
            .decode(CERT)
            .unwrap();
        let end = "2026-12-03T21:50:27Z"
            .parse::<jiff::Timestamp>()
            .unwrap()
            .as_millisecond();
        let day = 24 * 3600 * 1000;
        let far = certificate_expiry("p", "h", &der, end - 30 * day);
        assert_eq!(far.verdict, Verdict::Pass, "{}", far.detail);
        assert!(
            far.detail.contains("until 2026-12-03 21:50 UTC"),
            "{}",
            far.detail
        );
        let near = certificate_expiry("p", "h", &der, end - day);
        assert_eq!(near.verdict, Verdict::Warn, "{}", near.detail);
        assert!(near.detail.contains("expires in 1d"), "{}", near.detail);
        let garbage = certificate_expiry("p", "h", b"\x30\x03garbage", end);
        assert_eq!(garbage.verdict, Verdict::Warn);
        assert!(garbage.detail.contains("could not be read"));
    }
}
