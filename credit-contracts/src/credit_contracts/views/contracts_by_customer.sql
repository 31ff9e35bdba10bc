-- The contracts of each customer: the batch's target source. `born_at` is the log position
-- of ContractOpened, so a batch fenced at position P sees exactly the contracts that existed
-- when the rating changed.

-- name: create_table
CREATE TABLE IF NOT EXISTS cc_contracts (
  contract_id TEXT PRIMARY KEY,
  customer_id TEXT NOT NULL,
  title TEXT NOT NULL,
  status TEXT NOT NULL,
  born_at BIGINT NOT NULL,
  updated_at TEXT NOT NULL
);

-- name: create_index
CREATE INDEX IF NOT EXISTS cc_contracts_customer ON cc_contracts (customer_id, contract_id);

-- name: create_status_index
-- Counts per status for the customer summary, read from the index alone.
CREATE INDEX IF NOT EXISTS cc_contracts_status ON cc_contracts (customer_id, status);

-- name: reset
DELETE FROM cc_contracts;

-- name: insert
INSERT INTO cc_contracts (contract_id, customer_id, title, status, born_at, updated_at)
VALUES (:contract_id, :customer_id, :title, 'active', :born_at, :at);

-- name: set_status
UPDATE cc_contracts SET status = :status, updated_at = :at WHERE contract_id = :contract_id;

-- name: targets
-- A keyset page: ids ascending, strictly after :after, born at or before the fence.
SELECT contract_id FROM cc_contracts
WHERE customer_id = :customer_id AND contract_id > :after AND born_at <= :fence
ORDER BY contract_id LIMIT :limit;

-- name: of_customer
SELECT contract_id, customer_id, title, status, born_at, updated_at FROM cc_contracts
WHERE customer_id = :customer_id AND contract_id > :after
ORDER BY contract_id LIMIT :limit;

-- name: of_customer_with_status
SELECT contract_id, customer_id, title, status, born_at, updated_at FROM cc_contracts
WHERE customer_id = :customer_id AND status = :status AND contract_id > :after
ORDER BY contract_id LIMIT :limit;

-- name: one
SELECT contract_id, customer_id, title, status, born_at, updated_at FROM cc_contracts
WHERE contract_id = :contract_id;
