-- Batch control (issue 10): an operator may pause a batch, change its throttle and give it a
-- rate limit while it runs. `paused` is a flag, not a status: a paused batch is still
-- running (its dispatched items finish, it may complete), it only dispatches nothing.
-- A rate limit is `rate_items` per `rate_per_seconds` (both NULL: none). Each item keeps the
-- time its command was dispatched: the limit counts the items dispatched in the last period
-- (a sliding window, through batch_items_dispatched), under the batch row's lock, so it
-- holds across restarts and for any number of workers.
ALTER TABLE batches ADD COLUMN paused INTEGER NOT NULL DEFAULT 0
  CONSTRAINT batches_paused CHECK (paused IN (0, 1));
ALTER TABLE batches ADD COLUMN rate_items INTEGER;
ALTER TABLE batches ADD COLUMN rate_per_seconds DOUBLE PRECISION;
ALTER TABLE batch_items ADD COLUMN dispatched_at DOUBLE PRECISION;
CREATE INDEX batch_items_dispatched ON batch_items (batch_id, dispatched_at)
  WHERE dispatched_at IS NOT NULL;
