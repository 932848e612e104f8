//! The refresh engine's rules, without I/O: when a token request is due,
//! what a provider's answer or error does to the credential and to what is
//! served, and how long to back off. The local refresher, the fleet's,
//! `login` and a shared `add` all go through these functions, so their
//! rules cannot drift apart again.

use std::sync::Arc;
use std::time::Duration;

use a365_proto::human_ms;
use a365_store::Credential;
use secrecy::SecretString;

use super::{Held, Phase, Snapshot};
use crate::provider::{Obtained, ProviderError, rotation_seen};
use crate::schedule;

/// A provider's good answer folded into the credential it renewed.
#[derive(Debug)]
pub(crate) struct Folded {
    /// The next credential, to be made durable before `held` is served.
    pub credential: Credential,
    /// The refresh token presented is dead (a new one came back): the
    /// save must be durable before anything else happens.
    pub rotated: bool,
    /// Whether this answer showed that the provider rotates refresh
    /// tokens; `None` when none was presented.
    pub rotates: Option<bool>,
    /// The token to serve.
    pub held: Held,
}

/// Folds `got` into `credential`: a rotated refresh token replaces the
/// old one, a new Designer Cloud token id retires the old one (deleted at
/// the provider only once the new one is saved), and the access token,
/// its expiry and scopes are the answer's.
pub(crate) fn fold(credential: &Credential, got: Obtained, now: i64) -> Folded {
    let rotates = rotation_seen(
        credential.refresh_token.as_ref(),
        got.refresh_token.as_ref(),
    );
    let rotated = got.refresh_token.is_some();
    let mut next = credential.clone();
    if let Some(rt) = got.refresh_token {
        next.refresh_token = Some(rt);
    }
    if let Some(id) = got.token_id
        && let Some(old) = next.token_id.replace(id)
    {
        next.retired_token_ids.push(old);
    }
    next.access_token = Some(got.access_token.clone());
    next.access_expires_at_ms = got.expires_at_ms;
    next.refresh_sent_at_ms = None;
    next.rotates = rotates.or(credential.rotates);
    next.client_auth = got.client_auth.or(credential.client_auth);
    next.assumed_lifetime_s = got.assumed_lifetime_s;
    next.access_scopes = got.scopes.clone();
    next.updated_at_ms = now;
    Folded {
        credential: next,
        rotated,
        rotates,
        held: Held {
            secret: got.access_token,
            expires_at_ms: got.expires_at_ms,
            scopes: got.scopes,
            obtained_at_ms: now,
            assumed_lifetime_s: got.assumed_lifetime_s,
        },
    }
}

/// Whether sending `credential` again is harmless: it holds no refresh
/// token, or its provider was seen not to rotate them. Otherwise a request
/// whose answer was lost may have spent it, and a second one could revoke
/// the grant (RFC 9700's reuse detection).
pub(crate) fn replay_safe(credential: &Credential) -> bool {
    credential.refresh_token.is_none() || credential.rotates == Some(false)
}

/// The dead state a lost answer leaves (the refresh token was sent at
/// `sent_at` and no answer came: `cause`): its reason and the message
/// that says what happened and what to do.
pub(crate) fn lost_answer(cause: &str, sent_at: i64, now: i64, advice: &str) -> (String, String) {
    let reason = format!(
        "the answer to a refresh sent {} ago was lost ({cause})",
        human_ms(now.saturating_sub(sent_at).max(0))
    );
    let message = format!(
        "{reason}: the provider may have rotated the refresh token, and a365 does not send it \
         again (that could revoke the grant). The current access token is served until it \
         expires. {advice} (With an introspection endpoint, introspection_url, a365 asks the \
         provider instead.)"
    );
    (reason, message)
}

/// What a provider's error means for the credential.
#[derive(Debug)]
pub(crate) enum Verdict {
    /// Try again at `retry_at_ms`, serving the held token meanwhile.
    Retry {
        retry_at_ms: i64,
        /// The error, for `status` and the logs.
        error: String,
        /// A new refresh token that came without a usable access token:
        /// the old one is dead, so this one must be saved (durably) first.
        rotated: Option<SecretString>,
    },
    /// The credential is dead; `message` tells the user what to do.
    Dead { reason: String, message: String },
}

