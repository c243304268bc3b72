-- pgbench script: claim up to 100 jobs and complete them, in one statement (the database side of
-- a worker's loop, without any client work in between).
--   pgbench -n -f benchmarks/pgbench/drain.sql -T 20 -c 2 DBNAME   (after filling the queue)
WITH c AS (
    SELECT id, lease_token FROM skiplock.claim('{bench}', '00000000-0000-4000-8000-000000000000', 100)
)
SELECT count(*) FROM skiplock.complete(ARRAY(SELECT id FROM c), ARRAY(SELECT lease_token FROM c));
