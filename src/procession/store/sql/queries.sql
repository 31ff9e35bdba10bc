-- Named queries shared by both backends. Parameters are `:name`; the PostgreSQL adapter
-- rewrites them to psycopg's `%(name)s`. A backend's own queries.sql overrides a name here.

-- name: stream_version
SELECT COALESCE(MAX(version), 0) FROM events WHERE stream_id = :stream_id;

-- name: read_stream
SELECT position, stream_id, version, type, schema_version, data, metadata
FROM events WHERE stream_id = :stream_id AND version > :after ORDER BY version;

-- name: read_all
SELECT position, stream_id, version, type, schema_version, data, metadata
FROM events WHERE position >= :start ORDER BY position LIMIT :limit;

-- name: head_position
SELECT COALESCE(MAX(position), 0) FROM events;

-- name: get_meta
SELECT value FROM procession_meta WHERE key = :key;

-- name: set_meta
INSERT INTO procession_meta (key, value) VALUES (:key, :value)
ON CONFLICT (key) DO UPDATE SET value = excluded.value;

-- name: get_checkpoint
SELECT position FROM checkpoints WHERE name = :name;

-- name: set_checkpoint
INSERT INTO checkpoints (name, position) VALUES (:name, :position)
ON CONFLICT (name) DO UPDATE SET position = excluded.position;

-- name: delete_checkpoint
DELETE FROM checkpoints WHERE name = :name;

-- name: find_command
SELECT status, result, error, type FROM commands WHERE command_id = :command_id;

-- name: insert_command
INSERT INTO commands (command_id, type, schema_version, data, metadata, status, available_at)
VALUES (:command_id, :type, :schema_version, :data, :metadata, :status, :available_at)
ON CONFLICT (command_id) DO NOTHING;

-- name: insert_attempted_command
INSERT INTO commands (command_id, type, schema_version, data, metadata, status, available_at,
  attempts, error, first_failed_at)
VALUES (:command_id, :type, :schema_version, :data, :metadata, :status, :available_at,
  1, :error, :first_failed_at)
ON CONFLICT (command_id) DO NOTHING;

-- name: finish_command
UPDATE commands SET status = :status, result = :result, error = :error,
  attempts = attempts + 1
WHERE command_id = :command_id;

-- name: retry_command
UPDATE commands SET attempts = attempts + 1, error = :error, available_at = :available_at,
  status = :status, first_failed_at = COALESCE(first_failed_at, :now)
WHERE command_id = :command_id;

-- name: claim_commands
SELECT command_id, type, schema_version, data, metadata, attempts, first_failed_at, error
FROM commands
WHERE status = 'pending' AND available_at <= :now ORDER BY available_at, seq LIMIT :limit;

-- name: next_command_due
SELECT MIN(available_at) FROM commands WHERE status = 'pending' AND available_at > :now;

-- name: pending_commands
SELECT 1 FROM commands WHERE status = 'pending' LIMIT 1;

-- name: parked_commands
SELECT command_id, type, data, metadata, attempts, error FROM commands
WHERE status = 'parked' ORDER BY seq;

-- name: unpark_command
UPDATE commands SET status = 'pending', available_at = :now, attempts = 0, first_failed_at = NULL
WHERE command_id = :command_id AND status = 'parked';

-- name: skip_command
UPDATE commands SET status = 'skipped' WHERE command_id = :command_id AND status = 'parked';

-- name: command_metadata
SELECT metadata FROM commands WHERE command_id = :command_id;

-- name: ensure_instance
INSERT INTO process_instances (process, instance_id, status, state, version, updated_at)
VALUES (:process, :instance_id, 'new', NULL, 0, :now)
ON CONFLICT (process, instance_id) DO NOTHING;

-- name: claim_handoff
-- Instances of one process that can take deliveries straight from the router, in the log
-- stage's own transaction: not blocked, and nothing of theirs queued in the inbox (which
-- would have to run first).
SELECT p.process, p.instance_id, p.status, p.state, p.version, p.last_position, p.seen, p.timers,
  p.wait_until
FROM process_instances p
WHERE p.process = :process AND p.instance_id IN (SELECT value FROM json_each(:ids))
AND p.parked = 0 AND p.wait_until = 0
AND NOT EXISTS (SELECT 1 FROM inbox i WHERE i.process = p.process AND i.instance_id = p.instance_id)
AND NOT EXISTS (SELECT 1 FROM blocked_instances b
                WHERE b.process = p.process AND b.instance_id = p.instance_id);

