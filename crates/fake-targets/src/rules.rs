//! What each fake enforces, as one table: the vendor's documented rules, read from the same
//! documentation as the outbound profiles but written down separately (a test of the client
//! against a fake then checks one reading against the other).

/// The vendors faked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Vendor {
    /// A plain SCIM 2.0 server (RFC 7644).
    Generic,
    /// AWS IAM Identity Center.
    AwsIamIdentityCenter,
    /// GitHub Enterprise Managed Users.
    GithubEmu,
    /// GitHub organization SCIM.
    GithubOrganization,
    /// Salesforce.
    Salesforce,
    /// Slack.
    Slack,
}

impl Vendor {
    pub const ALL: [Vendor; 6] = [
        Vendor::Generic,
        Vendor::AwsIamIdentityCenter,
        Vendor::GithubEmu,
        Vendor::GithubOrganization,
        Vendor::Salesforce,
        Vendor::Slack,
    ];

    /// The outbound profile of the same vendor (`aws-iam-identity-center`).
    pub fn profile_id(self) -> &'static str {
        self.rules().profile_id
    }

    pub fn rules(self) -> &'static Rules {
        match self {
            Vendor::Generic => &GENERIC,
            Vendor::AwsIamIdentityCenter => &AWS,
            Vendor::GithubEmu => &GITHUB_EMU,
            Vendor::GithubOrganization => &GITHUB_ORG,
            Vendor::Salesforce => &SALESFORCE,
            Vendor::Slack => &SLACK,
        }
    }
}

/// How lists are paged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PageStyle {
    /// `startIndex`/`count`; a larger `count` is cut to `max`.
    Index { max: usize },
    /// AWS: `cursor`/`count` (`startIndex` ignored); a `count` above `max` is a 400.
    Cursor { max: usize },
}

/// A rate limit the fake enforces with a 429 and `Retry-After`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Limit {
    /// Methods counted (empty: all).
    pub methods: &'static [&'static str],
    /// `Users` or `Groups` (`None`: all paths).
    pub resource: Option<&'static str>,
    /// `Some(true)`: `/Users/{id}` only; `Some(false)`: `/Users` only.
    pub by_id: Option<bool>,
    pub per_minute: u32,
    pub burst: u32,
}

/// One vendor's rules.
#[derive(Debug, Clone, PartialEq)]
pub struct Rules {
    pub profile_id: &'static str,
    /// The SCIM base path (`/scim/v2/`).
    pub base_path: &'static str,
    /// The ServiceProviderConfig resource under the base path.
    pub spc_path: &'static str,
    /// Only `eq` comparisons.
    pub filter_eq_only: bool,
    /// Comparisons may be joined with `and`.
    pub filter_and: bool,
    /// User attributes a filter may name (`None`: any).
    pub user_filter_attrs: Option<&'static [&'static str]>,
    /// Group attributes a filter may name (`None`: any).
    pub group_filter_attrs: Option<&'static [&'static str]>,
    pub paging: PageStyle,
    /// PATCH paths with a value filter (`members[value eq "x"]`) accepted.
    pub filtered_patch_paths: bool,
    /// Most member additions plus removals in one PATCH (or members in one create).
    pub max_member_changes: Option<usize>,
    /// A PATCH may replace, or remove, all members at once.
    pub replace_all_members: bool,
    /// Groups read back with their members.
    pub members_in_get: bool,
    /// Groups exist.
    pub groups: bool,
    /// One value per multi-valued user attribute.
    pub one_value_multi: bool,
    /// The email must be marked primary.
    pub primary_email_required: bool,
    /// Attributes (dotted paths) a create must carry.
    pub required_on_create: &'static [&'static str],
    /// Attributes a create must not carry.
    pub refused_on_create: &'static [&'static str],
    /// Salesforce: exactly one entitlement, a profile id (`00e...`); otherwise a 409.
    pub profile_entitlement_required: bool,
    /// DELETE of a user only sets `active: false`.
    pub delete_deactivates: bool,
    /// `active: false` deletes the user (GitHub organization: removed, identity deleted).
    pub inactive_removes: bool,
    /// Two PATCH operations on `userName` or `active` in one request are refused (AWS).
    pub one_op_on_username_and_active: bool,
    /// A request without `User-Agent` is refused with 403 (GitHub).
    pub user_agent_required: bool,
    /// Requests need a token from the OAuth token endpoint (Salesforce).
    pub oauth: bool,
    /// Rate limits always enforced (Slack's documented ones).
    pub limits: &'static [Limit],
    /// The `detail` of a 409 for a taken userName.
    pub duplicate_detail: &'static str,
    /// The prefix of user ids.
    pub user_id_prefix: &'static str,
}

const BASE: Rules = Rules {
    profile_id: "generic",
    base_path: "/scim/v2/",
    spc_path: "ServiceProviderConfig",
    filter_eq_only: false,
    filter_and: true,
    user_filter_attrs: None,
    group_filter_attrs: None,
    paging: PageStyle::Index { max: 1000 },
    filtered_patch_paths: true,
    max_member_changes: None,
    replace_all_members: true,
    members_in_get: true,
    groups: true,
    one_value_multi: false,
    primary_email_required: false,
    required_on_create: &["userName"],
    refused_on_create: &[],
    profile_entitlement_required: false,
    delete_deactivates: false,
    inactive_removes: false,
    one_op_on_username_and_active: false,
    user_agent_required: false,
    oauth: false,
    limits: &[],
    duplicate_detail: "userName is already taken",
    user_id_prefix: "u-",
};

