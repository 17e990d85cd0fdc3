//! The request log in plain words: what a refused or failed SCIM request means to the person who
//! sets up the identity provider, and what to change. A pure function of what the request log
//! recorded ([`RequestLogEntry`]: status, `scimType`, method, path, the error's `detail`, the
//! User-Agent and how the credentials were presented), shown by the management API's request log
//! and the screens built on it.
//!
//! Successful requests have no explanation. Every failure has one: a known class (its `kind`, a
//! stable word) or, for a status no class covers, a general one that quotes the error's detail.

use rollcall_store::RequestLogEntry;

/// A failed request explained.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Explanation {
    /// What happened, in a sentence or two.
    pub summary: String,
    /// What to change, and where.
    pub fix: String,
    /// The class of the failure: `missing_authorization`, `uniqueness`, `wrong_base_url`, ...
    pub kind: &'static str,
}

/// Explains a request of the request log; `None` when it succeeded (a status under 400).
pub fn explain(e: &RequestLogEntry) -> Option<Explanation> {
    if e.status < 400 {
        return None;
    }
    let idp = Idp::of(e.user_agent.as_deref());
    let detail = e.error_detail.as_deref().unwrap_or("").trim();
    let by_type = match e.scim_type.as_deref() {
        Some("uniqueness") => Some(uniqueness(e, detail, idp)),
        Some("invalidFilter") => Some(invalid_filter(e, detail)),
        Some("invalidSyntax") => Some(invalid_syntax(detail)),
        Some("invalidValue") => Some(invalid_value(detail)),
        Some("invalidPath") => Some(invalid_path(detail)),
        Some("noTarget") => Some(no_target(detail)),
        Some("mutability") => Some(mutability(detail)),
        Some("tooMany") => Some(too_many(detail)),
        Some("invalidVers") => Some(invalid_version(detail)),
        Some("invalidCursor") => Some(invalid_cursor(detail)),
        Some("sensitive") => Some(sensitive(detail)),
        _ => None,
    };
    if by_type.is_some() {
        return by_type;
    }
    Some(match e.status {
        401 => unauthorized(e, detail, idp),
        404 => not_found(e, detail),
        405 => method_not_allowed(e),
        408 => timeout(),
        409 => uniqueness(e, detail, idp),
        412 => precondition_failed(detail),
        413 => too_large(detail),
        415 => unsupported_media_type(detail),
        429 => rate_limited(idp),
        500..=502 | 504..=599 => server_error(e),
        503 => unavailable(),
        400 => bad_request(detail),
        _ => other(e.status, detail),
    })
}

/// What a request was part of, when an identity provider sends a run of requests that means
/// something as a whole: its connection test (`rollcall_scim::dialect::CONNECTION_TESTS`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Activity {
    /// `connection_test`.
    pub kind: &'static str,
    /// The identity provider, as a connection's `idp` names it.
    pub idp: &'static str,
    /// `JumpCloud's Test Connection`.
    pub name: &'static str,
    /// What the run does, in a sentence.
    pub summary: &'static str,
}

/// How long before a connection test's first write its lookups count as part of it.
const LOOKUP_BEFORE_US: i64 = 10_000_000;

/// The part of a SCIM path after `/scim/v2/{connection}`: the endpoint and whether an id follows.
fn endpoint_of(path: &str) -> Option<(&str, bool)> {
    let path = path.split('?').next().unwrap_or(path);
    let mut segments = path.strip_prefix("/scim/v2/")?.split('/').skip(1);
    let endpoint = segments.next().filter(|s| !s.is_empty())?;
    let id = segments.next().is_some_and(|s| !s.is_empty());
    Some((endpoint, id))
}

