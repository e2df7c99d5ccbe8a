"""A local Docker image of the guess game, built offline FROM envkit-sandbox:latest.

Nothing can be pulled here, and the sandbox image has Python 3.11 but no pip: the build context
gets the installed site-packages the game's server imports (openenv-core imports gradio, so
~430 MB), found by importing it and reading ``sys.modules``. The image is tagged with a hash of
those packages' versions and the game's source, so it is built once per machine (~1 min).
"""

from __future__ import annotations

import functools
import hashlib
import importlib.metadata
import shutil
import subprocess
import sys
import sysconfig
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
BASE = "envkit-sandbox:latest"


_PROBE = """
import os, sys, sysconfig
import openenv_games, uvicorn.lifespan.on, uvicorn.loops.asyncio, uvicorn.main
import uvicorn.protocols.http.h11_impl, uvicorn.protocols.websockets.websockets_sansio_impl
site = sysconfig.get_paths()["purelib"] + os.sep
tops = {getattr(m, "__file__", None) or "" for m in list(sys.modules.values())}
print("\\n".join(sorted({p[len(site):].split(os.sep)[0] for p in tops if p.startswith(site)})))
"""


@functools.cache
def _site_tops() -> tuple[str, ...]:
    """The site-packages entries the game's server imports (in a fresh interpreter: this one
    holds whatever other tests imported)."""
    out = subprocess.run(
        [sys.executable, "-c", _PROBE], cwd=HERE, capture_output=True, text=True, check=True
    )
    return tuple(out.stdout.split())


def image_tag() -> str:
    """``envkit-openenv-test-guess:<hash of the copied packages' versions and the game>``."""
    owners = importlib.metadata.packages_distributions()
    dists = sorted({d for top in _site_tops() for d in owners.get(top.removesuffix(".py"), [])})
    versions = [f"{d}=={importlib.metadata.version(d)}" for d in dists]
    digest = hashlib.sha256()
    digest.update("\n".join(versions).encode())
    digest.update((HERE / "openenv_games.py").read_bytes())
    return f"envkit-openenv-test-guess:{digest.hexdigest()[:12]}"


def ensure_image() -> str:
    """The tag of the image, built first if this machine does not have it."""
    tag = image_tag()
    if subprocess.run(["docker", "image", "inspect", tag], capture_output=True).returncode == 0:
        return tag
    site = Path(sysconfig.get_paths()["purelib"])
    with tempfile.TemporaryDirectory(prefix="envkit-openenv-image-") as tmp:
        ctx = Path(tmp)
        dst = ctx / "site"
        skip = shutil.ignore_patterns("__pycache__", "tests")
        names = list(_site_tops()) + [p.name for p in site.glob("*.libs")]  # vendored shared libs
        names += [p.name for p in site.glob("*.dist-info")]  # metadata some packages read
        for name in names:
            src = site / name
            if src.is_dir():
                shutil.copytree(src, dst / name, ignore=skip, dirs_exist_ok=True)
            elif src.exists():
                dst.mkdir(exist_ok=True)
                shutil.copy2(src, dst / name)
        shutil.copy2(HERE / "openenv_games.py", ctx / "openenv_games.py")
        (ctx / "Dockerfile").write_text(
            f"FROM {BASE}\n"
            "COPY site /opt/site\n"
            "COPY openenv_games.py /app/\n"
            "ENV PYTHONPATH=/opt/site:/app\n"
            "EXPOSE 8000\n"
            'CMD ["python3", "-m", "uvicorn", "openenv_games:guess_app", "--host", "0.0.0.0", '
            '"--port", "8000"]\n'
        )
        subprocess.run(
            ["docker", "build", "-q", "-t", tag, str(ctx)], check=True, capture_output=True
        )
    return tag
