"""Reading a study into a :class:`Volume`: a DICOM series (folder, file list or zip), a NIfTI volume, or one 2D image.

Slices are put in spatial order by projecting ImagePositionPatient on the slice normal (the cross product of the
ImageOrientationPatient row and column directions): file names and InstanceNumbers are often out of order or
reused, positions are not. InstanceNumber is the fallback when positions are missing. Pixel values become HU through
the modality LUT (RescaleSlope/Intercept); compressed transfer syntaxes are decoded by pydicom's pylibjpeg plugins,
except JPEG 2000 (the syntax of most archives' compressed CT, LIDC-IDRI's included), which imagecodecs' OpenJPEG
decodes with the GIL released. Compressed slices are decoded in parallel on ``decode_workers()`` workers, each slice
written straight into its place in the volume: threads when every slice's codec releases the GIL (no fork, no
pickled copy of each slice, and they run inside a Celery worker too), processes otherwise (pylibjpeg's codecs hold
it). A decoded slice's source bytes are dropped at once, so the series is never held twice.

Each slice keeps its own position/orientation/spacing so a pixel box can be turned into patient coordinates (mm),
which is what the review UI stores next to the pixel box.
"""
from __future__ import annotations

import io
import multiprocessing
import os
import warnings
import zipfile
from collections import Counter, defaultdict
from concurrent.futures import Executor, ProcessPoolExecutor, ThreadPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from pathlib import Path
from collections.abc import Iterable, Sequence

import imagecodecs
import numpy as np
import pydicom
from pydicom.encaps import generate_frames
from pydicom.errors import InvalidDicomError
from pydicom.pixels import apply_modality_lut
from pydicom.uid import JPEG2000, JPEG2000Lossless

__all__ = ["Volume", "LoadError", "load_study", "load_dicom", "load_nifti", "load_image"]

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg"}
CT_SOP_CLASSES = {"1.2.840.10008.5.1.4.1.1.2", "1.2.840.10008.5.1.4.1.1.2.1"}  # CT, Enhanced CT Image Storage
#: LPS (DICOM patient) from RAS (NIfTI world): flip x and y.
_RAS_TO_LPS = np.diag([-1.0, -1.0, 1.0])
#: Transfer syntaxes decoded by imagecodecs, whose codecs release the GIL (pylibjpeg's hold it).
GIL_FREE_SYNTAXES = {JPEG2000Lossless, JPEG2000}


class LoadError(ValueError):
    """Input that cannot be turned into a volume; ``str()`` is a one-line reason for the user."""


@dataclass
class Volume:
    """A study's pixels in spatial order with the geometry needed to map pixels to the patient.

    ``array`` is (z, y, x): HU when ``is_hu``, else 0..255 grey levels of an already-windowed image; int16 for a
    DICOM series whose every value is an integer in int16's range (the HU of nearly every CT: half the memory of
    float32, which the pipeline converts to a slice or a reduced copy at a time), float32 otherwise.
    Per-slice lists have one entry per z; entries are None when the source does not say.
    """

    array: np.ndarray
    kind: str  # "dicom-series" | "nifti" | "image"
    is_hu: bool
    path: str = ""
    spacing_mm: tuple[float, float, float] | None = None  # (z, y, x)
    study_instance_uid: str | None = None
    series_instance_uid: str | None = None
    sop_instance_uids: list[str | None] = field(default_factory=list)
    instance_numbers: list[int | None] = field(default_factory=list)
    z_mm: list[float | None] = field(default_factory=list)
    image_position_patient: list[tuple[float, float, float] | None] = field(default_factory=list)
    image_orientation_patient: list[tuple[float, ...] | None] = field(default_factory=list)
    pixel_spacing: list[tuple[float, float] | None] = field(default_factory=list)  # (row spacing, column spacing)

    def __post_init__(self) -> None:
        n = self.array.shape[0]
        for name in ("sop_instance_uids", "instance_numbers", "z_mm", "image_position_patient",
                     "image_orientation_patient", "pixel_spacing"):
            values = getattr(self, name)
            if not values:
                setattr(self, name, [None] * n)
            elif len(values) != n:
                raise ValueError(f"{name} has {len(values)} entries for {n} slices")

    @property
    def n_slices(self) -> int:
        return int(self.array.shape[0])

    def pixel_to_patient(self, index: int, x: float, y: float) -> tuple[float, float, float]:
        """Column ``x``, row ``y`` of slice ``index`` -> patient (X, Y, Z) in mm (DICOM LPS), per PS3.3 C.7.6.2.1.1."""
        ipp, iop, ps = self.image_position_patient[index], self.image_orientation_patient[index], \
            self.pixel_spacing[index]
        if ipp is None or iop is None or ps is None:
            raise ValueError(f"slice {index} has no patient geometry (position, orientation and pixel spacing)")
        row_dir, col_dir = np.asarray(iop[:3], float), np.asarray(iop[3:], float)
        point = np.asarray(ipp, float) + row_dir * ps[1] * x + col_dir * ps[0] * y
        return (float(point[0]), float(point[1]), float(point[2]))