/// Marks the entries that are, together, an identity provider's connection test: for each entry,
/// the [`Activity`] it is part of, or `None`. `entries` may be in any order (the request log is
/// read newest first); the client of an entry is the identity provider its User-Agent names, else
/// the connection's configured `idp`.
///
/// A test is recognised when its steps are consecutive writes of its provider (lookups may come
/// between), all within its time window, each deletion after the creation on the same endpoint;
/// the lookups (GET) from ten seconds before its first write to its last belong to it too. The
/// request log holds no ids of created resources, so the steps are matched by method, endpoint and
/// order.
pub fn activities(entries: &[RequestLogEntry], configured_idp: &str) -> Vec<Option<Activity>> {
    let mut out: Vec<Option<Activity>> = vec![None; entries.len()];
    let mut order: Vec<usize> = (0..entries.len()).collect();
    order.sort_by_key(|&i| (entries[i].at_us, entries[i].seq));
    for test in rollcall_scim::dialect::CONNECTION_TESTS {
        let mine: Vec<usize> = order
            .iter()
            .copied()
            .filter(|&i| {
                let e = &entries[i];
                e.user_agent
                    .as_deref()
                    .and_then(rollcall_scim::dialect::detect_client)
                    .unwrap_or(configured_idp)
                    == test.idp
            })
            .collect();
        let step_of = |e: &RequestLogEntry, step: &(&[&str], &str, bool)| {
            step.0.iter().any(|m| e.method.eq_ignore_ascii_case(m))
                && endpoint_of(&e.path).is_some_and(|(endpoint, id)| endpoint == step.1 && id == step.2)
        };
        let window = test.within_seconds * 1_000_000;
        let is_write = |i: usize| !entries[i].method.eq_ignore_ascii_case("GET");
        for (k, &start) in mine.iter().enumerate() {
            if out[start].is_some() || !is_write(start) {
                continue;
            }
            let first_at = entries[start].at_us;
            // The test's writes are consecutive among its provider's writes (lookups may come
            // between): a user and a group created and deleted amid other provisioning are not it.
            let writes: Vec<usize> = mine[k..]
                .iter()
                .copied()
                .filter(|&i| is_write(i))
                .take(test.steps.len())
                .collect();
            if writes.len() < test.steps.len()
                || writes
                    .iter()
                    .any(|&i| out[i].is_some() || entries[i].at_us - first_at > window)
            {
                continue;
            }
            let mut matched: Vec<Option<usize>> = vec![None; test.steps.len()];
            let complete = writes.iter().all(|&w| {
                let step = test.steps.iter().enumerate().position(|(s, st)| {
                    // A deletion comes after the creation on the same endpoint.
                    let created = !st.2
                        || test
                            .steps
                            .iter()
                            .enumerate()
                            .any(|(c, cs)| !cs.2 && cs.1 == st.1 && matched[c].is_some());
                    matched[s].is_none() && created && step_of(&entries[w], st)
                });
                step.map(|s| matched[s] = Some(w)).is_some()
            });
            if !complete {
                continue;
            }
            let last_at = matched
                .iter()
                .flatten()
                .map(|&i| entries[i].at_us)
                .max()
                .unwrap_or(first_at);
            let activity = Activity {
                kind: "connection_test",
                idp: test.idp,
                name: test.name,
                summary: test.summary,
            };
            for &i in &mine {
                let e = &entries[i];
                let lookup =
                    e.method.eq_ignore_ascii_case("GET") && (first_at - LOOKUP_BEFORE_US..=last_at).contains(&e.at_us);
                if out[i].is_none() && (matched.contains(&Some(i)) || lookup) {
                    out[i] = Some(activity);
                }
            }
        }
    }
    out
}

fn ex(kind: &'static str, summary: impl Into<String>, fix: impl Into<String>) -> Explanation {
    Explanation {
        summary: summary.into(),
        fix: fix.into(),
        kind,
    }
}

/// Longest error detail quoted in a summary, in characters.
const MAX_QUOTED_CHARS: usize = 300;

/// ` Rollcall answered: "<detail>".`, or nothing when there was no detail.
fn answered(detail: &str) -> String {
    if detail.is_empty() {
        return String::new();
    }
    let mut d: String = detail.chars().take(MAX_QUOTED_CHARS).collect();
    if d.len() < detail.len() {
        d.push('…');
    }
    format!(" Rollcall answered: \"{d}\".")
}

/// The identity provider a User-Agent names, for the names of its own fields and screens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Idp {
    Okta,
    Entra,
    OneLogin,
    JumpCloud,
    Ping,
    Google,
    Unknown,
}

impl Idp {
    fn of(user_agent: Option<&str>) -> Idp {
        match user_agent.and_then(rollcall_scim::dialect::detect_client) {
            Some("okta") => Idp::Okta,
            Some("entra") => Idp::Entra,
            Some("onelogin") => Idp::OneLogin,
            Some("jumpcloud") => Idp::JumpCloud,
            Some("ping") => Idp::Ping,
            Some("google") => Idp::Google,
            _ => Idp::Unknown,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Idp::Okta => "Okta",
            Idp::Entra => "Microsoft Entra ID",
            Idp::OneLogin => "OneLogin",
            Idp::JumpCloud => "JumpCloud",
            Idp::Ping => "PingOne",
            Idp::Google => "Google Workspace",
            Idp::Unknown => "the identity provider",
        }
    }

    /// Where the token goes in this identity provider's SCIM settings.
    fn token_field(self) -> &'static str {
        match self {
            Idp::Okta => "Okta's Authorization field (Provisioning > Integration, Authentication Mode \"HTTP Header\")",
            Idp::Entra => "Entra ID's Secret Token field (Provisioning > Admin Credentials)",
            Idp::OneLogin => "OneLogin's SCIM Bearer Token field",
            Idp::JumpCloud => "JumpCloud's Token Key field",
            Idp::Ping | Idp::Google | Idp::Unknown => "the identity provider's token field",
        }
    }
}

// --- 401: credentials ---------------------------------------------------------------------------

