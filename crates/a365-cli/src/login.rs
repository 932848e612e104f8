//! `a365 login`: the browser login of an `authorization-code` profile, as
//! the client sees it (the agent holds the loopback redirect).

use std::path::Path;

use a365_proto::{Client, Request, Response};

use crate::exit::Error;
use crate::output;

/// Starts the login in the agent, opens the browser, waits for the end.
pub fn login(
    socket: &Path,
    profile: String,
    (timeout_ms, select_workspace): (u64, Option<String>),
    no_browser: bool,
) -> Result<(), Error> {
    let mut client = crate::autostart::connect(socket)?;
    let start = Request::Login {
        profile: profile.clone(),
        timeout_ms,
        select_workspace,
    };
    let url = match client.call(&start)? {
        Response::LoginUrl { url } => url,
        Response::Error(reply) => return Err(Error::Agent(reply)),
        _ => return Err(Error::Unexpected),
    };
    if !output::safe_login_url(&url) {
        return Err(Error::Other(anyhow::anyhow!(
            "the agent sent a login URL that is neither HTTPS nor this machine's loopback: \
             not opening it ({})",
            output::clean(&url, false)
        )));
    }
    eprintln!("a365: open this URL to log in (waiting for the browser):\n\n    {url}\n");
    let page = match no_browser {
        true => None,
        false => open_page(socket, &url),
    };
    // On a terminal the user sees whose account signed in before it is
    // kept: a login finished by someone else (another browser, another
    // account) is not silently taken.
    let review = std::io::IsTerminal::is_terminal(&std::io::stdin())
        && std::io::IsTerminal::is_terminal(&std::io::stderr());
    let wait = match review {
        true => Request::LoginReview {
            profile: profile.clone(),
        },
        false => Request::LoginWait {
            profile: profile.clone(),
        },
    };
    let outcome = client.call(&wait);
    drop(page);
    let message = match outcome? {
        Response::Done { message } => message,
        Response::Error(reply) => return Err(Error::Agent(reply)),
        _ => return Err(Error::Unexpected),
    };
    if review {
        return confirm(&mut client, profile, &message);
    }
    eprintln!("a365: {}", output::clean(&message, true));
    Ok(())
}

/// `$BROWSER` (a command, the URL as its argument), else the platform's
/// opener; failing to open is not an error: the URL is printed.
fn open_browser(url: &str) {
    let opener = std::env::var("BROWSER")
        .ok()
        .filter(|b| !b.trim().is_empty());
    let program = opener.unwrap_or_else(|| {
        if cfg!(target_os = "macos") {
            "open".into()
        } else if cfg!(windows) {
            "explorer".into()
        } else {
            "xdg-open".into()
        }
    });
    let spawned = std::process::Command::new(&program)
        .arg(url)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .spawn();
    if let Err(e) = spawned {
        eprintln!("a365: could not start {program} ({e}): open the URL yourself");
    }
}

/// The browser gets a private page that forwards to the launcher, never
/// the launcher itself on its command line (see `launch`).
fn open_page(socket: &Path, url: &str) -> Option<crate::launch::LaunchPage> {
    match crate::launch::LaunchPage::write(socket, url) {
        Ok(page) => {
            open_browser(&page.url());
            Some(page)
        }
        Err(e) => {
            eprintln!(
                "a365: not opening a browser: the login page could not be written privately \
                 ({e}); open the URL above yourself"
            );
            None
        }
    }
}

/// Asks whether to keep the login the agent holds, and tells it.
fn confirm(client: &mut Client, profile: String, message: &str) -> Result<(), Error> {
    eprint!(
        "a365: {}. Keep this login for profile '{profile}'? [y/N] ",
        output::clean(message, true)
    );
    let mut answer = String::new();
    let _ = std::io::stdin().read_line(&mut answer);
    let keep = matches!(answer.trim(), "y" | "Y" | "yes" | "Yes" | "YES");
    match client.call(&Request::LoginKeep { profile, keep })? {
        Response::Done { message } => {
            eprintln!("a365: {}", output::clean(&message, true));
            Ok(())
        }
        Response::Error(reply) => Err(Error::Agent(reply)),
        _ => Err(Error::Unexpected),
    }
}
