//! One function per command: connect, send one request, print the answer.

use std::io::IsTerminal;
use std::path::Path;

use a365_proto::{Client, ErrorKind, ProfileStatus, Request, Response, TokenReply, TokenRequest};

use crate::cli::{StoreCommand, TokenArgs};
use crate::exit::Error;
use crate::output;

pub(crate) fn call(socket: &Path, request: &Request) -> Result<Response, Error> {
    match crate::autostart::connect(socket)?.call(request)? {
        Response::Error(reply) => Err(Error::Agent(reply)),
        response => Ok(response),
    }
}

pub(crate) fn get_token(
    socket: &Path,
    profile: Option<String>,
    min_valid_ms: u64,
    scopes: Vec<String>,
    workspace: Option<String>,
) -> Result<TokenReply, Error> {
    let request = Request::Token(TokenRequest {
        profile,
        min_valid_ms,
        scopes,
        workspace,
    });
    match call(socket, &request)? {
        Response::Token(reply) => Ok(reply),
        _ => Err(Error::Unexpected),
    }
}

pub fn token(socket: &Path, args: TokenArgs) -> Result<(), Error> {
    let reply = get_token(
        socket,
        args.profile,
        args.min_valid,
        args.scopes,
        args.workspace,
    )?;
    let var = match (args.nexar || args.altium, args.var.as_deref()) {
        (true, _) if args.altium => "ALTIUM365_TOKEN",
        (true, _) => "NEXAR_TOKEN",
        (false, Some(name)) => {
            if !a365_proto::is_variable_name(name) {
                return Err(Error::Usage(format!(
                    "--var '{name}' is not a variable name (letters, digits and _)"
                )));
            }
            name
        }
        (false, None) => "A365_TOKEN",
    };
    let bytes = output::token(&reply, args.format, var).map_err(|e| Error::Other(e.into()))?;
    output::to_stdout(&bytes)
}

/// `a365 default [PROFILE]`: names the default profile, or sets it.
pub fn default(socket: &Path, profile: Option<String>) -> Result<(), Error> {
    if let Some(profile) = profile {
        return match call(socket, &Request::SetDefault { profile })? {
            Response::Done { message } => {
                eprintln!("a365: {}", output::clean(&message, true));
                Ok(())
            }
            _ => Err(Error::Unexpected),
        };
    }
    let profiles = all_statuses(socket)?;
    match profiles.iter().find(|p| p.is_default) {
        Some(p) => output::to_stdout(format!("{}\n", output::clean(&p.name, false)).as_bytes()),
        None => Err(Error::Other(anyhow::anyhow!(
            "no default profile: `a365 token` needs a name (or A365_PROFILE); set one with \
             `a365 default PROFILE`"
        ))),
    }
}

/// `a365 workspaces`: a table, or JSON.
pub fn workspaces(socket: &Path, profile: Option<String>, json: bool) -> Result<(), Error> {
    let list = match call(socket, &Request::Workspaces { profile })? {
        Response::Workspaces(list) => list,
        _ => return Err(Error::Unexpected),
    };
    let text = match json {
        true => {
            let mut text = serde_json::to_string_pretty(&list).unwrap_or_else(|_| "[]".into());
            text.push('\n');
            text
        }
        false => output::workspaces_table(&list),
    };
    output::to_stdout(text.as_bytes())
}

/// `a365 set PROFILE KEY VALUE`.
pub fn set(socket: &Path, profile: String, key: String, value: String) -> Result<(), Error> {
    let value = match key.as_str() {
        "ca_file" if !value.is_empty() => crate::add::absolute(value),
        _ => value,
    };
    done(call(
        socket,
        &Request::Set {
            profile,
            key,
            value,
        },
    )?)
}

