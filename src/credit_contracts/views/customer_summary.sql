-- One row per customer: name, rating, rating changes and how many contracts are in each
-- status. The view keeps its own small map of contract -> status, so it never reads another
-- projection's tables (each projection has its own checkpoint).

-- name: create_customers
CREATE TABLE IF NOT EXISTS cc_customer_summary (
  customer_id TEXT PRIMARY KEY,
  name TEXT NOT NULL,
  rating TEXT NOT NULL,
  rating_changes INTEGER NOT NULL DEFAULT 0,
  completed_changes INTEGER NOT NULL DEFAULT 0,
  last_reconfirmed INTEGER NOT NULL DEFAULT 0,
  last_terminated INTEGER NOT NULL DEFAULT 0,
  last_skipped INTEGER NOT NULL DEFAULT 0,
  n_active INTEGER NOT NULL DEFAULT 0,
  n_pending INTEGER NOT NULL DEFAULT 0,
  n_resigned INTEGER NOT NULL DEFAULT 0,
  n_terminated INTEGER NOT NULL DEFAULT 0
);

-- name: create_contracts
CREATE TABLE IF NOT EXISTS cc_summary_contracts (
  contract_id TEXT PRIMARY KEY,
  customer_id TEXT NOT NULL,
  status TEXT NOT NULL
);

-- name: reset_customers
DELETE FROM cc_customer_summary;

-- name: reset_contracts
DELETE FROM cc_summary_contracts;

-- name: insert_customer
INSERT INTO cc_customer_summary (customer_id, name, rating) VALUES (:customer_id, :name, :rating);

-- name: rating_changed
UPDATE cc_customer_summary SET rating = :rating, rating_changes = :change_no
WHERE customer_id = :customer_id;

-- name: change_completed
UPDATE cc_customer_summary SET completed_changes = :change_no,
  last_reconfirmed = :reconfirmed, last_terminated = :terminated, last_skipped = :skipped
WHERE customer_id = :customer_id;

-- name: insert_contract
INSERT INTO cc_summary_contracts (contract_id, customer_id, status)
VALUES (:contract_id, :customer_id, 'active');

-- name: contract_status
SELECT status FROM cc_summary_contracts WHERE contract_id = :contract_id;

-- name: set_contract_status
UPDATE cc_summary_contracts SET status = :status WHERE contract_id = :contract_id;

-- One statement per (from, to) pair would be many; the counters are moved in two steps.

-- name: inc_active
UPDATE cc_customer_summary SET n_active = n_active + :d WHERE customer_id = :customer_id;

-- name: inc_pending
UPDATE cc_customer_summary SET n_pending = n_pending + :d WHERE customer_id = :customer_id;

-- name: inc_resigned
UPDATE cc_customer_summary SET n_resigned = n_resigned + :d WHERE customer_id = :customer_id;

-- name: inc_terminated
UPDATE cc_customer_summary SET n_terminated = n_terminated + :d
WHERE customer_id = :customer_id;

-- name: one
SELECT customer_id, name, rating, rating_changes, completed_changes, last_reconfirmed,
  last_terminated, last_skipped, n_active, n_pending, n_resigned, n_terminated
FROM cc_customer_summary WHERE customer_id = :customer_id;

-- name: page
SELECT customer_id, name, rating, rating_changes, completed_changes, last_reconfirmed,
  last_terminated, last_skipped, n_active, n_pending, n_resigned, n_terminated
FROM cc_customer_summary WHERE customer_id > :after ORDER BY customer_id LIMIT :limit;
