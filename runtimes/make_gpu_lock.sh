#!/bin/sh
# Regenerate runtimes/requirements-gpu.lock: the versions of requirements.lock, with the CUDA build of torch 2.13.0
# (PyPI's torch wheel for Linux, which pulls its nvidia-* CUDA libraries and triton) in place of 2.13.0+cpu, each
# pinned by hash. Needs pip-tools and the Python registry (PyPI); this machine's pip configuration (local wheel
# folders that hold the +cpu build) is ignored, so torch resolves to the CUDA build.
#
#   LOCK_COMPILER=/path/to/pip-compile runtimes/make_gpu_lock.sh
set -eu
root=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
sed -n 's/^\([A-Za-z0-9._-]*\)==\([^ ]*\) .*/\1==\2/p' "$root/requirements.lock" \
    | sed 's/^torch==2\.13\.0+cpu$/torch==2.13.0/' > "$work/requirements-gpu.in"
cd "$work"
env -u PIP_FIND_LINKS PIP_CONFIG_FILE=/dev/null "${LOCK_COMPILER:-pip-compile}" --quiet --generate-hashes \
    --allow-unsafe --strip-extras --no-emit-index-url --no-emit-find-links --index-url https://pypi.org/simple \
    --output-file requirements-gpu.lock requirements-gpu.in
sed 's|requirements-gpu.in|runtimes/make_gpu_lock.sh (the pins of requirements.lock, torch from PyPI)|' \
    requirements-gpu.lock > "$root/runtimes/requirements-gpu.lock"
