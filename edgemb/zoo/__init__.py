"""The MobileNet family built from the papers' setting tables, with torchvision-compatible layouts."""

from edgemb.zoo.counting import count_macs, count_params
from edgemb.zoo.registry import FAMILIES, ModelSpec, all_names, build_model, parse_model_name

__all__ = ["FAMILIES", "ModelSpec", "all_names", "build_model", "count_macs", "count_params", "parse_model_name"]