/// Refusals in a row (RFC 6749 §5.2: a 4xx other than 408 and 429) after
/// which a credential that has worked needs the user.
const REJECTED_LIMIT: u32 = 3;

/// Judges the `failures`th failure in a row (this one included); `first`:
/// the credential has never produced a token (a refusal then is not worth
/// waiting on). `advice` is the kind's way back from a dead credential;
/// `jitter` is in `[0, 1)`.
pub(crate) fn judge(
    mut e: ProviderError,
    (failures, first): (u32, bool),
    now: i64,
    advice: &str,
    jitter: f64,
) -> Verdict {
    let (rejected, retry_after) = match &e {
        ProviderError::Dead(reason) => {
            return Verdict::Dead {
                reason: reason.clone(),
                message: format!("{reason}. {advice}"),
            };
        }
        ProviderError::Transient { retry_after, .. } => (false, *retry_after),
        ProviderError::Unusable { .. } | ProviderError::Unanswered(_) => (false, None),
        ProviderError::Rejected(_) => (true, None),
    };
    if rejected && (first || failures >= REJECTED_LIMIT) {
        // A refusal that waiting does not mend: the settings or the
        // credential need the user.
        let reason = e.to_string();
        let message = match first {
            true => format!(
                "{reason}: the first token request of this credential was refused; check the \
                 profile's settings (token URL, client id, scopes, --client-auth) and secrets. \
                 {advice}"
            ),
            false => format!(
                "{reason}, {failures} times in a row: the profile's settings or credential need \
                 attention. {advice}"
            ),
        };
        return Verdict::Dead { reason, message };
    }
    let wait = schedule::backoff(failures, rejected, retry_after, jitter);
    let rotated = e.take_rotated();
    let error = e.to_string();
    Verdict::Retry {
        retry_at_ms: now.saturating_add(millis(wait)),
        error,
        rotated,
    }
}

fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// The event of a failed attempt: the error, when the next attempt is,
/// and a warning when the held token ends before that attempt (the server
/// asked to wait that long): said now, not once clients start failing.
pub(crate) fn failure_event(
    error: &str,
    now: i64,
    retry_at: i64,
    held_expiry: Option<i64>,
) -> String {
    let gap = match held_expiry {
        Some(exp) if exp > now && exp < retry_at => format!(
            "; the held token expires in {}, before that attempt",
            human_ms(exp - now)
        ),
        _ => String::new(),
    };
    format!("{error}; next attempt in {}{gap}", human_ms(retry_at - now))
}

/// When the next token request is due by the published state alone;
/// `None` while the credential is dead.
pub(super) fn due_at(snap: &Snapshot, now_ms: i64) -> Option<i64> {
    match &snap.phase {
        Phase::NeedsReauth(_) => None,
        Phase::Empty => Some(now_ms),
        Phase::Failing { retry_at_ms } => Some(*retry_at_ms),
        Phase::Fresh | Phase::Refreshing => snap.next_refresh_at_ms,
    }
}

/// Whether to make a token request now: never for a dead credential;
/// when forced or due; on a client's demand unless backing off.
pub(super) fn should_refresh(
    phase: &Phase,
    due: Option<i64>,
    now_ms: i64,
    forced: bool,
    demanded: bool,
) -> bool {
    let backing_off = matches!(phase, Phase::Failing { retry_at_ms } if *retry_at_ms > now_ms);
    let dead = matches!(phase, Phase::NeedsReauth(_));
    !dead && (forced || due.is_some_and(|d| d <= now_ms) || (demanded && !backing_off))
}

/// How long to sleep: until `due`, but no later than the next tick. The
/// tick falls on a multiple of the wall clock's tick, the same instant for
/// every profile: an idle agent wakes twice a minute, not twice per profile.
pub(super) fn sleep_ms(due: Option<i64>, now_ms: i64, tick_ms: i64) -> i64 {
    let tick = tick_ms - now_ms.rem_euclid(tick_ms);
    due.map_or(tick, |d| (d - now_ms).clamp(0, tick))
}

