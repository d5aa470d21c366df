"""Keypoint geometry: skeletons with flip pairs and OKS sigmas, flips and affine maps.

Conventions (see the docs' conventions page): points are ``(x, y)`` in pixels with pixel
centres on integers, sizes are ``(H, W)``, so a horizontal flip maps ``x -> W - 1 - x`` and
permutes the joints by ``flip_index``. Nothing here drops a keypoint: a keypoint that leaves
the frame keeps its place and gets visibility 0 (:func:`visible_in_frame`).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from posemum_aug._checks import (
    check_affine_matrix,
    check_flip_index,
    check_min_dims,
    check_pair,
    check_positive_int,
    check_shape,
    floating_dtype,
    working_dtype,
)

__all__ = [
    "COCO_17",
    "CROWDPOSE_14",
    "DEFAULT_SIGMA",
    "Skeleton",
    "affine_keypoints",
    "as_flip_index",
    "flip_keypoints",
    "heatmap_matrix",
    "infer_flip_index",
    "invert_affine",
    "visible_in_frame",
]

#: Sigma used by :meth:`Skeleton.from_coco_category` for joint names with no official value.
DEFAULT_SIGMA = 0.05

# Official OKS sigmas per joint name: COCO (pycocotools ``kpt_oks_sigmas``) and CrowdPose
# (crowdposetools, which adds ``head`` and ``neck``; the shared joints agree with COCO).
_OFFICIAL_SIGMAS: dict[str, float] = {
    "nose": 0.026,
    "left_eye": 0.025,
    "right_eye": 0.025,
    "left_ear": 0.035,
    "right_ear": 0.035,
    "left_shoulder": 0.079,
    "right_shoulder": 0.079,
    "left_elbow": 0.072,
    "right_elbow": 0.072,
    "left_wrist": 0.062,
    "right_wrist": 0.062,
    "left_hip": 0.107,
    "right_hip": 0.107,
    "left_knee": 0.087,
    "right_knee": 0.087,
    "left_ankle": 0.089,
    "right_ankle": 0.089,
    "head": 0.079,
    "neck": 0.079,
}

# The side markers of joint names, tried in order; the group ``side`` is the marker. Whole
# words at the start or end, any case and separator ("left_eye", "Left-Eye", "lefteye",
# "eye_right"); a single "l" / "r" split off by "_", "-", "." or a space ("l_knee",
# "R.Hip", "knee_l"); a capital "L" / "R" joined to a capitalised word ("LHip",
# "RShoulder", "HipL").
_SIDE_MARKERS = (
    re.compile(r"^(?P<side>left|right).+$", re.IGNORECASE),
    re.compile(r"^.+(?P<side>left|right)$", re.IGNORECASE),
    re.compile(r"^(?P<side>[lr])[-_. ].+$", re.IGNORECASE),
    re.compile(r"^.+[-_. ](?P<side>[lr])$", re.IGNORECASE),
    re.compile(r"^(?P<side>[LR])[A-Z][a-z].*$"),
    re.compile(r"^.*[a-z](?P<side>[LR])$"),
)
_OTHER_SIDE = {"left": "right", "right": "left", "l": "r", "r": "l"}


def _mirror_name(name: str) -> str | None:
    """The lower-cased name of the other side's joint, or ``None`` for a centre joint."""
    for marker in _SIDE_MARKERS:
        if m := marker.match(name):
            start, end = m.span("side")
            return (name[:start] + _OTHER_SIDE[m["side"].lower()] + name[end:]).lower()
    return None


def _bare_partner(name: str, where: dict[str, int]) -> int | None:
    """The joint named like ``name`` with a bare leading or trailing ``l`` / ``r`` swapped
    (``lhip`` / ``rhip``, ``rank`` / ``lank``, ``hipL`` / ``hipR``), when exactly one such
    name exists; ``None`` when none does."""
    lower = name.lower()
    found = set()
    for at in (0, len(lower) - 1):
        if len(lower) > 1 and lower[at] in "lr":
            swapped = lower[:at] + _OTHER_SIDE[lower[at]] + lower[at + 1 :]
            if swapped in where:
                found.add(where[swapped])
    if len(found) > 1:
        raise ValueError(
            f"cannot infer flip_index: joint {name!r} pairs with "
            f"{sorted(n for n, k in where.items() if k in found)} (pass flip_index explicitly)"
        )
    return found.pop() if found else None


