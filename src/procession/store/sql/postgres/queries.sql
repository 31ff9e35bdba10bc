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

-- Lists of keys are joined as unnest(), not filtered with = ANY(:ids): these statements are
-- prepared, and a generic plan cannot hash a parameter array, so a sequential scan checked
-- every row against every key (500 keys x 5,000 events: 30 ms instead of 1 ms, measured).
-- The events of a list of streams are read stream by stream through the (stream_id,
-- version) index: OFFSET 0 keeps the planner from flattening the lateral subquery into a
-- hash join over the whole log, which it chose with stale statistics (2 ms for 3 streams).
-- name: inbox_of_instances
SELECT i.process, i.instance_id, i.id, i.routing, i.type, i.schema_version, i.data, i.metadata,
  i.attempts, i.available_at, i.parked, i.first_failed_at, i.error
FROM unnest(CAST(:ids AS text[])) AS k(instance_id) JOIN inbox i USING (instance_id)
ORDER BY i.id;

-- name: claim_handoff
-- As the generic one, with the instances locked (SKIP LOCKED: one a worker is running steps
-- of gets its deliveries through the inbox).
SELECT p.process, p.instance_id, p.status, p.state, p.version, p.last_position, p.seen, p.timers,
  p.wait_until
FROM unnest(CAST(:ids AS text[])) AS k(instance_id)
JOIN process_instances p ON p.process = :process AND p.instance_id = k.instance_id
WHERE p.parked = 0 AND p.wait_until = 0
AND NOT EXISTS (SELECT 1 FROM inbox i WHERE i.process = p.process AND i.instance_id = p.instance_id)
AND NOT EXISTS (SELECT 1 FROM blocked_instances b
                WHERE b.process = p.process AND b.instance_id = p.instance_id)
FOR UPDATE OF p SKIP LOCKED;

-- name: existing_instances
SELECT p.instance_id FROM unnest(CAST(:ids AS text[])) AS k(instance_id)
JOIN process_instances p ON p.process = :process AND p.instance_id = k.instance_id;

-- name: read_streams
SELECT e.position, e.stream_id, e.version, e.type, e.schema_version, e.data, e.metadata
FROM unnest(CAST(:ids AS text[])) AS k(stream_id)
CROSS JOIN LATERAL (
  SELECT position, stream_id, version, type, schema_version, data, metadata
  FROM events WHERE events.stream_id = k.stream_id ORDER BY version OFFSET 0
) e
ORDER BY e.stream_id, e.version;

-- name: stream_versions
SELECT k.stream_id, v.version
FROM unnest(CAST(:ids AS text[])) AS k(stream_id)
CROSS JOIN LATERAL (
  SELECT MAX(version) AS version FROM events WHERE events.stream_id = k.stream_id
) v
WHERE v.version IS NOT NULL;

-- name: repeatable_read
SET TRANSACTION ISOLATION LEVEL REPEATABLE READ;

-- name: lock_batch_control
-- An operator's change waits for the worker stepping the batch (no SKIP LOCKED): the worker
-- then sees the change the next time it locks the row.
SELECT batch_id, status, paused, max_in_flight, rate_items, rate_per_seconds
FROM batches WHERE batch_id = :batch_id FOR UPDATE;
