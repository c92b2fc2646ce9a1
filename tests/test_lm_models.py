"""smoothflip.lm.models: shapes, causality, vmap and gradient equivalence of stacked copies, options."""

from __future__ import annotations

import copy

import pytest
import torch
from torch.func import functional_call, stack_module_state

from smoothflip.data.language import SyntheticLanguage
from smoothflip.lm import CausalLM, build_lm, causal_lm_loss, lm_options
from smoothflip.lm.models import LM_MODEL_ALIASES, LM_MODELS
from smoothflip.models import count_parameters

V = 23
CASES = [
    ("mlp", 3, None),
    ("mlp", 1, {"hidden": [], "embedding": 8}),
    ("mlp", 4, {"hidden": [16, 16], "activation": "tanh"}),
    ("attention", 4, None),
    ("attention", 16, {"embedding": 16, "heads": 4, "mlp_ratio": 2, "max_length": 32}),
    ("transformer", 3, {"embedding": 8, "heads": 2}),
    ("gru", 3, None),  # a window shorter than the sequence: one run per position
    ("gru", 1, {"dim": 4, "hidden": 8}),
    ("gru", 10, {"dim": 8, "hidden": 16}),  # the whole prefix: one run over the sequence
]
IDS = [f"{name}-c{context}-{i}" for i, (name, context, _) in enumerate(CASES)]


def _build(name: str, context: int, options: dict | None, seed: int) -> CausalLM:
    torch.manual_seed(seed)
    return build_lm(name, vocab_size=V, context=context, options=options)


