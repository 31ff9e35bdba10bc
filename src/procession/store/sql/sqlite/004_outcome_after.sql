-- An awaiting batch item remembers the log position its command ran after: an outcome event
-- written before that (routed late: the router lags, or runs on another worker) belongs to
-- an earlier episode of the target and must not finish the item. NULL: awaiting since
-- before this migration, which accepts any outcome (as before).
ALTER TABLE batch_items ADD COLUMN awaiting_after BIGINT;
