#!/bin/sh
# Build the runtime images where a registry is reachable, push them, and print the digests for grader.toml.
#
#   runtimes/build.sh REGISTRY/PREFIX [cpu|gpu ...]      e.g. runtimes/build.sh ghcr.io/wwa-pyml/notebook-grader
#
# ENGINE=podman|docker (default: docker if present, else podman). Run from anywhere; the build context is the
# repository root (Dockerfiles COPY requirements.lock from it; no grader code goes into an image: the in-sandbox
# runner is mounted into each run by autograder/execute.py).
set -eu
prefix=${1:?usage: runtimes/build.sh REGISTRY/PREFIX [cpu|gpu ...]}
shift
kinds=${*:-cpu gpu}
engine=${ENGINE:-$(command -v docker >/dev/null 2>&1 && echo docker || echo podman)}
root=$(cd "$(dirname "$0")/.." && pwd)
for kind in $kinds; do
    tag="$prefix-$kind:$(git -C "$root" rev-parse --short HEAD)"
    "$engine" build --pull --file "$root/runtimes/$kind/Dockerfile" --tag "$tag" "$root" >&2
    "$engine" push "$tag" >&2
    digest=$("$engine" image inspect --format '{{index .RepoDigests 0}}' "$tag")
    echo "[runtimes.$kind]"
    echo "kind = \"$kind\""
    echo "image = \"$digest\""
    [ "$kind" = gpu ] && echo 'backend = "podman"  # or "docker": the GPU host'"'"'s engine'
    echo
done
