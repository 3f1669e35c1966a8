"""Integrated Gradients: completeness, and the fast shared-forward path against captum's reference."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from inference import saliency
from inference.classifier import MultiScaleVGG
from inference.saliency import SaliencyEngine, captum_ig, gauss_legendre, joint_saliency


def _model(seed: int = 0) -> MultiScaleVGG:
    """A tiny eval-mode model with non-trivial BatchNorm statistics (so folding them is really exercised)."""
    torch.manual_seed(seed)
    model = MultiScaleVGG(3, width=0.125)
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.2, 0.2)
            m.running_var.uniform_(0.5, 2.0)
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.uniform_(-0.1, 0.1)
    return model.eval()


def _image(seed: int = 1, size: int = 224) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(1, 1, size, size, generator=g)


def test_nodes_match_captums_gauss_legendre() -> None:
    from captum.attr._utils.approximation_methods import approximation_parameters

    step_sizes, alphas = approximation_parameters("gausslegendre")
    ours_a, ours_w = gauss_legendre(25)
    np.testing.assert_allclose(ours_a, alphas(25), atol=1e-12)
    np.testing.assert_allclose(ours_w, step_sizes(25), atol=1e-12)


@pytest.mark.parametrize("scale", [0, 1, 2])
def test_completeness(scale: int) -> None:
    """Sum of attributions = F(x) - F(0) (IG's completeness axiom) within 1% at m = 25, reference and fast path.

    A freshly initialised eval-mode network (BatchNorm an identity, head biases set) is affine along the straight
    path from the zero baseline, so the quadrature is exact and any error is the implementation's. (With arbitrary
    BatchNorm shifts, the max pooling kinks make 25 nodes a few percent off; that is IG's approximation, not a bug.)
    """
    torch.manual_seed(5)
    model = MultiScaleVGG(3, width=0.125).eval()
    for head in model.heads:
        torch.nn.init.uniform_(head.bias, -1.0, 1.0)
    x = _image(size=96)
    target = 2
    f = model.scale_forward(scale)
    with torch.no_grad():
        delta = float(f(x)[0, target] - f(torch.zeros_like(x))[0, target])
    reference = float(captum_ig(model.double(), x.double(), target, steps=25)[scale].sum())
    fast = float(SaliencyEngine(model.float()).attribute(x, target).ig[scale].sum())
    assert abs(reference - delta) <= 0.01 * abs(delta)
    assert abs(fast - delta) <= 0.01 * abs(delta)


_BF16 = pytest.param(torch.bfloat16, marks=pytest.mark.skipif(not torch.ops.mkldnn._is_mkldnn_bf16_supported(),
                                                              reason="oneDNN has no bf16 convolutions on this CPU"))


@pytest.mark.parametrize("whole_plane", [False, True])
@pytest.mark.parametrize("grad_dtype", [torch.float32, _BF16])
def test_fast_path_equals_captum_per_scale(grad_dtype: torch.dtype, whole_plane: bool) -> None:
    """fp32 gradients: captum's maps but for float rounding; bf16 ones (the default on CPUs with AMX or AVX-512
    BF16): bf16 rounding of the gradients only, the ReLU and pooling choices being the fp32 forward's."""
    model = _model(3)
    x = _image(4)
    target = 1
    fast = SaliencyEngine(model, grad_dtype=grad_dtype, whole_plane=whole_plane).attribute(x, target)
    reference = captum_ig(model, x, target)
    # BatchNorm folding moves a few pre-activations across zero by float rounding: allow that, nothing more
    tolerance = 5e-3 if grad_dtype == torch.float32 else 2e-2
    for ours, ref in zip(fast.ig, reference):
        ref = ref.numpy()
        assert np.corrcoef(ours.ravel(), ref.ravel())[0, 1] > 0.9999
        np.testing.assert_allclose(ours, ref, atol=tolerance * np.abs(ref).max())
    np.testing.assert_allclose(fast.joint, joint_saliency(reference), atol=tolerance * np.abs(fast.joint).max())


def test_fast_path_works_inside_inference_mode() -> None:
    """The pipeline classifies under inference_mode; the saliency step must still get gradients."""
    model = _model()
    with torch.inference_mode():
        x = _image()
        maps = SaliencyEngine(model, steps=5).attribute(x, 0)
    assert all(np.abs(m).sum() > 0 for m in maps.ig)


def test_engine_refuses_training_mode() -> None:
    with pytest.raises(ValueError):
        SaliencyEngine(MultiScaleVGG(3, width=0.125).train())


def _assert_equals_captum(fast, reference) -> None:
    for ours, ref in zip(fast.ig, reference):
        ref = ref.detach().cpu().numpy()
        np.testing.assert_allclose(ours, ref, atol=5e-3 * np.abs(ref).max())


