-- One row per customer: name, rating and its changes. Contract counts per status are read
-- from contracts_by_customer at query time through its (customer_id, status) index, instead
-- of being kept as counters here: a counter costs a read and three writes per contract
-- event, at a million contracts the dominant cost of the whole run.

-- name: create_customers
CREATE TABLE IF NOT EXISTS cc_customer_summary (
  customer_id TEXT PRIMARY KEY,
  name TEXT NOT NULL,
  rating TEXT NOT NULL,
  rating_changes INTEGER NOT NULL DEFAULT 0,
  completed_changes INTEGER NOT NULL DEFAULT 0,
  last_reconfirmed INTEGER NOT NULL DEFAULT 0,
  last_terminated INTEGER NOT NULL DEFAULT 0,
  last_skipped INTEGER NOT NULL DEFAULT 0
);

-- name: reset_customers
DELETE FROM cc_customer_summary;

-- name: insert_customer
INSERT INTO cc_customer_summary (customer_id, name, rating) VALUES (:customer_id, :name, :rating);

-- name: rating_changed
UPDATE cc_customer_summary SET rating = :rating, rating_changes = :change_no
WHERE customer_id = :customer_id;

-- name: change_completed
UPDATE cc_customer_summary SET completed_changes = :change_no,
  last_reconfirmed = :reconfirmed, last_terminated = :terminated, last_skipped = :skipped
WHERE customer_id = :customer_id;

-- name: one
SELECT s.customer_id, s.name, s.rating, s.rating_changes, s.completed_changes,
  s.last_reconfirmed, s.last_terminated, s.last_skipped,
  (SELECT COUNT(*) FROM cc_contracts c WHERE c.customer_id = s.customer_id AND c.status = 'active'),
  (SELECT COUNT(*) FROM cc_contracts c WHERE c.customer_id = s.customer_id AND c.status = 'pending'),
  (SELECT COUNT(*) FROM cc_contracts c WHERE c.customer_id = s.customer_id AND c.status = 'resigned'),
  (SELECT COUNT(*) FROM cc_contracts c
   WHERE c.customer_id = s.customer_id AND c.status = 'terminated')
FROM cc_customer_summary s WHERE s.customer_id = :customer_id;

-- name: page
SELECT s.customer_id, s.name, s.rating, s.rating_changes, s.completed_changes,
  s.last_reconfirmed, s.last_terminated, s.last_skipped,
  (SELECT COUNT(*) FROM cc_contracts c WHERE c.customer_id = s.customer_id AND c.status = 'active'),
  (SELECT COUNT(*) FROM cc_contracts c WHERE c.customer_id = s.customer_id AND c.status = 'pending'),
  (SELECT COUNT(*) FROM cc_contracts c WHERE c.customer_id = s.customer_id AND c.status = 'resigned'),
  (SELECT COUNT(*) FROM cc_contracts c
   WHERE c.customer_id = s.customer_id AND c.status = 'terminated')
FROM cc_customer_summary s WHERE s.customer_id > :after ORDER BY s.customer_id LIMIT :limit;