# --------------------------------------------------------------------------- dispatch

def load_study(path: str | Path | Sequence[str | Path]) -> Volume:
    """Load a folder / zip / list of DICOM files, a ``.nii``/``.nii.gz`` volume, or a PNG/JPEG slice."""
    if not isinstance(path, (str, Path)):
        paths = [Path(p) for p in path]
        if len(paths) != 1:
            missing = [p for p in paths if not p.is_file()]
            if missing:
                raise LoadError(f"{missing[0]}: no such file")
            return load_dicom(paths, label=str(paths[0].parent) if paths else "")
        path = paths[0]
    p = Path(path)
    if not p.exists():
        raise LoadError(f"{p}: no such file or folder")
    name = p.name.lower()
    if p.is_dir():
        return load_dicom(sorted(f for f in p.rglob("*") if f.is_file()), label=str(p))
    if name.endswith(".nii") or name.endswith(".nii.gz"):
        return load_nifti(p)
    if p.suffix.lower() in IMAGE_SUFFIXES:
        return load_image(p)
    if zipfile.is_zipfile(p):
        return load_dicom_zip(p)
    return load_dicom([p], label=str(p))


# --------------------------------------------------------------------------- DICOM

def _read_datasets(sources: Iterable[tuple[str, object]]) -> list[pydicom.Dataset]:
    """Parse every source that is a DICOM image; anything else (licences, XML, SR) is skipped."""
    out = []
    for _name, src in sources:
        try:
            ds = pydicom.dcmread(src)
        except (InvalidDicomError, OSError, EOFError, ValueError, KeyError, TypeError):
            continue
        if "PixelData" in ds and "Rows" in ds:
            out.append(ds)
    return out


def load_dicom_zip(path: Path) -> Volume:
    """A zip of DICOM files (any folder layout inside)."""
    try:
        with zipfile.ZipFile(path) as zf:
            members = [m for m in zf.infolist() if not m.is_dir() and "__MACOSX" not in m.filename]
            sources = [(m.filename, io.BytesIO(zf.read(m))) for m in members]
    except (zipfile.BadZipFile, OSError) as exc:
        raise LoadError(f"{path}: unreadable zip ({exc})") from exc
    return _volume_from_datasets(_read_datasets(sources), label=str(path))


def load_dicom(files: Sequence[Path], label: str = "") -> Volume:
    """DICOM files of one series (the largest series when several are mixed)."""
    return _volume_from_datasets(_read_datasets((str(f), str(f)) for f in files), label=label)


def _floats(value: object, n: int) -> tuple[float, ...] | None:
    try:
        out = tuple(float(v) for v in value)  # type: ignore[union-attr]
    except (TypeError, ValueError):
        return None
    return out if len(out) == n else None


