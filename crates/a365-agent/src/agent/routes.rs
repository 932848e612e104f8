//! `proxy add` and `proxy remove`: a route starts before it is written to
//! config.toml, so that one that cannot serve is never kept.

use a365_proto::{ErrorKind, ErrorReply, ProxyRoute, Response};

use super::{Agent, internal, invalid};
use crate::config;

impl Agent {
    pub(super) async fn proxy_add(
        &self,
        mut route: ProxyRoute,
        replace: bool,
    ) -> Result<Response, ErrorReply> {
        if !a365_proto::is_valid_profile_name(&route.name) {
            return Err(invalid(format!(
                "invalid route name '{}': use 1 to 64 letters, digits, '.', '_' or '-'",
                route.name.escape_default()
            )));
        }
        // The profile must be served now: a typo is caught here.
        self.profile(Some(&route.profile))?;
        let me = self
            .me
            .upgrade()
            .ok_or_else(|| internal("the agent is stopping"))?;
        let _edit = self.edits.lock().await;
        let old = self.routes.get(&route.name);
        if old.is_some() && !replace {
            return Err(ErrorReply::new(
                ErrorKind::BadRequest,
                format!(
                    "a proxy route named '{}' exists: `a365 proxy remove {0}` first, or add \
                     --replace",
                    route.name
                ),
            ));
        }
        // No address given: the one it had (the tool's URL stays), else a
        // free port.
        if route.listen.is_empty() {
            route.listen = match &old {
                Some(old) => old.listen.clone(),
                None => "127.0.0.1:0".into(),
            };
        }
        // The old one lets go of its address first (the same port, often).
        if old.is_some() {
            self.routes.stop(&route.name).await;
        }
        let state_dir = self.paths.state_dir.clone();
        let started = match self.routes.start(&me, route.clone(), &state_dir).await {
            Ok(started) => started,
            Err(why) => {
                if let Some(old) = old {
                    self.put_route_back(&me, old).await;
                }
                return Err(invalid(format!("proxy route '{}': {why}", route.name)));
            }
        };
        let (path, written) = (self.paths.config_file.clone(), started.clone());
        if let Err(e) = config::in_background(move || config::write_route(&path, &written)).await {
            self.routes.stop(&route.name).await;
            if let Some(old) = old {
                self.put_route_back(&me, old).await;
            }
            return Err(internal(e.to_string()));
        }
        let url = crate::proxy::Address::parse(&started.listen)
            .map(|a| a.url())
            .unwrap_or_default();
        let whose = match &started.workspace {
            Some(w) => format!("profile '{}' (workspace {w})", started.profile),
            None => format!("profile '{}'", started.profile),
        };
        Ok(Response::Done {
            message: format!(
                "proxy route '{}': {url} forwards to {} with the token of {whose}; point your \
                 tool at {url}",
                started.name, started.upstream
            ),
        })
    }

    async fn put_route_back(&self, me: &std::sync::Arc<Agent>, old: ProxyRoute) {
        let state_dir = self.paths.state_dir.clone();
        if let Err(why) = self.routes.start(me, old.clone(), &state_dir).await {
            self.routes.failed(old, why);
        }
    }

    pub(super) async fn proxy_remove(&self, name: &str) -> Result<Response, ErrorReply> {
        let _edit = self.edits.lock().await;
        let path = self.paths.config_file.clone();
        let owned = name.to_owned();
        let in_file = config::in_background(move || config::remove_route(&path, &owned))
            .await
            .map_err(|e| internal(e.to_string()))?;
        let served = self.routes.stop(name).await.is_some();
        if !in_file && !served {
            return Err(ErrorReply::new(
                ErrorKind::BadRequest,
                format!(
                    "no proxy route named '{}' (`a365 proxy list` shows them)",
                    name.escape_default()
                ),
            ));
        }
        crate::proxy::forget_secret(&self.paths.state_dir, name);
        Ok(Response::Done {
            message: format!("proxy route '{name}' removed"),
        })
    }
}
