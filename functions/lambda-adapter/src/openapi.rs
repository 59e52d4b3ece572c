//! The published HTTP contract (`api/openapi.json`, OpenAPI 3.1), generated from the code that serves it:
//! the paths and methods from the route table (`functions/routes.json`), the bodies from the request and
//! response types (utoipa derives; bounds from `domain::Limits` and the validators), the error codes from
//! [`ApiError`]'s own `status()` and `code()`, the scopes from `AccessConfig`'s defaults.
//! `cargo run -p lambda-adapter --bin openapi` prints it (`make openapi` writes it); a test fails when the
//! committed file differs.

use std::collections::BTreeMap;

use domain::pass_filter::MAX_STATUSES;
use domain::{
    AccessConfig, BulkEntry, CodeCount, DegradedPart, ErrorReport, HourCount, KindCount, Limits, LogEntryInput, PassInput, PassKind,
    PassUpdate, Selection, UserCount, UserId, ValidationError,
};
use lambda_http::http::StatusCode;
use serde::Serialize;
use utoipa::openapi::extensions::Extensions;
use utoipa::openapi::header::HeaderBuilder;
use utoipa::openapi::link::{Link, LinkBuilder};
use utoipa::openapi::path::{HttpMethod, OperationBuilder, Parameter, ParameterBuilder, ParameterIn, PathItem};
use utoipa::openapi::request_body::RequestBodyBuilder;
use utoipa::openapi::response::{Response, ResponseBuilder};
use utoipa::openapi::schema::{AllOfBuilder, AnyOfBuilder, KnownFormat, ObjectBuilder, Schema, SchemaFormat, Type};
use utoipa::openapi::security::{ApiKey, ApiKeyValue, Http, HttpAuthScheme, SecurityRequirement, SecurityScheme};
use utoipa::openapi::server::{ServerBuilder, ServerVariableBuilder};
use utoipa::openapi::{ComponentsBuilder, ContentBuilder, InfoBuilder, OpenApi, OpenApiBuilder, PathsBuilder, Ref, RefOr, Required};
use utoipa::ToSchema;

use crate::error::{ApiError, RETRY_AFTER_SECONDS};
use crate::handlers::{BulkBody, MAX_BULK_BODY_BYTES};
use crate::response::{BulkReplaced, BulkResult, ErrorBody, ErrorDetail, LogPushed, ShownPass, Tickets, TicketsReplaced};
use crate::routes::{self, Operation, Route, RouteAuth, RouteTableError};

const JSON: &str = "application/json";
const JWT: &str = "jwt";
const SIGV4: &str = "sigv4";

/// API Gateway's own answers (the JWT authorizer, IAM authorization, throttling) are `{"message": …}`.
#[derive(Serialize, ToSchema)]
#[allow(dead_code)]
pub struct GatewayMessage {
    pub message: String,
}

