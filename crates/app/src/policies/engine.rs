//! The Cedar engine: schema, built-in policies, the loaded policy set and the
//! decision cache.
//!
//! **Entities.** The principal is `Tenancy::ApiKey::"<key id>"` (the bootstrap admin
//! token is `Tenancy::ApiKey::"admin-token"`) with `role`, `tenant` (tenant keys),
//! `labels` (a set) and `region` (optional). The action is
//! `Tenancy::Action::"<operationId>"`, one per API operation, member of the groups
//! `"read"` (GET routes) or `"write"` (the others) and one group per permission it
//! needs (`"tenant-admin"`, `"queue-use"`...). The resource is
//! `Tenancy::Tenant::"<id>"` for every route about one tenant (attributes `plan`,
//! `region`, `status`, `labels`: the tenant's string metadata as `key=value`), the
//! named resource for routes about one (`Tenancy::Queue::"jobs"`, `Tenancy::Plan::"pro"`,
//! ...), and `Tenancy::Platform::"tenancy"` for collections and the rest.
//!
//! **Built-in policies.** `builtin.role.<role>` permits a role every action whose
//! permissions the role table ([`crate::OpContext::authorize`]) grants it, all of
//! them, exactly as the route check did; tenant keys' scoping (another tenant is 404)
//! stays a structural check before the policies. Operators' policies are added to the
//! same set: a `forbid` narrows what a role may do; a `permit` cannot widen it, since
//! the application keeps its role checks when it acts.
//!
//! **Freshness.** The set is reloaded at once after this process's own put or delete.
//! Where other processes write the same database (PostgreSQL replicas) the store's
//! policy revision is read at most once per [`REPLICA_CHECK`] on the request path and
//! the set reloaded when it moved: another replica's change applies within a second.
//!
//! **Decision cache.** Keyed by principal, action, resource, the resource's version
//! (a tenant's `version`, 0 for the others) and the policy revision, so a change of
//! either is never answered from an older decision. Without operator policies no
//! decision depends on a resource's attributes, and tenants are not read for them.

use std::collections::{HashMap, HashSet};
use std::str::FromStr;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use cedar_policy::{
    Authorizer, Context, Decision, Entities, Entity, EntityUid, Policy as CedarPolicy, PolicyId, PolicySet, Request,
    RestrictedExpression, Schema, ValidationMode, Validator,
};
use tenancy_domain::apikey::Role;
use tenancy_domain::policy::{self, Policy, PolicyDecision};
use tenancy_domain::tenant::Tenant;
use tenancy_domain::{Error, Result};
use tenancy_store::Store;

use crate::context::{Permission, Principal};
use crate::OpContext;

/// How often a replica sharing the database checks the policy revision.
pub const REPLICA_CHECK: Duration = Duration::from_secs(1);
/// Decisions kept; past this the cache starts over (a miss costs one evaluation).
const CACHE_CAP: usize = 100_000;
/// The entity id of the bootstrap admin token's principal.
pub const ADMIN_TOKEN_ID: &str = "admin-token";
/// The resource of collections and routes about no one resource.
pub const PLATFORM: &str = "Platform";

/// One API operation as an action: its name (the OpenAPI `operationId`), the
/// permissions its route demands, the entity type of its resource, whether it reads.
#[derive(Debug, Clone, PartialEq)]
pub struct ActionDef {
    pub name: String,
    pub perms: Vec<Permission>,
    /// `Tenant`, `Platform` or a named resource's type (`Queue`, `Plan`, ...).
    pub resource: String,
    pub read: bool,
}

/// The resource a request is about.
#[derive(Debug, Clone, Copy)]
pub enum Resource<'a> {
    Tenant(&'a str),
    Named { kind: &'a str, id: &'a str },
    Platform,
}

/// The permission's group name: `TenantAdmin` → `tenant-admin`.
pub fn perm_group(p: Permission) -> String {
    let mut out = String::new();
    for (i, ch) in format!("{p:?}").chars().enumerate() {
        if ch.is_ascii_uppercase() {
            if i > 0 {
                out.push('-');
            }
            out.push(ch.to_ascii_lowercase());
        } else {
            out.push(ch);
        }
    }
    out
}

const ROLES: [Role; 5] = [Role::Admin, Role::Operator, Role::Viewer, Role::Service, Role::Tenant];

fn role_grants(role: Role, perms: &[Permission]) -> bool {
    let ctx = OpContext {
        principal: Principal {
            key_id: Some("key_builtin".into()),
            role,
            tenant_id: None,
            rate_limit: None,
            labels: vec![],
            region: None,
        },
        request_id: None,
        source_ip: None,
    };
    perms.iter().all(|p| ctx.authorize(*p).is_ok())
}

