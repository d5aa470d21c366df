"""Tile mixing: exactness at every resolution, plan algebra, keypoint ownership, hooks."""

from __future__ import annotations

import copy
import io
import itertools
import math

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from torch import nn

from posemum_aug.mix import (
    PoseMUM,
    TilePlan,
    attach,
    mix_keypoints,
    mix_tiles,
    sample_tile_plan,
    tile_bounds,
    unmix_tiles,
)
from tests.strategies import DEVICES, generator, seeds

DTYPES = [
    torch.float16,
    torch.bfloat16,
    torch.float32,
    torch.float64,
    torch.int32,
    torch.int64,
    torch.uint8,
    torch.bool,
]

batch_sizes = st.integers(1, 9)
group_sizes = st.integers(1, 5)
grids = st.tuples(st.integers(1, 5), st.integers(1, 5))
sides = st.integers(1, 13)
middles = st.lists(st.integers(1, 3), min_size=0, max_size=2)


def make_tensor(shape: tuple[int, ...], dtype: torch.dtype, seed: int, device: str) -> torch.Tensor:
    """Distinct-ish values of any dtype, built from a seeded generator."""
    values = torch.randint(0, 2**15, shape, generator=generator(seed))
    if dtype == torch.bool:
        return (values % 2 == 1).to(device)
    if dtype == torch.uint8:
        return (values % 256).to(dtype).to(device)
    if dtype.is_floating_point:
        return (values.to(torch.float64) / 7.0).to(dtype).to(device)
    return values.to(dtype).to(device)


def reference_mix(x: torch.Tensor, plan: TilePlan) -> torch.Tensor:
    """The definition, tile by tile, with the tile-boundary rule spelled out."""
    th, tw = plan.grid
    height, width = x.shape[-2:]
    out = torch.empty_like(x)
    for i, j in itertools.product(range(th), range(tw)):
        r0, r1 = math.floor(i * height / th), math.floor((i + 1) * height / th)
        c0, c1 = math.floor(j * width / tw), math.floor((j + 1) * width / tw)
        for b in range(plan.batch_size):
            out[b, ..., r0:r1, c0:c1] = x[int(plan.source[b, i, j]), ..., r0:r1, c0:c1]
    return out


@st.composite
def plans(draw: st.DrawFn) -> TilePlan:
    batch = draw(batch_sizes)
    grid = draw(grids)
    return sample_tile_plan(
        batch, group_size=draw(group_sizes), grid=grid, generator=generator(draw(seeds))
    )


@pytest.mark.parametrize("device", DEVICES)
@given(
    plan=plans(),
    height=sides,
    width=sides,
    middle=middles,
    dtype=st.sampled_from(DTYPES),
    seed=seeds,
)
def test_mix_matches_definition_and_round_trips(
    device: str,
    plan: TilePlan,
    height: int,
    width: int,
    middle: list[int],
    dtype: torch.dtype,
    seed: int,
) -> None:
    x = make_tensor((plan.batch_size, *middle, height, width), dtype, seed, device)
    mixed = mix_tiles(x, plan)
    assert mixed.dtype == x.dtype and mixed.shape == x.shape and mixed.device == x.device
    assert torch.equal(mixed, reference_mix(x, plan.to(device)))
    assert torch.equal(unmix_tiles(mixed, plan), x)


@given(plan=plans(), height=sides, width=sides)
def test_every_tile_moves_as_a_whole(plan: TilePlan, height: int, width: int) -> None:
    # Label every pixel by (sample, tile): after mixing each output tile is one input tile.
    th, tw = plan.grid
    rows, cols = tile_bounds(height, th), tile_bounds(width, tw)
    for bounds, size, tiles in ((rows, height, th), (cols, width, tw)):
        assert bounds[0] == 0 and bounds[-1] == size
        assert all(0 <= b - a <= math.ceil(size / tiles) for a, b in itertools.pairwise(bounds))
    sample = torch.arange(plan.batch_size, dtype=torch.float64).view(-1, 1, 1, 1)
    x = sample.expand(-1, 1, height, width).contiguous()
    mixed = mix_tiles(x, plan)
    for i, j in itertools.product(range(th), range(tw)):
        tile = mixed[:, 0, rows[i] : rows[i + 1], cols[j] : cols[j + 1]]
        expected = plan.source[:, i, j].to(tile.dtype).view(-1, 1, 1).expand_as(tile)
        assert torch.equal(tile, expected)


