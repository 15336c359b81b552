"""fakescope: tell real face images and videos from deepfakes."""

__version__ = "0.1.0"
