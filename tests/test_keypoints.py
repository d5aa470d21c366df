"""Tests for posemum_aug.keypoints: skeletons, flips, affine maps, frame visibility."""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from typing import Any

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from pycocotools.cocoeval import Params  # type: ignore[import-untyped]

from posemum_aug.keypoints import (
    COCO_17,
    CROWDPOSE_14,
    Skeleton,
    affine_keypoints,
    as_flip_index,
    flip_keypoints,
    heatmap_matrix,
    infer_flip_index,
    invert_affine,
    visible_in_frame,
)
from tests.paths import CROWDPOSE, OCHUMAN, needs_shared_data
from tests.strategies import DEVICES, generator, output_shapes, seeds

REAL_FILES = {"ochuman": OCHUMAN, "crowdpose": CROWDPOSE}
DTYPES = [torch.float32, torch.float64]


def random_affine(
    batch: int, g: torch.Generator, dtype: torch.dtype = torch.float64
) -> torch.Tensor:
    """``(B, 3, 3)`` maps like SSHPE's views: rotation, scale, a little shear, translation."""
    angle = (torch.rand(batch, generator=g, dtype=dtype) - 0.5) * (2 * math.pi / 3)
    scale = 0.75 + 0.5 * torch.rand(batch, generator=g, dtype=dtype)
    shear = 0.2 * (torch.rand(batch, generator=g, dtype=dtype) - 0.5)
    shift = 40 * (torch.rand(batch, 2, generator=g, dtype=dtype) - 0.5)
    cos, sin = torch.cos(angle) * scale, torch.sin(angle) * scale
    m = torch.zeros(batch, 3, 3, dtype=dtype)
    m[:, 0, 0], m[:, 0, 1], m[:, 0, 2] = cos, -sin + shear, shift[:, 0]
    m[:, 1, 0], m[:, 1, 1], m[:, 1, 2] = sin, cos, shift[:, 1]
    m[:, 2, 2] = 1.0
    return m


def load_category_and_keypoints(name: str) -> tuple[dict[str, Any], torch.Tensor, list[int]]:
    """The category, ``(N, K, 3)`` keypoints and each person's image width of a real file."""
    data = json.loads(REAL_FILES[name].read_text())
    widths = {img["id"]: img["width"] for img in data["images"]}
    anns = [a for a in data["annotations"] if a["num_keypoints"] > 0]
    kpts = torch.tensor([a["keypoints"] for a in anns], dtype=torch.float64).view(len(anns), -1, 3)
    return data["categories"][0], kpts, [widths[a["image_id"]] for a in anns]


# --- Skeleton ---------------------------------------------------------------------------


def test_builtin_sigmas_are_the_official_ones() -> None:
    coco = Params(iouType="keypoints").kpt_oks_sigmas.tolist()
    assert COCO_17.sigmas == pytest.approx(coco)
    # crowdposetools: [.79, .79, .72, .72, .62, .62, 1.07, 1.07, .87, .87, .89, .89, .79, .79] / 10
    crowd = [0.79, 0.79, 0.72, 0.72, 0.62, 0.62, 1.07, 1.07, 0.87, 0.87, 0.89, 0.89, 0.79, 0.79]
    assert CROWDPOSE_14.sigmas == pytest.approx([s / 10 for s in crowd])


def test_builtin_flip_pairs() -> None:
    assert COCO_17.flip_index == (0, 2, 1, 4, 3, 6, 5, 8, 7, 10, 9, 12, 11, 14, 13, 16, 15)
    assert CROWDPOSE_14.flip_index == (1, 0, 3, 2, 5, 4, 7, 6, 9, 8, 11, 10, 12, 13)
    assert (COCO_17.num_joints, CROWDPOSE_14.num_joints) == (17, 14)
    for sk in (COCO_17, CROWDPOSE_14):
        for k, j in enumerate(sk.flip_index):
            a, b = sk.names[k], sk.names[j]
            assert a == b or a.replace("left", "right") == b or a.replace("right", "left") == b


