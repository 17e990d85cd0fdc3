//! What the customer's IT admin does in each identity provider, step by step, in the vendor's own
//! words (its menus, field names and buttons), from the vendors' documentation. Data, not code:
//! one [`Guide`] per identity provider.

use rollcall_store::IdpKind;

/// A value the admin copies into a field of the identity provider.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Value {
    /// The connection's SCIM base URL.
    BaseUrl,
    /// The bearer token (shown once, on the page where it is issued).
    Token,
    /// A fixed text, such as `userName`.
    Text(&'static str),
}

/// One field of the identity provider's form and what goes in it.
#[derive(Debug, Clone, Copy)]
pub struct Field {
    /// The field's label in the identity provider, as it reads there.
    pub label: &'static str,
    pub value: Value,
}

/// One numbered step.
#[derive(Debug, Clone, Copy)]
pub struct Step {
    pub text: &'static str,
    /// The fields this step fills in, in the order the identity provider shows them.
    pub fields: &'static [Field],
}

/// The instructions for one identity provider.
#[derive(Debug, Clone, Copy)]
pub struct Guide {
    pub idp: IdpKind,
    /// Whether the identity provider can push SCIM to an application it does not list in its own
    /// catalog; when not, [`Guide::instead`] says what to do.
    pub supported: bool,
    pub intro: &'static str,
    pub steps: &'static [Step],
    /// What to do when this identity provider cannot reach Rollcall over SCIM.
    pub instead: Option<&'static str>,
    /// How often the identity provider sends changes, for "when will I see it".
    pub cadence: &'static str,
}

const BASE_AND_TOKEN_OKTA: &[Field] = &[
    Field {
        label: "SCIM connector base URL",
        value: Value::BaseUrl,
    },
    Field {
        label: "Unique identifier field for users",
        value: Value::Text("userName"),
    },
    Field {
        label: "Supported provisioning actions",
        value: Value::Text("Push New Users, Push Profile Updates, Push Groups"),
    },
    Field {
        label: "Authentication Mode",
        value: Value::Text("HTTP Header"),
    },
    Field {
        label: "Authorization (Bearer)",
        value: Value::Token,
    },
];

const OKTA: Guide = Guide {
    idp: IdpKind::Okta,
    supported: true,
    intro: "In the Okta Admin Console, provisioning is set up on the app integration your users already sign in to this application with (SAML or OIDC).",
    steps: &[
        Step {
            text: "Go to Applications › Applications and open this application's app integration. On the General tab, under App Settings, click Edit, set Provisioning to SCIM, and click Save. A Provisioning tab appears.",
            fields: &[],
        },
        Step {
            text: "On the Provisioning tab, choose Integration and click Edit. Fill in these fields:",
            fields: BASE_AND_TOKEN_OKTA,
        },
        Step {
            text: "Click Test Connector Configuration. Okta reads the service's capabilities and a test user; the panel below shows each request as it arrives. Close the result and click Save.",
            fields: &[],
        },
        Step {
            text: "On the Provisioning tab, choose To App and click Edit. Enable Create Users, Update User Attributes and Deactivate Users, then click Save.",
            fields: &[],
        },
        Step {
            text: "On the Assignments tab, assign one test user first. Okta creates it here within a minute; check it below before you assign everyone.",
            fields: &[],
        },
        Step {
            text: "To use groups for roles, open the Push Groups tab, click Push Groups › Find groups by name, pick the groups and click Save. They arrive below, ready to be mapped to roles.",
            fields: &[],
        },
    ],
    instead: None,
    cadence: "Okta sends each change within seconds of it being made.",
};

