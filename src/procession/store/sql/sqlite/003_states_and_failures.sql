-- procession schema v3 (SQLite): the database knows every state (CHECK constraints named
-- like the StrEnums in procession/states.py), failures keep their first time, and
-- a log consumer (projection, router) that fails is parked at its event in a table of its own.
-- SQLite cannot add a constraint to a table: each table is rebuilt under its new definition.
-- The checks are written `x = 'a' OR x = 'b'`, not `x IN ('a', 'b')`: measured on 100k
-- single-row inserts, SQLite spends 1.5 us a row on an IN list (an ephemeral table built per
-- execution) and nothing measurable on the ORs.
-- process_instances_waiting is dropped: no query reads it, and every save of an instance
-- paid for it (instances waiting out a retry are found through blocked_instances).
CREATE TABLE commands_v3 (
  seq INTEGER PRIMARY KEY,
  command_id TEXT NOT NULL UNIQUE,
  type TEXT NOT NULL,
  schema_version INTEGER NOT NULL,
  data TEXT NOT NULL,
  metadata TEXT NOT NULL,
  status TEXT NOT NULL CONSTRAINT commands_status
    CHECK (status = 'pending' OR status = 'done' OR status = 'rejected' OR status = 'parked' OR status = 'skipped'),
  attempts INTEGER NOT NULL DEFAULT 0,
  available_at REAL NOT NULL,
  result TEXT,
  error TEXT,
  first_failed_at REAL
);
INSERT INTO commands_v3 (seq, command_id, type, schema_version, data, metadata, status, attempts, available_at, result, error) SELECT seq, command_id, type, schema_version, data, metadata, status, attempts, available_at, result, error FROM commands;
DROP TABLE commands;
ALTER TABLE commands_v3 RENAME TO commands;
CREATE INDEX commands_pending ON commands (available_at, seq) WHERE status = 'pending';
CREATE TABLE process_instances_v3 (
  process TEXT NOT NULL,
  instance_id TEXT NOT NULL,
  status TEXT NOT NULL CONSTRAINT process_instances_status
    CHECK (status = 'new' OR status = 'active' OR status = 'done'),
  state TEXT,
  version INTEGER NOT NULL DEFAULT 0,
  parked INTEGER NOT NULL DEFAULT 0 CONSTRAINT process_instances_parked CHECK (parked = 0 OR parked = 1),
  last_position BIGINT NOT NULL DEFAULT 0,
  seen TEXT,
  timers TEXT,
  wait_until REAL NOT NULL DEFAULT 0,
  updated_at REAL NOT NULL,
  PRIMARY KEY (process, instance_id)
);
INSERT INTO process_instances_v3 (process, instance_id, status, state, version, parked, last_position, seen, timers, wait_until, updated_at) SELECT process, instance_id, status, state, version, parked, last_position, seen, timers, wait_until, updated_at FROM process_instances;
DROP TABLE process_instances;
ALTER TABLE process_instances_v3 RENAME TO process_instances;
CREATE TABLE batches_v3 (
  batch_id TEXT PRIMARY KEY,
  owner_process TEXT NOT NULL,
  owner_instance TEXT NOT NULL,
  source TEXT NOT NULL,
  params TEXT NOT NULL,
  template TEXT NOT NULL,
  fence INTEGER NOT NULL,
  max_in_flight INTEGER NOT NULL,
  page_size INTEGER NOT NULL,
  cursor TEXT,
  status TEXT NOT NULL CONSTRAINT batches_status
    CHECK (status = 'enumerating' OR status = 'running' OR status = 'cancelling' OR status = 'completed' OR status = 'cancelled'),
  total INTEGER NOT NULL DEFAULT 0,
  created_at REAL NOT NULL,
  completed_at REAL,
  metadata TEXT NOT NULL,
  superseded_by TEXT
);
INSERT INTO batches_v3 (batch_id, owner_process, owner_instance, source, params, template, fence, max_in_flight, page_size, cursor, status, total, created_at, completed_at, metadata, superseded_by) SELECT batch_id, owner_process, owner_instance, source, params, template, fence, max_in_flight, page_size, cursor, status, total, created_at, completed_at, metadata, superseded_by FROM batches;
DROP TABLE batches;
ALTER TABLE batches_v3 RENAME TO batches;
CREATE INDEX batches_active ON batches (status);
CREATE TABLE batch_items_v3 (
  batch_id TEXT NOT NULL,
  target_id TEXT NOT NULL,
  status TEXT NOT NULL CONSTRAINT batch_items_status
    CHECK (status = 'pending' OR status = 'dispatched' OR status = 'awaiting' OR status = 'done' OR status = 'failed' OR status = 'skipped' OR status = 'cancelled'),
  detail TEXT,
  updated_at REAL NOT NULL,
  PRIMARY KEY (batch_id, target_id)
);
INSERT INTO batch_items_v3 (batch_id, target_id, status, detail, updated_at) SELECT batch_id, target_id, status, detail, updated_at FROM batch_items;
DROP TABLE batch_items;
ALTER TABLE batch_items_v3 RENAME TO batch_items;
CREATE INDEX batch_items_status ON batch_items (batch_id, status, target_id);
CREATE INDEX batch_items_open ON batch_items (target_id) WHERE status = 'awaiting';
CREATE TABLE inbox_v3 (
  id INTEGER PRIMARY KEY,
  process TEXT NOT NULL,
  instance_id TEXT NOT NULL,
  routing TEXT NOT NULL CONSTRAINT inbox_routing CHECK (routing = 'start' OR routing = 'start!' OR routing = 'continue' OR routing = 'continue!' OR routing = 'stop' OR routing = 'timer' OR routing = 'batch'),
  type TEXT NOT NULL,
  schema_version INTEGER NOT NULL,
  data TEXT NOT NULL,
  metadata TEXT NOT NULL,
  attempts INTEGER NOT NULL DEFAULT 0,
  available_at REAL NOT NULL,
  parked INTEGER NOT NULL DEFAULT 0 CONSTRAINT inbox_parked CHECK (parked = 0 OR parked = 1),
  error TEXT,
  first_failed_at REAL
);
INSERT INTO inbox_v3 (id, process, instance_id, routing, type, schema_version, data, metadata, attempts, available_at, parked, error) SELECT id, process, instance_id, routing, type, schema_version, data, metadata, attempts, available_at, parked, error FROM inbox;
DROP TABLE inbox;
ALTER TABLE inbox_v3 RENAME TO inbox;
CREATE INDEX inbox_instance ON inbox (process, instance_id, id);
CREATE INDEX inbox_ready ON inbox (id) WHERE parked = 0;
CREATE TABLE blocked_instances_v3 (
  process TEXT NOT NULL,
  instance_id TEXT NOT NULL,
  parked INTEGER NOT NULL CONSTRAINT blocked_instances_parked CHECK (parked = 0 OR parked = 1),
  until REAL NOT NULL,
  PRIMARY KEY (process, instance_id)
);
INSERT INTO blocked_instances_v3 (process, instance_id, parked, until) SELECT process, instance_id, parked, until FROM blocked_instances;
DROP TABLE blocked_instances;
ALTER TABLE blocked_instances_v3 RENAME TO blocked_instances;
CREATE TABLE consumer_failures (
  name TEXT PRIMARY KEY,
  position INTEGER NOT NULL,
  attempts INTEGER NOT NULL,
  first_failed_at REAL NOT NULL,
  error TEXT NOT NULL,
  parked INTEGER NOT NULL CONSTRAINT consumer_failures_parked CHECK (parked = 0 OR parked = 1),
  until REAL NOT NULL
);
