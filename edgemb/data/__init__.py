"""Calibration/evaluation data readers and the preprocessing that belongs to each set of weights."""

from edgemb.data.datasets import Data, as_data, load_data, load_pixels, parse_spec
from edgemb.data.preprocess import Preprocessing, normalize, preprocess, to_pixels

__all__ = ["Data", "Preprocessing", "as_data", "load_data", "load_pixels", "normalize", "parse_spec", "preprocess",
           "to_pixels"]
