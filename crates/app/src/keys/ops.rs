//! The API keys API: create (the plaintext is returned once), list, rotate (a new
//! secret for the same key, the old one valid for a grace), delete.
//!
//! Admins manage every key. A tenant key manages its own tenant's keys (self-service,
//! docs/self-service.md): it creates keys of role `tenant` for its tenant only, never a
//! wider role and never with a rate limit of their own (403); it lists, rotates and
//! revokes its tenant's keys, and another tenant's key, or a key of no tenant, is 404
//! to it, as everything about other tenants is.

use crate::context::Permission as P;
use crate::{App, OpContext};
use serde_json::json;
use tenancy_domain::apikey::{self, ApiKey, NewApiKey, Role, RotateKey};
use tenancy_domain::page::{Page, PageRequest};
use tenancy_domain::time::Timestamp;
use tenancy_domain::{Error, Result};
use tenancy_store::Effects;

impl App {
    // API keys.

    /// Creates a key; the plaintext is returned this once and never stored.
    pub async fn api_key_create(&self, ctx: &OpContext, mut new: NewApiKey) -> Result<(ApiKey, String)> {
        ctx.authorize(P::KeyOwn)?;
        if let Some(own) = ctx.own_tenant() {
            match &new.tenant_id {
                Some(t) if t != own => return Err(Error::not_found("tenant", t.clone())),
                _ => new.tenant_id = Some(own.to_owned()),
            }
            if new.role != Role::Tenant {
                return Err(Error::Forbidden(format!(
                    "a tenant key creates keys of role \"tenant\" for its own tenant only, never a wider role \
                     (asked for {:?})",
                    new.role.as_str()
                )));
            }
            if new.rate_limit.is_some() {
                return Err(Error::Forbidden("only admins give a key a rate limit of its own".into()));
            }
        } else {
            ctx.authorize(P::KeyAdmin)?;
        }
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
            labels: new.labels,
            region: new.region,
            last_used_at: None,
            previous_secret_expires_at: None,
            hash: generated.hash,
            previous_hash: None,
        };
        let mut detail = json!({"name": key.name, "role": key.role});
        if let Some(limit) = &key.rate_limit {
            detail["rate_limit"] = json!(limit);
        }
        if !key.labels.is_empty() {
            detail["labels"] = json!(key.labels);
        }
        if let Some(region) = &key.region {
            detail["region"] = json!(region);
        }
        let audit = ctx.audit("api_key.create", format!("api-key/{}", key.id), key.tenant_id.as_deref(), detail);
        self.store.api_key_create(&key, &Effects::none().with_audit(audit)).await?;
        Ok((key, generated.plaintext))
    }

    /// Every key (admins), or the caller's tenant's (a tenant key).
    pub async fn api_key_list(&self, ctx: &OpContext, page: &PageRequest) -> Result<Page<ApiKey>> {
        ctx.authorize(P::KeyOwn)?;
        match ctx.own_tenant() {
            Some(own) => self.store.api_key_list(Some(own), page).await,
            None => {
                ctx.authorize(P::KeyAdmin)?;
                self.store.api_key_list(None, page).await
            }
        }
    }

    /// The key `id` if the caller may manage it: any for admins, its own tenant's for
    /// a tenant key (any other: 404).
    pub async fn managed_key(&self, ctx: &OpContext, id: &str) -> Result<ApiKey> {
        ctx.authorize(P::KeyOwn)?;
        match ctx.own_tenant() {
            Some(own) => {
                let key = self.store.api_key_get(id).await?;
                if key.tenant_id.as_deref() != Some(own) {
                    return Err(Error::not_found("api key", id));
                }
                Ok(key)
            }
            None => {
                ctx.authorize(P::KeyAdmin)?;
                self.store.api_key_get(id).await
            }
        }
    }

    pub async fn api_key_delete(&self, ctx: &OpContext, id: &str) -> Result<()> {
        let key = self.managed_key(ctx, id).await?;
        let audit = ctx.audit("api_key.delete", format!("api-key/{id}"), key.tenant_id.as_deref(), json!({}));
        self.store.api_key_delete(id, &Effects::none().with_audit(audit)).await?;
        self.auth.evict(id);
        Ok(())
    }

    /// Issues a new secret for key `id` (same id, role, tenant, expiry and limit),
    /// returned this once; the secret it replaces keeps working for `grace_s` seconds
    /// (default 1 h, at most 7 days; 0: not at all). A secret replaced by an earlier
    /// rotation stops at once. Audited, never with either secret.
    pub async fn api_key_rotate(&self, ctx: &OpContext, id: &str, req: RotateKey) -> Result<(ApiKey, String)> {
        let key = self.managed_key(ctx, id).await?;
        let grace_s = req.grace_s()?;
        let generated = apikey::regenerate(&mut rand::thread_rng(), &key.id)
            .ok_or_else(|| Error::internal(format!("api key id {:?} is not of a generated key", key.id)))?;
        let until = Timestamp::now().plus_millis(grace_s as i64 * 1000);
        let audit = ctx.audit(
            "api_key.rotate",
            format!("api-key/{id}"),
            key.tenant_id.as_deref(),
            json!({"grace_s": grace_s, "previous_secret_expires_at": until}),
        );
        let rotated = self.store.api_key_rotate(id, &generated.hash, until, &Effects::none().with_audit(audit)).await?;
        self.auth.evict(id);
        Ok((rotated, generated.plaintext))
    }
}
