//! One function per command: connect, send one request, print the answer.

use std::io::Write;
use std::path::Path;

use a365_proto::{
    AddProfile, Client, Kind, ProfileSpec, Request, Response, TokenReply, TokenRequest,
};

use crate::cli::{AddArgs, ExecArgs, StoreCommand, TokenArgs};
use crate::exit::Error;
use crate::{output, secrets};

fn call(socket: &Path, request: &Request) -> Result<Response, Error> {
    match Client::connect(socket)?.call(request)? {
        Response::Error(reply) => Err(Error::Agent(reply)),
        response => Ok(response),
    }
}

fn get_token(
    socket: &Path,
    profile: Option<String>,
    min_valid_ms: u64,
    scopes: Vec<String>,
) -> Result<TokenReply, Error> {
    let request = Request::Token(TokenRequest {
        profile,
        min_valid_ms,
        scopes,
    });
    match call(socket, &request)? {
        Response::Token(reply) => Ok(reply),
        _ => Err(Error::Unexpected),
    }
}

pub fn token(socket: &Path, args: TokenArgs) -> Result<(), Error> {
    let reply = get_token(socket, args.profile, args.min_valid, args.scopes)?;
    let bytes = output::token(&reply, args.format);
    let mut stdout = std::io::stdout().lock();
    stdout
        .write_all(&bytes)
        .and_then(|()| stdout.flush())
        .map_err(|e| Error::Other(anyhow::anyhow!("writing the token: {e}")))
}

pub fn status(socket: &Path, json: bool) -> Result<(), Error> {
    let Response::Status(profiles) = call(socket, &Request::Status)? else {
        return Err(Error::Unexpected);
    };
    let text = if json {
        output::status_json(&profiles)
    } else {
        output::status_table(&profiles, jiff::Timestamp::now().as_second())
    };
    print!("{text}");
    Ok(())
}

pub fn add(socket: &Path, args: AddArgs) -> Result<(), Error> {
    let kind = Kind::parse(&args.kind)
        .ok_or_else(|| Error::Usage(format!("unknown kind '{}'", args.kind)))?;
    let secrets = match &args.secrets_from {
        Some(path) => secrets::from_file(path)?,
        None => secrets::prompt(kind.as_str())?,
    };
    let secure = match (args.secure, args.no_secure) {
        (true, _) => Some(true),
        (_, true) => Some(false),
        _ => None,
    };
    let spec = ProfileSpec {
        kind,
        realm: args.realm,
        token_url: args.token_url,
        client_id: args.client_id,
        scopes: args.scopes,
        secure,
        store: args.store.map(Into::into),
    };
    let request = Request::AddProfile(AddProfile {
        name: args.profile,
        spec,
        secrets,
        replace: args.replace,
    });
    done(call(socket, &request)?)
}

pub fn store(socket: &Path, command: StoreCommand) -> Result<(), Error> {
    match command {
        StoreCommand::Migrate { to, profile } => done(call(
            socket,
            &Request::MigrateStore {
                to: to.into(),
                profile,
            },
        )?),
    }
}

pub fn remove(socket: &Path, profile: String) -> Result<(), Error> {
    done(call(socket, &Request::RemoveProfile { name: profile })?)
}

pub fn refresh(socket: &Path, profile: Option<String>) -> Result<(), Error> {
    done(call(socket, &Request::Refresh { profile })?)
}

pub fn ping(socket: &Path) -> Result<(), Error> {
    match call(socket, &Request::Ping)? {
        Response::Pong {
            protocol,
            agent_version,
            pid,
        } => {
            println!(
                "a365-agent {agent_version} (protocol {protocol}), pid {pid}, at {}",
                socket.display()
            );
            Ok(())
        }
        _ => Err(Error::Unexpected),
    }
}

/// Runs the command with `A365_TOKEN` in its environment (never argv). On
/// Unix the process becomes the command, so its exit status is ours.
pub fn exec(socket: &Path, args: ExecArgs) -> Result<std::process::ExitCode, Error> {
    let reply = get_token(socket, args.profile, args.min_valid, Vec::new())?;
    let (program, rest) = args
        .command
        .split_first()
        .ok_or_else(|| Error::Usage("no command given after --".into()))?;
    let mut command = std::process::Command::new(program);
    command.args(rest).env("A365_TOKEN", reply.token.expose());
    let describe = |e: std::io::Error| {
        Error::Other(anyhow::anyhow!(
            "cannot run {}: {e}",
            program.to_string_lossy()
        ))
    };
    #[cfg(unix)]
    {
        use std::os::unix::process::CommandExt;
        Err(describe(command.exec()))
    }
    #[cfg(not(unix))]
    {
        let status = command.status().map_err(describe)?;
        Ok(std::process::ExitCode::from(
            status.code().unwrap_or(1).clamp(0, 255) as u8,
        ))
    }
}

fn done(response: Response) -> Result<(), Error> {
    match response {
        Response::Done { message } => {
            eprintln!("a365: {message}");
            Ok(())
        }
        _ => Err(Error::Unexpected),
    }
}
