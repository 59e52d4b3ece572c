//! The route table (`functions/routes.json`, shared with the infra tests) and request routing.
//!
//! API Gateway tells us the matched route (`routeKey`) and `pathParameters`; `cargo lambda watch` and
//! function URLs do not, so the raw path is matched against the same templates.
//!
//! The table is compiled into every binary and checked at start-up (`startup.rs`): a table that does not
//! parse, or that misses an operation, stops the function with the reason instead of answering every
//! request 404.

use std::sync::LazyLock;

use domain::UserId;
use serde::{Deserialize, Serialize};

/// What a request asks for. Each route has one; a Lambda function serves the operations its routes name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Operation {
    GetTickets,
    UpdateTickets,
    PushLog,
    /// `PUT /v1/tickets`: many users' passes at once (job processors).
    BulkUpdateTickets,
    /// `GET /v1/admin/errors`: logged errors aggregated for monitoring.
    ErrorReport,
}

impl Operation {
    pub const ALL: [Operation; 5] =
        [Operation::GetTickets, Operation::UpdateTickets, Operation::PushLog, Operation::BulkUpdateTickets, Operation::ErrorReport];
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

/// The route table: one route per [`Operation`].
#[derive(Debug, Clone, Deserialize)]
pub struct RouteTable {
    routes: Vec<Route>,
}

/// Why a route table cannot be served.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RouteTableError {
    #[error("functions/routes.json is not a route table: {0}")]
    Malformed(String),
    #[error("functions/routes.json has {count} routes for {operation:?}; every operation needs exactly one")]
    Operation { operation: Operation, count: usize },
}

impl RouteTable {
    /// Parses and checks a table in the format of `functions/routes.json`.
    pub fn parse(text: &str) -> Result<RouteTable, RouteTableError> {
        let table: RouteTable = serde_json::from_str(text).map_err(|e| RouteTableError::Malformed(e.to_string()))?;
        for operation in Operation::ALL {
            let count = table.routes.iter().filter(|r| r.operation == operation).count();
            if count != 1 {
                return Err(RouteTableError::Operation { operation, count });
            }
        }
        Ok(table)
    }

    pub fn routes(&self) -> &[Route] {
        &self.routes
    }

    pub fn route(&self, operation: Operation) -> Option<&Route> {
        self.routes.iter().find(|r| r.operation == operation)
    }
}

/// Why a request matches no route.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RouteError {
    #[error("no such route")]
    NotFound,
    #[error("method not allowed here; allowed: {allow}")]
    MethodNotAllowed { allow: String },
    /// The path's user id segment (its first 40 characters) is not a user id.
    #[error("user_id must be a positive integer, got {0:?}")]
    InvalidUserId(String),
    #[error(transparent)]
    Table(#[from] RouteTableError),
}

/// Parsed once per execution environment from the file compiled into the binary.
static COMPILED: LazyLock<Result<RouteTable, RouteTableError>> = LazyLock::new(|| RouteTable::parse(include_str!("../../routes.json")));

/// The table compiled into this binary, or why it cannot be served (start-up stops on it).
pub fn table() -> Result<&'static RouteTable, RouteTableError> {
    COMPILED.as_ref().map_err(Clone::clone)
}

impl Operation {
    pub fn route(self) -> Option<&'static Route> {
        table().ok()?.route(self)
    }
}

/// A request matched to its operation and, for routes under `/v1/users/{user_id}`, its target user.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Target {
    pub operation: Operation,
    pub user: Option<UserId>,
}

/// Matches `method` and `path` against the table. `route_key` and `user_param` come from API Gateway when
/// it matched the route itself.
pub fn resolve(method: &str, path: &str, route_key: Option<&str>, user_param: Option<&str>) -> Result<Target, RouteError> {
    let routes = table()?.routes();
    let from_gateway = route_key.and_then(|key| routes.iter().find(|r| key == format!("{} {}", r.method, r.path)));
    let (route, raw_user) = match (from_gateway, user_param) {
        (Some(route), Some(user)) => (route, Some(user.to_owned())),
        (Some(route), None) if !route.path.contains(USER_SEGMENT) => (route, None),
        _ => match_path(routes, method, path)?,
    };
    let user = match raw_user {
        None => None,
        Some(raw) => Some(UserId::parse(&raw).ok_or_else(|| RouteError::InvalidUserId(raw.chars().take(40).collect()))?),
    };
    Ok(Target { operation: route.operation, user })
}

const USER_SEGMENT: &str = "{user_id}";

