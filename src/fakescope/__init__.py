"""fakescope: tell real face images and videos from deepfakes."""

import os

# Albumentations asks PyPI for a newer version on import; nothing may go online unasked.
os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

__version__ = "0.1.0"


def load(name_or_path: str = "default", **options):
    """A ready Detector: "default" (the shipped detector) or a path to a checkpoint.

    options go to `fakescope.inference.Detector` (e.g. threshold=0.7, use_faces=False).
    """
    from fakescope.inference.loading import load_detector

    return load_detector(name_or_path, **options)
