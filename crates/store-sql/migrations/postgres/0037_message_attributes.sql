-- Queue message attributes (issue 18, docs/queues.md "Attributes"): string
-- attributes as a JSON object, returned on receive and peek and kept through a
-- dead-lettering and a redrive; `traceparent` carries the sender's trace context.
-- NULL when a message has none.
ALTER TABLE queue_messages ADD COLUMN attributes TEXT;