@pytest.mark.parametrize("whole_plane", [False, True])
@pytest.mark.parametrize("target", [0, 2])
def test_fast_path_equals_captum_on_uniform_regions(target: int, whole_plane: bool) -> None:
    """A uniform image makes exactly equal values: max-pooling ties (the first element wins) and CAM maxima shared
    by several cells (torch.amax, so captum, splits the gradient evenly between them). The fast path must compute
    equal neighbourhoods equally to break the first kind as captum does, and split the second kind the same way."""
    model = _model(0)
    x = torch.full((1, 1, 224, 224), 0.5)
    alphas = torch.tensor(gauss_legendre(25)[0], dtype=torch.float32)
    with torch.no_grad():
        cams = model.forward_all(alphas[:, None, None, None] * x).cams
    shared = [int(((c[:, target] == c[:, target].amax(dim=(1, 2), keepdim=True)).sum(dim=(1, 2)) > 1).sum())
              for c in cams]
    assert sum(shared[:2]) > 0, "the case must have steps whose Conv3 or Conv4 maximum is shared"
    engine = SaliencyEngine(model, grad_dtype=torch.float32, whole_plane=whole_plane)
    _assert_equals_captum(engine.attribute(x, target), captum_ig(model, x, target))


def test_support_boxes_equal_the_whole_image_backward(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each stage back-propagated on the box of the gradient's support = on the whole image, at every scale."""
    model = _model(3)
    x = _image(4)
    boxed = SaliencyEngine(model, grad_dtype=torch.float32, whole_plane=False).attribute(x, 1)
    # every step's maximum boxed as the whole CAM: every stage's box is then its whole plane
    monkeypatch.setattr(saliency, "_max_boxes", lambda ties: [(0, ties.shape[1], 0, ties.shape[2])] * len(ties))
    whole = SaliencyEngine(model, grad_dtype=torch.float32, whole_plane=False).attribute(x, 1)
    for a, b in zip(boxed.ig, whole.ig):
        assert np.abs(a).max() > 0
        np.testing.assert_allclose(a, b, atol=1e-5 * np.abs(b).max())


def test_step_groups_picked_by_index_equal_sliced_ones(monkeypatch: pytest.MonkeyPatch) -> None:
    """Steps that share maxima are picked from the forward's tensors by a slice where consecutive, by an index
    tensor (a copy) where not: both must give the same maps (here every group goes the index way)."""
    model = _model(3)
    x = _image(4)
    sliced = SaliencyEngine(model, grad_dtype=torch.float32, whole_plane=False).attribute(x, 1)
    monkeypatch.setattr(saliency, "_step_rows", lambda steps: torch.tensor(steps))
    indexed = SaliencyEngine(model, grad_dtype=torch.float32, whole_plane=False).attribute(x, 1)
    for a, b in zip(indexed.ig, sliced.ig):
        np.testing.assert_allclose(a, b, atol=1e-6 * np.abs(b).max())


@pytest.mark.parametrize("whole_plane", [False, True])
def test_several_inputs_at_once_equal_one_at_a_time(whole_plane: bool) -> None:
    """``attribute_many``: inputs of other classes in one forward and one backward per scale give each input the
    maps of its own call (steps of different inputs sharing a box go back together; each input's steps are summed
    apart)."""
    model = _model(3)
    engine = SaliencyEngine(model, grad_dtype=torch.float32, whole_plane=whole_plane)
    xs = torch.cat([_image(seed, size=96) for seed in (4, 5, 6)])
    targets = [1, 0, 1]
    together = engine.attribute_many(xs, targets)
    for x, target, maps in zip(xs, targets, together):
        alone = engine.attribute(x[None], target)
        for a, b in zip(maps.ig, alone.ig):
            assert np.abs(b).max() > 0
            np.testing.assert_allclose(a, b, atol=1e-5 * np.abs(b).max())
        np.testing.assert_allclose(maps.joint, alone.joint, atol=1e-5)


def test_slices_per_call_follow_the_activation_budget() -> None:
    """The engine's saved forward activations for one input of this model at 112 px: 25 steps x 4 bytes x the
    convolutions' output cells (8 channels at width 0.125 x 2 convs at 112 px, ...)."""
    engine = SaliencyEngine(_model())
    cells = 2 * 4 * 112 ** 2 + 2 * 8 * 56 ** 2 + 3 * 16 * 28 ** 2 + 3 * 32 * 14 ** 2 + 3 * 32 * 7 ** 2
    per_input = 25 * 4 * cells
    assert engine.slices_per_call(112, 112, budget_bytes=3 * per_input) == 3
    assert engine.slices_per_call(112, 112, budget_bytes=3 * per_input - 1) == 2
    assert engine.slices_per_call(112, 112, budget_bytes=1) == 1


def test_support_boxes_shrink_to_the_receptive_field() -> None:
    """A Conv5 maximum in the corner cell: stage 4 (14 x 14) needs rows and columns 0-4 (the 2 x 2 cells pooled into
    it, grown by its 3 convolutions), and each stage below doubles the box and grows it by its convolutions, up to the
    plane's edge (stage 0 by one: the first conv's backward is the caller's). A Conv3 maximum shared by its CAM's
    whole last row needs the image's last 25 rows."""
    engine = SaliencyEngine(_model(), grad_dtype=torch.float32)
    planes = [(224, 224), (112, 112), (56, 56), (28, 28), (14, 14)]
    assert engine._support(4, (0, 1, 0, 1), planes) == [(0, 121, 0, 121), (0, 60, 0, 60), (0, 29, 0, 29),
                                                        (0, 13, 0, 13), (0, 5, 0, 5)]
    assert engine._support(2, (27, 28, 0, 28), planes[:3]) == [(199, 224, 0, 224), (100, 112, 0, 112),
                                                               (51, 56, 0, 56)]


@pytest.mark.parametrize("whole_plane", [False, True])
@pytest.mark.parametrize("size", [40, 100, 120])
def test_fast_path_equals_captum_at_other_sizes(size: int, whole_plane: bool) -> None:
    """Boxes clipped by the plane's edges on every side (40); planes of odd size (100: 25 at stage 2, 120: 15 at
    stage 3), whose last row and column no pooling window covers.

    Seed 4: with seed 3 at 120 px, folding BatchNorm rounds one max-pooling choice the other way (a 0.7 % local
    difference in Conv4, as with the autograd fast path before), which is what the tolerance is not about."""
    model = _model(4)
    x = _image(5, size=size)
    engine = SaliencyEngine(model, grad_dtype=torch.float32, whole_plane=whole_plane)
    _assert_equals_captum(engine.attribute(x, 1), captum_ig(model, x, 1))


def test_portable_convolutions_equal_onednn_fused_ones() -> None:
    """The plain conv2d path (CUDA, builds without oneDNN) gives the maps of the fused oneDNN one."""
    model = _model(3)
    x = _image(4)
    fused = SaliencyEngine(model, grad_dtype=torch.float32)
    plain = SaliencyEngine(model, grad_dtype=torch.float32)
    plain._fused = False
    for a, b in zip(fused.attribute(x, 1).ig, plain.attribute(x, 1).ig):
        np.testing.assert_allclose(a, b, atol=1e-5 * np.abs(b).max())


def test_kept_buffers_do_not_leak_between_calls() -> None:
    model = _model(3)
    engine = SaliencyEngine(model)
    first = engine.attribute(_image(4), 1)
    engine.attribute(_image(5), 2)
    engine.attribute(_image(6, size=96), 0)  # other shapes re-make some buffers
    again = engine.attribute(_image(4), 1)
    for a, b in zip(first.ig, again.ig):
        np.testing.assert_array_equal(a, b)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_fast_path_on_cuda_equals_cpu() -> None:
    """The CUDA path (plain conv2d, no oneDNN) against the CPU one, both fp32 (TF32 convolutions off for the test)."""
    model = _model(3)
    x = _image(4)
    cpu = SaliencyEngine(model, grad_dtype=torch.float32).attribute(x, 1)
    saved = torch.backends.cudnn.allow_tf32
    torch.backends.cudnn.allow_tf32 = False
    try:
        cuda = SaliencyEngine(model.to("cuda")).attribute(x.to("cuda"), 1)
    finally:
        torch.backends.cudnn.allow_tf32 = saved
    for a, b in zip(cuda.ig, cpu.ig):
        assert np.corrcoef(a.ravel(), b.ravel())[0, 1] > 0.999


@pytest.mark.parametrize("flags, expected", [("fpu sse2 avx2 fma", False), ("avx2 avx512f avx512_bf16", True),
                                             ("avx512f amx_tile amx_bf16", True), ("avx512f avx512_vnni", False)])
def test_bf16_backward_only_where_the_cpu_computes_in_bf16(tmp_path, flags: str, expected: bool) -> None:
    """The check the engine's default backward dtype follows (``inference.saliency._has_bf16_units``): bf16 where
    the CPU's flags name AMX or AVX-512 BF16 (oneDNN's bf16 convolutions are faster there), fp32 otherwise
    (emulated bf16 is not faster) and when the flags cannot be read."""
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text(f"processor\t: 0\nflags\t\t: {flags}\n\nprocessor\t: 1\nflags\t\t: {flags}\n")
    assert saliency._has_bf16_units(str(cpuinfo)) is expected
    assert saliency._has_bf16_units(str(tmp_path / "absent")) is False
