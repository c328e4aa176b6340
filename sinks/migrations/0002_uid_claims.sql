-- The latest registration of each uid (highest block, then event id): which hotkey holds it.
-- miners.uid is cleared on every other hotkey's row, so an operator handover is order-free.

CREATE TABLE miner_uid_claims (
    uid              integer PRIMARY KEY,
    hotkey           text NOT NULL,
    block            bigint NOT NULL,
    event_id         text NOT NULL
);
