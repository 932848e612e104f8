//! `expires-soon`: tokens the agent cannot renew (a static token, made
//! for up to a year) are announced, once a day per profile, before they
//! expire.

use std::collections::HashMap;
use std::sync::{Arc, Weak};
use std::time::Duration;

use tokio::sync::Notify;

use a365_proto::human_ms;

use crate::agent::Agent;

/// Announces, once a day per profile, tokens that cannot be renewed and
/// expire within `days` (a static token made for a year).
/// `wake` makes it look again at once (a profile was added). It ends with
/// the agent.
pub async fn expiry_watcher(agent: Weak<Agent>, days: u64, wake: Arc<Notify>) {
    let window_ms = i64::try_from(days.saturating_mul(86_400_000)).unwrap_or(i64::MAX);
    let mut announced: HashMap<String, i64> = HashMap::new();
    loop {
        let Some(strong) = agent.upgrade() else {
            return;
        };
        let now = strong.shared().clock.now_ms();
        for profile in strong.all_profiles() {
            let Some(exp) = profile.unrenewable_expiry() else {
                continue;
            };
            let due = exp > now && exp - now <= window_ms;
            let recent = announced
                .get(&profile.name)
                .is_some_and(|at| now - at < 86_400_000);
            if due && !recent {
                announced.insert(profile.name.clone(), now);
                strong.shared().events.emit(
                    &profile.name,
                    a365_proto::EventKind::ExpiresSoon,
                    Some(exp),
                    format!(
                        "the token of profile '{}' expires in {} and cannot be renewed: {}",
                        profile.name,
                        human_ms(exp - now),
                        profile.renew_advice()
                    ),
                );
            }
        }
        drop(strong);
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(3600)) => {}
            _ = wake.notified() => {}
        }
    }
}
