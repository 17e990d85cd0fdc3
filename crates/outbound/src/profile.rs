//! What each downstream target allows, as data: one row per vendor in [`PROFILES`], read by the
//! client (headers, rate limits, the ServiceProviderConfig path) and by the engine (filters,
//! paging, PATCH and member chunks, what to send on create, what DELETE and a 409 mean). No other
//! module asks "is this AWS?": it asks the profile.
//!
//! Every value below is from the vendor's documentation, cited beside it. Where a vendor publishes
//! no number (AWS's request rate, for one), the row says so and carries a conservative default
//! marked `documented: false`; operators can override a target's rate limit.
//!
//! | Profile | Filters | Paging | PATCH | Members per PATCH | Replace all members | Members read back | DELETE of a user | 409 on create |
//! |---|---|---|---|---|---|---|---|---|
//! | `generic` | from `/ServiceProviderConfig` | index | from SPC | no cap | yes | yes | permanent | exists |
//! | `aws-iam-identity-center` | `eq` (+`and`): userName, externalId | cursor, ≤100 | yes, no filtered paths for remove | ≤100 | no | no | permanent | exists |
//! | `github-emu` | `eq`: userName, externalId | index | yes, no filtered paths | — | yes | yes | permanent | exists |
//! | `github-organization` | `eq`: userName, externalId | index | yes, no filtered paths | — | — (no groups) | — | permanent | exists |
//! | `salesforce` | from its SPC (≤200 results) | index, ≤200 | yes | — | yes | yes | deactivates | exists, unless a missing profile entitlement |
//! | `slack` | `eq`: userName, email | index | yes | — | yes | yes | deactivates | exists |
//!
//! [`TargetProfile::from_service_provider_config`] builds the `generic` profile of a target from
//! the document its `/ServiceProviderConfig` answers (RFC 7643 §5).

use serde::Serialize;
use serde_json::Value;

/// The profile read from a target's `/ServiceProviderConfig`.
pub const GENERIC: &str = "generic";
/// AWS IAM Identity Center (formerly AWS SSO).
pub const AWS_IAM_IDENTITY_CENTER: &str = "aws-iam-identity-center";
/// GitHub Enterprise Cloud with Enterprise Managed Users.
pub const GITHUB_EMU: &str = "github-emu";
/// GitHub organization SCIM (an organization with SAML SSO, not EMU).
pub const GITHUB_ORGANIZATION: &str = "github-organization";
/// Salesforce.
pub const SALESFORCE: &str = "salesforce";
/// Slack (Enterprise Grid / Business+).
pub const SLACK: &str = "slack";

/// How a target authenticates requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AuthKind {
    /// `Authorization: Bearer <token>` with a long-lived token.
    Bearer,
    /// HTTP Basic.
    Basic,
    /// An access token from an OAuth 2.0 token endpoint (client credentials grant).
    OauthClientCredentials,
}

impl AuthKind {
    pub fn as_str(self) -> &'static str {
        match self {
            AuthKind::Bearer => "bearer",
            AuthKind::Basic => "basic",
            AuthKind::OauthClientCredentials => "oauth_client_credentials",
        }
    }
}

/// Which filter operators a target understands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FilterOperators {
    /// No filtering: lookups must page through everything.
    None,
    /// `attr eq "value"` only.
    EqOnly,
    /// The RFC 7644 §3.4.2.2 grammar.
    Full,
}

/// What a target's `filter` query parameter accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct FilterRules {
    pub operators: FilterOperators,
    /// Whether `and` may join two comparisons.
    pub and: bool,
    /// The user attributes a lookup may filter on (`None`: any attribute).
    pub user_attributes: Option<&'static [&'static str]>,
    /// The group attributes a lookup may filter on (`None`: any attribute).
    pub group_attributes: Option<&'static [&'static str]>,
}

impl FilterRules {
    /// Whether users can be looked up by `attr eq "..."` (case-insensitive attribute names).
    pub fn can_find_users_by(&self, attr: &str) -> bool {
        self.operators != FilterOperators::None
            && self
                .user_attributes
                .is_none_or(|list| list.iter().any(|a| a.eq_ignore_ascii_case(attr)))
    }

    /// Whether groups can be looked up by `attr eq "..."`.
    pub fn can_find_groups_by(&self, attr: &str) -> bool {
        self.operators != FilterOperators::None
            && self
                .group_attributes
                .is_none_or(|list| list.iter().any(|a| a.eq_ignore_ascii_case(attr)))
    }
}

/// How a list is read page by page.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Paging {
    /// `startIndex` and `count` (RFC 7644 §3.4.2.4). `max_page_size`: the largest `count` the
    /// target honours, when documented.
    Index { max_page_size: Option<u32> },
    /// `cursor` and `count` (RFC 9865; AWS's `nextCursor`).
    Cursor { max_page_size: Option<u32> },
}

impl Paging {
    /// The page size to ask for: the target's maximum, or `fallback` when none is documented.
    pub fn page_size(&self, fallback: u32) -> u32 {
        match *self {
            Paging::Index { max_page_size } | Paging::Cursor { max_page_size } => {
                max_page_size.map_or(fallback, |m| m.min(fallback.max(1)).max(1))
            }
        }
    }
}

/// What PATCH (RFC 7644 §3.5.2) a target accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct PatchRules {
    pub supported: bool,
    /// Whether paths with a value filter (`emails[type eq "work"].value`,
    /// `members[value eq "x"]`) are accepted.
    pub filtered_paths: bool,
    /// The most group member additions and removals one PATCH may carry (`None`: no documented
    /// cap).
    pub max_member_changes: Option<u32>,
    /// Whether one PATCH may replace, or remove, every member of a group at once.
    pub replace_all_members: bool,
}

