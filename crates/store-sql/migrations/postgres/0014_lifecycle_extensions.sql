-- Issue 12: an extensible lifecycle.
-- A plan's own lifecycle state machines: `{provision?, change_plan?, offboard?}` as
-- JSON, NULL when the plan uses the built-in ones.
ALTER TABLE plans ADD COLUMN workflows TEXT;
-- Hooks' Standard Webhooks signing secrets, sealed with the master key (associated data
-- `hook/<name>`); the one before a rotation keeps signing until previous_expires_at.
-- Hooks created before this migration have none: one is generated at their first call
-- or their next PUT (docs/hooks.md). A queue hook's queue is in the record (`hook`).
ALTER TABLE hooks ADD COLUMN secret TEXT;
ALTER TABLE hooks ADD COLUMN previous_secret TEXT;
ALTER TABLE hooks ADD COLUMN previous_expires_at BIGINT;
