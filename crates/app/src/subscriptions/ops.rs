//! Subscription operations: create (with a `whsec_` secret shown once), read, change,
//! delete, rotate the secret, list and retry deliveries, replay the archive.

use serde_json::json;
use tenancy_domain::page::{Page, PageRequest};
use tenancy_domain::subscription::{
    self, Delivery, DeliveryStatus, NewSubscription, Subscription, SubscriptionPatch, Target,
};
use tenancy_domain::time::Timestamp;
use tenancy_domain::{Error, ErrorCode, Result};
use tenancy_events::webhook::WebhookSecret;
use tenancy_events::Pattern;

use tenancy_store::{Effects, NewDelivery, StoredSubscription};

use tenancy_adapters::keys::SecretBox;

use crate::context::Permission as P;
use crate::{App, OpContext};

/// How long the secret before a rotation keeps signing deliveries.
pub const ROTATION_OVERLAP_MS: i64 = 24 * 60 * 60 * 1000;
/// At most this many archived events are replayed by one request.
pub const MAX_REPLAY: usize = 100_000;

pub use tenancy_domain::api::SubscriptionWithSecret;

/// Parses a pattern, as `invalid-pattern` with the parser's message.
pub fn parse_pattern(pattern: &serde_json::Value) -> Result<Pattern> {
    Pattern::parse(pattern)
        .map_err(|e| Error::InvalidRequest { code: ErrorCode::InvalidPattern, message: e.to_string() })
}

/// Refuses JSON text holding a number a 64-bit float cannot represent (`1E-325`
/// underflows to 0 when parsed, `1E400` overflows), as `invalid-pattern`: a pattern
/// holding one would not mean what it says.
pub fn check_pattern_numbers(json: &[u8]) -> Result<()> {
    match tenancy_events::pattern::unrepresentable_number(json) {
        Some(n) => Err(Error::InvalidRequest {
            code: ErrorCode::InvalidPattern,
            message: format!("number {n} cannot be represented: it underflows to 0 or overflows a 64-bit float"),
        }),
        None => Ok(()),
    }
}

fn validate(name: &str, pattern: &serde_json::Value, target: &Target) -> Result<()> {
    subscription::validate_name(name)?;
    parse_pattern(pattern)?;
    target.validate()
}

impl App {
    /// A queue target's queue must exist (`unknown-queue`).
    pub(crate) async fn target_exists(&self, target: &Target) -> Result<()> {
        match target {
            Target::Queue { queue } => self.queue_must_exist(queue).await,
            Target::Webhook { connection: Some(c), .. } => self.connection_must_exist(c).await,
            Target::Webhook { .. } => Ok(()),
        }
    }

    pub(crate) fn secret_box(&self) -> Result<&SecretBox> {
        self.services.secrets.as_deref().ok_or_else(|| Error::Unavailable("no master key configured".into()))
    }

    pub async fn subscription_create(&self, ctx: &OpContext, new: NewSubscription) -> Result<SubscriptionWithSecret> {
        ctx.authorize(P::SubscriptionWrite)?;
        validate(&new.name, &new.pattern, &new.target)?;
        self.target_exists(&new.target).await?;
        let now = Timestamp::now();
        let sub = Subscription {
            id: tenancy_domain::ids::new_id("sub"),
            name: new.name,
            pattern: new.pattern,
            target: new.target,
            version: 1,
            created_at: now,
            updated_at: now,
        };
        let secret = WebhookSecret::generate().expose();
        let stored = StoredSubscription {
            subscription: sub.clone(),
            secret: Some(self.secret_box()?.seal(&sub.id, &secret)),
            previous_secret: None,
            previous_expires_at: None,
        };
        let audit = ctx.audit(
            "subscription.create",
            format!("subscription/{}", sub.id),
            None,
            json!({"name": sub.name, "pattern": sub.pattern, "target": sub.target}),
        );
        self.store().subscription_create(&stored, &Effects::none().with_audit(audit)).await?;
        Ok(SubscriptionWithSecret { subscription: sub, secret: Some(secret) })
    }

    pub async fn subscription_get(&self, ctx: &OpContext, id: &str) -> Result<Subscription> {
        ctx.authorize(P::SubscriptionRead)?;
        Ok(self.store().subscription_get(id).await?.subscription)
    }

    pub async fn subscription_list(&self, ctx: &OpContext, page: &PageRequest) -> Result<Page<Subscription>> {
        ctx.authorize(P::SubscriptionRead)?;
        Ok(self.store().subscription_list(page).await?.map(|s| s.subscription))
    }

    pub async fn subscription_patch(
        &self,
        ctx: &OpContext,
        id: &str,
        patch: SubscriptionPatch,
        if_match: Option<i64>,
    ) -> Result<Subscription> {
        ctx.authorize(P::SubscriptionWrite)?;
        let mut stored = self.store().subscription_get(id).await?;
        let version = stored.subscription.version;
        if let Some(expected) = if_match {
            if expected != version {
                return Err(Error::PreconditionFailed {
                    kind: "subscription",
                    id: id.into(),
                    expected,
                    found: version,
                });
            }
        }
        let s = &mut stored.subscription;
        let mut changed = Vec::new();
        if let Some(name) = patch.name {
            s.name = name;
            changed.push("name");
        }
        if let Some(pattern) = patch.pattern {
            s.pattern = pattern;
            changed.push("pattern");
        }
        if let Some(target) = patch.target {
            s.target = target;
            changed.push("target");
        }
        validate(&s.name, &s.pattern, &s.target)?;
        if changed.contains(&"target") {
            self.target_exists(&s.target).await?;
        }
        s.updated_at = Timestamp::now();
        let audit = ctx.audit("subscription.update", format!("subscription/{id}"), None, json!({"changed": changed}));
        let stored = self.store().subscription_update(&stored, version, &Effects::none().with_audit(audit)).await?;
        Ok(stored.subscription)
    }

