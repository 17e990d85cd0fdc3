//! HTTP handlers for `/Users`, `/Groups`, `/.search` and the error fallbacks.

use crate::auth::Caller;
use crate::response::{ApiError, ApiResult, ScimResponse, error_response, etag, parse_etag};
use crate::service::{ListParams, Scim};
use axum::Extension;
use axum::body::Bytes;
use axum::extract::{FromRef, FromRequest, Path, RawQuery, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use rollcall_scim::ScimError;
use rollcall_scim::projection::Projection;
use rollcall_store::{ResourceKind, StoredResource};
use serde_json::Value;
use std::collections::HashMap;

/// A JSON request body read under the configured size limit; malformed JSON is `invalidSyntax`,
/// an oversize body 413, both with SCIM error bodies.
pub struct ScimBody(pub Value);

impl<S> FromRequest<S> for ScimBody
where
    S: Send + Sync,
    Scim: FromRef<S>,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let limit = Scim::from_ref(state).config.max_body_bytes;
        let too_large = || {
            ApiError(ScimError::payload_too_large(format!(
                "the request body is larger than the {limit}-byte limit"
            )))
        };
        if let Some(len) = req
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<usize>().ok())
            && len > limit
        {
            return Err(too_large());
        }
        if let Some(ct) = req.headers().get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()) {
            let ct = ct.to_ascii_lowercase();
            if !(ct.starts_with("application/scim+json") || ct.starts_with("application/json") || ct.contains("+json"))
            {
                return Err(ApiError(ScimError::new(
                    415,
                    None,
                    format!("unsupported content type \"{ct}\": send application/scim+json"),
                )));
            }
        }
        let bytes: Bytes = axum::body::to_bytes(req.into_body(), limit).await.map_err(|e| {
            match crate::deadline::body_timeout(&e) {
                Some(t) => ApiError(ScimError::new(408, None, t.to_string())),
                None => too_large(),
            }
        })?;
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Err(ApiError(ScimError::invalid_syntax("the request body is empty")));
        }
        let body: Value = serde_json::from_slice(&bytes).map_err(|e| {
            ApiError(ScimError::invalid_syntax(format!(
                "the request body is not valid JSON: {e}"
            )))
        })?;
        // `\u0000` in any string: SQLite would store it, PostgreSQL refuse it; no SCIM value needs it.
        rollcall_scim::limits::refuse_nul(&body)?;
        Ok(ScimBody(body))
    }
}

fn query_pairs(q: &Option<String>) -> Vec<(String, String)> {
    // form_urlencoded decodes `+` as a space, as SCIM clients send it.
    q.as_deref()
        .map(|q| form_urlencoded::parse(q.as_bytes()).into_owned().collect())
        .unwrap_or_default()
}

fn projection(q: &Option<String>) -> ApiResult<Projection> {
    Ok(ListParams::from_pairs(query_pairs(q)).projection()?)
}

fn if_match(headers: &HeaderMap) -> ApiResult<Option<i64>> {
    match headers.get(header::IF_MATCH).and_then(|v| v.to_str().ok()) {
        Some(v) => Ok(parse_etag(v)?),
        None => Ok(None),
    }
}

/// `If-None-Match` on a write (RFC 7232 §3.2): the write happens only when the resource's current
/// ETag matches none of those listed, and `*` matches any existing resource, so `If-None-Match: *`
/// on PUT never overwrites. Otherwise 412.
async fn check_if_none_match(
    scim: &Scim,
    caller: &Caller,
    kind: ResourceKind,
    id: &str,
    headers: &HeaderMap,
) -> ApiResult<()> {
    let Some(v) = headers.get(header::IF_NONE_MATCH) else {
        return Ok(());
    };
    let v = v
        .to_str()
        .map_err(|_| ScimError::precondition_failed("If-None-Match is not a list of ETags"))?;
    let tags = v.split(',').map(parse_etag).collect::<Result<Vec<_>, _>>()?;
    let Some(current) = scim.store.get_resource(caller.connection_id(), kind, id, false).await? else {
        // Nothing to match: the write itself answers 404.
        return Ok(());
    };
    if tags.iter().any(|t| t.is_none_or(|version| version == current.version)) {
        return Err(ScimError::precondition_failed(format!(
            "If-None-Match: {} matches the current version {} of {} \"{id}\"; it was not changed",
            v.trim(),
            etag(current.version),
            kind.as_str()
        ))
        .into());
    }
    Ok(())
}