@needs_shared_data
def test_skeletons_from_real_files() -> None:
    ochuman, _, _ = load_category_and_keypoints("ochuman")
    crowd, _, _ = load_category_and_keypoints("crowdpose")
    assert Skeleton.from_coco_category(ochuman) == COCO_17  # names, flips, sigmas and links
    # The CrowdPose file carries COCO's 17-joint links under 14 joints: the built-in links
    # replace them, everything else comes from the file.
    assert any(max(link) > 14 for link in crowd["skeleton"])
    assert Skeleton.from_coco_category(crowd) == CROWDPOSE_14
    assert CROWDPOSE_14.names[12:] == ("head", "neck")


def test_from_coco_category_options() -> None:
    cat = {"keypoints": ["Head", "Hand-Left", "Hand-Right"], "skeleton": [[1, 2], [1, 3]]}
    sk = Skeleton.from_coco_category(cat)
    assert sk.flip_index == (0, 2, 1)
    assert sk.links == ((0, 1), (0, 2))
    assert sk.sigmas == (0.079, 0.05, 0.05)  # "head" is CrowdPose's; others the default
    assert Skeleton.from_coco_category(cat, default_sigma=0.1).sigmas == (0.079, 0.1, 0.1)
    assert Skeleton.from_coco_category(cat, [0.1, 0.2, 0.2]).sigmas == (0.1, 0.2, 0.2)
    assert Skeleton.from_coco_category(cat, flip_index=[0, 1, 2]).flip_index == (0, 1, 2)
    assert Skeleton.from_coco_category({"keypoints": ["a"], "skeleton": [[1, 5]]}).links == ()
    assert Skeleton.from_coco_category({"keypoints": ["a"]}).links == ()


@pytest.mark.parametrize(
    ("names", "expected"),
    [
        (["nose", "left_eye", "right_eye"], (0, 2, 1)),
        (["LeftEye", "RightEye"], (1, 0)),
        (["left-hand", "right-hand", "left hip", "right hip"], (1, 0, 3, 2)),
        (["eye_right", "eye_left", "tail"], (1, 0, 2)),
        (["lefteye", "righteye"], (1, 0)),
        (["head", "l_hip", "r_hip", "L.Knee", "R.Knee"], (0, 2, 1, 4, 3)),
        (["LHip", "RHip", "LBigToe", "RBigToe", "MidHip"], (1, 0, 3, 2, 4)),
        (["hip_l", "hip_r", "knee-R", "knee-L"], (1, 0, 3, 2)),
        (["HipL", "HipR", "Leg", "Rib", "LED"], (1, 0, 2, 3, 4)),
    ],
)
def test_infer_flip_index(names: list[str], expected: tuple[int, ...]) -> None:
    assert infer_flip_index(names) == expected


@pytest.mark.parametrize(
    ("names", "match"),
    [
        (["left_eye", "nose"], "'left_eye' has no partner"),
        (["left_eye", "right-eye"], "has no partner"),
        (["eye", "EYE"], "unique"),
        (["l_hand", "r_foot"], "'l_hand' has no partner named like 'r_hand'"),
        (["LHip", "Neck"], "'LHip' has no partner named like 'rhip'"),
    ],
)
def test_infer_flip_index_errors(names: list[str], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        infer_flip_index(names)
    with pytest.raises(ValueError, match=match):
        Skeleton.from_coco_category({"keypoints": names})


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"names": ()}, "at least one joint"),
        ({"names": ("a", "a")}, "unique"),
        ({"flip_index": (0,)}, "flip_index must have one entry per joint"),
        ({"flip_index": (0, 0)}, "permutation"),
        ({"names": ("a", "b", "c"), "flip_index": (1, 2, 0), "sigmas": (1, 1, 1)}, "own inverse"),
        ({"sigmas": (0.1,)}, "sigmas must have one entry"),
        ({"sigmas": (0.1, 0.0)}, "positive"),
        ({"sigmas": (0.1, math.nan)}, "positive"),
        ({"links": ((0, 2),)}, "link"),
        ({"links": ((1, 1),)}, "link"),
    ],
)
def test_skeleton_validation(kwargs: dict[str, Any], match: str) -> None:
    fields: dict[str, Any] = {"names": ("a", "b"), "flip_index": (1, 0), "sigmas": (0.1, 0.1)}
    with pytest.raises(ValueError, match=match):
        Skeleton(**(fields | kwargs))