def _int_or_none(value: object) -> int | None:
    try:
        return int(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None


def _gil_free_frames(ds: pydicom.Dataset) -> np.ndarray | None:
    """(frames, rows, cols) of a single-sample JPEG 2000 dataset decoded by imagecodecs, or None where pydicom must
    decode it: another syntax, colour, or a codestream whose decoded type or size is not what the header says
    (pydicom reconciles a codestream's signedness or precision with the header; its pixels are then the reference)."""
    if _syntax(ds) not in GIL_FREE_SYNTAXES or int(getattr(ds, "SamplesPerPixel", 1)) != 1:
        return None
    try:
        signed, bits = int(ds.PixelRepresentation), int(ds.BitsAllocated)
        expected = (int(ds.Rows), int(ds.Columns))
        frames = [imagecodecs.jpeg2k_decode(frame, numthreads=1)
                  for frame in generate_frames(ds.PixelData, number_of_frames=_frame_count(ds))]
    except (AttributeError, TypeError, ValueError, imagecodecs.Jpeg2kError):
        return None
    dtype = np.dtype(f"{'i' if signed else 'u'}{bits // 8}")
    if not frames or any(f.dtype != dtype or f.shape != expected for f in frames):
        return None
    return np.stack(frames)


def _pixels(ds: pydicom.Dataset) -> np.ndarray:
    """(frames, rows, cols) after the modality LUT: int16 when every value is an integer in its range (as stored
    HU are), else float32."""
    try:
        arr = _gil_free_frames(ds)
        if arr is None:
            arr = ds.pixel_array
    except Exception as exc:  # decoder errors come in many types (plugins, truncated data)
        syntax = getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", None)
        name = getattr(syntax, "name", syntax)
        raise LoadError(f"cannot decode pixel data ({name}): {exc}".splitlines()[0]) from exc
    if arr.ndim == 3 and int(getattr(ds, "SamplesPerPixel", 1)) > 1:
        arr = arr.mean(axis=-1)
    if arr.ndim == 2:  # one frame
        arr = arr[None]
    if "PerFrameFunctionalGroupsSequence" in ds:  # an enhanced multi-frame image: the rescale is per frame
        values = np.asarray(arr, dtype=np.float32)
        for f in range(values.shape[0]):
            slope = _float_or_none(_frame_value(ds, f, "PixelValueTransformationSequence", "RescaleSlope"))
            intercept = _float_or_none(_frame_value(ds, f, "PixelValueTransformationSequence", "RescaleIntercept"))
            values[f] = values[f] * np.float32(1.0 if slope is None else slope) + np.float32(intercept or 0.0)
    else:
        values = np.asarray(apply_modality_lut(arr, ds), dtype=np.float32)
    if values.size and (values.min() < -32768 or values.max() > 32767):
        return values
    exact = values.astype(np.int16)
    return exact if np.array_equal(exact, values) else values


def _frame_value(ds: pydicom.Dataset, frame: int, sequence: str, keyword: str) -> object:
    """An attribute of one frame of an enhanced multi-frame image (Enhanced CT and the like): from the frame's
    functional group ``sequence``, else from the shared one; None when neither holds it."""
    per_frame = ds.get("PerFrameFunctionalGroupsSequence") or []
    shared = ds.get("SharedFunctionalGroupsSequence") or []
    for group in ([per_frame[frame]] if frame < len(per_frame) else []) + list(shared[:1]):
        items = group.get(sequence)
        if items and keyword in items[0]:
            return items[0][keyword].value
    return None


def _frame_count(ds: pydicom.Dataset) -> int:
    return max(1, _int_or_none(getattr(ds, "NumberOfFrames", 1)) or 1)


def decode_workers() -> int:
    """Workers for decoding compressed slices: ``LUNGSCOPE_DECODE_PROCESSES``, else the CPUs this process may use."""
    configured = os.environ.get("LUNGSCOPE_DECODE_PROCESSES")
    return max(1, int(configured) if configured else len(os.sched_getaffinity(0)))


def _decode_executor(series: list[pydicom.Dataset]) -> Executor | None:
    """Who decodes ``series`` beside this thread: threads when every compressed slice's codec releases the GIL,
    else forked processes; None (decode here) for a single or uncompressed series, where one CPU is all there is,
    or where processes are needed and this one may not have children (a daemonic one, e.g. a Celery prefork child).

    A pool per series, shut down before returning. Forked children hold a copy of every descriptor this process has
    open (a web server's client sockets, a browser driver's pipe), so children kept alive between studies would keep
    those open after their owner closed them; forking a few children costs milliseconds, the decode they share
    seconds. Forked, not spawned: a spawned (or forkserver) child re-imports the caller's main module, torch and all;
    a forked one starts at once, and it only runs pydicom and numpy (no torch, no OpenMP), which is what makes
    forking a threaded process safe here."""
    compressed = [syntax for syntax in map(_syntax, series) if syntax is not None and syntax.is_compressed]
    workers = min(decode_workers(), len(series))
    if len(series) < 2 or not compressed or workers < 2:
        return None
    if all(syntax in GIL_FREE_SYNTAXES for syntax in compressed):
        return ThreadPoolExecutor(workers)
    if multiprocessing.current_process().daemon:
        return None
    return ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("fork"))


def _syntax(ds: pydicom.Dataset) -> pydicom.uid.UID | None:
    return getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", None)