/// `/Bulk` (RFC 7644 §3.7), when a target has it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct BulkLimits {
    pub max_operations: u32,
    pub max_payload_bytes: u64,
}

/// What a DELETE of a resource does at the target.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DeleteMeaning {
    /// The resource is gone for good.
    Permanent,
    /// The resource stays, deactivated (`active: false`); it can be reactivated.
    Deactivates,
    /// DELETE is not supported.
    Unsupported,
}

/// What `active: false` does to a user at the target.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DeactivateMeaning {
    /// The account is suspended and can be reactivated with `active: true`.
    Suspends,
    /// The user loses access and the target forgets the identity (GitHub organization SCIM:
    /// removed from the organization, its external identity deleted).
    RemovesAccess,
    /// `active` cannot be changed.
    Unsupported,
}

/// Users at a target.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct UserRules {
    /// Attributes (paths such as `name.givenName`) a create must carry.
    pub required_on_create: &'static [&'static str],
    /// Attributes a create must not carry.
    pub refused_on_create: &'static [&'static str],
    /// Attributes the target never accepts (left out of every create and update).
    pub unsupported: &'static [&'static str],
    /// Multi-valued attributes (`emails`, `phoneNumbers`, `addresses`, ...) carry one value only.
    pub one_value_per_multi_valued: bool,
    /// The one email must be marked `primary: true`.
    pub primary_email_required: bool,
    /// Attributes that must carry exactly one value on create (Salesforce: one profile
    /// entitlement).
    pub exactly_one: &'static [&'static str],
    /// What `DELETE /Users/{id}` does.
    pub delete: DeleteMeaning,
    /// What `active: false` does.
    pub deactivate: DeactivateMeaning,
}

/// Groups at a target.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct GroupRules {
    pub supported: bool,
    /// Whether `GET /Groups/{id}` (and list) returns `members`. When not, membership comes from
    /// Rollcall's own mapping table, never from a read-back.
    pub members_read_back: bool,
    /// Whether `members` may be sent on create (otherwise: create empty, then PATCH in chunks).
    pub members_on_create: bool,
    /// What `DELETE /Groups/{id}` does.
    pub delete: DeleteMeaning,
}

/// What a 409 answered to a create means.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ConflictRule {
    /// The resource exists: search for it and link, never create a second one.
    Exists,
    /// The resource exists, unless the error's `detail` contains one of these markers: then the
    /// request was invalid (Salesforce answers 409 for a missing profile entitlement).
    ExistsUnlessDetail { invalid_markers: &'static [&'static str] },
}

/// Which requests a rate-limit bucket counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct BucketScope {
    /// HTTP methods counted (empty: every method).
    pub methods: &'static [&'static str],
    /// The resource type (`Users`, `Groups`; `None`: every path).
    pub resource: Option<&'static str>,
    /// `Some(true)`: only requests to one resource (`/Users/{id}`); `Some(false)`: only requests
    /// to the collection (`/Users`); `None`: both.
    pub by_id: Option<bool>,
}

impl BucketScope {
    /// Every request.
    pub const ALL: BucketScope = BucketScope {
        methods: &[],
        resource: None,
        by_id: None,
    };

    /// Whether a request with `method` to `path` (relative to the base URL, such as
    /// `Users/abc` or `Groups`) counts against this bucket.
    pub fn matches(&self, method: &str, path: &str) -> bool {
        if !self.methods.is_empty() && !self.methods.iter().any(|m| m.eq_ignore_ascii_case(method)) {
            return false;
        }
        let path = path.trim_start_matches('/');
        let path = path.split(['?', '#']).next().unwrap_or("");
        let mut segments = path.split('/').filter(|s| !s.is_empty());
        let first = segments.next();
        if let Some(resource) = self.resource
            && !first.is_some_and(|f| f.eq_ignore_ascii_case(resource))
        {
            return false;
        }
        match self.by_id {
            None => true,
            Some(by_id) => segments.next().is_some() == by_id,
        }
    }
}

/// One token bucket: `requests` per `per_seconds`, bursts of up to `burst`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct RateBucket {
    pub scope: BucketScope,
    pub requests: u32,
    pub per_seconds: u32,
    pub burst: u32,
    /// Whether the vendor documents this limit (`false`: Rollcall's conservative default where
    /// the vendor publishes none).
    pub documented: bool,
}

impl RateBucket {
    /// Tokens added per second.
    pub fn rate_per_second(&self) -> f64 {
        f64::from(self.requests) / f64::from(self.per_seconds.max(1))
    }
}

/// A downstream target's rules. See the module documentation for the table.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TargetProfile {
    /// The profile's name as the API and CLI spell it (`aws-iam-identity-center`).
    pub id: &'static str,
    /// The product's name for people.
    pub title: &'static str,
    /// The vendor documentation each rule comes from.
    pub docs: &'static [&'static str],
    /// The shape of the base URL (`{placeholders}` for what the operator fills in).
    pub base_url: &'static str,
    /// The ServiceProviderConfig path under the base URL.
    pub service_provider_config_path: &'static str,
    /// The authentication the target accepts.
    pub auth: &'static [AuthKind],
    /// Headers sent with every request (beyond Authorization, Accept, Content-Type).
    pub headers: &'static [(&'static str, &'static str)],
    pub filter: FilterRules,
    pub paging: Paging,
    pub patch: PatchRules,
    pub bulk: Option<BulkLimits>,
    pub etag: bool,
    pub users: UserRules,
    pub groups: GroupRules,
    pub conflict_on_create: ConflictRule,
    /// Token buckets; a request waits for a token from every bucket whose scope it matches.
    pub rate_limits: &'static [RateBucket],
    /// What else an operator should know, in a sentence each.
    pub notes: &'static [&'static str],
}