-- name: insert_failed_inbox
INSERT INTO inbox (process, instance_id, routing, type, schema_version, data, metadata, available_at,
  attempts, parked, error, first_failed_at)
VALUES (:process, :instance_id, :routing, :type, :schema_version, :data, :metadata, :available_at,
  1, :parked, :error, :first_failed_at);

-- name: insert_inbox
INSERT INTO inbox (process, instance_id, routing, type, schema_version, data, metadata, available_at)
VALUES (:process, :instance_id, :routing, :type, :schema_version, :data, :metadata, :available_at);

-- name: claim_instances
-- Instances with deliveries ready, oldest delivery first. Scanning the inbox in id order with a
-- LIMIT (not GROUP BY over the whole inbox) keeps a claim cheap when a million are queued;
-- instances that are parked or waiting out a retry are left out of the scan itself, so they
-- can never fill the window and starve the others.
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
LIMIT :limit;

-- name: delete_inbox
DELETE FROM inbox WHERE id = :id;

-- name: fail_inbox
UPDATE inbox SET attempts = attempts + 1, error = :error, available_at = :available_at,
  parked = :parked, first_failed_at = COALESCE(first_failed_at, :now)
WHERE id = :id;

-- name: next_inbox_due
-- When an instance waiting out a retry may run again (parked ones wait for an operator).
SELECT MIN(until) FROM blocked_instances WHERE until > :now AND parked = 0;

-- name: block_instance
INSERT INTO blocked_instances (process, instance_id, parked, until)
VALUES (:process, :instance_id, :parked, :until)
ON CONFLICT (process, instance_id) DO UPDATE SET parked = excluded.parked, until = excluded.until;

-- name: unblock_instance
DELETE FROM blocked_instances WHERE process = :process AND instance_id = :instance_id;

-- name: ready_inbox
SELECT 1 FROM inbox i
WHERE i.parked = 0 AND i.available_at <= :now
AND NOT EXISTS (SELECT 1 FROM blocked_instances b
                WHERE b.process = i.process AND b.instance_id = i.instance_id
                AND (b.parked = 1 OR b.until > :now))
LIMIT 1;

-- name: save_instance
UPDATE process_instances SET status = :status, state = :state, version = :version,
  parked = :parked, last_position = :last_position, seen = :seen, timers = :timers,
  wait_until = :wait_until, updated_at = :now
WHERE process = :process AND instance_id = :instance_id;

-- name: create_instance
-- An instance made and first saved in one transaction (a handed-off start): one write
-- instead of an `ensure_instance` and a `save_instance`.
INSERT INTO process_instances (process, instance_id, status, state, version, parked,
  last_position, seen, timers, wait_until, updated_at)
VALUES (:process, :instance_id, :status, :state, :version, :parked, :last_position, :seen,
  :timers, :wait_until, :now)
ON CONFLICT (process, instance_id) DO UPDATE SET status = excluded.status,
  state = excluded.state, version = excluded.version, parked = excluded.parked,
  last_position = excluded.last_position, seen = excluded.seen, timers = excluded.timers,
  wait_until = excluded.wait_until, updated_at = excluded.updated_at;

-- name: existing_instances
SELECT instance_id FROM process_instances
WHERE process = :process AND instance_id IN (SELECT value FROM json_each(:ids));

-- name: get_instance
SELECT status, state, version, updated_at FROM process_instances
WHERE process = :process AND instance_id = :instance_id;

-- name: parked_inbox
SELECT id, process, instance_id, type, data, metadata, attempts, error FROM inbox
WHERE parked = 1 ORDER BY id;

-- name: unpark_inbox
UPDATE inbox SET parked = 0, attempts = 0, available_at = :now, first_failed_at = NULL
WHERE id = :id AND parked = 1;

-- name: skip_inbox
DELETE FROM inbox WHERE id = :id AND parked = 1;

-- name: set_timer
INSERT INTO timers (process, instance_id, name, due_at, type, schema_version, data, metadata)
VALUES (:process, :instance_id, :name, :due_at, :type, :schema_version, :data, :metadata)
ON CONFLICT (process, instance_id, name) DO UPDATE SET due_at = excluded.due_at,
  type = excluded.type, schema_version = excluded.schema_version, data = excluded.data,
  metadata = excluded.metadata;

-- name: cancel_timer
DELETE FROM timers WHERE process = :process AND instance_id = :instance_id AND name = :name;

