//! `a365 completions SHELL`: clap's script, taught to complete profile
//! names (asked of a running agent with the hidden `a365 __profiles`,
//! which never starts one).

use a365_proto::{Client, Request, Response};
use clap::CommandFactory;
use clap_complete::Shell;

use crate::cli::Cli;
use crate::exit::Error;

/// The commands whose first argument is a profile name.
const TAKE_A_PROFILE: &str =
    "token status default set remove refresh login workspaces doctor watch exec";

/// The completion script for `shell`.
pub fn script(shell: Shell) -> Vec<u8> {
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut Cli::command(), "a365", &mut script);
    let text = String::from_utf8_lossy(&script).into_owned();
    match shell {
        Shell::Bash => bash(&text),
        Shell::Zsh => zsh(&text),
        Shell::Fish => format!(
            "{text}complete -c a365 -n \"__fish_seen_subcommand_from {TAKE_A_PROFILE}\" -f \
             -a \"(a365 __profiles 2>/dev/null)\"\n"
        ),
        _ => text,
    }
    .into_bytes()
}

/// A wrapper that answers a profile position and hands the rest to clap's.
fn bash(clap: &str) -> String {
    let commands = TAKE_A_PROFILE.replace(' ', "|");
    let wrapper = format!(
        r#"
_a365_with_profiles() {{
    local cur=${{COMP_WORDS[COMP_CWORD]}}
    if [[ $COMP_CWORD -eq 2 && $cur != -* ]]; then
        case ${{COMP_WORDS[1]}} in
        {commands})
            # Matched here, not by `compgen -W`, which would expand the names.
            local name
            COMPREPLY=()
            while IFS= read -r name; do
                [[ $name == "$cur"* ]] && COMPREPLY+=("$name")
            done < <(a365 __profiles 2>/dev/null)
            return 0 ;;
        esac
    fi
    _a365 "$@"
}}
"#
    );
    format!(
        "{}{wrapper}",
        clap.replace("complete -F _a365 ", "complete -F _a365_with_profiles ")
    )
}

/// Every `profile` argument completes with `_a365_profiles`.
fn zsh(clap: &str) -> String {
    const FUNCTION: &str = r#"
(( $+functions[_a365_profiles] )) ||
_a365_profiles() {
    local -a names
    names=(${(f)"$(a365 __profiles 2>/dev/null)"})
    _describe -t profiles 'profile' names
}
"#;
    let lines: Vec<String> = clap
        .lines()
        .map(|line| {
            let is_profile = line.starts_with("':profile") || line.starts_with("'::profile");
            match is_profile {
                true => line.replace(":_default'", ":_a365_profiles'"),
                false => line.to_owned(),
            }
        })
        .collect();
    let text = lines.join("\n") + "\n";
    text.replacen(
        "autoload -U is-at-least\n",
        &format!("autoload -U is-at-least\n{FUNCTION}"),
        1,
    )
}

/// `a365 __profiles`: the profile names, one a line, from a running agent
/// (never started for this: completion must not have side effects).
pub fn profiles(socket: &std::path::Path) -> Result<(), Error> {
    let mut client = Client::connect(socket)?;
    let Response::Status(all) = client.call(&Request::Status)? else {
        return Err(Error::Unexpected);
    };
    // Only names a profile can have: a broken table's name is whatever
    // the file says, and shells would read it as code.
    let names: String = all
        .iter()
        .filter(|p| a365_proto::is_valid_profile_name(&p.name))
        .map(|p| format!("{}\n", p.name))
        .collect();
    crate::output::to_stdout(names.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_shell_asks_for_profile_names() {
        let bash = String::from_utf8(script(Shell::Bash)).unwrap();
        assert!(bash.contains("complete -F _a365_with_profiles "), "{bash}");
        assert!(!bash.contains("complete -F _a365 "));
        let zsh = String::from_utf8(script(Shell::Zsh)).unwrap();
        assert!(zsh.contains("_a365_profiles() {"));
        assert!(
            zsh.contains("'::profile -- Only this profile, in detail:_a365_profiles'"),
            "{zsh}"
        );
        assert!(zsh.contains("':profile:_a365_profiles'"));
        let fish = String::from_utf8(script(Shell::Fish)).unwrap();
        assert!(fish.contains("(a365 __profiles 2>/dev/null)"));
    }
}