fn resource_response(
    scim: &Scim,
    caller: &Caller,
    status: StatusCode,
    res: StoredResource,
    proj: &Projection,
) -> Response {
    let (version, location) = (
        res.version,
        (status == StatusCode::CREATED).then(|| scim.location(caller.connection_id(), res.kind, &res.id)),
    );
    let mut body = Vec::with_capacity(1024);
    scim.write_resource(&mut body, caller.connection_id(), res, proj);
    let mut r = ScimResponse::json(status, body).header(header::ETAG, &etag(version));
    if let Some(location) = location {
        r = r.header(header::LOCATION, &location);
    }
    r.into_response()
}

fn id_of(params: &HashMap<String, String>) -> &str {
    params.get("id").map(String::as_str).unwrap_or_default()
}

async fn list(scim: Scim, caller: Caller, kind: ResourceKind, q: Option<String>) -> ApiResult<ScimResponse> {
    list_response(&scim, &caller, kind, &ListParams::from_pairs(query_pairs(&q))).await
}

async fn search(scim: Scim, caller: Caller, kind: ResourceKind, body: Value) -> ApiResult<ScimResponse> {
    list_response(&scim, &caller, kind, &ListParams::from_search_body(&body)?).await
}

async fn list_response(
    scim: &Scim,
    caller: &Caller,
    kind: ResourceKind,
    params: &ListParams,
) -> ApiResult<ScimResponse> {
    let listed = scim.list(caller.connection_id(), kind, params).await?;
    // A page read as stored text: its size is known. Writing a large one takes milliseconds of
    // CPU, done beside the runtime's workers so that other requests are not queued behind it.
    let stored_bytes: usize = listed
        .resources
        .iter()
        .map(|r| r.doc.stored_text().map_or(1024, str::len))
        .sum();
    let render = {
        let (scim, connection_id) = (scim.clone(), caller.connection_id().to_string());
        move || {
            scim.list_response(
                &connection_id,
                listed.total,
                listed.position,
                listed.resources,
                &listed.projection,
            )
        }
    };
    let body = if stored_bytes >= BLOCKING_RENDER_BYTES {
        tokio::task::spawn_blocking(render)
            .await
            .map_err(|e| ScimError::internal(format!("rendering the page failed: {e}")))?
    } else {
        render()
    };
    Ok(ScimResponse::json(StatusCode::OK, body))
}

/// Pages of stored documents at least this large are written on a blocking thread.
const BLOCKING_RENDER_BYTES: usize = 128 * 1024;

async fn create(scim: Scim, caller: Caller, kind: ResourceKind, q: Option<String>, body: Value) -> ApiResult<Response> {
    let proj = projection(&q)?;
    let res = scim
        .create(&caller.write_context(), &caller.connection.policy, kind, &body)
        .await?;
    Ok(resource_response(&scim, &caller, StatusCode::CREATED, res, &proj))
}

async fn get_one(
    scim: Scim,
    caller: Caller,
    kind: ResourceKind,
    id: &str,
    q: Option<String>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    let proj = projection(&q)?;
    let res = scim
        .get(caller.connection_id(), kind, id, scim.wants_related(kind, &proj))
        .await?;
    if let Some(v) = headers.get(header::IF_NONE_MATCH).and_then(|v| v.to_str().ok()) {
        let matches = v
            .split(',')
            .any(|t| matches!(parse_etag(t), Ok(None)) || parse_etag(t).ok().flatten() == Some(res.version));
        if matches {
            return Ok((StatusCode::NOT_MODIFIED, [(header::ETAG, etag(res.version))]).into_response());
        }
    }
    Ok(resource_response(&scim, &caller, StatusCode::OK, res, &proj))
}

