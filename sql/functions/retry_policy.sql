-- sql/functions/retry_policy.sql: Retry delays: the default backoff and the per-job retry policies stored as data.
-- The current definitions (CREATE OR REPLACE), applied by the migrator in the order of
-- manifest.txt and re-applied when this file changes.

-- backoff: the default delay before retry number `attempt` (1-based): exponential, 2^attempt
-- seconds capped at one hour, with ±25% jitter so failed batches do not retry in lock step.
CREATE OR REPLACE FUNCTION skiplock.backoff(attempt integer)
RETURNS interval
LANGUAGE sql
VOLATILE
AS $$
    SELECT make_interval(secs => least(3600, power(2, least(backoff.attempt, 20)))
                                 * (0.75 + random() * 0.5));
$$;

-- _check_retry_policy: validate a retry policy, raising 22023 with a clear message (naming the
-- job by its position) for the first problem; returns true when all is well. A policy is one of
--   {"kind": "fixed", "delay": s}
--   {"kind": "linear", "step": s, "cap": s}                         cap optional
--   {"kind": "exponential", "base": s, "factor": f, "cap": s, "jitter": b}   all but kind optional
-- with seconds between 0 and a year (365 days) and factor between 1 and 100.
CREATE OR REPLACE FUNCTION skiplock._check_retry_policy(policy jsonb, ord bigint DEFAULT NULL)
RETURNS boolean
LANGUAGE plpgsql
IMMUTABLE
AS $$
DECLARE
    kind    text;
    allowed text[];
    field   text;
BEGIN
    IF policy IS NULL THEN
        RETURN true;
    END IF;
    IF jsonb_typeof(policy) <> 'object' THEN
        PERFORM skiplock._invalid(format('retry_policy must be a JSON object, got %s%s',
                                         jsonb_typeof(policy), skiplock._at(ord)));
    END IF;
    kind := policy ->> 'kind';
    allowed := CASE kind WHEN 'fixed' THEN ARRAY['kind', 'delay']
                         WHEN 'linear' THEN ARRAY['kind', 'step', 'cap']
                         WHEN 'exponential' THEN ARRAY['kind', 'base', 'factor', 'cap', 'jitter'] END;
    IF allowed IS NULL THEN
        PERFORM skiplock._invalid(
            format('retry_policy kind must be fixed, linear or exponential, got %s%s',
                   skiplock._show(kind), skiplock._at(ord)));
    END IF;
    FOR field IN SELECT k FROM jsonb_object_keys(policy) AS k LOOP
        IF NOT field = ANY (allowed) THEN
            PERFORM skiplock._invalid(format('retry_policy of kind %s has no field %s%s',
                                             kind, skiplock._show(field), skiplock._at(ord)),
                                      'fields: ' || array_to_string(allowed, ', '));
        END IF;
        CONTINUE WHEN field = 'kind';
        IF field = 'jitter' THEN
            IF jsonb_typeof(policy -> field) <> 'boolean' THEN
                PERFORM skiplock._invalid(format('retry_policy jitter must be true or false%s', skiplock._at(ord)));
            END IF;
        ELSIF jsonb_typeof(policy -> field) <> 'number' THEN
            PERFORM skiplock._invalid(format('retry_policy %s must be a number, got %s%s',
                                             field, jsonb_typeof(policy -> field), skiplock._at(ord)));
        ELSIF field = 'factor' AND (policy ->> field)::numeric NOT BETWEEN 1 AND 100 THEN
            PERFORM skiplock._invalid(format('retry_policy factor must be between 1 and 100, got %s%s',
                                             policy ->> field, skiplock._at(ord)));
        ELSIF field <> 'factor' AND (policy ->> field)::numeric NOT BETWEEN 0 AND 31536000 THEN
            PERFORM skiplock._invalid(
                format('retry_policy %s must be between 0 and 31536000 seconds (a year), got %s%s',
                       field, policy ->> field, skiplock._at(ord)));
        END IF;
    END LOOP;
    IF kind = 'fixed' AND NOT policy ? 'delay' THEN
        PERFORM skiplock._invalid(format('retry_policy of kind fixed needs a delay%s', skiplock._at(ord)));
    END IF;
    IF kind = 'linear' AND NOT policy ? 'step' THEN
        PERFORM skiplock._invalid(format('retry_policy of kind linear needs a step%s', skiplock._at(ord)));
    END IF;
    RETURN true;
END;
$$;

-- retry_delay: the delay a retry policy gives before the retry that follows failed attempt
-- `attempt` (1-based); NULL for a NULL policy. fixed: `delay` every time. linear: attempt x
-- `step`, at most `cap`. exponential: base x factor^(attempt - 1) (defaults 1 s, 2), at most
-- `cap` (default an hour); with jitter (the default) a uniformly random delay between half of
-- that and all of it, so jobs that failed together do not retry together.
CREATE OR REPLACE FUNCTION skiplock.retry_delay(policy jsonb, attempt integer)
RETURNS interval
LANGUAGE sql
VOLATILE
AS $$
    WITH p AS (
        SELECT policy ->> 'kind' AS kind,
               (policy ->> 'delay')::double precision AS delay,
               (policy ->> 'step')::double precision AS step,
               COALESCE((policy ->> 'base')::double precision, 1) AS base,
               COALESCE((policy ->> 'factor')::double precision, 2) AS factor,
               (policy ->> 'cap')::double precision AS cap,
               COALESCE((policy ->> 'jitter')::boolean, true) AS jitter,
               greatest(COALESCE(attempt, 1), 1) AS n
    ),
    raw AS (
        SELECT CASE p.kind
                   WHEN 'fixed' THEN p.delay
                   WHEN 'linear' THEN least(p.step * p.n, COALESCE(p.cap, 'Infinity'))
                   -- compared in the log domain: factor^n overflows long before attempts run out
                   WHEN 'exponential' THEN
                       CASE WHEN p.base = 0 THEN 0
                            WHEN ln(p.base) + (p.n - 1) * ln(p.factor) >= ln(greatest(COALESCE(p.cap, 3600), 1e-9))
                                THEN COALESCE(p.cap, 3600)
                            ELSE p.base * power(p.factor, p.n - 1) END
               END AS secs,
               p.kind = 'exponential' AND p.jitter AS jittered
        FROM p
    )
    SELECT make_interval(secs => CASE WHEN r.jittered THEN r.secs * (0.5 + random() * 0.5) ELSE r.secs END)
    FROM raw AS r
    WHERE policy IS NOT NULL;
$$;
