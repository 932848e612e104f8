//! What each kind of credential needs and does, in one table that the
//! agent and `a365 add` both read: a new kind is one variant of [`Kind`]
//! and one row here (and its provider in the agent).

use serde::{Deserialize, Serialize};

/// The kinds of credential. Append new kinds at the end.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Kind {
    /// One long-lived bearer token, served as is.
    #[default]
    Static,
    /// Client id, client secret and a (rotating) refresh token.
    Refresh,
    /// Client id and client secret: `grant_type=client_credentials`.
    ClientCredentials,
    /// Client id and secret and a browser login (PKCE, loopback redirect).
    AuthorizationCode,
    /// A Designer Cloud API token that renews itself before it expires.
    DesignerCloud,
}

impl Kind {
    pub const ALL: [Kind; 5] = [
        Kind::Static,
        Kind::Refresh,
        Kind::ClientCredentials,
        Kind::AuthorizationCode,
        Kind::DesignerCloud,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Static => "static",
            Kind::Refresh => "refresh",
            Kind::ClientCredentials => "client-credentials",
            Kind::AuthorizationCode => "authorization-code",
            Kind::DesignerCloud => "designer-cloud",
        }
    }

    pub fn parse(s: &str) -> Option<Kind> {
        Self::ALL.into_iter().find(|k| k.as_str() == s)
    }
}

impl std::fmt::Display for Kind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A secret a profile is added with: which field of
/// [`Secrets`](crate::Secrets) it fills.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SecretField {
    AccessToken,
    ClientSecret,
    RefreshToken,
}

/// One secret `a365 add` asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AskedSecret {
    pub field: SecretField,
    /// The prompt.
    pub label: &'static str,
    /// May be left empty (a public client has no secret).
    pub optional: bool,
}

/// The facts of one kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Facts {
    /// The secrets it is added with, in the order they are asked for.
    pub secrets: &'static [AskedSecret],
    /// Its token requests name a client (`--client-id`).
    pub needs_client_id: bool,
    /// The realm offered when none is given; `None`: it has no realm.
    pub default_realm: Option<&'static str>,
    /// It talks to an instance of its own (`--base-url`).
    pub needs_base_url: bool,
    /// It holds a refresh token, which the provider may rotate.
    pub uses_refresh_token: bool,
    /// The agent gets a new token even once the held one has expired;
    /// otherwise an expired token needs the user.
    pub renews_once_expired: bool,
    /// Nothing renews it: the user is warned before it expires.
    pub warns_before_expiry: bool,
    /// It can be shared through a fleet.
    pub shareable: bool,
    /// It sends an OAuth token request (`token_params` apply).
    pub sends_token_requests: bool,
    /// It has a browser login (`authorize_params` apply).
    pub browser_login: bool,
    /// It takes extra request headers (`headers`).
    pub takes_headers: bool,
    /// Its first token can be created from a user name and password
    /// (`--username`), asked for once and never kept.
    pub takes_username: bool,
}

const fn secret(field: SecretField, label: &'static str) -> AskedSecret {
    AskedSecret {
        field,
        label,
        optional: false,
    }
}

const STATIC: Facts = Facts {
    secrets: &[secret(SecretField::AccessToken, "Access token")],
    needs_client_id: false,
    default_realm: None,
    needs_base_url: false,
    uses_refresh_token: false,
    renews_once_expired: false,
    warns_before_expiry: true,
    shareable: false,
    sends_token_requests: false,
    browser_login: false,
    takes_headers: false,
    takes_username: false,
};

const REFRESH: Facts = Facts {
    secrets: &[
        secret(SecretField::ClientSecret, "Client secret"),
        secret(SecretField::RefreshToken, "Refresh token"),
    ],
    needs_client_id: true,
    default_realm: Some("altium365"),
    uses_refresh_token: true,
    renews_once_expired: true,
    warns_before_expiry: false,
    shareable: true,
    sends_token_requests: true,
    ..STATIC
};

const CLIENT_CREDENTIALS: Facts = Facts {
    secrets: &[secret(SecretField::ClientSecret, "Client secret")],
    default_realm: Some("nexar"),
    uses_refresh_token: false,
    ..REFRESH
};

const AUTHORIZATION_CODE: Facts = Facts {
    secrets: &[AskedSecret {
        field: SecretField::ClientSecret,
        label: "Client secret",
        optional: true,
    }],
    default_realm: Some("nexar"),
    shareable: false,
    browser_login: true,
    ..REFRESH
};

const DESIGNER_CLOUD: Facts = Facts {
    secrets: &[secret(SecretField::AccessToken, "Designer Cloud API token")],
    needs_base_url: true,
    warns_before_expiry: false,
    takes_headers: true,
    takes_username: true,
    ..STATIC
};

impl Kind {
    /// This kind's facts.
    pub const fn facts(self) -> &'static Facts {
        match self {
            Kind::Static => &STATIC,
            Kind::Refresh => &REFRESH,
            Kind::ClientCredentials => &CLIENT_CREDENTIALS,
            Kind::AuthorizationCode => &AUTHORIZATION_CODE,
            Kind::DesignerCloud => &DESIGNER_CLOUD,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The table, read back as the decisions that used to be spread over
    /// the agent and the client.
    #[test]
    fn each_kind_states_its_facts() {
        let with = |f: fn(&Facts) -> bool| -> Vec<Kind> {
            Kind::ALL.into_iter().filter(|k| f(k.facts())).collect()
        };
        use Kind::*;
        assert_eq!(
            with(|f| f.needs_client_id),
            [Refresh, ClientCredentials, AuthorizationCode]
        );
        assert_eq!(with(|f| f.uses_refresh_token), [Refresh, AuthorizationCode]);
        assert_eq!(
            with(|f| f.renews_once_expired),
            [Refresh, ClientCredentials, AuthorizationCode]
        );
        assert_eq!(with(|f| f.warns_before_expiry), [Static]);
        assert_eq!(with(|f| f.shareable), [Refresh, ClientCredentials]);
        assert_eq!(
            with(|f| f.sends_token_requests),
            [Refresh, ClientCredentials, AuthorizationCode]
        );
        assert_eq!(with(|f| f.browser_login), [AuthorizationCode]);
        assert_eq!(with(|f| f.takes_headers), [DesignerCloud]);
        assert_eq!(with(|f| f.takes_username), [DesignerCloud]);
        assert_eq!(with(|f| f.needs_base_url), [DesignerCloud]);
        // A kind with a client has a realm to offer, and only those.
        for kind in Kind::ALL {
            let f = kind.facts();
            assert_eq!(f.default_realm.is_some(), f.needs_client_id, "{kind}");
            assert!(!f.secrets.is_empty(), "{kind}");
        }
    }
}