def test_skeleton_normalises_lists_and_is_hashable() -> None:
    sk = Skeleton(names=["a", "b"], flip_index=[1, 0], sigmas=[1, 2], links=[[0, 1]])  # type: ignore[arg-type]
    assert sk == Skeleton(("a", "b"), (1, 0), (1.0, 2.0), ((0, 1),))
    assert len({sk, COCO_17, COCO_17}) == 2


def test_from_coco_category_needs_names() -> None:
    with pytest.raises(ValueError, match="no 'keypoints'"):
        Skeleton.from_coco_category({"skeleton": [[1, 2]]})


def test_flip_pairs_given_or_in_the_category() -> None:
    """Names that follow no convention get their pairs from the caller or the category's
    ``flip_pairs``; the caller's win over the category's, and ``()`` means none."""
    names = ["head", "hand_a", "hand_b"]
    with pytest.raises(ValueError, match="joint 'l_x' has no partner") as error:
        Skeleton.from_coco_category({"keypoints": ["l_x", "head"]})
    assert "a 'flip_pairs' list of [left, right] joint names in the category" in str(error.value)
    assert "pass flip_index" not in str(error.value)
    category = {"keypoints": names, "flip_pairs": [["hand_a", "hand_b"]]}
    assert Skeleton.from_coco_category(category).flip_index == (0, 2, 1)
    assert Skeleton.from_coco_category(category, flip_pairs=()).flip_index == (0, 1, 2)
    given = Skeleton.from_coco_category({"keypoints": names}, flip_pairs=[("hand_b", "hand_a")])
    assert given.flip_index == (0, 2, 1)
    assert Skeleton.from_coco_category({"keypoints": ["l_x", "r_x"]}).flip_index == (1, 0)


@pytest.mark.parametrize(
    ("category", "match"),
    [
        ({"keypoints": [1, 2]}, r"'keypoints' must be a list of joint names, got \[1, 2\]"),
        ({"keypoints": "nose"}, "'keypoints' must be a list of joint names"),
        ({"keypoints": ["a", ""]}, "'keypoints' must be a list of joint names"),
        (
            {"keypoints": ["a", "b"], "skeleton": [[1, None]]},
            r"'skeleton' must be a list of \[a, b\]",
        ),
        ({"keypoints": ["a", "b"], "skeleton": 5}, "'skeleton' must be a list of"),
        ({"keypoints": ["a", "b"], "skeleton": [[1, 2, 3]]}, "'skeleton' must be a list of"),
        ({"keypoints": ["a", "b"], "skeleton": [[True, 2]]}, "'skeleton' must be a list of"),
        ({"keypoints": ["a", "b"], "flip_pairs": [["a", "c"]]}, "names the joint 'c'"),
        ({"keypoints": ["a", "b"], "flip_pairs": [["a"]]}, r"\[left, right\] joint name pairs"),
        ({"keypoints": ["a", "b"], "flip_pairs": 3}, r"\[left, right\] joint name pairs"),
        ({"keypoints": ["a", "b"], "flip_pairs": [[1, 2]]}, "names the joint 1"),
        ({"keypoints": list("abc"), "flip_pairs": [["a", "b"], ["b", "c"]]}, "'b' twice"),
    ],
)
def test_malformed_categories_raise_value_error(category: dict[str, Any], match: str) -> None:
    """Each used to raise TypeError or AttributeError (or pass silently)."""
    with pytest.raises(ValueError, match=match):
        Skeleton.from_coco_category(category)


# --- flips --------------------------------------------------------------------------------


@given(seed=seeds, batch=st.integers(1, 3), width=st.integers(1, 300))
def test_flip_keypoints_twice_is_identity(seed: int, batch: int, width: int) -> None:
    g = generator(seed)
    kp = torch.rand(batch, 17, 2, generator=g) * width
    vis = torch.randint(0, 3, (batch, 17), generator=g)
    once = flip_keypoints(kp, vis, width, COCO_17.flip_index)
    twice = flip_keypoints(*once, width, COCO_17.flip_index)
    torch.testing.assert_close(twice[0], kp, rtol=0, atol=1e-4)
    assert torch.equal(twice[1], vis)
    # the centre column x = (W - 1) / 2 is fixed; nose stays the nose
    torch.testing.assert_close(once[0][..., 0, 0], width - 1 - kp[..., 0, 0])