@given(plan=plans())
def test_plan_algebra(plan: TilePlan) -> None:
    g = generator(plan.batch_size)
    others = [
        sample_tile_plan(plan.batch_size, group_size=3, grid=plan.grid, generator=g)
        for _ in range(2)
    ]
    b, c = others
    identity = TilePlan.identity(plan.batch_size, plan.grid)
    assert torch.equal(plan.inverse().inverse().source, plan.source)
    assert torch.equal(plan.then(plan.inverse()).source, identity.source)
    assert torch.equal(plan.inverse().then(plan).source, identity.source)
    assert torch.equal(plan.then(b).then(c).source, plan.then(b.then(c)).source)
    assert torch.equal(plan.then(b).inverse().source, b.inverse().then(plan.inverse()).source)
    assert torch.equal(identity.then(plan).source, plan.source)
    x = torch.randn(plan.batch_size, 2, 9, 7, generator=g)
    assert torch.equal(mix_tiles(mix_tiles(x, plan), b), mix_tiles(x, plan.then(b)))
    assert torch.equal(mix_tiles(x, identity), x)
    TilePlan(plan.then(b).source)  # compositions pass the constructor's validation


@given(
    batch=batch_sizes,
    group=group_sizes,
    grid=grids,
    seed=seeds,
)
def test_sampled_plans_stay_in_their_group(
    batch: int, group: int, grid: tuple[int, int], seed: int
) -> None:
    plan = sample_tile_plan(batch, group_size=group, grid=grid, generator=generator(seed))
    assert plan.source.shape == (batch, *grid) and plan.source.dtype == torch.long
    groups = torch.arange(batch) // group
    assert torch.equal(groups[plan.source], groups.view(-1, 1, 1).expand_as(plan.source))
    TilePlan(plan.source)  # a permutation per tile position
    again = sample_tile_plan(batch, group_size=group, grid=grid, generator=generator(seed))
    assert torch.equal(again.source, plan.source)


def test_sampled_permutations_are_uniform() -> None:
    plan = sample_tile_plan(3, group_size=3, grid=(60, 100), generator=generator(0))
    perms = plan.source.permute(1, 2, 0).reshape(-1, 3)
    counts = torch.stack(
        [(perms == torch.tensor(p)).all(1).sum() for p in itertools.permutations(range(3))]
    )
    expected = perms.shape[0] / 6
    chi2 = float(((counts - expected) ** 2 / expected).sum())
    assert chi2 < 25.0, counts  # 5 dof: p < 1e-4 for a uniform sampler


def test_partial_last_group_mixes_among_itself() -> None:
    plan = sample_tile_plan(10, group_size=4, grid=(8, 8), generator=generator(3))
    last = plan.source[8:]
    assert bool(((last == 8) | (last == 9)).all())
    assert bool((last[0] != last[1]).all())
    assert bool((last == 9).any() & (last == 8).any())


@pytest.mark.parametrize("device", DEVICES)
def test_gradient_is_the_inverse_permutation(device: str) -> None:
    plan = sample_tile_plan(4, group_size=4, grid=(3, 2), generator=generator(0))
    x = torch.randn(4, 2, 5, 4, dtype=torch.float64, device=device, requires_grad=True)
    assert torch.autograd.gradcheck(lambda t: mix_tiles(t, plan), (x,))
    assert torch.autograd.gradgradcheck(lambda t: unmix_tiles(t, plan), (x,))
    weight = torch.randn_like(x)
    (mix_tiles(x, plan) * weight).sum().backward()
    assert x.grad is not None
    assert torch.equal(x.grad, unmix_tiles(weight, plan))


def test_lists_and_tuples_share_one_plan() -> None:
    plan = sample_tile_plan(4, grid=(4, 4), generator=generator(1))
    branches = [torch.randn(4, 8, 16, 12), torch.randn(4, 16, 8, 6), torch.randn(4, 32, 4, 3)]
    mixed = mix_tiles(branches, plan)
    assert isinstance(mixed, list) and len(mixed) == 3
    for m, b in zip(mixed, branches, strict=True):
        assert torch.equal(m, mix_tiles(b, plan))
    back = unmix_tiles(tuple(mixed), plan)
    assert isinstance(back, tuple)
    assert all(torch.equal(u, b) for u, b in zip(back, branches, strict=True))


