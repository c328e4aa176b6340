# The evaluator image with the Parler-TTS environment (`speechstream dev images parler`). The
# evaluator runs in the image's main Python (transformers 5); Parler-TTS models are handed to
# /opt/parler (parler-tts 0.2.3 with its pinned transformers 4.46.1), built by the same
# scripts/setup-parler.sh as a checkout's .venv-parler. It builds on the evaluator image
# (BASE_IMAGE) and links that image's torch instead of installing a second one. pip reaches
# PyPI with the CA bundle given as the build secret `ca` (never copied into the image).
ARG BASE_IMAGE=speechstream-evaluator:dev
FROM ${BASE_IMAGE}
USER root

# The project's sources stay in the image: the Parler environment installs them in place
# (the scoring child imports scoring, schemas and the tiny models' code from them).
WORKDIR /opt/speechstream-src
COPY pyproject.toml README.md ./
COPY schemas/ schemas/
COPY speechstream/ speechstream/
COPY producers/ producers/
COPY streams/ streams/
COPY consumers/ consumers/
COPY sinks/ sinks/
COPY scoring/ scoring/
COPY api/ api/
COPY cli/ cli/
COPY devstack/ devstack/
COPY scripts/setup-parler.sh scripts/setup-parler.sh
RUN --mount=type=secret,id=ca --mount=type=cache,target=/root/.cache/pip,sharing=locked \
    set -eu; \
    if [ -f /run/secrets/ca ]; then export PIP_CERT=/run/secrets/ca; fi; \
    PARLER_VENV=/opt/parler PARLER_MAIN_VENV=/opt/speechstream PARLER_BASE_PYTHON=python3 \
      bash scripts/setup-parler.sh
ENV SPEECHSTREAM_SCORING_PARLER_PYTHON=/opt/parler/bin/python

USER speechstream
WORKDIR /data
