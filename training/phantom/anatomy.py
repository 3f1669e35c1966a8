"""The thorax of one phantom patient: body wall, ribs, spine, mediastinum, heart, trachea, lungs and diaphragm.

Every organ is an ellipse whose size varies with the cranio-caudal coordinate ``t`` (0 = top of the scan): the lungs
are tapered ellipsoids (narrow apex, wide base) cut by a domed diaphragm, by the heart, the aorta and the spine, so
the cross-sections have the bean shape of real lungs with paravertebral gutters and costophrenic recesses. Fields that
do not depend on ``t`` are computed once per study, so a slice costs a handful of vectorised comparisons.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .geometry import Grid

AIR, FAT, SOFT, LIVER, BONE_TRABECULAR, BONE_CORTEX, CSF, DISC = -1000.0, -100.0, 40.0, 60.0, 250.0, 800.0, 15.0, 80.0
SIDES = (-1, 1)  # -1: patient right (image left), +1: patient left (image right)


@dataclass(frozen=True)
class Anatomy:
    """Patient-specific shape parameters (mm, or fractions of the scan length for ``t`` values)."""

    body_a: float
    body_b: float
    fat_mm: float
    muscle_mm: float
    lung_cx: float  # |x| of each lung's centre
    lung_cy: float
    lung_ax: tuple[float, float]  # per side (right, left)
    lung_ay: tuple[float, float]
    t_apex: float
    t_base: tuple[float, float]
    dome: tuple[float, float]
    heart: tuple[float, float, float, float, float, float]  # cx, cy, ax, ay, t0, t1
    spine_y: float
    trachea_y: float
    carina_t: float
    rib_phase: float
    n_ribs: float
    lung_hu: float


def sample_anatomy(rng: np.random.Generator, fov_mm: float) -> Anatomy:
    """Draw one patient; the body always fits inside the field of view."""
    body_a = min(rng.uniform(140, 172), 0.47 * fov_mm)
    body_b = body_a * rng.uniform(0.66, 0.76)
    fat = rng.uniform(6, 22)
    inner_a = body_a - fat - 14
    lung_cx = 0.47 * inner_a + rng.uniform(6, 10)
    ax = 0.42 * inner_a
    lung_ax = (ax * rng.uniform(1.0, 1.06), ax * rng.uniform(0.94, 1.0))
    ay = 0.78 * body_b
    lung_ay = (ay * rng.uniform(0.98, 1.03), ay * rng.uniform(0.96, 1.01))
    t_base = rng.uniform(0.9, 0.95)
    dome = rng.uniform(0.15, 0.22)
    heart = (rng.uniform(8, 20), -0.28 * body_b, rng.uniform(50, 62), rng.uniform(40, 50),
             rng.uniform(0.38, 0.46), 0.99)
    return Anatomy(
        body_a=body_a, body_b=body_b, fat_mm=fat, muscle_mm=14.0, lung_cx=lung_cx, lung_cy=0.02 * body_b,
        lung_ax=lung_ax, lung_ay=lung_ay, t_apex=rng.uniform(0.02, 0.07), t_base=(t_base - 0.03, t_base),
        dome=(dome * 1.1, dome), heart=heart, spine_y=0.62 * body_b, trachea_y=0.12 * body_b,
        carina_t=rng.uniform(0.36, 0.42), rib_phase=rng.uniform(0, 1), n_ribs=rng.uniform(7.0, 8.5),
        lung_hu=rng.uniform(-880, -830),
    )


def lung_q0(an: Anatomy, i: int, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Squared normalised distance from lung ``i``'s axis (1 on the widest cross-section's edge)."""
    return ((x - SIDES[i] * an.lung_cx) / an.lung_ax[i]) ** 2 + ((y - an.lung_cy) / an.lung_ay[i]) ** 2


def taper(an: Anatomy, t: np.ndarray | float) -> np.ndarray:
    """Lung cross-section scale: zero above the apex, growing like a paraboloid to full size at mid-chest."""
    return np.sqrt(np.clip((np.asarray(t) - an.t_apex) / 0.45, 0.0, 1.0))


def diaphragm_floor(an: Anatomy, i: int, q0: np.ndarray) -> np.ndarray:
    """The diaphragm: the lowest ``t`` of the lung, highest at the dome (centre), lowest in the recesses (rim)."""
    return an.t_base[i] - an.dome[i] * np.clip(1.0 - q0, 0.0, 1.0)


