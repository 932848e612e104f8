//! Start at logon on Windows: a value under the user's `Run` key that runs
//! `a365-agent --daemon`.
//!
//! Chosen over a scheduled task: creating a logon task needs an elevated
//! prompt on a default Windows, the `Run` key needs no rights beyond the
//! user's own, and `--daemon` already gives what a task would (a detached
//! agent with no console, a log under `%LOCALAPPDATA%`). Written and
//! removed with `reg.exe`, which every Windows has.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use super::{InstallError, Report};

/// The per-user key Explorer runs at logon.
pub const RUN_KEY: &str = r"HKCU\Software\Microsoft\Windows\CurrentVersion\Run";
pub const VALUE_NAME: &str = "a365-agent";

/// The command the `Run` value holds.
pub fn run_command(bin: &Path) -> Result<String, InstallError> {
    let path = bin
        .to_str()
        .filter(|p| !p.contains(['"', '\r', '\n']))
        .ok_or_else(|| InstallError::BadPath(bin.to_owned()))?;
    Ok(format!("\"{path}\" --daemon"))
}

fn reg(args: &[&str]) -> std::io::Result<std::process::Output> {
    Command::new("reg.exe")
        .args(args)
        .stdin(Stdio::null())
        .output()
}

fn value_path() -> PathBuf {
    PathBuf::from(format!(r"{RUN_KEY}\{VALUE_NAME}"))
}

fn failed(what: &str, output: std::io::Result<std::process::Output>) -> InstallError {
    let source = match output {
        Ok(out) => std::io::Error::other(format!(
            "reg.exe {what} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        )),
        Err(e) => e,
    };
    InstallError::Write {
        path: value_path(),
        source,
    }
}

/// Sets the `Run` value for `bin`.
pub fn install(bin: &Path) -> Result<Report, InstallError> {
    let command = run_command(bin)?;
    let args = [
        "add", RUN_KEY, "/v", VALUE_NAME, "/t", "REG_SZ", "/d", &command, "/f",
    ];
    match reg(&args) {
        Ok(out) if out.status.success() => Ok(Report {
            changed: vec![value_path()],
            next: "It starts at your next logon. Start it now with:\n  a365-agent --daemon\n"
                .into(),
        }),
        other => Err(failed("add", other)),
    }
}

/// Removes the `Run` value, if there is one.
pub fn uninstall() -> Result<Report, InstallError> {
    let next = "A running agent keeps running until you stop it:\n  a365-agent --kill\n".into();
    match reg(&["query", RUN_KEY, "/v", VALUE_NAME]) {
        Ok(out) if out.status.success() => {}
        // No such value: nothing to remove.
        Ok(_) => {
            return Ok(Report {
                changed: vec![],
                next,
            });
        }
        Err(e) => return Err(failed("query", Err(e))),
    }
    match reg(&["delete", RUN_KEY, "/v", VALUE_NAME, "/f"]) {
        Ok(out) if out.status.success() => Ok(Report {
            changed: vec![value_path()],
            next,
        }),
        other => Err(failed("delete", other)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_run_value_quotes_the_path_and_refuses_what_cannot_be_quoted() {
        assert_eq!(
            run_command(Path::new(r"C:\Program Files\a365\a365-agent.exe")).unwrap(),
            r#""C:\Program Files\a365\a365-agent.exe" --daemon"#
        );
        assert!(run_command(Path::new("C:\\a\"b\\a365-agent.exe")).is_err());
    }
}
