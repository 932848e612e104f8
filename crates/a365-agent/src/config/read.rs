//! Reading `config.toml`: a mistake in one profile's table costs that
//! profile only (the others are served, the broken one is listed with its
//! error), and every error names the file, line, table and key.

use std::borrow::Cow;
use std::ops::Range;
use std::path::Path;

use a365_proto::ProfileSpec;
use serde::Deserialize;
use toml::de::{DeTable, DeValue, Deserializer, ValueDeserializer};

use super::{Config, ConfigError};

/// The keys that belong at the top of the file, before any `[table]`: one
/// of them inside a profile's table was appended to the end of the file.
const TOP_LEVEL: &[&str] = &[
    "store",
    "default_profile",
    "default_lifetime_secs",
    "proxy",
    "https_proxy",
    "ca_file",
    "on_event",
    "expires_soon_days",
    "token_socket",
    "token_socket_profiles",
];

/// Parses `text` (read from `path`). A TOML syntax error, or a mistake
/// outside `[profiles.*]`, is an error for the whole file; a mistake in
/// one profile's table puts that profile in [`Config::broken`].
pub(super) fn parse(path: &Path, text: &str) -> Result<Config, ConfigError> {
    let whole = |e: toml::de::Error, table: Option<&str>| ConfigError::Parse {
        path: path.into(),
        message: describe(text, &e, table, None),
    };
    let mut root = DeTable::parse(text).map_err(|e| whole(e, None))?;
    let profiles = root.get_mut().remove("profiles");
    let proxy = root.get_mut().remove("proxy");
    let mut config = Config::deserialize(Deserializer::from(root)).map_err(|e| whole(e, None))?;
    if let Some(proxy) = proxy {
        read_proxy(path, text, proxy, &mut config)?;
    }
    let Some(profiles) = profiles else {
        return Ok(config);
    };
    let span = profiles.span();
    let DeValue::Table(table) = profiles.into_inner() else {
        return Err(ConfigError::Parse {
            path: path.into(),
            message: format!(
                "line {}: 'profiles' must be a table",
                line_of(text, span.start)
            ),
        });
    };
    for (name, value) in table {
        let name = name.into_inner().into_owned();
        let keys = value_keys(value.get_ref());
        let kind = match value.get_ref() {
            DeValue::Table(t) => t
                .get("kind")
                .and_then(|k| k.get_ref().as_str())
                .and_then(a365_proto::Kind::parse),
            _ => None,
        };
        match ProfileSpec::deserialize(ValueDeserializer::from(value)) {
            Ok(spec) if spec.limits_error().is_some() => {
                let why = format!(
                    "{}: [profiles.{name}] {}",
                    path.display(),
                    spec.limits_error().unwrap_or_default()
                );
                tracing::error!("{why}");
                config.broken.insert(name, super::Broken { kind, why });
            }
            Ok(spec) => {
                config.profiles.insert(name, spec);
            }
            Err(e) => {
                let table = format!("[profiles.{name}]");
                let message = describe(text, &e, Some(&table), Some(&keys));
                tracing::error!("{}: {message}", path.display());
                let why = format!("{}: {message}", path.display());
                config.broken.insert(name, super::Broken { kind, why });
            }
        }
    }
    Ok(config)
}

/// `proxy`: the `[[proxy]]` routes, or (a string, as before routes) the
/// HTTP proxy for token requests, now `https_proxy`.
fn read_proxy(
    path: &Path,
    text: &str,
    proxy: toml::Spanned<DeValue<'_>>,
    config: &mut Config,
) -> Result<(), ConfigError> {
    let line = line_of(text, proxy.span().start);
    let error = |message: String| ConfigError::Parse {
        path: path.into(),
        message,
    };
    match proxy.into_inner() {
        DeValue::String(url) if config.https_proxy.is_none() => {
            config.https_proxy = Some(url.into_owned());
        }
        DeValue::String(_) => {
            return Err(error(format!(
                "line {line}: proxy and https_proxy both name an HTTP proxy for token requests: \
                 keep https_proxy"
            )));
        }
        DeValue::Array(routes) => {
            for route in routes {
                let keys = value_keys(route.get_ref());
                let route = a365_proto::ProxyRoute::deserialize(ValueDeserializer::from(route))
                    .map_err(|e| error(describe(text, &e, Some("[[proxy]]"), Some(&keys))))?;
                config.routes.push(route);
            }
        }
        _ => {
            return Err(error(format!(
                "line {line}: proxy must be [[proxy]] tables (local routes to an API), or a URL \
                 (the HTTP proxy for token requests, better written https_proxy = \"URL\")"
            )));
        }
    }
    Ok(())
}

/// A table's keys with where they are, to name the key an error is about.
fn value_keys(value: &DeValue<'_>) -> Vec<(String, Range<usize>)> {
    match value {
        DeValue::Table(table) => table
            .iter()
            .map(|(k, v)| (k.get_ref().to_string(), k.span().start..v.span().end))
            .collect(),
        _ => Vec::new(),
    }
}

