"""Is a volume one scan, or a stack of unrelated slices (one slice each of many patients)?

Why: public sets of CT slices with radiologists' infection masks ship their slices as one volume (MedSeg's COVID-19
set: 100 axial slices of some 40 patients in one NIfTI file). Analysed as one scan, the lung U-Net's coronal and
sagittal views look across slices of different patients and the thick-slice rule of the opacity measure compares a
slice with another patient's: ``bench/inputs.py --parts stack --before`` (24 unrelated simulated slices with lesions,
held-out real backgrounds and phantoms, stacked into one volume), as one scan against each slice alone: lung Dice
0.870 against 0.942, opacity error 8.7 against 7.1 points, pointing game of the joint map 0.375 against 0.542, but
lesion pixels inside the lungs 0.903 against 0.837 (the larger masks held more of everything). Such a stack is
segmented and measured slice by slice (``inference.lungs.segment_lungs``, ``inference.pipeline``), as each slice
would be alone.

Neighbouring slices of one scan are nearly the same image: the median correlation of neighbouring slices was at
least 0.905 on every real scan here (8 mm slices included) and 0.923 on 110 simulated studies, against 0.51 (at most
0.78 for a pair) for slices of different real patients.
"""
from __future__ import annotations

import numpy as np

__all__ = ["UNRELATED_BELOW", "unrelated_slices"]

#: A volume whose neighbouring slices correlate less than this (median) is a stack of unrelated slices.
UNRELATED_BELOW = 0.8
#: Neighbouring pairs compared (spread over the volume), and the pixel stride of the comparison.
_PAIRS = 12
_STRIDE = 4


def unrelated_slices(array: np.ndarray) -> bool:
    """Whether the slices of a (z, y, x) HU volume are unrelated images (see the module docstring): the median, over up
    to ``_PAIRS`` neighbouring pairs, of their correlation (HU clipped to -1100..200, every ``_STRIDE``-th pixel)
    below ``UNRELATED_BELOW``. A single slice is not a stack."""
    n = array.shape[0]
    if array.ndim != 3 or n < 2:
        return False
    correlations = []
    for k in np.unique(np.linspace(0, n - 2, min(n - 1, _PAIRS)).round().astype(int)):
        a, b = (np.clip(np.asarray(array[j][::_STRIDE, ::_STRIDE], dtype=np.float32), -1100.0, 200.0).ravel()
                for j in (k, k + 1))
        if a.std() == 0 or b.std() == 0:
            continue
        correlations.append(float(np.corrcoef(a, b)[0, 1]))
    return bool(correlations) and float(np.median(correlations)) < UNRELATED_BELOW