def _decode_series(series: list[pydicom.Dataset], shape: tuple[int, int]) -> np.ndarray:
    """(frames, rows, cols) of ``series`` in the given order, each dataset's frames written into their place
    (compressed ones decoded on the decode workers); the dataset's pixel bytes are released once decoded.
    int16 while every slice is (see :func:`_pixels`), float32 from the first that is not."""
    counts = [_frame_count(ds) for ds in series]
    starts = np.concatenate([[0], np.cumsum(counts)]).astype(int)
    array = np.empty((int(starts[-1]), *shape), dtype=np.int16)

    def place(k: int, frames: np.ndarray) -> None:
        nonlocal array
        if frames.shape != (counts[k], *shape):
            raise LoadError(f"decoded {frames.shape[0]} frames of {frames.shape[1:]} where the header says "
                            f"{counts[k]} of {shape}")
        if frames.dtype != array.dtype:
            array = array.astype(np.float32)  # the slices placed so far are exact in float32 too
        array[starts[k]:starts[k + 1]] = frames
        for keyword in ("PixelData", "FloatPixelData", "DoubleFloatPixelData"):
            if keyword in series[k]:
                delattr(series[k], keyword)  # the encoded bytes and pydicom's cached decode: the volume has them

    done = 0
    executor = _decode_executor(series)
    try:
        if executor is not None:
            try:
                with executor as pool:
                    for frames in pool.map(_pixels, series, chunksize=4):
                        place(done, frames)
                        done += 1
            except BrokenProcessPool:  # a decode process died (killed): decode the rest here
                pass
        while done < len(series):
            place(done, _pixels(series[done]))
            done += 1
    except LoadError as exc:  # say which file: a series is hundreds of them
        uid = series[done].get("SOPInstanceUID", "")
        raise LoadError(f"slice {done + 1} of {len(series)}{f' (SOP Instance UID {uid})' if uid else ''}: {exc}") \
            from exc
    return array


def _is_ct(ds: pydicom.Dataset) -> bool:
    return getattr(ds, "Modality", None) == "CT" or str(getattr(ds, "SOPClassUID", "")) in CT_SOP_CLASSES


def _volume_from_datasets(datasets: list[pydicom.Dataset], label: str) -> Volume:
    if not datasets:
        raise LoadError(f"{label}: no DICOM images found")
    by_series: dict[str, list[pydicom.Dataset]] = defaultdict(list)
    for ds in datasets:
        by_series[str(getattr(ds, "SeriesInstanceUID", ""))].append(ds)
    series = max(by_series.values(), key=len)
    shape = Counter((int(ds.Rows), int(ds.Columns)) for ds in series).most_common(1)[0][0]
    series = [ds for ds in series if (int(ds.Rows), int(ds.Columns)) == shape]

    first_iop = next((iop for ds in series if (iop := _floats(getattr(ds, "ImageOrientationPatient", None), 6))),
                     None)
    positions = [_floats(getattr(ds, "ImagePositionPatient", None), 3) for ds in series]
    along = _along_normal(first_iop, positions)
    if along is not None:
        z: list[float | None] = list(along)
        order = sorted(range(len(series)), key=lambda i: along[i])
    else:
        z = [p[2] if p is not None else None for p in positions]  # type: ignore[misc]
        numbers = [_int_or_none(getattr(ds, "InstanceNumber", None)) for ds in series]
        order = sorted(range(len(series)), key=lambda i: (numbers[i] is None, numbers[i] or 0))

    array = _decode_series([series[i] for i in order], shape)
    multi = array.shape[0] != len(order)
    first = series[order[0]]
    is_hu = _is_ct(first)
    if not is_hu and array.max() > 255:  # a 16-bit non-CT image: bring it to the 8-bit range the pipeline expects
        array = array.astype(np.float32)
        array = (array - array.min()) / max(float(np.ptp(array)), 1e-6) * 255.0

    if multi and all("PerFrameFunctionalGroupsSequence" in series[i] for i in order):
        return _enhanced_volume(array, [series[i] for i in order], label, is_hu)
    pixel_spacing = [_floats(getattr(series[i], "PixelSpacing", None), 2) for i in order]
    sorted_z = [z[i] for i in order]
    spacing = _spacing(first, sorted_z, pixel_spacing[0])

    def per_slice(values: list) -> list:
        return [] if multi else values  # a multi-frame object's per-frame geometry is not expanded here
    return Volume(
        array=array, kind="dicom-series", is_hu=is_hu, path=label, spacing_mm=spacing,
        study_instance_uid=_str_or_none(getattr(first, "StudyInstanceUID", None)),
        series_instance_uid=_str_or_none(getattr(first, "SeriesInstanceUID", None)),
        sop_instance_uids=per_slice([_str_or_none(getattr(series[i], "SOPInstanceUID", None)) for i in order]),
        instance_numbers=per_slice([_int_or_none(getattr(series[i], "InstanceNumber", None)) for i in order]),
        z_mm=per_slice(sorted_z),
        image_position_patient=per_slice([positions[i] for i in order]),
        image_orientation_patient=per_slice([_floats(getattr(series[i], "ImageOrientationPatient", None), 6)
                                             for i in order]),
        pixel_spacing=per_slice(pixel_spacing),
    )