/// "line L, [table], key K: what is wrong", with a hint for a top-level
/// key that landed in a profile's table.
fn describe(
    text: &str,
    e: &toml::de::Error,
    table: Option<&str>,
    keys: Option<&[(String, Range<usize>)]>,
) -> String {
    let span = e.span();
    let line = span.as_ref().map(|s| line_of(text, s.start));
    let key: Option<Cow<'_, str>> = quoted_field(e.message()).map(Cow::Borrowed).or_else(|| {
        let span = span.as_ref()?;
        keys?
            .iter()
            .find(|(_, at)| at.start <= span.start && span.end <= at.end)
            .map(|(k, _)| Cow::Owned(k.clone()))
    });
    let mut said = Vec::new();
    if let Some(line) = line {
        said.push(format!("line {line}"));
    }
    said.extend(table.map(str::to_owned));
    said.extend(key.as_ref().map(|k| format!("key {k}")));
    let mut message = format!("{}: {}", said.join(", "), unquoted(e.message().trim_end()));
    if let (Some(table), Some(key)) = (table, key)
        && TOP_LEVEL.contains(&key.as_ref())
    {
        message.push_str(&format!(
            " ({key} is a top-level setting: it belongs above the first [table], not in {table}"
        ));
        message.push_str(match key.as_ref() {
            "default_profile" => "; `a365 default PROFILE` sets it for you)",
            _ => ")",
        });
    }
    message
}

/// `message` with every double-quoted value shown as `"…"`: a secret
/// pasted into the wrong key must not reach the log and `status`.
fn unquoted(message: &str) -> String {
    let mut out = String::with_capacity(message.len());
    let mut parts = message.split('"');
    out.push_str(parts.next().unwrap_or_default());
    let mut inside = true;
    for part in parts {
        match inside {
            true => out.push_str("\"…"),
            false => out.push_str(part),
        }
        inside = !inside;
    }
    out
}

/// The line (from 1) of byte `at`.
fn line_of(text: &str, at: usize) -> usize {
    text.as_bytes()[..at.min(text.len())]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
        + 1
}

/// The field serde names in backquotes ("unknown field `x`, expected …").
fn quoted_field(message: &str) -> Option<&str> {
    let rest = message.strip_prefix("unknown field `")?;
    rest.split('`').next()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_top_level_key_appended_to_a_profile_breaks_that_profile_only() {
        let text = "store = \"file\"\n\n[profiles.a]\nkind = \"static\"\n\n\
                    [profiles.b]\nkind = \"static\"\ndefault_profile = \"a\"\n";
        let config = parse(Path::new("c.toml"), text).unwrap();
        assert!(config.profiles.contains_key("a"));
        let why = &config.broken["b"].why;
        assert!(
            why.starts_with("c.toml: line 8, [profiles.b], key default_profile: unknown field"),
            "{why}"
        );
        assert!(why.contains("a365 default PROFILE"), "{why}");
    }

    #[test]
    fn a_wrong_type_names_its_key_and_line() {
        let text = "[profiles.a]\nkind = \"refresh\"\nscopes = 3\nsecure = \"hunter2\"\n";
        let config = parse(Path::new("c.toml"), text).unwrap();
        let why = &config.broken["a"].why;
        assert!(why.contains("line 3, [profiles.a], key scopes:"), "{why}");
        let text = "[profiles.a]\nkind = \"refresh\"\nsecure = \"hunter2\"\n";
        let why = &parse(Path::new("c.toml"), text).unwrap().broken["a"].why;
        assert!(
            why.contains("key secure:") && !why.contains("hunter2"),
            "{why}"
        );
    }

    #[test]
    fn syntax_and_top_level_mistakes_are_errors_for_the_file() {
        let err = parse(Path::new("c.toml"), "store = \"file\"\nstroe = 1\n").unwrap_err();
        let err = err.to_string();
        assert!(err.contains("line 2") && err.contains("key stroe"), "{err}");
        let err = parse(Path::new("c.toml"), "[profiles.a\nkind = 1\n").unwrap_err();
        assert!(err.to_string().contains("line 1"), "{err}");
    }

    #[test]
    fn bad_limits_break_only_their_profile() {
        let text = "[profiles.a]\nkind = \"static\"\nlimits = { \"15q\" = 200 }\n\
                    [profiles.b]\nkind = \"static\"\nlimits = { \"15m\" = 200 }\n";
        let c = parse(Path::new("c.toml"), text).unwrap();
        assert!(c.broken["a"].why.contains("'15q'"), "{}", c.broken["a"].why);
        assert_eq!(c.profiles["b"].limits["15m"], 200);
    }

    #[test]
    fn proxy_is_routes_or_the_outbound_proxy() {
        let c = parse(Path::new("c.toml"), "proxy = \"http://p:3128\"\n").unwrap();
        assert_eq!(c.https_proxy.as_deref(), Some("http://p:3128"));
        let text = "[[proxy]]\nname = \"nexar\"\nlisten = \"127.0.0.1:7365\"\n\
                    upstream = \"https://api.nexar.com/graphql/\"\nprofile = \"n\"\n";
        let c = parse(Path::new("c.toml"), text).unwrap();
        assert_eq!(c.routes.len(), 1);
        assert_eq!(c.routes[0].listen, "127.0.0.1:7365");
        let err = parse(Path::new("c.toml"), &text.replace("profile", "profil"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("[[proxy]]") && err.contains("profil"), "{err}");
    }
}
