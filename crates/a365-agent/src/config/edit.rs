//! Edits of `config.toml` in place with `toml_edit`: the agent is its only
//! writer, and a user's comments and layout survive every edit.

use std::path::Path;

use a365_proto::{FileSink, ProfileSpec, ProxyRoute, StoreKind};

use super::ConfigError;

/// Runs an edit of `config.toml` on the blocking pool, like the stores'
/// I/O: the runtime serves every client on one thread, which must not wait
/// on a rewrite and its fsync (106 ms with 10,000 profiles).
pub async fn in_background<T: Send + 'static>(
    edit: impl FnOnce() -> Result<T, ConfigError> + Send + 'static,
) -> Result<T, ConfigError> {
    match tokio::task::spawn_blocking(edit).await {
        Ok(result) => result,
        Err(e) => Err(ConfigError::Invalid(format!(
            "editing the config file: {e}"
        ))),
    }
}

/// Adds or replaces `[profiles.NAME]` in the document at `path`, keeping
/// everything else (comments included) as it was.
pub fn write_profile(path: &Path, name: &str, spec: &ProfileSpec) -> Result<(), ConfigError> {
    edit(path, |doc| {
        let profiles = doc
            .entry("profiles")
            .or_insert_with(|| {
                let mut t = toml_edit::Table::new();
                t.set_implicit(true);
                toml_edit::Item::Table(t)
            })
            .as_table_mut()
            .ok_or_else(|| {
                ConfigError::Invalid("'profiles' in the config is not a table".into())
            })?;
        let table = profile_table(spec);
        match profiles.get_mut(name).and_then(|item| item.as_table_mut()) {
            // Keep the comment above an existing profile.
            Some(existing) => {
                let decor = existing.decor().clone();
                *existing = table;
                *existing.decor_mut() = decor;
            }
            None => {
                profiles.insert(name, toml_edit::Item::Table(table));
            }
        }
        Ok(())
    })
}

/// `[profiles.NAME]` as written: only the fields the profile sets.
fn profile_table(spec: &ProfileSpec) -> toml_edit::Table {
    let mut table = toml_edit::Table::new();
    table.insert("kind", toml_edit::value(spec.kind.as_str()));
    if let Some(realm) = &spec.realm {
        table.insert("realm", toml_edit::value(realm.as_str()));
    }
    if let Some(url) = &spec.token_url {
        table.insert("token_url", toml_edit::value(url.as_str()));
    }
    if let Some(id) = &spec.client_id {
        table.insert("client_id", toml_edit::value(id.as_str()));
    }
    if !spec.scopes.is_empty() {
        let scopes: toml_edit::Array = spec.scopes.iter().map(String::as_str).collect();
        table.insert("scopes", toml_edit::value(scopes));
    }
    if let Some(secure) = spec.secure {
        table.insert("secure", toml_edit::value(secure));
    }
    if let Some(store) = spec.store {
        table.insert("store", toml_edit::value(store.as_str()));
    }
    for (key, value) in [
        ("authorize_url", &spec.authorize_url),
        ("redirect_uri", &spec.redirect_uri),
        ("base_url", &spec.base_url),
        ("revocation_url", &spec.revocation_url),
        ("introspection_url", &spec.introspection_url),
        ("workspace", &spec.workspace),
        ("workspace_of", &spec.workspace_of),
        ("ca_file", &spec.ca_file),
    ] {
        if let Some(value) = value {
            table.insert(key, toml_edit::value(value.as_str()));
        }
    }
    if let Some(auth) = spec.client_auth {
        table.insert("client_auth", toml_edit::value(auth.as_str()));
    }
    for (key, params) in [
        ("authorize_params", &spec.authorize_params),
        ("token_params", &spec.token_params),
        ("headers", &spec.headers),
    ] {
        if !params.is_empty() {
            let inline: toml_edit::InlineTable = params
                .iter()
                .map(|(k, v)| (k.as_str(), toml_edit::Value::from(v.as_str())))
                .collect();
            table.insert(key, toml_edit::value(inline));
        }
    }
    if let Some(secs) = spec.renew_lifetime_secs {
        table.insert(
            "renew_lifetime_secs",
            toml_edit::value(i64::try_from(secs).unwrap_or(i64::MAX)),
        );
    }
    if !spec.limits.is_empty() {
        let inline: toml_edit::InlineTable = spec
            .limits
            .iter()
            .map(|(k, v)| (k.as_str(), toml_edit::Value::from(i64::from(*v))))
            .collect();
        table.insert("limits", toml_edit::value(inline));
    }
    table
}