async fn replace(
    scim: Scim,
    caller: Caller,
    kind: ResourceKind,
    id: &str,
    q: Option<String>,
    headers: HeaderMap,
    body: Value,
) -> ApiResult<Response> {
    let proj = projection(&q)?;
    check_if_none_match(&scim, &caller, kind, id, &headers).await?;
    let res = scim
        .replace(
            &caller.write_context(),
            &caller.connection.policy,
            kind,
            id,
            &body,
            if_match(&headers)?,
        )
        .await?;
    let res = with_related(&scim, &caller, kind, res, &proj).await?;
    Ok(resource_response(&scim, &caller, StatusCode::OK, res, &proj))
}

/// Re-reads membership for a response when the projection wants it.
async fn with_related(
    scim: &Scim,
    caller: &Caller,
    kind: ResourceKind,
    res: StoredResource,
    proj: &Projection,
) -> ApiResult<StoredResource> {
    if scim.wants_related(kind, proj) {
        Ok(scim
            .get(caller.connection_id(), kind, &res.id, true)
            .await
            .unwrap_or(res))
    } else {
        Ok(res)
    }
}

async fn patch(
    scim: Scim,
    caller: Caller,
    kind: ResourceKind,
    id: &str,
    q: Option<String>,
    headers: HeaderMap,
    body: Value,
) -> ApiResult<Response> {
    let pairs = query_pairs(&q);
    let asked = pairs
        .iter()
        .any(|(k, _)| k.eq_ignore_ascii_case("attributes") || k.eq_ignore_ascii_case("excludedAttributes"));
    let proj = ListParams::from_pairs(pairs).projection()?;
    check_if_none_match(&scim, &caller, kind, id, &headers).await?;
    let res = scim
        .patch(
            &caller.write_context(),
            &caller.connection.policy,
            caller.dialect(),
            kind,
            id,
            &body,
            if_match(&headers)?,
        )
        .await?;
    // A group's members can be very many: unless the client asks for attributes, a group PATCH
    // answers 204 (RFC 7644 §3.5.2) so that changing one member never reads them all.
    if kind == ResourceKind::Group && !asked {
        return Ok(ScimResponse::no_content()
            .header(header::ETAG, &etag(res.version))
            .into_response());
    }
    let res = with_related(&scim, &caller, kind, res, &proj).await?;
    Ok(resource_response(&scim, &caller, StatusCode::OK, res, &proj))
}

