-- pgbench script: one batch of 100 jobs per transaction through skiplock.enqueue_many.
--   pgbench -n -f benchmarks/pgbench/enqueue.sql -T 20 -c 2 DBNAME   (after `skiplock migrate`)
SELECT count(*) FROM skiplock.enqueue_many('{bench}', '{noop}', array_fill('{}'::jsonb, ARRAY[100]));
