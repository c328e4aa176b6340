#!/usr/bin/env bash
# Create (or check) .venv-parler: the Parler-TTS evaluator environment, run as
#   bash scripts/setup-parler.sh
# parler-tts pins transformers 4.46.1, so it cannot share the main environment (.venv).
# The scoring engine runs Parler models with this environment's interpreter
# (SPEECHSTREAM_SCORING_PARLER_PYTHON, default .venv-parler/bin/python).
#
# Torch: when the main environment has torch, this one links that same installation instead of
# installing another multi-GB copy; otherwise torch $PARLER_TORCH_VERSION is installed.
# Idempotent: a complete environment is left as it is (PARLER_FORCE=1 rebuilds it).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${PARLER_VENV:-$ROOT/.venv-parler}"
BASE_PYTHON="${PARLER_BASE_PYTHON:-python3.11}"
MAIN_VENV="${PARLER_MAIN_VENV:-$ROOT/.venv}"
TORCH_VERSION="${PARLER_TORCH_VERSION:-2.11.0}"
STAMP="$VENV/.speechstream-parler"
CHECK='from parler_tts import ParlerTTSForConditionalGeneration, ParlerTTSConfig; import scoring.child, devstack.tiny.parler'

if [[ "${PARLER_FORCE:-0}" != 1 && -f "$STAMP" ]] && "$VENV/bin/python" -c "$CHECK" 2>/dev/null; then
    echo "parler environment is up to date: $VENV"
    exit 0
fi

[[ -x "$VENV/bin/python" ]] || "$BASE_PYTHON" -m venv "$VENV"
PIP=("$VENV/bin/python" -m pip install --quiet --disable-pip-version-check)
SITE="$("$VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"

# 1. torch: link the main environment's installation, or install one.
MAIN_SITE=""
if [[ -x "$MAIN_VENV/bin/python" ]]; then
    MAIN_SITE="$("$MAIN_VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
fi
if [[ -n "$MAIN_SITE" && -d "$MAIN_SITE/torch" ]]; then
    LINKS="$VENV/torch-from-main"
    rm -rf "$LINKS" && mkdir -p "$LINKS"
    (cd "$MAIN_SITE" && ls -d torch torch-*.dist-info functorch torchgen triton triton-*.dist-info \
        nvidia nvidia_*.dist-info cuda cuda_*.dist-info 2>/dev/null) | while read -r name; do
        ln -s "$MAIN_SITE/$name" "$LINKS/$name"
    done
    echo "$LINKS" > "$SITE/speechstream-torch-from-main.pth"
    "${PIP[@]}" "setuptools>=77" filelock fsspec jinja2 networkx sympy typing-extensions
    TORCH_SOURCE="linked from $MAIN_SITE"
else
    rm -f "$SITE/speechstream-torch-from-main.pth"
    "${PIP[@]}" "torch==$TORCH_VERSION"
    TORCH_SOURCE="installed"
fi

# 2. parler-tts and its codec, without their heavy optional dependency tree (librosa, gradio,
#    matplotlib, ipython...): only what importing them needs.
"${PIP[@]}" --no-deps parler-tts==0.2.3 transformers==4.46.1 \
    descript-audio-codec-unofficial==1.0.0 descript-audiotools-unofficial==0.7.4 torchaudio==2.11.0
"${PIP[@]}" "huggingface-hub>=0.23.2,<1.0" "tokenizers>=0.20,<0.21" "safetensors>=0.4.1" \
    numpy packaging pyyaml regex requests tqdm sentencepiece "protobuf>=3.19.6,!=4.24.0,<5" \
    einops argbind julius flatten-dict "soundfile>=0.13" rich scipy ffmpy importlib-resources \
    tensorboard randomname

# torchaudio is only imported (by descript-audiotools), never called on the scoring path. Its
# compiled extension is built for one torch and CUDA build (2.11, cu130) and refuses to load with
# any other, so it is removed: torchaudio then loads in its pure-Python mode with any torch.
rm -f "$SITE"/torchaudio/lib/*.so "$SITE"/torchaudio/*.so
TORCH_NOW="$("$VENV/bin/python" -c 'import importlib.metadata as m; print(m.version("torch"))')"

# 3. This project (only what the scoring child imports).
"${PIP[@]}" "pydantic>=2.12,<3" "pydantic-settings>=2.6,<3" "pynacl>=1.5" "jiwer>=3.0" \
    "pocketsphinx>=5.0"
"${PIP[@]}" --no-deps -e "$ROOT"

"$VENV/bin/python" -c "$CHECK"
echo "torch $TORCH_NOW ($TORCH_SOURCE)" > "$STAMP"
echo "parler environment ready: $VENV (torch $TORCH_NOW, $TORCH_SOURCE)"