/// Sets the top-level `default_profile`, above every table (a line
/// appended to the file would land in the last one).
pub fn write_default_profile(path: &Path, name: &str) -> Result<(), ConfigError> {
    edit(path, |doc| {
        match doc.get_mut("default_profile") {
            Some(item) => *item = toml_edit::value(name),
            None => {
                doc.insert("default_profile", toml_edit::value(name));
            }
        }
        Ok(())
    })
}

/// Sets the top-level `store`: where new profiles keep their secrets.
pub fn write_default_store(path: &Path, store: StoreKind) -> Result<(), ConfigError> {
    edit(path, |doc| {
        match doc.get_mut("store") {
            // In place, so a comment above the key stays.
            Some(item) => *item = toml_edit::value(store.as_str()),
            None => {
                doc.insert("store", toml_edit::value(store.as_str()));
            }
        }
        Ok(())
    })
}

/// Removes `[profiles.NAME]`; true if it was there.
pub fn remove_profile(path: &Path, name: &str) -> Result<bool, ConfigError> {
    let mut removed = false;
    edit(path, |doc| {
        if let Some(profiles) = doc.get_mut("profiles").and_then(|p| p.as_table_mut()) {
            removed = profiles.remove(name).is_some();
        }
        if doc.get("default_profile").and_then(|v| v.as_str()) == Some(name) {
            doc.remove("default_profile");
        }
        Ok(())
    })?;
    Ok(removed)
}

/// Adds `[[proxy]]` for `route`, or replaces the one of its name. A
/// `proxy = "URL"` of old (the HTTP proxy for token requests) becomes
/// `https_proxy`, since `proxy` now holds the routes.
pub fn write_route(path: &Path, route: &ProxyRoute) -> Result<(), ConfigError> {
    edit(path, |doc| {
        if let Some(url) = doc.get("proxy").and_then(|p| p.as_str()).map(str::to_owned) {
            doc.remove("proxy");
            doc.insert("https_proxy", toml_edit::value(url));
        }
        put_named(doc, "proxy", &route.name, route_table(route))
    })
}

/// `[[proxy]]` as written: only the fields the route sets.
fn route_table(route: &ProxyRoute) -> toml_edit::Table {
    let mut table = toml_edit::Table::new();
    table.insert("name", toml_edit::value(route.name.as_str()));
    table.insert("listen", toml_edit::value(route.listen.as_str()));
    table.insert("upstream", toml_edit::value(route.upstream.as_str()));
    table.insert("profile", toml_edit::value(route.profile.as_str()));
    if let Some(workspace) = &route.workspace {
        table.insert("workspace", toml_edit::value(workspace.as_str()));
    }
    if !route.headers.is_empty() {
        let mut headers = toml_edit::InlineTable::new();
        for (k, v) in &route.headers {
            headers.insert(k, v.as_str().into());
        }
        table.insert("headers", toml_edit::value(headers));
    }
    if route.require_secret {
        table.insert("require_secret", toml_edit::value(true));
    }
    if !route.allow_origins.is_empty() {
        let origins: toml_edit::Array = route.allow_origins.iter().map(String::as_str).collect();
        table.insert("allow_origins", toml_edit::value(origins));
    }
    table
}

/// Adds `[[sink]]` for `sink`, or replaces the one of its name (keeping
/// the comments above it).
pub fn write_sink(path: &Path, sink: &FileSink) -> Result<(), ConfigError> {
    edit(path, |doc| {
        put_named(doc, "sink", &sink.name, sink_table(sink))
    })
}

/// Puts `table` in the `[[key]]` array: in place of the one named `name`
/// (keeping the comments above it), else at the end.
fn put_named(
    doc: &mut toml_edit::DocumentMut,
    key: &str,
    name: &str,
    table: toml_edit::Table,
) -> Result<(), ConfigError> {
    let tables = doc
        .entry(key)
        .or_insert_with(|| toml_edit::Item::ArrayOfTables(Default::default()))
        .as_array_of_tables_mut()
        .ok_or_else(|| ConfigError::Invalid(format!("'{key}' in the config is not [[{key}]]")))?;
    let at = tables
        .iter()
        .position(|t| t.get("name").and_then(|n| n.as_str()) == Some(name));
    match at.and_then(|i| tables.get_mut(i)) {
        Some(existing) => {
            let decor = existing.decor().clone();
            *existing = table;
            *existing.decor_mut() = decor;
        }
        None => tables.push(table),
    }
    Ok(())
}