def test_flip_keypoints_example_and_errors() -> None:
    kp = torch.tensor([[0.0, 1.0], [4.0, 2.0], [1.5, 3.0]])
    out, vis = flip_keypoints(kp, torch.tensor([2, 1, 0]), 5, [0, 2, 1])
    torch.testing.assert_close(out, torch.tensor([[4.0, 1.0], [2.5, 3.0], [0.0, 2.0]]))
    assert vis.tolist() == [2, 0, 1]
    with pytest.raises(ValueError, match="permutation"):
        flip_keypoints(kp, torch.ones(3), 5, [0, 1, 1])
    with pytest.raises(ValueError, match="flip_index must have shape"):
        flip_keypoints(kp, torch.ones(3), 5, torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="visibility must have shape"):
        flip_keypoints(kp, torch.ones(2), 5, [0, 2, 1])
    with pytest.raises(ValueError, match="width"):
        flip_keypoints(kp, torch.ones(3), 0, [0, 2, 1])
    with pytest.raises(ValueError, match="floating"):
        flip_keypoints(kp.long(), torch.ones(3), 5, [0, 2, 1])


@pytest.mark.parametrize("name", sorted(REAL_FILES))
@needs_shared_data
def test_flip_real_keypoints_swaps_left_and_right(name: str) -> None:
    category, kpts, widths = load_category_and_keypoints(name)
    sk = Skeleton.from_coco_category(category)
    xy, vis = kpts[..., :2], kpts[..., 2]
    width = torch.tensor(widths, dtype=xy.dtype)
    for person in range(len(widths)):
        out, out_vis = flip_keypoints(xy[person], vis[person], widths[person], sk.flip_index)
        for k, joint in enumerate(sk.names):
            partner = (
                joint.replace("left", "right")
                if "left" in joint
                else joint.replace("right", "left")
            )
            j = sk.names.index(partner)
            assert out_vis[k] == vis[person, j], (name, joint)
            if vis[person, j] > 0:
                assert out[k, 0] == width[person] - 1 - xy[person, j, 0], (name, joint)
                assert out[k, 1] == xy[person, j, 1]
    # a labelled left/right pair really moved across
    assert any(sk.flip_index[k] != k for k in range(sk.num_joints))


@pytest.mark.parametrize("device", DEVICES)
def test_as_flip_index_tensor_and_device(device: str) -> None:
    idx = as_flip_index(torch.tensor(COCO_17.flip_index), 17, torch.device(device))
    assert idx.dtype == torch.long and idx.device.type == device
    assert idx.tolist() == list(COCO_17.flip_index)


# --- affine -------------------------------------------------------------------------------


@given(seed=seeds, batch=st.integers(1, 4), joints=st.integers(1, 17))
def test_affine_then_inverse_returns_keypoints(seed: int, batch: int, joints: int) -> None:
    g = generator(seed)
    m = random_affine(batch, g)
    kp = (torch.rand(batch, joints, 2, generator=g, dtype=torch.float64) * 300).float()
    inv = invert_affine(m)
    back = affine_keypoints(affine_keypoints(kp, m), inv)
    torch.testing.assert_close(back, kp, rtol=0, atol=1e-4)
    # 2 x 3 and 3 x 3 forms agree; the inverse is the matrix inverse
    torch.testing.assert_close(affine_keypoints(kp, m[:, :2]), affine_keypoints(kp, m))
    torch.testing.assert_close(inv, torch.linalg.inv(m))
    torch.testing.assert_close(invert_affine(m[:, :2]), inv[:, :2])


def test_affine_keypoints_matches_homogeneous_product() -> None:
    g = generator(0)
    m = random_affine(3, g)
    kp = torch.rand(3, 5, 2, generator=g, dtype=torch.float64) * 50
    homog = torch.cat((kp, torch.ones(3, 5, 1, dtype=kp.dtype)), -1)
    expected = (homog @ m.transpose(1, 2))[..., :2]
    torch.testing.assert_close(affine_keypoints(kp, m), expected)