def test_non_contiguous_input() -> None:
    plan = sample_tile_plan(4, grid=(2, 3), generator=generator(2))
    x = torch.randn(4, 10, 9, 3).permute(0, 3, 1, 2)  # (4, 3, 10, 9), channels last
    assert torch.equal(mix_tiles(x, plan), reference_mix(x, plan))


@given(plan=plans(), height=st.integers(4, 24), width=st.integers(4, 24), seed=seeds)
def test_keypoint_ownership_matches_mixed_maps(
    plan: TilePlan, height: int, width: int, seed: int
) -> None:
    # A one-hot "heatmap" per joint: mixing the maps equals drawing each keypoint in its
    # new owner. Keypoints outside the map stay with their sample and draw nothing.
    joints = 5
    g = generator(seed)
    keypoints = torch.rand(plan.batch_size, joints, 2, generator=g, dtype=torch.float64)
    keypoints = keypoints * torch.tensor([width + 2.0, height + 2.0], dtype=torch.float64) - 1.0
    pixel = keypoints.round().long()
    inside = (
        (pixel[..., 0] >= 0)
        & (pixel[..., 0] < width)
        & (pixel[..., 1] >= 0)
        & (pixel[..., 1] < height)
    )
    maps = torch.zeros(plan.batch_size, joints, height, width, dtype=torch.float64)
    for s, k in zip(*torch.nonzero(inside, as_tuple=True), strict=True):
        maps[s, k, pixel[s, k, 1], pixel[s, k, 0]] += 1.0
    owner = mix_keypoints(keypoints, plan, (height, width))
    assert owner.shape == (plan.batch_size, joints) and owner.dtype == torch.long
    assert torch.equal(
        owner[~inside], torch.arange(plan.batch_size).view(-1, 1).expand_as(owner)[~inside]
    )
    moved = torch.zeros_like(maps)
    for s, k in zip(*torch.nonzero(inside, as_tuple=True), strict=True):
        moved[owner[s, k], k, pixel[s, k, 1], pixel[s, k, 0]] += 1.0
    assert torch.equal(mix_tiles(maps, plan), moved)


def test_keypoints_ignore_nan() -> None:
    plan = TilePlan(torch.tensor([[[1]], [[0]]]))
    kps = torch.tensor([[[float("nan"), 1.0]], [[1.0, 1.0]]])
    assert mix_keypoints(kps, plan, (4, 4)).tolist() == [[0], [0]]


# ---- the module and its hooks ---------------------------------------------------------


def small_net() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1),  # 0
        nn.ReLU(),  # 1
        nn.Conv2d(4, 4, 3, stride=2, padding=1),  # 2
        nn.ReLU(),  # 3
        nn.Conv2d(4, 4, 3, padding=1),  # 4 (unmix point)
        nn.Conv2d(4, 2, 1),  # 5 (head)
    )


def manual_forward(net: nn.Sequential, mum: PoseMUM, x: torch.Tensor) -> torch.Tensor:
    h = mum(x)
    h = mum(net[1](net[0](h)))
    h = mum(net[3](net[2](h)))
    return net[5](mum.unmix(net[4](h)))


@pytest.mark.parametrize("mode", ["one", "all"])
def test_hook_path_equals_manual_path(mode: str) -> None:
    net = small_net()
    x = torch.randn(8, 3, 12, 10, generator=generator(0))
    hooked = PoseMUM(
        group_size=4, grid=(3, 2), p_feature=0.7, feature_mode=mode, generator=generator(5)
    )
    manual = PoseMUM(
        group_size=4,
        grid=(3, 2),
        p_feature=0.7,
        feature_mode=mode,
        feature_points=2,
        generator=generator(5),
    )
    with attach(net, hooked, mix_at=["", "1", "3"], unmix_at="4"):
        outs_hooked = []
        for _ in range(6):
            outs_hooked.append(net(x))
            assert hooked.plan is None and not hooked.in_chain  # the chain ended at the unmix
    outs_manual = [manual_forward(net, manual, x) for _ in range(6)]
    for out_hooked, out_manual in zip(outs_hooked, outs_manual, strict=True):
        assert torch.equal(out_hooked, out_manual)
    assert len({float(o.detach().sum()) for o in outs_hooked}) > 1  # the steps did mix differently
    assert torch.equal(net(x), manual_forward(net.eval(), manual.eval(), x))


