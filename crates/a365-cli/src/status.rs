//! `a365 status`: a table that fits 80 columns, with a note per profile
//! that has something to say; `status PROFILE` shows everything about
//! one profile, `--wide` every column of every profile.

use std::fmt::Write as _;

use a365_proto::ProfileStatus;

use crate::output::{clean, expires_in};

/// The width the narrow table and the notes keep to.
const WIDTH: usize = 80;

/// The table for people; `*` marks the default profile.
pub fn table(profiles: &[ProfileStatus], now_secs: i64, colour: bool, wide: bool) -> String {
    if profiles.is_empty() {
        return "no profiles: add one with `a365 add NAME --kind refresh --realm altium365 \
                --client-id ID`\n(a fleet consumer adds none: it serves what the fleet's \
                refreshers share, once they do)\n"
            .into();
    }
    let mut out = match wide {
        true => wide_table(profiles, now_secs),
        false => narrow_table(profiles, now_secs),
    };
    if colour {
        out = paint_states(&out, profiles);
    }
    notes(&mut out, profiles, wide);
    out
}

/// PROFILE, KIND, REALM, STATE, EXPIRES IN, NEXT REFRESH: the profile
/// and realm columns give way (cut with `…`) until the table fits.
fn narrow_table(profiles: &[ProfileStatus], now_secs: i64) -> String {
    let rows: Vec<Vec<String>> = profiles
        .iter()
        .map(|p| cells(p, now_secs)[..NARROW].to_vec())
        .collect();
    layout(&COLUMNS[..NARROW], rows, &[2, 0])
}

/// Every column, as wide as its cells.
fn wide_table(profiles: &[ProfileStatus], now_secs: i64) -> String {
    let rows = profiles
        .iter()
        .map(|p| cells(p, now_secs).to_vec())
        .collect();
    layout(&COLUMNS, rows, &[])
}

/// Every column, in the order of [`cells`]; the narrow table shows the
/// first [`NARROW`].
const COLUMNS: [&str; 11] = [
    "PROFILE",
    "KIND",
    "REALM",
    "STATE",
    "EXPIRES IN",
    "NEXT REFRESH",
    "ROTATES",
    "ACCOUNT",
    "WORKSPACE",
    "STORE",
    "SCOPES",
];
const NARROW: usize = 6;

