-- The W3C traceparent of the broker's span that accepted the message: a child of the
-- sender's trace (the request's traceparent, else the CloudEvent's), and the parent of the
-- relay's span for each delivery. Working state for tracing, not part of the record: the
-- CloudEvent's own `traceparent` stays in `traceparent`, checked against the body.
ALTER TABLE messages ADD COLUMN trace_context TEXT;