/// What the actions make of Cedar: the schema, its validator, the built-in policies
/// and the action hierarchy. Built once per action catalogue.
pub struct Catalogue {
    actions: HashMap<String, ActionDef>,
    schema_text: String,
    validator: Validator,
    builtins: PolicySet,
    action_entities: Entities,
}

impl Catalogue {
    pub fn new(defs: Vec<ActionDef>) -> Self {
        let schema_text = schema_text(&defs);
        let (schema, _warnings) = Schema::from_cedarschema_str(&schema_text).expect("the generated schema parses");
        let action_entities = schema.action_entities().expect("the generated schema's actions");
        let mut builtins = PolicySet::new();
        for role in ROLES {
            let granted: Vec<String> = defs
                .iter()
                .filter(|d| role_grants(role, &d.perms))
                .map(|d| format!("Tenancy::Action::{:?}", d.name))
                .collect();
            if granted.is_empty() {
                continue;
            }
            let text = format!(
                "permit (principal, action in [{}], resource) when {{ principal.role == {:?} }};",
                granted.join(", "),
                role.as_str()
            );
            let id = PolicyId::new(format!("builtin.role.{}", role.as_str()));
            builtins.add(CedarPolicy::parse(Some(id), text).expect("a built-in policy parses")).expect("unique ids");
        }
        let validator = Validator::new(schema);
        Catalogue {
            actions: defs.into_iter().map(|d| (d.name.clone(), d)).collect(),
            schema_text,
            validator,
            builtins,
            action_entities,
        }
    }

    pub fn action(&self, name: &str) -> Option<&ActionDef> {
        self.actions.get(name)
    }

    /// The schema in Cedar's schema syntax (`GET /v1/policies` shows it too? no: the
    /// docs page explains it; `tenancy policies schema` is not a command).
    pub fn schema_text(&self) -> &str {
        &self.schema_text
    }

    /// Parses and validates an operator policy's text: the policies of it, named
    /// `name` (one statement) or `name[i]` (several). 400 `invalid-policy` naming the
    /// line and column of the first error.
    ///
    /// Hostile input: the text's lexical shape is bounded first
    /// ([`policy::check_shape`]); Cedar's parser and validator then run on a thread
    /// of their own with a [`COMPILE_STACK`] stack, and a policy whose expression tree
    /// is deeper than [`MAX_TREE_DEPTH`] is refused, so that evaluating it on a
    /// request's (small-stack) thread stays shallow.
    pub fn compile(&self, name: &str, cedar: &str) -> Result<Vec<CedarPolicy>> {
        policy::check_shape(cedar)?;
        std::thread::scope(|scope| {
            std::thread::Builder::new()
                .name("cedar-compile".into())
                .stack_size(COMPILE_STACK)
                .spawn_scoped(scope, || self.compile_here(name, cedar))
                .map_err(|e| Error::Internal(format!("starting the policy compiler: {e}")))?
                .join()
                .map_err(|_| Error::Internal("the policy compiler panicked".into()))?
        })
    }

    fn compile_here(&self, name: &str, cedar: &str) -> Result<Vec<CedarPolicy>> {
        let parsed = PolicySet::from_str(cedar).map_err(|e| diagnostic_error(cedar, &e))?;
        for p in parsed.policies() {
            let tree = p.to_json().map_err(|e| policy::invalid_at(cedar, None, &e.to_string()))?;
            if json_depth(&tree) > MAX_TREE_DEPTH {
                let message = format!("the policy's expressions nest deeper than {MAX_TREE_DEPTH} levels");
                return Err(policy::invalid_at(cedar, None, &message));
            }
        }
        let result = self.validator.validate(&parsed, ValidationMode::Strict);
        if let Some(e) = result.validation_errors().next() {
            return Err(diagnostic_error(cedar, e));
        }
        let statements: Vec<&CedarPolicy> = parsed.policies().collect();
        if statements.is_empty() {
            return Err(policy::invalid_at(cedar, None, "the text holds no policy"));
        }
        if parsed.templates().next().is_some() {
            return Err(policy::invalid_at(cedar, None, "templates (?principal, ?resource) are not supported"));
        }
        let many = statements.len() > 1;
        Ok(statements
            .into_iter()
            .enumerate()
            .map(|(i, p)| p.new_id(PolicyId::new(if many { format!("{name}[{i}]") } else { name.to_owned() })))
            .collect())
    }
}

