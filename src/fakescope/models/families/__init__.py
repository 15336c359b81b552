"""Detector families: importing this package registers every built-in detector."""

from fakescope.models.families import (  # noqa: F401
    effnet_b4,
    efficientnet_lite,
    mobilenet_attention,
    multibranch,
    transfer,
)
