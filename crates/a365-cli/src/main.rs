//! `a365`: the thin client of `a365-agent`. It connects, sends one
//! request, prints the answer: no async runtime, no HTTP.

mod actions;
mod add;
mod autostart;
mod cli;
mod completions;
mod exec;
mod exit;
mod launch;
mod login;
mod output;
mod progress;
mod proxy;
mod secrets;
mod sink;
mod status;

use std::process::ExitCode;

use clap::Parser;

use crate::cli::{Cli, Command};

fn main() -> ExitCode {
    // `a365 token [PROFILE]` runs in every script's API call: building
    // clap's command tree costs a third of the whole process, so the plain
    // form skips it. Anything with a flag goes through clap.
    if let Some(args) = cli::plain_token_args() {
        let socket = match a365_proto::path::socket_path() {
            Ok(socket) => socket,
            Err(e) => return exit::Error::Client(e.into()).report(),
        };
        let result = actions::token(&socket, args);
        autostart::restart_if_upgraded(&socket);
        return match result {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => e.report(),
        };
    }
    let cli = Cli::parse();
    let socket = match cli.socket.map_or_else(a365_proto::path::socket_path, Ok) {
        Ok(socket) => socket,
        Err(e) => return exit::Error::Client(e.into()).report(),
    };
    let result = match cli.command {
        Command::Token(args) => actions::token(&socket, args),
        Command::Status {
            profile,
            json,
            wide,
        } => actions::status(&socket, profile.as_deref(), json, wide),
        Command::Add(args) => add::add(&socket, args),
        Command::Set {
            profile,
            key,
            value,
        } => actions::set(&socket, profile, key, value),
        Command::Remove {
            profile,
            keep_remote,
        } => actions::remove(&socket, profile, keep_remote),
        Command::Refresh { profile } => actions::refresh(&socket, profile),
        Command::Exec(args) => match exec::exec(&socket, args) {
            Ok(code) => return code,
            Err(e) => Err(e),
        },
        Command::Ping => actions::ping(&socket),
        Command::Default { profile } => actions::default(&socket, profile),
        Command::Workspaces { profile, json } => actions::workspaces(&socket, profile, json),
        Command::Doctor { profile, json } => actions::doctor(&socket, profile, json),
        Command::Completions { shell } => output::to_stdout(&completions::script(shell)),
        Command::Profiles => completions::profiles(&socket),
        Command::Man { out_dir } => actions::man(out_dir.as_deref()),
        Command::Watch { profile, json } => actions::watch(&socket, profile, json),
        Command::Store(command) => actions::store(&socket, command),
        Command::Proxy(command) => proxy::run(&socket, command),
        Command::Sink(command) => sink::run(&socket, command),
        Command::Login {
            profile,
            timeout,
            no_browser,
            select_workspace,
        } => login::login(&socket, profile, (timeout, select_workspace), no_browser),
    };
    autostart::restart_if_upgraded(&socket);
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => e.report(),
    }
}
