#!/usr/bin/env bash
# README's main job: set up, render the offline corpus (once), train, evaluate and caption.
# Extra arguments go to `mullm quickstart` (e.g. --tiny for the CI-sized run).
set -euo pipefail
cd "$(dirname "$0")/.."
bash tools/setup_env.sh
export HF_HUB_OFFLINE=1 HF_HUB_DISABLE_TELEMETRY=1 GRADIO_ANALYTICS_ENABLED=False
.venv/bin/mullm quickstart "$@"
