-- The clips each evaluation listened to (sample.audio): the generated sample and the reference
-- voice's reading, Ogg/Opus and MP3, named by their score. The sink purges the encodings of
-- submissions past the newest kept per uid (SPEECHSTREAM_SINK_AUDIO_KEEP_PER_UID); a purged
-- row stays, its encodings NULL and purged_at set, so the pages can say it is no longer kept.

CREATE TABLE sample_audio (
    score_event_id   text NOT NULL,
    index            integer NOT NULL,
    clip             text NOT NULL,
    hash             text NOT NULL,
    scoring_version  text NOT NULL,
    evaluator        text NOT NULL,
    request_event_id text NOT NULL,
    sample_rate      integer NOT NULL,
    duration_s       double precision NOT NULL,
    opus             bytea,
    mp3              bytea,
    event_id         text NOT NULL,
    purged_at        timestamptz,
    written_at       timestamptz NOT NULL DEFAULT clock_timestamp(),
    -- The evaluator in the key: another evaluator's clip for the same score (its id is
    -- derived from the request's, so it can be guessed) cannot take the score's own place.
    PRIMARY KEY (score_event_id, evaluator, index, clip)
);
CREATE INDEX sample_audio_hash ON sample_audio (hash, scoring_version);
CREATE INDEX sample_audio_kept ON sample_audio (hash) WHERE purged_at IS NULL;

-- The voice each sample asked for, shown beside it.
ALTER TABLE sample_results ADD COLUMN description text;
