-- Queues (the SQS role). A message is visible when visible_at <= now; received ones
-- carry in_flight = 1 and the nonce of their current receipt; a dead-lettered one
-- remembers its source_queue for the redrive.
CREATE TABLE queues (
    name TEXT PRIMARY KEY,
    visibility_timeout_s BIGINT NOT NULL,
    max_receive_count BIGINT,
    dead_letter_queue TEXT,
    delay_s BIGINT NOT NULL,
    retention_s BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE INDEX queues_dead_letter ON queues (dead_letter_queue);

CREATE TABLE queue_messages (
    seq BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    id TEXT NOT NULL,
    queue TEXT NOT NULL,
    body TEXT NOT NULL,
    group_id TEXT,
    visible_at BIGINT NOT NULL,
    in_flight BIGINT NOT NULL DEFAULT 0,
    nonce TEXT,
    receive_count BIGINT NOT NULL DEFAULT 0,
    source_queue TEXT,
    sent_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL
);
-- Ungrouped messages by visibility; grouped ones by group and send order (the head
-- of a group is its lowest seq).
CREATE INDEX queue_messages_ready ON queue_messages (queue, visible_at, seq) WHERE group_id IS NULL;
CREATE INDEX queue_messages_groups ON queue_messages (queue, group_id, seq) WHERE group_id IS NOT NULL;
CREATE INDEX queue_messages_source ON queue_messages (source_queue) WHERE source_queue IS NOT NULL;
CREATE INDEX queue_messages_expiry ON queue_messages (expires_at);

CREATE TABLE queue_dedup (
    queue TEXT NOT NULL,
    dedup_id TEXT NOT NULL,
    message_id TEXT NOT NULL,
    expires_at BIGINT NOT NULL,
    PRIMARY KEY (queue, dedup_id)
);
CREATE INDEX queue_dedup_expiry ON queue_dedup (expires_at);
