//! `a365 add`: the kind, the settings the kind needs (asked for on a
//! terminal, each checked by the agent as it is given), the secrets, and
//! the one request that adds the profile.

use std::io::IsTerminal;
use std::path::Path;

use a365_proto::{AddProfile, Kind, ProfileSpec, Request, Response, SecretField};

use crate::actions::{call, done};
use crate::cli::AddArgs;
use crate::exit::Error;
use crate::{output, secrets};

pub fn add(socket: &Path, mut args: AddArgs) -> Result<(), Error> {
    if let Some(which) = args.update_secret.take() {
        return update_secret(socket, args, &which);
    }
    let interactive = std::io::stdin().is_terminal() && args.secrets_from.is_none();
    let kind = ask_kind(args.kind.take(), interactive)?;
    if args.username.is_some() && !kind.facts().takes_username {
        return Err(Error::Usage(
            "--username creates the first token of a designer-cloud profile only".into(),
        ));
    }
    if args.secrets_from.is_none() {
        secrets::require_terminal()?;
    }
    let authorize_params = unique_params("--authorize-param", &args.authorize_params)?;
    let token_params = unique_params("--token-param", &args.token_params)?;
    let headers = unique_params("--header", &args.headers)?;
    let mut spec = ProfileSpec {
        kind,
        realm: args.realm.take(),
        token_url: args.token_url.take(),
        client_id: args.client_id.take(),
        scopes: std::mem::take(&mut args.scopes),
        secure: match (args.secure, args.no_secure) {
            (true, _) => Some(true),
            (_, true) => Some(false),
            _ => None,
        },
        store: args.store.map(Into::into),
        authorize_url: args.authorize_url.take(),
        redirect_uri: args.redirect_uri.take(),
        base_url: args.base_url.take(),
        renew_lifetime_secs: args.renew_lifetime.map(|ms| ms / 1000),
        client_auth: args.client_auth.map(Into::into),
        revocation_url: args.revocation_url.take(),
        introspection_url: args.introspection_url.take(),
        workspace: args.workspace.take(),
        workspace_of: None,
        ca_file: args.ca_file.take().map(absolute),
        authorize_params,
        token_params,
        headers,
        limits: args.limits.take().unwrap_or_default(),
    };
    if interactive {
        ask_settings(socket, &args.profile, &mut spec)?;
    }
    // Everything but the secrets, checked by the agent before a secret is
    // typed or read: a mistake never costs a one-time refresh token.
    check_settings(socket, &args.profile, &spec, args.replace)?;
    // Said before a secret is read or sent, not after the first exchange.
    if let Some(url) = plain_http_url(&spec) {
        let note = a365_proto::plain_http_note(kind, url, args.username.is_some());
        eprintln!("a365: {}", output::clean(&note, false));
    }
    let mut secrets = match &args.secrets_from {
        Some(path) => secrets::from_file(path, kind)?,
        None => secrets::prompt(kind, args.username.as_deref())?,
    };
    for note in secrets::tidy(&mut secrets) {
        eprintln!("a365: {note}");
    }
    secrets::check_characters(&secrets)?;
    secrets.username = args.username;
    // Short: the line is redrawn in place, and must not wrap.
    let waiting = match kind.facts().sends_token_requests && !kind.facts().browser_login {
        true => "a365: getting a first token from the token server…",
        false => "a365: saving the profile…",
    };
    let request = Request::AddProfile(AddProfile {
        name: args.profile,
        spec,
        secrets,
        replace: args.replace,
        check_only: false,
        shared: args.shared,
    });
    let answer = {
        let _progress = crate::progress::Progress::start(waiting.to_owned());
        call(socket, &request)
    };
    done(answer?)
}

/// A path as the agent, which runs elsewhere, must get it: absolute.
pub(crate) fn absolute(path: String) -> String {
    match std::path::absolute(&path) {
        Ok(full) => full.to_string_lossy().into_owned(),
        Err(_) => path,
    }
}

/// `add PROFILE --update-secret WHICH`: that one secret, from a file or
/// a hidden prompt, sent to replace the profile's.
fn update_secret(socket: &Path, args: AddArgs, which: &str) -> Result<(), Error> {
    let (field, label) = match which {
        "client-secret" => (SecretField::ClientSecret, "Client secret"),
        "refresh-token" => (SecretField::RefreshToken, "Refresh token"),
        _ => (SecretField::AccessToken, "Access token"),
    };
    let mut secrets = match &args.secrets_from {
        Some(path) => secrets::from_file_one(path, field)?,
        None => secrets::prompt_one(field, label)?,
    };
    for note in secrets::tidy(&mut secrets) {
        eprintln!("a365: {note}");
    }
    secrets::check_characters(&secrets)?;
    let request = Request::UpdateSecret {
        profile: args.profile,
        secrets,
    };
    let answer = {
        let waiting = "a365: checking the new secret with the token server…".to_owned();
        let _progress = crate::progress::Progress::start(waiting);
        call(socket, &request)
    };
    done(answer?)
}

