-- The HTTP API's idempotency keys: one row per key, with the request it was first used for
-- (a fingerprint of method, path and body) and the answer it got. `status` is NULL while
-- that first request runs (or if it died before answering: a retry then runs it again, and
-- the command, whose id derives from the key, executes at most once).

-- name: create
CREATE TABLE IF NOT EXISTS cc_http_requests (
    idempotency_key TEXT PRIMARY KEY,
    fingerprint TEXT NOT NULL,
    request TEXT NOT NULL,
    status INTEGER,
    response TEXT,
    created_at TEXT NOT NULL
);

-- name: claim
INSERT INTO cc_http_requests (idempotency_key, fingerprint, request, created_at)
VALUES (:key, :fingerprint, :request, :created_at)
ON CONFLICT (idempotency_key) DO NOTHING;

-- name: find
SELECT fingerprint, request, status, response FROM cc_http_requests
WHERE idempotency_key = :key;

-- name: answer
UPDATE cc_http_requests SET status = :status, response = :response
WHERE idempotency_key = :key AND status IS NULL;