-- name: cancel_all_timers
DELETE FROM timers WHERE process = :process AND instance_id = :instance_id;

-- name: claim_timers
SELECT process, instance_id, name, due_at, type, schema_version, data, metadata FROM timers
WHERE due_at <= :now ORDER BY due_at LIMIT :limit;

-- name: delete_timer
DELETE FROM timers WHERE process = :process AND instance_id = :instance_id AND name = :name
  AND due_at = :due_at;

-- name: next_timer_due
SELECT MIN(due_at) FROM timers WHERE due_at > :now;

-- name: any_timer
SELECT 1 FROM timers LIMIT 1;

-- name: list_timers
SELECT name, due_at, type FROM timers WHERE process = :process AND instance_id = :instance_id
ORDER BY due_at;

-- name: insert_batch
INSERT INTO batches (batch_id, owner_process, owner_instance, source, params, template, fence,
  max_in_flight, page_size, cursor, status, total, created_at, metadata)
VALUES (:batch_id, :owner_process, :owner_instance, :source, :params, :template, :fence,
  :max_in_flight, :page_size, NULL, 'enumerating', 0, :now, :metadata)
ON CONFLICT (batch_id) DO NOTHING;

-- name: active_batches
SELECT batch_id, owner_process, owner_instance, source, params, template, fence,
  max_in_flight, page_size, cursor, status, total, created_at, metadata, completed_at,
  superseded_by
FROM batches WHERE status IN ('enumerating', 'running', 'cancelling') ORDER BY created_at, batch_id;

-- name: get_batch
SELECT batch_id, owner_process, owner_instance, source, params, template, fence,
  max_in_flight, page_size, cursor, status, total, created_at, metadata, completed_at,
  superseded_by
FROM batches WHERE batch_id = :batch_id;

-- name: list_batches
SELECT batch_id FROM batches ORDER BY created_at DESC, batch_id DESC LIMIT :limit;

-- name: list_batches_after
-- The page after batch :after in the same order (newest first): a cursor that holds while
-- new batches start.
SELECT b.batch_id FROM batches b, batches c
WHERE c.batch_id = :after
  AND (b.created_at < c.created_at OR (b.created_at = c.created_at AND b.batch_id < c.batch_id))
ORDER BY b.created_at DESC, b.batch_id DESC LIMIT :limit;

-- name: advance_batch_cursor
UPDATE batches SET cursor = :cursor, total = total + :added, status = :status
WHERE batch_id = :batch_id AND status = 'enumerating';

-- name: insert_batch_item
INSERT INTO batch_items (batch_id, target_id, status, updated_at)
VALUES (:batch_id, :target_id, 'pending', :now)
ON CONFLICT (batch_id, target_id) DO NOTHING;

-- name: count_in_flight
SELECT COUNT(*) FROM batch_items WHERE batch_id = :batch_id AND status = 'dispatched';

-- name: pending_items
SELECT target_id FROM batch_items WHERE batch_id = :batch_id AND status = 'pending'
ORDER BY target_id LIMIT :limit;

-- name: set_item_status
UPDATE batch_items SET status = :status, detail = :detail, updated_at = :now
WHERE batch_id = :batch_id AND target_id = :target_id AND status = :from_status;

-- name: await_item
UPDATE batch_items SET status = 'awaiting', detail = NULL, updated_at = :now,
  awaiting_after = :after
WHERE batch_id = :batch_id AND target_id = :target_id AND status = 'dispatched';

-- name: finish_open_items
-- Only items whose command ran before the outcome event was written: one written before
-- (the item still 'dispatched', or awaiting since a later position) belongs to an earlier
-- episode of the target, not to this item.
UPDATE batch_items SET status = :status, detail = :detail, updated_at = :now
WHERE target_id = :target_id AND status = 'awaiting'
AND COALESCE(awaiting_after, 0) < :position;

-- name: batch_has_open_items
SELECT 1 FROM batch_items
WHERE batch_id = :batch_id AND status IN ('pending', 'dispatched', 'awaiting') LIMIT 1;

-- name: batch_counts
SELECT status, COUNT(*) FROM batch_items WHERE batch_id = :batch_id GROUP BY status;

-- name: batch_last_update
SELECT MIN(updated_at), MAX(updated_at) FROM batch_items
WHERE batch_id = :batch_id AND status IN ('done', 'failed', 'skipped');