/// The published state's transitions, one per outcome.
impl Snapshot {
    /// A new token is served, to be renewed at `next`.
    pub(super) fn serve(&mut self, held: Held, next: Option<i64>, rotates: Option<bool>) {
        self.token = Some(Arc::new(held));
        self.phase = Phase::Fresh;
        self.next_refresh_at_ms = next;
        self.attempts_done += 1;
        self.rotates = rotates.or(self.rotates);
    }

    /// Backing off until `retry_at`; the held token is served while valid.
    /// A dead credential stays dead.
    pub(super) fn failing(&mut self, retry_at: i64, error: String) {
        if !matches!(self.phase, Phase::NeedsReauth(_)) {
            self.phase = Phase::Failing {
                retry_at_ms: retry_at,
            };
            self.next_refresh_at_ms = Some(retry_at);
        }
        self.last_error = Some(error);
        self.attempts_done += 1;
    }

    /// Dead: nothing more is sent until the user acts on `message`.
    pub(super) fn dead(&mut self, message: String, reason: String) {
        self.phase = Phase::NeedsReauth(message);
        self.last_error = Some(reason);
        self.next_refresh_at_ms = None;
        self.attempts_done += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use secrecy::ExposeSecret;

    fn snap(phase: Phase, next: Option<i64>) -> Snapshot {
        Snapshot {
            token: None,
            phase,
            last_error: None,
            next_refresh_at_ms: next,
            attempts_done: 0,
            rotates: None,
            refreshed_by: None,
            client_auth: None,
            account: None,
        }
    }

    fn secret(s: &str) -> SecretString {
        SecretString::from(s)
    }

    fn credential(rt: Option<&str>, token_id: Option<&str>) -> Credential {
        let mut c = crate::provider::new_credential(0);
        c.refresh_token = rt.map(secret);
        c.token_id = token_id.map(str::to_owned);
        c
    }

    fn answer(rt: Option<&str>, token_id: Option<&str>) -> Obtained {
        Obtained {
            access_token: secret("at2"),
            expires_at_ms: Some(3_600_000),
            scopes: vec!["a".into()],
            refresh_token: rt.map(secret),
            token_id: token_id.map(str::to_owned),
            client_auth: None,
            assumed_lifetime_s: None,
        }
    }

    /// Every kind of answer, folded: what is kept, what is replaced, and
    /// whether the save must be durable first.
    #[test]
    fn answers_fold_into_the_credential() {
        struct Row {
            had: (Option<&'static str>, Option<&'static str>),
            got: (Option<&'static str>, Option<&'static str>),
            rt: Option<&'static str>,
            rotated: bool,
            rotates: Option<bool>,
            token_id: Option<&'static str>,
            retired: &'static [&'static str],
        }
        #[rustfmt::skip]
        let rows = [
            // A rotating provider: the new refresh token replaces the old.
            Row { had: (Some("r1"), None), got: (Some("r2"), None), rt: Some("r2"), rotated: true, rotates: Some(true), token_id: None, retired: &[] },
            // The same refresh token back: kept, and the answer says so.
            Row { had: (Some("r1"), None), got: (Some("r1"), None), rt: Some("r1"), rotated: true, rotates: Some(false), token_id: None, retired: &[] },
            // None back: the old one stays, and it does not rotate.
            Row { had: (Some("r1"), None), got: (None, None), rt: Some("r1"), rotated: false, rotates: Some(false), token_id: None, retired: &[] },
            // Client credentials: no refresh token either side.
            Row { had: (None, None), got: (None, None), rt: None, rotated: false, rotates: None, token_id: None, retired: &[] },
            // Designer Cloud: the old token id is retired, not lost.
            Row { had: (None, Some("t1")), got: (None, Some("t2")), rt: None, rotated: false, rotates: None, token_id: Some("t2"), retired: &["t1"] },
            Row { had: (None, None), got: (None, Some("t1")), rt: None, rotated: false, rotates: None, token_id: Some("t1"), retired: &[] },
        ];
        for (i, row) in rows.iter().enumerate() {
            let had = credential(row.had.0, row.had.1);
            let f = fold(&had, answer(row.got.0, row.got.1), 1_000);
            let c = &f.credential;
            assert_eq!(
                c.refresh_token.as_ref().map(|s| s.expose_secret()),
                row.rt,
                "row {i}"
            );
            assert_eq!(f.rotated, row.rotated, "row {i}");
            assert_eq!(f.rotates, row.rotates, "row {i}");
            assert_eq!(c.token_id.as_deref(), row.token_id, "row {i}");
            assert_eq!(c.retired_token_ids, row.retired, "row {i}");
            assert_eq!(
                c.access_token.as_ref().map(|s| s.expose_secret()),
                Some("at2")
            );
            assert_eq!(c.access_expires_at_ms, Some(3_600_000));
            assert_eq!(c.access_scopes, ["a"]);
            assert_eq!(c.updated_at_ms, 1_000);
            assert_eq!(f.held.obtained_at_ms, 1_000);
            assert_eq!(f.held.expires_at_ms, Some(3_600_000));
        }
    }

