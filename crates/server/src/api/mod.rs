//! The management API, `/api/v1`: JSON over HTTP for the application that runs Rollcall to manage
//! its tenants (organizations, SCIM connections, their tokens) and read what happened (events, the
//! request log). Authenticated with operator API
//! keys; errors are RFC 9457 problem details. Its OpenAPI 3.1 document is generated from the
//! handlers below and served at `/api/v1/openapi.json`, with an interactive page at `/api/v1/docs`
//! (Swagger UI, served from the binary: it works offline).

pub mod api_keys;
pub mod auth;
pub mod connections;
pub mod directory;
pub mod directory_sync;
pub mod events;
pub mod extract;
pub mod guard;
pub mod organizations;
pub mod outbound;
pub mod paging;
pub mod problem;
pub mod roles;
pub mod schemas;
pub mod setup_links;
pub mod staging;
pub mod webhooks;
pub mod workspaces;

use crate::state::AppState;
use axum::Router;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use utoipa_swagger_ui::SwaggerUi;

/// Where the management API is mounted.
pub const BASE_PATH: &str = "/api/v1";
/// The OpenAPI document's path.
pub const OPENAPI_PATH: &str = "/api/v1/openapi.json";
/// The interactive documentation's path.
pub const DOCS_PATH: &str = "/api/v1/docs";

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Rollcall management API",
        description = "Manage the organizations of the application that runs Rollcall, their SCIM \
            connections and the connections' bearer tokens; read every change (the events feed) and \
            each connection's log of SCIM requests.\n\nAuthenticate with an operator API key \
            (`rollcall api-key create`): `Authorization: Bearer rc_key_...`. SCIM connection tokens do \
            not work here, and API keys do not work on SCIM endpoints.\n\nErrors are RFC 9457 problem \
            details (`application/problem+json`). Timestamps are RFC 3339.",
        license(name = "Apache-2.0", identifier = "Apache-2.0"),
    ),
    modifiers(&ApiKeyScheme),
    security(("api_key" = [])),
    tags(
        (name = "organizations", description = "Customers of the application, each with its SCIM connections"),
        (name = "connections", description = "SCIM connections (one identity provider each) and their tokens"),
        (name = "roles", description = "Roles, group-to-role mappings, default roles, protected users and attribute policy"),
        (name = "workspaces", description = "Workspaces: IdP groups as workspace memberships, their mappings, the default workspace and a workspace for every group"),
        (name = "directory", description = "Provisioned users and groups, read-only, and the sign-in access check"),
        (name = "api-keys", description = "Operator API keys for this API"),
        (name = "setup-links", description = "Links for an organization's IT admin to set up SCIM on the setup page, \
            without an account: shown once, expiring, revocable"),
        (name = "events", description = "Every change, in commit order, with who made it: the change feed and audit log"),
        (name = "webhooks", description = "Webhook endpoints: signed deliveries of the event log (Standard Webhooks), \
            their attempts, replay and redelivery"),
        (name = "provisioning", description = "Outbound provisioning: downstream SCIM applications an organization's \
            directory is pushed to, their plans, approval, runs and per-object state"),
    ),
    components(schemas(problem::Problem))
)]
struct ApiDoc;

/// Declares the API-key security scheme.
struct ApiKeyScheme;

impl Modify for ApiKeyScheme {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "api_key",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("rc_key_...")
                    .description(Some("An operator API key, created with `rollcall api-key create`."))
                    .build(),
            ),
        );
    }
}

