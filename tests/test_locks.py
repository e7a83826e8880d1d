"""The lock files: what CI tests is what runs, and nothing with a known advisory is allowed.

``requirements/bots.lock`` pins the base dependencies (``make install`` installs them at
exactly these versions); ``requirements/tts-image.lock`` pins the Modal image. Both are made
by ``make locks``.
"""

from __future__ import annotations

import re
import tomllib
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.utils import canonicalize_name
from packaging.version import Version

from tts_service import image_packages

ROOT = Path(__file__).resolve().parents[1]
BOTS_LOCK = ROOT / "requirements" / "bots.lock"
IMAGE_LOCK = ROOT / "requirements" / "tts-image.lock"
TIER_LOCK = ROOT / "requirements" / "gpu-stack-tests.lock"

# Package → (first fixed release, releases with the advisory that the floors must exclude).
ADVISORIES: dict[str, tuple[str, tuple[str, ...]]] = {
    "h11": ("0.16.0", ("0.14.0", "0.15.0")),  # CVE-2025-43859
    "starlette": ("0.49.1", ("0.40.0", "0.47.1", "0.49.0")),  # CVE-2025-54121, CVE-2025-62727
    "aiohttp": ("3.13.3", ("3.11.18", "3.12.13", "3.13.2")),  # CVE-2025-53643, the 3.13.3 batch
    "tornado": ("6.5", ("6.4.2",)),  # CVE-2025-47287; PTB's [webhooks] extra is no longer used
}


def locked(path: Path, *, here_only: bool = True) -> dict[str, str]:
    """Name → pinned version; ``here_only`` leaves out lines whose marker is false here."""
    pins: dict[str, str] = {}
    for line in path.read_text().splitlines():
        if not re.match(r"[A-Za-z0-9]", line):
            continue  # comments, "# via" lines
        requirement = Requirement(line)
        if here_only and requirement.marker is not None and not requirement.marker.evaluate():
            continue
        (pin,) = requirement.specifier
        assert pin.operator == "==", line
        pins[canonicalize_name(requirement.name)] = pin.version
    return pins


def base_dependencies() -> dict[str, SpecifierSet]:
    with open(ROOT / "pyproject.toml", "rb") as file:
        dependencies = tomllib.load(file)["project"]["dependencies"]
    return {canonicalize_name(Requirement(d).name): Requirement(d).specifier for d in dependencies}


def test_the_venv_has_exactly_the_locked_versions() -> None:
    wrong = {}
    for name, pinned in locked(BOTS_LOCK).items():
        try:
            installed = version(name)
        except PackageNotFoundError:
            installed = None
        if installed != pinned:
            wrong[name] = (pinned, installed)
    assert not wrong, f"locked vs installed (run `make install`, or `make locks`): {wrong}"


def test_the_bots_lock_is_made_from_the_current_pyproject() -> None:
    pins = locked(BOTS_LOCK, here_only=False)
    for name, allowed in base_dependencies().items():
        assert name in pins, f"{name} is not in {BOTS_LOCK.name}: run `make locks`"
        assert allowed.contains(pins[name]), f"{name}=={pins[name]} is outside {allowed}"


def test_the_image_lock_pins_what_the_modal_image_asks_for() -> None:
    pins = locked(IMAGE_LOCK, here_only=False)
    for line in image_packages.IMAGE_REQUIREMENTS:
        requirement = Requirement(line)
        (pin,) = requirement.specifier
        name = canonicalize_name(requirement.name)
        assert pins.get(name) == pin.version, f"{line}: {IMAGE_LOCK.name} has {pins.get(name)}"
    assert image_packages.IMAGE_LOCK == IMAGE_LOCK
    assert image_packages.TIER_LOCK == TIER_LOCK


def test_the_image_runs_the_web_stack_the_tests_run() -> None:
    # chatterbox-tts goes in with --no-deps: its gradio pin would hold starlette below 1.
    image, bots = locked(IMAGE_LOCK, here_only=False), locked(BOTS_LOCK, here_only=False)
    assert "gradio" not in image
    for name in ("fastapi", "starlette", "pydantic", "pydantic-core", "anyio"):
        assert image[name] == bots[name], f"{name}: image {image[name]}, tests {bots[name]}"


def test_the_image_keeps_perths_pkg_resources() -> None:
    # setuptools 82 dropped pkg_resources; Perth then quietly has no watermarker.
    assert Version(locked(IMAGE_LOCK)["setuptools"]) < Version("82")


def test_the_tiers_tools_never_move_an_image_package() -> None:
    image, tier = locked(IMAGE_LOCK, here_only=False), locked(TIER_LOCK, here_only=False)
    moved = {n: (image[n], v) for n, v in tier.items() if n in image and image[n] != v}
    assert not moved, f"run `make locks`: {moved}"
    for tool in image_packages.TIER_TOOLS:
        assert canonicalize_name(tool) in tier


@pytest.mark.parametrize("package", sorted(ADVISORIES))
def test_no_lock_and_no_floor_allows_a_release_with_an_advisory(package: str) -> None:
    fixed, affected = ADVISORIES[package]
    for lock in (BOTS_LOCK, IMAGE_LOCK):
        pinned = locked(lock, here_only=False).get(package)
        assert pinned is None or Version(pinned) >= Version(fixed), f"{lock.name}: {pinned}"
    allowed = base_dependencies().get(package)
    if package == "tornado":
        assert allowed is None and package not in locked(BOTS_LOCK, here_only=False)
        return
    assert allowed is not None, f"pyproject.toml sets no floor for {package}"
    for release in affected:
        assert not allowed.contains(release), f"{package} {allowed} allows {release}"
    assert allowed.contains(fixed)
