//! `sink add` and `sink remove`: a sink is checked and started before it
//! is written to config.toml, so that one that cannot write is never kept.

use a365_proto::{ErrorKind, ErrorReply, FileSink, Response};

use super::{Agent, internal, invalid};
use crate::config;

impl Agent {
    pub(super) async fn sink_add(
        &self,
        sink: FileSink,
        replace: bool,
    ) -> Result<Response, ErrorReply> {
        if !a365_proto::is_valid_profile_name(&sink.name) {
            return Err(invalid(format!(
                "invalid sink name '{}': use 1 to 64 letters, digits, '.', '_' or '-'",
                sink.name.escape_default()
            )));
        }
        // The profile must be served now: a typo is caught here.
        self.profile(Some(&sink.profile))?;
        let me = self
            .me
            .upgrade()
            .ok_or_else(|| internal("the agent is stopping"))?;
        let _edit = self.edits.lock().await;
        let old = self.sinks.get(&sink.name);
        if old.is_some() && !replace {
            return Err(ErrorReply::new(
                ErrorKind::BadRequest,
                format!(
                    "a sink named '{}' exists: `a365 sink remove {0}` first, or add --replace",
                    sink.name
                ),
            ));
        }
        let taken = self
            .sinks
            .list()
            .into_iter()
            .find(|s| same_file(&s.sink.path, &sink.path) && s.sink.name != sink.name);
        if let Some(other) = taken {
            return Err(invalid(format!(
                "sink '{}' writes {} already",
                other.sink.name, sink.path
            )));
        }
        if let Err(why) = crate::sink::check(&sink) {
            return Err(invalid(format!("sink '{}': {why}", sink.name)));
        }
        let (path, written) = (self.paths.config_file.clone(), sink.clone());
        config::in_background(move || config::write_sink(&path, &written))
            .await
            .map_err(|e| internal(e.to_string()))?;
        let started = self.sinks.start(&me, sink.clone());
        match started {
            Ok(Some(replaced)) => {
                let old = replaced.stop().await;
                // A replaced sink's file elsewhere would hold a token
                // nobody keeps fresh.
                if !same_file(&old.path, &sink.path) {
                    let said = remove_file(&old);
                    tracing::info!(sink = %sink.name, "replaced{said}");
                }
            }
            Ok(None) => {}
            Err(why) => {
                // Checked above: only a change of the directory meanwhile.
                if let Some(replaced) = self.sinks.failed(sink.clone(), why.clone()) {
                    replaced.stop().await;
                }
                return Err(invalid(format!("sink '{}': {why}", sink.name)));
            }
        }
        let whose = match &sink.workspace {
            Some(w) => format!("profile '{}' (workspace {w})", sink.profile),
            None => format!("profile '{}'", sink.profile),
        };
        Ok(Response::Done {
            message: format!(
                "sink '{}': {} holds the token of {whose} ({}), rewritten whenever it changes",
                sink.name,
                sink.path,
                sink.format.as_str()
            ),
        })
    }

    pub(super) async fn sink_remove(&self, name: &str) -> Result<Response, ErrorReply> {
        let _edit = self.edits.lock().await;
        let path = self.paths.config_file.clone();
        let owned = name.to_owned();
        let in_file = config::in_background(move || config::remove_sink(&path, &owned))
            .await
            .map_err(|e| internal(e.to_string()))?;
        let stopped = self.sinks.stop(name).await;
        if !in_file && stopped.is_none() {
            return Err(ErrorReply::new(
                ErrorKind::BadRequest,
                format!(
                    "no sink named '{}' (`a365 sink list` shows them)",
                    name.escape_default()
                ),
            ));
        }
        // A file nobody keeps fresh would hand out a dead token later.
        let removed = stopped.as_ref().map(remove_file).unwrap_or_default();
        Ok(Response::Done {
            message: format!("sink '{name}' removed{removed}"),
        })
    }
}

/// Deletes a sink's file, if its place is still one the sink may write
/// (another user could have swapped a directory on the way since), and
/// says what happened.
fn remove_file(sink: &FileSink) -> String {
    // The folders only: a group deleted since must not keep the file.
    let place = FileSink {
        group: None,
        ..sink.clone()
    };
    if let Err(why) = crate::sink::check(&place) {
        return format!("; {} is left: {why}", sink.path);
    }
    match std::fs::remove_file(&sink.path) {
        Ok(()) => format!("; {} removed", sink.path),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => format!("; {} is left: {e}", sink.path),
    }
}

/// Whether two paths name one file, however spelled (a case-insensitive
/// system, a linked folder): their folders resolved, their names compared.
fn same_file(a: &str, b: &str) -> bool {
    let resolved = |p: &str| {
        let p = std::path::Path::new(p);
        let dir = p.parent().and_then(|d| std::fs::canonicalize(d).ok())?;
        Some(dir.join(p.file_name()?))
    };
    match (resolved(a), resolved(b)) {
        // Windows and macOS compare names without case, by default.
        (Some(a), Some(b)) if cfg!(any(windows, target_os = "macos")) => {
            a.to_string_lossy().to_lowercase() == b.to_string_lossy().to_lowercase()
        }
        (Some(a), Some(b)) => a == b,
        _ => a == b,
    }
}