def test_affine_keypoints_gradcheck() -> None:
    g = generator(1)
    m = random_affine(2, g)[:, :2].requires_grad_()
    kp = torch.rand(2, 3, 2, generator=g, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(affine_keypoints, (kp, m))
    assert torch.autograd.gradcheck(invert_affine, (m,))


@pytest.mark.parametrize(
    ("kp_shape", "m_shape", "match"),
    [
        ((2, 3, 2), (2, 3, 2), "matrix must have shape"),
        ((2, 3, 2), (3, 2, 3), "batch size 2"),
        ((2, 3), (2, 2, 3), "keypoints must have shape"),
        ((2, 3, 2), (2, 3), "at least 3 dims"),
    ],
)
def test_affine_keypoints_errors(
    kp_shape: tuple[int, ...], m_shape: tuple[int, ...], match: str
) -> None:
    with pytest.raises(ValueError, match=match):
        affine_keypoints(torch.zeros(kp_shape), torch.zeros(m_shape))


@given(seed=seeds, stride=st.sampled_from([1.0, 2.0, 4.0, 3.5]))
def test_heatmap_matrix_commutes_with_scaling(seed: int, stride: float) -> None:
    g = generator(seed)
    m = random_affine(2, g)
    kp = torch.rand(2, 4, 2, generator=g, dtype=torch.float64) * 256
    mh = heatmap_matrix(m, stride)
    # x_h = x / stride on both sides of the map
    torch.testing.assert_close(affine_keypoints(kp / stride, mh), affine_keypoints(kp, m) / stride)
    torch.testing.assert_close(heatmap_matrix(m[:, :2], stride), mh[:, :2])
    torch.testing.assert_close(mh[:, 2], m[:, 2])  # still affine
    torch.testing.assert_close(heatmap_matrix(mh, 1 / stride), m)


def test_integer_inputs_are_promoted_not_truncated() -> None:
    half = torch.tensor([[[0.5, 0.0, 0.0], [0.0, 0.5, 0.0]]])
    out = affine_keypoints(torch.tensor([[[10, 20], [3, 5]]]), half)
    assert out.dtype == torch.get_default_dtype()
    torch.testing.assert_close(out, torch.tensor([[[5.0, 10.0], [1.5, 2.5]]]))
    # integer keypoints take a floating matrix's dtype; both integer: the default dtype
    wide = affine_keypoints(torch.tensor([[[3, 5]]]), half.double())
    assert wide.dtype == torch.float64
    torch.testing.assert_close(wide, torch.tensor([[[1.5, 2.5]]], dtype=torch.float64))
    shift = affine_keypoints(torch.tensor([[[3, 5]]]), torch.tensor([[[1, 0, 2], [0, 1, -1]]]))
    torch.testing.assert_close(shift, torch.tensor([[[5.0, 4.0]]]))
    image = torch.tensor([[[1, 0, 10], [0, 2, 6], [0, 0, 1]]])
    mh = heatmap_matrix(image, 4)
    assert mh.dtype == torch.get_default_dtype()
    torch.testing.assert_close(
        mh, torch.tensor([[[1.0, 0.0, 2.5], [0.0, 2.0, 1.5], [0.0, 0.0, 1.0]]])
    )
    torch.testing.assert_close(heatmap_matrix(image[:, :2], 4), mh[:, :2])


def test_heatmap_matrix_errors() -> None:
    with pytest.raises(ValueError, match="stride"):
        heatmap_matrix(torch.eye(3)[None], 0.0)
    with pytest.raises(ValueError, match="matrix"):
        heatmap_matrix(torch.eye(3), 4.0)


# --- visibility ---------------------------------------------------------------------------


def test_visible_in_frame_edges() -> None:
    kp = torch.tensor(
        [[0.0, 0.0], [47.0, 63.0], [-0.01, 5.0], [47.01, 5.0], [5.0, 63.5], [math.nan, 1.0]]
    )
    vis = visible_in_frame(kp, torch.full((6,), 2, dtype=torch.uint8), (64, 48))
    assert vis.tolist() == [2, 2, 0, 0, 0, 0]
    assert vis.dtype == torch.uint8


@given(seed=seeds, batch=st.integers(1, 3), h=st.integers(1, 40), w=st.integers(1, 40))
def test_visible_in_frame_never_adds_and_keeps_shape(seed: int, batch: int, h: int, w: int) -> None:
    g = generator(seed)
    kp = torch.rand(batch, 5, 2, generator=g) * 60 - 10
    vis = torch.randint(0, 3, (batch, 5), generator=g).float()
    out = visible_in_frame(kp, vis, (h, w))
    inside = (kp[..., 0] >= 0) & (kp[..., 0] <= w - 1) & (kp[..., 1] >= 0) & (kp[..., 1] <= h - 1)
    assert out.shape == vis.shape
    assert torch.equal(out, vis * inside)


# --- empty batches ------------------------------------------------------------------------

EMPTY_CALLS: dict[str, tuple[Callable[[], object], list[tuple[int, ...]]]] = {
    "affine_keypoints": (
        lambda: affine_keypoints(torch.zeros(0, 3, 2), torch.zeros(0, 2, 3)),
        [(0, 3, 2)],
    ),
    "flip_keypoints": (
        lambda: flip_keypoints(torch.zeros(0, 3, 2), torch.ones(0, 3), 8, [1, 0, 2]),
        [(0, 3, 2), (0, 3)],
    ),
    "heatmap_matrix": (lambda: heatmap_matrix(torch.zeros(0, 3, 3), 4), [(0, 3, 3)]),
    "invert_affine": (lambda: invert_affine(torch.zeros(0, 2, 3)), [(0, 2, 3)]),
    "visible_in_frame": (
        lambda: visible_in_frame(torch.zeros(0, 3, 2), torch.ones(0, 3), (8, 6)),
        [(0, 3)],
    ),
}


@pytest.mark.parametrize("name", sorted(EMPTY_CALLS))
def test_empty_batch_gives_empty_outputs(name: str) -> None:
    call, shapes = EMPTY_CALLS[name]
    assert output_shapes(call()) == shapes


def test_flip_index_errors_name_the_first_unpaired_joint() -> None:
    message = r"its own inverse, got \(1, 2, 0\): joint 0 maps to 1, which maps to 2"
    with pytest.raises(ValueError, match=message):
        as_flip_index([1, 2, 0], 3, torch.device("cpu"))
    with pytest.raises(ValueError, match=message):
        Skeleton(("a", "b", "c"), (1, 2, 0), (0.1, 0.1, 0.1))
    with pytest.raises(ValueError, match="joint 1 maps to 3, which maps to 2"):
        flip_keypoints(torch.zeros(1, 4, 2), torch.ones(1, 4), 8, [0, 3, 1, 2])


# --- dtype / device -----------------------------------------------------------------------


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", DTYPES)
def test_dtype_and_device_kept(device: str, dtype: torch.dtype) -> None:
    kp = torch.rand(2, 17, 2, generator=generator(0)).to(device, dtype) * 40
    vis = torch.ones(2, 17, device=device, dtype=torch.int64)
    m = random_affine(2, generator(1)).to(device)  # float64 matrix, cast to the keypoints
    outs = [
        *flip_keypoints(kp, vis, 48, COCO_17.flip_index),
        affine_keypoints(kp, m),
        visible_in_frame(kp, vis, (64, 48)),
    ]
    for out, ref in zip(outs, [kp, vis, kp, vis], strict=True):
        assert (out.dtype, out.device, out.shape) == (ref.dtype, ref.device, ref.shape)
    for mat in (invert_affine(m.to(dtype)), heatmap_matrix(m.to(dtype), 4)):
        assert (mat.dtype, mat.device) == (dtype, kp.device)


def test_flip_index_of_short_mpii_names() -> None:
    """Names with a bare leading or trailing l / r pair when the other side's name exists."""
    mpii = ["rank", "rkne", "rhip", "lhip", "lkne", "lank", "pelv", "thrx", "neck", "head",
            "rwri", "relb", "rsho", "lsho", "lelb", "lwri"]  # fmt: skip
    assert infer_flip_index(mpii) == (5, 4, 3, 2, 1, 0, 6, 7, 8, 9, 15, 14, 13, 12, 11, 10)
    assert infer_flip_index(["lHip", "rHip", "neck", "rank"]) == (1, 0, 2, 3)  # no "lank"
    with pytest.raises(ValueError, match=r"'lar' pairs with \['lal', 'rar'\]"):
        infer_flip_index(["lar", "rar", "lal"])
    with pytest.raises(ValueError, match="which pairs with"):  # not a pairing
        infer_flip_index(["Rl", "lr", "rR"])