    /// Every error, judged: dead or when to retry (at least the server's
    /// `Retry-After`, a minute or more for a refusal), and a refresh token
    /// that came without a usable access token kept.
    #[test]
    fn errors_are_judged_by_one_rule() {
        let transient = |retry_after: Option<u64>| ProviderError::Transient {
            message: "503".into(),
            retry_after: retry_after.map(Duration::from_secs),
        };
        // (error, failures, earliest retry, latest retry) in ms from now;
        // jitter 0 gives the earliest of each back-off.
        let rows: Vec<(ProviderError, u32, i64, i64)> = vec![
            (transient(None), 1, 500, 500),
            (transient(None), 4, 4_000, 4_000),
            (transient(Some(120)), 1, 120_000, 120_000),
            (transient(Some(999_999)), 1, 3_600_000, 3_600_000),
            (ProviderError::Unanswered("timeout".into()), 2, 1_000, 1_000),
            (ProviderError::Rejected("400".into()), 1, 30_000, 30_000),
            (ProviderError::Rejected("400".into()), 2, 60_000, 60_000),
        ];
        for (i, (e, failures, low, high)) in rows.into_iter().enumerate() {
            match judge(e, (failures, false), 10_000, "add it again", 0.0) {
                Verdict::Retry {
                    retry_at_ms,
                    rotated,
                    ..
                } => {
                    let wait = retry_at_ms - 10_000;
                    assert!((low..=high).contains(&wait), "row {i}: {wait}");
                    assert!(rotated.is_none());
                }
                Verdict::Dead { .. } => panic!("row {i} is not dead"),
            }
        }
        let unusable = ProviderError::Unusable {
            message: "no access_token".into(),
            refresh_token: Some(secret("r2")),
        };
        match judge(unusable, (1, false), 0, "", 0.0) {
            Verdict::Retry { rotated, error, .. } => {
                assert_eq!(
                    rotated.map(|s| s.expose_secret().to_owned()).as_deref(),
                    Some("r2")
                );
                assert_eq!(error, "no access_token");
            }
            Verdict::Dead { .. } => panic!("an unusable answer is not a dead credential"),
        }
        match judge(
            ProviderError::Dead("invalid_grant".into()),
            (1, false),
            0,
            "add it again",
            0.0,
        ) {
            Verdict::Dead { reason, message } => {
                assert_eq!(reason, "invalid_grant");
                assert_eq!(message, "invalid_grant. add it again");
            }
            Verdict::Retry { .. } => panic!("invalid_grant is dead"),
        }
        // A refusal (a bare 400, an unknown code) waits, but not for ever,
        // and not at all for a credential that never worked.
        for (failures, first) in [(3, false), (1, true)] {
            let e = ProviderError::Rejected("HTTP 400".into());
            match judge(e, (failures, first), 0, "add it again", 0.0) {
                Verdict::Dead { reason, message } => {
                    assert_eq!(reason, "HTTP 400");
                    assert!(message.ends_with("add it again"), "{message}");
                }
                Verdict::Retry { .. } => panic!("{failures} refusals, first {first}: not dead"),
            }
        }
    }