def _ids(seed: int, b: int = 4, t: int = 10) -> torch.Tensor:
    return torch.randint(0, V, (b, t), generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize(("name", "context", "options"), CASES, ids=IDS)
def test_shapes_and_causality(name: str, context: int, options: dict | None) -> None:
    model = _build(name, context, options, seed=0)
    ids = _ids(1)
    logits = model(ids)
    assert logits.shape == (4, 10, V)
    assert model.features(ids).shape == (4, 10, model.feature_dim)
    assert model.vocab_size == V
    t = 5
    changed = ids.clone()
    changed[:, t] = (changed[:, t] + 1) % V
    new = model(changed)
    torch.testing.assert_close(new[:, :t], logits[:, :t])  # the past never sees the future
    assert not torch.allclose(new[:, t], logits[:, t])
    if t + context < 10:  # beyond the window, the change is invisible
        torch.testing.assert_close(new[:, t + context :], logits[:, t + context :])


def _stack(name: str, context: int, options: dict | None, copies: int = 3):
    members = [_build(name, context, options, seed=10 + s) for s in range(copies)]
    params, buffers = stack_module_state(members)
    base = copy.deepcopy(members[0]).to("meta")
    return members, params, buffers, base


@pytest.mark.parametrize(("name", "context", "options"), CASES, ids=IDS)
def test_vmap_forward_matches_each_member(name: str, context: int, options: dict | None) -> None:
    members, params, buffers, base = _stack(name, context, options)

    def fmodel(p: dict, b: dict, x: torch.Tensor) -> torch.Tensor:
        return functional_call(base, (p, b), (x,))

    xs = torch.stack([_ids(s) for s in range(3)])
    per_member = torch.vmap(fmodel, in_dims=(0, 0, 0))(params, buffers, xs)
    shared = torch.vmap(fmodel, in_dims=(0, 0, None))(params, buffers, xs[0])
    assert per_member.shape == (3, 4, 10, V)
    with torch.no_grad():
        for i, member in enumerate(members):
            torch.testing.assert_close(per_member[i], member(xs[i]), atol=1e-5, rtol=1e-5)
            torch.testing.assert_close(shared[i], member(xs[0]), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize(("name", "context", "options"), CASES, ids=IDS)
def test_gradients_through_stacked_parameters_match_each_member(
    name: str, context: int, options: dict | None
) -> None:
    members, params, buffers, base = _stack(name, context, options)
    params = {k: v.detach().requires_grad_(True) for k, v in params.items()}
    xs = torch.stack([_ids(20 + s) for s in range(3)])
    labels = xs.clone()
    labels[:, 1, 7:] = -100

    def fmodel(p: dict, b: dict, x: torch.Tensor) -> torch.Tensor:
        return functional_call(base, (p, b), (x,))

    logits = torch.vmap(fmodel, in_dims=(0, 0, 0))(params, buffers, xs)
    total = sum(causal_lm_loss(logits[i], labels[i], kind="smoothed", eps=0.1) for i in range(3))
    total.backward()
    for i, member in enumerate(members):
        causal_lm_loss(member(xs[i]), labels[i], kind="smoothed", eps=0.1).backward()
        for key, param in member.named_parameters():
            torch.testing.assert_close(params[key].grad[i], param.grad, atol=1e-5, rtol=1e-4)


def test_seeding_and_options() -> None:
    a = _build("attention", 4, None, seed=5)
    b = _build("attention", 4, None, seed=5)
    for (ka, va), (kb, vb) in zip(a.state_dict().items(), b.state_dict().items(), strict=True):
        assert ka == kb
        assert torch.equal(va, vb)
    assert lm_options("mlp") == {"embedding": 32, "hidden": [128], "activation": "relu"}
    opts = lm_options("mlp")
    opts["hidden"].append(1)
    assert lm_options("mlp")["hidden"] == [128]  # a fresh copy each time
    mlp = build_lm("mlp", vocab_size=100, context=3, options={"embedding": 8, "hidden": [16]})
    assert count_parameters(mlp) == 100 * 8 + (3 * 8 * 16 + 16) + (16 * 100 + 100)


@pytest.mark.parametrize(
    ("name", "options", "error", "match"),
    [
        ("rnn", None, ValueError, "model.name must be one of"),
        ("mlp", {"width": 3}, ValueError, "model.width: unknown option for 'mlp'; allowed: embedding"),
        ("mlp", {"hidden": 16}, TypeError, "model.hidden must be a list"),
        ("mlp", {"activation": "swish"}, ValueError, "model.activation must be one of"),
        ("attention", {"embedding": 10, "heads": 4}, ValueError, "model.heads must divide"),
        ("attention", {"max_length": 0}, ValueError, "model.max_length must be >= 1"),
        ("mlp", {"embedding": 0}, ValueError, "model.embedding must be >= 1"),
        ("transformer", {"embedding": 9, "heads": 2}, ValueError, "model.heads must divide"),
        ("gru", {"embedding": 8}, ValueError, "unknown option for 'gru'; allowed: dim, hidden"),
        ("gru", {"dim": 0}, ValueError, "model.dim must be >= 1"),
        ("gru", {"hidden": [16]}, TypeError, "model.hidden must be an integer"),
        (None, None, ValueError, "model.name must be one of 'transformer', 'gru', 'mlp'"),
    ],
)
def test_bad_options(name: str | None, options: dict | None, error: type, match: str) -> None:
    with pytest.raises(error, match=match):
        build_lm(name, vocab_size=V, context=2, options=options)


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="context must be >= 1"):
        build_lm("mlp", vocab_size=V, context=0)
    with pytest.raises(ValueError, match="vocab_size must be >= 2"):
        build_lm("mlp", vocab_size=1, context=2)
    model = build_lm("attention", vocab_size=V, context=2, options={"max_length": 8})
    with pytest.raises(ValueError, match="exceeds the model's max_length=8"):
        model(_ids(0, t=9))


@pytest.mark.parametrize("name", ["mlp", "transformer", "gru"])
def test_a_few_steps_learn_the_synthetic_language(name: str) -> None:
    lang = SyntheticLanguage(60, mean_entropy=1.0, candidates=8, seed=0)
    ids = torch.from_numpy(lang.sample(64, 24, seed=0))
    torch.manual_seed(0)
    model = build_lm(name, vocab_size=60, context=3)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    losses = []
    for _ in range(40):
        opt.zero_grad()
        loss = causal_lm_loss(model(ids), ids, kind="ce")
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.6 * losses[0]


def test_names_and_the_attention_alias() -> None:
    assert LM_MODELS == ("transformer", "gru", "mlp")
    assert dict(LM_MODEL_ALIASES) == {"attention": "transformer"}
    assert lm_options("attention") == lm_options("transformer")
    assert lm_options("gru") == {"dim": 32, "hidden": 64}
    a = _build("attention", 4, None, seed=3)
    b = _build("transformer", 4, None, seed=3)
    assert type(a.body) is type(b.body)
    for (ka, va), (kb, vb) in zip(a.state_dict().items(), b.state_dict().items(), strict=True):
        assert ka == kb
        assert torch.equal(va, vb)


@pytest.mark.parametrize(
    ("name", "context", "expected"),
    [
        ("transformer", 8, 20960 + 65 * 100),
        ("gru", 8, 18816 + 97 * 100),
        ("mlp", 3, 4096 * 3 + 128 + 161 * 100),
    ],
)
def test_default_parameter_counts(name: str, context: int, expected: int) -> None:
    assert count_parameters(build_lm(name, vocab_size=100, context=context)) == expected


def test_gru_is_torch_gru_when_it_sees_the_whole_prefix() -> None:
    model = _build("gru", 12, {"dim": 6, "hidden": 10}, seed=4)
    reference = torch.nn.GRU(6, 10, batch_first=True)
    with torch.no_grad():
        reference.weight_ih_l0.copy_(model.body.input.weight)
        reference.bias_ih_l0.copy_(model.body.input.bias)
        reference.weight_hh_l0.copy_(model.body.recurrent.weight)
        reference.bias_hh_l0.copy_(model.body.recurrent.bias)
        ids = _ids(5, t=12)
        expected, _ = reference(model.body.embed(ids))
        torch.testing.assert_close(model.features(ids), expected, atol=1e-6, rtol=1e-5)
    # initialized like nn.GRU: every weight and bias in U(-1/sqrt(H), 1/sqrt(H))
    bound = 1 / 10**0.5
    for layer in (model.body.input, model.body.recurrent):
        assert layer.weight.abs().max() <= bound
        assert layer.bias.abs().max() <= bound


def test_windowed_gru_runs_each_position_over_its_last_context_tokens() -> None:
    context, t = 3, 9
    full = _build("gru", t, {"dim": 5, "hidden": 7}, seed=6)
    windowed = _build("gru", context, {"dim": 5, "hidden": 7}, seed=6)
    ids = _ids(7, b=2, t=t)
    with torch.no_grad():
        got = windowed.features(ids)
        for pos in range(t):
            start = max(0, pos - context + 1)
            expected = full.features(ids[:, start : pos + 1])[:, -1]
            torch.testing.assert_close(got[:, pos], expected, atol=1e-6, rtol=1e-5)