def test_mixing_changes_features_and_unmix_restores_pointwise_nets() -> None:
    # A pointwise network commutes with tile permutations: mixing anywhere then
    # unmixing gives exactly the unmixed output.
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 8, 1), nn.ReLU(), nn.Conv2d(8, 8, 1), nn.Conv2d(8, 2, 1))
    x = torch.randn(8, 3, 16, 12)
    reference = net(x)
    mum = PoseMUM(group_size=4, p_feature=1.0, feature_mode="all", generator=generator(0))
    mixed_at: list[torch.Tensor] = []
    handle = net[1].register_forward_hook(lambda m, a, o: mixed_at.append(o))
    with attach(net, mum, mix_at=["", "1"], unmix_at="2"):
        out = net(x)
    handle.remove()
    torch.testing.assert_close(out, reference, rtol=0, atol=1e-6)
    assert not torch.equal(mixed_at[0], net[1](net[0](x)))


def test_one_mode_mixes_at_most_one_feature_point() -> None:
    mum = PoseMUM(
        group_size=2, grid=2, p=0.0, p_feature=1.0, feature_points=3, generator=generator(1)
    )
    x = torch.randn(4, 1, 4, 4)
    chosen = []
    for _ in range(60):
        mum(x)
        mixed = []
        for _point in range(3):
            before = mum.plan
            mum(x)
            mixed.append(mum.plan is not before)
        mum.unmix(x)
        assert sum(mixed) == 1
        chosen.append(mixed.index(True))
    assert set(chosen) == {0, 1, 2}
    never = PoseMUM(group_size=2, grid=2, p=0.0, p_feature=0.0, feature_points=3)
    never(x)
    for _ in range(3):
        never(x)
    assert never.plan is None
    assert torch.equal(never.unmix(x), x)


