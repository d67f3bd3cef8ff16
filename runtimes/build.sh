#!/bin/sh
# Build a runtime image from package registries alone and print its [runtimes.KIND] lines for grader.toml.
#
#   runtimes/build.sh [--production] [--rebuild | --verify | --present] [--update-debian-lock] cpu|gpu
#
# --present builds nothing: it prints the lines if the image of the current inputs is there, else exits 3.
#
# A Debian bookworm root filesystem from Debian's registry (mmdebstrap, Debian packages in debian-packages.txt,
# their versions checked against debian-packages.lock), a venv at /opt/venv with the Python lock installed by
# pip --require-hashes from wheels the Python registry serves (cpu: requirements.lock, torch 2.13.0+cpu;
# gpu: runtimes/requirements-gpu.lock, the CUDA build of torch 2.13.0 with its nvidia-* wheels), the offline data
# at /opt/grader-offline (default: .offline-data as `grader data` built it; --production: the real NLTK data,
# 20 Newsgroups corpus and bert-base-uncased, fetched at build time), the user 61000; then one OCI layer with a
# fixed creation time (oci_archive.py), loaded with `podman load`. No image registry anywhere.
#
# Cache: the image is tagged localhost/notebook-grader-KIND:<hash of every input> (this recipe, both package
# lists, the Python lock, the offline data, SOURCE_DATE_EPOCH, the mirror); a build whose tag exists is a no-op.
# --rebuild builds anyway (into a fresh archive) and says whether the digest came out the same; --verify does
# that once per image (the answer is kept in the cache, and repeated by later calls with the same inputs).
# Downloads are cached under ${XDG_CACHE_HOME:-~/.cache}/notebook-grader/runtimes (wheels, Debian packages).
#
# Environment: SOURCE_DATE_EPOCH (default 1747699200 = 2025-05-20, the snapshot date of this machine's apt
# sources), DEBIAN_SNAPSHOT (e.g. 20250520T000000Z: install from snapshot.debian.org instead of deb.debian.org,
# for machines that reach it; then pass --update-debian-lock once), OFFLINE_DATA (default: REPO/.offline-data).
set -eu

production=0 rebuild=0 verify=0 present=0 update_debian_lock=0
while [ $# -gt 1 ]; do
    case $1 in
        --production) production=1 ;;
        --rebuild) rebuild=1 ;;
        --verify) rebuild=1 verify=1 ;;
        --present) present=1 ;;
        --update-debian-lock) update_debian_lock=1 ;;
        *) echo "build.sh: unknown option $1" >&2; exit 2 ;;
    esac
    shift
done
kind=${1:-}
root=$(cd "$(dirname "$0")/.." && pwd)
here=$root/runtimes
case $kind in
    cpu) lock=$root/requirements.lock ;;
    gpu) lock=$here/requirements-gpu.lock ;;
    *) echo "usage: runtimes/build.sh [--production] [--rebuild | --verify | --present] [--update-debian-lock] cpu|gpu" >&2
       exit 2 ;;
esac
[ -f "$lock" ] || { echo "build.sh: $lock is missing (see runtimes/README.md, 'The GPU lock')" >&2; exit 2; }
for tool in mmdebstrap podman python3; do
    command -v $tool >/dev/null 2>&1 || { echo "build.sh: $tool not found (apt-get install $tool)" >&2; exit 2; }
done

export SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-1747699200}
export FORCE_SOURCE_DATE=1  # TeX, run by package scripts, takes its clock from SOURCE_DATE_EPOCH too
offline=${OFFLINE_DATA:-$root/.offline-data}
variant=$([ $production = 1 ] && echo production || echo offline)
if [ $variant = offline ] && [ ! -d "$offline" ]; then
    echo "build.sh: no offline data at $offline (run 'grader data' or 'make data' first)" >&2; exit 2
fi
if [ -n "${DEBIAN_SNAPSHOT:-}" ]; then
    mirror=http://snapshot.debian.org/archive/debian/$DEBIAN_SNAPSHOT
    security=http://snapshot.debian.org/archive/debian-security/$DEBIAN_SNAPSHOT
else
    mirror=http://deb.debian.org/debian security=http://deb.debian.org/debian-security