    pub async fn subscription_delete(&self, ctx: &OpContext, id: &str) -> Result<()> {
        ctx.authorize(P::SubscriptionWrite)?;
        let audit = ctx.audit("subscription.delete", format!("subscription/{id}"), None, json!({}));
        self.store().subscription_delete(id, &Effects::none().with_audit(audit)).await
    }

    /// Replaces the signing secret; the old one keeps signing (beside the new one) for
    /// 24 hours so receivers can switch without dropping deliveries.
    pub async fn subscription_rotate_secret(&self, ctx: &OpContext, id: &str) -> Result<SubscriptionWithSecret> {
        ctx.authorize(P::SubscriptionWrite)?;
        let mut stored = self.store().subscription_get(id).await?;
        let version = stored.subscription.version;
        let secret = WebhookSecret::generate().expose();
        let now = Timestamp::now();
        stored.previous_secret = stored.secret.replace(self.secret_box()?.seal(id, &secret));
        stored.previous_expires_at = stored.previous_secret.as_ref().map(|_| now.plus_millis(ROTATION_OVERLAP_MS));
        stored.subscription.updated_at = now;
        let audit = ctx.audit(
            "subscription.rotate_secret",
            format!("subscription/{id}"),
            None,
            json!({"previous_expires_at": stored.previous_expires_at}),
        );
        let stored = self.store().subscription_update(&stored, version, &Effects::none().with_audit(audit)).await?;
        Ok(SubscriptionWithSecret { subscription: stored.subscription, secret: Some(secret) })
    }

    pub async fn delivery_list(
        &self,
        ctx: &OpContext,
        subscription_id: &str,
        status: Option<DeliveryStatus>,
        page: &PageRequest,
    ) -> Result<Page<Delivery>> {
        ctx.authorize(P::SubscriptionRead)?;
        self.store().subscription_get(subscription_id).await?;
        self.store().delivery_list(subscription_id, status, page).await
    }

    /// Queues a dead delivery again with a fresh attempt budget.
    pub async fn delivery_retry(&self, ctx: &OpContext, subscription_id: &str, delivery_id: &str) -> Result<Delivery> {
        ctx.authorize(P::SubscriptionWrite)?;
        let audit = ctx.audit(
            "delivery.retry",
            format!("subscription/{subscription_id}/delivery/{delivery_id}"),
            None,
            json!({}),
        );
        let fx = Effects::none().with_audit(audit);
        self.store().delivery_retry(subscription_id, delivery_id, Timestamp::now(), &fx).await?;
        self.store().delivery_get(subscription_id, delivery_id).await
    }

    /// Creates a delivery for every archived event with `from <= time < to` that the
    /// subscription's pattern matches; returns how many. Events are read from the
    /// database, and from the blob store's archive for the part of the range older than
    /// the database's oldest event (the pruner drops archived events past their
    /// retention); those are put back in the table, dispatched and archived, for their
    /// deliveries to name, and pruned again in a later pass.
    pub async fn subscription_replay(
        &self,
        ctx: &OpContext,
        subscription_id: &str,
        from: Timestamp,
        to: Timestamp,
    ) -> Result<u64> {
        ctx.authorize(P::SubscriptionWrite)?;
        if from >= to {
            return Err(Error::invalid("from must be before to"));
        }
        let sub = self.store().subscription_get(subscription_id).await?;
        let pattern = parse_pattern(&sub.subscription.pattern)?;
        let now = Timestamp::now();
        let mut deliveries = Vec::new();
        let too_many = || {
            Error::invalid(format!("the range holds more than {MAX_REPLAY} matching events; replay a shorter range"))
        };
        let mut seen = std::collections::HashSet::new();
        let mut after = 0;
        loop {
            let events = self.store().event_range(from, to, after, 1000).await?;
            let Some(last) = events.last() else { break };
            after = last.seq;
            for e in &events {
                seen.insert(e.event.id.clone());
                let value = serde_json::to_value(&e.event).map_err(Error::internal)?;
                if pattern.matches(&value) {
                    deliveries.push(NewDelivery::new(subscription_id, &e.event.id, now));
                }
            }
            if deliveries.len() > MAX_REPLAY {
                return Err(too_many());
            }
        }
        let oldest = self.store().events_oldest().await?;
        if let (Some(blobs), true) = (&self.services.blobs, oldest.is_none_or(|o| from < o)) {
            // Older than the database holds: the archive, up to the oldest event kept
            // (inclusive: events of that millisecond may have been pruned beside it).
            let until = oldest.map_or(to, |o| o.plus_millis(1).min(to));
            let mut restore = Vec::new();
            for e in crate::archive::ops::events_between(blobs, from, until).await? {
                if seen.contains(&e.id) {
                    continue;
                }
                let value = serde_json::to_value(&e).map_err(Error::internal)?;
                if pattern.matches(&value) {
                    deliveries.push(NewDelivery::new(subscription_id, &e.id, now));
                    restore.push(e);
                }
                if deliveries.len() > MAX_REPLAY {
                    return Err(too_many());
                }
            }
            self.store().events_restore(&restore).await?;
        }
        let audit = ctx.audit(
            "subscription.replay",
            format!("subscription/{subscription_id}"),
            None,
            json!({"from": from, "to": to, "count": deliveries.len()}),
        );
        self.store().delivery_create(&deliveries, &Effects::none().with_audit(audit)).await?;
        Ok(deliveries.len() as u64)
    }
}
