"""The quantize stage's options: the values each may take and its default, in a module light enough for `--help`.

`edgemb quantize` offers exactly these (edgemb.cli; building its parser imports no torch or onnx), and
edgemb.stages.quantize.quantize_model validates against the same values; tests/test_cli.py fails when the
command line and the function disagree on a choice or a default.
"""

from __future__ import annotations

METHODS = ("minmax", "percentile", "mse")  # activation range methods (edgemb/quant/ranges.py)
AUTO_METHOD = "auto"  # chooses one of the methods per model (edgemb.stages.quantize.AUTO_CANDIDATES)
DEFAULT_METHOD = AUTO_METHOD
WEIGHT_ROUNDINGS = ("gptq", "nearest")
DEFAULT_WEIGHT_ROUNDING = "gptq"
GRANULARITIES = ("per-channel", "per-tensor")
DEFAULT_GRANULARITY = "per-channel"
ACTIVATION_TYPES = ("uint8", "int8")
DEFAULT_ACTIVATION_TYPE = "uint8"  # what x86 VNNI kernels take
DEFAULT_MAX_FLOAT_LAYERS = 6  # most layers an accuracy budget may keep in float
DEFAULT_REFIT = True  # refit dense layers to the int8 model's inputs (edgemb/quant/refit.py), gated
DEFAULT_ACT_EQUALIZATION = True  # scale quiet activation channels up (edgemb/quant/act_equalization.py), gated
