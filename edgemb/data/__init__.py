"""Calibration/evaluation data readers and the preprocessing that belongs to each set of weights."""

from edgemb.data.datasets import Data, as_data, load_data, load_pixels
from edgemb.data.preprocess import Preprocessing, normalize, preprocess, to_pixels
from edgemb.data.spec import parse_spec

__all__ = ["Data", "Preprocessing", "as_data", "load_data", "load_pixels", "normalize", "parse_spec", "preprocess",
           "to_pixels"]
