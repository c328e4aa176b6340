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

-- The voice each sample asked for, shown beside it; and the score each sample belongs to, in
-- its key: a second score of a (hash, version), which scores does not keep, could otherwise
-- fill in the samples the kept one lacks.
ALTER TABLE sample_results ADD COLUMN description text;
ALTER TABLE sample_results ADD COLUMN score_event_id text;
UPDATE sample_results r SET score_event_id = s.event_id
  FROM scores s WHERE s.hash = r.hash AND s.scoring_version = r.scoring_version;
DELETE FROM sample_results WHERE score_event_id IS NULL;
ALTER TABLE sample_results ALTER COLUMN score_event_id SET NOT NULL;
ALTER TABLE sample_results DROP CONSTRAINT sample_results_pkey;
ALTER TABLE sample_results ADD PRIMARY KEY (score_event_id, index);
CREATE INDEX sample_results_hash ON sample_results (hash, scoring_version);
