"""Tests for smoothflip.models: shapes, parameter counts, vmap/grad equivalence, seeding, errors,
user factories, and (slow) the MNIST-1D training budget."""

from __future__ import annotations

import copy
import math
import re
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call, stack_module_state

from smoothflip import models
from smoothflip.models import (
    MODELS,
    Classifier,
    build_from_factory,
    build_model,
    count_parameters,
    load_factory,
    model_options,
)

K = 10

# (model, input_shape, options) — every supported kind of input shape for every built-in model
CASES = [
    ("mlp", (40,), None),
    ("mlp", (8, 8), None),
    ("mlp", (3, 4, 5), {"hidden": [7, 5, 3], "activation": "tanh"}),
    ("mlp", (40,), {"hidden": [16], "activation": "gelu"}),
    ("mlp", (40,), {"hidden": []}),
    ("cnn1d", (40,), None),
    ("cnn1d", (3, 40), None),
    ("cnn1d", (40,), {"channels": 8, "kernel_sizes": [3, 3], "strides": 1, "padding": 0}),
    ("cnn2d", (8, 8), None),
    ("cnn2d", (3, 8, 8), None),
    ("cnn2d", (7, 9), {"channels": [4], "kernel_size": 5, "pool": 1, "hidden": 12}),
    ("logistic", (40,), None),
    ("logistic", (8, 8), None),
]
IDS = [f"{n}-{'x'.join(map(str, s))}-{i}" for i, (n, s, _) in enumerate(CASES)]


def _build(name: str, shape: tuple[int, ...], options: dict | None, seed: int) -> Classifier:
    torch.manual_seed(seed)
    return build_model(name, input_shape=shape, num_classes=K, options=options)


def _feature_dim(name: str, shape: tuple[int, ...], options: dict | None) -> int:
    """The penultimate width, computed independently of the implementation."""
    opts = {**model_options(name), **(options or {})}
    if name == "logistic" or (name == "mlp" and not opts["hidden"]):
        return math.prod(shape)
    if name == "mlp":
        return opts["hidden"][-1]
    if name == "cnn2d":
        return opts["hidden"]
    length = shape[-1]
    strides = opts["strides"] if isinstance(opts["strides"], list) else [opts["strides"]] * 3
    for k, s in zip(opts["kernel_sizes"], strides, strict=False):
        length = (length + 2 * opts["padding"] - k) // s + 1
    return opts["channels"] * length


# --------------------------------------------------------------------------------------------------
# shapes and parameter counts
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("name", "shape", "options"), CASES, ids=IDS)
def test_output_and_feature_shapes(name: str, shape: tuple[int, ...], options: dict | None) -> None:
    model = _build(name, shape, options, seed=0)
    assert isinstance(model, Classifier)
    assert isinstance(model.head, nn.Linear)
    x = torch.randn(5, *shape)
    logits = model(x)
    feats = model.features(x)
    assert logits.shape == (5, K)
    assert logits.dtype == torch.float32
    assert feats.shape == (5, _feature_dim(name, shape, options))
    assert model.feature_dim == feats.shape[1]
    assert model.num_classes == K
    torch.testing.assert_close(model.head(feats), logits)
    # a batch of one works too
    assert model(x[:1]).shape == (1, K)


@pytest.mark.parametrize(
    ("name", "shape", "expected"),
    [
        ("cnn1d", (40,), 5_210),  # MNIST-1D paper CNN: 150 + 1,900 + 1,900 + 1,260
        ("mlp", (40,), 15_210),  # MNIST-1D paper MLP: 40-100-100-10
        ("logistic", (40,), 410),
        ("logistic", (8, 8), 650),
        ("cnn2d", (8, 8), 160 + 4_640 + 512 * 64 + 64 + 650),
    ],
)
def test_parameter_counts(name: str, shape: tuple[int, ...], expected: int) -> None:
    model = build_model(name, input_shape=shape, num_classes=K)
    assert count_parameters(model) == expected


def test_cnn1d_matches_the_mnist1d_architecture() -> None:
    model = build_model("cnn1d", input_shape=(40,), num_classes=K)
    convs = [m for m in model.body.modules() if isinstance(m, nn.Conv1d)]
    assert [(c.in_channels, c.out_channels, c.kernel_size, c.stride, c.padding) for c in convs] == [
        (1, 25, (5,), (2,), (1,)),
        (25, 25, (3,), (2,), (1,)),
        (25, 25, (3,), (2,), (1,)),
    ]
    assert (model.head.in_features, model.head.out_features) == (125, K)


def test_empty_hidden_mlp_is_logistic_regression() -> None:
    mlp = _build("mlp", (8, 8), {"hidden": []}, seed=3)
    logistic = _build("logistic", (8, 8), None, seed=3)
    assert count_parameters(mlp) == count_parameters(logistic) == 650
    x = torch.randn(4, 8, 8)
    torch.testing.assert_close(mlp(x), logistic(x))
    torch.testing.assert_close(logistic.features(x), x.flatten(1))


def test_count_parameters_counts_shared_parameters_once() -> None:
    lin = nn.Linear(3, 3)
    assert count_parameters(nn.Sequential(lin, lin)) == 12
    with pytest.raises(TypeError, match="model"):
        count_parameters("not a module")  # type: ignore[arg-type]


