-- Optional aggregate snapshots: the state at `version`, so loading reads only later events.
CREATE TABLE snapshots (
  stream_id TEXT PRIMARY KEY,
  version INTEGER NOT NULL,
  state TEXT NOT NULL
);