/// Why the contract cannot be written.
#[derive(Debug, thiserror::Error)]
pub enum OpenApiError {
    #[error(transparent)]
    Routes(#[from] RouteTableError),
    #[error("the document does not serialize: {0}")]
    Json(#[from] serde_json::Error),
}

/// The contract as pretty-printed JSON, ending in a newline (the form `api/openapi.json` is committed in).
pub fn json() -> Result<String, OpenApiError> {
    let mut value = serde_json::to_value(document()?)?;
    complete(&mut value);
    let mut text = serde_json::to_string_pretty(&value)?;
    text.push('\n');
    Ok(text)
}

/// The contract: one operation per route of the compiled route table.
pub fn document() -> Result<OpenApi, RouteTableError> {
    let mut paths = PathsBuilder::new();
    for route in routes::table()?.routes() {
        paths = paths.path(route.path.clone(), PathItem::new(method(route), operation(route)));
    }
    Ok(OpenApiBuilder::new()
        .info(
            InfoBuilder::new()
                .title("Bytemark ticket cache")
                .version(env!("CARGO_PKG_VERSION"))
                .description(Some(
                    "Per-user cached Bytemark transit passes, served by AWS Lambda functions behind an API Gateway HTTP API. \
                     Generated from the service's code (`make openapi`); see the repository's README for the semantics.",
                ))
                .build(),
        )
        .servers(Some([ServerBuilder::new()
            .url("https://{apiId}.execute-api.{region}.amazonaws.com")
            .description(Some("The deployed HTTP API (its default stage)"))
            .parameter("apiId", ServerVariableBuilder::new().default_value("api-id"))
            .parameter("region", ServerVariableBuilder::new().default_value("us-east-1"))
            .build()]))
        .paths(paths.build())
        .components(Some(components()))
        .build())
}

fn method(route: &Route) -> HttpMethod {
    match route.method.as_str() {
        "PUT" => HttpMethod::Put,
        "POST" => HttpMethod::Post,
        "DELETE" => HttpMethod::Delete,
        "PATCH" => HttpMethod::Patch,
        _ => HttpMethod::Get,
    }
}

fn components() -> utoipa::openapi::Components {
    let mut schemas = Vec::new();
    add::<PassUpdate>(&mut schemas);
    add::<PassInput>(&mut schemas);
    add::<BulkBody>(&mut schemas);
    add::<BulkEntry>(&mut schemas);
    add::<LogEntryInput>(&mut schemas);
    add::<Tickets>(&mut schemas);
    add::<ShownPass>(&mut schemas);
    add::<DegradedPart>(&mut schemas);
    add::<TicketsReplaced>(&mut schemas);
    add::<LogPushed>(&mut schemas);
    add::<BulkReplaced>(&mut schemas);
    add::<BulkResult>(&mut schemas);
    add::<ErrorReport>(&mut schemas);
    add::<CodeCount>(&mut schemas);
    add::<UserCount>(&mut schemas);
    add::<KindCount>(&mut schemas);
    add::<HourCount>(&mut schemas);
    add::<ErrorBody>(&mut schemas);
    add::<ErrorDetail>(&mut schemas);
    add::<GatewayMessage>(&mut schemas);
    // One entry per name, in the order first added.
    let mut seen = std::collections::HashSet::new();
    schemas.retain(|(name, _)| seen.insert(name.clone()));
    let access = AccessConfig::default();
    ComponentsBuilder::new()
        .schemas_from_iter(schemas)
        .security_scheme(
            JWT,
            SecurityScheme::Http(
                Http::builder()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .description(Some(format!(
                        "The HTTP API's JWT authorizer. A reader's token carries its user id in the claim `{}` \
                         (`USER_ID_CLAIM`) and reads that user only; the scope `{}` reads every user and the error report; \
                         the scope `{}` writes.",
                        access.user_id_claim, access.admin_scope, access.write_scope
                    )))
                    .build(),
            ),
        )
        .security_scheme(SIGV4, {
            let mut value = ApiKeyValue::with_description(
                "Authorization",
                "AWS Signature Version 4 (IAM authorization): for services writing with an IAM role.",
            );
            value.extensions = Some(Extensions::from_iter([("x-amazon-apigateway-authtype", "awsSigv4")]));
            SecurityScheme::ApiKey(ApiKey::Header(value))
        })
        .build()
}

/// `T`'s schema and those it refers to.
fn add<T: ToSchema>(schemas: &mut Vec<(String, RefOr<Schema>)>) {
    schemas.push((T::name().into_owned(), T::schema()));
    T::schemas(schemas);
}

fn reference<T: ToSchema>() -> RefOr<Schema> {
    RefOr::Ref(Ref::from_schema_name(T::name()))
}

/// What one route's operation takes and answers.
fn operation(route: &Route) -> utoipa::openapi::path::Operation {
    let op = route.operation;
    let access = AccessConfig::default();
    let limits = Limits::default();
    let mut builder = OperationBuilder::new().operation_id(Some(operation_id(op))).summary(Some(summary(op)));
    builder = match route.auth {
        RouteAuth::Jwt => match op {
            Operation::ErrorReport => builder.security(SecurityRequirement::new(JWT, [access.admin_scope.as_str()])),
            _ => builder.security(SecurityRequirement::new::<_, _, &str>(JWT, [])),
        },
        RouteAuth::Iam => builder
            .security(SecurityRequirement::new::<_, _, &str>(SIGV4, []))
            .security(SecurityRequirement::new(JWT, [access.write_scope.as_str()])),
    };
    if route.path.contains("{user_id}") {
        builder = builder.parameter(parameter("user_id", ParameterIn::Path, reference::<UserId>(), "The user whose cache this is."));
    }
    for parameter in query_parameters(op, &limits) {
        builder = builder.parameter(parameter);
    }
    let body = |schema: RefOr<Schema>, max_bytes: usize| {
        RequestBodyBuilder::new()
            .required(Some(Required::True))
            .description(Some(format!("JSON, at most {max_bytes} bytes (else 413 `body_too_large`).")))
            .content(JSON, ContentBuilder::new().schema(Some(schema)).build())
            .build()
    };
    builder = match op {
        Operation::UpdateTickets => builder.request_body(Some(body(reference::<PassUpdate>(), limits.max_request_bytes))),
        Operation::PushLog => builder.request_body(Some(body(reference::<LogEntryInput>(), limits.max_request_bytes))),
        Operation::BulkUpdateTickets => builder.request_body(Some(body(reference::<BulkBody>(), MAX_BULK_BODY_BYTES))),
        Operation::GetTickets | Operation::ErrorReport => builder,
    };
    for (status, response) in successes(route) {
        builder = builder.response(status.as_u16().to_string(), response);
    }
    for (status, response) in failures(op) {
        builder = builder.response(status.as_u16().to_string(), response);
    }
    builder.build()
}

/// The operation's name in the route table (`functions/routes.json`).
fn operation_id(op: Operation) -> String {
    serde_json::to_value(op).ok().and_then(|v| v.as_str().map(str::to_owned)).unwrap_or_default()
}

fn summary(op: Operation) -> &'static str {
    match op {
        Operation::GetTickets => "A user's cached passes, each with the verdict on its payload hash",
        Operation::UpdateTickets => "Replace a user's passes (one or both arrays); writes are monotonic in `timestamp`",
        Operation::PushLog => "Append an error-log entry; an entry whose `id` is already logged is not appended again",
        Operation::BulkUpdateTickets => "Replace the passes of 1 to 100 users, each entry answered for itself in request order",
        Operation::ErrorReport => "Logged errors counted by code, kind, hour and user over a window of at most 31 days",
    }
}

fn parameter(name: &str, location: ParameterIn, schema: RefOr<Schema>, description: &str) -> Parameter {
    ParameterBuilder::new()
        .name(name)
        .parameter_in(location.clone())
        .required(if location == ParameterIn::Path { Required::True } else { Required::False })
        .schema(Some(schema))
        .description(Some(description))
        .build()
}

fn string() -> ObjectBuilder {
    ObjectBuilder::new().schema_type(Type::String)
}

/// An instant as `query::parse_instant` reads it: RFC 3339, or up to 16 digits of epoch milliseconds.
fn instant() -> RefOr<Schema> {
    AnyOfBuilder::new()
        .item(string().format(Some(SchemaFormat::KnownFormat(KnownFormat::DateTime))))
        .item(string().pattern(Some("^[0-9]{1,16}$")))
        .into()
}

fn query_parameters(op: Operation, limits: &Limits) -> Vec<Parameter> {
    let query = |name, schema, description| parameter(name, ParameterIn::Query, schema, description);
    match op {
        Operation::GetTickets => {
            let formats: Vec<&str> =
                PassKind::ALL.into_iter().map(Selection::Only).chain([Selection::All]).map(Selection::as_str).collect();
            // `status`: `query::pass_filter` splits at commas; each value is text `check_text` accepts.
            let value = format!("[^,\\u0000-\\u001f\\u007f-\\u009f]{{1,{}}}", limits.max_status_chars);
            let statuses = format!("^{value}(,{value}){{0,{}}}$", MAX_STATUSES - 1);
            let status = query(
                "status",
                string().pattern(Some(statuses)).into(),
                "Only passes whose `status` is one of these (exact, comma-separated, at most 10).",
            );
            vec![
                query("format", string().enum_values(Some(formats)).default(Some("all".into())).into(), "Which pass arrays to return."),
                status,
                query("updated_since", instant(), "Only passes whose `timestamp` is at or after this instant (not before 1970)."),
                query(
                    "integrity",
                    domain::api_schema::integrity().into(),
                    "Only passes with this verdict (the read computes it; the ETag follows the filtered body).",
                ),
                ParameterBuilder::new()
                    .name("If-None-Match")
                    .parameter_in(ParameterIn::Header)
                    .required(Required::False)
                    .schema(Some(string()))
                    .description(Some("An ETag from an earlier read (or `*`): 304 without a body when it still matches."))
                    .build(),
            ]
        }
        Operation::ErrorReport => vec![
            query("since", instant(), "The window's start (inclusive; default: 24 hours before `until`)."),
            query("until", instant(), "The window's end (exclusive; default: now). The window spans at most 31 days."),
            query("kind", reference::<PassKind>(), "Only this pass kind's log."),
            query("user_id", reference::<UserId>(), "Only this user's log."),
        ],
        Operation::UpdateTickets | Operation::PushLog | Operation::BulkUpdateTickets => vec![],
    }
}

/// The cache headers of a read (and of its 304).
fn with_cache_headers(response: ResponseBuilder) -> ResponseBuilder {
    response
        .header(
            "ETag",
            HeaderBuilder::new()
                .schema(string())
                .description(Some("A strong validator of the body apart from `age_seconds`: it changes exactly when the rest of the body does (filters included)."))
                .build(),
        )
        .header(
            "Cache-Control",
            HeaderBuilder::new()
                .schema(string().pattern(Some("^private, max-age=[0-9]+$")))
                .description(Some("`private, max-age=<seconds of freshness left>`."))
                .build(),
        )
        .header(
            "X-Cache",
            HeaderBuilder::new()
                .schema(string().enum_values(Some(["HIT", "STALE"])))
                .description(Some("`STALE` when the document is older than the freshness TTL (or undated)."))
                .build(),
        )
}

fn json_response(description: &str, schema: RefOr<Schema>) -> ResponseBuilder {
    ResponseBuilder::new().description(description).content(JSON, ContentBuilder::new().schema(Some(schema)).build())
}

/// The route's success answers; its `success` status comes from the route table.
fn successes(route: &Route) -> Vec<(StatusCode, Response)> {
    let success = StatusCode::from_u16(route.success).unwrap_or(StatusCode::OK);
    match route.operation {
        Operation::GetTickets => vec![
            (success, with_cache_headers(json_response("The user's cached passes.", reference::<Tickets>())).build()),
            (
                StatusCode::NOT_MODIFIED,
                with_cache_headers(ResponseBuilder::new().description("`If-None-Match` names the current ETag: no body.")).build(),
            ),
        ],
        Operation::UpdateTickets => vec![(
            success,
            json_response("Stored.", reference::<TicketsReplaced>())
                .link("read_back", link(Operation::GetTickets, "The passes just stored.", "$response.body#/user_id"))
                .build(),
        )],
        Operation::PushLog => vec![
            (
                success,
                json_response("Appended.", reference::<LogPushed>())
                    .link("errors_of_user", link(Operation::ErrorReport, "The user's logged errors.", "$response.body#/user_id"))
                    .build(),
            ),
            (
                StatusCode::OK,
                json_response("An entry with this `id` was already logged: nothing appended.", reference::<LogPushed>()).build(),
            ),
        ],
        Operation::BulkUpdateTickets => vec![(
            success,
            json_response(
                "Every entry answered for itself, in request order: 200, or the status and error a single PUT of it would have had.",
                reference::<BulkReplaced>(),
            )
            .link("read_back_first", link(Operation::GetTickets, "The first entry's passes.", "$response.body#/results/0/user_id"))
            .build(),
        )],
        Operation::ErrorReport => vec![(success, json_response("The report.", reference::<ErrorReport>()).build())],
    }
}

/// A link (stateful testing, client generators) to `operation` for the user `user_id` names.
fn link(operation: Operation, description: &str, user_id: &str) -> Link {
    LinkBuilder::new().operation_id(operation_id(operation)).parameter("user_id", user_id).description(description).build()
}

/// Every error an operation can answer, as the [`ApiError`] values it can produce; their statuses and
/// codes come from `error.rs`, the one mapping.
fn errors(op: Operation) -> Vec<ApiError> {
    let invalid = || ValidationError::Invalid { field: String::new(), reason: String::new() };
    let mut errors = vec![ApiError::Unauthenticated, ApiError::Forbidden, ApiError::RouteNotFound];
    errors.extend(match op {
        Operation::GetTickets => vec![
            ApiError::InvalidUserId(String::new()),
            ApiError::InvalidFormat,
            ApiError::InvalidFilter { parameter: "", reason: String::new() },
            ApiError::NotFound,
            ApiError::ResponseTooLarge { bytes: 0, selection: "" },
        ],
        Operation::UpdateTickets => vec![
            ApiError::InvalidUserId(String::new()),
            ApiError::InvalidJson(String::new()),
            ApiError::InvalidField(String::new()),
            ApiError::BodyTooLarge { max: 0 },
            ApiError::StaleWrite { stored: domain::Millis(0) },
            ApiError::Validation(invalid()),
            ApiError::Validation(ValidationError::HashMismatch { pass_uuid: String::new() }),
        ],
        Operation::PushLog => vec![
            ApiError::InvalidUserId(String::new()),
            ApiError::InvalidJson(String::new()),
            ApiError::InvalidField(String::new()),
            ApiError::BodyTooLarge { max: 0 },
            ApiError::Validation(invalid()),
        ],
        // Entries are answered in the 200's results; only the body as a whole fails the request.
        Operation::BulkUpdateTickets => {
            vec![ApiError::InvalidJson(String::new()), ApiError::InvalidField(String::new()), ApiError::BodyTooLarge { max: 0 }]
        }
        Operation::ErrorReport => vec![ApiError::InvalidFilter { parameter: "", reason: String::new() }],
    });
    errors.extend([ApiError::MethodNotAllowed { allow: String::new() }, ApiError::Unavailable, ApiError::Internal]);
    errors
}

/// The error responses of an operation, one per status, each listing the codes it carries.
fn failures(op: Operation) -> Vec<(StatusCode, Response)> {
    let mut codes: BTreeMap<StatusCode, Vec<&'static str>> = BTreeMap::new();
    for error in errors(op) {
        let listed = codes.entry(error.status()).or_default();
        if !listed.contains(&error.code()) {
            listed.push(error.code());
        }
    }
    let mut responses: Vec<(StatusCode, Response)> = codes
        .into_iter()
        .map(|(status, codes)| {
            let listed: Vec<String> = codes.iter().map(|code| format!("`{code}`")).collect();
            let description = format!("{}: {}.", status.canonical_reason().unwrap_or("Error"), listed.join(", "));
            let body = error_schema(&codes);
            // API Gateway answers a missing or refused token or signature itself, before the function.
            let body = match status {
                StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => {
                    AnyOfBuilder::new().item(body).item(reference::<GatewayMessage>()).into()
                }
                _ => body,
            };
            let mut response = json_response(&description, body);
            response = match status {
                StatusCode::SERVICE_UNAVAILABLE => response.header(
                    "Retry-After",
                    HeaderBuilder::new()
                        .schema(ObjectBuilder::new().schema_type(Type::Integer).minimum(Some(0)).examples([RETRY_AFTER_SECONDS]))
                        .description(Some("Seconds to wait before retrying."))
                        .build(),
                ),
                StatusCode::METHOD_NOT_ALLOWED => response.header(
                    "Allow",
                    HeaderBuilder::new().schema(string()).description(Some("The methods this function serves on the path.")).build(),
                ),
                _ => response,
            };
            (status, response.build())
        })
        .collect();
    responses.push((
        StatusCode::TOO_MANY_REQUESTS,
        json_response("Too Many Requests: API Gateway's throttling (per route).", reference::<GatewayMessage>()).build(),
    ));
    responses.sort_by_key(|(status, _)| *status);
    responses
}

/// [`ErrorBody`] with its `code` narrowed to these values.
fn error_schema(codes: &[&'static str]) -> RefOr<Schema> {
    let narrowed = ObjectBuilder::new()
        .property("error", ObjectBuilder::new().property("code", string().enum_values(Some(codes.to_vec()))).required("code"));
    AllOfBuilder::new().item(reference::<ErrorBody>()).item(narrowed).into()
}

/// Two gaps of utoipa 5.5's model, closed on the serialized document: its header object has no
/// `required` (every header this contract names is always sent), and it writes a link's `operationId`
/// as `operation_id` (openapi-spec-validator refuses that).
fn complete(document: &mut serde_json::Value) {
    let Some(paths) = document.get_mut("paths").and_then(|p| p.as_object_mut()) else { return };
    for operation in paths.values_mut().filter_map(|item| item.as_object_mut()).flat_map(|item| item.values_mut()) {
        let Some(responses) = operation.get_mut("responses").and_then(|r| r.as_object_mut()) else { continue };
        for response in responses.values_mut() {
            for header in response.get_mut("headers").and_then(|h| h.as_object_mut()).into_iter().flat_map(|h| h.values_mut()) {
                if let Some(header) = header.as_object_mut() {
                    header.insert("required".into(), true.into());
                }
            }
            for link in response.get_mut("links").and_then(|l| l.as_object_mut()).into_iter().flat_map(|l| l.values_mut()) {
                if let Some(link) = link.as_object_mut() {
                    if let Some(id) = link.remove("operation_id") {
                        link.insert("operationId".into(), id);
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The committed contract is what the code generates.
    #[test]
    fn the_committed_contract_is_generated_from_the_code() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../api/openapi.json");
        let committed = std::fs::read_to_string(&path).unwrap_or_default();
        let generated = json().unwrap();
        assert!(
            committed == generated,
            "{} differs from what the code generates; regenerate it with `make openapi` \
             (cargo run -q -p lambda-adapter --bin openapi > api/openapi.json) and commit it",
            path.display()
        );
    }

    #[test]
    fn every_route_is_an_operation_with_its_errors_and_security() {
        let document = serde_json::to_value(document().unwrap()).unwrap();
        for route in routes::table().unwrap().routes() {
            let operation = &document["paths"][&route.path][route.method.to_lowercase()];
            assert_eq!(operation["operationId"], operation_id(route.operation), "{} {}", route.method, route.path);
            assert!(operation["responses"][route.success.to_string()].is_object(), "{operation}");
            for error in errors(route.operation) {
                let codes = &operation["responses"][error.status().as_str()]["content"][JSON]["schema"];
                assert!(codes.to_string().contains(&format!("\"{}\"", error.code())), "{} lists {}", route.path, error.code());
            }
            assert!(!operation["security"].as_array().unwrap().is_empty());
        }
    }

    #[test]
    fn bounds_come_from_the_limits() {
        let document = serde_json::to_value(document().unwrap()).unwrap();
        let schemas = &document["components"]["schemas"];
        let limits = Limits::default();
        assert_eq!(schemas["PassUpdate"]["properties"]["passes"]["maxItems"], limits.max_passes);
        assert_eq!(schemas["PassInput"]["properties"]["pass_uuid"]["maxLength"], limits.max_pass_uuid_chars);
        assert_eq!(schemas["LogEntryInput"]["properties"]["errors"]["maxItems"], limits.max_log_errors);
        assert_eq!(schemas["BulkBody"]["properties"]["users"]["maxItems"], domain::MAX_BULK_USERS);
        assert_eq!(schemas["PassUpdate"]["additionalProperties"], false, "unknown body fields are refused");
        assert!(schemas["PassInput"].get("additionalProperties").is_none(), "unknown pass fields are kept");
    }
}
