-- Every event that touched a contract, in log order, with the command that caused it
-- (causation_id is that command's id) and the batch or process it belongs to (correlation_id).

-- name: create_table
CREATE TABLE IF NOT EXISTS cc_timeline (
  contract_id TEXT NOT NULL,
  position BIGINT NOT NULL,
  event_type TEXT NOT NULL,
  occurred_at TEXT NOT NULL,
  correlation_id TEXT,
  causation_id TEXT,
  command TEXT NOT NULL,
  summary TEXT NOT NULL,
  PRIMARY KEY (contract_id, position)
);

-- name: reset
DELETE FROM cc_timeline;

-- name: insert
INSERT INTO cc_timeline (contract_id, position, event_type, occurred_at, correlation_id,
  causation_id, command, summary)
VALUES (:contract_id, :position, :event_type, :occurred_at, :correlation_id, :causation_id,
  :command, :summary);

-- name: of_contract
SELECT position, event_type, occurred_at, correlation_id, causation_id, command, summary
FROM cc_timeline WHERE contract_id = :contract_id ORDER BY position;