def _enhanced_volume(array: np.ndarray, series: list[pydicom.Dataset], label: str, is_hu: bool) -> Volume:
    """A volume of enhanced multi-frame images (Enhanced CT: one instance holding the whole series), its geometry
    read frame by frame from the functional groups, as its rescale was (:func:`_pixels`). Read like a classic image,
    such a file had no rescale (stored values 0..4095 taken for HU, air at 0), no spacing and no orientation. The
    frames keep their stored order (their frame numbers, which the viewer shows); they are in spatial order as
    scanners write them, ascending or descending (``inference.lungs.cranial_is_last`` reads which)."""
    frames = [(ds, f) for ds in series for f in range(_frame_count(ds))]
    positions = [_floats(_frame_value(ds, f, "PlanePositionSequence", "ImagePositionPatient"), 3) for ds, f in frames]
    orientations = [_floats(_frame_value(ds, f, "PlaneOrientationSequence", "ImageOrientationPatient"), 6)
                    for ds, f in frames]
    pixel_spacing = [_floats(_frame_value(ds, f, "PixelMeasuresSequence", "PixelSpacing"), 2) for ds, f in frames]
    along = _along_normal(next((o for o in orientations if o is not None), None), positions)
    z: list[float | None] = list(along) if along is not None else [None] * len(frames)
    first = series[0]
    return Volume(
        array=array, kind="dicom-series", is_hu=is_hu, path=label, spacing_mm=_spacing(first, z, pixel_spacing[0]),
        study_instance_uid=_str_or_none(getattr(first, "StudyInstanceUID", None)),
        series_instance_uid=_str_or_none(getattr(first, "SeriesInstanceUID", None)),
        z_mm=z, image_position_patient=positions,  # type: ignore[arg-type]
        image_orientation_patient=orientations, pixel_spacing=pixel_spacing,  # type: ignore[arg-type]
    )


def _along_normal(iop: tuple[float, ...] | None, positions: list[tuple[float, ...] | None]) -> list[float] | None:
    """Each slice's position along the slices' normal (mm; the cross product of the orientation's row and column
    directions), or None when the orientation or any position is missing."""
    if iop is None or any(p is None for p in positions):
        return None
    normal = np.cross(iop[:3], iop[3:])
    return [float(np.dot(p, normal)) for p in positions]  # type: ignore[arg-type]


def _str_or_none(value: object) -> str | None:
    return str(value) if value not in (None, "") else None


def _spacing(ds: pydicom.Dataset, z: list[float | None], pixel_spacing: tuple[float, ...] | None
             ) -> tuple[float, float, float] | None:
    """(z, y, x) mm: z from the median gap between sorted positions, else SpacingBetweenSlices / SliceThickness."""
    if pixel_spacing is None:
        return None
    gaps = np.diff([v for v in z if v is not None])
    gaps = gaps[np.abs(gaps) > 1e-3]
    if gaps.size:
        dz = float(np.median(np.abs(gaps)))
    else:
        dz = _float_or_none(getattr(ds, "SpacingBetweenSlices", None)) or \
            _float_or_none(getattr(ds, "SliceThickness", None)) or 1.0
    return (dz, float(pixel_spacing[0]), float(pixel_spacing[1]))


def _float_or_none(value: object) -> float | None:
    try:
        return float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None


# --------------------------------------------------------------------------- NIfTI and images

#: A NIfTI volume whose values all lie in 0..255 holds display grey levels, not HU (CT air is about -1000 HU).
GREY_RANGE = (0.0, 255.0)
#: At most this many distinct integer values: a label mask (lungs, lesions), not an image.
MASK_VALUES = 8


