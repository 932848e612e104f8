//! The user's Altium 365 workspaces as the GraphQL API answers them
//! (`desWorkspaceInfos`, SPEC §7): read with bounds, ids kept plain (they
//! name profiles and scopes), and the one a user names found by its id,
//! URL or name.

use a365_proto::{ErrorKind, ErrorReply, Workspace};

use super::{invalid, unavailable};

/// The location of a workspace in Altium's Gov Cloud.
const GOV_LOCATION: &str = "US GovCloud";

/// The workspace `wanted` names (its id, URL or name, in that order).
pub(super) fn choose<'a>(
    list: &'a [Workspace],
    wanted: &str,
    parent: &str,
) -> Result<&'a Workspace, ErrorReply> {
    let url = |u: &str| u.trim_end_matches('/').to_ascii_lowercase();
    let found: Vec<&Workspace> = [
        list.iter().filter(|w| w.id == wanted).collect::<Vec<_>>(),
        list.iter().filter(|w| url(&w.url) == url(wanted)).collect(),
        list.iter()
            .filter(|w| w.name.eq_ignore_ascii_case(wanted))
            .collect(),
    ]
    .into_iter()
    .find(|f| !f.is_empty())
    .unwrap_or_default();
    match found.as_slice() {
        [one] => Ok(one),
        [] => Err(ErrorReply::new(
            ErrorKind::UnknownProfile,
            format!(
                "'{}' is none of the workspaces of profile '{parent}' (its id, URL or name): {}",
                a365_proto::visible(wanted),
                names(list)
            ),
        )),
        many => Err(invalid(format!(
            "{} workspaces are called '{}': name one by its id ({})",
            many.len(),
            a365_proto::visible(wanted),
            many.iter()
                .map(|w| w.id.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ))),
    }
}

fn names(list: &[Workspace]) -> String {
    match list.is_empty() {
        true => "the user belongs to none".into(),
        false => {
            let shown: Vec<&str> = list.iter().take(20).map(|w| w.name.as_str()).collect();
            let more = list.len().saturating_sub(shown.len());
            match more {
                0 => shown.join(", "),
                n => format!("{}, and {n} more (`a365 workspaces`)", shown.join(", ")),
            }
        }
    }
}

/// At most this many workspaces, each field at most this long: the list
/// must fit one message of the protocol.
const MAX_WORKSPACES: usize = 200;
const MAX_FIELD: usize = 200;

/// `{"data": {"desWorkspaceInfos": [{authId, name, url, location: {name}}]}}`;
/// an error the API reports is shown without `token` (the bearer sent).
pub(super) fn parse_list(bytes: &[u8], token: &str) -> Result<Vec<Workspace>, ErrorReply> {
    let json: serde_json::Value = serde_json::from_slice(bytes)
        .map_err(|_| unavailable("the workspace list's answer is not JSON"))?;
    if let Some(message) = json["errors"][0]["message"].as_str() {
        return Err(unavailable(format!(
            "the workspace list: the API answered: {}",
            a365_token::scrub::describe(message, &[token], MAX_FIELD)
        )));
    }
    let items = json["data"]["desWorkspaceInfos"]
        .as_array()
        .ok_or_else(|| unavailable("the workspace list's answer has no desWorkspaceInfos"))?;
    let text = |v: &serde_json::Value| {
        let text: String = v
            .as_str()
            .unwrap_or_default()
            .chars()
            .take(MAX_FIELD)
            .collect();
        a365_proto::visible(&text)
    };
    let plain = |id: &str| {
        !id.is_empty()
            && id.len() <= 64
            && id
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    };
    let mut list = Vec::new();
    for item in items.iter().take(MAX_WORKSPACES) {
        let id = item["authId"].as_str().unwrap_or_default();
        // The id names a profile and a scope: nothing but a plain id.
        if !plain(id) {
            continue;
        }
        let location = text(&item["location"]["name"]);
        list.push(Workspace {
            id: id.to_owned(),
            name: text(&item["name"]),
            url: text(&item["url"]),
            gov: location == GOV_LOCATION,
            location,
            profile: None,
        });
    }
    Ok(list)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_list_and_the_choice() {
        let answer = br#"{"data":{"desWorkspaceInfos":[
            {"authId":"ws-1","name":"Design","url":"https://design.365.altium.com/","location":{"name":"US East"}},
            {"authId":"ws-2","name":"Secure","url":"https://secure.365-gov.altium.com","location":{"name":"US GovCloud"}},
            {"authId":"../evil","name":"x","url":"","location":{"name":""}}]}}"#;
        let list = parse_list(answer, "tok").unwrap();
        assert_eq!(list.len(), 2, "a non-plain id is dropped");
        assert!(list[1].gov && !list[0].gov);
        assert_eq!(choose(&list, "ws-2", "p").unwrap().id, "ws-2");
        assert_eq!(
            choose(&list, "https://design.365.altium.com", "p")
                .unwrap()
                .id,
            "ws-1"
        );
        assert_eq!(choose(&list, "design", "p").unwrap().id, "ws-1");
        let err = choose(&list, "nope", "p").unwrap_err().message;
        assert!(err.contains("Design, Secure"), "{err}");
        let errors = br#"{"errors":[{"message":"denied\u001b[2J for bearer tok-123"}]}"#;
        let err = parse_list(errors, "tok-123").unwrap_err().message;
        assert!(err.contains("denied") && !err.contains('\x1b'), "{err}");
        assert!(!err.contains("tok-123"), "the bearer is not echoed: {err}");
    }
}