/// The management API's routes, relative to [`BASE_PATH`], with their documentation.
fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(
            organizations::list_organizations,
            organizations::create_organization
        ))
        .routes(routes!(
            organizations::get_organization,
            organizations::update_organization,
            organizations::delete_organization
        ))
        .routes(routes!(connections::list_connections, connections::create_connection))
        .routes(routes!(
            connections::get_connection,
            connections::update_connection,
            connections::delete_connection
        ))
        .routes(routes!(connections::start_token_rotation))
        .routes(routes!(connections::complete_token_rotation))
        .routes(routes!(connections::cancel_token_rotation))
        .routes(routes!(connections::revoke_tokens))
        .routes(routes!(guard::get_guard, guard::set_guard))
        .routes(routes!(guard::list_held))
        .routes(routes!(guard::release))
        .routes(routes!(guard::discard))
        .routes(routes!(staging::stage))
        .routes(routes!(staging::activate))
        .routes(routes!(
            staging::get_match_report,
            staging::upload_match_report,
            staging::delete_match_report
        ))
        .routes(routes!(directory_sync::create_google_workspace_connection))
        .routes(routes!(
            directory_sync::get_google_workspace,
            directory_sync::update_google_workspace
        ))
        .routes(routes!(directory_sync::get_sync, directory_sync::request_sync))
        .routes(routes!(outbound::list_targets, outbound::create_target))
        .routes(routes!(
            outbound::get_target,
            outbound::update_target,
            outbound::delete_target
        ))
        .routes(routes!(outbound::plan))
        .routes(routes!(outbound::approve))
        .routes(routes!(outbound::sync))
        .routes(routes!(outbound::list_runs))
        .routes(routes!(outbound::list_objects))
        .routes(routes!(outbound::retry_object))
        .routes(routes!(roles::list_roles, roles::create_role))
        .routes(routes!(roles::get_role, roles::update_role, roles::delete_role))
        .routes(routes!(roles::list_protected_users, roles::add_protected_user))
        .routes(routes!(roles::remove_protected_user))
        .routes(routes!(roles::list_role_mappings, roles::create_role_mapping))
        .routes(routes!(roles::delete_role_mapping))
        .routes(routes!(roles::preview_role_mapping))
        .routes(routes!(roles::preview_role_mapping_removal))
        .routes(routes!(roles::get_default_roles, roles::set_default_roles))
        .routes(routes!(roles::preview_default_roles))
        .routes(routes!(roles::get_policy, roles::set_policy))
        .routes(routes!(workspaces::list_workspaces, workspaces::create_workspace))
        .routes(routes!(
            workspaces::get_workspace,
            workspaces::update_workspace,
            workspaces::delete_workspace
        ))
        .routes(routes!(
            workspaces::get_workspace_settings,
            workspaces::set_workspace_settings
        ))
        .routes(routes!(
            workspaces::list_workspace_mappings,
            workspaces::create_workspace_mapping
        ))
        .routes(routes!(workspaces::delete_workspace_mapping))
        .routes(routes!(workspaces::preview_workspace_mapping))
        .routes(routes!(workspaces::preview_workspace_mapping_removal))
        .routes(routes!(directory::list_users))
        .routes(routes!(directory::get_user))
        .routes(routes!(directory::list_groups))
        .routes(routes!(directory::get_group))
        .routes(routes!(directory::list_group_members))
        .routes(routes!(directory::access))
        .routes(routes!(api_keys::list_api_keys, api_keys::create_api_key))
        .routes(routes!(api_keys::revoke_api_key))
        .routes(routes!(setup_links::list_setup_links, setup_links::create_setup_link))
        .routes(routes!(setup_links::get_setup_link, setup_links::revoke_setup_link))
        .routes(routes!(events::list_requests))
        .routes(routes!(events::list_events))
        .routes(routes!(events::get_event))
        .routes(routes!(webhooks::list_webhooks, webhooks::create_webhook))
        .routes(routes!(
            webhooks::get_webhook,
            webhooks::update_webhook,
            webhooks::delete_webhook
        ))
        .routes(routes!(webhooks::rotate_secret))
        .routes(routes!(webhooks::list_attempts))
        .routes(routes!(webhooks::redeliver))
        .routes(routes!(webhooks::replay))
        .routes(routes!(webhooks::ping))
}

/// The OpenAPI document of the management API.
pub fn openapi() -> utoipa::openapi::OpenApi {
    let mut doc = OpenApiRouter::with_openapi(ApiDoc::openapi())
        .nest(BASE_PATH, routes())
        .into_openapi();
    document_http_layer_answers(&mut doc);
    document_webhooks(&mut doc);
    doc
}

