"""fakescope: tell real face images and videos from deepfakes."""

__version__ = "0.1.0"


def load(name_or_path: str = "default", **options):
    """A ready Detector: "default" (the shipped detector) or a path to a checkpoint.

    options go to `fakescope.inference.Detector` (e.g. threshold=0.7, use_faces=False).
    """
    from fakescope.inference.loading import load_detector

    return load_detector(name_or_path, **options)