fn unauthorized(e: &RequestLogEntry, detail: &str, idp: Idp) -> Explanation {
    let field = idp.token_field();
    let who = idp.name();
    match e.auth_scheme.as_deref() {
        Some("none") => ex(
            "missing_authorization",
            format!(
                "The request had no Authorization header, so Rollcall could not tell which connection's token it was: {who} sent no credentials."
            ),
            format!(
                "Paste the connection's token into {field}, choosing bearer-token (HTTP header) authentication, and save; then test the connection again."
            ),
        ),
        Some("empty" | "bearer_empty") => ex(
            "empty_token",
            "The Authorization header was there but held no token.",
            format!("Paste the connection's token (it begins with rc_scim_) into {field} and save."),
        ),
        Some("basic") => ex(
            "basic_auth",
            format!(
                "{} used Basic authentication (a user name and password); Rollcall accepts only the connection's bearer token.",
                capitalized(who)
            ),
            match idp {
                Idp::Okta => format!(
                    "In Okta, set Authentication Mode to \"HTTP Header\" instead of \"Basic Auth\" and paste the token into {field}."
                ),
                _ => format!(
                    "Switch the authentication to a bearer token (\"HTTP header\", \"Bearer token\" or \"OAuth bearer token\") and paste the token into {field}."
                ),
            },
        ),
        Some("bare") => ex(
            "bearer_missing",
            "The Authorization header held the token alone, without the word \"Bearer\" before it.",
            "Where the identity provider asks for the whole header value, enter \"Bearer \" followed by the token; where it has a token field of its own, use that field instead, which adds \"Bearer \" itself.",
        ),
        Some("bearer_doubled") => ex(
            "bearer_doubled",
            format!(
                "The Authorization header said \"Bearer Bearer …\": the token field was given \"Bearer <token>\", and {who} put \"Bearer \" before it once more."
            ),
            format!("Paste the token alone, without \"Bearer \", into {field}."),
        ),
        Some("other") => ex(
            "unsupported_scheme",
            "The Authorization header used a scheme other than Bearer (such as \"Token\" or \"SSWS\"); Rollcall accepts only \"Bearer <token>\".",
            format!("Choose bearer-token authentication and paste the connection's token into {field}."),
        ),
        Some("bearer_api_key") => api_key_used(field),
        _ if detail.contains("operator API key") => api_key_used(field),
        _ if detail.contains("disabled") => ex(
            "connection_disabled",
            "The token is right, but this SCIM connection is disabled: it accepts no requests until an operator enables it again.",
            "Ask the operator to enable the connection (in the console, or PATCH /api/v1/connections/{id} with {\"status\": \"active\"}); the identity provider's next attempt then succeeds.",
        ),
        _ if detail.contains("bearer token is required") => ex(
            "no_bearer_token",
            "The request carried no bearer token: no Authorization header, another scheme such as Basic, or the token without \"Bearer \" before it.",
            format!("Choose bearer-token authentication and paste the connection's token into {field}."),
        ),
        Some("bearer_other") => ex(
            "not_a_scim_token",
            "The bearer token is not a Rollcall SCIM token (those begin with rc_scim_): another secret was pasted, or a token of another system.",
            format!(
                "Copy this connection's token and paste it into {field}. If nobody kept it, rotate the connection's token to get a new one."
            ),
        ),
        _ => ex(
            "invalid_token",
            "The bearer token is not valid for this base URL: it was mistyped or cut short, replaced by a token rotation or revoked, or it is the token of another connection (a base URL and token of two different connections).",
            format!(
                "Check that the base URL and the token come from the same connection, then paste the current token into {field} again. If nobody has it, rotate the connection's token: the new one is shown once."
            ),
        ),
    }
}

fn api_key_used(field: &str) -> Explanation {
    ex(
        "api_key_used",
        "The request presented an operator API key (rc_key_…). API keys are for the management API; SCIM requests need the connection's own token.",
        format!(
            "Paste the connection's SCIM token (it begins with rc_scim_) into {field}, and keep the API key out of the identity provider."
        ),
    )
}

fn capitalized(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_uppercase().chain(c).collect(),
        None => String::new(),
    }
}

// --- 404: base URL and resources ----------------------------------------------------------------

/// The endpoints under a connection's base URL, in lower case.
const ENDPOINTS: [&str; 6] = [
    "users",
    "groups",
    "serviceproviderconfig",
    "schemas",
    "resourcetypes",
    "bulk",
];

/// What a path under `/scim/v2/{connection_id}` names.
#[derive(Debug, PartialEq, Eq)]
enum Target<'a> {
    /// A SCIM endpoint that exists (a collection, a search, discovery, `/Bulk`).
    Endpoint,
    /// One user or group.
    Resource(&'static str, &'a str),
    /// Nothing Rollcall serves.
    Unknown,
}

fn target(rest: &str) -> Target<'_> {
    let segments: Vec<&str> = rest.strip_prefix('/').unwrap_or(rest).split('/').collect();
    match segments.as_slice() {
        ["Users" | "Groups" | ".search" | "Bulk" | "ServiceProviderConfig" | "ResourceTypes" | "Schemas" | "Me"]
        | ["Users" | "Groups", ".search"]
        | ["ResourceTypes" | "Schemas", _] => Target::Endpoint,
        // `/Users/Users`: a base URL entered with `/Users` at its end, not a user named "Users".
        ["Users" | "Groups", id] if ENDPOINTS.contains(&id.to_ascii_lowercase().as_str()) => Target::Unknown,
        ["Users", id] if !id.is_empty() => Target::Resource("user", id),
        ["Groups", id] if !id.is_empty() => Target::Resource("group", id),
        _ => Target::Unknown,
    }
}

