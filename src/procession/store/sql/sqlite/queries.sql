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