pub fn status(socket: &Path, profile: Option<&str>, json: bool, wide: bool) -> Result<(), Error> {
    let mut profiles = all_statuses(socket)?;
    if let Some(name) = profile {
        profiles.retain(|p| p.name == name);
        if profiles.is_empty() {
            return Err(Error::Agent(a365_proto::ErrorReply::new(
                ErrorKind::UnknownProfile,
                format!("no profile named '{}'", name.escape_default()),
            )));
        }
    }
    let now = jiff::Timestamp::now().as_second();
    let text = match (json, profile) {
        (true, _) => output::status_json(&profiles),
        (false, Some(_)) => crate::status::details(&profiles[0], now),
        (false, None) => {
            // Colour only for a person at a terminal who has not opted out.
            let colour = std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none();
            let mut text = crate::status::table(&profiles, now, colour, wide);
            // The routes too, when there are any (an older agent has none).
            if let Ok(Response::Routes(routes)) = call(socket, &Request::ProxyList) {
                let routes = crate::proxy::table(&routes);
                if !routes.is_empty() {
                    text.push_str(&format!(
                        "\nproxy routes (`a365 proxy list NAME`):\n{routes}"
                    ));
                }
            }
            text
        }
    };
    output::to_stdout(text.as_bytes())
}

/// Every profile's status, a page at a time on one connection: a single
/// `status` answer holds only as many profiles as fit in one message.
pub(crate) fn all_statuses(socket: &Path) -> Result<Vec<ProfileStatus>, Error> {
    let mut client = crate::autostart::connect(socket)?;
    let mut profiles = Vec::new();
    let mut after = None;
    loop {
        let first = after.is_none();
        match client.call(&Request::StatusPage {
            after: after.take(),
        })? {
            Response::StatusPage {
                profiles: page,
                next,
            } => {
                profiles.extend(page);
                match next {
                    Some(name) => after = Some(name),
                    None => return Ok(profiles),
                }
            }
            // An agent from before status pages: one answer holds all.
            Response::Error(reply) if reply.kind == ErrorKind::BadRequest && first => {
                return match call(socket, &Request::Status)? {
                    Response::Status(all) => Ok(all),
                    _ => Err(Error::Unexpected),
                };
            }
            Response::Error(reply) => return Err(Error::Agent(reply)),
            _ => return Err(Error::Unexpected),
        }
    }
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

pub fn remove(socket: &Path, profile: String, keep_remote: bool) -> Result<(), Error> {
    done(call(
        socket,
        &Request::RemoveProfile {
            name: profile,
            keep_remote,
        },
    )?)
}

pub fn refresh(socket: &Path, profile: Option<String>) -> Result<(), Error> {
    done(call(socket, &Request::Refresh { profile })?)
}

/// Never starts an agent: it answers whether one runs.
pub fn ping(socket: &Path) -> Result<(), Error> {
    match Client::connect(socket)?.call(&Request::Ping)? {
        Response::Pong {
            protocol,
            agent_version,
            pid,
        } => {
            let line = format!(
                "a365-agent {} (protocol {protocol}), pid {pid}, at {}\n",
                output::clean(&agent_version, false),
                socket.display()
            );
            output::to_stdout(line.as_bytes())
        }
        Response::Error(reply) => Err(Error::Agent(reply)),
        _ => Err(Error::Unexpected),
    }
}

/// `a365 doctor`: the agent's version against ours, then the agent's
/// own checks, one line each (or one JSON object each). Never starts an
/// agent: without one it fails at once (exit 3), saying how to start it.
pub fn doctor(socket: &Path, profile: Option<String>, json: bool) -> Result<(), Error> {
    use a365_proto::{Check, Verdict};
    let mut client = Client::connect(socket)?;
    let ours = env!("CARGO_PKG_VERSION");
    let agent = match client.call(&Request::Ping)? {
        Response::Pong {
            protocol,
            agent_version,
            pid,
        } if agent_version == ours => check(
            "agent",
            Verdict::Pass,
            format!(
                "a365-agent {agent_version} (protocol {protocol}), pid {pid}, at {}",
                socket.display()
            ),
        ),
        Response::Pong {
            agent_version, pid, ..
        } => check(
            "agent",
            Verdict::Warn,
            format!(
                "a365-agent {agent_version} (pid {pid}) is not this a365's release ({ours}): \
                 restart it (a365-agent --kill) to run the installed one"
            ),
        ),
        Response::Error(reply) => return Err(Error::Agent(reply)),
        _ => return Err(Error::Unexpected),
    };
    let mut checks: Vec<Check> = vec![agent];
    match client.call(&Request::Doctor { profile })? {
        Response::Doctor(found) => checks.extend(found),
        Response::Error(reply) => return Err(Error::Agent(reply)),
        _ => return Err(Error::Unexpected),
    }
    print_checks(&checks, json)?;
    let failed = checks.iter().filter(|c| c.verdict == Verdict::Fail).count();
    match failed {
        0 => Ok(()),
        n => Err(Error::Other(anyhow::anyhow!(
            "{n} of {} checks failed",
            checks.len()
        ))),
    }
}

fn check(subject: &str, verdict: a365_proto::Verdict, detail: String) -> a365_proto::Check {
    a365_proto::Check {
        subject: subject.to_owned(),
        verdict,
        detail,
    }
}

fn print_checks(checks: &[a365_proto::Check], json: bool) -> Result<(), Error> {
    let mut text = String::new();
    for c in checks {
        if json {
            let line = serde_json::json!({
                "subject": c.subject, "verdict": c.verdict, "detail": c.detail,
            });
            text.push_str(&format!("{line}\n"));
        } else {
            text.push_str(&format!(
                "{:<4}  {}: {}\n",
                c.verdict.as_str(),
                output::clean(&c.subject, false),
                output::clean(&c.detail, false)
            ));
        }
    }
    output::to_stdout(text.as_bytes())
}

/// Runs the command with `A365_TOKEN` in its environment (never argv). On
/// Unix the process becomes the command, so its exit status is ours.
pub(crate) fn done(response: Response) -> Result<(), Error> {
    match response {
        Response::Done { message } => {
            eprintln!("a365: {}", output::clean(&message, true));
            Ok(())
        }
        _ => Err(Error::Unexpected),
    }
}

/// `a365 man`: the page for `a365` on stdout, or every command's page
/// (`a365.1`, `a365-token.1`, …) written into `out_dir`.
pub fn man(out_dir: Option<&Path>) -> Result<(), Error> {
    use clap::CommandFactory;
    let command = crate::cli::Cli::command();
    let failed = |e: std::io::Error| Error::Other(anyhow::anyhow!("writing the man page: {e}"));
    match out_dir {
        None => clap_mangen::Man::new(command)
            .render(&mut std::io::stdout())
            .map_err(failed),
        Some(dir) => {
            std::fs::create_dir_all(dir).map_err(failed)?;
            clap_mangen::generate_to(command, dir).map_err(failed)?;
            eprintln!("a365: man pages written to {}", dir.display());
            Ok(())
        }
    }
}

/// `a365 watch`: one line per event, flushed at once (for pipes).
pub fn watch(socket: &Path, profile: Option<String>, json: bool) -> Result<(), Error> {
    let mut client = crate::autostart::connect(socket)?;
    match client.call(&Request::Watch { profile })? {
        Response::Done { message } => eprintln!("a365: {}", output::clean(&message, true)),
        Response::Error(reply) => return Err(Error::Agent(reply)),
        _ => return Err(Error::Unexpected),
    }
    loop {
        let Response::Event(event) = client.next_response()? else {
            return Err(Error::Unexpected);
        };
        let line = if json {
            serde_json::to_string(&event).unwrap_or_default()
        } else {
            format!(
                "{}  {}  {}  {}",
                jiff::Timestamp::now().strftime("%Y-%m-%dT%H:%M:%SZ"),
                output::clean(&event.profile, false),
                event.kind.as_str(),
                output::clean(&event.message, false)
            )
        };
        output::to_stdout(format!("{line}\n").as_bytes())?;
    }
}
