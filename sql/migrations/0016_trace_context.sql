-- 0016_trace_context: carry a W3C trace context (traceparent) from the producer to the worker.
--
-- skiplock.job.trace_parent defaults to the transaction's skiplock.traceparent setting, so a
-- producer that wants its job traced runs SELECT set_config('skiplock.traceparent', '00-…', true)
-- before enqueueing in the same transaction (the Python client does it when OpenTelemetry is on),
-- and every enqueue path, from any language or a trigger, picks it up without new parameters.
-- The worker reads it with the claimed job and continues the trace.
--
-- Migrations note: adds a nullable column to skiplock.job; its default calls only a STABLE
-- function, so the column is added without rewriting the table (existing rows read NULL).

ALTER TABLE skiplock.job
    ADD COLUMN trace_parent text
        DEFAULT NULLIF(left(current_setting('skiplock.traceparent', true), 256), '');