/// `[[sink]]` as written: only the fields the sink sets.
fn sink_table(sink: &FileSink) -> toml_edit::Table {
    let mut table = toml_edit::Table::new();
    table.insert("name", toml_edit::value(sink.name.as_str()));
    table.insert("path", toml_edit::value(sink.path.as_str()));
    table.insert("profile", toml_edit::value(sink.profile.as_str()));
    if sink.format != a365_proto::SinkFormat::Raw {
        table.insert("format", toml_edit::value(sink.format.as_str()));
    }
    if !sink.newline {
        table.insert("newline", toml_edit::value(false));
    }
    for (key, value) in [
        ("workspace", &sink.workspace),
        ("var", &sink.var),
        ("group", &sink.group),
        ("command", &sink.command),
    ] {
        if let Some(value) = value {
            table.insert(key, toml_edit::value(value.as_str()));
        }
    }
    table
}

/// Removes the `[[sink]]` named `name`; true if it was there.
pub fn remove_sink(path: &Path, name: &str) -> Result<bool, ConfigError> {
    remove_named(path, "sink", name)
}

/// Removes the `[[proxy]]` named `name`; true if it was there.
pub fn remove_route(path: &Path, name: &str) -> Result<bool, ConfigError> {
    remove_named(path, "proxy", name)
}

/// Removes the `[[key]]` table named `name`; true if it was there.
fn remove_named(path: &Path, key: &str, name: &str) -> Result<bool, ConfigError> {
    let mut removed = false;
    edit(path, |doc| {
        if let Some(tables) = doc.get_mut(key).and_then(|p| p.as_array_of_tables_mut()) {
            let before = tables.len();
            tables.retain(|t| t.get("name").and_then(|n| n.as_str()) != Some(name));
            removed = tables.len() != before;
            if tables.is_empty() {
                doc.remove(key);
            }
        }
        Ok(())
    })?;
    Ok(removed)
}

fn edit(
    path: &Path,
    change: impl FnOnce(&mut toml_edit::DocumentMut) -> Result<(), ConfigError>,
) -> Result<(), ConfigError> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(source) => {
            return Err(ConfigError::Read {
                path: path.into(),
                source,
            });
        }
    };
    let mut doc: toml_edit::DocumentMut =
        text.parse()
            .map_err(|e: toml_edit::TomlError| ConfigError::Parse {
                path: path.into(),
                message: e.message().to_owned(),
            })?;
    change(&mut doc)?;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|source| ConfigError::Write {
            path: dir.into(),
            source,
        })?;
    }
    a365_store::write_atomic(path, doc.to_string().as_bytes()).map_err(|source| {
        ConfigError::Write {
            path: path.into(),
            source,
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use a365_proto::Kind;

    #[test]
    fn edits_keep_comments() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.toml");
        std::fs::write(
            &path,
            "# my settings\nstore = \"file\"\nproxy = \"http://127.0.0.1:1\" # keep\n\n# the work profile\n[profiles.work]\nkind = \"static\"\n",
        )
        .unwrap();
        let mut s = ProfileSpec {
            kind: Kind::Refresh,
            client_id: Some("cid".into()),
            ..ProfileSpec::default()
        };
        s.realm = Some("altium365".into());
        s.scopes = vec!["openid".into()];
        s.store = Some(StoreKind::Keyring);
        write_profile(&path, "gov", &s).unwrap();
        write_profile(&path, "work", &s).unwrap();
        write_default_store(&path, StoreKind::Memory).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.contains("# my settings"), "{text}");
        assert!(text.contains("# keep"), "{text}");
        assert!(
            text.contains("# the work profile\n[profiles.work]"),
            "{text}"
        );
        let config = Config::load(&path).unwrap();
        assert_eq!(config.store, Some(StoreKind::Memory));
        assert_eq!(config.profiles["gov"], s);
        assert_eq!(config.profiles["work"], s);
        assert!(remove_profile(&path, "gov").unwrap());
        assert!(!remove_profile(&path, "gov").unwrap());
        let config = Config::load(&path).unwrap();
        assert_eq!(config.profiles.len(), 1);
        assert_eq!(config.default_lifetime_secs, 3600);
        // A route moves the old outbound `proxy` string to https_proxy.
        let route = ProxyRoute {
            name: "nexar".into(),
            listen: "127.0.0.1:7365".into(),
            upstream: "https://api.nexar.com/graphql/".into(),
            profile: "work".into(),
            workspace: None,
            headers: [("x-a".to_owned(), "b".to_owned())].into(),
            require_secret: true,
            allow_origins: vec!["https://ide.example".into()],
        };
        write_route(&path, &route).unwrap();
        write_route(&path, &route).unwrap();
        let config = Config::load(&path).unwrap();
        assert_eq!(config.routes, vec![route]);
        assert_eq!(config.https_proxy.as_deref(), Some("http://127.0.0.1:1"));
        assert!(remove_route(&path, "nexar").unwrap());
        assert!(!remove_route(&path, "nexar").unwrap());
        assert!(Config::load(&path).unwrap().routes.is_empty());
    }
}