fn not_found(e: &RequestLogEntry, detail: &str) -> Explanation {
    let path = e.path.split('?').next().unwrap_or("");
    let Some(after) = path.strip_prefix("/scim/v2/") else {
        return wrong_base_url(
            "The request's path is not under /scim/v2/, where Rollcall's SCIM endpoints are.",
            "{connection_id}",
        );
    };
    let (connection, rest) = after.split_once('/').map_or((after, ""), |(c, r)| (c, r));
    if uuid::Uuid::parse_str(connection).is_err() {
        return wrong_base_url(
            "The base URL does not name a SCIM connection: /scim/v2/ must be followed by the connection's id.",
            "{connection_id}",
        );
    }
    let rest_slash = format!("/{rest}");
    match target(&rest_slash) {
        Target::Resource(what, id) => ex(
            "resource_not_found",
            format!(
                "The {what} {id} does not exist in this connection: it was deleted here, or the identity provider remembers an id from another connection or an earlier setup."
            ),
            "Usually nothing: the identity provider creates the user or group again at its next cycle. If it keeps failing, clear its link to the resource (Entra ID: restart provisioning; Okta: re-push the user or group) so that it looks the resource up by userName or displayName.",
        ),
        Target::Endpoint => other(404, detail),
        Target::Unknown => {
            let lower = rest.to_ascii_lowercase();
            let why = if lower.contains("scim/") || lower.starts_with("v2/") || lower.contains("/v2/") {
                "The path has the base path twice (…/scim/v2/{id}/scim/v2/Users): the base URL was entered with more than the connection's address, and the identity provider added its own path after it."
            } else if rest.is_empty() {
                "The request asked for the base URL itself, which is no endpoint: SCIM requests go to /Users, /Groups and the discovery endpoints under it."
            } else if rest.starts_with('/') {
                "The path has a double slash after the connection id: the base URL was entered with a trailing slash."
            } else if let Some(first) = rest.split('/').next()
                && ENDPOINTS.contains(&first.to_ascii_lowercase().as_str())
            {
                "The endpoint is named in another case or with extra path segments (such as /Users/Users): the base URL was entered with /Users at its end, or the endpoint name's case differs (SCIM names are case-sensitive: /Users, /Groups)."
            } else {
                "The path after the connection id is not a SCIM endpoint of Rollcall."
            };
            wrong_base_url(why, connection)
        }
    }
}

fn wrong_base_url(why: &str, connection: &str) -> Explanation {
    ex(
        "wrong_base_url",
        format!("No SCIM endpoint has this address. {why}"),
        format!(
            "Enter the base URL exactly as Rollcall shows it, ending in /scim/v2/{connection}, with nothing after the connection id and no trailing slash: the identity provider adds /Users and /Groups itself."
        ),
    )
}

// --- SCIM error types ---------------------------------------------------------------------------

/// The quoted value of `userName "x"` or `named "x"` in a uniqueness detail.
fn quoted_after<'a>(detail: &'a str, marker: &str) -> Option<&'a str> {
    let start = detail.find(marker)? + marker.len();
    let rest = &detail[start..];
    let rest = rest.strip_prefix('"')?;
    Some(&rest[..rest.find('"')?])
}

fn uniqueness(e: &RequestLogEntry, detail: &str, idp: Idp) -> Explanation {
    let who = idp.name();
    let group = e.path.contains("/Groups") || detail.contains("group named");
    if group {
        let name = quoted_after(detail, "named ").map_or(String::new(), |n| format!(" \"{n}\""));
        return ex(
            "uniqueness",
            format!(
                "A group{name} already exists in this connection, so {who} could not create it again. It was created earlier: by an earlier push of this group, or another group of the same name."
            ),
            match idp {
                Idp::Okta => "In Okta's Push Groups, link the group to the existing one (\"Link Group\") instead of creating it; or rename or delete the existing group in Rollcall.".to_string(),
                _ => format!("Let {who} match the existing group by its displayName instead of creating it, or rename or delete the existing group in Rollcall."),
            },
        );
    }
    let name = quoted_after(detail, "userName ").map_or(String::new(), |n| format!(" \"{n}\""));
    let matching = match idp {
        Idp::Entra => {
            "In Entra ID, open Provisioning > Mappings > Provision users and make userName the matching attribute (matching precedence 1), mapped from the attribute that holds the same value (usually userPrincipalName or mail): Entra ID then finds the existing user and updates it."
        }
        Idp::Okta => {
            "In Okta, import users from the app (Import tab) and confirm the match on userName, so that Okta links the existing user instead of creating it; check that the Okta username maps to userName unchanged."
        }
        Idp::OneLogin => {
            "In OneLogin, make sure the SCIM username is the same value the existing user has, so that OneLogin finds it and updates it instead of creating it."
        }
        Idp::JumpCloud => {
            "In JumpCloud, make sure the user's username or email maps to the same userName, so that JumpCloud finds and links the existing user."
        }
        _ => {
            "Let the identity provider match the existing user by userName instead of creating it (its matching or correlation attribute should be userName, with the same value)."
        }
    };
    ex(
        "uniqueness",
        format!(
            "A user with userName{name} already exists in this connection, so {who} could not create it again. It was created earlier: by an earlier provisioning run whose link {who} has lost (the app re-created or its provisioning state cleared), by hand through the API, or under another identity in {who} with the same userName."
        ),
        format!(
            "{matching} If the existing user is stale, delete it in Rollcall and let the next cycle create it again."
        ),
    )
}

fn invalid_filter(e: &RequestLogEntry, detail: &str) -> Explanation {
    let filter = e.path.split_once('?').and_then(|(_, q)| {
        form_urlencoded::parse(q.as_bytes())
            .find(|(k, _)| k.eq_ignore_ascii_case("filter"))
            .map(|(_, v)| v.into_owned())
    });
    let shown = filter.map_or(String::new(), |f| format!(" (filter={f})"));
    ex(
        "invalid_filter",
        format!(
            "The identity provider searched with a filter Rollcall could not read{shown}.{}",
            answered(detail)
        ),
        "Check the attribute the identity provider matches users on: it must be a SCIM attribute (userName, externalId, emails.value, displayName for groups), compared with eq, ne, co, sw, ew, gt, ge, lt, le or pr, and a string value in double quotes, as in userName eq \"ada@example.com\". A custom or extension attribute needs its full name (urn:…:User:attribute).",
    )
}