/// Aligned columns; when wider than [`WIDTH`], the `shrink` columns are
/// cut, in that order, each to no less than 8 characters.
fn layout(header: &[&str], rows: Vec<Vec<String>>, shrink: &[usize]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let total = |widths: &[usize]| widths.iter().sum::<usize>() + 2 * (widths.len() - 1);
    for &column in shrink {
        let over = total(&widths).saturating_sub(WIDTH);
        widths[column] -= over.min(widths[column].saturating_sub(8));
    }
    let mut out = String::new();
    let header = header.iter().map(|h| (*h).to_owned()).collect();
    for cells in std::iter::once(header).chain(rows) {
        let mut line = String::new();
        for (cell, &w) in cells.iter().zip(&widths) {
            let _ = write!(line, "{:<w$}  ", cut(cell, w));
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// `text` in at most `width` characters, cut with `…`.
fn cut(text: &str, width: usize) -> String {
    if text.chars().count() <= width {
        return text.to_owned();
    }
    let mut kept: String = text.chars().take(width.saturating_sub(1)).collect();
    kept.push('…');
    kept
}

/// One profile's cells (control characters escaped), in the wide
/// table's order.
fn cells(p: &ProfileStatus, now_secs: i64) -> [String; 11] {
    let broken = p.state == a365_proto::state::BROKEN;
    [
        format!("{}{}", if p.is_default { "*" } else { "" }, p.name),
        if broken {
            "?".into()
        } else {
            p.kind.to_string()
        },
        p.realm
            .clone()
            .or_else(|| p.token_url.as_deref().map(host))
            .unwrap_or_else(|| "-".into()),
        p.state.clone(),
        p.expires_at
            .map(|e| expires_in(e - now_secs))
            .unwrap_or_else(|| "-".into()),
        p.next_refresh_at
            .map(|r| match r - now_secs {
                ..=0 => "now".into(),
                secs => format!("in {}", expires_in(secs)),
            })
            .unwrap_or_else(|| "-".into()),
        rotates(p),
        p.account.clone().unwrap_or_else(|| "-".into()),
        p.workspace.clone().unwrap_or_else(|| "-".into()),
        match &p.refreshed_by {
            Some(member) => format!("{} ({member})", p.store),
            None => p.store.clone(),
        },
        scopes(&p.scopes),
    ]
    .map(|cell| clean(&cell, false).into_owned())
}

/// `status PROFILE`: one line per fact, the long ones wrapped.
pub fn details(p: &ProfileStatus, now_secs: i64) -> String {
    let [
        _,
        kind,
        realm,
        state,
        expires,
        next,
        rotates,
        account,
        workspace,
        store,
        _,
    ] = cells(p, now_secs);
    let mut facts: Vec<(&str, String)> = vec![
        (
            "profile",
            format!(
                "{}{}",
                p.name,
                if p.is_default { " (the default)" } else { "" }
            ),
        ),
        ("kind", kind),
        ("realm", realm),
    ];
    facts.extend(p.token_url.clone().map(|url| ("token URL", url)));
    let expires_at = p.expires_at.and_then(crate::output::rfc3339);
    facts.extend([
        ("state", state),
        (
            "expires in",
            match expires_at {
                Some(at) => format!("{expires} ({at})"),
                None => expires,
            },
        ),
        ("next refresh", next),
        ("rotates", rotates),
        ("account", account),
        ("workspace", workspace),
        ("secrets", store_words(&store)),
        ("scopes", p.scopes.join(" ")),
    ]);
    if !p.scopes_not_granted.is_empty() {
        facts.push(("not granted", p.scopes_not_granted.join(" ")));
    }
    facts.extend(
        p.client_auth
            .map(|a| ("client auth", a.as_str().to_owned())),
    );
    facts.extend(p.assumed_lifetime_secs.map(|s| {
        (
            "lifetime",
            format!("assumed {} (the token stated none)", expires_in(s as i64)),
        )
    }));
    if !p.budget.is_empty() {
        facts.push(("budget", budget(&p.budget)));
    }
    facts.extend(p.last_error.clone().map(|e| ("last error", e)));
    let mut out = String::new();
    for (label, value) in facts {
        let value = clean(&value, true);
        let value = if value.is_empty() { "-".into() } else { value };
        out.push_str(&wrap(&format!("{label:<13}{value}"), 13));
    }
    out
}

/// A token endpoint's budget: what is left in each window.
fn budget(windows: &[a365_proto::BudgetWindow]) -> String {
    let each: Vec<String> = windows
        .iter()
        .map(|w| {
            let span = a365_proto::human_ms(
                i64::try_from(w.secs.saturating_mul(1000)).unwrap_or(i64::MAX),
            );
            format!(
                "{} of {} left per {span}",
                w.limit.saturating_sub(w.used),
                w.limit
            )
        })
        .collect();
    format!("token requests: {}", each.join(", "))
}

/// What a store's name means for where the secrets are.
fn store_words(store: &str) -> String {
    match store {
        "file" => "in a plain file readable by your user only (no encryption: the OS keyring was \
                   not chosen or did not answer)"
            .into(),
        "keyring" => "in the OS keyring".into(),
        "memory" => "in the agent's memory only (lost when it stops)".into(),
        other => other.to_owned(),
    }
}

/// Whether the provider rotates refresh tokens: `-` for kinds that hold
/// none, `unknown` until the agent has seen a refresh.
fn rotates(p: &ProfileStatus) -> String {
    match (p.kind.facts().uses_refresh_token, p.rotates) {
        (true, Some(true)) => "yes".into(),
        (true, Some(false)) => "no".into(),
        (true, None) => "unknown".into(),
        (false, _) => "-".into(),
    }
}

/// Below the table, each wrapped to [`WIDTH`]: each profile's last error,
/// scopes not granted, what was learned of the server, and (narrow) where
/// plain-file secrets are.
fn notes(out: &mut String, profiles: &[ProfileStatus], wide: bool) {
    let mut said = Vec::new();
    for p in profiles {
        let name = clean(&p.name, false);
        if !p.scopes_not_granted.is_empty() {
            said.push(format!(
                "{name}: the token lacks scopes the profile asks for: {}",
                clean(&p.scopes_not_granted.join(" "), false)
            ));
        }
        if let Some(secs) = p.assumed_lifetime_secs {
            said.push(format!(
                "{name}: the token stated no lifetime: assumed to live {} (default_lifetime_secs \
                 in config.toml)",
                expires_in(i64::try_from(secs).unwrap_or(i64::MAX))
            ));
        }
        if p.client_auth == Some(a365_proto::ClientAuth::BasicRaw) {
            said.push(format!(
                "{name}: its server takes the client id and secret as HTTP Basic only as they \
                 are, not form-encoded (RFC 6749 §2.3.1): sent so (basic-raw)"
            ));
        }
        if let Some(error) = &p.last_error {
            said.push(format!("{name}: {}", clean(error, true)));
        }
    }
    let in_files: Vec<String> = profiles
        .iter()
        .filter(|p| p.store == "file")
        .map(|p| clean(&p.name, false).into_owned())
        .collect();
    if !wide && !in_files.is_empty() {
        said.push(format!(
            "secrets in plain files, readable by your user only: {} (`a365 status PROFILE` says \
             more; `a365 store migrate --to keyring` moves them where an OS keyring runs)",
            in_files.join(", ")
        ));
    }
    for note in said {
        out.push('\n');
        out.push_str(&wrap(&note, 2));
    }
}

/// `text` wrapped at spaces to [`WIDTH`], lines after the first indented
/// by `indent`; a word longer than a line stays whole.
fn wrap(text: &str, indent: usize) -> String {
    let mut out = String::new();
    for paragraph in text.lines() {
        let mut line = String::new();
        for word in paragraph.split(' ') {
            if !line.trim().is_empty() && line.chars().count() + 1 + word.chars().count() > WIDTH {
                out.push_str(line.trim_end());
                out.push('\n');
                line = " ".repeat(indent);
            } else if !line.trim().is_empty() {
                line.push(' ');
            }
            line.push_str(word);
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// Colours each row's STATE cell: green fresh, yellow in progress or
/// failing, red when the user must act. Applied after alignment, so the
/// escape codes do not upset the column widths.
fn paint_states(table: &str, profiles: &[ProfileStatus]) -> String {
    let mut lines: Vec<String> = table.lines().map(str::to_owned).collect();
    let Some(column) = lines.first().and_then(|h| h.find("STATE")) else {
        return table.to_owned();
    };
    for (line, p) in lines.iter_mut().skip(1).zip(profiles) {
        let code = match p.state.as_str() {
            "fresh" => "32",
            "refreshing" | "failing" | "empty" => "33",
            _ => "31",
        };
        // The column starts at the same byte only when the cells before
        // it are ASCII; otherwise the row is left uncoloured.
        if line.is_char_boundary(column)
            && line
                .get(column..)
                .is_some_and(|rest| rest.starts_with(&p.state))
        {
            let end = column + p.state.len();
            *line = format!(
                "{}\x1b[{code}m{}\x1b[0m{}",
                &line[..column],
                &line[column..end],
                &line[end..]
            );
        }
    }
    let mut out = lines.join("\n");
    out.push('\n');
    out
}

fn host(url: &str) -> String {
    url.split("://")
        .nth(1)
        .and_then(|rest| rest.split('/').next())
        .unwrap_or(url)
        .to_owned()
}

fn scopes(scopes: &[String]) -> String {
    // The workspace has its own column.
    let shown: Vec<&str> = scopes
        .iter()
        .filter(|s| !s.starts_with("a365:workspace:"))
        .map(String::as_str)
        .collect();
    let text = shown.join(",");
    if text.chars().count() > 48 {
        format!("{}…", text.chars().take(47).collect::<String>())
    } else if text.is_empty() {
        "-".into()
    } else {
        text
    }
}

#[cfg(test)]
mod tests {
    use a365_proto::Kind;

    use super::*;

    #[test]
    fn tables_and_details() {
        let p = ProfileStatus {
            name: "work".into(),
            kind: Kind::Refresh,
            realm: None,
            token_url: Some("http://127.0.0.1:8080/connect/token".into()),
            state: "fresh".into(),
            expires_at: Some(1_000 + 3600),
            next_refresh_at: Some(1_000 + 2700),
            scopes: vec!["openid".into(), "a365:workspace:abc".into()],
            workspace: Some("abc".into()),
            last_error: Some("the token server failed (HTTP 500)".into()),
            store: "file".into(),
            scopes_not_granted: vec!["a365:design.write".into()],
            is_default: true,
            rotates: Some(true),
            refreshed_by: None,
            account: Some("ann".into()),
            client_auth: Some(a365_proto::ClientAuth::BasicRaw),
            assumed_lifetime_secs: Some(3600),
            budget: vec![a365_proto::BudgetWindow {
                secs: 900,
                limit: 200,
                used: 17,
            }],
        };
        let p_clone = p.clone();
        let text = table(std::slice::from_ref(&p), 1_000, false, true);
        let painted = table(std::slice::from_ref(&p), 1_000, true, true);
        assert!(painted.contains("\x1b[32mfresh\x1b[0m"), "{painted}");
        assert!(!text.contains('\x1b'));
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines[0].starts_with("PROFILE"), "{text}");
        assert!(lines[1].starts_with("*work"), "{text}");
        assert!(
            lines[1].contains("127.0.0.1:8080")
                && lines[1].contains("1h 0m")
                && lines[1].contains("abc")
                && lines[1].contains("file")
                && lines[1].contains(" yes ")
                && lines[1].contains(" ann ")
        );
        assert!(text.contains("work: the token server failed (HTTP 500)"));
        assert!(lines[1].contains("in 45m 0s"), "{text}");
        assert!(text.contains("lacks scopes the profile asks for: a365:design.write"));
        assert!(
            text.contains("work: the token stated no lifetime: assumed to live 1h 0m"),
            "{text}"
        );
        assert!(
            text.replace('\n', " ")
                .contains("work: its server takes the client id and secret as HTTP Basic only"),
            "{text}"
        );
        let hostile = ProfileStatus {
            scopes: vec!["openid\x1b[2J".into()],
            last_error: Some("bad\x1b]0;title\x07".into()),
            scopes_not_granted: vec!["x\x1b[A".into()],
            ..p_clone
        };
        for wide in [true, false] {
            let text = table(std::slice::from_ref(&hostile), 1_000, false, wide);
            assert!(!text.contains('\x1b') && !text.contains('\x07'), "{text:?}");
        }
        let text = details(&hostile, 1_000);
        assert!(!text.contains('\x1b') && !text.contains('\x07'), "{text:?}");
        assert!(table(&[], 0, false, false).contains("a365 add"));

        // Narrow: 80 columns, however long the name and the token host.
        let long = ProfileStatus {
            name: "a-very-long-profile-name-for-the-staging-workspace".into(),
            kind: Kind::AuthorizationCode,
            token_url: Some("https://login.some-long-identity-provider.example.com/token".into()),
            state: "needs-reauth".into(),
            ..p
        };
        let text = table(std::slice::from_ref(&long), 1_000, false, false);
        for line in text.lines() {
            assert!(line.chars().count() <= 80, "{line:?}\n{text}");
        }
        assert!(
            text.lines().nth(1).unwrap().starts_with("*a-very-l"),
            "{text}"
        );
        assert!(text.contains("secrets in plain files"), "{text}");
        let text = details(&long, 1_000);
        assert!(
            text.contains("token URL    https://login.some-long"),
            "{text}"
        );
        assert!(text.contains("secrets      in a plain file"), "{text}");
        for line in text.lines() {
            assert!(line.chars().count() <= 80, "{line:?}\n{text}");
        }
    }
}
