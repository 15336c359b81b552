"""Detector families: importing this package registers every built-in detector."""

from fakescope.models.families import (  # noqa: F401
    effnet_b4,
    lite0,
    mobilenet_attention,
    multibranch,
    transfer,
)
