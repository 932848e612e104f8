//! `a365 exec`: a command run with tokens in its environment, under the
//! names the tools it runs read (`A365_TOKEN` by default, `NEXAR_TOKEN`
//! with `--nexar`, `ALTIUM365_TOKEN` with `--altium`, any with `--env
//! NAME=PROFILE`); with
//! `--refresh-signal`, a signal sent to it after each refresh of those
//! profiles, so that it reads its token again.

use std::ffi::OsString;
use std::path::Path;
use std::process::ExitCode;

use crate::cli::ExecArgs;
use crate::exit::Error;

/// One variable: its name, and whose token it holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Binding {
    pub name: String,
    pub profile: Option<String>,
    pub workspace: Option<String>,
}

/// `NAME=PROFILE[:WORKSPACE]`, checked.
pub(crate) fn parse_binding(text: &str) -> Result<Binding, String> {
    let (name, whose) = text.split_once('=').ok_or_else(|| {
        format!("--env '{text}': write it as NAME=PROFILE or NAME=PROFILE:WORKSPACE")
    })?;
    if !a365_proto::is_variable_name(name) {
        return Err(format!(
            "--env '{text}': '{name}' is not a variable name (letters, digits and _, not starting \
             with a digit)"
        ));
    }
    let (profile, workspace) = match whose.split_once(':') {
        Some((p, w)) if !w.is_empty() => (p, Some(w.to_owned())),
        Some((p, _)) => (p, None),
        None => (whose, None),
    };
    if !a365_proto::is_valid_profile_name(profile) {
        return Err(format!("--env '{text}': '{profile}' is not a profile name"));
    }
    Ok(Binding {
        name: name.to_owned(),
        profile: Some(profile.to_owned()),
        workspace,
    })
}

/// The variables `args` asks for: `--env`s, `--nexar`'s `NEXAR_TOKEN`,
/// `--altium`'s `ALTIUM365_TOKEN`, else `A365_TOKEN`, the last three for
/// the profile named (or default).
pub(crate) fn bindings(args: &ExecArgs) -> Result<Vec<Binding>, String> {
    let mut all: Vec<Binding> = args
        .env
        .iter()
        .map(|e| parse_binding(e))
        .collect::<Result<_, _>>()?;
    let own = |name: &str| Binding {
        name: name.to_owned(),
        profile: args.profile.clone(),
        workspace: None,
    };
    if args.nexar {
        all.push(own("NEXAR_TOKEN"));
    }
    if args.altium {
        all.push(own("ALTIUM365_TOKEN"));
    }
    if all.is_empty() {
        all.push(own("A365_TOKEN"));
    }
    let mut seen = std::collections::HashSet::new();
    if let Some(twice) = all.iter().find(|b| !seen.insert(b.name.clone())) {
        return Err(format!("{} is given twice", twice.name));
    }
    Ok(all)
}

pub fn exec(socket: &Path, args: ExecArgs) -> Result<ExitCode, Error> {
    let bindings = bindings(&args).map_err(Error::Usage)?;
    let (program, rest) = args
        .command
        .split_first()
        .ok_or_else(|| Error::Usage("no command given after --".into()))?;
    let mut command = std::process::Command::new(program);
    command.args(rest);
    let mut watched = Vec::new();
    for b in &bindings {
        let reply = crate::actions::get_token(
            socket,
            b.profile.clone(),
            args.min_valid,
            Vec::new(),
            b.workspace.clone(),
        )?;
        command.env(&b.name, reply.token.expose());
        watched.push(reply.profile);
    }
    let describe = |e: std::io::Error| {
        Error::Other(anyhow::anyhow!(
            "cannot run {}: {e}",
            program.to_string_lossy()
        ))
    };
    match args.refresh_signal {
        None => run(command, describe),
        Some(signal) => supervise(socket, command, &signal, watched, program),
    }
}

/// Becomes the command (Unix), or runs it and ends as it ended.
fn run(
    mut command: std::process::Command,
    describe: impl Fn(std::io::Error) -> Error,
) -> Result<ExitCode, Error> {
    #[cfg(unix)]
    {
        use std::os::unix::process::CommandExt;
        Err(describe(command.exec()))
    }
    #[cfg(not(unix))]
    {
        let status = command.status().map_err(describe)?;
        Ok(ExitCode::from(
            status.code().unwrap_or(1).clamp(0, 255) as u8
        ))
    }
}

