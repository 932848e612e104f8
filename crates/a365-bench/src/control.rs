//! Setting the agent up over its socket with a365-proto's own client:
//! its pid, and profiles added without running `a365 add` each time.

use std::path::Path;

use a365_proto::{
    AddProfile, Client, Kind, ProfileSpec, Request, Response, Secrets, StoreKind, WireSecret,
};
use anyhow::{Context, bail};
use secrecy::SecretString;
use serde::Deserialize;

/// The agent's pid, from `ping`.
pub fn agent_pid(control: &mut Client) -> anyhow::Result<i32> {
    match control.call(&Request::Ping)? {
        Response::Pong { pid, .. } => i32::try_from(pid).context("the agent sent an invalid pid"),
        other => bail!("unexpected answer to ping: {other:?}"),
    }
}

/// The pid of the agent listening on `socket`.
pub fn pid_at(socket: &Path) -> anyhow::Result<u32> {
    let mut control = Client::connect(socket)?;
    agent_pid(&mut control).map(|pid| pid.unsigned_abs())
}

/// Adds (or replaces) a `refresh` profile kept in the memory store; returns
/// once the agent has made its first token exchange.
pub fn add_refresh_profile(
    control: &mut Client,
    name: &str,
    token_url: &str,
    client_id: &str,
    client_secret: &str,
    refresh_token: &str,
) -> anyhow::Result<()> {
    let add = Request::AddProfile(AddProfile {
        name: name.into(),
        spec: ProfileSpec {
            kind: Kind::Refresh,
            token_url: Some(token_url.into()),
            client_id: Some(client_id.into()),
            store: Some(StoreKind::Memory),
            ..ProfileSpec::default()
        },
        secrets: Secrets {
            client_secret: Some(wire_secret(client_secret)),
            refresh_token: Some(wire_secret(refresh_token)),
            access_token: None,
            ..Secrets::default()
        },
        replace: true,
        check_only: false,
        shared: false,
    });
    match control.call(&add)? {
        Response::Done { message } if message.contains("a token was obtained") => Ok(()),
        Response::Done { message } => bail!("profile '{name}' added without a token: {message}"),
        Response::Error(e) => bail!("adding profile '{name}': {}", e.message),
        other => bail!("unexpected answer to add: {other:?}"),
    }
}

fn wire_secret(value: &str) -> WireSecret {
    WireSecret::new(SecretString::from(value.to_owned()))
}

/// What `a365-token-server --write-secrets` writes.
#[derive(Deserialize)]
pub struct SecretsFile {
    pub client_secret: String,
    pub refresh_token: String,
}

impl SecretsFile {
    pub fn read(path: &Path) -> anyhow::Result<SecretsFile> {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        serde_json::from_str(&text)
            .with_context(|| format!("{} is not a secrets file", path.display()))
    }
}

/// Adds `count` profiles (see [`profile_name`]) over the socket, all with
/// the same credential: the token server must not rotate refresh tokens
/// (`a365-token-server --no-rotate`).
pub fn add_profiles(
    socket: &Path,
    count: usize,
    token_url: &str,
    client_id: &str,
    secrets: &Path,
) -> anyhow::Result<()> {
    let secrets = SecretsFile::read(secrets)?;
    let mut control = Client::connect(socket)?;
    for i in 0..count {
        add_refresh_profile(
            &mut control,
            &profile_name(i),
            token_url,
            client_id,
            &secrets.client_secret,
            &secrets.refresh_token,
        )?;
    }
    Ok(())
}

/// `p00000`, `p00001`, …: sorted as numbered.
pub fn profile_name(i: usize) -> String {
    format!("p{i:05}")
}

/// How many profiles the agent holds.
pub fn profile_count(socket: &Path) -> anyhow::Result<usize> {
    let mut control = Client::connect(socket)?;
    match control.call(&Request::Status)? {
        Response::Status(profiles) => Ok(profiles.len()),
        other => bail!("unexpected answer to status: {other:?}"),
    }
}
