-- procession schema v3 (PostgreSQL): the database knows every state (CHECK constraints named
-- like the StrEnums in procession/states.py), failures keep their first time, and
-- a log consumer (projection, router) that fails is parked at its event in a table of its own.
ALTER TABLE commands ADD CONSTRAINT commands_status
  CHECK (status IN ('pending', 'done', 'rejected', 'parked', 'skipped'));
ALTER TABLE process_instances ADD CONSTRAINT process_instances_status
  CHECK (status IN ('new', 'active', 'done'));
ALTER TABLE batches ADD CONSTRAINT batches_status
  CHECK (status IN ('enumerating', 'running', 'cancelling', 'completed', 'cancelled'));
ALTER TABLE batch_items ADD CONSTRAINT batch_items_status
  CHECK (status IN ('pending', 'dispatched', 'awaiting', 'done', 'failed', 'skipped',
                    'cancelled'));
ALTER TABLE inbox ADD CONSTRAINT inbox_routing
  CHECK (routing IN ('start', 'start!', 'continue', 'continue!', 'stop', 'timer', 'batch'));
ALTER TABLE inbox ADD CONSTRAINT inbox_parked CHECK (parked IN (0, 1));
ALTER TABLE blocked_instances ADD CONSTRAINT blocked_instances_parked CHECK (parked IN (0, 1));
ALTER TABLE process_instances ADD CONSTRAINT process_instances_parked CHECK (parked IN (0, 1));
-- No query reads this index, and every save of an instance paid for it (instances waiting
-- out a retry are found through blocked_instances).
DROP INDEX process_instances_waiting;
ALTER TABLE inbox ADD COLUMN first_failed_at DOUBLE PRECISION;
ALTER TABLE commands ADD COLUMN first_failed_at DOUBLE PRECISION;
CREATE TABLE consumer_failures (
  name TEXT PRIMARY KEY,
  position BIGINT NOT NULL,
  attempts INTEGER NOT NULL,
  first_failed_at DOUBLE PRECISION NOT NULL,
  error TEXT NOT NULL,
  parked INTEGER NOT NULL CONSTRAINT consumer_failures_parked CHECK (parked IN (0, 1)),
  until DOUBLE PRECISION NOT NULL
);