/// Runs the command as a child, and sends it `signal` whenever one of
/// `profiles` (or a workspace of theirs) is refreshed; ends as it ended.
#[cfg(unix)]
fn supervise(
    socket: &Path,
    mut command: std::process::Command,
    signal: &str,
    profiles: Vec<String>,
    program: &OsString,
) -> Result<ExitCode, Error> {
    use a365_proto::{Request, Response};
    let signal = parse_signal(signal).map_err(Error::Usage)?;
    let mut watch = crate::autostart::connect(socket)?;
    match watch.call(&Request::Watch { profile: None })? {
        Response::Done { .. } => {}
        Response::Error(reply) => return Err(Error::Agent(reply)),
        _ => return Err(Error::Unexpected),
    }
    let mut child = command.spawn().map_err(|e| {
        Error::Other(anyhow::anyhow!(
            "cannot run {}: {e}",
            program.to_string_lossy()
        ))
    })?;
    let pid = rustix::process::Pid::from_child(&child);
    std::thread::spawn(move || {
        while let Ok(Response::Event(event)) = watch.next_response() {
            let ours = profiles
                .iter()
                .any(|p| event.profile == *p || event.profile.starts_with(&format!("{p}.ws-")));
            if ours && event.kind == a365_proto::EventKind::Refreshed {
                // The child may be gone already: nothing to tell.
                let _ = rustix::process::kill_process(pid, signal);
            }
        }
    });
    let status = child
        .wait()
        .map_err(|e| Error::Other(anyhow::anyhow!("waiting for the command: {e}")))?;
    use std::os::unix::process::ExitStatusExt;
    let code = match (status.code(), status.signal()) {
        (Some(code), _) => code,
        (None, Some(signal)) => 128 + signal,
        (None, None) => 1,
    };
    Ok(ExitCode::from(code.clamp(0, 255) as u8))
}

#[cfg(not(unix))]
fn supervise(
    _socket: &Path,
    _command: std::process::Command,
    _signal: &str,
    _profiles: Vec<String>,
    _program: &OsString,
) -> Result<ExitCode, Error> {
    Err(Error::Usage(
        "--refresh-signal needs Unix signals: on Windows, have the command ask `a365 token` when \
         its token is refused"
            .into(),
    ))
}

/// `HUP`, `SIGHUP`, `hup`: the signals a program reloads on.
#[cfg(unix)]
fn parse_signal(text: &str) -> Result<rustix::process::Signal, String> {
    use rustix::process::Signal;
    let name = text.trim().to_ascii_uppercase();
    let name = name.strip_prefix("SIG").unwrap_or(&name);
    Ok(match name {
        "HUP" => Signal::HUP,
        "USR1" => Signal::USR1,
        "USR2" => Signal::USR2,
        "INT" => Signal::INT,
        "TERM" => Signal::TERM,
        "QUIT" => Signal::QUIT,
        "WINCH" => Signal::WINCH,
        _ => {
            return Err(format!(
                "--refresh-signal '{text}': give HUP, USR1, USR2, INT, TERM, QUIT or WINCH"
            ));
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bindings_are_read_and_checked() {
        assert_eq!(
            parse_binding("NEXAR_TOKEN=nexar").unwrap(),
            Binding {
                name: "NEXAR_TOKEN".into(),
                profile: Some("nexar".into()),
                workspace: None
            }
        );
        let ws = parse_binding("A365_WS=a365:acme.365.altium.com").unwrap();
        assert_eq!(ws.workspace.as_deref(), Some("acme.365.altium.com"));
        for bad in ["NOEQUALS", "1X=p", "A-B=p", "X=", "X=../p"] {
            assert!(parse_binding(bad).is_err(), "{bad}");
        }
    }

    #[cfg(unix)]
    #[test]
    fn signals() {
        assert_eq!(
            parse_signal("SIGHUP").unwrap(),
            rustix::process::Signal::HUP
        );
        assert_eq!(parse_signal("usr1").unwrap(), rustix::process::Signal::USR1);
        assert!(parse_signal("KILL").is_err());
    }
}