def test_hrnet_style_branches_through_hooks() -> None:
    class Branches(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.convs = nn.ModuleList([nn.Conv2d(4, 4, 1) for _ in range(3)])

        def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
            return [c(nn.functional.avg_pool2d(x, 2**k)) for k, c in enumerate(self.convs)]

    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.stem = nn.Conv2d(3, 4, 1)
            self.stage = Branches()
            self.fuse = nn.Identity()

        def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
            out: list[torch.Tensor] = self.fuse(self.stage(self.stem(x)))
            return out

    torch.manual_seed(0)
    net = Net()
    x = torch.randn(8, 3, 24, 18)
    reference = net(x)
    mum = PoseMUM(grid=(4, 4), p_feature=1.0, generator=generator(0))
    with attach(net, mum, mix_at=["", "stage"], unmix_at="fuse"):
        out = net(x)
    # 1x1 convs and average pooling commute with the tiling only where tiles align; the
    # branch maps (24x18, 12x9, 6x4) are unmixed exactly at their own resolution.
    assert [o.shape for o in out] == [r.shape for r in reference]
    torch.testing.assert_close(out[0], reference[0], rtol=0, atol=1e-6)


def test_eval_mode_paused_and_teacher_copies_are_identity() -> None:
    net = small_net()
    x = torch.randn(8, 3, 12, 10)
    mum = PoseMUM(grid=(3, 2), generator=generator(0))
    attach(net, mum, mix_at=["", "1"], unmix_at="4")
    teacher = copy.deepcopy(net).eval()
    expected = nn.Sequential(*list(teacher.children()))(x)  # plain forward, no hooks
    assert torch.equal(teacher(x), expected)
    with mum.paused():
        assert torch.equal(net(x), expected)
    mum.eval()
    assert torch.equal(net(x), expected)
    assert torch.equal(mum(x), x) and torch.equal(mum.unmix(x), x)
    mum.train()
    assert not torch.equal(net(x), expected)


@pytest.mark.parametrize("switch", ["eval", "paused"])
def test_a_chain_opened_in_training_is_unmixed_after_a_switch(switch: str) -> None:
    """Features mixed in training mode are mixed, whatever the mode at the unmix: the
    chain's plan is undone and the chain ends."""
    mum = PoseMUM(grid=(3, 2), generator=generator(0))
    x = torch.randn(8, 3, 12, 10)
    y = mum(x)
    assert mum.in_chain and not torch.equal(y, x)
    if switch == "eval":
        mum.eval()
        assert torch.equal(mum.unmix(y), x)
    else:
        with mum.paused():
            assert torch.equal(mum.unmix(y), x)
    assert not mum.in_chain


def test_a_mixing_point_after_the_unmix_point_is_an_error() -> None:
    net = nn.Sequential(nn.Conv2d(3, 4, 1), nn.ReLU(), nn.Conv2d(4, 2, 1))
    mum = PoseMUM(group_size=2, grid=2, generator=generator(0))
    with attach(net, mum, mix_at=["", "2"], unmix_at="1"):  # "2" runs after the unmix
        with pytest.raises(ValueError, match=r"before unmix_at='1'"):
            net(torch.randn(4, 3, 8, 8))
        assert not mum.in_chain  # nothing carries over into the next pass


class _FailsOnce(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fail = True

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.fail:
            self.fail = False
            raise RuntimeError("out of memory")
        return x


def test_a_pass_that_raised_leaves_no_stale_chain() -> None:
    # The network is the identity, so a correct pass returns its input exactly; a
    # chain left open by the failed pass would compose its plan into the next one.
    net = nn.Sequential(nn.Identity(), _FailsOnce(), nn.Identity())
    mum = PoseMUM(group_size=4, grid=2, p_feature=1.0, feature_mode="all", generator=generator(1))
    x = torch.randn(8, 3, 8, 8)
    with attach(net, mum, mix_at=["", "0"], unmix_at="2"):
        with pytest.raises(RuntimeError, match="out of memory"):
            net(x)
        assert mum.in_chain and mum.plan is not None  # the failed pass mixed
        assert torch.equal(net(x), x)


def test_explicit_plan_replays() -> None:
    plan = sample_tile_plan(4, grid=(2, 2), generator=generator(9))
    mum = PoseMUM(group_size=4, grid=(2, 2))
    x = torch.randn(4, 2, 6, 6)
    mixed = mum(x, plan=plan)
    assert torch.equal(mixed, mix_tiles(x, plan))
    assert mum.plan is plan
    assert torch.equal(mum.unmix(mixed), x)


def test_compiled_model_with_hooks_matches_eager() -> None:
    net = small_net()
    x = torch.randn(8, 3, 12, 10)
    eager_mum = PoseMUM(grid=(3, 2), p_feature=1.0, generator=generator(4))
    compiled_mum = PoseMUM(grid=(3, 2), p_feature=1.0, generator=generator(4))
    with attach(net, eager_mum, mix_at=["", "1", "3"], unmix_at="4"):
        eager = [net(x) for _ in range(2)]
    compiled_net = torch.compile(copy.deepcopy(net), backend="eager")
    with attach(
        compiled_net,
        compiled_mum,
        mix_at=["", "_orig_mod.1", "_orig_mod.3"],
        unmix_at="_orig_mod.4",
    ):
        compiled = [compiled_net(x) for _ in range(2)]
    for e, c in zip(eager, compiled, strict=True):
        torch.testing.assert_close(c, e, rtol=0, atol=0)


def test_mix_tiles_under_compile() -> None:
    plan = sample_tile_plan(8, grid=(4, 4), generator=generator(0))
    x = torch.randn(8, 3, 16, 10, requires_grad=True)
    compiled = torch.compile(lambda t: unmix_tiles(mix_tiles(t, plan) * 2.0, plan), backend="eager")
    out = compiled(x)
    assert torch.equal(out, x * 2.0)
    out.sum().backward()
    assert x.grad is not None and torch.equal(x.grad, torch.full_like(x, 2.0))


# ---- errors ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: mix_tiles(torch.zeros(3, 4, 4), TilePlan.identity(2, 2)), "batch size 3"),
        (lambda: mix_tiles(torch.zeros(2, 4), TilePlan.identity(2, 2)), "at least 3 dims"),
        (
            lambda: mix_tiles(
                [torch.zeros(2, 1, 4, 4), torch.zeros(3, 1, 4, 4)], TilePlan.identity(2, 2)
            ),
            r"x\[1\]",
        ),
        (lambda: sample_tile_plan(4, grid=(0, 2)), "grid"),
        (lambda: sample_tile_plan(4, group_size=0), "group_size"),
        (lambda: sample_tile_plan(-1), "batch_size"),
        (lambda: PoseMUM(feature_points=-1), "feature_points"),
        (lambda: PoseMUM(p=1.5), "p must be"),
        (lambda: PoseMUM(p_feature=-0.1), "p_feature"),
        (lambda: PoseMUM(grid=0), "grid"),
        (lambda: PoseMUM(group_size=0), "group_size"),
        (lambda: PoseMUM().unmix(torch.zeros(2, 1, 4, 4)), "without a chain"),
        (lambda: PoseMUM()(torch.zeros(4, 4)), "shape"),
        (lambda: TilePlan(torch.tensor([[[0]], [[0]]])), "permutation"),
        (lambda: TilePlan(torch.tensor([[[0.0]]])), "integer"),
        (lambda: TilePlan(torch.zeros(2, 2, dtype=torch.long)), "at least 3 dims"),
        (lambda: TilePlan.identity(2, 2).then(TilePlan.identity(3, 2)), "same"),
        (lambda: mix_keypoints(torch.zeros(2, 3), TilePlan.identity(2, 2), (4, 4)), "keypoints"),
        (lambda: attach(small_net(), PoseMUM(), mix_at=["", "nope"], unmix_at="4"), "nope"),
        (lambda: attach(small_net(), PoseMUM(), mix_at=["", "4"], unmix_at="4"), "unmix_at"),
        (lambda: attach(small_net(), PoseMUM(), mix_at=[], unmix_at="4"), "at least one"),
    ],
)
def test_clear_errors(call: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        call()  # type: ignore[operator]


def test_unmix_batch_mismatch_is_an_error() -> None:
    mum = PoseMUM(group_size=2, grid=2)
    mum(torch.zeros(4, 1, 4, 4))
    with pytest.raises(ValueError, match="batch size 2"):
        mum.unmix(torch.zeros(2, 1, 4, 4))


# ---- traps for a user who drops PoseMUM into their own code ----------------------------


def pointwise_net() -> nn.Sequential:
    """1x1 convolutions commute with tile permutations: any exact mix/unmix is invisible."""
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 6, 1), nn.ReLU(), nn.Conv2d(6, 6, 1), nn.ReLU(), nn.Conv2d(6, 2, 1)
    )


