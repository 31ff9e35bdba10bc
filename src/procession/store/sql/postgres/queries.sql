-- PostgreSQL-only variants: claims take row locks with SKIP LOCKED so that any number of
-- worker processes share the work, each row (or whole process instance) going to one of them.

-- name: claim_commands
SELECT command_id, type, schema_version, data, metadata, attempts, first_failed_at, error
FROM commands
WHERE status = 'pending' AND available_at <= :now ORDER BY available_at, seq LIMIT :limit
FOR UPDATE SKIP LOCKED;

-- name: claim_plan
-- The inbox changes faster than autovacuum analyses it: with statistics from when it was
-- small, the planner reads every ready delivery and sorts them all (2.5 s at 90k deliveries)
-- instead of walking the (id) index and stopping after :scan rows (5 ms). The claim's
-- transaction asks for the ordered walk.
SET LOCAL enable_bitmapscan = off;

-- name: claim_instances
-- Whole instances are claimed (row lock held to commit), so two workers never run steps of
-- one instance at once; SKIP LOCKED lets the second worker take the next instances instead.
SELECT p.process, p.instance_id, p.status, p.state, p.version, p.last_position, p.seen, p.timers,
  p.wait_until
FROM process_instances p
WHERE (p.process, p.instance_id) IN (
  SELECT i.process, i.instance_id FROM inbox i
  WHERE i.parked = 0 AND i.available_at <= :now
  AND NOT EXISTS (SELECT 1 FROM blocked_instances b
                  WHERE b.process = i.process AND b.instance_id = i.instance_id
                  AND (b.parked = 1 OR b.until > :now))
  ORDER BY i.id LIMIT :scan)
AND p.parked = 0 AND p.wait_until <= :now
LIMIT :limit
FOR UPDATE OF p SKIP LOCKED;

-- name: claim_timers
SELECT process, instance_id, name, due_at, type, schema_version, data, metadata FROM timers
WHERE due_at <= :now ORDER BY due_at LIMIT :limit FOR UPDATE SKIP LOCKED;

-- name: lock_batch
-- The row as it is once locked: a row read before the lock may be stale (another worker
-- moved its cursor, a step cancelled it).
SELECT batch_id, owner_process, owner_instance, source, params, template, fence,
  max_in_flight, page_size, cursor, status, total, created_at, metadata, completed_at,
  superseded_by
FROM batches WHERE batch_id = :batch_id AND status IN ('enumerating', 'running', 'cancelling')
FOR UPDATE SKIP LOCKED;

-- name: inbox_of_instances
SELECT process, instance_id, id, routing, type, schema_version, data, metadata, attempts,
  available_at, parked, first_failed_at, error
FROM inbox WHERE instance_id = ANY(:ids) ORDER BY id;

-- name: read_streams
SELECT position, stream_id, version, type, schema_version, data, metadata
FROM events WHERE stream_id = ANY(:ids) ORDER BY stream_id, version;

-- name: stream_versions
SELECT stream_id, MAX(version) FROM events WHERE stream_id = ANY(:ids) GROUP BY stream_id;

-- name: repeatable_read
SET TRANSACTION ISOLATION LEVEL REPEATABLE READ;
