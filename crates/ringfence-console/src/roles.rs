//! Roles: what each operator may do, checked in one place for every route.
//!
//! Four roles: `viewer` reads (fleet, findings, rollouts, orders, audit, metrics); `responder`
//! also orders response actions; `content_admin` also publishes content and starts, promotes,
//! halts and rolls back rollouts; `admin` does all that and manages operators, API tokens,
//! enrollment tokens and revocation. Responder and content admin are side by side: neither
//! can do the other's work.
//!
//! [`ROUTES`] names the need of every route the console serves, by method and path pattern,
//! and [`enforce`] (a middleware over the whole router) authenticates the operator and checks
//! their role before the handler runs. A route missing from the table is refused to everyone
//! (403), and the test beside it fails, so a new route cannot go out without a role.

use axum::extract::{MatchedPath, Request, State};
use axum::http::Method;
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};
use serde::{Deserialize, Serialize};

use crate::AppState;
use crate::auth;
use crate::error::AppError;

/// An operator's role.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Viewer,
    Responder,
    ContentAdmin,
    Admin,
}

impl Role {
    pub const ALL: [Role; 4] = [
        Role::Viewer,
        Role::Responder,
        Role::ContentAdmin,
        Role::Admin,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Responder => "responder",
            Role::ContentAdmin => "content_admin",
            Role::Admin => "admin",
        }
    }

    /// Parse a role name (`content-admin` is taken for `content_admin`).
    pub fn parse(s: &str) -> Result<Role, String> {
        match s {
            "viewer" => Ok(Role::Viewer),
            "responder" => Ok(Role::Responder),
            "content_admin" | "content-admin" => Ok(Role::ContentAdmin),
            "admin" => Ok(Role::Admin),
            other => Err(format!(
                "unknown role {:?} (viewer, responder, content_admin, admin)",
                ringfence_wire::printable(&other.chars().take(64).collect::<String>())
            )),
        }
    }

    /// Whether this role may use a route that needs `need`.
    pub fn allows(self, need: Need) -> bool {
        match need {
            Need::Public | Need::Agent | Need::Page | Need::Read => true,
            Need::Respond => matches!(self, Role::Responder | Role::Admin),
            Need::Content => matches!(self, Role::ContentAdmin | Role::Admin),
            Need::Approve => self != Role::Viewer,
            Need::Admin => self == Role::Admin,
        }
    }
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a route needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Need {
    /// Anyone: health, static content (the signature is what agents trust), the login form.
    Public,
    /// An agent, which its handler authenticates by its credential or client certificate.
    Agent,
    /// A dashboard page: any signed-in operator; others are sent to the login form.
    Page,
    /// Any operator.
    Read,
    /// Response orders and finding triage: responder or admin.
    Respond,
    /// Content and rollouts: content admin or admin.
    Content,
    /// Approving another operator's request: any role but viewer (the handler then checks
    /// the request's own need).
    Approve,
    /// Operators, API tokens, enrollment tokens, revocation, agents' tags: admin.
    Admin,
}

impl Need {
    pub fn as_str(self) -> &'static str {
        match self {
            Need::Public => "public",
            Need::Agent => "agent",
            Need::Page => "page",
            Need::Read => "read",
            Need::Respond => "respond",
            Need::Content => "content",
            Need::Approve => "approve",
            Need::Admin => "admin",
        }
    }

    pub fn parse(s: &str) -> Option<Need> {
        [
            Need::Public,
            Need::Agent,
            Need::Page,
            Need::Read,
            Need::Respond,
            Need::Content,
            Need::Approve,
            Need::Admin,
        ]
        .into_iter()
        .find(|n| n.as_str() == s)
    }
}