fn invalid_syntax(detail: &str) -> Explanation {
    ex(
        "invalid_syntax",
        format!(
            "The request body was not a SCIM request Rollcall could read (not JSON, or not the shape SCIM asks for).{}",
            answered(detail)
        ),
        "Look at the attribute mappings and expressions of the identity provider that build this request; with debug logging on for the connection, the request log keeps the body (secrets redacted) so that you can see what was sent.",
    )
}

fn invalid_value(detail: &str) -> Explanation {
    ex(
        "invalid_value",
        format!(
            "An attribute had a value Rollcall refuses: a required attribute missing (such as userName), a value of the wrong type, or one over a limit.{}",
            answered(detail)
        ),
        "Fix the mapping of the attribute the error names in the identity provider (a required attribute must always have a value, and an empty source attribute sends none); or, if the connection's attribute policy requires it, ask the operator to change the policy.",
    )
}

fn invalid_path(detail: &str) -> Explanation {
    ex(
        "invalid_path",
        format!(
            "A PATCH operation named an attribute path that is malformed or that Rollcall's schema does not have.{}",
            answered(detail)
        ),
        "Remove or correct the mapping to that attribute in the identity provider: a custom attribute must be mapped to an attribute of the schemas Rollcall serves (see /Schemas), with its full name for an extension.",
    )
}

fn no_target(detail: &str) -> Explanation {
    ex(
        "no_target",
        format!(
            "A PATCH operation's path selected nothing to change (for example emails[type eq \"work\"] on a user without a work email).{}",
            answered(detail)
        ),
        "Usually the identity provider retries with a full update; if it keeps failing, re-push the user or group so that the identity provider sends its whole state.",
    )
}

fn mutability(detail: &str) -> Explanation {
    ex(
        "mutability",
        format!(
            "The request tried to change an attribute that cannot be written (id, meta, a user's groups, or an immutable value).{}",
            answered(detail)
        ),
        "Remove the mapping to that attribute in the identity provider. A user's groups change through the groups' members: push the groups instead of mapping groups on users.",
    )
}

fn too_many(detail: &str) -> Explanation {
    ex(
        "too_many",
        format!(
            "The request asked for more than Rollcall answers at once (a filter matching too many resources, or too many operations).{}",
            answered(detail)
        ),
        "Narrow the filter, or page with count and startIndex; for /Bulk, send fewer operations per request.",
    )
}

fn invalid_version(detail: &str) -> Explanation {
    ex(
        "invalid_version",
        format!(
            "The identity provider spoke a SCIM version Rollcall does not serve.{}",
            answered(detail)
        ),
        "Choose SCIM 2.0 in the identity provider's settings.",
    )
}

fn invalid_cursor(detail: &str) -> Explanation {
    ex(
        "invalid_cursor",
        format!(
            "The cursor sent to page through a list is not one Rollcall issued, or it has expired.{}",
            answered(detail)
        ),
        "Start the listing again from its first page.",
    )
}

fn sensitive(detail: &str) -> Explanation {
    ex(
        "sensitive",
        format!("The request put sensitive values in the URL.{}", answered(detail)),
        "Send them in the request body, with POST /.search for searches.",
    )
}

// --- other statuses -----------------------------------------------------------------------------

fn method_not_allowed(e: &RequestLogEntry) -> Explanation {
    ex(
        "method_not_allowed",
        format!(
            "The endpoint exists but does not take {}: for example PATCH or PUT on /Users instead of on /Users/{{id}}, or a write to a discovery endpoint.",
            e.method
        ),
        "Check the base URL (nothing after the connection id) and the identity provider's provisioning actions; SCIM creates with POST on /Users or /Groups and updates with PUT or PATCH on /Users/{id} or /Groups/{id}.",
    )
}

fn timeout() -> Explanation {
    ex(
        "request_timeout",
        "The request body did not arrive in time: the connection stalled while the identity provider was sending it.",
        "Nothing to change if it is rare: the identity provider retries. If it repeats, look at the network between the identity provider and Rollcall (proxies, TLS inspection).",
    )
}

fn precondition_failed(detail: &str) -> Explanation {
    ex(
        "precondition_failed",
        format!(
            "The resource changed since the identity provider last read it (its If-Match version no longer matches).{}",
            answered(detail)
        ),
        "Nothing to change: the identity provider reads the resource again and retries.",
    )
}

fn too_large(detail: &str) -> Explanation {
    ex(
        "too_large",
        format!(
            "The request body was larger than this server accepts.{}",
            answered(detail)
        ),
        "Send smaller requests (fewer members per group update, fewer operations per /Bulk), or ask the operator to raise the largest body allowed (ROLLCALL_MAX_BODY_BYTES).",
    )
}

fn unsupported_media_type(detail: &str) -> Explanation {
    ex(
        "unsupported_media_type",
        format!("The request body was not sent as JSON.{}", answered(detail)),
        "Send the body with Content-Type: application/scim+json (or application/json); a custom SCIM client must set this header.",
    )
}

