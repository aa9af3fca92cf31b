"""A calibration set too small to trust gets a warning, on the console and in the report.

int8 activation ranges are statistics of the calibration images: from one image they fit that image, and
the model loses accuracy on everything else without any error. The quantization stage still runs (a user
may know better), but nobody should get such a model silently.
"""

from __future__ import annotations

# Below this many samples the ranges are not trusted. Measured once (AMD EPYC, AVX-512 VNNI) with `edgemb quantize
# v1_0.25 --weights ref --calib fashion-mnist:train:N --eval fashion-mnist:test:2000`: logits SQNR 21.5 dB from
# N=1 against 29.5-31.4 dB from N=8..512 (top-1 moved within +-0.3 points, the noise of 2,000 samples). 32 leaves
# a margin above the knee; the quantization work (issue 11) may refine it.
MIN_CALIBRATION_SAMPLES = 32


def calibration_warning(n: int | None, spec: str | None = None) -> str | None:
    """One line saying why `n` calibration samples are too few, or None when there are enough (or n is unknown)."""
    if n is None or n >= MIN_CALIBRATION_SAMPLES:
        return None
    where = f" ({spec})" if spec else ""
    return (f"calibration set{where} has only {n} sample{'s' if n != 1 else ''}, fewer than "
            f"{MIN_CALIBRATION_SAMPLES}: int8 ranges from so few images fit those images, not your data; "
            "calibrate on a few hundred, e.g. fashion-mnist:train:512 or photos:calib")


def requested_samples(spec: str | None) -> int | None:
    """The sample count a data spec asks for (`...:N`), or None when it takes a whole dataset."""
    if not spec:
        return None
    from edgemb.data.spec import parse_spec

    return parse_spec(spec).count
