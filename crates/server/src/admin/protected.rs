//! Protected users: e-mail addresses or userNames that SCIM may not deactivate or delete.

use super::{Admin, AdminError, AdminResult, admin_err, validate_name, with_org};
use rollcall_store::{ProtectedUser, WriteContext};

impl Admin {
    // --- protected users -----------------------------------------------------------------------

    pub async fn add_protected_user(&self, by: &WriteContext, org_id: &str, email: &str) -> AdminResult<ProtectedUser> {
        let org = self.organization(org_id).await?;
        let email = validate_name("the e-mail address or userName", email)?;
        self.store
            .add_protected_user(&with_org(by, &org.id), &org.id, &email)
            .await
            .map_err(admin_err)
    }

    pub async fn list_protected_users(&self, org_id: &str) -> AdminResult<Vec<ProtectedUser>> {
        let org = self.organization(org_id).await?;
        Ok(self.store.list_protected_users(&org.id).await?)
    }

    pub async fn remove_protected_user(&self, by: &WriteContext, org_id: &str, email: &str) -> AdminResult<()> {
        let org = self.organization(org_id).await?;
        if self
            .store
            .remove_protected_user(&with_org(by, &org.id), &org.id, email)
            .await?
        {
            Ok(())
        } else {
            Err(AdminError::not_found(format!(
                "\"{email}\" is not a protected user of this organization"
            )))
        }
    }
}
