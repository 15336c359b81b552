"""Export to ONNX, INT8 quantisation and the parity report (`fakescope export`)."""

# Face crops an INT8 export fits its activation ranges on, and holds out for its parity check.
# On the default detector 256 narrowed INT8's loss on the validation splits a little against
# 64 (docs/performance.md). Kept here, light, so the CLI can read it without torch.
CALIBRATION_CROPS = 256