impl std::fmt::Display for Need {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Every route the console serves: method, path pattern (as the router has it), need.
pub const ROUTES: &[(&str, &str, Need)] = &[
    // Agents.
    ("POST", ringfence_wire::paths::ENROLL, Need::Agent),
    ("POST", ringfence_wire::paths::RENEW, Need::Agent),
    ("POST", ringfence_wire::paths::CHECKIN, Need::Agent),
    ("POST", ringfence_wire::paths::FINDINGS, Need::Agent),
    ("GET", "/releases/{file}", Need::Agent),
    // Anyone.
    ("GET", "/content/{file}", Need::Public),
    ("GET", "/healthz", Need::Public),
    ("GET", "/", Need::Public),
    ("GET", "/login", Need::Public),
    ("POST", "/login", Need::Public),
    ("GET", "/login/once", Need::Public),
    ("POST", "/logout", Need::Public),
    ("GET", "/assets/dashboard.css", Need::Public),
    ("GET", "/assets/dashboard.js", Need::Public),
    // Dashboard pages.
    ("GET", "/fleet", Need::Page),
    ("GET", "/rollouts", Need::Page),
    ("GET", "/rollouts/{id}", Need::Page),
    ("GET", "/findings", Need::Page),
    ("GET", "/findings/{id}", Need::Page),
    ("GET", "/agents/{id}", Need::Page),
    // Reading.
    ("GET", "/api/v1/agents", Need::Read),
    ("GET", "/api/v1/orders", Need::Read),
    ("GET", "/api/v1/fleet", Need::Read),
    ("GET", "/api/v1/findings", Need::Read),
    ("GET", "/api/v1/findings/groups", Need::Read),
    ("GET", "/api/v1/findings/{id}", Need::Read),
    ("GET", "/api/v1/content", Need::Read),
    ("GET", "/api/v1/releases", Need::Read),
    ("GET", "/api/v1/rollouts", Need::Read),
    ("GET", "/api/v1/rollouts/{id}", Need::Read),
    ("GET", "/api/v1/audit", Need::Read),
    ("GET", "/api/v1/approvals", Need::Read),
    ("GET", "/metrics", Need::Read),
    // Response.
    ("POST", "/api/v1/agents/{agent_id}/orders", Need::Respond),
    ("POST", "/api/v1/orders", Need::Respond),
    // Triage: a finding's status, reason, assignee, tags and comment.
    ("PATCH", "/api/v1/findings/{id}", Need::Respond),
    ("POST", "/api/v1/findings/bulk", Need::Respond),
    // Content and rollouts.
    ("PUT", "/api/v1/content/{version}", Need::Content),
    ("PUT", "/api/v1/releases/{version}", Need::Content),
    ("POST", "/api/v1/rollouts", Need::Content),
    ("POST", "/api/v1/rollouts/{id}/{action}", Need::Content),
    // A second operator's approval.
    ("POST", "/api/v1/approvals/{id}/approve", Need::Approve),
    ("POST", "/api/v1/approvals/{id}/reject", Need::Approve),
    // Administration.
    ("GET", "/api/v1/enrollment-tokens", Need::Admin),
    ("POST", "/api/v1/enrollment-tokens", Need::Admin),
    ("POST", "/api/v1/enrollment-tokens/{id}/revoke", Need::Admin),
    ("POST", "/api/v1/agents/{agent_id}/revoke", Need::Admin),
    ("PUT", "/api/v1/agents/{agent_id}/tags", Need::Admin),
    ("GET", "/api/v1/operators", Need::Admin),
    ("POST", "/api/v1/operators", Need::Admin),
    ("POST", "/api/v1/operators/{name}/role", Need::Admin),
    ("GET", "/api/v1/tokens", Need::Admin),
    ("POST", "/api/v1/tokens", Need::Admin),
    ("POST", "/api/v1/tokens/{id}/revoke", Need::Admin),
];

/// The need of `method` on the route pattern `path`; `None` for a route not in [`ROUTES`].
/// `HEAD` is answered as `GET`.
pub fn need_of(method: &Method, path: &str) -> Option<Need> {
    let method = if method == Method::HEAD {
        "GET"
    } else {
        method.as_str()
    };
    ROUTES
        .iter()
        .find(|(m, p, _)| *m == method && *p == path)
        .map(|(_, _, n)| *n)
}

/// The role check every request passes: look the route up in [`ROUTES`], authenticate the
/// operator when it needs one, and refuse a role that may not use it (403, logged). The
/// operator is left in the request for the handler ([`auth::Authed`], [`auth::Operator`]).
pub async fn enforce(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let Some(path) = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned())
    else {
        // No route matched: the router answers 404 by itself.
        return next.run(req).await;
    };
    let method = req.method().clone();
    let Some(need) = need_of(&method, &path) else {
        tracing::error!(%method, %path, "route has no role in roles::ROUTES: refused");
        return AppError::Forbidden(format!("{method} {path} has no role; refused"))
            .into_response();
    };
    if matches!(need, Need::Public | Need::Agent) {
        return next.run(req).await;
    }
    let (mut parts, body) = req.into_parts();
    let authed = match auth::authenticate(&parts, &state).await {
        Ok(a) => a,
        Err(e) => return e.into_response(),
    };
    let Some(authed) = authed else {
        if need == Need::Page {
            return Redirect::to("/login").into_response();
        }
        return AppError::Unauthorized("operator authentication required").into_response();
    };
    if !authed.role.allows(need) {
        tracing::warn!(operator = %ringfence_wire::printable(&authed.name), role = %authed.role,
            %method, %path, %need, "refused: the operator's role does not allow it");
        return AppError::Forbidden(format!(
            "{} is {}; {method} {path} needs {}",
            authed.name,
            authed.role,
            holders(need)
        ))
        .into_response();
    }
    parts.extensions.insert(authed);
    next.run(Request::from_parts(parts, body)).await
}