-- name: cancel_pending_items
UPDATE batch_items SET status = 'cancelled', updated_at = :now
WHERE batch_id = :batch_id AND status = 'pending'
  AND EXISTS (SELECT 1 FROM batches b WHERE b.batch_id = :batch_id
              AND b.status IN ('enumerating', 'running'));

-- name: finish_batch
UPDATE batches SET status = :status, completed_at = :now
WHERE batch_id = :batch_id AND status IN ('enumerating', 'running', 'cancelling');

-- name: set_batch_status
-- Only a batch still at work can be cancelled: a completed one stays completed.
UPDATE batches SET status = :status, superseded_by = :superseded_by
WHERE batch_id = :batch_id AND status IN ('enumerating', 'running');

-- name: get_snapshot
SELECT version, state FROM snapshots WHERE stream_id = :stream_id;

-- name: save_snapshot
INSERT INTO snapshots (stream_id, version, state) VALUES (:stream_id, :version, :state)
ON CONFLICT (stream_id) DO UPDATE SET version = excluded.version, state = excluded.state;

-- name: resume_instance
UPDATE process_instances SET parked = 0, wait_until = 0, updated_at = :now
WHERE process = :process AND instance_id = :instance_id;

-- name: all_checkpoints
SELECT name, position FROM checkpoints;

-- name: insert_event_row
-- Positional: binding six values by position spares building a dict per event.
INSERT INTO events (stream_id, version, type, schema_version, data, metadata)
VALUES (?, ?, ?, ?, ?, ?);

-- name: park_instance
UPDATE process_instances SET parked = 1, updated_at = :now
WHERE process = :process AND instance_id = :instance_id;

-- name: raise_last_position
-- A skipped event counts as handled by its instance: a redelivery of it is dropped.
UPDATE process_instances SET last_position = :position
WHERE process = :process AND instance_id = :instance_id AND last_position < :position;

-- name: parked_delivery
SELECT id, process, instance_id, type, data, metadata, attempts, error FROM inbox
WHERE id = :id AND parked = 1;

-- name: consumer_positions
-- Every consumer's checkpoint and failure in one round trip (a log stage reads both): rows of
-- kind 'c' are checkpoints (name, position), rows of kind 'f' failures.
SELECT 'c' AS kind, name, position, 0 AS attempts, 0.0 AS first_failed_at, '' AS error,
  0 AS parked, 0.0 AS until
FROM checkpoints
UNION ALL
SELECT 'f', name, position, attempts, first_failed_at, error, parked, until
FROM consumer_failures;

-- name: consumer_failures
SELECT name, position, attempts, first_failed_at, error, parked, until FROM consumer_failures
ORDER BY name;

-- name: record_consumer_failure
INSERT INTO consumer_failures (name, position, attempts, first_failed_at, error, parked, until)
VALUES (:name, :position, :attempts, :now, :error, :parked, :until)
ON CONFLICT (name) DO UPDATE SET position = excluded.position, attempts = excluded.attempts,
  first_failed_at = excluded.first_failed_at, error = excluded.error, parked = excluded.parked,
  until = excluded.until;

-- name: clear_consumer_failure
DELETE FROM consumer_failures WHERE name = :name;

-- name: next_consumer_due
SELECT MIN(until) FROM consumer_failures WHERE until > :now AND parked = 0;

-- name: count_inbox
SELECT COUNT(*) FROM inbox;

-- name: count_pending_commands
SELECT COUNT(*) FROM commands WHERE status = 'pending';

-- name: count_timers
SELECT COUNT(*) FROM timers;

-- name: list_commands
SELECT type, schema_version, data FROM commands ORDER BY seq;

-- name: active_batch_ids
SELECT batch_id FROM batches WHERE status IN ('enumerating', 'running', 'cancelling')
ORDER BY created_at, batch_id;

-- name: worker_seen
INSERT INTO workers (worker_id, host, pid, started_at, seen_at, rounds)
VALUES (:worker_id, :host, :pid, :now, :now, :rounds)
ON CONFLICT (worker_id) DO UPDATE SET seen_at = excluded.seen_at, rounds = excluded.rounds,
  stopped_at = NULL;

-- name: worker_stopped
UPDATE workers SET seen_at = :now, stopped_at = :now, rounds = :rounds
WHERE worker_id = :worker_id;

-- name: prune_workers
DELETE FROM workers WHERE seen_at < :before;

-- name: list_workers
SELECT worker_id, host, pid, started_at, seen_at, stopped_at, rounds FROM workers
ORDER BY started_at, worker_id;

-- Batch control (issue 10): the same SQL on both backends.

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