pub static GENERIC: Rules = BASE;

/// AWS IAM Identity Center SCIM implementation developer guide: limitations, CreateUser,
/// PatchUser, PatchGroup, GetGroup, ListGroups, ListUsers.
pub static AWS: Rules = Rules {
    profile_id: "aws-iam-identity-center",
    base_path: "/tenant-1234/scim/v2/",
    filter_eq_only: true,
    filter_and: true,
    user_filter_attrs: Some(&["userName", "externalId", "groups.value", "id", "manager"]),
    group_filter_attrs: Some(&["displayName", "externalId", "id", "members", "member"]),
    paging: PageStyle::Cursor { max: 100 },
    filtered_patch_paths: true,
    max_member_changes: Some(100),
    replace_all_members: false,
    members_in_get: false,
    one_value_multi: true,
    primary_email_required: true,
    required_on_create: &["userName", "displayName", "name.givenName", "name.familyName"],
    refused_on_create: &["groups"],
    one_op_on_username_and_active: true,
    duplicate_detail: "Duplicate userName",
    user_id_prefix: "9067729b3d-",
    ..BASE
};

/// GitHub EMU: User-Agent required; no filtered PATCH paths; eq filters; DELETE permanent.
pub static GITHUB_EMU: Rules = Rules {
    profile_id: "github-emu",
    base_path: "/scim/v2/enterprises/acme/",
    filter_eq_only: true,
    filter_and: false,
    user_filter_attrs: Some(&["userName", "externalId", "id", "displayName"]),
    group_filter_attrs: Some(&["displayName", "externalId", "id"]),
    filtered_patch_paths: false,
    required_on_create: &["userName", "externalId", "displayName", "emails", "active"],
    user_agent_required: true,
    duplicate_detail: "User already exists",
    user_id_prefix: "7fce0092-",
    ..BASE
};

/// GitHub organization SCIM: as EMU, no Groups, `active: false` removes the identity.
pub static GITHUB_ORG: Rules = Rules {
    profile_id: "github-organization",
    base_path: "/scim/v2/organizations/acme/",
    groups: false,
    group_filter_attrs: Some(&[]),
    required_on_create: &["userName", "name.givenName", "name.familyName", "emails"],
    inactive_removes: true,
    ..GITHUB_EMU
};

/// Salesforce: /ServiceProviderConfigs; OAuth; one profile entitlement (409 otherwise); DELETE
/// deactivates; 200 results a page.
pub static SALESFORCE: Rules = Rules {
    profile_id: "salesforce",
    base_path: "/services/scim/v2/",
    spc_path: "ServiceProviderConfigs",
    paging: PageStyle::Index { max: 200 },
    required_on_create: &["userName", "name.familyName", "emails"],
    profile_entitlement_required: true,
    delete_deactivates: true,
    oauth: true,
    duplicate_detail: "DUPLICATE_USERNAME: Duplicate Username. The username already exists in this or another Salesforce organization.",
    user_id_prefix: "0055g00000",
    ..BASE
};

/// Slack: its documented per-organisation limits; DELETE of a user deactivates it.
pub static SLACK: Rules = Rules {
    profile_id: "slack",
    base_path: "/scim/v2/",
    filter_eq_only: true,
    filter_and: false,
    user_filter_attrs: Some(&["userName", "email", "emails", "externalId"]),
    group_filter_attrs: Some(&["displayName"]),
    required_on_create: &["userName", "emails"],
    delete_deactivates: true,
    limits: &[
        Limit {
            methods: &["POST", "PUT", "PATCH", "DELETE"],
            resource: None,
            by_id: None,
            per_minute: 600,
            burst: 180,
        },
        Limit {
            methods: &["GET"],
            resource: None,
            by_id: None,
            per_minute: 1000,
            burst: 1000,
        },
        Limit {
            methods: &["GET"],
            resource: Some("Users"),
            by_id: Some(true),
            per_minute: 300,
            burst: 300,
        },
        Limit {
            methods: &["POST"],
            resource: Some("Users"),
            by_id: Some(false),
            per_minute: 180,
            burst: 20,
        },
        Limit {
            methods: &["PUT", "PATCH", "DELETE"],
            resource: Some("Users"),
            by_id: Some(true),
            per_minute: 180,
            burst: 20,
        },
    ],
    duplicate_detail: "username_taken",
    user_id_prefix: "U0",
    ..BASE
};

impl Limit {
    pub(crate) fn matches(&self, method: &str, resource: Option<&str>, by_id: bool) -> bool {
        (self.methods.is_empty() || self.methods.iter().any(|m| m.eq_ignore_ascii_case(method)))
            && self
                .resource
                .is_none_or(|r| resource.is_some_and(|x| x.eq_ignore_ascii_case(r)))
            && self.by_id.is_none_or(|b| b == by_id)
    }
}