@pytest.mark.parametrize("input_first", [True, False])
def test_two_posemums_unmix_in_reverse_mixing_order(input_first: bool) -> None:
    net = pointwise_net()
    x = torch.randn(8, 3, 12, 12, generator=generator(0))
    reference = net(x)
    plain_features = net[2](net[1](net[0](x)))
    at_input = PoseMUM(group_size=4, grid=(4, 4), generator=generator(1))
    at_feature = PoseMUM(group_size=8, grid=(2, 3), generator=generator(2))
    attachments = [(at_input, [""]), (at_feature, ["1"])]
    handles = [
        attach(net, mum, mix_at=at, unmix_at="3")
        for mum, at in attachments[:: 1 if input_first else -1]
    ]
    mixed_features: list[torch.Tensor] = []
    spy = net[2].register_forward_hook(lambda m, a, o: mixed_features.append(o))
    out = net(x)
    spy.remove()
    assert not torch.allclose(mixed_features[0], plain_features)  # it did mix
    torch.testing.assert_close(out, reference, rtol=0, atol=1e-6)
    assert not at_input.in_chain and not at_feature.in_chain
    for handle in handles:
        handle.remove()


def test_chains_that_do_not_nest_are_an_error() -> None:
    net = pointwise_net()
    first = PoseMUM(group_size=4, grid=2, generator=generator(1))
    second = PoseMUM(group_size=4, grid=2, generator=generator(2))
    with (
        attach(net, first, mix_at="", unmix_at="2"),
        attach(net, second, "1", unmix_at="3"),
        pytest.raises(ValueError, match="do not nest"),
    ):
        net(torch.randn(8, 3, 8, 8))