def _pair_by_name(names: Sequence[str], hint: str) -> tuple[int, ...]:
    """:func:`infer_flip_index`, ``hint`` ending the message of an unpaired joint."""
    lower = [n.lower() for n in names]
    where = {n: k for k, n in enumerate(lower)}
    if len(where) != len(lower):
        dupes = sorted({n for n in lower if lower.count(n) > 1})
        raise ValueError(f"joint names must be unique (ignoring case), repeated: {dupes}")
    flip = []
    for k, name in enumerate(names):
        mirror = _mirror_name(name)
        if mirror is None:
            partner = _bare_partner(name, where)
            flip.append(k if partner is None else partner)
        elif mirror in where:
            flip.append(where[mirror])
        else:
            raise ValueError(
                f"cannot infer flip_index: joint {name!r} has no partner named like "
                f"{mirror!r}; {hint}"
            )
    for k, partner in enumerate(flip):
        if flip[partner] != k:
            raise ValueError(
                f"cannot infer flip_index: joint {names[k]!r} pairs with {names[partner]!r}, "
                f"which pairs with {names[flip[partner]]!r}; {hint}"
            )
    return tuple(flip)


def infer_flip_index(names: Sequence[str]) -> tuple[int, ...]:
    """Pair left and right joints by name; other joints map to themselves.

    A name marks a side (any case) when it

    * starts or ends with the word ``left`` / ``right``, with or without a separator
      (``left_eye``, ``Left-Eye``, ``lefteye``, ``eye_right``);
    * starts or ends with a single ``l`` / ``r`` split off by ``_``, ``-``, ``.`` or a
      space (``l_knee``, ``R.Hip``, ``knee_l``);
    * starts with a capital ``L`` / ``R`` joined to a capitalised word, or ends with one
      after a lower-case letter (``LHip``, ``RShoulder``, ``HipL``).

    Its partner is the name with the side swapped (compared ignoring case). Any other name
    that starts or ends with a bare ``l`` / ``r`` is paired with the name that has the other
    letter there, when that name exists (MPII's ``lhip`` / ``rhip``, ``rank`` / ``lank``);
    without one it is a centre joint.

    Args:
        names: ``K`` joint names.

    Returns:
        ``flip_index`` of length ``K``: joint ``k`` of a flipped sample is joint
        ``flip_index[k]`` of the original.

    Raises:
        ValueError: if two names are equal ignoring case, a left/right joint has no
            partner, or a bare ``l`` / ``r`` name has two.

    Example:
        >>> infer_flip_index(["nose", "left_eye", "right_eye"])
        (0, 2, 1)
        >>> infer_flip_index(["head", "Hand-Right", "Hand-Left"])
        (0, 2, 1)
        >>> infer_flip_index(["LHip", "RHip", "l_knee", "r_knee", "ankle_r", "ankle_l"])
        (1, 0, 3, 2, 5, 4)
        >>> infer_flip_index(["rank", "rkne", "lkne", "lank", "neck", "lHip", "rHip"])
        (3, 2, 1, 0, 4, 6, 5)
    """
    return _pair_by_name(names, "pass flip_index explicitly")


def _flip_index_from_pairs(names: Sequence[str], pairs: Any, source: str) -> tuple[int, ...]:
    """The flip index of ``[left, right]`` joint name pairs, checked (``source`` names
    them in errors); joints in no pair map to themselves."""
    where = {n: k for k, n in enumerate(names)}
    flip = list(range(len(names)))
    paired: set[str] = set()
    for pair in pairs if isinstance(pairs, list | tuple) else [pairs]:
        if not (isinstance(pair, list | tuple) and len(pair) == 2):
            raise ValueError(f"{source} must be [left, right] joint name pairs, got {pair!r}")
        for name in pair:
            if not isinstance(name, str) or name not in where:
                raise ValueError(
                    f"{source} names the joint {name!r}, which is not among the "
                    f"{len(names)} joints {list(names)}"
                )
            if name in paired:
                raise ValueError(f"{source} pairs the joint {name!r} twice")
        left, right = where[pair[0]], where[pair[1]]
        paired.update(pair)
        flip[left], flip[right] = right, left
    return tuple(flip)


