-- Worker liveness (issue 10): each `run_forever` loop says it is alive every few seconds of
-- wall-clock time (never virtual time: liveness is about processes, not the simulated days)
-- and says goodbye when it stops cleanly. A worker killed says nothing: its row ages, and
-- `operations.workers` calls it gone once `seen_at` is older than the stale limit. Rows of
-- workers gone for a day are pruned by the next worker to start.
CREATE TABLE workers (
  worker_id TEXT PRIMARY KEY,
  host TEXT NOT NULL,
  pid INTEGER NOT NULL,
  started_at DOUBLE PRECISION NOT NULL,
  seen_at DOUBLE PRECISION NOT NULL,
  stopped_at DOUBLE PRECISION,
  rounds BIGINT NOT NULL DEFAULT 0
);