def load_nifti(path: Path) -> Volume:
    """A NIfTI volume, axes (i, j, k) -> (z=k, y=j, x=i): HU, as CT NIfTI exports store them, unless every value lies
    in 0..255 (or 0..1, scaled to it): then display grey levels of an already-windowed image (such as the Radiopaedia
    volumes of the public COVID-19 CT segmentation set), analysed as 8-bit images are (``is_hu`` False) instead of as
    HU, which would find no lung at all. A label mask (a handful of integer values) is refused with a clear error.
    A volume whose last two axes are the square ones and the first another length, with equal spacing along the
    two (e.g. (120, 512, 512): a NumPy (slices, rows, columns) array saved as is), is read in that order, with a
    warning, instead of as 512 slices across the body."""
    import nibabel as nib

    try:
        img = nib.load(str(path))
        data = np.asarray(img.get_fdata(dtype=np.float32))
    except Exception as exc:  # nibabel raises several unrelated types for bad files
        raise LoadError(f"{path}: unreadable NIfTI ({exc})".splitlines()[0]) from exc
    if data.ndim == 4 and data.shape[3] == 1:
        data = data[..., 0]
    if data.ndim == 2:
        data = data[..., None]
    if data.ndim != 3:
        raise LoadError(f"{path}: expected a 3D volume, got shape {data.shape}")
    affine = np.asarray(img.affine, float)
    zooms = np.linalg.norm(affine[:3, :3], axis=0)
    if data.shape[1] == data.shape[2] != data.shape[0] and np.isclose(zooms[1], zooms[2]):
        # (slices, rows, columns) written as is, with a placeholder affine (nibabel given a NumPy volume): its
        # square axes are the slice's, not (i, j); read without reordering, not as 512 sagittal slices
        warnings.warn(f"{path}: NIfTI of shape {data.shape} read as (slices, rows, columns): its last two axes "
                      "are the square ones", stacklevel=2)
        data, affine = data.transpose(2, 1, 0), np.diag([*zooms[[2, 1, 0]], 1.0])  # its geometry: the spacing
    if not np.isfinite(data).all():
        raise LoadError(f"{path}: the volume holds NaN or infinite values")
    sample = data.ravel()[::max(1, data.size // 1_000_000)]
    values = np.unique(sample)
    if data.size >= 4096 and values.size <= MASK_VALUES and np.array_equal(values, np.round(values)):
        raise LoadError(f"{path}: holds only the values {values.astype(int).tolist()}: a label mask, not a CT image")
    low, high = float(data.min()), float(data.max())
    is_hu = not (low >= GREY_RANGE[0] and high <= GREY_RANGE[1])
    if not is_hu and high <= 1.0:
        data = data * np.float32(255.0)
    array = np.ascontiguousarray(data.transpose(2, 1, 0))
    lin = _RAS_TO_LPS @ affine[:3, :3]
    origin = _RAS_TO_LPS @ affine[:3, 3]
    di, dj, dk = (float(np.linalg.norm(lin[:, c])) for c in range(3))
    row_dir, col_dir = lin[:, 0] / max(di, 1e-9), lin[:, 1] / max(dj, 1e-9)
    normal = np.cross(row_dir, col_dir)
    if float(np.dot(lin[:, 2], normal)) < 0:  # stored against the slice normal: flip into spatial order
        array = np.ascontiguousarray(array[::-1])
        origin = origin + lin[:, 2] * (array.shape[0] - 1)
        lin[:, 2] = -lin[:, 2]
    iop = tuple(float(v) for v in (*row_dir, *col_dir))
    positions = [tuple(float(v) for v in origin + lin[:, 2] * k) for k in range(array.shape[0])]
    return Volume(
        array=array, kind="nifti", is_hu=is_hu, path=str(path), spacing_mm=(dk, dj, di),
        z_mm=[float(np.dot(p, normal)) for p in positions], image_position_patient=positions,  # type: ignore[misc]
        image_orientation_patient=[iop] * array.shape[0], pixel_spacing=[(dj, di)] * array.shape[0],
    )


def load_image(path: Path) -> Volume:
    """One already-windowed 2D slice (PNG/JPEG) as grey levels 0..255; no HU, no geometry."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            grey = np.asarray(im.convert("L"), dtype=np.float32)
    except (UnidentifiedImageError, OSError) as exc:
        raise LoadError(f"{path}: unreadable image ({exc})".splitlines()[0]) from exc
    return Volume(array=grey[None], kind="image", is_hu=False, path=str(path))
