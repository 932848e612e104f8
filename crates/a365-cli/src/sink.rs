//! `a365 sink add|list|remove`: files the agent keeps holding a profile's
//! current token.

use std::path::Path;

use a365_proto::{FileSink, Request, Response, SinkStatus};

use crate::actions::{call, done};
use crate::cli::SinkCommand;
use crate::exit::Error;
use crate::output;

pub fn run(socket: &Path, command: SinkCommand) -> Result<(), Error> {
    match command {
        SinkCommand::Add {
            name,
            path,
            profile,
            workspace,
            format,
            no_newline,
            var,
            group,
            command,
            replace,
        } => {
            // The agent's working directory is not the user's.
            let path = std::path::absolute(&path)
                .map_err(|e| Error::Usage(format!("{}: {e}", path.display())))?;
            let profile = match profile {
                Some(p) => p,
                None => crate::proxy::default_profile(socket)?,
            };
            let sink = FileSink {
                name,
                path: path.to_string_lossy().into_owned(),
                profile,
                workspace,
                format,
                newline: !no_newline,
                var,
                group,
                command,
            };
            done(call(socket, &Request::SinkAdd { sink, replace })?)
        }
        SinkCommand::List { json } => list(socket, json),
        SinkCommand::Remove { name } => done(call(socket, &Request::SinkRemove { name })?),
    }
}

fn list(socket: &Path, json: bool) -> Result<(), Error> {
    let sinks = match call(socket, &Request::SinkList)? {
        Response::Sinks(sinks) => sinks,
        _ => return Err(Error::Unexpected),
    };
    if json {
        let list: Vec<serde_json::Value> = sinks.iter().map(to_json).collect();
        let text = serde_json::to_string_pretty(&list).map_err(|e| Error::Other(e.into()))?;
        return output::to_stdout(format!("{text}\n").as_bytes());
    }
    if sinks.is_empty() {
        return output::to_stdout(b"no sinks (a365 sink add NAME --path FILE --profile P)\n");
    }
    let now = jiff::Timestamp::now().as_second();
    let mut out = String::new();
    for s in &sinks {
        let state = match (&s.error, s.written_at) {
            (Some(why), _) => format!("NO TOKEN: {why}"),
            (None, Some(at)) => format!(
                "written {} ago ({} writes)",
                output::expires_in(now.saturating_sub(at)),
                s.writes
            ),
            (None, None) => "not written yet".into(),
        };
        out.push_str(&format!(
            "{}  {}  {} ({})  {}\n",
            s.sink.name,
            s.sink.path,
            s.sink.profile,
            s.sink.format.as_str(),
            state
        ));
    }
    output::to_stdout(output::clean(&out, true).as_bytes())
}

fn to_json(s: &SinkStatus) -> serde_json::Value {
    serde_json::json!({
        "name": s.sink.name,
        "path": s.sink.path,
        "profile": s.sink.profile,
        "workspace": s.sink.workspace,
        "format": s.sink.format.as_str(),
        "newline": s.sink.newline,
        "var": s.sink.var,
        "group": s.sink.group,
        "command": s.sink.command,
        "written_at": s.written_at,
        "expires_at": s.expires_at,
        "writes": s.writes,
        "error": s.error,
    })
}