/// The document's `webhooks`: what Rollcall POSTs to a webhook endpoint (an event, in the shape of
/// the Events API's, or a test message), with the Standard Webhooks headers, so that a client
/// generated from the one document parses deliveries too.
fn document_webhooks(doc: &mut utoipa::openapi::OpenApi) {
    use rollcall_webhooks::payload::{Delivery, Ping};
    use utoipa::openapi::path::{HttpMethod, OperationBuilder, ParameterBuilder, ParameterIn, PathItem};
    use utoipa::openapi::request_body::RequestBodyBuilder;
    use utoipa::openapi::{
        ContentBuilder, ObjectBuilder, PathsBuilder, Ref, Required, ResponseBuilder, ResponsesBuilder, Type,
    };
    use utoipa::{PartialSchema, ToSchema};
    let components = doc.components.get_or_insert_with(Default::default);
    let mut schemas = Vec::new();
    Delivery::schemas(&mut schemas);
    Ping::schemas(&mut schemas);
    schemas.push((Delivery::name().into_owned(), Delivery::schema()));
    schemas.push((Ping::name().into_owned(), Ping::schema()));
    for (name, schema) in schemas {
        components.schemas.entry(name).or_insert(schema);
    }
    let header = |name: &str, description: &str| {
        ParameterBuilder::new()
            .name(name)
            .parameter_in(ParameterIn::Header)
            .required(Required::True)
            .description(Some(description))
            .schema(Some(ObjectBuilder::new().schema_type(Type::String)))
            .build()
    };
    let operation = |summary: &str, description: &str, id: &str, schema: &str| {
        OperationBuilder::new()
            .summary(Some(summary))
            .description(Some(description))
            .operation_id(Some(id))
            .tag("webhooks")
            .parameter(header(
                "webhook-id",
                "The event's id (the same at every attempt: deduplicate on it); `ping_...` for a test message",
            ))
            .parameter(header(
                "webhook-timestamp",
                "When this attempt was sent, in Unix seconds",
            ))
            .parameter(header(
                "webhook-signature",
                "`v1,<base64 HMAC-SHA256>` over `{webhook-id}.{webhook-timestamp}.{body}` with the endpoint's \
                 secret; two, separated by a space, for a day after a secret rotation",
            ))
            .request_body(Some(
                RequestBodyBuilder::new()
                    .required(Some(Required::True))
                    .content(
                        "application/json",
                        ContentBuilder::new()
                            .schema(Some(Ref::from_schema_name(schema)))
                            .build(),
                    )
                    .build(),
            ))
            .responses(
                ResponsesBuilder::new()
                    .response(
                        "2XX",
                        ResponseBuilder::new().description(
                            "Received. Any other answer, or none within the timeout (10 s by default), is a \
                             failed attempt: events are retried with backoff, in order",
                        ),
                    )
                    .build(),
            )
            .build()
    };
    let webhooks = PathsBuilder::new()
        .path(
            "event",
            PathItem::new(
                HttpMethod::Post,
                operation(
                    "An event",
                    "Every change an endpoint subscribed to (by organization and `event_types`), in commit \
                     order: `data` is the event exactly as `GET /api/v1/events` gives it. See docs/events.md \
                     for each type's `data`.",
                    "webhook_event",
                    "Delivery",
                ),
            ),
        )
        .path(
            "ping",
            PathItem::new(
                HttpMethod::Post,
                operation(
                    "A test message",
                    "Sent by `POST /api/v1/webhooks/{id}/ping`, signed like events; not retried.",
                    "webhook_ping",
                    "Ping",
                ),
            ),
        )
        .build();
    doc.webhooks = Some(webhooks);
}

/// Adds to every operation the answers of the HTTP layer's limits ([`crate::limits::guard`]),
/// which come before any handler and so can come from any route: 400 for a control character in
/// the path or query, 414 and 431 for a request head over its limits, 503 over the node's cap on
/// requests in progress, and, where there is a body, 408 for one that does not arrive in time and
/// 413 for one announced over the limit. An operation's own description of a status is kept.
fn document_http_layer_answers(doc: &mut utoipa::openapi::OpenApi) {
    use utoipa::openapi::{ContentBuilder, Ref, ResponseBuilder};
    let problem = |description: &str| {
        ResponseBuilder::new()
            .description(description)
            .content(
                problem::PROBLEM_CONTENT_TYPE,
                ContentBuilder::new()
                    .schema(Some(Ref::from_schema_name("Problem")))
                    .build(),
            )
            .build()
    };
    let always = [
        (
            "400",
            "The request is malformed (a control character in the path or query, or a query parameter \
             the operation does not take, say)",
        ),
        ("414", "The path and query are longer than the limit"),
        ("431", "The request's headers are larger than the limit"),
        (
            "503",
            "The node has its maximum of requests in progress; retry after `Retry-After` seconds",
        ),
    ];
    let with_body = [
        ("408", "The request body did not arrive in time"),
        ("413", "The body is larger than the limit"),
    ];
    for item in doc.paths.paths.values_mut() {
        let operations = [
            &mut item.get,
            &mut item.put,
            &mut item.post,
            &mut item.delete,
            &mut item.patch,
        ];
        for op in operations.into_iter().flatten() {
            let has_body = op.request_body.is_some();
            let extra = always.iter().chain(with_body.iter().filter(|_| has_body));
            for (status, description) in extra {
                if !op.responses.responses.contains_key(*status) {
                    op.responses
                        .responses
                        .insert(status.to_string(), problem(description).into());
                }
            }
        }
    }
}

/// The management API (API-key authentication on every endpoint, unknown query parameters refused
/// on every endpoint, problem details on every error)
/// with its OpenAPI document and documentation page, which need no key.
pub fn router(state: &AppState) -> Router<AppState> {
    // Layers run last to first: the API key is checked before the query parameters.
    let (v1, _) = routes()
        .route_layer(axum::middleware::from_fn(extract::refuse_unknown_query_params))
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            auth::require_api_key,
        ))
        // Outermost of the route layers: its refusals are counted under the route's template too.
        .route_layer(axum::middleware::from_fn_with_state(
            BASE_PATH,
            crate::metrics::expose_route,
        ))
        .fallback(problem::not_found)
        .split_for_parts();
    // Mounted as one service, so that every answer, the router's own included (a 405 with its
    // `Allow` header), passes through `ensure_problem` complete.
    let v1 = tower::Layer::layer(
        &axum::middleware::map_response(problem::ensure_problem),
        v1.with_state(state.clone()),
    );
    let docs: Router<AppState> = SwaggerUi::new(DOCS_PATH).url(OPENAPI_PATH, openapi()).into();
    docs.nest_service(BASE_PATH, v1)
}