/// The conservative default where nothing is documented: 10 requests a second, bursts of 20.
const DEFAULT_BUCKETS: &[RateBucket] = &[RateBucket {
    scope: BucketScope::ALL,
    requests: 10,
    per_seconds: 1,
    burst: 20,
    documented: false,
}];

const WRITES: &[&str] = &["POST", "PUT", "PATCH", "DELETE"];

/// Every profile, `generic` first. The `generic` row is the baseline that
/// [`TargetProfile::from_service_provider_config`] refines with what a target says of itself.
pub static PROFILES: &[TargetProfile] = &[
    // Any SCIM 2.0 server (RFC 7643, RFC 7644). Until its ServiceProviderConfig is read, assume
    // little: eq filters, no Bulk, PATCH per the RFC.
    TargetProfile {
        id: GENERIC,
        title: "Any SCIM 2.0 server",
        docs: &[
            "https://www.rfc-editor.org/rfc/rfc7643",
            "https://www.rfc-editor.org/rfc/rfc7644",
        ],
        base_url: "https://{host}/scim/v2/",
        service_provider_config_path: "ServiceProviderConfig",
        auth: &[AuthKind::Bearer, AuthKind::Basic, AuthKind::OauthClientCredentials],
        headers: &[],
        filter: FilterRules {
            operators: FilterOperators::EqOnly,
            and: false,
            user_attributes: None,
            group_attributes: None,
        },
        paging: Paging::Index { max_page_size: None },
        patch: PatchRules {
            supported: true,
            filtered_paths: true,
            max_member_changes: None,
            replace_all_members: true,
        },
        bulk: None,
        etag: false,
        users: UserRules {
            // RFC 7643 §4.1: userName is the one required user attribute.
            required_on_create: &["userName"],
            refused_on_create: &[],
            unsupported: &[],
            one_value_per_multi_valued: false,
            primary_email_required: false,
            exactly_one: &[],
            delete: DeleteMeaning::Permanent,
            deactivate: DeactivateMeaning::Suspends,
        },
        groups: GroupRules {
            supported: true,
            members_read_back: true,
            members_on_create: true,
            delete: DeleteMeaning::Permanent,
        },
        // RFC 7644 §3.3: 409 with scimType uniqueness when the resource exists.
        conflict_on_create: ConflictRule::Exists,
        rate_limits: DEFAULT_BUCKETS,
        notes: &["The rules are refined from the target's /ServiceProviderConfig when it is read."],
    },
    // AWS IAM Identity Center SCIM implementation developer guide:
    // - limitations.html: "Only eq with and is supported"; no /Bulk, /Me, /Search; "does not
    //   support multi-valued attributes in general for users"; PatchGroup has no "remove all" or
    //   "replace".
    // - createuser.html: givenName, familyName, userName and displayName required; one value per
    //   multi-valued attribute; the email marked primary; no `groups` on create; ims, photos,
    //   x509Certificates, entitlements and password not supported.
    // - patchgroup.html: "A maximum of 100 membership changes are allowed in a single request";
    //   replacing or removing all memberships answers 400 (ValidationException).
    // - getgroup.html / listgroups.html: "GetGroup and ListGroups return an empty member list";
    //   group filters on (displayName), (externalId), (id and members).
    // - listusers.html: at most 100 results a page, `cursor`/`nextCursor` paging (startIndex not
    //   supported); filters on (userName), (externalId), (groups.value), (id and manager).
    // - every operation: 429 ThrottlingException. AWS publishes no request rate for SCIM.
    TargetProfile {
        id: AWS_IAM_IDENTITY_CENTER,
        title: "AWS IAM Identity Center",
        docs: &[
            "https://docs.aws.amazon.com/singlesignon/latest/developerguide/limitations.html",
            "https://docs.aws.amazon.com/singlesignon/latest/developerguide/createuser.html",
            "https://docs.aws.amazon.com/singlesignon/latest/developerguide/patchuser.html",
            "https://docs.aws.amazon.com/singlesignon/latest/developerguide/patchgroup.html",
            "https://docs.aws.amazon.com/singlesignon/latest/developerguide/listusers.html",
            "https://docs.aws.amazon.com/singlesignon/latest/developerguide/getgroup.html",
        ],
        base_url: "https://scim.{region}.amazonaws.com/{tenant_id}/scim/v2/",
        service_provider_config_path: "ServiceProviderConfig",
        auth: &[AuthKind::Bearer],
        headers: &[],
        filter: FilterRules {
            operators: FilterOperators::EqOnly,
            and: true,
            user_attributes: Some(&["userName", "externalId", "groups.value", "id", "manager"]),
            group_attributes: Some(&["displayName", "externalId", "id", "members"]),
        },
        paging: Paging::Cursor {
            max_page_size: Some(100),
        },
        patch: PatchRules {
            supported: true,
            // patchuser.html: "Only the eq operator is supported in filters" of paths; a
            // member removal by `members[value eq "..."]` is the documented form.
            filtered_paths: true,
            max_member_changes: Some(100),
            replace_all_members: false,
        },
        bulk: None,
        etag: false,
        users: UserRules {
            required_on_create: &["userName", "displayName", "name.givenName", "name.familyName"],
            refused_on_create: &["groups"],
            unsupported: &["ims", "photos", "x509Certificates", "entitlements", "password"],
            one_value_per_multi_valued: true,
            primary_email_required: true,
            exactly_one: &[],
            delete: DeleteMeaning::Permanent,
            deactivate: DeactivateMeaning::Suspends,
        },
        groups: GroupRules {
            supported: true,
            members_read_back: false,
            // creategroup.html caps the members of a create; create empty and PATCH in chunks.
            members_on_create: false,
            delete: DeleteMeaning::Permanent,
        },
        conflict_on_create: ConflictRule::Exists,
        rate_limits: &[RateBucket {
            scope: BucketScope::ALL,
            requests: 10,
            per_seconds: 1,
            burst: 20,
            documented: false,
        }],
        notes: &[
            "GET never returns group members: membership is pushed from Rollcall's mapping table, never read back.",
            "PATCH of a user may not carry two operations on userName or active.",
            "AWS publishes no SCIM request rate; it answers 429 ThrottlingException when throttling.",
        ],
    },
    // GitHub Enterprise Managed Users (docs.github.com, enterprise-cloud):
    // - "Provisioning users and groups with SCIM using the REST API": a `User-Agent` header is
    //   required ("GitHub will reject requests without this header"); "do not assign more than
    //   1,000 users per hour"; soft deprovision (`active: false`) suspends and can be reversed,
    //   hard deprovision (DELETE) is irreversible.
    // - REST "SCIM" endpoints for enterprises: "Complex SCIM path selectors that include filters
    //   are not supported"; the list's `filter` takes one of `userName`, `externalId`, `id`,
    //   `displayName` with `eq` ("multiple filters are not supported").
    // - "Rate limits for the REST API": 5,000 requests an hour for a personal access token.
    TargetProfile {
        id: GITHUB_EMU,
        title: "GitHub Enterprise Managed Users",
        docs: &[
            "https://docs.github.com/en/enterprise-cloud@latest/admin/managing-iam/provisioning-user-accounts-with-scim/provisioning-users-and-groups-with-scim-using-the-rest-api",
            "https://docs.github.com/en/enterprise-cloud@latest/rest/enterprise-admin/scim",
            "https://docs.github.com/en/enterprise-cloud@latest/admin/managing-iam/provisioning-user-accounts-with-scim/deprovisioning-and-reinstating-users",
            "https://docs.github.com/en/rest/using-the-rest-api/rate-limits-for-the-rest-api",
        ],
        base_url: "https://api.github.com/scim/v2/enterprises/{enterprise}/",
        service_provider_config_path: "ServiceProviderConfig",
        auth: &[AuthKind::Bearer],
        headers: &[
            ("user-agent", concat!("Rollcall-Outbound/", env!("CARGO_PKG_VERSION"))),
            ("x-github-api-version", "2022-11-28"),
        ],
        filter: FilterRules {
            operators: FilterOperators::EqOnly,
            and: false,
            user_attributes: Some(&["userName", "externalId", "id", "displayName"]),
            group_attributes: Some(&["displayName", "externalId", "id"]),
        },
        paging: Paging::Index { max_page_size: None },
        patch: PatchRules {
            supported: true,
            filtered_paths: false,
            max_member_changes: None,
            replace_all_members: true,
        },
        bulk: None,
        etag: false,
        users: UserRules {
            required_on_create: &["userName", "externalId", "displayName", "emails", "active"],
            refused_on_create: &[],
            unsupported: &["password"],
            one_value_per_multi_valued: false,
            primary_email_required: false,
            exactly_one: &[],
            delete: DeleteMeaning::Permanent,
            deactivate: DeactivateMeaning::Suspends,
        },
        groups: GroupRules {
            supported: true,
            members_read_back: true,
            members_on_create: true,
            delete: DeleteMeaning::Permanent,
        },
        conflict_on_create: ConflictRule::Exists,
        rate_limits: &[
            // 1,000 users an hour (creates), as the provisioning guide asks.
            RateBucket {
                scope: BucketScope {
                    methods: &["POST"],
                    resource: Some("Users"),
                    by_id: Some(false),
                },
                requests: 1000,
                per_seconds: 3600,
                burst: 50,
                documented: true,
            },
            // The REST API's primary limit for a personal access token.
            RateBucket {
                scope: BucketScope::ALL,
                requests: 5000,
                per_seconds: 3600,
                burst: 100,
                documented: true,
            },
        ],
        notes: &[
            "Every request needs a User-Agent header.",
            "active: false suspends (reversible for the same externalId); DELETE is a permanent, irreversible hard deprovision.",
            "Roles (enterprise_owner, billing_manager, guest_collaborator, user) are sent as `roles`.",
        ],
    },
    // GitHub organization SCIM (REST "SCIM" endpoints under /scim/v2/organizations/{org}/):
    // for organizations with SAML SSO, not EMU. "Complicated SCIM path selectors that include
    // filters are not supported"; `active: false` with replace "removes the user from the
    // organization, deletes the external identity"; provisioning invites the user by email;
    // filters `userName`, `externalId`, `id`, `displayName` with `eq`; no Groups.
    TargetProfile {
        id: GITHUB_ORGANIZATION,
        title: "GitHub organization SCIM",
        docs: &[
            "https://docs.github.com/en/enterprise-cloud@latest/rest/scim/scim",
            "https://docs.github.com/en/rest/using-the-rest-api/rate-limits-for-the-rest-api",
        ],
        base_url: "https://api.github.com/scim/v2/organizations/{org}/",
        service_provider_config_path: "ServiceProviderConfig",
        auth: &[AuthKind::Bearer],
        headers: &[
            ("user-agent", concat!("Rollcall-Outbound/", env!("CARGO_PKG_VERSION"))),
            ("x-github-api-version", "2022-11-28"),
        ],
        filter: FilterRules {
            operators: FilterOperators::EqOnly,
            and: false,
            user_attributes: Some(&["userName", "externalId", "id", "displayName"]),
            group_attributes: Some(&[]),
        },
        paging: Paging::Index { max_page_size: None },
        patch: PatchRules {
            supported: true,
            filtered_paths: false,
            max_member_changes: None,
            replace_all_members: false,
        },
        bulk: None,
        etag: false,
        users: UserRules {
            required_on_create: &["userName", "name.givenName", "name.familyName", "emails"],
            refused_on_create: &[],
            unsupported: &["password"],
            one_value_per_multi_valued: false,
            primary_email_required: false,
            exactly_one: &[],
            delete: DeleteMeaning::Permanent,
            deactivate: DeactivateMeaning::RemovesAccess,
        },
        groups: GroupRules {
            supported: false,
            members_read_back: false,
            members_on_create: false,
            delete: DeleteMeaning::Unsupported,
        },
        conflict_on_create: ConflictRule::Exists,
        rate_limits: &[RateBucket {
            scope: BucketScope::ALL,
            requests: 5000,
            per_seconds: 3600,
            burst: 100,
            documented: true,
        }],
        notes: &[
            "Every request needs a User-Agent header.",
            "Provisioning invites the user to the organization by email.",
            "active: false removes the user from the organization and deletes the external identity.",
            "No Groups endpoint: team membership is not pushed.",
        ],
    },
    // Salesforce (help.salesforce.com, "Manage Salesforce User Identities with SCIM"):
    // - "Understand the SCIM Implementation": capabilities at /ServiceProviderConfigs (plural);
    //   its ServiceProviderConfig: patch supported, bulk not supported, filter supported with
    //   maxResults 200, sort and etag not supported, OAuth 2.0 only.
    // - a user needs exactly one entitlement that is a profile; without one Salesforce answers
    //   409 with "REQUIRED_FIELD_MISSING:user_must_have_one_entitlement_which_must_be_a_profileid".
    // - "Examples: Deactivate and Reactivate Users with SCIM": users are deactivated, not
    //   deleted.
    // - usernames are unique across every Salesforce org, so a 409 for a userName may name a user
    //   the search cannot find (another org's).
    // - API requests count against the org's 24-hour allocation, set by edition and licences; no
    //   per-second rate is published.
    TargetProfile {
        id: SALESFORCE,
        title: "Salesforce",
        docs: &[
            "https://help.salesforce.com/s/articleView?id=xcloud.identity_scim_overview.htm&type=5",
            "https://help.salesforce.com/s/articleView?id=xcloud.identity_scim_implementation.htm&type=5",
            "https://help.salesforce.com/s/articleView?id=xcloud.identity_scim_rest_api.htm&type=5",
            "https://help.salesforce.com/s/articleView?id=xcloud.identity_scim_deactivate_reactivate_user.htm&type=5",
            "https://developer.salesforce.com/docs/atlas.en-us.salesforce_app_limits_cheatsheet.meta/salesforce_app_limits_cheatsheet/salesforce_app_limits_platform_api.htm",
        ],
        base_url: "https://{my_domain}.my.salesforce.com/services/scim/v2/",
        service_provider_config_path: "ServiceProviderConfigs",
        auth: &[AuthKind::OauthClientCredentials, AuthKind::Bearer],
        headers: &[],
        filter: FilterRules {
            operators: FilterOperators::Full,
            and: true,
            user_attributes: None,
            group_attributes: None,
        },
        paging: Paging::Index {
            max_page_size: Some(200),
        },
        patch: PatchRules {
            supported: true,
            filtered_paths: true,
            max_member_changes: None,
            replace_all_members: true,
        },
        bulk: None,
        etag: false,
        users: UserRules {
            required_on_create: &["userName", "name.familyName", "emails", "entitlements"],
            refused_on_create: &[],
            unsupported: &[],
            one_value_per_multi_valued: false,
            primary_email_required: false,
            exactly_one: &["entitlements"],
            delete: DeleteMeaning::Deactivates,
            deactivate: DeactivateMeaning::Suspends,
        },
        groups: GroupRules {
            supported: true,
            members_read_back: true,
            members_on_create: true,
            delete: DeleteMeaning::Permanent,
        },
        conflict_on_create: ConflictRule::ExistsUnlessDetail {
            invalid_markers: &["REQUIRED_FIELD_MISSING", "user_must_have_one_entitlement"],
        },
        rate_limits: &[RateBucket {
            scope: BucketScope::ALL,
            requests: 10,
            per_seconds: 1,
            burst: 20,
            documented: false,
        }],
        notes: &[
            "Every user needs exactly one profile entitlement (entitlements[].value: a profile id).",
            "DELETE only deactivates; users are never removed.",
            "Usernames are unique across all of Salesforce: a 409 may name another org's user.",
            "API calls count against the org's 24-hour allocation (by edition and licences).",
        ],
    },
    // Slack SCIM API (docs.slack.dev/reference/scim-api):
    // - "SCIM API reference": v2 at https://api.slack.com/scim/v2/; `DELETE /Users/<id>` "sets a
    //   Slack user to deactivated"; `DELETE /Groups/<id>` permanently removes the group.
    // - "SCIM API rate limits": per organisation, across all SCIM apps: writes (POST, PUT, PATCH,
    //   DELETE) 600 a minute with bursts of 180; reads 1,000 a minute (bursts 1,000); per
    //   endpoint: GET /Users/<id> 300 a minute (bursts 300); POST /Users, PUT or PATCH
    //   /Users/<id>, DELETE /Users/<id> 180 a minute each (bursts 20). A 429 carries Retry-After.
    // - Filters: Slack's documentation and SDK examples filter users with `userName eq`; nothing
    //   more is documented, so the profile assumes `eq` alone, on userName and email.
    TargetProfile {
        id: SLACK,
        title: "Slack",
        docs: &[
            "https://docs.slack.dev/reference/scim-api",
            "https://docs.slack.dev/reference/scim-api/rate-limits",
        ],
        base_url: "https://api.slack.com/scim/v2/",
        service_provider_config_path: "ServiceProviderConfig",
        auth: &[AuthKind::Bearer],
        headers: &[],
        filter: FilterRules {
            operators: FilterOperators::EqOnly,
            and: false,
            user_attributes: Some(&["userName", "email", "emails", "externalId"]),
            group_attributes: Some(&["displayName"]),
        },
        paging: Paging::Index { max_page_size: None },
        patch: PatchRules {
            supported: true,
            filtered_paths: true,
            max_member_changes: None,
            replace_all_members: true,
        },
        bulk: None,
        etag: false,
        users: UserRules {
            required_on_create: &["userName", "emails"],
            refused_on_create: &[],
            unsupported: &[],
            one_value_per_multi_valued: false,
            primary_email_required: false,
            exactly_one: &[],
            delete: DeleteMeaning::Deactivates,
            deactivate: DeactivateMeaning::Suspends,
        },
        groups: GroupRules {
            supported: true,
            members_read_back: true,
            members_on_create: true,
            delete: DeleteMeaning::Permanent,
        },
        conflict_on_create: ConflictRule::Exists,
        rate_limits: &[
            RateBucket {
                scope: BucketScope {
                    methods: WRITES,
                    resource: None,
                    by_id: None,
                },
                requests: 600,
                per_seconds: 60,
                burst: 180,
                documented: true,
            },
            RateBucket {
                scope: BucketScope {
                    methods: &["GET"],
                    resource: None,
                    by_id: None,
                },
                requests: 1000,
                per_seconds: 60,
                burst: 1000,
                documented: true,
            },
            RateBucket {
                scope: BucketScope {
                    methods: &["GET"],
                    resource: Some("Users"),
                    by_id: Some(true),
                },
                requests: 300,
                per_seconds: 60,
                burst: 300,
                documented: true,
            },
            RateBucket {
                scope: BucketScope {
                    methods: &["POST"],
                    resource: Some("Users"),
                    by_id: Some(false),
                },
                requests: 180,
                per_seconds: 60,
                burst: 20,
                documented: true,
            },
            RateBucket {
                scope: BucketScope {
                    methods: &["PUT", "PATCH", "DELETE"],
                    resource: Some("Users"),
                    by_id: Some(true),
                },
                requests: 180,
                per_seconds: 60,
                burst: 20,
                documented: true,
            },
        ],
        notes: &[
            "Rate limits apply to every SCIM app of the organisation together, not per app.",
            "DELETE of a user deactivates it; DELETE of a group removes it for good.",
        ],
    },
];