/// The roles that hold `need`, for messages.
pub fn holders(need: Need) -> String {
    Role::ALL
        .iter()
        .filter(|r| r.allows(need))
        .map(|r| r.as_str())
        .collect::<Vec<_>>()
        .join(" or ")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every source file of the crate but this one, recursively.
    fn sources() -> Vec<(std::path::PathBuf, String)> {
        let mut out = Vec::new();
        let mut dirs = vec![std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src")];
        while let Some(dir) = dirs.pop() {
            for entry in std::fs::read_dir(&dir).unwrap() {
                let path = entry.unwrap().path();
                if path.is_dir() {
                    dirs.push(path);
                } else if path.extension().is_some_and(|e| e == "rs") && !path.ends_with("roles.rs")
                {
                    let text = std::fs::read_to_string(&path).unwrap();
                    out.push((path, text));
                }
            }
        }
        out
    }

    /// The routes the crate's source declares: (method, path) from every `.route(PATH,
    /// get(..).post(..))` in any file, with `paths::X` constants resolved.
    fn declared_routes() -> Vec<(String, String)> {
        let mut out = Vec::new();
        for (_, src) in sources() {
            let mut rest = src.as_str();
            while let Some(at) = rest.find(".route(") {
                rest = &rest[at + ".route(".len()..];
                // The call's text, up to its closing parenthesis.
                let mut depth = 1usize;
                let mut end = rest.len();
                for (i, c) in rest.char_indices() {
                    match c {
                        '(' => depth += 1,
                        ')' => {
                            depth -= 1;
                            if depth == 0 {
                                end = i;
                                break;
                            }
                        }
                        _ => {}
                    }
                }
                let call = &rest[..end];
                let Some((first, methods)) = call.split_once(',') else {
                    continue;
                };
                let first = first.trim();
                let path = if let Some(lit) = first.strip_prefix('"') {
                    lit.trim_end_matches('"').to_owned()
                } else {
                    match first.trim_start_matches("paths::") {
                        "ENROLL" => ringfence_wire::paths::ENROLL.to_owned(),
                        "RENEW" => ringfence_wire::paths::RENEW.to_owned(),
                        "CHECKIN" => ringfence_wire::paths::CHECKIN.to_owned(),
                        "FINDINGS" => ringfence_wire::paths::FINDINGS.to_owned(),
                        other => panic!("route path {other} unknown to this test: add it"),
                    }
                };
                let methods: String = methods.split_whitespace().collect();
                for (token, method) in [
                    ("get(", "GET"),
                    ("post(", "POST"),
                    ("put(", "PUT"),
                    ("delete(", "DELETE"),
                    ("patch(", "PATCH"),
                ] {
                    let starts = methods.starts_with(token);
                    let chained = methods.contains(&format!(".{token}"));
                    if starts || chained {
                        out.push((method.to_owned(), path.clone()));
                    }
                }
            }
        }
        out
    }

    #[test]
    fn every_declared_route_has_a_role_and_every_role_entry_a_route() {
        let declared = declared_routes();
        assert!(declared.len() > 30, "{declared:?}");
        for (m, p) in &declared {
            assert!(
                need_of(&Method::from_bytes(m.as_bytes()).unwrap(), p).is_some(),
                "{m} {p} is served but has no role in roles::ROUTES"
            );
        }
        for (m, p, _) in ROUTES {
            assert!(
                declared.iter().any(|(dm, dp)| dm == m && dp == p),
                "{m} {p} is in roles::ROUTES but the router does not serve it"
            );
        }
    }

    #[test]
    fn roles_parse_and_allow_what_they_should() {
        for r in Role::ALL {
            assert_eq!(Role::parse(r.as_str()), Ok(r));
            assert!(r.allows(Need::Read));
        }
        assert!(Role::parse("root").is_err());
        assert!(!Role::Viewer.allows(Need::Respond));
        assert!(!Role::Viewer.allows(Need::Approve));
        assert!(!Role::Responder.allows(Need::Content));
        assert!(!Role::ContentAdmin.allows(Need::Respond));
        assert!(!Role::ContentAdmin.allows(Need::Admin));
        assert!(Role::Admin.allows(Need::Respond) && Role::Admin.allows(Need::Content));
        assert_eq!(holders(Need::Respond), "responder or admin");
    }
}
