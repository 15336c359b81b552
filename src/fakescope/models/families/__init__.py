"""Detector families: importing this package registers every built-in detector."""

from fakescope.models.families import (  # noqa: F401
    efficientnet_lite,
    effnet_b4,
    mobilenet_attention,
    multibranch,
    transfer,
)