/// The profile named `id`.
pub fn profile(id: &str) -> Option<&'static TargetProfile> {
    PROFILES.iter().find(|p| p.id == id)
}

/// The names of every profile, `generic` first.
pub fn profile_ids() -> impl Iterator<Item = &'static str> {
    PROFILES.iter().map(|p| p.id)
}

/// The generic baseline row.
pub fn generic() -> &'static TargetProfile {
    &PROFILES[0]
}

/// Why a ServiceProviderConfig document could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the ServiceProviderConfig is not usable: {0}")]
pub struct SpcError(pub String);

impl TargetProfile {
    /// The `generic` profile of a target, from the ServiceProviderConfig document it serves
    /// (RFC 7643 §5): PATCH, Bulk (with its limits), filtering (with `maxResults` as the page
    /// size), ETags and the authentication schemes it lists. What the document does not say stays
    /// as the generic baseline.
    pub fn from_service_provider_config(spc: &Value) -> Result<TargetProfile, SpcError> {
        let mut p = generic().clone();
        p.apply_service_provider_config(spc)?;
        Ok(p)
    }

    /// Refines this profile with a ServiceProviderConfig document (see
    /// [`TargetProfile::from_service_provider_config`]).
    pub fn apply_service_provider_config(&mut self, spc: &Value) -> Result<(), SpcError> {
        let obj = spc
            .as_object()
            .ok_or_else(|| SpcError("the document is not a JSON object".into()))?;
        let schemas_ok = obj.get("schemas").and_then(Value::as_array).is_none_or(|s| {
            s.iter().any(|u| {
                u.as_str().is_some_and(|u| {
                    u.eq_ignore_ascii_case("urn:ietf:params:scim:schemas:core:2.0:ServiceProviderConfig")
                })
            })
        });
        if !schemas_ok {
            return Err(SpcError(
                "its schemas do not include urn:ietf:params:scim:schemas:core:2.0:ServiceProviderConfig".into(),
            ));
        }
        let section = |name: &str| obj.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v);
        let field = |v: &Value, name: &str| -> Option<Value> {
            v.as_object()?
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.clone())
        };
        let supported = |name: &str| -> Option<bool> {
            section(name)
                .and_then(|s| field(s, "supported"))
                .and_then(|v| lenient_bool(&v))
        };
        let number =
            |v: &Value| -> Option<u64> { v.as_u64().or_else(|| v.as_str().and_then(|s| s.trim().parse().ok())) };

        if let Some(patch) = supported("patch") {
            self.patch.supported = patch;
        }
        if let Some(bulk) = section("bulk") {
            let on = field(bulk, "supported").and_then(|v| lenient_bool(&v)).unwrap_or(false);
            let ops = field(bulk, "maxOperations").and_then(|v| number(&v)).unwrap_or(0);
            let payload = field(bulk, "maxPayloadSize").and_then(|v| number(&v)).unwrap_or(0);
            self.bulk = (on && ops > 0).then(|| BulkLimits {
                max_operations: u32::try_from(ops).unwrap_or(u32::MAX),
                max_payload_bytes: payload,
            });
        }
        if let Some(filter) = section("filter") {
            let on = field(filter, "supported").and_then(|v| lenient_bool(&v));
            match on {
                Some(true) => {
                    self.filter.operators = FilterOperators::Full;
                    self.filter.and = true;
                }
                Some(false) => {
                    self.filter.operators = FilterOperators::None;
                    self.filter.and = false;
                }
                None => {}
            }
            if let Some(max) = field(filter, "maxResults").and_then(|v| number(&v))
                && max > 0
            {
                self.paging = Paging::Index {
                    max_page_size: Some(u32::try_from(max).unwrap_or(u32::MAX)),
                };
            }
        }
        if let Some(etag) = supported("etag") {
            self.etag = etag;
        }
        if let Some(schemes) = section("authenticationSchemes").and_then(Value::as_array)
            && !schemes.is_empty()
        {
            let mut kinds: Vec<AuthKind> = Vec::new();
            for s in schemes {
                let t = field(s, "type").and_then(|v| v.as_str().map(str::to_ascii_lowercase));
                let kind = match t.as_deref() {
                    Some("oauthbearertoken") | Some("oauth2") | Some("oauth") => {
                        // A bearer token, whoever issued it; a token endpoint is the operator's
                        // choice.
                        [Some(AuthKind::Bearer), Some(AuthKind::OauthClientCredentials)]
                    }
                    Some("httpbasic") => [Some(AuthKind::Basic), None],
                    _ => [None, None],
                };
                for k in kind.into_iter().flatten() {
                    if !kinds.contains(&k) {
                        kinds.push(k);
                    }
                }
            }
            if !kinds.is_empty() {
                self.auth = auth_list(&kinds);
            }
        }
        Ok(())
    }

    /// Whether a 409 answered to a create, with this `detail`, means the resource exists (search
    /// and link) rather than that the request was invalid.
    pub fn conflict_means_exists(&self, detail: Option<&str>) -> bool {
        match self.conflict_on_create {
            ConflictRule::Exists => true,
            ConflictRule::ExistsUnlessDetail { invalid_markers } => {
                let detail = detail.unwrap_or("");
                !invalid_markers
                    .iter()
                    .any(|m| detail.to_ascii_lowercase().contains(&m.to_ascii_lowercase()))
            }
        }
    }

    /// Whether the profile accepts `kind` of authentication.
    pub fn accepts_auth(&self, kind: AuthKind) -> bool {
        self.auth.contains(&kind)
    }

    /// The member changes to put in one PATCH: the target's cap, or `fallback`.
    pub fn member_changes_per_patch(&self, fallback: u32) -> u32 {
        self.patch
            .max_member_changes
            .map_or(fallback, |m| m.min(fallback))
            .max(1)
    }
}