/// The stack of the thread that parses and validates an operator's policy: enough
/// for the deepest tree [`policy::check_shape`] lets through (reserved, not touched
/// unless used).
const COMPILE_STACK: usize = 256 * 1024 * 1024;

/// The stack an evaluation is given (see [`PolicyEngine::evaluate`]): the deepest
/// tree [`MAX_TREE_DEPTH`] admits evaluates within it, in debug builds too.
const EVAL_STACK: usize = 2 * 1024 * 1024;

/// The deepest a policy's tree may be, counted in levels of its JSON form (about two
/// per expression). Real policies are under 20.
const MAX_TREE_DEPTH: usize = 96;

/// The nesting depth of a JSON value, without recursion.
fn json_depth(v: &serde_json::Value) -> usize {
    let mut deepest = 0;
    let mut stack = vec![(v, 1usize)];
    while let Some((v, d)) = stack.pop() {
        deepest = deepest.max(d);
        match v {
            serde_json::Value::Array(items) => stack.extend(items.iter().map(|i| (i, d + 1))),
            serde_json::Value::Object(map) => stack.extend(map.values().map(|i| (i, d + 1))),
            _ => {}
        }
    }
    deepest
}

/// 400 `invalid-policy` at the first labelled place of a Cedar diagnostic.
fn diagnostic_error(cedar: &str, e: &dyn miette::Diagnostic) -> Error {
    let offset = e.labels().and_then(|mut l| l.next()).map(|l| l.offset());
    let mut message = e.to_string();
    if let Some(help) = e.help() {
        message.push_str(&format!(" ({help})"));
    }
    policy::invalid_at(cedar, offset, &message)
}

fn schema_text(defs: &[ActionDef]) -> String {
    let mut kinds: Vec<&str> = defs.iter().map(|d| d.resource.as_str()).collect();
    kinds.push(PLATFORM);
    kinds.sort_unstable();
    kinds.dedup();
    let mut groups: Vec<String> = defs.iter().flat_map(|d| d.perms.iter().map(|p| perm_group(*p))).collect();
    groups.extend(["read".to_owned(), "write".to_owned()]);
    groups.sort_unstable();
    groups.dedup();
    let mut s = String::from("namespace Tenancy {\n");
    s.push_str("  entity ApiKey = { role: String, tenant?: String, labels: Set<String>, region?: String };\n");
    for kind in kinds {
        if kind == "Tenant" {
            s.push_str("  entity Tenant = { plan: String, region: String, status: String, labels: Set<String> };\n");
        } else {
            s.push_str(&format!("  entity {kind};\n"));
        }
    }
    if !defs.iter().any(|d| d.resource == "Tenant") {
        s.push_str("  entity Tenant = { plan: String, region: String, status: String, labels: Set<String> };\n");
    }
    for g in &groups {
        s.push_str(&format!("  action {g:?};\n"));
    }
    for d in defs {
        let mut of: Vec<String> = d.perms.iter().map(|p| format!("{:?}", perm_group(*p))).collect();
        of.push(if d.read { "\"read\"".into() } else { "\"write\"".into() });
        s.push_str(&format!(
            "  action {:?} in [{}] appliesTo {{ principal: [ApiKey], resource: [{}] }};\n",
            d.name,
            of.join(", "),
            d.resource
        ));
    }
    s.push_str("}\n");
    s
}

/// The policy set in force and the revision it was loaded at.
struct Loaded {
    revision: i64,
    set: PolicySet,
    /// Whether operators' policies are in it (else decisions depend on roles only).
    operator: bool,
}

#[derive(Clone, PartialEq, Eq, Hash)]
struct CacheKey {
    principal: String,
    action: String,
    resource: String,
    version: i64,
    revision: i64,
}

/// A decision as the request path needs it.
#[derive(Debug, Clone)]
pub struct Verdict {
    pub allow: bool,
    /// The policies that decided it.
    pub by: Vec<String>,
}

/// The engine: the catalogue, the policy set in force, the decision cache.
pub struct PolicyEngine {
    catalogue: Catalogue,
    loaded: RwLock<Arc<Loaded>>,
    checked_at: Mutex<Option<Instant>>,
    reload: tokio::sync::Mutex<()>,
    cache: Mutex<HashMap<CacheKey, Arc<Verdict>>>,
}

impl PolicyEngine {
    pub fn new(defs: Vec<ActionDef>) -> Self {
        let catalogue = Catalogue::new(defs);
        let set = catalogue.builtins.clone();
        PolicyEngine {
            catalogue,
            loaded: RwLock::new(Arc::new(Loaded { revision: -1, set, operator: false })),
            checked_at: Mutex::new(None),
            reload: tokio::sync::Mutex::new(()),
            cache: Mutex::default(),
        }
    }