@dataclass(frozen=True)
class Skeleton:
    """A keypoint layout: joint names, left/right flip pairs, OKS sigmas and links.

    Sequences given as lists are stored as tuples, so a skeleton is hashable.

    Args:
        names: ``K`` unique joint names.
        flip_index: length ``K``; joint ``k`` of a horizontally flipped sample is joint
            ``flip_index[k]`` of the original. Must be a permutation that is its own
            inverse.
        sigmas: ``K`` positive OKS sigmas (the per-joint constants of COCO's OKS).
        links: pairs of 0-based joint indices to draw as limbs (may be empty).

    Raises:
        ValueError: if the lengths differ from ``K``, names repeat, ``flip_index`` is not
            an involutive permutation of ``0..K-1``, a sigma is not positive and finite, or
            a link is out of range or joins a joint to itself.

    Example:
        >>> COCO_17.num_joints, COCO_17.flip_index[:5]
        (17, (0, 2, 1, 4, 3))
        >>> Skeleton(names=("a", "b"), flip_index=(1, 0), sigmas=(0.05, 0.05), links=((0, 1),))
        Skeleton(names=('a', 'b'), flip_index=(1, 0), sigmas=(0.05, 0.05), links=((0, 1),))
    """

    names: tuple[str, ...]
    flip_index: tuple[int, ...]
    sigmas: tuple[float, ...]
    links: tuple[tuple[int, int], ...] = ()

    def __post_init__(self) -> None:
        set_ = object.__setattr__  # frozen: normalise the fields once, here
        set_(self, "names", tuple(str(n) for n in self.names))
        set_(self, "flip_index", tuple(int(i) for i in self.flip_index))
        set_(self, "sigmas", tuple(float(s) for s in self.sigmas))
        set_(self, "links", tuple((int(a), int(b)) for a, b in self.links))
        k = len(self.names)
        if k == 0:
            raise ValueError("a skeleton needs at least one joint, got names=()")
        if len(set(self.names)) != k:
            raise ValueError(f"joint names must be unique, got {self.names}")
        for field in ("flip_index", "sigmas"):
            if len(getattr(self, field)) != k:
                raise ValueError(
                    f"{field} must have one entry per joint ({k}), got {getattr(self, field)}"
                )
        check_flip_index(self.flip_index, k)
        if not all(0.0 < s < float("inf") for s in self.sigmas):
            raise ValueError(f"sigmas must be positive and finite, got {self.sigmas}")
        for a, b in self.links:
            if not (0 <= a < k and 0 <= b < k) or a == b:
                raise ValueError(f"link {(a, b)} must join two different joints in 0..{k - 1}")

    @property
    def num_joints(self) -> int:
        """``K``, the number of joints."""
        return len(self.names)

    @classmethod
    def from_coco_category(
        cls,
        category: Mapping[str, Any],
        sigmas: Sequence[float] | None = None,
        *,
        flip_index: Sequence[int] | None = None,
        flip_pairs: Sequence[Sequence[str]] | None = None,
        default_sigma: float = DEFAULT_SIGMA,
    ) -> Skeleton:
        """Build a skeleton from a COCO ``categories`` entry.

        Joint names come from ``category["keypoints"]``, links from the 1-based
        ``category["skeleton"]`` (optional). The flip pairs are, in this order of
        precedence: ``flip_index``, ``flip_pairs``, the category's own ``"flip_pairs"``
        (``[left, right]`` joint names, e.g. ``[["LHip", "RHip"], ...]``), else inferred
        from the names by :func:`infer_flip_index`. Sigmas default to the official COCO /
        CrowdPose OKS sigma of each joint name (``nose`` ... ``right_ankle``, ``head``,
        ``neck``) and to ``default_sigma`` (0.05) for any other name.

        Some files carry a ``skeleton`` written for another layout: the official CrowdPose
        annotations hold COCO's 17-joint links under their 14 joints. Links that name a
        joint outside ``1..K`` therefore make the whole list meaningless; the links are then
        taken from the built-in skeleton with the same names (:data:`COCO_17`,
        :data:`CROWDPOSE_14`) if there is one, else left empty.

        Args:
            category: a mapping with ``"keypoints"`` (list of names) and optionally
                ``"skeleton"`` (list of 1-based index pairs) and ``"flip_pairs"``.
            sigmas: ``K`` OKS sigmas overriding the defaults.
            flip_index: ``K`` indices overriding the flip pairs.
            flip_pairs: ``[left, right]`` joint name pairs overriding the category's; joints
                in no pair map to themselves (``()``: no pairs at all).
            default_sigma: sigma for joint names without an official value.

        Returns:
            The skeleton.

        Raises:
            ValueError: if ``"keypoints"`` is missing, empty or not a list of names,
                ``"skeleton"`` is not a list of index pairs, a flip pair names an unknown
                joint or one joint twice, the flip pairs cannot be inferred, or the result
                fails :class:`Skeleton`'s checks.

        Example:
            >>> cat = {"keypoints": ["nose", "left_eye", "right_eye"], "skeleton": [[1, 2], [1, 3]]}
            >>> sk = Skeleton.from_coco_category(cat)
            >>> sk.flip_index, sk.links, sk.sigmas
            ((0, 2, 1), ((0, 1), (0, 2)), (0.026, 0.025, 0.025))
            >>> Skeleton.from_coco_category({"keypoints": ["a", "b"], "flip_pairs": [["a", "b"]]})
            Skeleton(names=('a', 'b'), flip_index=(1, 0), sigmas=(0.05, 0.05), links=())
        """
        names = category.get("keypoints")
        if not names:
            raise ValueError(f"category has no 'keypoints' names: {_shown(dict(category))}")
        if not isinstance(names, list | tuple) or not all(isinstance(n, str) and n for n in names):
            raise ValueError(
                f"the category's 'keypoints' must be a list of joint names, got {_shown(names)}"
            )
        k = len(names)
        raw = category.get("skeleton") or []
        if not isinstance(raw, list | tuple) or not all(
            isinstance(link, list | tuple)
            and len(link) == 2
            and all(isinstance(i, int) and not isinstance(i, bool) for i in link)
            for link in raw
        ):
            raise ValueError(
                "the category's 'skeleton' must be a list of [a, b] pairs of 1-based joint "
                f"indices, got {_shown(raw)}"
            )
        raw_links = [(a - 1, b - 1) for a, b in raw]
        if all(0 <= a < k and 0 <= b < k for a, b in raw_links):
            links = tuple(raw_links)
        else:
            builtin = next((s for s in (COCO_17, CROWDPOSE_14) if s.names == tuple(names)), None)
            links = builtin.links if builtin is not None else ()
        if flip_index is None:
            flip_index = _category_flip_index(names, category, flip_pairs)
        return cls(
            names=tuple(names),
            flip_index=tuple(flip_index),
            sigmas=(
                tuple(sigmas)
                if sigmas is not None
                else tuple(_OFFICIAL_SIGMAS.get(n.lower(), default_sigma) for n in names)
            ),
            links=links,
        )


