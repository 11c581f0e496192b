//! The sign-up operations. Both are unauthenticated: the HTTP layer rate-limits them
//! per client address (and the request per email domain) before they run, and hands
//! them the [`Visitor`] (request id, address) for the audit log.
//!
//! No enumeration: a valid request does the same work whatever the email (known to a
//! tenant already, unknown, with a sign-up pending): one token, one `SignupRequested`
//! event, one audit entry, in one transaction, and the same answer. Tenancy never
//! looks the address up; the product service that receives the event knows its users
//! and decides what to send (an activation link, or a sign-in link to an existing
//! account).
//!
//! The activation token is a credential: it leaves the server once, in the
//! `SignupRequested` event's detail (`activation_token`), for the product to send; it is
//! never audited (the audit entry names the email, organisation and plan), stored only
//! as its SHA-256, single use and short-lived (`--signup-token-ttl-s`, 24 h by default).

use serde_json::json;
use tenancy_audit::AuditEntry;
use tenancy_domain::api::CreatedKey;
use tenancy_domain::apikey::{self, ApiKey, Role};
use tenancy_domain::event::{names, Event};
use tenancy_domain::page::PageRequest;
use tenancy_domain::plan::Plan;
use tenancy_domain::signup::{self, ActivateRequest, Activated, Signup, SignupAccepted, SignupRequest};
use tenancy_domain::tenant::NewTenant;
use tenancy_domain::time::Timestamp;
use tenancy_domain::{Error, ErrorCode, Result};
use tenancy_store::Effects;

use crate::{App, OpContext};

/// An unauthenticated caller: what the audit log records of it.
#[derive(Debug, Clone, Default)]
pub struct Visitor {
    pub request_id: Option<String>,
    pub source_ip: Option<String>,
}

impl Visitor {
    fn audit(&self, action: &str, target: String, tenant_id: Option<&str>, detail: serde_json::Value) -> AuditEntry {
        AuditEntry {
            id: tenancy_domain::ids::new_id("aud"),
            time: Timestamp::now(),
            actor_key_id: None,
            actor_role: "anonymous".into(),
            action: action.into(),
            target,
            tenant_id: tenant_id.map(str::to_owned),
            request_id: self.request_id.clone(),
            source_ip: self.source_ip.clone(),
            outcome: "success".into(),
            detail,
        }
    }
}

/// The name of the tenant key an activation returns.
const FIRST_KEY_NAME: &str = "signup";

impl App {
    /// How long activation tokens work (`serve --signup-token-ttl-s`; default 24 h).
    pub fn set_signup_token_ttl(&mut self, ttl: std::time::Duration) {
        self.signup_ttl = ttl;
    }

    /// `POST /v1/signup`: records a sign-up and emits `SignupRequested` with its
    /// activation token. The answer is the same for every valid request.
    pub async fn signup(&self, visitor: &Visitor, req: SignupRequest) -> Result<SignupAccepted> {
        let (email, _) = req.validate()?;
        let plan = self.signup_plan(req.plan.as_deref()).await?;
        let now = Timestamp::now();
        let token = signup::generate_token(&mut rand::thread_rng());
        let expires_at = now.plus_millis(i64::try_from(self.signup_ttl.as_millis()).unwrap_or(i64::MAX / 2));
        let org_name = req.org_name.trim().to_owned();
        let record = Signup {
            token_hash: token.hash,
            email: email.clone(),
            org_name: org_name.clone(),
            plan: plan.id.clone(),
            created_at: now,
            expires_at,
            activated_at: None,
            tenant_id: None,
        };
        let event = Event::new(
            names::SIGNUP_REQUESTED,
            None,
            vec![],
            json!({"email": email, "org_name": org_name, "plan": plan.id,
                   "activation_token": token.token, "expires_at": expires_at}),
        );
        let audit = visitor.audit(
            "signup.request",
            "signup".into(),
            None,
            json!({"email": email, "org_name": org_name, "plan": plan.id, "expires_at": expires_at}),
        );
        self.store.signups().signup_create(&record, &Effects::none().with_event(event).with_audit(audit)).await?;
        Ok(SignupAccepted::new())
    }

