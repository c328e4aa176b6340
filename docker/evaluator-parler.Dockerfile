# The evaluator image with the Parler-TTS environment. The evaluator runs in the image's main
# Python (transformers 5); Parler-TTS models are handed to /opt/parler (parler-tts 0.2.3 with its
# pinned transformers 4.46.1), built by the same scripts/setup-parler.sh as a checkout's
# .venv-parler.
#   docker build -f docker/evaluator-parler.Dockerfile -t speechstream-evaluator-parler .
#   docker run --rm speechstream-evaluator-parler evaluator --help
FROM python:3.11-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# flite: the offline reference voice of the scoring engine; libsndfile1: audio files.
RUN apt-get update \
 && apt-get install -y --no-install-recommends flite libsndfile1 \
 && rm -rf /var/lib/apt/lists/*

WORKDIR /app

# CPU wheels of torch keep the image small; build with --build-arg TORCH_INDEX=... for CUDA.
ARG TORCH_INDEX=https://download.pytorch.org/whl/cpu
ARG PARLER_TORCH_VERSION=2.11.0
COPY pyproject.toml README.md ./
COPY schemas/ schemas/
COPY producers/ producers/
COPY streams/ streams/
COPY consumers/ consumers/
COPY sinks/ sinks/
COPY scoring/ scoring/
COPY speechstream/ speechstream/
COPY cli/ cli/
COPY devstack/ devstack/
COPY scripts/setup-parler.sh scripts/setup-parler.sh
RUN pip install --extra-index-url "${TORCH_INDEX}" .

# The Parler environment installs its own torch (there is no main virtualenv to link here).
RUN PIP_EXTRA_INDEX_URL="${TORCH_INDEX}" PARLER_VENV=/opt/parler PARLER_MAIN_VENV=/nonexistent \
    PARLER_TORCH_VERSION="${PARLER_TORCH_VERSION}" PARLER_BASE_PYTHON=python3.11 \
    bash scripts/setup-parler.sh
ENV SPEECHSTREAM_SCORING_PARLER_PYTHON=/opt/parler/bin/python

RUN useradd --create-home --uid 10001 speechstream \
 && mkdir -p /data/streams /data/hub \
 && chown -R speechstream:speechstream /data
USER speechstream
WORKDIR /data

ENTRYPOINT ["speechstream"]
CMD ["--help"]
