"""Scanner profiles: the acquisition settings that differ between sites, so models never see one scanner only."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ScannerProfile:
    """One reconstruction protocol.

    ``fov_mm`` over the matrix gives the pixel spacing (0.66-0.88 mm at 512). ``noise_hu`` is the standard deviation
    of the quantum noise after reconstruction; ``kernel_px`` is the in-plane blur (a sharp kernel is small) that also
    correlates that noise, as real filtered back projection does.
    """

    name: str
    manufacturer: str
    fov_mm: float
    slice_thickness_mm: float
    noise_hu: float
    kernel_px: float
    default_slices: int
    kvp: float = 120.0


PROFILES: dict[str, ScannerProfile] = {
    p.name: p
    for p in (
        ScannerProfile("thin-sharp", "Phantom Systems", 340.0, 1.25, 35.0, 0.55, 128),
        ScannerProfile("standard", "Phantom Systems", 360.0, 2.5, 20.0, 0.75, 112),
        ScannerProfile("thick-smooth", "Acme Imaging", 400.0, 5.0, 12.0, 1.0, 64),
        ScannerProfile("low-dose", "Acme Imaging", 450.0, 2.0, 40.0, 0.8, 96, kvp=100.0),
    )
}
DEFAULT_SIZE = 512
