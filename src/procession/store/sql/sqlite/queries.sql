-- SQLite-only variants. One process owns a SQLite store; BEGIN IMMEDIATE already serialises
-- writers, so the claims and locks of the PostgreSQL adapter are plain reads here.

-- name: lock_batch
SELECT batch_id, owner_process, owner_instance, source, params, template, fence,
  max_in_flight, page_size, cursor, status, total, created_at, metadata, completed_at,
  superseded_by
FROM batches WHERE batch_id = :batch_id AND status IN ('enumerating', 'running', 'cancelling');

-- name: inbox_of_instances
SELECT process, instance_id, id, routing, type, schema_version, data, metadata, attempts,
  available_at, parked, first_failed_at, error
FROM inbox WHERE instance_id IN (SELECT value FROM json_each(:ids)) ORDER BY id;

-- name: read_streams
SELECT position, stream_id, version, type, schema_version, data, metadata
FROM events WHERE stream_id IN (SELECT value FROM json_each(:ids)) ORDER BY stream_id, version;

-- name: stream_versions
SELECT stream_id, MAX(version) FROM events
WHERE stream_id IN (SELECT value FROM json_each(:ids)) GROUP BY stream_id;

-- name: repeatable_read
-- A SQLite transaction reads one snapshot already.
SELECT 1;

-- name: claim_plan
SELECT 1;

-- name: lock_batch_control
-- BEGIN IMMEDIATE has serialised the writers already.
SELECT batch_id, status, paused, max_in_flight, rate_items, rate_per_seconds
FROM batches WHERE batch_id = :batch_id;

-- Batch control (issue 10). Kept here, written alike in both dialects, except for the lock.

-- name: batch_control
SELECT batch_id, status, paused, max_in_flight, rate_items, rate_per_seconds
FROM batches WHERE batch_id = :batch_id;

-- name: set_batch_paused
UPDATE batches SET paused = :paused
WHERE batch_id = :batch_id AND status IN ('enumerating', 'running', 'cancelling');

-- name: set_batch_throttle
UPDATE batches SET max_in_flight = :max_in_flight, rate_items = :rate_items,
  rate_per_seconds = :rate_per_seconds
WHERE batch_id = :batch_id AND status IN ('enumerating', 'running', 'cancelling');

-- name: set_batch_rate_at_start
-- Only the row this start inserted (a batch started again keeps what an operator set).
UPDATE batches SET rate_items = :rate_items, rate_per_seconds = :rate_per_seconds
WHERE batch_id = :batch_id AND created_at = :now AND owner_instance = :owner_instance
  AND status = 'enumerating' AND total = 0 AND rate_items IS NULL;

-- name: dispatch_item
UPDATE batch_items SET status = 'dispatched', detail = NULL, updated_at = :now,
  dispatched_at = :now
WHERE batch_id = :batch_id AND target_id = :target_id AND status = 'pending';

-- name: count_dispatched_since
SELECT COUNT(*) FROM batch_items
WHERE batch_id = :batch_id AND dispatched_at IS NOT NULL AND dispatched_at > :since;

-- name: first_dispatched_since
SELECT MIN(dispatched_at) FROM batch_items
WHERE batch_id = :batch_id AND dispatched_at IS NOT NULL AND dispatched_at > :since;
