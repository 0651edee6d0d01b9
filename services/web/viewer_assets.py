"""dicom-microscopy-viewer and dicomweb-client: fetched from the npm registry at install time
into a git-ignored folder, never committed, and served by the web app from there.

Versions and registry digests are pinned here: ``fetch_viewer`` refuses a tarball whose
sha512 differs, so an install is the same bytes everywhere. Run it as
``unitumour web fetch-viewer [DEST]`` or ``python -m unitumour_services.web.viewer_assets DEST``.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import shutil
import subprocess
import sys
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path

from unitumour_dicom.errors import UniTumourError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class NpmPackage:
    name: str
    version: str
    integrity: str  # the registry's dist.integrity (sha512, base64)
    serve_dir: str  # the folder of the package that the browser loads from

    @property
    def spec(self) -> str:
        return f"{self.name}@{self.version}"

    @property
    def folder(self) -> str:
        return f"{self.name}-{self.version}"


VIEWER = NpmPackage(
    "dicom-microscopy-viewer",
    "0.48.24",
    "sha512-016o/23eNqXMxgX5EjnDmFz1ROSMQmU7vmRlTVPUgshl6NaBrZzEyWkzq4BNaFFPfrE274AWdR5crW51cWh+9g==",
    "dist",
)
# The version dicom-microscopy-viewer 0.48.24 itself depends on; its bundle does not export it.
CLIENT = NpmPackage(
    "dicomweb-client",
    "0.11.3",
    "sha512-7t1Rc/01fyFnKlQeNPW9Pvxvmsx8R/BgB2n7BxTuWirRFwlTC5upEeLeS3vO72P+n6/SQZ3+5ij0bgaWDHQG/A==",
    "build",
)
PACKAGES = (VIEWER, CLIENT)
MANIFEST = "manifest.json"

#: Paths inside the served folders that the viewer page loads.
VIEWER_BUNDLE = "dicomMicroscopyViewer.bundle.min.js"
VIEWER_LIB_DIR = "dynamic-import"  # window.PUBLIC_LIB_URL: the decoder worker and its codecs
CLIENT_BUNDLE = "dicomweb-client.js"


class ViewerAssetsError(UniTumourError):
    """The viewer could not be fetched or is not installed."""


@dataclass(frozen=True)
class ViewerAssets:
    """An installed (or missing) viewer at ``root``."""

    root: Path

    def package_dir(self, package: NpmPackage) -> Path:
        return self.root / package.folder / package.serve_dir

    @property
    def missing(self) -> list[str]:
        """What is absent, as paths relative to root; empty when the viewer can run."""
        wanted = [
            self.package_dir(VIEWER) / VIEWER_BUNDLE,
            self.package_dir(VIEWER) / VIEWER_LIB_DIR / "dataLoader.worker.min.js",
            self.package_dir(CLIENT) / CLIENT_BUNDLE,
        ]
        return [str(p.relative_to(self.root)) for p in wanted if not p.is_file()]

    @property
    def available(self) -> bool:
        return not self.missing


def _integrity(path: Path) -> str:
    digest = hashlib.sha512(path.read_bytes()).digest()
    return "sha512-" + base64.b64encode(digest).decode()


def _npm() -> str:
    npm = shutil.which("npm")
    if npm is None:
        raise ViewerAssetsError(
            "npm is not installed: install it (Debian: apt-get install npm) and run again"
        )
    return npm


def fetch_viewer(dest: Path, *, force: bool = False) -> ViewerAssets:
    """Install the pinned packages under ``dest`` (idempotent); returns the installed assets."""
    dest = Path(dest).absolute()
    assets = ViewerAssets(dest)
    if assets.available and not force and _manifest_matches(dest):
        log.info("viewer already installed at %s", dest)
        return assets
    dest.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=dest, prefix=".fetch-") as tmp_text:
        tmp = Path(tmp_text)
        for package in PACKAGES:
            _fetch_one(package, tmp, dest)
    (dest / MANIFEST).write_text(
        json.dumps({p.name: {"version": p.version, "integrity": p.integrity} for p in PACKAGES})
    )
    if not assets.available:
        raise ViewerAssetsError(f"viewer installed at {dest} but lacks {assets.missing}")
    return assets


def _manifest_matches(dest: Path) -> bool:
    try:
        manifest = json.loads((dest / MANIFEST).read_text())
    except (OSError, ValueError):
        return False
    return all(manifest.get(p.name, {}).get("integrity") == p.integrity for p in PACKAGES)


def _fetch_one(package: NpmPackage, tmp: Path, dest: Path) -> None:
    log.info("fetching %s from the npm registry", package.spec)
    proc = subprocess.run(
        [_npm(), "pack", package.spec, "--pack-destination", str(tmp), "--json"],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=tmp,
        check=False,
    )
    if proc.returncode != 0:
        raise ViewerAssetsError(f"npm pack {package.spec} failed: {proc.stderr.strip()[-2000:]}")
    try:
        filename = json.loads(proc.stdout)[0]["filename"]
    except (ValueError, LookupError, TypeError) as exc:
        raise ViewerAssetsError(f"npm pack {package.spec}: unreadable output") from exc
    tarball = tmp / Path(filename).name
    actual = _integrity(tarball)
    if actual != package.integrity:
        raise ViewerAssetsError(
            f"{package.spec}: tarball digest {actual} differs from the pinned {package.integrity}"
        )
    unpacked = tmp / package.folder
    with tarfile.open(tarball, "r:gz") as tar:
        tar.extractall(unpacked, filter="data")
    target = dest / package.folder
    if target.exists():
        shutil.rmtree(target)
    (unpacked / "package").rename(target)


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m unitumour_services.web.viewer_assets DEST", file=sys.stderr)
        raise SystemExit(2)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        assets = fetch_viewer(Path(args[0]))
    except ViewerAssetsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        raise SystemExit(1) from exc
    print(f"dicom-microscopy-viewer {VIEWER.version} ready at {assets.root}")


if __name__ == "__main__":
    main()
