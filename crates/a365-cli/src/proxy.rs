//! `a365 proxy add|list|remove`: local routes where the agent forwards
//! requests to an API with a profile's token.

use std::path::Path;

use a365_proto::{ProxyRoute, Request, Response, RouteStatus};

use crate::actions::{call, done};
use crate::cli::ProxyCommand;
use crate::exit::Error;
use crate::output;

pub fn run(socket: &Path, command: ProxyCommand) -> Result<(), Error> {
    match command {
        ProxyCommand::Add {
            name,
            profile,
            upstream,
            listen,
            workspace,
            header,
            require_secret,
            allow_origin,
            replace,
        } => {
            let upstream = match upstream {
                Some(url) => url,
                None => a365_proto::preset(&name, workspace.as_deref()).ok_or_else(|| {
                    usage(format!(
                        "'{name}' is not a known API ({}): give --upstream URL",
                        a365_proto::PRESETS
                            .iter()
                            .map(|(n, _)| *n)
                            .collect::<Vec<_>>()
                            .join(", ")
                    ))
                })?,
            };
            let profile = match profile {
                Some(p) => p,
                None => default_profile(socket)?,
            };
            let mut headers = std::collections::BTreeMap::new();
            for h in header {
                let (k, v) = h
                    .split_once(':')
                    .ok_or_else(|| usage(format!("--header '{h}': write it as 'Name: value'")))?;
                headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_owned());
            }
            let route = ProxyRoute {
                name,
                // Empty: the agent keeps a replaced route's address, else
                // picks a free port.
                listen: listen.unwrap_or_default(),
                upstream,
                profile,
                workspace,
                headers,
                require_secret,
                allow_origins: allow_origin,
            };
            done(call(socket, &Request::ProxyAdd { route, replace })?)
        }
        ProxyCommand::List { name, json } => list(socket, name.as_deref(), json),
        ProxyCommand::Remove { name } => done(call(socket, &Request::ProxyRemove { name })?),
    }
}

fn usage(message: String) -> Error {
    Error::Usage(message)
}

/// The profile a route without `--profile` uses: the default one.
pub(crate) fn default_profile(socket: &Path) -> Result<String, Error> {
    crate::actions::all_statuses(socket)?
        .into_iter()
        .find(|p| p.is_default)
        .map(|p| p.name)
        .ok_or_else(|| usage("which profile's token? give --profile PROFILE".into()))
}

fn list(socket: &Path, name: Option<&str>, json: bool) -> Result<(), Error> {
    let mut routes = match call(socket, &Request::ProxyList)? {
        Response::Routes(routes) => routes,
        _ => return Err(Error::Unexpected),
    };
    if let Some(name) = name {
        routes.retain(|r| r.route.name == name);
        if routes.is_empty() {
            return Err(usage(format!(
                "no proxy route named '{}'",
                name.escape_default()
            )));
        }
    }
    if json {
        let list: Vec<serde_json::Value> = routes.iter().map(to_json).collect();
        let text = serde_json::to_string_pretty(&list).map_err(|e| Error::Other(e.into()))?;
        return output::to_stdout(format!("{text}\n").as_bytes());
    }
    let text = match name {
        Some(_) => routes.iter().map(details).collect::<Vec<_>>().join("\n"),
        None => table(&routes),
    };
    output::to_stdout(text.as_bytes())
}

/// The table `proxy list` and `status` print (empty without routes).
pub fn table(routes: &[RouteStatus]) -> String {
    if routes.is_empty() {
        return String::new();
    }
    let rows: Vec<[String; 5]> = routes
        .iter()
        .map(|r| {
            let state = match &r.error {
                Some(_) => "NOT SERVED".to_owned(),
                None => format!("{}/{}", r.served, r.replays),
            };
            [
                output::clean(&r.route.name, false).into_owned(),
                r.url.clone(),
                output::clean(&r.route.profile, false).into_owned(),
                state,
                r.route.upstream.clone(),
            ]
        })
        .collect();
    let head = ["ROUTE", "URL", "PROFILE", "REQ/REPLAYED", "UPSTREAM"];
    let widths: Vec<usize> = (0..5)
        .map(|i| {
            rows.iter()
                .map(|r| r[i].chars().count())
                .chain([head[i].len()])
                .max()
                .unwrap_or(0)
        })
        .collect();
    let line = |cells: [&str; 5]| {
        let mut out = String::new();
        for (i, cell) in cells.iter().enumerate() {
            match i {
                4 => out.push_str(cell),
                _ => out.push_str(&format!("{cell:<w$}  ", w = widths[i])),
            }
        }
        format!("{}\n", out.trim_end())
    };
    let mut out = line(head);
    for r in &rows {
        out.push_str(&line([&r[0], &r[1], &r[2], &r[3], &r[4]]));
    }
    for r in routes {
        if let Some(why) = &r.error {
            out.push_str(&format!(
                "\n{}: not served: {}\n",
                output::clean(&r.route.name, false),
                output::clean(why, false)
            ));
        }
    }
    out
}

/// Everything about one route, its secret too.
fn details(r: &RouteStatus) -> String {
    let mut out = format!(
        "route        {}\nurl          {}\nupstream     {}\nprofile      {}\n",
        output::clean(&r.route.name, false),
        r.url,
        r.route.upstream,
        output::clean(&r.route.profile, false)
    );
    if let Some(w) = &r.route.workspace {
        out.push_str(&format!("workspace    {}\n", output::clean(w, false)));
    }
    for origin in &r.route.allow_origins {
        out.push_str(&format!(
            "browser      pages of {}\n",
            output::clean(origin, false)
        ));
    }
    for (k, v) in &r.route.headers {
        out.push_str(&format!("adds         {k}: {}\n", output::clean(v, false)));
    }
    out.push_str(&format!(
        "requests     {} ({} replayed after a refresh, {} refused)\n",
        r.served, r.replays, r.refused
    ));
    match &r.error {
        Some(why) => out.push_str(&format!(
            "state        NOT SERVED: {}\n",
            output::clean(why, false)
        )),
        None => out.push_str("state        serving\n"),
    }
    let who = match (r.route.require_secret, r.url.starts_with("unix:")) {
        (_, true) => "your user only (the socket's peer is checked)",
        (true, false) => "clients that send the secret below",
        (false, false) => {
            "your user only (each connection's owner is checked); where that cannot be told, \
             clients that send the secret below"
        }
    };
    out.push_str(&format!("who          {who}\n"));
    if let Some(secret) = &r.secret {
        out.push_str(&format!(
            "secret       {}: {}\n",
            a365_proto::ROUTE_SECRET_HEADER,
            secret.expose()
        ));
    }
    out
}

fn to_json(r: &RouteStatus) -> serde_json::Value {
    serde_json::json!({
        "name": r.route.name,
        "url": r.url,
        "listen": r.route.listen,
        "upstream": r.route.upstream,
        "profile": r.route.profile,
        "workspace": r.route.workspace,
        "headers": r.route.headers,
        "require_secret": r.route.require_secret,
        "allow_origins": r.route.allow_origins,
        "error": r.error,
        "served": r.served,
        "replays": r.replays,
        "refused": r.refused,
        "secret_header": a365_proto::ROUTE_SECRET_HEADER,
        "secret": r.secret.as_ref().map(|s| s.expose().to_owned()),
    })
}