fn match_path<'t>(routes: &'t [Route], method: &str, path: &str) -> Result<(&'t Route, Option<String>), RouteError> {
    let mut allowed = Vec::new();
    for route in routes {
        if let Some(user) = match_template(&route.path, path) {
            if route.method.eq_ignore_ascii_case(method) {
                return Ok((route, user));
            }
            allowed.push(route.method.as_str());
        }
    }
    if allowed.is_empty() {
        Err(RouteError::NotFound)
    } else {
        Err(RouteError::MethodNotAllowed { allow: allowed.join(", ") })
    }
}

/// When `path` has the template's shape (a trailing slash is tolerated): its `{user_id}` segment, if the
/// template has one.
fn match_template(template: &str, path: &str) -> Option<Option<String>> {
    let mut wanted = template.trim_matches('/').split('/');
    let mut given = path.trim_matches('/').split('/');
    let mut user = None;
    loop {
        match (wanted.next(), given.next()) {
            (None, None) => return Some(user),
            (Some(USER_SEGMENT), Some(segment)) => user = Some(segment.to_owned()),
            (Some(a), Some(b)) if a == b => {}
            _ => return None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_compiled_table_routes_each_operation_once() {
        let table = table().unwrap();
        for op in Operation::ALL {
            assert_eq!(table.routes().iter().filter(|r| r.operation == op).count(), 1, "{op:?}");
        }
    }

    #[test]
    fn a_table_that_cannot_be_served_is_refused_with_the_reason() {
        let route = |operation: &str| {
            format!(
                r#"{{"operation": "{operation}", "method": "GET", "path": "/v1/users/{{user_id}}/x", "function": "f", "auth": "jwt", "success": 200}}"#
            )
        };
        let table = |routes: &[String]| format!(r#"{{"routes": [{}]}}"#, routes.join(","));
        let complete =
            [route("get_tickets"), route("update_tickets"), route("push_log"), route("bulk_update_tickets"), route("error_report")];
        assert!(RouteTable::parse(&table(&complete)).is_ok());

        for malformed in ["", "{", "[]", r#"{"routes": {}}"#, table(&[complete[0].replace("jwt", "cookie")]).as_str()] {
            let err = RouteTable::parse(malformed).unwrap_err();
            assert!(matches!(err, RouteTableError::Malformed(_)), "{malformed}: {err:?}");
            assert!(err.to_string().starts_with("functions/routes.json is not a route table: "), "{err}");
        }
        assert_eq!(
            RouteTable::parse(r#"{"routes": []}"#).unwrap_err(),
            RouteTableError::Operation { operation: Operation::GetTickets, count: 0 }
        );
        let mut twice = complete.to_vec();
        twice.push(complete[2].clone());
        assert_eq!(RouteTable::parse(&table(&twice)).unwrap_err(), RouteTableError::Operation { operation: Operation::PushLog, count: 2 });
    }

    #[test]
    fn raw_paths_resolve_like_gateway_routes() {
        let raw = resolve("GET", "/v1/users/42/tickets", None, None).unwrap();
        let gw = resolve("GET", "/v1/users/42/tickets", Some("GET /v1/users/{user_id}/tickets"), Some("42")).unwrap();
        assert_eq!(raw, gw);
        assert_eq!(raw.operation, Operation::GetTickets);
        assert_eq!(resolve("POST", "/v1/users/42/logs/", None, None).unwrap().operation, Operation::PushLog);
        assert_eq!(resolve("PUT", "/v1/users/42/tickets", None, None).unwrap().operation, Operation::UpdateTickets);
        assert_eq!(raw.user.map(UserId::get), Some(42));
        // Routes without a user: the bulk update and the error report.
        for (method, path, key, operation) in [
            ("PUT", "/v1/tickets", "PUT /v1/tickets", Operation::BulkUpdateTickets),
            ("GET", "/v1/admin/errors/", "GET /v1/admin/errors", Operation::ErrorReport),
        ] {
            let raw = resolve(method, path, None, None).unwrap();
            assert_eq!(raw, Target { operation, user: None });
            assert_eq!(resolve(method, path, Some(key), None).unwrap(), raw);
        }
        assert!(matches!(resolve("POST", "/v1/tickets", None, None), Err(RouteError::MethodNotAllowed { allow }) if allow == "PUT"));
    }

    #[test]
    fn errors_are_specific() {
        assert!(
            matches!(resolve("DELETE", "/v1/users/42/tickets", None, None), Err(RouteError::MethodNotAllowed { allow }) if allow == "GET, PUT")
        );
        assert!(matches!(resolve("GET", "/v1/users/42/other", None, None), Err(RouteError::NotFound)));
        for bad in ["0", "-1", "1.5", "abc", "99999999999999999999", "%7B%22%24gt%22%7D"] {
            let path = format!("/v1/users/{bad}/tickets");
            assert!(matches!(resolve("GET", &path, None, None), Err(RouteError::InvalidUserId(_))), "{bad}");
        }
    }
}