    /// The plan a sign-up asks for: one marked `self_service` (an unknown plan and one
    /// not open to sign-up get the same 400 `unknown-plan`); none named: the only such
    /// plan, else 400.
    async fn signup_plan(&self, plan: Option<&str>) -> Result<Plan> {
        if let Some(id) = plan {
            return match self.store.plan_get(id).await {
                Ok(p) if p.self_service => Ok(p),
                Ok(_) | Err(Error::NotFound { .. }) => Err(Error::InvalidRequest {
                    code: ErrorCode::UnknownPlan,
                    message: format!("plan {id:?} does not exist or is not open to self-service sign-up"),
                }),
                Err(e) => Err(e),
            };
        }
        let mut open = Vec::new();
        let mut after = None;
        loop {
            let page = self.store.plan_list(&PageRequest { limit: 500, after }).await?;
            open.extend(page.items.into_iter().filter(|p| p.self_service));
            match page.next_cursor {
                Some(c) => after = Some(c),
                None => break,
            }
        }
        match open.len() {
            1 => Ok(open.remove(0)),
            0 => Err(Error::InvalidRequest {
                code: ErrorCode::UnknownPlan,
                message: "no plan is open to self-service sign-up".into(),
            }),
            _ => Err(Error::invalid(format!(
                "name a plan: several are open to self-service sign-up ({})",
                open.iter().map(|p| format!("{:?}", p.id)).collect::<Vec<_>>().join(", ")
            ))),
        }
    }

    /// `POST /v1/signup/activate`: uses the token (once), provisions the tenant the
    /// normal way (`tenant_create`, by the system: org name as its name, the email in
    /// its metadata) and creates its first tenant key, returned this once. An unknown
    /// or used token is 400 `activation-invalid`; an expired one too, its detail saying
    /// when it expired while the sweeper has not purged it. A tenant create that fails
    /// (the plan full or no longer offered) gives the token back.
    pub async fn signup_activate(&self, visitor: &Visitor, req: ActivateRequest) -> Result<Activated> {
        let hash = signup::token_hash(req.token.trim()).ok_or_else(signup::invalid_token)?;
        let now = Timestamp::now();
        let found = self.store.signups().signup_get(&hash).await?.ok_or_else(signup::invalid_token)?;
        if found.activated_at.is_some() {
            return Err(signup::invalid_token());
        }
        if found.expires_at <= now {
            return Err(signup::expired_token(found.expires_at));
        }
        // Still open to sign-up (a plan may have been closed since).
        self.signup_plan(Some(&found.plan)).await?;
        let tenant_id = tenancy_domain::ids::new_tenant_id();
        if !self.store.signups().signup_claim(&hash, &tenant_id, now).await? {
            return Err(signup::invalid_token());
        }
        let mut metadata = serde_json::Map::new();
        metadata.insert("email".into(), json!(found.email));
        metadata.insert("signup".into(), json!(true));
        let new = NewTenant {
            id: Some(tenant_id.clone()),
            name: found.org_name.clone(),
            plan: found.plan.clone(),
            region: None,
            metadata: Some(metadata),
        };
        let op = match self.tenant_create(&OpContext::system(), new).await {
            Ok(op) => op,
            Err(e) => {
                if let Err(undo) = self.store.signups().signup_unclaim(&hash).await {
                    tracing::warn!(error = %undo, "failed to give a sign-up token back after a failed activation");
                }
                return Err(e);
            }
        };
        let generated = apikey::generate(&mut rand::thread_rng());
        let key = ApiKey {
            id: generated.id,
            name: FIRST_KEY_NAME.into(),
            role: Role::Tenant,
            tenant_id: Some(tenant_id.clone()),
            created_at: now,
            expires_at: None,
            rate_limit: None,
            labels: vec![],
            region: None,
            last_used_at: None,
            previous_secret_expires_at: None,
            hash: generated.hash,
            previous_hash: None,
        };
        let fx = Effects::none()
            .with_audit(visitor.audit(
                "signup.activate",
                format!("tenant/{tenant_id}"),
                Some(&tenant_id),
                json!({"email": found.email, "plan": found.plan, "key_id": key.id,
                       "execution_id": op.execution_id}),
            ))
            .with_audit(visitor.audit(
                "api_key.create",
                format!("api-key/{}", key.id),
                Some(&tenant_id),
                json!({"name": key.name, "role": key.role}),
            ));
        self.store.api_key_create(&key, &fx).await?;
        let api_key = CreatedKey {
            id: key.id,
            name: key.name,
            role: key.role,
            tenant_id: key.tenant_id,
            created_at: key.created_at,
            expires_at: key.expires_at,
            rate_limit: None,
            labels: vec![],
            region: None,
            previous_secret_expires_at: None,
            key: generated.plaintext,
        };
        Ok(Activated { tenant: op.tenant, execution_id: op.execution_id, api_key })
    }
}