    #[test]
    fn the_failure_event_warns_when_the_token_ends_before_the_retry() {
        assert_eq!(
            failure_event("503", 0, 5_000, Some(60_000)),
            "503; next attempt in 5s"
        );
        assert_eq!(
            failure_event("429", 0, 120_000, Some(60_000)),
            "429; next attempt in 2m 0s; the held token expires in 1m 0s, before that attempt"
        );
        assert_eq!(
            failure_event("503", 0, 5_000, None),
            "503; next attempt in 5s"
        );
    }

    #[test]
    fn a_dead_credential_stays_dead_when_a_later_round_fails() {
        let mut s = snap(Phase::Fresh, Some(9));
        s.dead("log in".into(), "invalid_grant".into());
        s.failing(100, "etcd down".into());
        assert_eq!(s.phase, Phase::NeedsReauth("log in".into()));
        assert_eq!(s.next_refresh_at_ms, None);
        assert_eq!(s.last_error.as_deref(), Some("etcd down"));
        let mut s = snap(Phase::Fresh, Some(9));
        s.failing(100, "503".into());
        assert_eq!(s.phase, Phase::Failing { retry_at_ms: 100 });
        assert_eq!(s.next_refresh_at_ms, Some(100));
    }

    #[test]
    fn due_follows_the_phase() {
        assert_eq!(due_at(&snap(Phase::Empty, Some(9)), 5), Some(5));
        assert_eq!(due_at(&snap(Phase::Fresh, Some(9)), 5), Some(9));
        assert_eq!(due_at(&snap(Phase::Fresh, None), 5), None);
        let failing = Phase::Failing { retry_at_ms: 7 };
        assert_eq!(due_at(&snap(failing, Some(9)), 5), Some(7));
        let dead = Phase::NeedsReauth("log in".into());
        assert_eq!(due_at(&snap(dead, Some(9)), 5), None);
    }

    #[test]
    fn a_dead_credential_is_never_sent_even_when_forced() {
        let dead = Phase::NeedsReauth("log in".into());
        assert!(!should_refresh(&dead, Some(0), 5, true, true));
    }

    #[test]
    fn refresh_when_due_forced_or_demanded() {
        assert!(!should_refresh(&Phase::Fresh, Some(10), 5, false, false));
        assert!(should_refresh(&Phase::Fresh, Some(5), 5, false, false));
        assert!(should_refresh(&Phase::Fresh, Some(10), 5, true, false));
        assert!(should_refresh(&Phase::Fresh, Some(10), 5, false, true));
        assert!(should_refresh(&Phase::Fresh, None, 5, false, true));
    }

    #[test]
    fn a_client_demand_does_not_cut_a_backoff_short() {
        let failing = Phase::Failing { retry_at_ms: 10 };
        assert!(!should_refresh(&failing, Some(10), 5, false, true));
        // Forcing (`a365 refresh`) does.
        assert!(should_refresh(&failing, Some(10), 5, true, false));
        // Once the backoff is over, it is simply due.
        assert!(should_refresh(&failing, Some(10), 10, false, false));
    }

    #[test]
    fn sleeps_until_due_but_never_past_the_shared_tick() {
        assert_eq!(sleep_ms(None, 31_000, 30_000), 29_000);
        assert_eq!(sleep_ms(Some(32_000), 31_000, 30_000), 1_000);
        assert_eq!(sleep_ms(Some(90_000), 31_000, 30_000), 29_000);
        assert_eq!(sleep_ms(Some(1_000), 31_000, 30_000), 0);
        // Every profile wakes at the same instant.
        assert_eq!(31_000 + sleep_ms(None, 31_000, 30_000), 60_000);
        assert_eq!(47_000 + sleep_ms(None, 47_000, 30_000), 60_000);
    }
}