fi
debian_lock=$here/debian-packages.lock
cache=${XDG_CACHE_HOME:-$HOME/.cache}/notebook-grader/runtimes
python=$( [ -x "$root/.venv/bin/python" ] && echo "$root/.venv/bin/python" || echo python3)
# The GPU lock's torch is PyPI's CUDA build: local wheel folders of a pip configuration (this machine's holds
# torch 2.13.0+cpu, which also satisfies ==2.13.0) are left out, so that pip looks only where the lock was made.
pip_environment=
[ "$kind" = gpu ] && pip_environment="env -u PIP_FIND_LINKS PIP_CONFIG_FILE=/dev/null"

# The cache key: every input of the image, hashed (the offline data by content, links followed).
offline_hash() {
    [ $variant = production ] && { echo production; return; }
    (cd "$offline" && find -L . -type f -print0 | LC_ALL=C sort -z | xargs -0 sha256sum) | sha256sum
}
image_key() {
    { cat "$here/build.sh" "$here/customize.sh" "$here/oci_archive.py" "$here/fetch_data.py" \
          "$here/debian-packages.txt" "$lock"; [ -f "$debian_lock" ] && cat "$debian_lock";
      echo "$kind $variant $SOURCE_DATE_EPOCH $mirror"; offline_hash; } | sha256sum | cut -c1-16
}
name=localhost/notebook-grader-$kind
tag=$name:$(image_key)

print_lines() {
    digest=$(podman image inspect --format '{{.Digest}}' "$tag")
    echo "[runtimes.$kind]"
    echo "kind = \"$kind\""
    echo "image = \"$name@$digest\""
    [ "$kind" = gpu ] && echo 'backend = "podman"  # on the GPU host (or "docker" after loading the image there)'
    return 0
}

if [ $rebuild = 0 ] && podman image exists "$tag"; then
    echo "build.sh: $tag is up to date" >&2
    print_lines
    exit 0
fi
if [ $present = 1 ]; then
    echo "build.sh: $tag is not built (runtimes/build.sh $kind builds it)" >&2; exit 3