def _category_flip_index(
    names: Sequence[str], category: Mapping[str, Any], pairs: Sequence[Sequence[str]] | None
) -> tuple[int, ...]:
    """The flip index of ``pairs``, else of the category's ``"flip_pairs"``, else of the
    names (see :meth:`Skeleton.from_coco_category`)."""
    if pairs is not None:
        return _flip_index_from_pairs(names, pairs, "flip_pairs")
    if "flip_pairs" in category:
        return _flip_index_from_pairs(names, category["flip_pairs"], "the category's 'flip_pairs'")
    return _pair_by_name(
        names,
        "name the pairs: a 'flip_pairs' list of [left, right] joint names in the category, "
        "or flip_pairs=",
    )


def _shown(value: object, limit: int = 80) -> str:
    """``repr(value)``, cut to ``limit`` characters for an error message."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _builtin(names: Sequence[str], links: Sequence[tuple[str, str]]) -> Skeleton:
    """A built-in skeleton from names and named links, with official sigmas."""
    return Skeleton(
        names=tuple(names),
        flip_index=infer_flip_index(names),
        sigmas=tuple(_OFFICIAL_SIGMAS[n] for n in names),
        links=tuple((names.index(a), names.index(b)) for a, b in links),
    )


_LIMBS = (
    ("left_ankle", "left_knee"),
    ("left_knee", "left_hip"),
    ("right_ankle", "right_knee"),
    ("right_knee", "right_hip"),
    ("left_hip", "right_hip"),
    ("left_shoulder", "left_hip"),
    ("right_shoulder", "right_hip"),
    ("left_shoulder", "right_shoulder"),
    ("left_shoulder", "left_elbow"),
    ("right_shoulder", "right_elbow"),
    ("left_elbow", "left_wrist"),
    ("right_elbow", "right_wrist"),
)

#: COCO person keypoints (17 joints) with the official OKS sigmas and COCO's 19 links.
COCO_17 = _builtin(
    (
        "nose",
        "left_eye",
        "right_eye",
        "left_ear",
        "right_ear",
        "left_shoulder",
        "right_shoulder",
        "left_elbow",
        "right_elbow",
        "left_wrist",
        "right_wrist",
        "left_hip",
        "right_hip",
        "left_knee",
        "right_knee",
        "left_ankle",
        "right_ankle",
    ),
    (
        *_LIMBS,
        ("left_eye", "right_eye"),
        ("nose", "left_eye"),
        ("nose", "right_eye"),
        ("left_eye", "left_ear"),
        ("right_eye", "right_ear"),
        ("left_ear", "left_shoulder"),
        ("right_ear", "right_shoulder"),
    ),
)

#: CrowdPose keypoints (14 joints, CrowdPose order) with the official CrowdPose OKS sigmas.
CROWDPOSE_14 = _builtin(
    (
        "left_shoulder",
        "right_shoulder",
        "left_elbow",
        "right_elbow",
        "left_wrist",
        "right_wrist",
        "left_hip",
        "right_hip",
        "left_knee",
        "right_knee",
        "left_ankle",
        "right_ankle",
        "head",
        "neck",
    ),
    (*_LIMBS, ("head", "neck"), ("left_shoulder", "neck"), ("right_shoulder", "neck")),
)


def as_flip_index(
    flip_index: Sequence[int] | Tensor, num_joints: int, device: torch.device
) -> Tensor:
    """``flip_index`` as a ``long`` tensor on ``device``, checked to have ``num_joints`` entries.

    Args:
        flip_index: ``K`` indices (a sequence or a tensor).
        num_joints: the expected ``K``.
        device: where the index is used.

    Returns:
        ``(K,)`` long tensor.

    Raises:
        ValueError: if the length differs from ``num_joints``, or a sequence is not a
            permutation of ``0..K-1`` that is its own inverse (the error names the first
            joint whose partner does not map back to it). A tensor is not inspected, to
            avoid a device sync.

    Example:
        >>> as_flip_index([1, 0], 2, torch.device("cpu"))
        tensor([1, 0])
        >>> as_flip_index([1, 2, 0], 3, torch.device("cpu"))  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        ValueError: flip_index must be its own inverse, ...: joint 0 maps to 1, which maps to 2
    """
    if isinstance(flip_index, Tensor):
        index = flip_index.to(device=device, dtype=torch.long)
    else:
        index = torch.tensor(check_flip_index(flip_index), dtype=torch.long, device=device)
    check_shape("flip_index", index, (num_joints,))
    return index


def flip_keypoints(
    keypoints: Tensor,
    visibility: Tensor,
    width: int,
    flip_index: Sequence[int] | Tensor,
) -> tuple[Tensor, Tensor]:
    """Flip keypoints horizontally in a frame of ``width`` pixels and swap left and right.

    ``x -> width - 1 - x`` (pixel centres on integers), then joint ``k`` of the result is
    joint ``flip_index[k]`` of the input. Invisible joints are moved too (their coordinates
    carry no meaning); nothing is dropped. Flipping twice is the identity.

    Args:
        keypoints: ``(..., K, 2)`` floating ``(x, y)`` pixels.
        visibility: ``(..., K)`` any dtype (kept).
        width: frame width ``W`` in pixels.
        flip_index: ``K`` indices, e.g. ``Skeleton.flip_index``.

    Returns:
        ``(keypoints, visibility)`` flipped, same shapes, dtypes and device.

    Raises:
        ValueError: on mismatched shapes, a non-positive width or a bad ``flip_index``.

    Example:
        >>> import torch
        >>> kp = torch.tensor([[[1.0, 5.0], [2.5, 6.0]]])
        >>> flip_keypoints(kp, torch.tensor([[2, 1]]), 10, [1, 0])
        (tensor([[[6.5000, 6.0000],
                 [8.0000, 5.0000]]]), tensor([[1, 2]]))
    """
    _check_keypoints(keypoints, visibility)
    check_positive_int("width", width)
    index = as_flip_index(flip_index, keypoints.shape[-2], keypoints.device)
    x, y = keypoints.unbind(-1)
    flipped = torch.stack((width - 1 - x, y), dim=-1)
    return flipped.index_select(-2, index), visibility.index_select(-1, index)


def _check_keypoints(keypoints: Tensor, visibility: Tensor) -> None:
    check_min_dims("keypoints", keypoints, 2)
    if keypoints.shape[-1] != 2 or not keypoints.is_floating_point():
        raise ValueError(
            "keypoints must be floating (..., K, 2), "
            f"got {keypoints.dtype} {tuple(keypoints.shape)}"
        )
    check_shape("visibility", visibility, keypoints.shape[:-1])


def affine_keypoints(keypoints: Tensor, matrix: Tensor) -> Tensor:
    """Apply one affine map per sample: ``p -> A p + t``.

    A ``(B, 3, 3)`` matrix is read as the homogeneous form of an affine map: its last row
    is assumed to be ``(0, 0, 1)`` and is not used. Differentiable in both inputs. Integer
    keypoints are promoted to the matrix's dtype if it is floating, else to the default
    dtype, so the result is never truncated.

    Args:
        keypoints: ``(B, K, 2)`` ``(x, y)``, floating or integer.
        matrix: ``(B, 2, 3)`` or ``(B, 3, 3)``; cast to the result's dtype and the
            keypoints' device.

    Returns:
        ``(B, K, 2)`` mapped keypoints on the keypoints' device, in their dtype if they are
        floating (else as above).

    Raises:
        ValueError: on bad shapes or mismatched batch sizes.

    Example:
        >>> import torch
        >>> shift = torch.tensor([[[2.0, 0.0, 1.0], [0.0, 2.0, -1.0]]])
        >>> affine_keypoints(torch.tensor([[[1.0, 1.0], [3.0, 0.0]]]), shift)
        tensor([[[ 3.,  1.],
                 [ 7., -1.]]])
        >>> affine_keypoints(torch.tensor([[[3, 5]]]), shift / 4)
        tensor([[[1.7500, 2.2500]]])
    """
    check_shape("keypoints", keypoints, (None, None, 2))
    check_affine_matrix(matrix, keypoints.shape[0])
    dtype = floating_dtype(keypoints, matrix)
    work = working_dtype(dtype)  # half precision: rounded once, at the end
    m = matrix.to(device=keypoints.device, dtype=work)
    points = keypoints.to(work)
    return torch.baddbmm(m[:, None, :2, 2], points, m[:, :2, :2].transpose(1, 2)).to(dtype)


def invert_affine(matrix: Tensor) -> Tensor:
    """Closed-form inverse of affine maps (no solver, so no device sync).

    Args:
        matrix: ``(B, 2, 3)`` or ``(B, 3, 3)`` (last row assumed ``(0, 0, 1)``).

    Returns:
        Same shape and dtype; a ``(B, 3, 3)`` result has last row ``(0, 0, 1)``. Singular
        maps give non-finite entries.

    Raises:
        ValueError: on a bad shape.

    Example:
        >>> import torch
        >>> m = torch.tensor([[[2.0, 0.0, 4.0], [0.0, 4.0, 8.0]]])
        >>> invert_affine(m)[0, :, 2]
        tensor([-2., -2.])
        >>> p = torch.tensor([[[1.0, 2.0]]])
        >>> affine_keypoints(affine_keypoints(p, m), invert_affine(m))
        tensor([[[1., 2.]]])
    """
    check_affine_matrix(matrix)
    a, b, tx = matrix[:, 0].unbind(-1)
    c, d, ty = matrix[:, 1].unbind(-1)
    det = a * d - b * c
    ia, ib, ic, id_ = d / det, -b / det, -c / det, a / det
    rows = [
        torch.stack((ia, ib, -(ia * tx + ib * ty)), dim=-1),
        torch.stack((ic, id_, -(ic * tx + id_ * ty)), dim=-1),
    ]
    if matrix.shape[1] == 3:
        rows.append(matrix.new_tensor([0.0, 0.0, 1.0]).expand_as(rows[0]))
    return torch.stack(rows, dim=1)


def visible_in_frame(keypoints: Tensor, visibility: Tensor, size: tuple[int, int]) -> Tensor:
    """Set visibility to 0 for keypoints outside ``[0, W - 1] x [0, H - 1]``.

    Non-finite coordinates count as outside. Shapes never change; nothing is dropped.

    Args:
        keypoints: ``(..., K, 2)`` floating ``(x, y)`` pixels.
        visibility: ``(..., K)`` any dtype (kept).
        size: frame size ``(H, W)``.

    Returns:
        ``(..., K)`` visibility, dtype and device of ``visibility``.

    Raises:
        ValueError: on mismatched shapes or a bad size.

    Example:
        >>> import torch
        >>> kp = torch.tensor([[[0.0, 0.0], [3.5, 1.0], [4.0, 1.0]]])
        >>> visible_in_frame(kp, torch.tensor([[2, 2, 1]]), (2, 4))
        tensor([[2, 0, 0]])
    """
    _check_keypoints(keypoints, visibility)
    height, width = check_pair("size", size)
    x, y = keypoints.unbind(-1)
    inside = (x >= 0) & (x <= width - 1) & (y >= 0) & (y <= height - 1)
    return torch.where(inside, visibility, torch.zeros_like(visibility))


def heatmap_matrix(matrix: Tensor, stride: float) -> Tensor:
    """Express an image-space affine map in the pixels of a map ``stride`` times smaller.

    Convention (SimpleBaseline and the SSHPE code): image point ``x`` sits at heatmap point
    ``x_h = x / stride``, so heatmap pixel ``i`` is centred on image pixel ``i * stride``.
    With ``S = diag(1 / stride, 1 / stride, 1)`` the result is ``S M S^-1``: the linear part
    is unchanged and the translation is divided by ``stride``. Use it to warp heatmaps with
    the image's matrix (:func:`~posemum_aug.heatmap.warp_heatmaps`).

    Args:
        matrix: ``(B, 2, 3)`` or ``(B, 3, 3)`` image-pixel map; an integer matrix is
            promoted to the default dtype.
        stride: image pixels per heatmap pixel (4 for SimpleBaseline / HRNet), > 0.

    Returns:
        Same shape and device, in heatmap pixels; the matrix's dtype if it is floating,
        else the default dtype.

    Raises:
        ValueError: on a bad shape or a non-positive stride.

    Example:
        >>> import torch
        >>> m = torch.tensor([[[0.5, 0.0, 8.0], [0.0, 0.5, -4.0]]])
        >>> heatmap_matrix(m, 4)
        tensor([[[ 0.5000,  0.0000,  2.0000],
                 [ 0.0000,  0.5000, -1.0000]]])
    """
    check_affine_matrix(matrix)
    if not 0.0 < float(stride) < float("inf"):
        raise ValueError(f"stride must be positive and finite, got {stride!r}")
    dtype = floating_dtype(matrix)
    scale = torch.ones(matrix.shape[1:], dtype=dtype, device=matrix.device)
    scale[:2, 2] = 1.0 / stride
    if matrix.shape[1] == 3:
        scale[2, :2] = stride
    return matrix.to(dtype) * scale