async fn delete(scim: Scim, caller: Caller, kind: ResourceKind, id: &str, headers: HeaderMap) -> ApiResult<StatusCode> {
    check_if_none_match(&scim, &caller, kind, id, &headers).await?;
    scim.delete(&caller.write_context(), kind, id, if_match(&headers)?)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

macro_rules! resource_handlers {
    ($kind:expr, $list:ident, $search:ident, $create:ident, $get:ident, $put:ident, $patch:ident, $delete:ident) => {
        pub async fn $list(
            State(s): State<Scim>,
            Extension(c): Extension<Caller>,
            RawQuery(q): RawQuery,
        ) -> ApiResult<ScimResponse> {
            list(s, c, $kind, q).await
        }
        pub async fn $search(
            State(s): State<Scim>,
            Extension(c): Extension<Caller>,
            ScimBody(b): ScimBody,
        ) -> ApiResult<ScimResponse> {
            search(s, c, $kind, b).await
        }
        pub async fn $create(
            State(s): State<Scim>,
            Extension(c): Extension<Caller>,
            RawQuery(q): RawQuery,
            ScimBody(b): ScimBody,
        ) -> ApiResult<Response> {
            create(s, c, $kind, q, b).await
        }
        pub async fn $get(
            State(s): State<Scim>,
            Extension(c): Extension<Caller>,
            Path(p): Path<HashMap<String, String>>,
            RawQuery(q): RawQuery,
            h: HeaderMap,
        ) -> ApiResult<Response> {
            get_one(s, c, $kind, id_of(&p), q, h).await
        }
        pub async fn $put(
            State(s): State<Scim>,
            Extension(c): Extension<Caller>,
            Path(p): Path<HashMap<String, String>>,
            RawQuery(q): RawQuery,
            h: HeaderMap,
            ScimBody(b): ScimBody,
        ) -> ApiResult<Response> {
            replace(s, c, $kind, id_of(&p), q, h, b).await
        }
        pub async fn $patch(
            State(s): State<Scim>,
            Extension(c): Extension<Caller>,
            Path(p): Path<HashMap<String, String>>,
            RawQuery(q): RawQuery,
            h: HeaderMap,
            ScimBody(b): ScimBody,
        ) -> ApiResult<Response> {
            patch(s, c, $kind, id_of(&p), q, h, b).await
        }
        pub async fn $delete(
            State(s): State<Scim>,
            Extension(c): Extension<Caller>,
            Path(p): Path<HashMap<String, String>>,
            h: HeaderMap,
        ) -> ApiResult<StatusCode> {
            delete(s, c, $kind, id_of(&p), h).await
        }
    };
}

resource_handlers!(
    ResourceKind::User,
    list_users,
    search_users,
    create_user,
    get_user,
    put_user,
    patch_user,
    delete_user
);
resource_handlers!(
    ResourceKind::Group,
    list_groups,
    search_groups,
    create_group,
    get_group,
    put_group,
    patch_group,
    delete_group
);

/// `POST /.search` at the root: searches users and groups (users first), honouring `schemas`-less
/// filters on attributes common to both.
pub async fn search_root(
    State(s): State<Scim>,
    Extension(c): Extension<Caller>,
    ScimBody(b): ScimBody,
) -> ApiResult<ScimResponse> {
    let params = ListParams::from_search_body(&b)?;
    search_root_unscrubbed(&s, &c, &params)
        .await
        .map_err(|e| s.scrub_error(e, params.filter.as_deref()))
}

async fn search_root_unscrubbed(s: &Scim, c: &Caller, params: &ListParams) -> ApiResult<ScimResponse> {
    let mut all: Vec<StoredResource> = Vec::new();
    let mut total = 0i64;
    // A filter naming attributes of only one resource type searches that type alone; a filter
    // valid for no type is an error.
    let filter = match params.filter.as_deref().map(str::trim).filter(|f| !f.is_empty()) {
        Some(f) => Some(rollcall_scim::filter::Filter::parse_with(f, &s.config.filter_limits)?),
        None => None,
    };
    let mut kinds = Vec::new();
    let mut first_error = None;
    for kind in [ResourceKind::User, ResourceKind::Group] {
        match filter.as_ref().map(|f| f.validate(&s.registry, s.rt(kind))) {
            Some(Err(e)) => {
                first_error.get_or_insert(e);
            }
            _ => kinds.push(kind),
        }
    }
    if kinds.is_empty() {
        return Err(first_error
            .unwrap_or_else(|| ScimError::invalid_filter("invalid filter"))
            .into());
    }
    let proj = params.projection()?;
    for kind in kinds {
        let mut p = params.clone();
        p.start_index = None;
        p.count = Some(s.config.max_page_size.to_string());
        p.cursor = None;
        let listed = s.list(c.connection_id(), kind, &p).await?;
        total += listed.total;
        all.extend(listed.resources);
    }
    let start = params
        .start_index
        .as_deref()
        .and_then(|v| v.trim().parse::<i64>().ok())
        .unwrap_or(1)
        .max(1);
    let count = params
        .count
        .as_deref()
        .and_then(|v| v.trim().parse::<i64>().ok())
        .unwrap_or(s.config.default_page_size)
        .clamp(0, s.config.max_page_size);
    let page: Vec<StoredResource> = all
        .into_iter()
        .skip((start - 1) as usize)
        .take(count as usize)
        .collect();
    let body = s.list_response(
        c.connection_id(),
        total,
        crate::service::ListPosition::StartIndex(start),
        page,
        &proj,
    );
    Ok(ScimResponse::json(StatusCode::OK, body))
}

pub async fn me() -> Response {
    error_response(&ScimError::not_implemented(
        "/Me is not supported: requests are made by an identity provider, not a user",
    ))
}

pub async fn method_not_allowed() -> Response {
    error_response(&ScimError::method_not_allowed(
        "this method is not allowed on this endpoint",
    ))
}

pub async fn not_found() -> Response {
    error_response(&ScimError::not_found("no such endpoint"))
}

pub async fn ready(State(s): State<Scim>) -> Response {
    match s.store.count_organizations().await {
        Ok(_) => (StatusCode::OK, "ready").into_response(),
        Err(e) => {
            tracing::warn!(error = %e, "not ready");
            (StatusCode::SERVICE_UNAVAILABLE, "database unavailable").into_response()
        }
    }
}