fn rate_limited(idp: Idp) -> Explanation {
    let who = idp.name();
    ex(
        "rate_limited",
        format!(
            "{} sent more requests than this connection's rate limit allows, and was asked to wait (Retry-After).",
            capitalized(who)
        ),
        "Usually nothing: identity providers wait and retry, and provisioning goes on at the allowed rate. If it lasts, lower the identity provider's concurrency, or ask the operator to raise the rate limit (ROLLCALL_RATE_LIMIT_PER_SECOND).",
    )
}

fn server_error(e: &RequestLogEntry) -> Explanation {
    let id = e
        .request_id
        .as_deref()
        .map_or(String::new(), |id| format!(" under request id {id}"));
    ex(
        "server_error",
        "Rollcall failed to answer this request: the fault is on the server's side, not in the identity provider's settings. Identity providers retry such requests.",
        format!(
            "Nothing to change in the identity provider. The operator finds the error in the server's log{id}; if it repeats, report it."
        ),
    )
}

fn unavailable() -> Explanation {
    ex(
        "unavailable",
        "The server was too busy or could not reach its database, and asked the identity provider to come back later.",
        "Nothing to change in the identity provider: it retries. If it lasts, the operator should check the server's load and database.",
    )
}

fn bad_request(detail: &str) -> Explanation {
    ex(
        "bad_request",
        format!("Rollcall refused the request as malformed.{}", answered(detail)),
        "Check what the error names (a header, a parameter, a character in the path); with debug logging on for the connection, the request log keeps the body.",
    )
}