# --------------------------------------------------------------------------------------------------
# vmap and gradient equivalence (the study engine's way of training many models at once)
# --------------------------------------------------------------------------------------------------


def _stack(name: str, shape: tuple[int, ...], options: dict | None, copies: int = 3):
    members = [_build(name, shape, options, seed=10 + s) for s in range(copies)]
    params, buffers = stack_module_state(members)
    base = copy.deepcopy(members[0]).to("meta")
    return members, params, buffers, base


@pytest.mark.parametrize(("name", "shape", "options"), CASES, ids=IDS)
def test_vmap_forward_matches_each_member(name: str, shape: tuple[int, ...], options: dict | None) -> None:
    members, params, buffers, base = _stack(name, shape, options)
    assert not torch.equal(members[0].head.weight, members[1].head.weight)

    def fmodel(p: dict, b: dict, x: torch.Tensor) -> torch.Tensor:
        return functional_call(base, (p, b), (x,))

    xs = torch.randn(len(members), 6, *shape)
    per_batch = torch.vmap(fmodel, in_dims=(0, 0, 0))(params, buffers, xs)
    shared = torch.vmap(fmodel, in_dims=(0, 0, None))(params, buffers, xs[0])
    assert per_batch.shape == shared.shape == (len(members), 6, K)
    with torch.no_grad():
        for i, member in enumerate(members):
            torch.testing.assert_close(per_batch[i], member(xs[i]), atol=1e-5, rtol=1e-5)
            torch.testing.assert_close(shared[i], member(xs[0]), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize(("name", "shape", "options"), CASES, ids=IDS)
def test_vmap_features_match_each_member(name: str, shape: tuple[int, ...], options: dict | None) -> None:
    members, params, buffers, base = _stack(name, shape, options)
    body_params = {k.removeprefix("body."): v for k, v in params.items() if k.startswith("body.")}
    body_buffers = {k.removeprefix("body."): v for k, v in buffers.items() if k.startswith("body.")}

    def ffeatures(p: dict, b: dict, x: torch.Tensor) -> torch.Tensor:
        return functional_call(base.body, (p, b), (x,))

    xs = torch.randn(len(members), 6, *shape)
    feats = torch.vmap(ffeatures, in_dims=(0, 0, 0))(body_params, body_buffers, xs)
    with torch.no_grad():
        for i, member in enumerate(members):
            torch.testing.assert_close(feats[i], member.features(xs[i]), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize(("name", "shape", "options"), CASES, ids=IDS)
def test_gradients_through_stacked_parameters_match_each_member(
    name: str, shape: tuple[int, ...], options: dict | None
) -> None:
    members, params, buffers, base = _stack(name, shape, options)
    xs = torch.randn(len(members), 6, *shape)
    ys = torch.randint(0, K, (len(members), 6))

    def member_loss(p: dict, b: dict, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(functional_call(base, (p, b), (x,)), y)

    # (1) per-member gradients with torch.func.grad under vmap
    func_grads = torch.vmap(torch.func.grad(member_loss), in_dims=(0, 0, 0, 0))(params, buffers, xs, ys)
    # (2) plain backward through the stacked leaves (how an optimizer over the stack sees them)
    assert all(p.is_leaf and p.requires_grad for p in params.values())
    losses = torch.vmap(member_loss, in_dims=(0, 0, 0, 0))(params, buffers, xs, ys)
    losses.sum().backward()
    for i, member in enumerate(members):
        member.zero_grad()
        F.cross_entropy(member(xs[i]), ys[i]).backward()
        for pname, p in member.named_parameters():
            torch.testing.assert_close(func_grads[pname][i], p.grad, atol=1e-5, rtol=1e-4)
            torch.testing.assert_close(params[pname].grad[i], p.grad, atol=1e-5, rtol=1e-4)


# --------------------------------------------------------------------------------------------------
# seeding
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("name", "shape", "options"), CASES, ids=IDS)
def test_forward_is_deterministic_and_mode_independent(
    name: str, shape: tuple[int, ...], options: dict | None
) -> None:
    """No dropout, no batch statistics, no buffers: train and eval mode compute the same function."""
    model = _build(name, shape, options, seed=0)
    assert list(model.buffers()) == []
    x = torch.randn(6, *shape)
    x_before = x.clone()
    model.train()
    first, second = model(x), model(x)
    model.eval()
    evaluated = model(x)
    assert torch.equal(first, second)
    assert torch.equal(first, evaluated)
    assert torch.equal(x, x_before)  # the input is not modified in place
    # each example's logits depend only on that example (no cross-batch statistics)
    torch.testing.assert_close(model(x[:2]), first[:2], atol=1e-6, rtol=1e-5)


def _typical_shape(name: str) -> tuple[int, ...]:
    return (8, 8) if name in ("cnn2d", "resnet") else (40,)


@pytest.mark.parametrize("name", MODELS)
def test_same_seed_same_parameters(name: str) -> None:
    shape = _typical_shape(name)
    a = _build(name, shape, None, seed=7).state_dict()
    b = _build(name, shape, None, seed=7).state_dict()
    c = _build(name, shape, None, seed=8).state_dict()
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not all(torch.equal(a[k], c[k]) for k in a)


@pytest.mark.parametrize("name", MODELS)
def test_construction_uses_only_torch_global_rng(name: str) -> None:
    shape = _typical_shape(name)
    # the legacy global NumPy RNG is what a careless implementation would touch
    np_state = np.random.get_state()  # noqa: NPY002
    reference = _build(name, shape, None, seed=5).state_dict()
    assert np.random.get_state()[1].tolist() == np_state[1].tolist()  # noqa: NPY002
    # as the engine seeds it: inside fork_rng, without disturbing the outer stream
    outer = torch.random.get_rng_state()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(5)
        forked = build_model(name, input_shape=shape, num_classes=K).state_dict()
    assert torch.equal(torch.random.get_rng_state(), outer)
    assert all(torch.equal(reference[k], forked[k]) for k in reference)


# --------------------------------------------------------------------------------------------------
# options and errors
# --------------------------------------------------------------------------------------------------


def test_model_options_are_fresh_copies_of_the_defaults() -> None:
    assert set(model_options("mlp")) == {"hidden", "activation"}
    assert model_options("cnn1d") == {
        "channels": 25,
        "kernel_sizes": [5, 3, 3],
        "strides": [2, 2, 2],
        "padding": 1,
    }
    assert model_options("logistic") == {}
    opts = model_options("mlp")
    opts["hidden"].append(5)
    assert model_options("mlp")["hidden"] == [100, 100]
    for name in MODELS:
        shape = _typical_shape(name)
        a = _build(name, shape, model_options(name), seed=1)
        b = _build(name, shape, None, seed=1)
        assert count_parameters(a) == count_parameters(b)


def test_options_accept_tuples_and_a_single_stride() -> None:
    a = _build("cnn1d", (40,), {"kernel_sizes": (5, 3, 3), "strides": 2}, seed=0)
    assert count_parameters(a) == 5_210
    b = _build("mlp", (40,), {"hidden": (100, 100)}, seed=0)
    assert count_parameters(b) == 15_210


def test_unknown_model_lists_models_and_mentions_factories() -> None:
    with pytest.raises(ValueError, match="factory reference") as err:
        build_model("vgg", input_shape=(40,), num_classes=K)
    for name in MODELS:
        assert repr(name) in str(err.value)
    with pytest.raises(ValueError, match="'mlp', 'cnn1d', 'cnn2d', 'logistic', 'resnet'"):
        model_options("transformer")


def test_unknown_option_message() -> None:
    message = "model.width: unknown option for 'mlp'; allowed: hidden, activation"
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        build_model("mlp", input_shape=(40,), num_classes=K, options={"width": 3})
    with pytest.raises(
        ValueError, match=r"^model\.hidden: unknown option for 'logistic'; allowed: \(none\)$"
    ):
        build_model("logistic", input_shape=(40,), num_classes=K, options={"hidden": [3]})
    with pytest.raises(ValueError, match=r"model\.hidden: unknown option for 'cnn1d'"):
        build_model("cnn1d", input_shape=(40,), num_classes=K, options={"hidden": 3})


@pytest.mark.parametrize(
    ("name", "options", "error", "match"),
    [
        ("mlp", {"hidden": [100, -1]}, ValueError, r"model\.hidden\[1\] must be >= 1"),
        ("mlp", {"hidden": [0]}, ValueError, r"model\.hidden\[0\]"),
        ("mlp", {"hidden": 100}, TypeError, r"model\.hidden must be a list"),
        ("mlp", {"hidden": "100"}, TypeError, r"model\.hidden must be a list"),
        ("mlp", {"hidden": [1.5]}, TypeError, r"model\.hidden\[0\]"),
        ("mlp", {"activation": "sigmoid"}, ValueError, r"model\.activation must be one of 'relu', 'gelu'"),
        ("cnn1d", {"channels": 0}, ValueError, r"model\.channels must be >= 1"),
        ("cnn1d", {"channels": True}, TypeError, r"model\.channels"),
        ("cnn1d", {"kernel_sizes": []}, ValueError, r"model\.kernel_sizes must not be empty"),
        ("cnn1d", {"kernel_sizes": [5, 0, 3]}, ValueError, r"model\.kernel_sizes\[1\]"),
        ("cnn1d", {"strides": [2, 2]}, ValueError, r"model\.strides must be one int or a list as long"),
        ("cnn1d", {"strides": 0}, ValueError, r"model\.strides must be >= 1"),
        ("cnn1d", {"padding": -1}, ValueError, r"model\.padding must be >= 0"),
        ("cnn2d", {"channels": []}, ValueError, r"model\.channels must not be empty"),
        ("cnn2d", {"kernel_size": 4}, ValueError, r"model\.kernel_size must be odd"),
        ("cnn2d", {"pool": 0}, ValueError, r"model\.pool must be >= 1"),
        ("cnn2d", {"hidden": 0}, ValueError, r"model\.hidden must be >= 1"),
        ("resnet", {"depth": 10}, ValueError, r"^model\.depth must be 6n \+ 2 with n >= 1 .*, got 10$"),
        ("resnet", {"depth": 9}, ValueError, r"^model\.depth must be 6n \+ 2 .*, got 9$"),
        ("resnet", {"depth": 2}, ValueError, r"^model\.depth must be 6n \+ 2 .*, got 2$"),
        ("resnet", {"depth": -4}, ValueError, r"^model\.depth must be 6n \+ 2 .*, got -4$"),
        ("resnet", {"depth": 8.0}, TypeError, r"model\.depth must be an integer"),
        ("resnet", {"depth": "20"}, TypeError, r"model\.depth must be an integer"),
        ("resnet", {"depth": True}, TypeError, r"model\.depth must be an integer"),
        ("resnet", {"width": 0}, ValueError, r"model\.width must be >= 1"),
        (
            "resnet",
            {"blocks": 3},
            ValueError,
            r"^model\.blocks: unknown option for 'resnet'; allowed: depth, width$",
        ),
    ],
)
def test_bad_option_values_name_the_key(name: str, options: dict, error: type, match: str) -> None:
    shape = _typical_shape(name)
    with pytest.raises(error, match=match):
        build_model(name, input_shape=shape, num_classes=K, options=options)


@pytest.mark.parametrize(
    ("name", "shape", "match"),
    [
        ("cnn2d", (40,), r"input_shape \(40,\) does not fit model 'cnn2d'.*\(height, width\)"),
        ("cnn2d", (2, 3, 8, 8), r"input_shape .* does not fit model 'cnn2d'"),
        (
            "cnn1d",
            (8, 8, 8),
            r"input_shape .* does not fit model 'cnn1d'.*\(length,\) or \(channels, length\)",
        ),
        ("cnn1d", (2,), r"input_shape \(2,\) is too short for model 'cnn1d'.*kernel size 5"),
        ("cnn2d", (1, 8), r"input_shape \(1, 8\) is too small for model 'cnn2d'"),
        ("resnet", (40,), r"input_shape \(40,\) does not fit model 'resnet'.*\(channels, height, width\)$"),
        ("resnet", (2, 3, 8, 8), r"input_shape .* does not fit model 'resnet'"),
        ("mlp", (), r"input_shape must have at least one dimension"),
        ("mlp", (40, 0), r"input_shape must be a tuple of positive ints"),
        ("logistic", (40.0,), r"input_shape must be a tuple of positive ints"),
    ],
)
def test_wrong_input_shape(name: str, shape: tuple, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        build_model(name, input_shape=shape, num_classes=K)


def test_other_argument_errors() -> None:
    with pytest.raises(TypeError, match="input_shape"):
        build_model("mlp", input_shape=40, num_classes=K)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="num_classes must be >= 2"):
        build_model("mlp", input_shape=(40,), num_classes=1)
    with pytest.raises(TypeError, match="model options must be a mapping"):
        build_model("mlp", input_shape=(40,), num_classes=K, options=[("hidden", [3])])  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"head must be an nn\.Linear"):
        Classifier(nn.Flatten(), nn.Identity())  # type: ignore[arg-type]


# --------------------------------------------------------------------------------------------------
# user factories
# --------------------------------------------------------------------------------------------------

FACTORY_SOURCE = textwrap.dedent(
    """
    import torch
    from torch import nn

    NOT_CALLABLE = 3


    def make(*, input_shape, num_classes, width=8):
        d = 1
        for s in input_shape:
            d *= s
        return nn.Sequential(nn.Flatten(), nn.Linear(d, width), nn.ReLU(), nn.Linear(width, num_classes))


    def not_a_module(*, input_shape, num_classes):
        return "a string"


    def wrong_logits(*, input_shape, num_classes):
        return nn.Sequential(nn.Flatten(), nn.Linear(input_shape[0], num_classes + 1))


    def returns_tuple(*, input_shape, num_classes):
        class Net(nn.Module):
            def forward(self, x):
                return x, x

        return Net()


    def with_batchnorm(*, input_shape, num_classes):
        return nn.Sequential(
            nn.Linear(input_shape[0], 4), nn.BatchNorm1d(4), nn.Dropout(0.5), nn.Linear(4, num_classes)
        )


    def wrong_input_width(*, input_shape, num_classes):
        return nn.Linear(3, num_classes)


    class Zoo:
        @staticmethod
        def create(*, input_shape, num_classes):
            return nn.Linear(input_shape[0], num_classes)
    """
)


@pytest.fixture
def factory_dir(tmp_path: Path) -> Path:
    (tmp_path / "user_models.py").write_text(FACTORY_SOURCE)
    (tmp_path / "broken_models.py").write_text("import smoothflip_no_such_dependency\n")
    return tmp_path


@pytest.fixture
def module_name(tmp_path: Path):
    """A module name unique to this test, written into tmp_path and forgotten afterwards."""
    name = f"sf_factory_{abs(hash(str(tmp_path)))}"
    (tmp_path / f"{name}.py").write_text(FACTORY_SOURCE)
    yield name
    sys.modules.pop(name, None)


def test_load_factory_from_file_relative_to_base_dir(factory_dir: Path) -> None:
    factory = load_factory("user_models.py:make", base_dir=factory_dir)
    model = build_from_factory(factory, input_shape=(5,), num_classes=3, options={"width": 6})
    assert model(torch.zeros(4, 5)).shape == (4, 3)
    assert count_parameters(model) == 5 * 6 + 6 + 6 * 3 + 3


def test_load_factory_executes_a_file_once_per_version(tmp_path: Path) -> None:
    file = tmp_path / "counted.py"
    file.write_text("CALLS = []\nCALLS.append(1)\ndef make(**kw):\n    return len(CALLS)\n")
    first = load_factory("counted.py:make", base_dir=tmp_path)
    assert load_factory("counted.py:make", base_dir=tmp_path) is first
    assert first() == 1
    file.write_text("def make(**kw):\n    return 'changed'\n")
    assert load_factory("counted.py:make", base_dir=tmp_path)() == "changed"


def test_load_factory_from_absolute_file_and_dotted_attribute(factory_dir: Path) -> None:
    factory = load_factory(f"{factory_dir / 'user_models.py'}:Zoo.create")
    model = build_from_factory(factory, input_shape=(5,), num_classes=3)
    assert isinstance(model, nn.Linear)


def test_load_factory_from_module_with_base_dir(module_name: str, tmp_path: Path) -> None:
    path_before = list(sys.path)
    factory = load_factory(f"{module_name}:make", base_dir=tmp_path)
    assert sys.path == path_before
    assert build_from_factory(factory, input_shape=(2, 3), num_classes=4)(torch.zeros(1, 2, 3)).shape == (
        1,
        4,
    )
    # an installed module needs no base_dir
    assert load_factory("smoothflip.models:build_model") is build_model


def test_load_factory_missing_module(tmp_path: Path) -> None:
    ref = "smoothflip_no_such_module_xyz:make"
    with pytest.raises(ValueError, match=r"model factory 'smoothflip_no_such_module_xyz:make'.*not found"):
        load_factory(ref, base_dir=tmp_path)
    with pytest.raises(ValueError, match=r"'missing\.py:make'.*file .*missing\.py.* not found"):
        load_factory("missing.py:make", base_dir=tmp_path)


def test_load_factory_failing_import_inside_the_module(factory_dir: Path) -> None:
    with pytest.raises(ValueError, match=r"'broken_models\.py:make'.*failed.*smoothflip_no_such_dependency"):
        load_factory("broken_models.py:make", base_dir=factory_dir)


def test_load_factory_missing_attribute_and_not_callable(factory_dir: Path) -> None:
    with pytest.raises(ValueError, match=r"'user_models\.py:nope'.*has no attribute 'nope'"):
        load_factory("user_models.py:nope", base_dir=factory_dir)
    with pytest.raises(TypeError, match=r"'user_models\.py:NOT_CALLABLE'.*not callable"):
        load_factory("user_models.py:NOT_CALLABLE", base_dir=factory_dir)


@pytest.mark.parametrize("ref", ["user_models", "user_models.py:", ":make", ""])
def test_load_factory_malformed_reference(ref: str, factory_dir: Path) -> None:
    with pytest.raises(ValueError, match=r"expected 'package\.module:function'"):
        load_factory(ref, base_dir=factory_dir)


def test_factory_returning_a_non_module(factory_dir: Path) -> None:
    factory = load_factory("user_models.py:not_a_module", base_dir=factory_dir)
    with pytest.raises(TypeError, match=r"not_a_module must return an nn\.Module, got str"):
        build_from_factory(factory, input_shape=(5,), num_classes=3)


def test_factory_returning_wrong_logits(factory_dir: Path) -> None:
    factory = load_factory("user_models.py:wrong_logits", base_dir=factory_dir)
    with pytest.raises(ValueError, match=r"wrong_logits.*logits of shape \[2, 3\], got \[2, 4\]"):
        build_from_factory(factory, input_shape=(5,), num_classes=3)
    factory = load_factory("user_models.py:returns_tuple", base_dir=factory_dir)
    with pytest.raises(ValueError, match=r"returns_tuple.*got tuple"):
        build_from_factory(factory, input_shape=(5,), num_classes=3)


def test_factory_whose_model_does_not_fit_the_input_is_a_value_error(factory_dir: Path) -> None:
    factory = load_factory("user_models.py:wrong_input_width", base_dir=factory_dir)
    with pytest.raises(
        ValueError, match=r"wrong_input_width: a batch of shape \[2, 5\].*does not go through"
    ):
        build_from_factory(factory, input_shape=(5,), num_classes=3)


def test_pack_sizing_probe_handles_batch_norm_and_leaves_the_model_as_it_was(factory_dir: Path) -> None:
    from smoothflip.engine.sizing import activation_elements

    model = build_from_factory(
        load_factory("user_models.py:with_batchnorm", base_dir=factory_dir), input_shape=(5,), num_classes=3
    )
    model.train()
    stats_before = model[1].running_mean.clone()
    state = torch.random.get_rng_state()
    assert activation_elements(model, (5,)) == 4 + 4 + 4 + 3  # Linear, BatchNorm, Dropout, Linear outputs
    assert model.training
    assert torch.equal(model[1].running_mean, stats_before)
    assert torch.equal(torch.random.get_rng_state(), state)


def test_factory_with_wrong_arguments(factory_dir: Path) -> None:
    factory = load_factory("user_models.py:make", base_dir=factory_dir)
    with pytest.raises(TypeError, match=r"model factory .*make cannot be called with .*depth"):
        build_from_factory(factory, input_shape=(5,), num_classes=3, options={"depth": 2})
    with pytest.raises(ValueError, match="options must not contain input_shape"):
        build_from_factory(factory, input_shape=(5,), num_classes=3, options={"num_classes": 2})
    with pytest.raises(TypeError, match="must be callable"):
        build_from_factory(3, input_shape=(5,), num_classes=3)  # type: ignore[arg-type]


def test_factory_check_leaves_rng_and_module_state_alone(factory_dir: Path) -> None:
    factory = load_factory("user_models.py:with_batchnorm", base_dir=factory_dir)
    torch.manual_seed(0)
    model = factory(input_shape=(5,), num_classes=3)
    state_after_init = torch.random.get_rng_state()
    torch.manual_seed(0)
    checked = build_from_factory(factory, input_shape=(5,), num_classes=3)
    # the check drew nothing from the RNG, changed no buffers and restored train mode
    assert torch.equal(torch.random.get_rng_state(), state_after_init)
    assert all(
        torch.equal(a, b)
        for a, b in zip(model.state_dict().values(), checked.state_dict().values(), strict=True)
    )
    assert all(m.training for m in checked.modules())


def test_builtin_build_model_works_as_a_factory() -> None:
    factory = load_factory("smoothflip.models:build_model")
    model = build_from_factory(factory, input_shape=(40,), num_classes=K, options={"name": "cnn1d"})
    assert count_parameters(model) == 5_210


def test_module_exports() -> None:
    assert set(models.__all__) >= {
        "MODELS",
        "build_model",
        "load_factory",
        "count_parameters",
        "model_options",
    }
    assert MODELS == ("mlp", "cnn1d", "cnn2d", "logistic", "resnet")


# every name the single-module smoothflip.models had, public or private
FORMER_NAMES = [
    "ACTIVATIONS",
    "MODELS",
    "BodyHead",
    "Classifier",
    "build_from_factory",
    "build_model",
    "count_parameters",
    "load_factory",
    "model_options",
    "_DEFAULTS",
    "_BUILDERS",
    "_FACTORY_HINT",
    "_activation",
    "_numel",
    "_build_mlp",
    "_build_logistic",
    "_build_cnn1d",
    "_build_cnn2d",
    "_check_name",
    "_check_input_shape",
    "_int_list",
    "_resolve_options",
    "_import_module",
    "_load_file",
    "_describe",
    "_dummy_forward",
]


def test_the_package_keeps_every_name_of_the_former_module() -> None:
    missing = [name for name in FORMER_NAMES if not hasattr(models, name)]
    assert missing == []
    assert set(models._DEFAULTS) == set(models._BUILDERS) == set(MODELS)
    assert models._BUILDERS["cnn2d"] is models._build_cnn2d
    with pytest.raises(ValueError, match="input_shape must be a tuple of positive ints"):
        models._check_input_shape((3, 0))


# --------------------------------------------------------------------------------------------------
# resnet: architecture, parameter counts, batch norm under torch.func
# --------------------------------------------------------------------------------------------------


def _resnet_parameters(n: int, width: int, in_channels: int, k: int, *, projections: bool = True) -> int:
    """He et al. 2016 §4.2 counted by hand: stem, 3 stages of n basic blocks, projections, head."""

    def conv(c_in: int, c_out: int, size: int) -> int:
        return c_in * c_out * size * size  # no bias: batch norm follows

    def bn(c: int) -> int:
        return 2 * c  # weight and bias

    total = conv(in_channels, width, 3) + bn(width)
    c_in = width
    for stage in range(3):
        c_out = width * 2**stage
        for _ in range(n):
            total += conv(c_in, c_out, 3) + bn(c_out) + conv(c_out, c_out, 3) + bn(c_out)
            if projections and c_in != c_out:
                total += conv(c_in, c_out, 1) + bn(c_out)
            c_in = c_out
    return total + 4 * width * k + k


@pytest.mark.parametrize(
    ("depth", "width", "shape", "expected"),
    [
        (8, 16, (3, 32, 32), 78_042),  # ResNet-8
        (20, 16, (3, 32, 32), 272_474),  # ResNet-20
        (14, 16, (3, 16, 16), 175_258),
        (8, 16, (8, 8), 77_754),  # grayscale stem: 1 * 16 * 9 instead of 3 * 16 * 9
        (8, 4, (3, 8, 8), None),
        (32, 8, (1, 12, 10), None),
    ],
)
def test_resnet_parameter_counts(
    depth: int, width: int, shape: tuple[int, ...], expected: int | None
) -> None:
    model = build_model("resnet", input_shape=shape, num_classes=K, options={"depth": depth, "width": width})
    n = (depth - 2) // 6
    in_channels = shape[0] if len(shape) == 3 else 1
    assert count_parameters(model) == _resnet_parameters(n, width, in_channels, K)
    if expected is not None:
        assert count_parameters(model) == expected


def test_resnet20_is_the_papers_027m_model() -> None:
    model = build_model("resnet", input_shape=(3, 32, 32), num_classes=10, options={"depth": 20})
    assert round(count_parameters(model) / 1e6, 2) == 0.27
    # the paper's option A (identity shortcuts, zero-padded) has no projection parameters
    assert _resnet_parameters(3, 16, 3, 10, projections=False) == 269_722
    projections = [m for m in model.modules() if isinstance(m, nn.Conv2d) and m.kernel_size == (1, 1)]
    assert count_parameters(model) - 269_722 == sum(
        count_parameters(p) + 2 * p.out_channels for p in projections
    )


@pytest.mark.parametrize(("depth", "width"), [(8, 16), (20, 16), (14, 6)])
def test_resnet_architecture(depth: int, width: int) -> None:
    model = build_model(
        "resnet", input_shape=(3, 16, 16), num_classes=K, options={"depth": depth, "width": width}
    )
    n = (depth - 2) // 6
    convs = [m for m in model.body.modules() if isinstance(m, nn.Conv2d)]
    three = [c for c in convs if c.kernel_size == (3, 3)]
    one = [c for c in convs if c.kernel_size == (1, 1)]
    assert len(three) + 1 == depth == 6 * n + 2  # weighted layers: the 3x3 convolutions and the head
    assert [(c.in_channels, c.out_channels, c.stride) for c in one] == [
        (width, 2 * width, (2, 2)),
        (2 * width, 4 * width, (2, 2)),
    ]
    assert sum(c.stride == (2, 2) for c in three) == 2
    assert all(c.bias is None for c in convs)
    norms = [m for m in model.body.modules() if isinstance(m, nn.BatchNorm2d)]
    assert len(norms) == len(convs)
    assert (model.feature_dim, model.head.out_features) == (4 * width, K)
    sizes = []
    hooks = [
        stage.register_forward_hook(lambda m, i, o: sizes.append(tuple(o.shape[1:])))
        for stage in model.body.stages
    ]
    feats = model.features(torch.randn(2, 3, 16, 16))
    for h in hooks:
        h.remove()
    assert sizes == [(width, 16, 16), (2 * width, 8, 8), (4 * width, 4, 4)]
    assert feats.shape == (2, 4 * width)


@pytest.mark.parametrize("shape", [(8, 8), (1, 8, 8), (3, 16, 16), (3, 7, 9), (2, 1, 1), (4, 32, 32)])
def test_resnet_input_shapes(shape: tuple[int, ...]) -> None:
    model = _build("resnet", shape, None, seed=0)
    x = torch.randn(5, *shape)
    assert model(x).shape == (5, K)
    assert model.features(x).shape == (5, 64)


def test_resnet_grayscale_hw_and_1hw_are_the_same_model() -> None:
    a = _build("resnet", (8, 8), {"width": 4}, seed=3)
    b = _build("resnet", (1, 8, 8), {"width": 4}, seed=3)
    x = torch.randn(6, 8, 8)
    torch.testing.assert_close(a(x), b(x[:, None]))
    c = _build("resnet", (1, 8, 8), {"width": 4}, seed=4)
    assert not torch.allclose(b(x[:, None]), c(x[:, None]))


def test_resnet_batch_norm_train_and_eval_modes() -> None:
    model = _build("resnet", (3, 8, 8), None, seed=0)
    assert len(list(model.buffers())) == 3 * 9  # running mean, var and count of 9 batch norms (ResNet-8)
    x = torch.randn(6, 3, 8, 8)
    model.train()
    train_out = model(x)
    first = model.body.stem[1]
    assert int(first.num_batches_tracked) == 1
    assert not torch.equal(first.running_mean, torch.zeros_like(first.running_mean))
    # in train mode an example's logits depend on the rest of its batch; in eval mode they do not
    assert not torch.allclose(model(x[:2]), train_out[:2], atol=1e-4)
    model.eval()
    tracked = int(first.num_batches_tracked)
    evaluated = model(x)
    torch.testing.assert_close(model(x[:2]), evaluated[:2], atol=1e-5, rtol=1e-5)
    assert int(first.num_batches_tracked) == tracked
    assert not torch.allclose(evaluated, train_out, atol=1e-3)


def _bn_buffers(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.named_buffers()}


def test_resnet_trains_in_a_vmapped_pack_like_each_member_alone() -> None:
    """Train mode under vmap(functional_call) with stacked buffers (in_dims 0): outputs, gradients,
    running statistics and num_batches_tracked of every member equal those of the member run alone."""
    shape, opts = (3, 8, 8), {"depth": 8, "width": 8}
    members = [_build("resnet", shape, opts, seed=20 + s) for s in range(3)]
    alone = [copy.deepcopy(m) for m in members]
    params, buffers = stack_module_state(members)
    base = copy.deepcopy(members[0]).to("meta")
    assert set(buffers) == {k for k, _ in members[0].named_buffers()}
    assert any(k.endswith("num_batches_tracked") for k in buffers)

    def member_loss(p: dict, b: dict, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        logits = functional_call(base, (p, b), (x,))
        return F.cross_entropy(logits, y), logits

    step = torch.vmap(member_loss, in_dims=(0, 0, 0, 0))
    gen = torch.Generator().manual_seed(0)
    for it in range(2):
        xs = torch.randn(3, 6, *shape, generator=gen) * (1 + it)
        ys = torch.randint(0, K, (3, 6), generator=gen)
        for p in params.values():
            p.grad = None
        base.train()
        losses, logits = step(params, buffers, xs, ys)
        losses.sum().backward()
        for i, model in enumerate(alone):
            model.train()
            model.zero_grad()
            out = model(xs[i])
            F.cross_entropy(out, ys[i]).backward()
            torch.testing.assert_close(logits[i], out, atol=1e-5, rtol=1e-4)
            for name, p in model.named_parameters():
                torch.testing.assert_close(params[name].grad[i], p.grad, atol=1e-5, rtol=1e-4)
            for name, b in model.named_buffers():
                torch.testing.assert_close(buffers[name][i], b, atol=1e-6, rtol=1e-5)
    assert torch.equal(buffers["body.stem.1.num_batches_tracked"], torch.tensor([2, 2, 2]))
    # each member updated its own statistics: they differ between members
    means = buffers["body.stem.1.running_mean"]
    assert not torch.allclose(means[0], means[1])
    # eval mode: the running statistics are used and left alone
    base.eval()
    before = {k: v.clone() for k, v in buffers.items()}
    x_eval = torch.randn(3, 5, *shape, generator=gen)
    with torch.no_grad():
        per_member = torch.vmap(lambda p, b, x: functional_call(base, (p, b), (x,)))(params, buffers, x_eval)
        shared = torch.vmap(lambda p, b, x: functional_call(base, (p, b), (x,)), in_dims=(0, 0, None))(
            params, buffers, x_eval[0]
        )
        for i, model in enumerate(alone):
            model.eval()
            torch.testing.assert_close(per_member[i], model(x_eval[i]), atol=1e-5, rtol=1e-4)
            torch.testing.assert_close(shared[i], model(x_eval[0]), atol=1e-5, rtol=1e-4)
    assert all(torch.equal(before[k], buffers[k]) for k in buffers)


def test_resnet_features_under_vmap_use_the_body_buffers() -> None:
    members, params, buffers, base = _stack("resnet", (3, 8, 8), {"width": 4})
    for m in members:
        m.eval()
    base.eval()
    body_params = {k.removeprefix("body."): v for k, v in params.items() if k.startswith("body.")}
    body_buffers = {k.removeprefix("body."): v for k, v in buffers.items() if k.startswith("body.")}
    assert len(body_buffers) == len(buffers) > 0
    xs = torch.randn(3, 4, 3, 8, 8)
    feats = torch.vmap(lambda p, b, x: functional_call(base.body, (p, b), (x,)))(
        body_params, body_buffers, xs
    )
    with torch.no_grad():
        for i, member in enumerate(members):
            torch.testing.assert_close(feats[i], member.features(xs[i]), atol=1e-5, rtol=1e-5)


def test_resnet_learns_a_fixed_batch() -> None:
    torch.manual_seed(0)
    model = build_model("resnet", input_shape=(8, 8), num_classes=4, options={"width": 8})
    x, y = torch.randn(32, 8, 8), torch.arange(32) % 4
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    first = None
    for _ in range(30):
        loss = F.cross_entropy(model(x), y)
        first = float(loss.detach()) if first is None else first
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert float(loss.detach()) < 0.2 * first


def test_resnet_options_parse_from_a_study_file() -> None:
    from smoothflip.study.spec import loads_study

    study = textwrap.dedent(
        """
        name = "r"
        [data]
        source = "digits"
        [model]
        name = "resnet"
        {extra}
        [[arms]]
        name = "ce"
        loss = "ce"
        [[conditions]]
        noise = "symmetric"
        rates = [0.0]
        """
    )
    assert dict(loads_study(study.format(extra="")).model.options) == {"depth": 8, "width": 16}
    spec = loads_study(study.format(extra="depth = 20\nwidth = 8"))
    assert (spec.model.name, dict(spec.model.options)) == ("resnet", {"depth": 20, "width": 8})
    model = build_model(spec.model.name, input_shape=(8, 8), num_classes=K, options=spec.model.options)
    assert count_parameters(model) == _resnet_parameters(3, 8, 1, K)


# --------------------------------------------------------------------------------------------------
# slow: the MNIST-1D budget (benchmarks/model_budget.py found it)
# --------------------------------------------------------------------------------------------------

# Adam, batch 100, cosine-annealed lr (per step, to 0), weight decay 0
BUDGET_EPOCHS = 75
BUDGET_LR = 2e-2


@pytest.mark.slow
def test_cnn1d_reaches_90_percent_on_mnist1d_at_the_budget() -> None:
    from mnist1d.data import get_dataset_args, make_dataset

    raw = make_dataset(get_dataset_args())
    x = torch.tensor(raw["x"], dtype=torch.float32)
    y = torch.tensor(raw["y"], dtype=torch.long)
    perm = torch.from_numpy(np.random.default_rng(0).permutation(len(y)))
    train = perm[len(y) // 10 :]  # 10% held out as validation, as a study does
    x_train, y_train = x[train], y[train]
    x_test = torch.tensor(raw["x_test"], dtype=torch.float32)
    y_test = torch.tensor(raw["y_test"], dtype=torch.long)
    assert len(y_train) == 3600

    threads = torch.get_num_threads()
    torch.set_num_threads(min(threads, 2))
    torch.manual_seed(0)
    model = build_model("cnn1d", input_shape=(40,), num_classes=10)
    opt = torch.optim.Adam(model.parameters(), lr=BUDGET_LR)
    steps = BUDGET_EPOCHS * math.ceil(len(y_train) / 100)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=steps)
    gen = torch.Generator().manual_seed(0)
    try:
        for _ in range(BUDGET_EPOCHS):
            order = torch.randperm(len(y_train), generator=gen)
            for i in range(0, len(y_train), 100):
                idx = order[i : i + 100]
                loss = F.cross_entropy(model(x_train[idx]), y_train[idx])
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                sched.step()
    finally:
        torch.set_num_threads(threads)
    with torch.no_grad():
        acc = float((model(x_test).argmax(1) == y_test).float().mean())
    assert acc >= 0.90, acc
