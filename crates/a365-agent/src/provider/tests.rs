//! The table of kinds and the rules every kind shares.

use super::*;
use a365_proto::WireSecret;

fn secret(s: &str) -> Option<WireSecret> {
    Some(WireSecret::new(SecretString::from(s)))
}

fn spec(kind: Kind) -> ProfileSpec {
    ProfileSpec {
        kind,
        client_id: Some("cid".into()),
        ..ProfileSpec::default()
    }
}

/// Which secrets each kind takes: the pure decision behind `a365 add`.
#[test]
fn each_kind_takes_exactly_its_secrets() {
    use secrecy::ExposeSecret;
    let all = || Secrets {
        client_secret: secret("cs"),
        refresh_token: secret("rt"),
        access_token: secret("at"),
        ..Secrets::default()
    };
    let only = |cs, rt, at| Secrets {
        client_secret: if cs { secret("cs") } else { None },
        refresh_token: if rt { secret("rt") } else { None },
        access_token: if at { secret("at") } else { None },
        ..Secrets::default()
    };
    let add = |kind, secrets| of(kind).credential("p", &spec(kind), secrets, 7);

    let c = add(Kind::Refresh, only(true, true, false)).unwrap();
    assert_eq!(c.refresh_token.unwrap().expose_secret(), "rt");
    assert_eq!(c.updated_at_ms, 7);
    assert!(add(Kind::Refresh, only(true, false, false)).is_err());
    assert!(add(Kind::Refresh, all()).is_err());

    assert!(add(Kind::ClientCredentials, only(true, false, false)).is_ok());
    assert!(add(Kind::ClientCredentials, only(false, false, false)).is_err());
    assert!(add(Kind::ClientCredentials, only(true, true, false)).is_err());

    // A public PKCE client has no secret.
    assert!(add(Kind::AuthorizationCode, only(false, false, false)).is_ok());
    assert!(add(Kind::AuthorizationCode, only(false, true, false)).is_err());

    assert!(add(Kind::Static, only(false, false, true)).is_ok());
    assert!(add(Kind::Static, all()).is_err());
    assert!(add(Kind::DesignerCloud, only(false, false, true)).is_ok());
    assert!(add(Kind::DesignerCloud, only(true, false, true)).is_err());

    let no_id = ProfileSpec {
        client_id: None,
        ..spec(Kind::Refresh)
    };
    let err = of(Kind::Refresh)
        .credential("p", &no_id, only(true, true, false), 0)
        .unwrap_err();
    assert!(err.0.contains("--client-id"), "{err}");
}

#[test]
fn only_static_tokens_are_never_renewed() {
    for kind in [
        Kind::Refresh,
        Kind::ClientCredentials,
        Kind::AuthorizationCode,
        Kind::DesignerCloud,
    ] {
        assert!(of(kind).renews(), "{kind}");
    }
    assert!(!of(Kind::Static).renews());
}

#[test]
fn what_a_restart_serves() {
    let empty = Credential::default();
    assert_eq!(of(Kind::Static).restore("p", &empty), Restore::AsIs);
    assert_eq!(of(Kind::Refresh).restore("p", &empty), Restore::WhileValid);
    assert!(matches!(
        of(Kind::AuthorizationCode).restore("p", &empty),
        Restore::NotReady(m) if m.contains("a365 login p")
    ));
    assert_eq!(
        of(Kind::DesignerCloud).restore("p", &empty),
        Restore::RenewNow,
        "a token of unknown id is renewed at once"
    );
    let known = Credential {
        token_id: Some("t1".into()),
        ..Credential::default()
    };
    assert_eq!(
        of(Kind::DesignerCloud).restore("p", &known),
        Restore::WhileValid
    );
}

/// The scopes a request carries when the profile names none: Nexar's
/// supply scope for client credentials on the `nexar` realm, Nexar's
/// design scopes for a browser login, none otherwise.
#[test]
fn default_scopes_by_kind_and_realm() {
    let mut s = spec(Kind::ClientCredentials);
    s.realm = Some("nexar".into());
    assert_eq!(requested_scopes(&s), ["supply.domain"]);
    s.realm = Some("altium365".into());
    assert!(requested_scopes(&s).is_empty());
    let login = requested_scopes(&spec(Kind::AuthorizationCode));
    assert!(login.contains(&"offline_access".to_owned()), "{login:?}");
    assert!(requested_scopes(&spec(Kind::Refresh)).is_empty());
    s.scopes = vec!["mine".into()];
    assert_eq!(requested_scopes(&s), ["mine"], "a profile's own scopes win");
}

#[test]
fn only_authorization_code_logs_in_with_a_browser() {
    for kind in Kind::ALL {
        assert_eq!(
            of(kind).browser().is_some(),
            kind == Kind::AuthorizationCode,
            "{kind}"
        );
    }
}
