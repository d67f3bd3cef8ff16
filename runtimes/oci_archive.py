"""Wrap a root filesystem tarball into a one-layer OCI image archive whose digest depends only on its inputs.

`podman import` would do the same but stamps the current time into the image's configuration, so two imports
of the same tarball get different digests. Here the creation time is SOURCE_DATE_EPOCH and every JSON document
is written with sorted keys, so the same tarball and settings always give the same image ID and manifest
digest. The layer stays uncompressed: podman keeps layers uncompressed in its store, so it stores the manifest
as written instead of converting it. Standard library only (runs on the build host, outside the grader).

    python3 oci_archive.py ROOTFS.tar OUT.tar --env K=V ... --user UID --workdir DIR --label K=V ...
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import os
import shutil
import tarfile
from datetime import datetime, timezone
from pathlib import Path

LAYER = "application/vnd.oci.image.layer.v1.tar"
CONFIG = "application/vnd.oci.image.config.v1+json"
MANIFEST = "application/vnd.oci.image.manifest.v1+json"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("rootfs", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("--env", action="append", default=[])
    parser.add_argument("--label", action="append", default=[])
    parser.add_argument("--user", default="")
    parser.add_argument("--workdir", default="")
    parser.add_argument("--ref", default="", help="name stored in the archive (org.opencontainers.image.ref.name)")
    args = parser.parse_args()
    epoch = int(os.environ.get("SOURCE_DATE_EPOCH", "0"))
    digest = write_archive(args.rootfs, args.out, epoch, args.env, dict(item.split("=", 1) for item in args.label),
                           args.user, args.workdir, args.ref)
    print(digest)


def write_archive(rootfs: Path, out: Path, epoch: int, env: list[str], labels: dict[str, str], user: str,
                  workdir: str, ref: str) -> str:
    """Write OUT as an OCI archive and return the manifest digest."""
    created = datetime.fromtimestamp(epoch, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    layer_digest, layer_size = _sha256_file(rootfs)
    config = {
        "architecture": "amd64", "os": "linux", "created": created,
        "config": {key: value for key, value in
                   {"Env": env, "User": user, "WorkingDir": workdir, "Labels": labels}.items() if value},
        "rootfs": {"type": "layers", "diff_ids": [layer_digest]},
        "history": [{"created": created, "created_by": "runtimes/build.sh (mmdebstrap)"}],
    }
    config_blob = _canonical(config)
    manifest = {
        "schemaVersion": 2, "mediaType": MANIFEST,
        "config": {"mediaType": CONFIG, "digest": _sha256(config_blob), "size": len(config_blob)},
        "layers": [{"mediaType": LAYER, "digest": layer_digest, "size": layer_size}],
    }
    manifest_blob = _canonical(manifest)
    annotations = {"org.opencontainers.image.ref.name": ref} if ref else {}
    index = {"schemaVersion": 2, "manifests": [{"mediaType": MANIFEST, "digest": _sha256(manifest_blob),
                                                 "size": len(manifest_blob), **({"annotations": annotations}
                                                                                  if annotations else {})}]}
    with tarfile.open(out, "w", format=tarfile.PAX_FORMAT) as archive:
        _add_bytes(archive, "oci-layout", _canonical({"imageLayoutVersion": "1.0.0"}), epoch)
        _add_bytes(archive, "index.json", _canonical(index), epoch)
        for blob in (config_blob, manifest_blob):
            _add_bytes(archive, "blobs/sha256/" + _sha256(blob).split(":")[1], blob, epoch)
        info = tarfile.TarInfo("blobs/sha256/" + layer_digest.split(":")[1])
        info.size, info.mtime, info.mode = layer_size, epoch, 0o644
        with rootfs.open("rb") as layer:
            archive.addfile(info, layer)
    return _sha256(manifest_blob)


def _canonical(document: dict) -> bytes:
    return json.dumps(document, sort_keys=True, separators=(",", ":")).encode()


def _sha256(blob: bytes) -> str:
    return "sha256:" + hashlib.sha256(blob).hexdigest()


def _sha256_file(path: Path) -> tuple[str, int]:
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        shutil.copyfileobj(stream, _Hasher(digest))
    return "sha256:" + digest.hexdigest(), path.stat().st_size


class _Hasher(io.RawIOBase):
    def __init__(self, digest) -> None:
        self.digest = digest

    def write(self, data) -> int:
        self.digest.update(data)
        return len(data)


def _add_bytes(archive: tarfile.TarFile, name: str, blob: bytes, epoch: int) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mtime, info.mode = len(blob), epoch, 0o644
    archive.addfile(info, io.BytesIO(blob))


if __name__ == "__main__":
    main()
