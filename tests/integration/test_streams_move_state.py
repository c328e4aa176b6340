"""Moving the intake worker to a new app id keeps its tables and offsets (`streams move-state`)."""

from __future__ import annotations

import pytest

from producers.miner import registration, submission
from schemas.fields import RejectionCode
from schemas.topics import changelog_specs
from speechstream.kafka.admin import delete_topics
from speechstream.keys import create_key_file

pytestmark = pytest.mark.integration

OLD, NEW = "intake-old", "intake-new"


def _count(pipe, table: str, where: str = "true") -> int:
    return pipe.query(f"SELECT count(*) FROM {table} WHERE {where}")[0][0]  # noqa: S608


def test_a_moved_worker_resumes_with_its_tables(pipeline, tmp_path) -> None:
    kafka, t = pipeline.kafka, pipeline.kafka.topics
    alice, mallory = (create_key_file(tmp_path / f"{n}.json") for n in ("alice", "mallory"))
    try:
        pipeline.start("sink", ["sink", "run"])
        old = pipeline.start("streams", ["streams", "worker"], SPEECHSTREAM_STREAMS_APP_ID=OLD)
        pipeline.send(t.registrations, registration(alice, uid=0, block=1))
        pipeline.wait(lambda: _count(pipeline, "miners") == 1, "alice registered")
        pipeline.send(t.submissions,
                      submission(alice, repo_namespace="alice", repo_name="m1", block=1000))
        pipeline.wait(lambda: _count(pipeline, "submissions") == 1, "alice's submission")
        old.stop()
        requests = pipeline.count(t.evaluation_requests)

        refused = pipeline.cli("streams", "move-state", "--from", OLD,
                               SPEECHSTREAM_STREAMS_APP_ID=OLD)
        assert refused.returncode == 1 and "both" in refused.stderr
        moved = pipeline.cli("streams", "move-state", "--from", OLD,
                             SPEECHSTREAM_STREAMS_APP_ID=NEW)
        assert moved.returncode == 0, moved.stderr
        assert "committed offsets" in moved.stdout and "records to" in moved.stdout
        again = pipeline.cli("streams", "move-state", "--from", OLD,
                             SPEECHSTREAM_STREAMS_APP_ID=NEW)
        assert again.returncode == 1 and "already has committed offsets" in again.stderr

        pipeline.start("streams", ["streams", "worker"], SPEECHSTREAM_STREAMS_APP_ID=NEW)
        # The tables came along: the uid is taken, and alice is rate limited.
        pipeline.send(t.registrations, registration(mallory, uid=0, block=2))
        pipeline.send(t.submissions,
                      submission(alice, repo_namespace="alice", repo_name="m2", block=1500))
        pipeline.wait(lambda: _count(pipeline, "rejections") == 2, "two rejections")
        codes = {r[0] for r in pipeline.query("SELECT code FROM rejections")}
        assert codes == {RejectionCode.UID_TAKEN.value, RejectionCode.RATE_LIMITED.value}
        # The offsets came along: nothing the old worker had routed was routed again.
        assert pipeline.count(t.evaluation_requests) == requests
    finally:
        pipeline.stop()
        delete_topics(kafka, [kafka.topics.name(spec)
                              for app in (OLD, NEW) for spec in changelog_specs(app)])
