"""``envkit sandbox build``: the sandbox image, built locally (no registry is needed).

The default image is Debian minbase with python3, made with ``debootstrap`` and ``docker import``
(about 40 s once), plus envkit's layer (``images/Dockerfile``): a non-root ``sandbox`` user
(uid 1000), the ``/work`` dir, and no setuid/setgid bits anywhere. With ``dockerfile=``, the
user's Dockerfile is built first and envkit's layer goes on top of it (the image must have
python3).

Example:
    >>> from envkit.sandbox.image import build_image
    >>> build_image()  # up to date here: nothing is rebuilt
    BuildResult(tag='envkit-sandbox:latest', built=False, seconds=...)
"""

from __future__ import annotations

import glob
import os
import re
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from envkit.sandbox.config import DEFAULT_IMAGE
from envkit.sandbox.docker_client import docker_client, translate_docker_error
from envkit.sandbox.errors import ImageBuildError

__all__ = ["BASE_IMAGE", "BuildResult", "build_image", "debian_mirror", "image_exists"]

BASE_IMAGE = "envkit-sandbox-base:bookworm"
DEFAULT_MIRROR = "http://deb.debian.org/debian"
LAYER_DIR = Path(__file__).parent / "images"
# Files a sandbox never needs: package caches, docs, man pages, translations.
_TRIM = (
    "var/cache/apt/archives/*.deb",
    "var/lib/apt/lists/*",
    "usr/share/doc/*",
    "usr/share/man/*",
    "usr/share/info/*",
    "usr/share/locale/*",
)


@dataclass
class BuildResult:
    """What ``build_image`` did."""

    tag: str
    built: bool
    seconds: float


def image_exists(tag: str, client: Any | None = None) -> bool:
    """Whether the Docker daemon has image ``tag`` locally."""
    import docker.errors

    client = client or docker_client()
    try:
        client.api.inspect_image(tag)
        return True
    except docker.errors.ImageNotFound:
        return False
    except docker.errors.APIError as e:
        if e.status_code == 404:
            return False
        raise translate_docker_error(e, f"looking up image {tag!r}") from e


def debian_mirror() -> str:
    """The Debian mirror apt uses here (from /etc/apt/sources.list*), else deb.debian.org."""
    files = ["/etc/apt/sources.list", *glob.glob("/etc/apt/sources.list.d/*")]
    for path in files:
        try:
            text = Path(path).read_text(encoding="utf-8", errors="replace")
        except OSError:
            continue
        for url in re.findall(r"(?:URIs:|^deb(?:\s+\[[^\]]*\])?)\s+(\S+)", text, re.MULTILINE):
            if re.search(r"/debian/?$", url) and "security" not in url:
                return url.rstrip("/")
    return DEFAULT_MIRROR


def _debootstrap_base(
    client: Any, tag: str, mirror: str, suite: str, log: Callable[[str], None]
) -> None:
    exe = shutil.which("debootstrap")
    if exe is None:
        raise ImageBuildError(
            "Building the default sandbox image needs debootstrap: `sudo apt-get install "
            "debootstrap`. Or build from your own Dockerfile: `envkit sandbox build --dockerfile "
            "PATH` (its image must have python3)."
        )
    if os.geteuid() != 0:
        raise ImageBuildError(
            "debootstrap must run as root: `sudo envkit sandbox build` (or `sudo bash "
            "scripts/install_docker.sh`)."
        )
    with tempfile.TemporaryDirectory(prefix="envkit-rootfs-") as tmp:
        rootfs = os.path.join(tmp, "rootfs")
        log(f"debootstrap --variant=minbase --include=python3 {suite} ({mirror}) ...")
        proc = subprocess.run(
            [exe, "--variant=minbase", "--include=python3", suite, rootfs, mirror],
            capture_output=True,
            text=True,
        )
        if proc.returncode != 0:
            tail = "\n".join((proc.stdout + proc.stderr).splitlines()[-15:])
            raise ImageBuildError(
                f"debootstrap failed (exit {proc.returncode}) with mirror {mirror}:\n{tail}\n"
                "Check that the mirror is reachable, or pass --mirror URL."
            )
        for pattern in _TRIM:
            for path in glob.glob(os.path.join(rootfs, pattern)):
                if os.path.isdir(path) and not os.path.islink(path):
                    shutil.rmtree(path, ignore_errors=True)
                else:
                    os.unlink(path)
        tarball = os.path.join(tmp, "rootfs.tar")
        subprocess.run(["tar", "-C", rootfs, "-cf", tarball, "."], check=True)
        log(f"docker import -> {tag}")
        repo, _, version = tag.partition(":")
        try:
            client.api.import_image(src=tarball, repository=repo, tag=version or "latest")
        except Exception as e:
            raise translate_docker_error(e, "importing the base image") from e


def _build(client: Any, path: str, dockerfile: str, tag: str, buildargs: dict[str, str]) -> None:
    import docker.errors

    try:
        client.images.build(
            path=path, dockerfile=dockerfile, tag=tag, buildargs=buildargs, rm=True, forcerm=True
        )
    except docker.errors.BuildError as e:
        lines = [str(x.get("stream") or x.get("error") or "").rstrip() for x in e.build_log]
        tail = "\n".join(line for line in lines if line)[-2000:]
        raise ImageBuildError(f"docker build of {dockerfile} failed: {e.msg}\n{tail}") from e
    except docker.errors.APIError as e:
        raise ImageBuildError(f"docker build of {dockerfile} failed: {e}") from e


def build_image(
    tag: str = DEFAULT_IMAGE,
    *,
    dockerfile: str | os.PathLike[str] | None = None,
    force: bool = False,
    mirror: str | None = None,
    suite: str = "bookworm",
    log: Callable[[str], None] = lambda _msg: None,
) -> BuildResult:
    """Builds the sandbox image ``tag`` unless it exists (``force=True`` rebuilds).

    Args:
        tag: Image name to build.
        dockerfile: A Dockerfile to build instead of the Debian base (its directory is the build
            context); envkit's layer is added on top.
        force: Rebuild even if ``tag`` (and the Debian base) exist.
        mirror: Debian mirror for debootstrap (default: the one apt uses).
        suite: Debian release for debootstrap.
        log: Receives progress lines.

    Raises:
        ImageBuildError: a step failed (the message says which and how to fix it).
        DockerUnavailableError: no daemon.
    """
    t0 = time.monotonic()
    path = Path(dockerfile).resolve() if dockerfile is not None else None
    if path is not None and not path.is_file():
        raise ImageBuildError(f"Dockerfile {str(dockerfile)!r} does not exist")
    client = docker_client()
    if not force and image_exists(tag, client):
        return BuildResult(tag, False, time.monotonic() - t0)
    if path is not None:
        base = f"{tag.partition(':')[0]}-userbase:latest"
        log(f"building {path} -> {base}")
        _build(client, str(path.parent), path.name, base, {})
    else:
        base = BASE_IMAGE
        if force or not image_exists(base, client):
            _debootstrap_base(client, base, mirror or debian_mirror(), suite, log)
    log(f"adding envkit's sandbox layer -> {tag}")
    _build(client, str(LAYER_DIR), "Dockerfile", tag, {"BASE": base})
    return BuildResult(tag, True, time.monotonic() - t0)
