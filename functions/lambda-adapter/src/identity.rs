//! Who is calling, from the API Gateway authorizer context (or, in local development only, headers), and
//! what they may do.

use domain::{AccessConfig, UserId};
use lambda_http::request::RequestContext;
use lambda_http::{Request, RequestExt};

use crate::error::ApiError;
use crate::routes::Operation;

/// The caller as the API authenticated it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Caller {
    /// Nobody: no authorizer context (and no local headers in local mode).
    Anonymous,
    /// A JWT bearer: the user id from the configured claim (if any) and its scopes.
    Token { user: Option<UserId>, scopes: Vec<String> },
    /// An AWS principal signed the request (IAM authorization): a service.
    Iam,
}

pub const LOCAL_USER_HEADER: &str = "x-local-user-id";
pub const LOCAL_SCOPE_HEADER: &str = "x-local-scope";

impl Caller {
    pub fn from_request(request: &Request, access: &AccessConfig) -> Caller {
        if let Some(RequestContext::ApiGatewayV2(context)) = request.request_context_ref() {
            if let Some(authorizer) = &context.authorizer {
                if authorizer.iam.is_some() {
                    return Caller::Iam;
                }
                if let Some(jwt) = &authorizer.jwt {
                    let mut scopes: Vec<String> =
                        jwt.claims.get("scope").map(|s| s.split_whitespace().map(str::to_owned).collect()).unwrap_or_default();
                    scopes.extend(jwt.scopes.iter().flatten().cloned());
                    let user = jwt.claims.get(&access.user_id_claim).and_then(|v| UserId::parse(v.trim()));
                    return Caller::Token { user, scopes };
                }
            }
        }
        // Headers anyone can send: honoured only when local mode was switched on explicitly.
        if access.local_auth {
            let header = |name: &str| request.headers().get(name).and_then(|v| v.to_str().ok()).map(str::trim).filter(|v| !v.is_empty());
            let user = header(LOCAL_USER_HEADER).and_then(UserId::parse);
            let scopes: Vec<String> =
                header(LOCAL_SCOPE_HEADER).map(|s| s.split_whitespace().map(str::to_owned).collect()).unwrap_or_default();
            if user.is_some() || !scopes.is_empty() {
                return Caller::Token { user, scopes };
            }
        }
        Caller::Anonymous
    }

    fn has_scope(&self, scope: &str) -> bool {
        matches!(self, Caller::Token { scopes, .. } if scopes.iter().any(|s| s == scope))
    }

    /// Readers see only their own user id unless they hold the admin scope; writers are services
    /// (IAM, or a token with the write scope), for one user or many; error reports are for the admin
    /// scope alone. `target` is the user a route names, if it names one.
    pub fn authorize(&self, operation: Operation, target: Option<UserId>, access: &AccessConfig) -> Result<(), ApiError> {
        if *self == Caller::Anonymous {
            return Err(ApiError::Unauthenticated);
        }
        let allowed = match operation {
            Operation::GetTickets => {
                self.has_scope(&access.admin_scope)
                    || matches!((self, target), (Caller::Token { user: Some(user), .. }, Some(target)) if *user == target)
            }
            Operation::UpdateTickets | Operation::PushLog | Operation::BulkUpdateTickets => {
                *self == Caller::Iam || self.has_scope(&access.write_scope)
            }
            Operation::ErrorReport => self.has_scope(&access.admin_scope),
        };
        if allowed {
            Ok(())
        } else {
            Err(ApiError::Forbidden)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(id: i64) -> UserId {
        UserId::new(id).unwrap()
    }

    #[test]
    fn readers_see_only_their_own_data_unless_admin() {
        let access = AccessConfig::default();
        let reader = Caller::Token { user: Some(user(1)), scopes: vec![] };
        assert!(reader.authorize(Operation::GetTickets, Some(user(1)), &access).is_ok());
        assert!(matches!(reader.authorize(Operation::GetTickets, Some(user(2)), &access), Err(ApiError::Forbidden)));
        assert!(matches!(reader.authorize(Operation::UpdateTickets, Some(user(1)), &access), Err(ApiError::Forbidden)));
        let admin = Caller::Token { user: None, scopes: vec!["tickets/admin".into()] };
        assert!(admin.authorize(Operation::GetTickets, Some(user(2)), &access).is_ok());
        assert!(matches!(Caller::Anonymous.authorize(Operation::GetTickets, Some(user(1)), &access), Err(ApiError::Unauthenticated)));
    }

    #[test]
    fn writers_are_services() {
        let access = AccessConfig::default();
        assert!(Caller::Iam.authorize(Operation::PushLog, Some(user(3)), &access).is_ok());
        let writer = Caller::Token { user: None, scopes: vec!["tickets/write".into()] };
        assert!(writer.authorize(Operation::UpdateTickets, Some(user(3)), &access).is_ok());
        assert!(
            matches!(writer.authorize(Operation::GetTickets, Some(user(3)), &access), Err(ApiError::Forbidden)),
            "write scope does not read"
        );
        assert!(matches!(Caller::Anonymous.authorize(Operation::PushLog, Some(user(3)), &access), Err(ApiError::Unauthenticated)));
        assert!(writer.authorize(Operation::BulkUpdateTickets, None, &access).is_ok());
        assert!(Caller::Iam.authorize(Operation::BulkUpdateTickets, None, &access).is_ok());
        let reader = Caller::Token { user: Some(user(3)), scopes: vec![] };
        assert!(matches!(reader.authorize(Operation::BulkUpdateTickets, None, &access), Err(ApiError::Forbidden)));
    }

    #[test]
    fn error_reports_are_for_the_admin_scope_only() {
        let access = AccessConfig::default();
        let admin = Caller::Token { user: None, scopes: vec!["tickets/admin".into()] };
        assert!(admin.authorize(Operation::ErrorReport, None, &access).is_ok());
        for caller in [Caller::Iam, Caller::Token { user: Some(user(3)), scopes: vec!["tickets/write".into()] }] {
            assert!(matches!(caller.authorize(Operation::ErrorReport, None, &access), Err(ApiError::Forbidden)), "{caller:?}");
        }
        assert!(matches!(Caller::Anonymous.authorize(Operation::ErrorReport, None, &access), Err(ApiError::Unauthenticated)));
    }
}