    pub fn catalogue(&self) -> &Catalogue {
        &self.catalogue
    }

    fn current(&self) -> Arc<Loaded> {
        self.loaded.read().expect("policy lock").clone()
    }

    /// The policy set in force, reloaded first when it was never loaded, or (replicas)
    /// when the revision moved since it was last checked more than a second ago.
    async fn fresh(&self, store: &dyn Store) -> Result<Arc<Loaded>> {
        let loaded = self.current();
        let due = loaded.revision < 0
            || (!store.terms_epoch().exact
                && self.checked_at.lock().expect("policy lock").is_none_or(|t| t.elapsed() >= REPLICA_CHECK));
        if !due {
            return Ok(loaded);
        }
        self.load(store, false).await
    }

    /// Reloads the policy set from the store now (after this process changed it).
    pub async fn refresh(&self, store: &dyn Store) -> Result<()> {
        self.load(store, true).await.map(|_| ())
    }

    /// Reloads the set when the store's revision differs from the loaded one (or
    /// always, with `force`).
    async fn load(&self, store: &dyn Store, force: bool) -> Result<Arc<Loaded>> {
        let _one = self.reload.lock().await;
        let revision = store.policies().policy_revision().await?;
        *self.checked_at.lock().expect("policy lock") = Some(Instant::now());
        let loaded = self.current();
        if !force && loaded.revision == revision {
            return Ok(loaded);
        }
        let stored = store.policies().policy_list().await?;
        let mut set = self.catalogue.builtins.clone();
        let mut operator = false;
        for p in &stored {
            // A stored policy that no longer validates (the schema changed with an
            // upgrade) is left out and logged, never half applied.
            match self.catalogue.compile(&p.name, &p.cedar) {
                Ok(policies) => {
                    for cp in policies {
                        operator = true;
                        if let Err(e) = set.add(cp) {
                            tracing::warn!(policy = %p.name, error = %e, "policy left out");
                        }
                    }
                }
                Err(e) => tracing::warn!(policy = %p.name, error = %e, "stored policy no longer validates: left out"),
            }
        }
        let fresh = Arc::new(Loaded { revision, set, operator });
        *self.loaded.write().expect("policy lock") = fresh.clone();
        Ok(fresh)
    }

    /// Whether operators' policies are loaded (then tenants' attributes matter).
    pub async fn has_operator_policies(&self, store: &dyn Store) -> Result<bool> {
        Ok(self.fresh(store).await?.operator)
    }

    /// Decides `action` on `resource` for `principal`; `tenant` carries the tenant's
    /// attributes when the resource is one (and they matter). Cached.
    pub async fn decide(
        &self,
        store: &dyn Store,
        principal: &Principal,
        action: &str,
        resource: Resource<'_>,
        tenant: Option<&Tenant>,
    ) -> Result<Arc<Verdict>> {
        let loaded = self.fresh(store).await?;
        Ok(self.decide_in(&loaded, principal, action, resource, tenant))
    }

    fn decide_in(
        &self,
        loaded: &Loaded,
        principal: &Principal,
        action: &str,
        resource: Resource<'_>,
        tenant: Option<&Tenant>,
    ) -> Arc<Verdict> {
        let tenant = tenant.filter(|_| loaded.operator);
        let key = CacheKey {
            principal: principal.key_id.clone().unwrap_or_else(|| ADMIN_TOKEN_ID.into()),
            action: action.to_owned(),
            resource: resource_key(resource),
            version: tenant.map_or(0, |t| t.version),
            revision: loaded.revision,
        };
        if let Some(v) = self.cache.lock().expect("cache lock").get(&key) {
            return v.clone();
        }
        let (allow, by, _) = self.evaluate(&loaded.set, principal, action, resource, tenant);
        let verdict = Arc::new(Verdict { allow, by });
        let mut cache = self.cache.lock().expect("cache lock");
        if cache.len() >= CACHE_CAP {
            cache.clear();
        }
        cache.insert(key, verdict.clone());
        verdict
    }

