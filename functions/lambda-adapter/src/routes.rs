//! The route table (`functions/routes.json`, shared with the infra tests) and request routing.
//!
//! API Gateway tells us the matched route (`routeKey`) and `pathParameters`; `cargo lambda watch` and
//! function URLs do not, so the raw path is matched against the same templates.

use std::sync::LazyLock;

use domain::UserId;
use serde::Deserialize;

use crate::error::ApiError;

/// What a request asks for. Each Lambda function serves exactly one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Operation {
    GetTickets,
    UpdateTickets,
    PushLog,
}

/// How a route is authorized at the API (the functions check identity again).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RouteAuth {
    Jwt,
    Iam,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Route {
    pub operation: Operation,
    pub method: String,
    pub path: String,
    pub function: String,
    pub auth: RouteAuth,
    pub success: u16,
}

#[derive(Deserialize)]
struct RouteTable {
    routes: Vec<Route>,
}

/// Parsed once per execution environment from the file compiled into the binary.
pub static ROUTES: LazyLock<Vec<Route>> =
    LazyLock::new(|| serde_json::from_str::<RouteTable>(include_str!("../../routes.json")).map(|t| t.routes).unwrap_or_default());

impl Operation {
    pub fn route(self) -> Option<&'static Route> {
        ROUTES.iter().find(|r| r.operation == self)
    }
}

/// A request matched to its operation and target user.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Target {
    pub operation: Operation,
    pub user: UserId,
}

/// Matches `method` and `path` against the table. `route_key` and `user_param` come from API Gateway when
/// it matched the route itself.
pub fn resolve(method: &str, path: &str, route_key: Option<&str>, user_param: Option<&str>) -> Result<Target, ApiError> {
    let from_gateway = route_key.and_then(|key| ROUTES.iter().find(|r| key == format!("{} {}", r.method, r.path)));
    let (route, raw_user) = match (from_gateway, user_param) {
        (Some(route), Some(user)) => (route, user.to_owned()),
        _ => match_path(method, path)?,
    };
    let user = UserId::parse(&raw_user).ok_or_else(|| ApiError::InvalidUserId(raw_user.chars().take(40).collect()))?;
    Ok(Target { operation: route.operation, user })
}

fn match_path(method: &str, path: &str) -> Result<(&'static Route, String), ApiError> {
    let mut allowed = Vec::new();
    for route in ROUTES.iter() {
        if let Some(user) = match_template(&route.path, path) {
            if route.method.eq_ignore_ascii_case(method) {
                return Ok((route, user));
            }
            allowed.push(route.method.as_str());
        }
    }
    if allowed.is_empty() {
        Err(ApiError::RouteNotFound)
    } else {
        Err(ApiError::MethodNotAllowed { allow: allowed.join(", ") })
    }
}

/// Returns the `{user_id}` segment when `path` has the template's shape (a trailing slash is tolerated).
fn match_template(template: &str, path: &str) -> Option<String> {
    let mut wanted = template.trim_matches('/').split('/');
    let mut given = path.trim_matches('/').split('/');
    let mut user = None;
    loop {
        match (wanted.next(), given.next()) {
            (None, None) => return user,
            (Some("{user_id}"), Some(segment)) => user = Some(segment.to_owned()),
            (Some(a), Some(b)) if a == b => {}
            _ => return None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_has_each_operation_once() {
        for op in [Operation::GetTickets, Operation::UpdateTickets, Operation::PushLog] {
            assert_eq!(ROUTES.iter().filter(|r| r.operation == op).count(), 1, "{op:?}");
        }
    }

    #[test]
    fn raw_paths_resolve_like_gateway_routes() {
        let raw = resolve("GET", "/v1/users/42/tickets", None, None).unwrap();
        let gw = resolve("GET", "/v1/users/42/tickets", Some("GET /v1/users/{user_id}/tickets"), Some("42")).unwrap();
        assert_eq!(raw, gw);
        assert_eq!(raw.operation, Operation::GetTickets);
        assert_eq!(resolve("POST", "/v1/users/42/logs/", None, None).unwrap().operation, Operation::PushLog);
        assert_eq!(resolve("PUT", "/v1/users/42/tickets", None, None).unwrap().operation, Operation::UpdateTickets);
    }

    #[test]
    fn errors_are_specific() {
        assert!(
            matches!(resolve("DELETE", "/v1/users/42/tickets", None, None), Err(ApiError::MethodNotAllowed { allow }) if allow == "GET, PUT")
        );
        assert!(matches!(resolve("GET", "/v1/users/42/other", None, None), Err(ApiError::RouteNotFound)));
        for bad in ["0", "-1", "1.5", "abc", "99999999999999999999", "%7B%22%24gt%22%7D"] {
            let path = format!("/v1/users/{bad}/tickets");
            assert!(matches!(resolve("GET", &path, None, None), Err(ApiError::InvalidUserId(_))), "{bad}");
        }
    }
}
