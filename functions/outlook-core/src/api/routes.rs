//! The one route table of the management-API function: the router matches requests against it
//! and a test checks it against the OpenAPI document (`functions/management-api/openapi.yaml`),
//! both ways.

/// What a route does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RouteId {
    ListIntegrations,
    StartConnection,
    GetIntegration,
    ReconnectIntegration,
    DisconnectIntegration,
    UpdateMailboxes,
    GetMailbox,
    SetFolders,
    SyncNow,
    ListRuleSets,
    GetRuleSet,
    ReplaceRuleSet,
    ValidateRules,
    DryRun,
    ListAudit,
    Root,
    ConnectPage,
    ConnectStart,
    ConnectReconnect,
}

/// How a route authenticates and answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RouteKind {
    /// JSON API: `Authorization: Bearer <jwt>`, JSON errors.
    Json,
    /// Browser page: the session cookie (see `connect_page`), HTML answers.
    Page,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Route {
    pub method: &'static str,
    /// OpenAPI path template: literal segments and `{name}` parameters (one segment each).
    pub path: &'static str,
    pub id: RouteId,
    pub kind: RouteKind,
}

const fn json(method: &'static str, path: &'static str, id: RouteId) -> Route {
    Route {
        method,
        path,
        id,
        kind: RouteKind::Json,
    }
}

const fn page(method: &'static str, path: &'static str, id: RouteId) -> Route {
    Route {
        method,
        path,
        id,
        kind: RouteKind::Page,
    }
}

/// Every route the function serves.
pub const ROUTES: &[Route] = &[
    json("GET", "/api/integrations", RouteId::ListIntegrations),
    json("POST", "/api/integrations", RouteId::StartConnection),
    json(
        "GET",
        "/api/integrations/{integrationId}",
        RouteId::GetIntegration,
    ),
    json(
        "POST",
        "/api/integrations/{integrationId}/reconnect",
        RouteId::ReconnectIntegration,
    ),
    json(
        "POST",
        "/api/integrations/{integrationId}/disconnect",
        RouteId::DisconnectIntegration,
    ),
    json(
        "PATCH",
        "/api/integrations/{integrationId}/mailboxes",
        RouteId::UpdateMailboxes,
    ),
    json(
        "GET",
        "/api/integrations/{integrationId}/mailboxes/{mailboxId}",
        RouteId::GetMailbox,
    ),
    json(
        "PUT",
        "/api/integrations/{integrationId}/mailboxes/{mailboxId}/folders",
        RouteId::SetFolders,
    ),
    json(
        "POST",
        "/api/integrations/{integrationId}/sync",
        RouteId::SyncNow,
    ),
    json(
        "GET",
        "/api/integrations/{integrationId}/rules",
        RouteId::ListRuleSets,
    ),
    json(
        "GET",
        "/api/integrations/{integrationId}/rules/{scope}",
        RouteId::GetRuleSet,
    ),
    json(
        "PUT",
        "/api/integrations/{integrationId}/rules/{scope}",
        RouteId::ReplaceRuleSet,
    ),
    json("POST", "/api/rules/validate", RouteId::ValidateRules),
    json(
        "POST",
        "/api/integrations/{integrationId}/mailboxes/{mailboxId}/dry-run",
        RouteId::DryRun,
    ),
    json(
        "GET",
        "/api/integrations/{integrationId}/mailboxes/{mailboxId}/audit",
        RouteId::ListAudit,
    ),
    page("GET", "/", RouteId::Root),
    page("GET", "/connect", RouteId::ConnectPage),
    page("POST", "/connect/start", RouteId::ConnectStart),
    page(
        "POST",
        "/connect/integrations/{integrationId}/reconnect",
        RouteId::ConnectReconnect,
    ),
];

/// Path parameters of a matched route, percent-decoded.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Params(Vec<(&'static str, String)>);

impl Params {
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Matched {
    Route(&'static Route, Params),
    /// The path exists, not with this method; the allowed methods.
    MethodNotAllowed(Vec<&'static str>),
    NotFound,
}

fn segments(path: &str) -> Vec<&str> {
    let trimmed = path.trim_start_matches('/');
    let trimmed = trimmed.strip_suffix('/').unwrap_or(trimmed);
    if trimmed.is_empty() {
        Vec::new()
    } else {
        trimmed.split('/').collect()
    }
}

/// Matches the path against a template: literal segments count as better than parameters.
fn match_path(template: &'static str, path: &[&str]) -> Option<(usize, Params)> {
    let parts = segments(template);
    if parts.len() != path.len() {
        return None;
    }
    let mut params = Vec::new();
    let mut literals = 0;
    for (part, actual) in parts.iter().zip(path) {
        if let Some(name) = part.strip_prefix('{').and_then(|p| p.strip_suffix('}')) {
            let decoded = percent_decode(actual)?;
            if decoded.is_empty() {
                return None;
            }
            params.push((name, decoded));
        } else if part == actual {
            literals += 1;
        } else {
            return None;
        }
    }
    Some((literals, Params(params)))
}

fn percent_decode(segment: &str) -> Option<String> {
    let bytes = segment.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = segment.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// Finds the route for `method` and `path` (most literal segments win).
pub fn match_route(method: &str, path: &str) -> Matched {
    let actual = segments(path);
    let mut best: Option<(usize, &'static Route, Params)> = None;
    let mut allowed = Vec::new();
    for route in ROUTES {
        let Some((score, params)) = match_path(route.path, &actual) else {
            continue;
        };
        if route.method.eq_ignore_ascii_case(method) {
            if best.as_ref().is_none_or(|(s, _, _)| score > *s) {
                best = Some((score, route, params));
            }
        } else if !allowed.contains(&route.method) {
            allowed.push(route.method);
        }
    }
    match best {
        Some((_, route, params)) => Matched::Route(route, params),
        None if !allowed.is_empty() => Matched::MethodNotAllowed(allowed),
        None => Matched::NotFound,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_match_with_parameters() {
        match match_route("GET", "/api/integrations/int_abc/rules/%2A") {
            Matched::Route(route, params) => {
                assert_eq!(route.id, RouteId::GetRuleSet);
                assert_eq!(params.get("integrationId"), Some("int_abc"));
                assert_eq!(params.get("scope"), Some("*"));
            }
            other => panic!("{other:?}"),
        }
        assert!(
            matches!(match_route("post", "/api/rules/validate"), Matched::Route(r, _) if r.id == RouteId::ValidateRules)
        );
        assert!(
            matches!(match_route("GET", "/api/integrations/"), Matched::Route(r, _) if r.id == RouteId::ListIntegrations)
        );
        assert!(matches!(match_route("GET", "/"), Matched::Route(r, _) if r.id == RouteId::Root));
    }

    #[test]
    fn wrong_method_and_unknown_paths_are_told_apart() {
        assert_eq!(
            match_route("DELETE", "/api/integrations"),
            Matched::MethodNotAllowed(vec!["GET", "POST"])
        );
        assert_eq!(match_route("GET", "/api/nothing"), Matched::NotFound);
        assert_eq!(
            match_route("GET", "/api/integrations/x/y/z/w/v/u"),
            Matched::NotFound
        );
        assert_eq!(
            match_route("GET", "/api/integrations/%zz"),
            Matched::NotFound
        );
    }

    #[test]
    fn the_table_has_no_duplicates() {
        for (i, a) in ROUTES.iter().enumerate() {
            for b in &ROUTES[i + 1..] {
                assert!(!(a.method == b.method && a.path == b.path), "{a:?} twice");
                assert_ne!(a.id, b.id);
            }
        }
    }
}
