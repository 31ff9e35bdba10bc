-- procession schema v1 (SQLite). Integer surrogate positions keep the log's primary key
-- append-only; ids inside are time-ordered UUIDv7 strings so their indexes grow at the edge.
CREATE TABLE procession_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE events (
  position INTEGER PRIMARY KEY,
  stream_id TEXT NOT NULL,
  version INTEGER NOT NULL,
  type TEXT NOT NULL,
  schema_version INTEGER NOT NULL,
  data TEXT NOT NULL,
  metadata TEXT NOT NULL,
  UNIQUE (stream_id, version)
);
CREATE TABLE commands (
  seq INTEGER PRIMARY KEY,
  command_id TEXT NOT NULL UNIQUE,
  type TEXT NOT NULL,
  schema_version INTEGER NOT NULL,
  data TEXT NOT NULL,
  metadata TEXT NOT NULL,
  status TEXT NOT NULL,
  attempts INTEGER NOT NULL DEFAULT 0,
  available_at REAL NOT NULL,
  result TEXT,
  error TEXT
);
CREATE INDEX commands_pending ON commands (available_at, seq) WHERE status = 'pending';
CREATE TABLE checkpoints (name TEXT PRIMARY KEY, position INTEGER NOT NULL);
CREATE TABLE process_instances (
  process TEXT NOT NULL,
  instance_id TEXT NOT NULL,
  status TEXT NOT NULL,
  state TEXT,
  version INTEGER NOT NULL DEFAULT 0,
  parked INTEGER NOT NULL DEFAULT 0,
  last_position BIGINT NOT NULL DEFAULT 0,
  seen TEXT,
  timers TEXT,
  wait_until REAL NOT NULL DEFAULT 0,
  updated_at REAL NOT NULL,
  PRIMARY KEY (process, instance_id)
);
CREATE INDEX process_instances_waiting ON process_instances (wait_until) WHERE wait_until > 0;
-- Instances parked or waiting out a retry, usually none: claims skip their deliveries with an
-- anti-join against this small table, which no planner mistakes for a selective filter.
CREATE TABLE blocked_instances (
  process TEXT NOT NULL,
  instance_id TEXT NOT NULL,
  parked INTEGER NOT NULL,
  until REAL NOT NULL,
  PRIMARY KEY (process, instance_id)
);
CREATE TABLE inbox (
  id INTEGER PRIMARY KEY,
  process TEXT NOT NULL,
  instance_id TEXT NOT NULL,
  routing TEXT NOT NULL,
  type TEXT NOT NULL,
  schema_version INTEGER NOT NULL,
  data TEXT NOT NULL,
  metadata TEXT NOT NULL,
  attempts INTEGER NOT NULL DEFAULT 0,
  available_at REAL NOT NULL,
  parked INTEGER NOT NULL DEFAULT 0,
  error TEXT
);
CREATE INDEX inbox_instance ON inbox (process, instance_id, id);
CREATE INDEX inbox_ready ON inbox (id) WHERE parked = 0;
CREATE TABLE timers (
  process TEXT NOT NULL,
  instance_id TEXT NOT NULL,
  name TEXT NOT NULL,
  due_at REAL NOT NULL,
  type TEXT NOT NULL,
  schema_version INTEGER NOT NULL,
  data TEXT NOT NULL,
  metadata TEXT NOT NULL,
  PRIMARY KEY (process, instance_id, name)
);
CREATE INDEX timers_due ON timers (due_at);
CREATE TABLE batches (
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
  status TEXT NOT NULL,
  total INTEGER NOT NULL DEFAULT 0,
  created_at REAL NOT NULL,
  completed_at REAL,
  metadata TEXT NOT NULL,
  superseded_by TEXT
);
CREATE INDEX batches_active ON batches (status);
CREATE TABLE batch_items (
  batch_id TEXT NOT NULL,
  target_id TEXT NOT NULL,
  status TEXT NOT NULL,
  detail TEXT,
  updated_at REAL NOT NULL,
  PRIMARY KEY (batch_id, target_id)
);
CREATE INDEX batch_items_status ON batch_items (batch_id, status, target_id);
CREATE INDEX batch_items_open ON batch_items (target_id) WHERE status = 'awaiting';
