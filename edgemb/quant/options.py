"""The quantize stage's options: the values each may take, its default, and QuantizeSettings holding one choice
of them, in a module light enough for `--help` (no torch, no onnx).

`edgemb quantize` offers exactly these (edgemb.cli builds a QuantizeSettings from its flags), and
edgemb.stages.quantize.quantize_model takes one; tests/test_cli.py fails when the command line and
QuantizeSettings disagree on a choice or a default.
"""

from __future__ import annotations

from dataclasses import dataclass

from edgemb.errors import EdgembError

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


@dataclass(frozen=True)
class QuantizeSettings:
    """How the quantize stage quantizes, checked once on construction (messages name the CLI flags).

    `method`: activation ranges (METHODS, or AUTO_METHOD to pick per model); `granularity`: weight scales per
    output channel or per tensor; `activation_type`: uint8 or int8 activations; `weight_rounding`: GPTQ or
    round-to-nearest; `cle`: cross-layer equalization; `bias_correction`: empirical bias correction; `refit`:
    refit dense layers to the int8 model's own inputs after GPTQ (edgemb/quant/refit.py); `act_equalization`:
    scale quiet activation channels up into their tensor's range (edgemb/quant/act_equalization.py);
    `max_float_layers`: most layers an accuracy budget may keep in float. CLE, the refit and activation
    equalization are kept only when they raise held-out calibration SQNR.
    """

    method: str = DEFAULT_METHOD
    granularity: str = DEFAULT_GRANULARITY
    activation_type: str = DEFAULT_ACTIVATION_TYPE
    weight_rounding: str = DEFAULT_WEIGHT_ROUNDING
    cle: bool = False
    bias_correction: bool = False
    refit: bool = DEFAULT_REFIT
    act_equalization: bool = DEFAULT_ACT_EQUALIZATION
    max_float_layers: int = DEFAULT_MAX_FLOAT_LAYERS

    def __post_init__(self) -> None:
        """Reject a choice the stage does not offer, naming the flag and the values it takes."""
        if self.method not in (*METHODS, AUTO_METHOD):
            raise EdgembError(f"--method {self.method!r} is not one of {', '.join((AUTO_METHOD, *METHODS))}")
        if self.weight_rounding not in WEIGHT_ROUNDINGS:
            raise EdgembError(f"--weight-rounding {self.weight_rounding!r} is not one of "
                              f"{', '.join(WEIGHT_ROUNDINGS)}")
        if self.granularity not in GRANULARITIES:
            raise EdgembError(f"--granularity {self.granularity!r} is not one of {', '.join(GRANULARITIES)}")
        if self.activation_type not in ACTIVATION_TYPES:
            raise EdgembError(f"--activation-type {self.activation_type!r} is not one of "
                              f"{', '.join(ACTIVATION_TYPES)}")
        if self.max_float_layers < 0:
            raise EdgembError(f"--max-float-layers must be >= 0, got {self.max_float_layers}")


DEFAULT_SETTINGS = QuantizeSettings()  # what `edgemb quantize` does with no flags, and quantize_model by default