def test_posemums_called_by_hand_are_independent() -> None:
    # Two PoseMUMs on two unrelated pipelines may interleave their chains freely.
    first = PoseMUM(group_size=4, grid=2, generator=generator(1))
    second = PoseMUM(group_size=4, grid=2, generator=generator(2))
    x, y = torch.randn(8, 3, 8, 8), torch.randn(8, 3, 8, 8)
    mixed_x, mixed_y = first(x), second(y)
    assert torch.equal(first.unmix(mixed_x), x)
    assert torch.equal(second.unmix(mixed_y), y)


def test_a_mixing_point_that_runs_twice_in_a_pass_is_an_error() -> None:
    class Reuses(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.a = nn.Conv2d(3, 3, 1)
            self.b = nn.Conv2d(3, 3, 1)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.b(self.a(self.a(x)))

    net = Reuses()
    with (
        attach(net, PoseMUM(group_size=4, grid=2), mix_at=["", "a"], unmix_at="b"),
        pytest.raises(ValueError, match="'a' ran twice in one forward pass"),
    ):
        net(torch.randn(4, 3, 8, 8))


def test_one_posemum_attached_to_two_models() -> None:
    mum = PoseMUM(group_size=4, grid=2, generator=generator(0))
    first, second = pointwise_net(), pointwise_net()
    x = torch.randn(8, 3, 8, 8)
    handle = attach(first, mum, mix_at=["", "1"], unmix_at="3")
    with attach(second, mum, mix_at=["", "1"], unmix_at="3"):
        handle.remove()  # the other attachment keeps its feature points
        assert mum.feature_points == 1
        torch.testing.assert_close(second(x), second.eval()(x), rtol=0, atol=1e-6)
    assert mum.feature_points is None


def test_called_by_hand_and_through_attach_mix_equally_often() -> None:
    # Same arguments, same method: with three feature points and p_feature = 0.5 a chain
    # re-mixes at most once, in half of the chains on average, by hand as under attach.
    x = torch.randn(4, 1, 4, 4)
    by_hand = PoseMUM(
        group_size=2, grid=2, p=0.0, p_feature=0.5, feature_points=3, generator=generator(3)
    )
    remixes = []
    for _ in range(400):
        by_hand(x)
        for _point in range(3):
            by_hand(x)
        remixes.append(by_hand.plan is not None)
        by_hand.unmix(x)
    assert 0.42 < sum(remixes) / len(remixes) < 0.58
    unset = PoseMUM(group_size=2, grid=2, p_feature=0.5)
    unset(x)
    with pytest.raises(ValueError, match="feature_points"):
        unset(x)  # a feature point the PoseMUM was not told about


def test_a_forgotten_unmix_is_an_error() -> None:
    mum = PoseMUM(group_size=2, grid=2, feature_points=1, generator=generator(0))
    x = torch.randn(4, 3, 8, 8)
    mum(x)
    mum(x)  # the feature point; the caller then forgets mum.unmix(...)
    with pytest.raises(ValueError, match=r"call unmix\(\) before the next batch"):
        mum(torch.randn(4, 3, 8, 8))
    assert not mum.in_chain
    torch.testing.assert_close(mum.unmix(mum(mum(x))), x, rtol=0, atol=0)


def test_copies_made_after_attach_carry_no_hooks() -> None:
    net = small_net()
    x = torch.randn(8, 3, 12, 10, generator=generator(0))
    mum = PoseMUM(grid=(3, 2), p_feature=1.0, generator=generator(1))
    handle = attach(net, mum, mix_at=["", "1"], unmix_at="4")
    copied_after = copy.deepcopy(net)
    buffer = io.BytesIO()
    torch.save(net, buffer)  # the attached model itself saves, without its hooks
    handle.remove()
    copied_before = copy.deepcopy(net)
    for copied in (copied_after, copied_before):
        assert torch.equal(copied.train()(x), net(x))  # train mode, and still no mixing
        assert all(not m._forward_hooks and not m._forward_pre_hooks for m in copied.modules())
    torch.save(copied_after, io.BytesIO())
    buffer.seek(0)
    loaded = torch.load(buffer, weights_only=False)
    assert torch.equal(loaded(x), net(x))


def test_mix_at_as_one_name_and_the_input_as_a_keyword() -> None:
    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.stem = nn.Conv2d(3, 4, 3, padding=1)
            self.body = nn.Conv2d(4, 4, 3, padding=1)

        def forward(self, images: torch.Tensor, scale: float = 1.0) -> torch.Tensor:
            return self.body(self.stem(images)) * scale

    net = Net()
    x = torch.randn(4, 3, 8, 8, generator=generator(0))
    outs = []
    for call in (lambda: net(x, 2.0), lambda: net(images=x, scale=2.0)):
        mum = PoseMUM(group_size=4, grid=2, generator=generator(5))
        with attach(net, mum, mix_at="stem", unmix_at="body"):
            assert mum.feature_points == 0
            outs.append(call())
        assert mum.feature_points is None  # given back by the handle
    assert torch.equal(outs[0], outs[1])
    with attach(net, PoseMUM(group_size=4, grid=2), mix_at=["", "stem"], unmix_at="body"):
        assert not torch.equal(net(images=x), net.eval()(images=x))
        net.train()
        with pytest.raises(ValueError, match="'images'"):
            net(scale=2.0)


def test_attach_checks_feature_points() -> None:
    with pytest.raises(ValueError, match="feature_points=2"):
        attach(small_net(), PoseMUM(feature_points=2), mix_at=["", "1"], unmix_at="4")


@pytest.mark.parametrize("device", DEVICES)
def test_channels_last_keeps_its_memory_format(device: str) -> None:
    for shape, grid in [((8, 5, 12, 8), (4, 4)), ((8, 6, 7, 6), (4, 4)), ((4, 3, 3, 2), (4, 4))]:
        x = torch.randn(*shape, generator=generator(0)).to(device)
        plan = sample_tile_plan(shape[0], grid=grid, generator=generator(1))
        last = x.contiguous(memory_format=torch.channels_last).requires_grad_()
        mixed = mix_tiles(last, plan)
        assert mixed.is_contiguous(memory_format=torch.channels_last)
        assert torch.equal(mixed, mix_tiles(x, plan))
        mixed.backward(mix_tiles(x, plan))
        assert last.grad is not None and torch.equal(last.grad, x)


def test_the_cached_inverse_follows_the_plan() -> None:
    plan = sample_tile_plan(8, grid=(2, 2), generator=generator(0))
    x = torch.randn(8, 3, 8, 8)
    with torch.inference_mode():
        unmix_tiles(x, plan)  # an inverse computed here cannot be saved for backward
    y = x.clone().requires_grad_()
    unmix_tiles(y, plan).sum().backward()
    assert y.grad is not None and torch.equal(y.grad, torch.ones_like(x))
    plan.source.copy_(sample_tile_plan(8, grid=(2, 2), generator=generator(1)).source)
    assert torch.equal(unmix_tiles(mix_tiles(x, plan), plan), x)  # edited in place


def test_keyword_input_of_a_compiled_model() -> None:
    net = small_net()
    compiled = torch.compile(net, backend="eager")
    x = torch.randn(8, 3, 12, 10, generator=generator(0))
    outs = []
    for call in (lambda: compiled(x), lambda: compiled(input=x)):
        mum = PoseMUM(grid=(3, 2), generator=generator(4))
        with attach(compiled, mum, mix_at=["", "_orig_mod.1"], unmix_at="_orig_mod.4"):
            outs.append(call())
    assert torch.equal(outs[0], outs[1])


def test_an_empty_batch_mixes_to_an_empty_batch() -> None:
    plan = sample_tile_plan(0, grid=(2, 2))
    assert plan.batch_size == 0 and plan.inverse().source.shape == (0, 2, 2)
    assert TilePlan.identity(0, 2).source.shape == (0, 2, 2)
    x = torch.zeros(0, 3, 8, 8)
    assert mix_tiles(x, plan).shape == x.shape and unmix_tiles(x, plan).shape == x.shape
    mum = PoseMUM(grid=2)
    assert mum.unmix(mum(x)).shape == x.shape


def test_numpy_and_tensor_integers_count_as_integers() -> None:
    numpy = pytest.importorskip("numpy")
    plan = sample_tile_plan(numpy.int64(8), grid=(numpy.int32(2), 3), generator=generator(0))
    assert plan.batch_size == 8 and plan.grid == (2, 3)
    assert PoseMUM(group_size=torch.tensor(4), grid=numpy.int64(2)).group_size == 4
    for bad in (8.0, True, numpy.float64(8.0)):
        with pytest.raises(ValueError, match="batch_size must be an integer >= 0"):
            sample_tile_plan(bad, grid=2)