    /// Evaluates without the cache: the decision, the deciding policies, the errors.
    fn evaluate(
        &self,
        set: &PolicySet,
        principal: &Principal,
        action: &str,
        resource: Resource<'_>,
        tenant: Option<&Tenant>,
    ) -> (bool, Vec<String>, Vec<String>) {
        let result = (|| -> std::result::Result<_, String> {
            let p_uid = uid("ApiKey", principal.key_id.as_deref().unwrap_or(ADMIN_TOKEN_ID))?;
            let a_uid = uid("Action", action)?;
            let r_uid = match resource {
                Resource::Tenant(id) => uid("Tenant", id)?,
                Resource::Named { kind, id } => uid(kind, id)?,
                Resource::Platform => uid(PLATFORM, "tenancy")?,
            };
            let mut entities = vec![principal_entity(p_uid.clone(), principal)?];
            if let Some(t) = tenant {
                entities.push(tenant_entity(r_uid.clone(), t)?);
            }
            let entities =
                self.catalogue.action_entities.clone().add_entities(entities, None).map_err(|e| e.to_string())?;
            let request = Request::new(p_uid, a_uid, r_uid, Context::empty(), None).map_err(|e| e.to_string())?;
            // Cedar's evaluator recurses on the tree and gives up ("recursion limit
            // reached", and an erroring forbid is ignored) when the thread's stack runs
            // low; a request's thread may be deep in its handlers already, so the
            // evaluation gets a fresh segment when less than EVAL_STACK is left.
            let response = stacker::maybe_grow(EVAL_STACK, 4 * EVAL_STACK, || {
                Authorizer::new().is_authorized(&request, set, &entities)
            });
            let by = response.diagnostics().reason().map(|id| id.to_string()).collect();
            let errors = response.diagnostics().errors().map(|e| e.to_string()).collect();
            Ok((response.decision() == Decision::Allow, by, errors))
        })();
        result.unwrap_or_else(|e| (false, vec![], vec![e]))
    }

    /// `POST /v1/policies/check`: the decision with the deciding policies and errors,
    /// from the policy set in force (not the cache).
    pub async fn check(
        &self,
        store: &dyn Store,
        principal: &Principal,
        action: &str,
        resource: Resource<'_>,
        tenant: Option<&Tenant>,
    ) -> Result<PolicyDecision> {
        let loaded = self.fresh(store).await?;
        let (allow, policies, errors) = self.evaluate(&loaded.set, principal, action, resource, tenant);
        Ok(PolicyDecision { decision: if allow { "allow" } else { "deny" }.into(), policies, errors })
    }

    /// Checks an operator policy's text against the schema (see [`Catalogue::compile`]).
    pub fn validate(&self, p: &Policy) -> Result<()> {
        self.catalogue.compile(&p.name, &p.cedar).map(|_| ())
    }
}

fn resource_key(r: Resource<'_>) -> String {
    match r {
        Resource::Tenant(id) => format!("Tenant/{id}"),
        Resource::Named { kind, id } => format!("{kind}/{id}"),
        Resource::Platform => PLATFORM.into(),
    }
}

fn uid(kind: &str, id: &str) -> std::result::Result<EntityUid, String> {
    let ty = cedar_policy::EntityTypeName::from_str(&format!("Tenancy::{kind}")).map_err(|e| e.to_string())?;
    Ok(EntityUid::from_type_name_and_id(ty, cedar_policy::EntityId::new(id)))
}

fn strings(values: impl IntoIterator<Item = String>) -> RestrictedExpression {
    RestrictedExpression::new_set(values.into_iter().map(RestrictedExpression::new_string))
}

fn principal_entity(uid: EntityUid, p: &Principal) -> std::result::Result<Entity, String> {
    let mut attrs = HashMap::from([
        ("role".to_owned(), RestrictedExpression::new_string(p.role.as_str().into())),
        ("labels".to_owned(), strings(p.labels.iter().cloned())),
    ]);
    if let Some(t) = &p.tenant_id {
        attrs.insert("tenant".into(), RestrictedExpression::new_string(t.clone()));
    }
    if let Some(r) = &p.region {
        attrs.insert("region".into(), RestrictedExpression::new_string(r.clone()));
    }
    Entity::new(uid, attrs, HashSet::new()).map_err(|e| e.to_string())
}

/// A tenant's labels: its metadata's string values as `key=value`.
pub fn tenant_labels(t: &Tenant) -> Vec<String> {
    t.metadata.iter().filter_map(|(k, v)| v.as_str().map(|v| format!("{k}={v}"))).collect()
}

fn tenant_entity(uid: EntityUid, t: &Tenant) -> std::result::Result<Entity, String> {
    let attrs = HashMap::from([
        ("plan".to_owned(), RestrictedExpression::new_string(t.plan.clone())),
        ("region".to_owned(), RestrictedExpression::new_string(t.region.clone())),
        ("status".to_owned(), RestrictedExpression::new_string(t.status.as_str().into())),
        ("labels".to_owned(), strings(tenant_labels(t))),
    ]);
    Entity::new(uid, attrs, HashSet::new()).map_err(|e| e.to_string())
}