def _heart_q(an: Anatomy, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    cx, cy, ax, ay, _, _ = an.heart
    return ((x - cx) / ax) ** 2 + ((y - cy) / ay) ** 2


def _heart_scale(an: Anatomy, t: float | np.ndarray) -> np.ndarray:
    _, _, _, _, t0, t1 = an.heart
    u = np.clip((np.asarray(t) - t0) / (t1 - t0), 0.0, 1.0)
    return np.sqrt(np.sin(np.pi * u) * (u < 0.999)) * 1.15


def _allowed(an: Anatomy, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Where lungs may be at all: inside the rib cage, clear of the spine, the descending aorta and the midline."""
    wall = an.fat_mm + an.muscle_mm + 6.0
    inner = (x / (an.body_a - wall)) ** 2 + (y / (an.body_b - wall)) ** 2
    spine = x ** 2 + ((y - an.spine_y) * 0.8) ** 2 < 30.0 ** 2
    aorta = (x - 24.0) ** 2 + (y - an.spine_y + 18) ** 2 < 17.0 ** 2
    midline = np.abs(x) < 9.0
    return (inner < 1.0) & ~spine & ~aorta & ~midline


def lung_at(an: Anatomy, x: np.ndarray, y: np.ndarray, t: np.ndarray) -> np.ndarray:
    """Lung side at points (0 = none, 1 = right, 2 = left); used to keep vessels and lesions inside the lungs."""
    x, y, t = (np.asarray(v, dtype=np.float32) for v in (x, y, t))
    out = np.zeros(np.broadcast(x, y, t).shape, dtype=np.int8)
    ok = _allowed(an, x, y) & ~(_heart_q(an, x, y) <= _heart_scale(an, t) ** 2)
    for i in range(2):
        q0 = lung_q0(an, i, x, y)
        inside = ok & (q0 <= taper(an, t) ** 2) & (t <= diaphragm_floor(an, i, q0))
        out[inside] = i + 1
    return out


class ThoraxRenderer:
    """Renders the static anatomy slice by slice; precomputes everything that does not depend on ``t``."""

    def __init__(self, an: Anatomy, grid: Grid) -> None:
        self.an, self.grid = an, grid
        axis = grid.axis_mm()
        x, y = axis[None, :], axis[:, None]
        self.x, self.y = x, y
        body_q = (x / an.body_a) ** 2 + (y / an.body_b) ** 2
        muscle_q = (x / (an.body_a - an.fat_mm)) ** 2 + (y / (an.body_b - an.fat_mm)) ** 2
        base = np.full((grid.size, grid.size), AIR, dtype=np.float32)
        base[body_q <= 1.0] = FAT
        base[muscle_q <= 1.0] = SOFT
        self.body = body_q <= 1.0
        self.spine_d = np.sqrt(x ** 2 + (y - an.spine_y) ** 2)
        canal_y = an.spine_y + 27.0
        canal_d = np.sqrt(x ** 2 + (y - canal_y) ** 2)
        base[(canal_d > 7.0) & (canal_d < 12.0) & (y > canal_y - 6)] = BONE_CORTEX * 0.8
        base[canal_d <= 7.0] = CSF
        base[(x / 4.0) ** 2 + ((y - canal_y - 17.0) / 9.0) ** 2 <= 1.0] = BONE_CORTEX * 0.8
        base[(np.abs(y - canal_y + 4.0) < 4.0) & (np.abs(x) > 10.0) & (np.abs(x) < 30.0)] = BONE_TRABECULAR
        self.base = base
        self.allowed = _allowed(an, x, y)
        self.q0 = [lung_q0(an, i, x, y) for i in range(2)]
        self.floor = [diaphragm_floor(an, i, q) for i, q in enumerate(self.q0)]
        self.heart_q = _heart_q(an, x, y)
        self.trachea_d = np.sqrt(x ** 2 + (y - an.trachea_y) ** 2)
        # Ribs: a band on an ellipse between the muscle and the pleura; a rib crosses a slice where the phase,
        # which runs down the chest and drops anteriorly (ribs slope forwards and down), falls in the duty cycle.
        ra, rb = an.body_a - an.fat_mm - 10.0, an.body_b - an.fat_mm - 10.0
        rho = np.sqrt((x / ra) ** 2 + (y / rb) ** 2)
        theta = np.arctan2(y / rb, x / ra)
        from_back = np.abs(np.angle(np.exp(1j * (theta - np.pi / 2)))) / np.pi  # 0 posterior .. 1 anterior
        width = 4.5 / min(ra, rb)
        band = (np.abs(rho - 1.0) < width) & (np.abs(np.sin(theta)) < 0.93 + 0.07 * (np.sin(theta) < 0))
        self.rib_idx = np.nonzero(band)
        self.rib_phase = (2.6 * from_back[band] + an.rib_phase).astype(np.float32)
        self.rib_edge = (np.abs(rho[band] - 1.0) > 0.55 * width)
        self.sternum = ((x / 14.0) ** 2 + ((y + rb - 2.0) / 6.0) ** 2) <= 1.0
        # Dependent lungs are denser: a gentle anterior-posterior gradient plus the patient's baseline.
        gradient = an.lung_hu + 45.0 * np.clip(y / an.body_b, -1, 1)
        self.lung_hu = np.broadcast_to(gradient, base.shape).astype(np.float32)

    def render(self, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Slice ``k``: HU (float32) and lung mask."""
        an, grid = self.an, self.grid
        t = float(grid.slice_t(k))
        hu = self.base.copy()
        depth_mm = t * grid.coverage_mm
        in_disc = (depth_mm / 26.0 + an.rib_phase) % 1.0 < 0.18
        body_r = 16.0 + 3.0 * t
        hu[self.spine_d <= body_r] = BONE_CORTEX * 0.9
        hu[self.spine_d <= body_r - 2.5] = DISC if in_disc else BONE_TRABECULAR
        phase = (t * an.n_ribs + self.rib_phase) % 1.0
        rib = phase < 0.3
        if t > an.t_apex - 0.02:
            ri = (self.rib_idx[0][rib], self.rib_idx[1][rib])
            hu[ri] = np.where(self.rib_edge[rib], BONE_CORTEX, BONE_TRABECULAR + 100.0)
        if 0.15 < t < 0.75:
            hu[self.sternum] = BONE_TRABECULAR + 150.0
        heart = self.heart_q <= float(_heart_scale(an, t)) ** 2
        s = float(taper(an, t)) ** 2
        lung = np.zeros(hu.shape, dtype=bool)
        for i in range(2):
            lung |= (self.q0[i] <= s) & (t <= self.floor[i]) & self.allowed & ~heart
        hu[(t > self.floor[0]) & (self.x < 0) & self.allowed & (self.q0[0] < 1.3)] = LIVER  # under the right dome
        hu[lung] = self.lung_hu[lung]
        if t < an.carina_t:
            hu[self.trachea_d <= 10.0] = SOFT
            hu[self.trachea_d <= 8.0] = AIR
        return hu, lung
