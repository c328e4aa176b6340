-- Reproducible, audited scores: the manifest of every score (what reproduces it), the note of a
-- sample scored under a version's rule, and the audits of scores re-scored by an auditor.

ALTER TABLE scores ADD COLUMN manifest jsonb;
ALTER TABLE sample_results ADD COLUMN note text;

CREATE TABLE audits (
    event_id         text PRIMARY KEY,
    hash             text NOT NULL,
    scoring_version  text NOT NULL,
    verdict          text NOT NULL,
    score_event_id   text NOT NULL,
    evaluator        text NOT NULL,
    auditor          text NOT NULL,
    scored_status    text NOT NULL,
    scored_total     double precision,
    audited_status   text,
    audited_total    double precision,
    tolerance        double precision NOT NULL,
    reason           text,
    differences      jsonb,
    manifest         jsonb,
    audited_at       timestamptz NOT NULL,
    written_at       timestamptz NOT NULL DEFAULT clock_timestamp()
);
CREATE INDEX audits_hash ON audits (hash, scoring_version);
CREATE INDEX audits_evaluator ON audits (evaluator, verdict);
