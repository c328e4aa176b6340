-- The miner registry, submissions with status and score, per-sample results, rejections,
-- dead letters. Every table is written idempotently by the sink (see sinks/postgres.py).

CREATE TABLE miners (
    hotkey           text PRIMARY KEY,
    uid              integer,
    coldkey          text,
    block            bigint NOT NULL,
    event_id         text NOT NULL,
    registered_at    timestamptz NOT NULL,
    written_at       timestamptz NOT NULL DEFAULT clock_timestamp()
);
CREATE INDEX miners_uid ON miners (uid);

CREATE TABLE submissions (
    hash             text PRIMARY KEY,
    hotkey           text,
    uid              integer,
    repo_namespace   text,
    repo_name        text,
    revision         text,
    config_template  text,
    competition_id   text,
    block            bigint,
    scoring_version  text,
    status           text NOT NULL,
    status_rank      smallint NOT NULL,
    notes            text,
    score            double precision,
    request_event_id text,
    requested_at     timestamptz,
    status_at        timestamptz,
    created_at       timestamptz NOT NULL DEFAULT clock_timestamp(),
    updated_at       timestamptz NOT NULL DEFAULT clock_timestamp()
);
CREATE INDEX submissions_status_score ON submissions (status, score DESC);

CREATE TABLE status_events (
    event_id         text PRIMARY KEY,
    hash             text NOT NULL,
    status           text NOT NULL,
    scoring_version  text NOT NULL,
    evaluator        text,
    note             text,
    time             timestamptz NOT NULL,
    written_at       timestamptz NOT NULL DEFAULT clock_timestamp()
);
CREATE INDEX status_events_hash ON status_events (hash);

CREATE TABLE scores (
    hash             text NOT NULL,
    scoring_version  text NOT NULL,
    status           text NOT NULL,
    total_score      double precision,
    reason           text,
    revision         text,
    evaluator        text NOT NULL,
    timings          jsonb NOT NULL DEFAULT '{}'::jsonb,
    event_id         text NOT NULL,
    request_event_id text,
    computed_at      timestamptz NOT NULL,
    written_at       timestamptz NOT NULL DEFAULT clock_timestamp(),
    PRIMARY KEY (hash, scoring_version)
);

CREATE TABLE sample_results (
    hash             text NOT NULL,
    scoring_version  text NOT NULL,
    index            integer NOT NULL,
    text             text NOT NULL,
    speaker          text,
    ce               double precision,
    wer              double precision,
    transcription    text,
    score            double precision,
    error            text,
    PRIMARY KEY (hash, scoring_version, index)
);

CREATE TABLE rejections (
    event_id         text PRIMARY KEY,
    code             text NOT NULL,
    message          text NOT NULL,
    source_event_id  text NOT NULL,
    source_type      text NOT NULL,
    hotkey           text,
    uid              integer,
    hash             text,
    repo_namespace   text,
    repo_name        text,
    block            bigint,
    time             timestamptz NOT NULL,
    written_at       timestamptz NOT NULL DEFAULT clock_timestamp()
);
CREATE INDEX rejections_hash ON rejections (hash);

CREATE TABLE dead_letters (
    event_id         text PRIMARY KEY,
    topic            text NOT NULL,
    partition        integer,
    "offset"         bigint,
    error            text NOT NULL,
    consumer         text NOT NULL,
    raw              bytea NOT NULL,
    time             timestamptz NOT NULL,
    written_at       timestamptz NOT NULL DEFAULT clock_timestamp()
);
