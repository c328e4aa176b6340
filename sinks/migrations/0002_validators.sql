-- Validators and the REST API: the weights vectors, the minerboard, and the content hash of
-- the weights each score evaluated (byte-identical weights share it).

ALTER TABLE scores ADD COLUMN content_hash text;

CREATE TABLE weights (
    validator        text NOT NULL,
    epoch            bigint NOT NULL,
    block            bigint NOT NULL,
    event_id         text NOT NULL,
    computed_at      timestamptz NOT NULL,
    written_at       timestamptz NOT NULL DEFAULT clock_timestamp(),
    PRIMARY KEY (validator, epoch)
);

CREATE TABLE weight_entries (
    validator        text NOT NULL,
    epoch            bigint NOT NULL,
    uid              integer NOT NULL,
    hotkey           text,
    hash             text,
    repo             text,
    block            bigint,
    status           text,
    score            double precision,
    content_hash     text,
    win_rate         double precision,
    invalid          text,
    weight           double precision NOT NULL,
    PRIMARY KEY (validator, epoch, uid)
);

CREATE TABLE minerboard (
    uid              integer PRIMARY KEY,
    hash             text NOT NULL,
    hotkey           text NOT NULL,
    block            bigint NOT NULL,
    event_id         text NOT NULL,
    updated_at       timestamptz NOT NULL,
    written_at       timestamptz NOT NULL DEFAULT clock_timestamp()
);