const ENTRA: Guide = Guide {
    idp: IdpKind::Entra,
    supported: true,
    intro: "In the Microsoft Entra admin center, provisioning runs on an enterprise application. You need the Application Administrator or Cloud Application Administrator role.",
    steps: &[
        Step {
            text: "Go to Identity › Applications › Enterprise applications. Open this application's enterprise app, or create one: New application › Create your own application, enter a name, choose \"Integrate any other application you don't find in the gallery (Non-gallery)\", and click Create.",
            fields: &[],
        },
        Step {
            text: "In the app, open Provisioning (Manage › Provisioning) and set Provisioning Mode to Automatic. Under Admin Credentials fill in:",
            fields: &[
                Field {
                    label: "Tenant URL",
                    value: Value::BaseUrl,
                },
                Field {
                    label: "Secret Token",
                    value: Value::Token,
                },
            ],
        },
        Step {
            text: "Click Test Connection. Entra sends a request for a user that does not exist; the panel below shows it arrive and the answer. Then click Save.",
            fields: &[],
        },
        Step {
            text: "Under Mappings, keep Provision Microsoft Entra ID Users enabled (and Provision Microsoft Entra ID Groups if you will map groups to roles). The default attribute mappings work; userName is matched on userPrincipalName.",
            fields: &[],
        },
        Step {
            text: "Under Users and groups, assign one test user, then go back to Provisioning and use Provision on demand with that user: it arrives here at once instead of at the next cycle. Check it below.",
            fields: &[],
        },
        Step {
            text: "Assign the users and groups who need access, set Provisioning Status to On and click Save.",
            fields: &[],
        },
    ],
    instead: None,
    cadence: "Entra runs a provisioning cycle about every 40 minutes (the first one can take longer); use Provision on demand to send one user now.",
};

const GOOGLE: Guide = Guide {
    idp: IdpKind::Google,
    supported: false,
    intro: "Google Workspace provisions users over SCIM only to applications in its own app catalog. A custom SAML app in the Google Admin console has no field for a SCIM base URL or token, so Google cannot send users here.",
    steps: &[],
    instead: Some(
        "The application's team can connect Google Workspace through Google's Directory API instead: tell them your directory is Google Workspace, and they create a Google Workspace connection, which reads your users, groups and memberships every few minutes (read-only). They give you a service account's client id; you grant it access as a Google super admin: in the Google Admin console, go to Security › Access and data control › API controls › Domain-wide delegation, click Add new, paste the client id, and enter these three OAuth scopes, comma-separated: https://www.googleapis.com/auth/admin.directory.user.readonly, https://www.googleapis.com/auth/admin.directory.group.readonly, https://www.googleapis.com/auth/admin.directory.group.member.readonly. Click Authorize. Give them the e-mail address of an administrator the service account acts as (it reads as that admin, and changes nothing). If your users sign in to Google through another identity provider (Okta, Microsoft Entra ID, OneLogin, JumpCloud), you can provision from that provider instead: choose it above.",
    ),
    cadence: "",
};

const ONELOGIN: Guide = Guide {
    idp: IdpKind::Onelogin,
    supported: true,
    intro: "In the OneLogin admin portal, provisioning is set up on a SCIM connector app.",
    steps: &[
        Step {
            text: "Go to Applications › Applications › Add App, search for \"SCIM Provisioner with SAML (SCIM v2 Enterprise)\", select it and click Save.",
            fields: &[],
        },
        Step {
            text: "On the Configuration tab, fill in these fields, then click Enable under API Connection and click Save:",
            fields: &[
                Field {
                    label: "SCIM Base URL",
                    value: Value::BaseUrl,
                },
                Field {
                    label: "SCIM Bearer Token",
                    value: Value::Token,
                },
            ],
        },
        Step {
            text: "On the Provisioning tab, tick Enable provisioning. Under \"Require admin approval before this action is performed\", untick Create user, Delete user and Update user: otherwise every change waits as Pending until someone approves it. Choose what happens when a user is deleted in OneLogin (Delete or Suspend) and click Save.",
            fields: &[],
        },
        Step {
            text: "Assign one test user to the app (Users › the user › Applications › +). It arrives here within a minute; check it below.",
            fields: &[],
        },
        Step {
            text: "To use groups for roles, on the Parameters tab add a Groups parameter with \"Include in User Provisioning\" ticked, and set its values with a Rule (Rules › Add Rule › Set Groups in this app).",
            fields: &[],
        },
    ],
    instead: None,
    cadence: "OneLogin sends each change within a minute or so.",
};

const JUMPCLOUD: Guide = Guide {
    idp: IdpKind::Jumpcloud,
    supported: true,
    intro: "In the JumpCloud Admin Portal, provisioning is set up on the application's SSO app, on its Identity Management tab.",
    steps: &[
        Step {
            text: "Go to SSO Applications and open this application (or add it: + Add New Application, then a Custom SAML App). Open its Identity Management tab.",
            fields: &[],
        },
        Step {
            text: "Choose SCIM 2.0 as the API type and fill in these fields:",
            fields: &[
                Field {
                    label: "Base URL",
                    value: Value::BaseUrl,
                },
                Field {
                    label: "Token Key",
                    value: Value::Token,
                },
                Field {
                    label: "Test User Email",
                    value: Value::Text("the e-mail of a user who exists in JumpCloud"),
                },
            ],
        },
        Step {
            text: "Click Test Connection. JumpCloud creates, reads and removes that test user; the panel below shows each request. Then click Activate, and Save.",
            fields: &[],
        },
        Step {
            text: "To send groups for roles, turn on Group Management on the same tab.",
            fields: &[],
        },
        Step {
            text: "On the User Groups tab, bind a user group that holds one test user first; check it below, then bind the groups who need access.",
            fields: &[],
        },
    ],
    instead: None,
    cadence: "JumpCloud sends each change within a minute or so.",
};