fn other(status: u16, detail: &str) -> Explanation {
    ex(
        "other",
        format!("The request failed with status {status}.{}", answered(detail)),
        "Read the error's detail above; the SCIM request log keeps the request's method and path to compare with the identity provider's own log.",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const CONN: &str = "0190c7d2-5b7e-7000-8000-000000000001";

    fn entry(method: &str, path: &str, status: u16) -> RequestLogEntry {
        RequestLogEntry {
            seq: 1,
            connection_id: CONN.into(),
            at_us: 0,
            method: method.into(),
            path: path.replace("{c}", CONN),
            status,
            latency_us: 1,
            scim_type: None,
            error_detail: None,
            user_agent: None,
            request_id: Some("req-1".into()),
            token_prefix: None,
            auth_scheme: Some("bearer".into()),
            request_body: None,
            response_body: None,
        }
    }

    fn with(mut e: RequestLogEntry, scim_type: Option<&str>, detail: &str) -> RequestLogEntry {
        e.scim_type = scim_type.map(str::to_string);
        e.error_detail = Some(detail.into());
        e
    }

    fn unauthorized(auth_scheme: Option<&str>, detail: &str) -> RequestLogEntry {
        let mut e = with(entry("GET", "/scim/v2/{c}/Users", 401), None, detail);
        e.auth_scheme = auth_scheme.map(str::to_string);
        e
    }

    fn kind(e: &RequestLogEntry) -> &'static str {
        explain(e).expect("a failure is explained").kind
    }

    const REQUIRED: &str = "a bearer token is required: send \"Authorization: Bearer <token>\"";
    const INVALID: &str = "the bearer token is not valid for this SCIM base URL";

    fn at(mut e: RequestLogEntry, seconds: i64, seq: i64, ua: Option<&str>) -> RequestLogEntry {
        e.at_us = seconds * 1_000_000;
        e.seq = seq;
        e.user_agent = ua.map(str::to_string);
        e
    }

    #[test]
    fn jumpclouds_connection_test_is_recognised_in_any_order_of_reading() {
        let test = vec![
            at(
                entry("GET", "/scim/v2/{c}/Users?filter=userName+eq+%22t%40x%22", 200),
                0,
                1,
                None,
            ),
            at(entry("POST", "/scim/v2/{c}/Users", 201), 1, 2, None),
            at(entry("POST", "/scim/v2/{c}/Groups", 201), 2, 3, None),
            at(entry("DELETE", "/scim/v2/{c}/Groups/g1", 204), 3, 4, None),
            at(entry("DELETE", "/scim/v2/{c}/Users/u1", 204), 4, 5, None),
            // Provisioning that follows is not part of it.
            at(entry("GET", "/scim/v2/{c}/Users?filter=x", 200), 30, 6, None),
            at(entry("POST", "/scim/v2/{c}/Users", 201), 31, 7, None),
        ];
        let marks = activities(&test, "jumpcloud");
        let named: Vec<bool> = marks.iter().map(Option::is_some).collect();
        assert_eq!(named, [true, true, true, true, true, false, false]);
        assert_eq!(marks[1].unwrap().name, "JumpCloud's Test Connection");
        assert_eq!(marks[1].unwrap().kind, "connection_test");
        // Newest first, as the request log is read: the same marks.
        let mut reversed = test.clone();
        reversed.reverse();
        let mut back: Vec<bool> = activities(&reversed, "jumpcloud").iter().map(Option::is_some).collect();
        back.reverse();
        assert_eq!(back, named);
        // The client named by its User-Agent counts, whatever the connection says.
        let by_ua: Vec<RequestLogEntry> = test
            .iter()
            .cloned()
            .map(|mut e| {
                e.user_agent = Some("JumpCloud SCIM".into());
                e
            })
            .collect();
        assert!(activities(&by_ua, "okta")[1].is_some());
        // Another provider's connection, or another client's requests: nothing.
        assert!(activities(&test, "okta").iter().all(Option::is_none));
        let okta: Vec<RequestLogEntry> = test
            .iter()
            .cloned()
            .map(|mut e| {
                e.user_agent = Some("Okta SCIM Client 1.0.0".into());
                e
            })
            .collect();
        assert!(activities(&okta, "jumpcloud").iter().all(Option::is_none));
        // A deactivation instead of the user's deletion (DELETE unsupported) completes it too.
        let mut deactivated = test[..5].to_vec();
        deactivated[4] = at(entry("PATCH", "/scim/v2/{c}/Users/u1", 200), 4, 5, None);
        assert!(activities(&deactivated, "jumpcloud").iter().all(Option::is_some));
        // Incomplete, out of order, or too slow: not a connection test.
        assert!(activities(&test[..4], "jumpcloud").iter().all(Option::is_none));
        let mut deleted_first = test[..5].to_vec();
        deleted_first[3].at_us = 0;
        deleted_first[3].seq = 0;
        assert!(activities(&deleted_first, "jumpcloud").iter().all(Option::is_none));
        let mut slow = test[..5].to_vec();
        slow[4].at_us = 1_000 * 1_000_000;
        assert!(activities(&slow, "jumpcloud").iter().all(Option::is_none));
    }

    #[test]
    fn successes_have_no_explanation() {
        for status in [200, 201, 204, 304] {
            assert_eq!(explain(&entry("GET", "/scim/v2/{c}/Users", status)), None);
        }
    }

    #[test]
    fn a_missing_authorization_header() {
        let x = explain(&unauthorized(Some("none"), REQUIRED)).unwrap();
        assert_eq!(x.kind, "missing_authorization");
        assert!(x.summary.contains("no Authorization header"), "{}", x.summary);
    }

    #[test]
    fn schemes_other_than_bearer() {
        assert_eq!(kind(&unauthorized(Some("basic"), REQUIRED)), "basic_auth");
        assert_eq!(kind(&unauthorized(Some("bare"), REQUIRED)), "bearer_missing");
        assert_eq!(kind(&unauthorized(Some("other"), REQUIRED)), "unsupported_scheme");
        assert_eq!(kind(&unauthorized(Some("empty"), REQUIRED)), "empty_token");
        assert_eq!(kind(&unauthorized(Some("bearer_empty"), REQUIRED)), "empty_token");
        assert_eq!(kind(&unauthorized(Some("bearer_doubled"), INVALID)), "bearer_doubled");
        // Logged before the scheme was recorded: the detail still tells a missing bearer token.
        assert_eq!(kind(&unauthorized(None, REQUIRED)), "no_bearer_token");
    }

    #[test]
    fn the_fix_names_the_identity_providers_own_field() {
        let mut e = unauthorized(Some("basic"), REQUIRED);
        e.user_agent = Some("Okta SCIM Client 1.0.0".into());
        let x = explain(&e).unwrap();
        assert!(
            x.fix.contains("HTTP Header") && x.fix.contains("Basic Auth"),
            "{}",
            x.fix
        );
        let mut e = unauthorized(Some("bearer_doubled"), INVALID);
        e.user_agent = Some("Azure AD SCIM Client".into());
        let x = explain(&e).unwrap();
        assert!(x.summary.contains("Microsoft Entra ID"), "{}", x.summary);
        assert!(x.fix.contains("Secret Token"), "{}", x.fix);
    }

    #[test]
    fn unknown_revoked_or_foreign_tokens() {
        let x = explain(&unauthorized(Some("bearer"), INVALID)).unwrap();
        assert_eq!(x.kind, "invalid_token");
        assert!(x.summary.contains("rotation") && x.fix.contains("rotate"), "{x:?}");
        assert_eq!(kind(&unauthorized(None, INVALID)), "invalid_token");
        assert_eq!(kind(&unauthorized(Some("bearer_other"), INVALID)), "not_a_scim_token");
        assert_eq!(
            kind(&unauthorized(
                Some("bearer_api_key"),
                "operator API keys work only on the management API (/api/v1); SCIM requests need the connection's bearer token"
            )),
            "api_key_used"
        );
    }

    #[test]
    fn a_disabled_connection() {
        let e = unauthorized(
            Some("bearer"),
            "this SCIM connection is disabled; it accepts no requests until an operator enables it again",
        );
        let x = explain(&e).unwrap();
        assert_eq!(x.kind, "connection_disabled");
        assert!(x.fix.contains("enable"), "{}", x.fix);
    }

    #[test]
    fn wrong_base_urls() {
        let nf = |path: &str| with(entry("GET", path, 404), None, "no such endpoint");
        let doubled = explain(&nf("/scim/v2/{c}/scim/v2/Users?filter=userName+eq+%22a%22")).unwrap();
        assert_eq!(doubled.kind, "wrong_base_url");
        assert!(doubled.summary.contains("twice"), "{}", doubled.summary);
        assert!(doubled.fix.contains(&format!("/scim/v2/{CONN}")), "{}", doubled.fix);
        assert!(explain(&nf("/scim/v2/{c}/v2/Users")).unwrap().summary.contains("twice"));
        assert!(
            explain(&nf("/scim/v2/{c}//Users"))
                .unwrap()
                .summary
                .contains("trailing slash")
        );
        assert!(
            explain(&nf("/scim/v2/{c}/Users/Users"))
                .unwrap()
                .summary
                .contains("/Users at its end")
        );
        assert!(explain(&nf("/scim/v2/{c}/users")).unwrap().summary.contains("case"));
        assert!(
            explain(&nf("/scim/v2/{c}"))
                .unwrap()
                .summary
                .contains("base URL itself")
        );
        assert_eq!(kind(&nf("/scim/v2/{c}/Accounts")), "wrong_base_url");
        // A path outside /scim/v2/, or without a connection id.
        assert_eq!(kind(&nf("/v2/Users")), "wrong_base_url");
        assert!(
            explain(&nf("/scim/v2/Users"))
                .unwrap()
                .summary
                .contains("does not name a SCIM connection")
        );
    }

    #[test]
    fn a_missing_resource_is_not_a_wrong_base_url() {
        let e = with(
            entry("PATCH", "/scim/v2/{c}/Users/0190c7d2-0000-7000-8000-00000000abcd", 404),
            Some("notFound"),
            "User \"0190c7d2-0000-7000-8000-00000000abcd\" not found",
        );
        let x = explain(&e).unwrap();
        assert_eq!(x.kind, "resource_not_found");
        assert!(
            x.summary.contains("user 0190c7d2-0000-7000-8000-00000000abcd"),
            "{}",
            x.summary
        );
    }

    #[test]
    fn a_409_on_user_name_says_the_user_exists() {
        let mut e = with(
            entry("POST", "/scim/v2/{c}/Users", 409),
            Some("uniqueness"),
            "userName \"ada@example.com\" is already taken in this connection",
        );
        e.user_agent = Some("Azure AD SCIM Client".into());
        let x = explain(&e).unwrap();
        assert_eq!(x.kind, "uniqueness");
        assert!(
            x.summary.contains("\"ada@example.com\" already exists"),
            "{}",
            x.summary
        );
        assert!(x.fix.contains("matching attribute"), "{}", x.fix);
        let g = with(
            entry("POST", "/scim/v2/{c}/Groups", 409),
            Some("uniqueness"),
            "a group named \"Engineering\" already exists in this connection",
        );
        assert!(explain(&g).unwrap().summary.contains("group \"Engineering\""));
    }

    #[test]
    fn invalid_filters_show_the_filter() {
        let e = with(
            entry("GET", "/scim/v2/{c}/Users?filter=userName+eq+ada&count=1", 400),
            Some("invalidFilter"),
            "expected a value",
        );
        let x = explain(&e).unwrap();
        assert_eq!(x.kind, "invalid_filter");
        assert!(x.summary.contains("(filter=userName eq ada)"), "{}", x.summary);
        assert!(x.summary.contains("\"expected a value\""), "{}", x.summary);
    }

    #[test]
    fn scim_error_types() {
        let typed = |t: &str| with(entry("PATCH", "/scim/v2/{c}/Users/x", 400), Some(t), "d");
        assert_eq!(kind(&typed("invalidSyntax")), "invalid_syntax");
        assert_eq!(kind(&typed("invalidValue")), "invalid_value");
        assert_eq!(kind(&typed("invalidPath")), "invalid_path");
        assert_eq!(kind(&typed("noTarget")), "no_target");
        assert_eq!(kind(&typed("mutability")), "mutability");
        assert_eq!(kind(&typed("tooMany")), "too_many");
        assert_eq!(kind(&typed("invalidVers")), "invalid_version");
        assert_eq!(kind(&typed("invalidCursor")), "invalid_cursor");
        assert_eq!(kind(&typed("sensitive")), "sensitive");
        assert_eq!(
            kind(&with(entry("GET", "/scim/v2/{c}/Users", 400), None, "bad")),
            "bad_request"
        );
    }

    #[test]
    fn http_level_refusals() {
        let s = |method: &str, status: u16| with(entry(method, "/scim/v2/{c}/Users", status), None, "d");
        assert_eq!(kind(&s("POST", 413)), "too_large");
        assert_eq!(kind(&s("POST", 415)), "unsupported_media_type");
        assert_eq!(kind(&s("GET", 429)), "rate_limited");
        assert_eq!(kind(&s("POST", 408)), "request_timeout");
        assert_eq!(kind(&s("PUT", 412)), "precondition_failed");
        assert_eq!(kind(&s("GET", 418)), "other");
        let x = explain(&s("PATCH", 405)).unwrap();
        assert_eq!(x.kind, "method_not_allowed");
        assert!(x.summary.contains("PATCH"), "{}", x.summary);
    }

    #[test]
    fn server_errors_are_the_servers_fault() {
        let x = explain(&entry("POST", "/scim/v2/{c}/Users", 500)).unwrap();
        assert_eq!(x.kind, "server_error");
        assert!(x.summary.contains("retry") && x.fix.contains("req-1"), "{x:?}");
        assert_eq!(kind(&entry("POST", "/scim/v2/{c}/Users", 502)), "server_error");
        assert_eq!(kind(&entry("POST", "/scim/v2/{c}/Users", 503)), "unavailable");
    }

    #[test]
    fn long_details_are_cut() {
        let e = with(
            entry("POST", "/scim/v2/{c}/Users", 400),
            Some("invalidValue"),
            &"x".repeat(5000),
        );
        let x = explain(&e).unwrap();
        assert!(x.summary.len() < 1000 && x.summary.contains('…'), "{}", x.summary.len());
    }
}