fi
record=$cache/verified-$kind-${tag##*:}
if [ $verify = 1 ] && [ -f "$record" ]; then  # this image was already built twice
    cat "$record" >&2
    grep -q 'same digest' "$record"
    exit
fi
if [ $verify = 1 ] && ! podman image exists "$tag"; then
    echo "build.sh: --verify: build $tag first (runtimes/build.sh $kind)" >&2; exit 2
fi

started=$(date +%s)
mkdir -p "$cache/wheels-$kind" "$cache/debs" "$cache/tmp"
work=$(mktemp -d "$cache/tmp/build-$kind.XXXXXX")
trap 'rm -rf "$work"' EXIT

echo "build.sh: downloading the wheels of $(basename "$lock") (cached in $cache/wheels-$kind)" >&2
# (pip's messages are shown only on failure: this machine's pip configuration names local index folders that
# may be missing, and pip warns about each of them for every package.)
# Offline first: a second build finds every wheel in the cache (pip checks them against the hashes again).
if ! $pip_environment "$python" -m pip download --quiet --disable-pip-version-check --no-deps --only-binary :all: --require-hashes \
        --no-index --find-links "$cache/wheels-$kind" -r "$lock" -d "$cache/wheels-$kind" > /dev/null 2>&1 &&
   ! $pip_environment "$python" -m pip download --quiet --disable-pip-version-check --no-deps --only-binary :all: --require-hashes \
        -r "$lock" -d "$cache/wheels-$kind" > "$work/pip.log" 2>&1; then
    grep -v 'is ignored: it is neither a file nor a directory' "$work/pip.log" >&2
    echo "build.sh: the wheels of $lock could not be downloaded" >&2
    exit 1
fi

echo "build.sh: building the root filesystem (mmdebstrap, $mirror)" >&2
packages=$(grep -v '^#' "$here/debian-packages.txt" | tr '\n' ',' | sed 's/,*$//')
snapshot_options=
[ -n "${DEBIAN_SNAPSHOT:-}" ] && snapshot_options='--aptopt=Acquire::Check-Valid-Until "false"'
# The Debian packages are kept between builds: in from the cache before apt runs, out again before cleanup
# (only the packages: apt's lock and partial folder, owned by whoever made them, would make builds differ).
rm -rf "$cache/debs/lock" "$cache/debs/partial"
# dpkg without fsync (the tarball is written once at the end); no manuals or documentation but the licences;
# no binary caches of apt (they differ between builds, and apt rebuilds them when needed).
TMPDIR=$cache/tmp mmdebstrap --quiet --mode=root --variant=apt --format=tar --include="$packages" \
    ${snapshot_options:+"$snapshot_options"} --skip=essential/unlink --dpkgopt=force-unsafe-io \
    --dpkgopt='path-exclude=/usr/share/man/*' --dpkgopt='path-exclude=/usr/share/doc/*' \
    --dpkgopt='path-include=/usr/share/doc/*/copyright' \
    --aptopt='Dir::Cache::pkgcache ""' --aptopt='Dir::Cache::srcpkgcache ""' \
    --setup-hook='mkdir -p "$1"/var/cache/apt/archives' \
    --setup-hook="sync-in '$cache/debs' /var/cache/apt/archives" \
    --customize-hook="sync-out /var/cache/apt/archives '$cache/debs'" \
    --customize-hook="sh '$here/customize.sh' \"\$1\" '$lock' '$cache/wheels-$kind' '$offline' $variant \
$SOURCE_DATE_EPOCH '$work/debian.list' '$here/fetch_data.py'" \
    bookworm "$work/rootfs.tar" \
    "deb $mirror bookworm main" "deb $mirror bookworm-updates main" "deb $security bookworm-security main" >&2
rm -rf "$cache/debs/lock" "$cache/debs/partial"

# Debian's registry keeps only the newest version of each package: pin by checking the versions installed.
if [ ! -f "$debian_lock" ] || [ $update_debian_lock = 1 ]; then
    cp "$work/debian.list" "$debian_lock"
    echo "build.sh: wrote $debian_lock ($(wc -l < "$debian_lock") packages)" >&2
    tag=$name:$(image_key)  # the lock is an input of the image from now on
elif ! cmp -s "$work/debian.list" "$debian_lock"; then
    echo "build.sh: the mirror's packages differ from $debian_lock:" >&2
    diff "$debian_lock" "$work/debian.list" | grep '^[<>]' | head -20 >&2
    echo "build.sh: review the change, then rebuild with --update-debian-lock" >&2
    exit 1
fi

echo "build.sh: writing the image" >&2
manifest=$(python3 "$here/oci_archive.py" "$work/rootfs.tar" "$work/image.tar" --user 61000 \
    --workdir /home/student \
    --env PATH=/opt/venv/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin --env LANG=C.UTF-8 \
    --env NLTK_DATA=/opt/grader-offline/nltk_data --env SCIKIT_LEARN_DATA=/opt/grader-offline/scikit_learn_data \
    --env HF_HUB_OFFLINE=1 --env TRANSFORMERS_OFFLINE=1 \
    --label "org.opencontainers.image.title=notebook-grader $kind runtime" \
    --label "notebook-grader.variant=$variant")
if [ $rebuild = 1 ] && podman image exists "$tag"; then
    before=$(podman image inspect --format '{{.Digest}}' "$tag")
    if [ "$before" = "$manifest" ]; then
        echo "build.sh: rebuilt $tag: same digest $manifest" | tee "$record" >&2
    else
        echo "build.sh: rebuilt $tag: digest $manifest differs from $before" | tee "$record" >&2
        ln -f "$work/rootfs.tar" "$cache/tmp/rootfs-$kind-rebuild.tar"  # to compare with the first build's layer
        exit 1
    fi
else
    loaded=$(podman load --quiet --input "$work/image.tar" | sed -n 's/^Loaded image: *//p' | tail -1)
    podman tag "$loaded" "$tag"
    [ "$(podman image inspect --format '{{.Digest}}' "$tag")" = "$manifest" ] || {
        echo "build.sh: podman stored $tag under another digest than $manifest" >&2; exit 1; }
    ln -f "$work/rootfs.tar" "$cache/tmp/rootfs-$kind.tar"  # the layer, kept to compare with a --rebuild's
    rm -f "$cache/verified-$kind-"*  # answers about earlier images
fi
size=$(podman image inspect --format '{{.Size}}' "$tag")
echo "build.sh: $tag built in $(( $(date +%s) - started )) s, $(( size / 1000000 )) MB" >&2
print_lines
