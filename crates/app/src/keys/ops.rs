//! The API keys API: create (the plaintext is returned once), list, read, delete.

use crate::context::Permission as P;
use crate::{App, OpContext};
use serde_json::json;
use tenancy_domain::apikey::{self, ApiKey, NewApiKey};
use tenancy_domain::page::{Page, PageRequest};
use tenancy_domain::time::Timestamp;
use tenancy_domain::Result;
use tenancy_store::Effects;

impl App {
    // API keys.

    /// Creates a key; the plaintext is returned this once and never stored.
    pub async fn api_key_create(&self, ctx: &OpContext, new: NewApiKey) -> Result<(ApiKey, String)> {
        ctx.authorize(P::KeyAdmin)?;
        let now = Timestamp::now();
        new.validate(now)?;
        let generated = apikey::generate(&mut rand::thread_rng());
        let key = ApiKey {
            id: generated.id,
            name: new.name,
            role: new.role,
            tenant_id: new.tenant_id,
            created_at: now,
            expires_at: new.expires_at,
            rate_limit: new.rate_limit,
            hash: generated.hash,
        };
        let mut detail = json!({"name": key.name, "role": key.role});
        if let Some(limit) = &key.rate_limit {
            detail["rate_limit"] = json!(limit);
        }
        let audit = ctx.audit("api_key.create", format!("api-key/{}", key.id), key.tenant_id.as_deref(), detail);
        self.store.api_key_create(&key, &Effects::none().with_audit(audit)).await?;
        Ok((key, generated.plaintext))
    }

    pub async fn api_key_list(&self, ctx: &OpContext, page: &PageRequest) -> Result<Page<ApiKey>> {
        ctx.authorize(P::KeyAdmin)?;
        self.store.api_key_list(page).await
    }

    pub async fn api_key_delete(&self, ctx: &OpContext, id: &str) -> Result<()> {
        ctx.authorize(P::KeyAdmin)?;
        let audit = ctx.audit("api_key.delete", format!("api-key/{id}"), None, json!({}));
        self.store.api_key_delete(id, &Effects::none().with_audit(audit)).await?;
        self.auth.evict(id);
        Ok(())
    }
}