const PING: Guide = Guide {
    idp: IdpKind::Ping,
    supported: true,
    intro: "In the PingOne admin console, outbound provisioning is a provisioning connection plus a rule that says who is sent.",
    steps: &[
        Step {
            text: "Go to Integrations › Provisioning, click + and choose New Connection › Identity Store › SCIM Outbound, then Next. Give it a name.",
            fields: &[],
        },
        Step {
            text: "Under Configure Authentication fill in these fields, then click Test Connection and Next:",
            fields: &[
                Field {
                    label: "SCIM BASE URL",
                    value: Value::BaseUrl,
                },
                Field {
                    label: "Authentication Method",
                    value: Value::Text("OAuth 2 Bearer Token"),
                },
                Field {
                    label: "OAuth Access Token",
                    value: Value::Token,
                },
            ],
        },
        Step {
            text: "Under Configure Preferences, allow users to be created, updated and disabled (and removed, if you want deletions sent), keep the users and groups resources at /Users and /Groups, and Save. Turn the connection on.",
            fields: &[],
        },
        Step {
            text: "On the Rules tab of Provisioning, click + to add a rule that uses this connection, with a user filter matching one test user first. Map userName to the user's username or e-mail. Save and turn the rule on, then check the user below.",
            fields: &[],
        },
        Step {
            text: "Widen the rule's filter to everyone who needs access, and add the groups to send under Group Provisioning.",
            fields: &[],
        },
    ],
    instead: None,
    cadence: "PingOne sends each change within a minute or so.",
};

const GENERIC: Guide = Guide {
    idp: IdpKind::Generic,
    supported: true,
    intro: "Any SCIM 2.0 client (RFC 7644) can provision here. In its settings:",
    steps: &[
        Step {
            text: "Set the SCIM endpoint and authentication:",
            fields: &[
                Field {
                    label: "SCIM base URL (endpoint)",
                    value: Value::BaseUrl,
                },
                Field {
                    label: "Authorization header",
                    value: Value::Text("Bearer, followed by the token"),
                },
                Field {
                    label: "Bearer token",
                    value: Value::Token,
                },
                Field {
                    label: "Unique identifier of users",
                    value: Value::Text("userName"),
                },
            ],
        },
        Step {
            text: "Run the client's connection test if it has one; the panel below shows each request as it arrives. The service supports PATCH, filters (eq, sw, co, and, or), sorting, ETags, /Bulk and /.search; /ServiceProviderConfig says so.",
            fields: &[],
        },
        Step {
            text: "Send one test user first and check it below, then everyone who needs access, and their groups if you will map groups to roles.",
            fields: &[],
        },
    ],
    instead: None,
    cadence: "",
};

/// Every guide, in the order the setup page offers them.
pub const GUIDES: [Guide; 7] = [OKTA, ENTRA, GOOGLE, ONELOGIN, JUMPCLOUD, PING, GENERIC];

/// The guide of an identity provider.
pub fn guide(idp: IdpKind) -> &'static Guide {
    GUIDES
        .iter()
        .find(|g| g.idp == idp)
        .expect("every identity provider has a guide")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_identity_provider_has_one_guide() {
        for idp in IdpKind::ALL {
            assert_eq!(GUIDES.iter().filter(|g| g.idp == idp).count(), 1, "{idp}");
        }
    }

    #[test]
    fn every_supported_guide_asks_for_the_base_url_and_the_token() {
        for g in GUIDES.iter().filter(|g| g.supported) {
            let values: Vec<Value> = g.steps.iter().flat_map(|s| s.fields).map(|f| f.value).collect();
            assert!(values.contains(&Value::BaseUrl), "{:?}", g.idp);
            assert!(values.contains(&Value::Token), "{:?}", g.idp);
        }
        let google = guide(IdpKind::Google);
        assert!(!google.supported && google.instead.is_some() && google.steps.is_empty());
    }
}
