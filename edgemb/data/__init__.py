"""Calibration/evaluation data readers and the preprocessing that belongs to each set of weights."""

from edgemb.data.datasets import Data, load_data, load_pixels, parse_spec
from edgemb.data.preprocess import Preprocessing, normalize, preprocess, to_pixels

__all__ = ["Data", "Preprocessing", "load_data", "load_pixels", "normalize", "parse_spec", "preprocess", "to_pixels"]
