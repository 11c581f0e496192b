-- Traces (issue 18, docs/operations.md "Traces"): the W3C traceparent of the span
-- that started an execution (an API request's), so the spans of its steps join that
-- trace on whichever replica runs them, also after a restart. NULL when the server
-- exported no traces then.
ALTER TABLE executions ADD COLUMN trace_context TEXT;

-- The traceparent of the span that emitted an event: its webhook deliveries continue
-- that trace. NULL for events emitted without one.
ALTER TABLE events ADD COLUMN trace_context TEXT;