/// The first of a profile's URLs that is plain HTTP (the agent allows it
/// to loopback only, and checked that before this is asked).
fn plain_http_url(spec: &ProfileSpec) -> Option<&str> {
    [
        &spec.token_url,
        &spec.base_url,
        &spec.revocation_url,
        &spec.introspection_url,
    ]
    .into_iter()
    .flatten()
    .map(String::as_str)
    .find(|url| {
        url.get(..7)
            .is_some_and(|s| s.eq_ignore_ascii_case("http://"))
    })
}

/// The kind from `--kind`, or asked for on a terminal (again after an
/// unknown answer).
fn ask_kind(given: Option<String>, interactive: bool) -> Result<Kind, Error> {
    const KINDS: &str = "static, refresh, client-credentials, authorization-code, designer-cloud";
    if let Some(name) = given {
        return Kind::parse(&name)
            .ok_or_else(|| Error::Usage(format!("unknown kind '{name}' ({KINDS})")));
    }
    if !interactive {
        return Err(Error::Usage(format!(
            "--kind is required when not on a terminal ({KINDS})"
        )));
    }
    ask_until(&format!("Kind ({KINDS})"), |answer| {
        Kind::parse(answer).ok_or_else(|| format!("unknown kind '{answer}'"))
    })
}

/// Asks `label` until `accept` takes the answer (three tries), saying why
/// each refused one was refused; an empty answer reaches `accept` as "".
fn ask_until<T>(
    label: &str,
    mut accept: impl FnMut(&str) -> Result<T, String>,
) -> Result<T, Error> {
    let mut last = String::new();
    for _ in 0..3 {
        let answer = secrets::ask_plain(label)?.unwrap_or_default();
        match accept(&answer) {
            Ok(value) => return Ok(value),
            Err(why) => {
                eprintln!("a365: {}", output::clean(&why, true));
                last = why;
            }
        }
    }
    Err(Error::Usage(format!(
        "no usable answer after three tries: {last}"
    )))
}

/// The agent's verdict on everything but the secrets.
fn check_settings(
    socket: &Path,
    name: &str,
    spec: &ProfileSpec,
    replace: bool,
) -> Result<(), Error> {
    let request = Request::AddProfile(AddProfile {
        name: name.to_owned(),
        spec: spec.clone(),
        secrets: a365_proto::Secrets::default(),
        replace,
        check_only: true,
        shared: false,
    });
    match call(socket, &request)? {
        Response::Done { .. } => Ok(()),
        _ => Err(Error::Unexpected),
    }
}

/// On a terminal, asks for the settings the kind needs that flags left
/// out, each checked by the agent as it is given. The realm prompt also
/// takes a token URL.
fn ask_settings(socket: &Path, name: &str, spec: &mut ProfileSpec) -> Result<(), Error> {
    let facts = spec.kind.facts();
    // Settings alone: the name and the client id are checked at the end.
    let settings_ok = |spec: &ProfileSpec| -> Result<(), String> {
        let mut probe = spec.clone();
        probe.client_id.get_or_insert_with(|| "-".into());
        match check_settings(socket, name, &probe, true) {
            Ok(()) => Ok(()),
            Err(Error::Agent(reply)) => Err(reply.message),
            Err(e) => Err(e.to_string()),
        }
    };
    if facts.needs_base_url && spec.base_url.is_none() {
        ask_until("Designer Cloud base URL (https://…)", |answer| {
            spec.base_url = Some(answer.to_owned());
            settings_ok(spec)
        })?;
    }
    if let Some(default) = facts.default_realm
        && spec.realm.is_none()
        && spec.token_url.is_none()
    {
        let label = format!("Realm (altium365, altium365-gov, nexar) or token URL [{default}]");
        ask_until(&label, |answer| {
            let answer = if answer.is_empty() { default } else { answer };
            if answer.contains("://") {
                (spec.realm, spec.token_url) = (None, Some(answer.to_owned()));
            } else {
                (spec.realm, spec.token_url) = (Some(answer.to_owned()), None);
            }
            settings_ok(spec)
        })?;
    }
    if facts.needs_client_id && spec.client_id.is_none() {
        let id = ask_until("Client id", |answer| match answer {
            "" => Err("a client id is needed".to_owned()),
            id => Ok(id.to_owned()),
        })?;
        spec.client_id = Some(id);
    }
    Ok(())
}

/// The `NAME=VALUE` pairs of one flag as a map; a name given twice is a
/// mistake, not a choice of the last one.
fn unique_params(
    flag: &str,
    pairs: &[(String, String)],
) -> Result<std::collections::BTreeMap<String, String>, Error> {
    let mut map = std::collections::BTreeMap::new();
    for (name, value) in pairs {
        if map.insert(name.clone(), value.clone()).is_some() {
            return Err(Error::Usage(format!("{flag} {name}=… is given twice")));
        }
    }
    Ok(map)
}