/// The auth-kind lists a ServiceProviderConfig can produce, as static slices (there are few).
fn auth_list(kinds: &[AuthKind]) -> &'static [AuthKind] {
    const ALL: &[&[AuthKind]] = &[
        &[AuthKind::Bearer],
        &[AuthKind::Basic],
        &[AuthKind::OauthClientCredentials],
        &[AuthKind::Bearer, AuthKind::OauthClientCredentials],
        &[AuthKind::Bearer, AuthKind::Basic],
        &[AuthKind::Basic, AuthKind::Bearer],
        &[AuthKind::Bearer, AuthKind::OauthClientCredentials, AuthKind::Basic],
        &[AuthKind::Basic, AuthKind::Bearer, AuthKind::OauthClientCredentials],
    ];
    ALL.iter()
        .find(|a| a.len() == kinds.len() && kinds.iter().all(|k| a.contains(k)))
        .copied()
        .unwrap_or(generic().auth)
}

/// `true`/`false`, also as the strings some servers send (`"True"`).
fn lenient_bool(v: &Value) -> Option<bool> {
    match v {
        Value::Bool(b) => Some(*b),
        Value::String(s) if s.eq_ignore_ascii_case("true") => Some(true),
        Value::String(s) if s.eq_ignore_ascii_case("false") => Some(false),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn every_profile_is_named_once_and_generic_comes_first() {
        let ids: Vec<_> = profile_ids().collect();
        assert_eq!(ids[0], GENERIC);
        for id in [
            GENERIC,
            AWS_IAM_IDENTITY_CENTER,
            GITHUB_EMU,
            GITHUB_ORGANIZATION,
            SALESFORCE,
            SLACK,
        ] {
            assert_eq!(ids.iter().filter(|i| **i == id).count(), 1, "{id}");
            assert_eq!(profile(id).unwrap().id, id);
        }
        assert!(profile("okta").is_none());
    }

    #[test]
    fn every_profile_cites_its_documentation_and_has_a_rate_limit() {
        for p in PROFILES {
            assert!(!p.docs.is_empty(), "{}", p.id);
            assert!(p.docs.iter().all(|d| d.starts_with("https://")), "{}", p.id);
            assert!(!p.rate_limits.is_empty(), "{}", p.id);
            assert!(p.rate_limits.iter().all(|b| b.requests > 0 && b.burst > 0), "{}", p.id);
            assert!(!p.auth.is_empty(), "{}", p.id);
            assert!(
                p.base_url.starts_with("https://") && p.base_url.ends_with('/'),
                "{}",
                p.id
            );
        }
    }

    #[test]
    fn aws_rules_are_the_documented_ones() {
        let p = profile(AWS_IAM_IDENTITY_CENTER).unwrap();
        assert_eq!(p.filter.operators, FilterOperators::EqOnly);
        assert!(p.filter.and);
        assert!(p.filter.can_find_users_by("externalId"));
        assert!(p.filter.can_find_users_by("username"));
        assert!(!p.filter.can_find_users_by("emails.value"));
        assert_eq!(p.patch.max_member_changes, Some(100));
        assert!(!p.patch.replace_all_members);
        assert!(!p.groups.members_read_back);
        assert!(p.users.one_value_per_multi_valued);
        assert!(p.users.primary_email_required);
        assert!(p.users.required_on_create.contains(&"name.givenName"));
        assert!(p.users.refused_on_create.contains(&"groups"));
        assert!(p.bulk.is_none());
        assert_eq!(p.member_changes_per_patch(1000), 100);
        assert_eq!(p.member_changes_per_patch(20), 20);
        assert_eq!(p.paging.page_size(500), 100);
    }

    #[test]
    fn salesforce_409_for_a_missing_profile_is_invalid_not_exists() {
        let p = profile(SALESFORCE).unwrap();
        assert_eq!(p.service_provider_config_path, "ServiceProviderConfigs");
        assert!(!p.conflict_means_exists(Some(
            "REQUIRED_FIELD_MISSING:user_must_have_one_entitlement_which_must_be_a_profileid;"
        )));
        assert!(p.conflict_means_exists(Some("DUPLICATE_USERNAME: duplicate value found")));
        assert!(p.conflict_means_exists(None));
        assert_eq!(p.users.delete, DeleteMeaning::Deactivates);
        assert!(
            profile(GENERIC)
                .unwrap()
                .conflict_means_exists(Some("REQUIRED_FIELD_MISSING"))
        );
    }

    #[test]
    fn github_needs_a_user_agent_and_refuses_filtered_paths() {
        for id in [GITHUB_EMU, GITHUB_ORGANIZATION] {
            let p = profile(id).unwrap();
            assert!(p.headers.iter().any(|(n, v)| *n == "user-agent" && !v.is_empty()));
            assert!(!p.patch.filtered_paths);
            assert_eq!(p.users.delete, DeleteMeaning::Permanent);
        }
        assert!(!profile(GITHUB_ORGANIZATION).unwrap().groups.supported);
        assert_eq!(
            profile(GITHUB_ORGANIZATION).unwrap().users.deactivate,
            DeactivateMeaning::RemovesAccess
        );
    }

    #[test]
    fn bucket_scopes_match_methods_resources_and_ids() {
        let p = profile(SLACK).unwrap();
        let counted = |m: &str, path: &str| p.rate_limits.iter().filter(|b| b.scope.matches(m, path)).count();
        // writes + create-user
        assert_eq!(counted("POST", "Users"), 2);
        // writes + update-user
        assert_eq!(counted("PATCH", "Users/U123"), 2);
        // writes only
        assert_eq!(counted("PATCH", "Groups/G1"), 1);
        // reads + get-user
        assert_eq!(counted("GET", "/Users/U123?attributes=id"), 2);
        // reads only (a list)
        assert_eq!(counted("GET", "Users?filter=x"), 1);
        assert!(BucketScope::ALL.matches("GET", "ServiceProviderConfig"));
        assert!((p.rate_limits[0].rate_per_second() - 10.0).abs() < 1e-9);
    }

    #[test]
    fn generic_profile_follows_the_service_provider_config() {
        let spc = json!({
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:ServiceProviderConfig"],
            "patch": {"supported": true},
            "bulk": {"supported": true, "maxOperations": 1000, "maxPayloadSize": 1048576},
            "filter": {"supported": true, "maxResults": 200},
            "changePassword": {"supported": false},
            "sort": {"supported": false},
            "etag": {"supported": "True"},
            "authenticationSchemes": [{"type": "oauthbearertoken", "name": "OAuth Bearer Token"}]
        });
        let p = TargetProfile::from_service_provider_config(&spc).unwrap();
        assert_eq!(p.id, GENERIC);
        assert!(p.patch.supported);
        assert_eq!(
            p.bulk,
            Some(BulkLimits {
                max_operations: 1000,
                max_payload_bytes: 1_048_576
            })
        );
        assert_eq!(p.filter.operators, FilterOperators::Full);
        assert_eq!(
            p.paging,
            Paging::Index {
                max_page_size: Some(200)
            }
        );
        assert!(p.etag);
        assert!(p.accepts_auth(AuthKind::Bearer));
        assert!(p.accepts_auth(AuthKind::OauthClientCredentials));
        assert!(!p.accepts_auth(AuthKind::Basic));

        let bare = json!({
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:ServiceProviderConfig"],
            "patch": {"supported": false},
            "bulk": {"supported": false, "maxOperations": 0, "maxPayloadSize": 0},
            "filter": {"supported": false, "maxResults": 0},
            "authenticationSchemes": [{"type": "httpbasic"}]
        });
        let p = TargetProfile::from_service_provider_config(&bare).unwrap();
        assert!(!p.patch.supported);
        assert!(p.bulk.is_none());
        assert_eq!(p.filter.operators, FilterOperators::None);
        assert!(!p.filter.can_find_users_by("userName"));
        assert_eq!(p.auth, &[AuthKind::Basic]);
    }

    #[test]
    fn a_document_that_is_not_a_service_provider_config_is_refused() {
        assert!(TargetProfile::from_service_provider_config(&json!([])).is_err());
        assert!(
            TargetProfile::from_service_provider_config(&json!({
                "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"]
            }))
            .is_err()
        );
        // No `schemas` at all (seen in the wild): read what is there.
        let p = TargetProfile::from_service_provider_config(&json!({"patch": {"supported": false}})).unwrap();
        assert!(!p.patch.supported);
    }
}
