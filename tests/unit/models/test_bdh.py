"""Tests of BDH: the plain model (model.py) against a naive loop over the published equations,
and each fast-path switch (kernels.py) against the plain model, values and gradients."""

import dataclasses
import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from bdh_pl.models.bdh import BDH, Attention, BDHConfig, BDHExecution, linear_attention
from bdh_pl.models.bdh.kernels import (
    GateDecode,
    SparseRope,
    dropout_bits,
    dropout_keep,
    rotate,
    rotation,
    to_halves,
)
from bdh_pl.models.bdh.linear_attention import (
    _plus_transpose,
    attention_chunked,
    attention_quadratic,
    chunked_from,
)
from bdh_pl.training.loading import load_model


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    # tiny tensors: threads only add sync cost, and on a shared 2-core machine a stalled
    # second thread can make each small op take milliseconds
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


TINY = dict(n_layer=2, n_embd=32, n_head=2, mlp_internal_dim_multiplier=4, vocab_size=64)
PLAIN = dict(fused=False)
# every execution switch, each to be equal to PLAIN
SWITCHES = {
    "fused quadratic": dict(attention="quadratic"),
    "fused chunked": dict(attention="chunked", chunk_size=8),
    "fused auto": dict(attention="auto", chunk_size=4),  # chunked from 38 positions
    "plain checkpointed": dict(fused=False, activation_checkpointing=True),
    "fused checkpointed": dict(activation_checkpointing=True, chunk_size=8),
}  # compile_elementwise: tests/integration/models/test_bdh.py (a compile takes seconds)


def tiny(**kw) -> BDHConfig:
    return BDHConfig(**{**TINY, "dropout": 0.0, **kw})


def bdh(**kw) -> BDH:
    """A BDH from architecture fields (BDHConfig's) and execution switches (BDHExecution's)."""
    fields = {f.name for f in dataclasses.fields(BDHConfig)}
    execution = BDHExecution(**{k: v for k, v in kw.items() if k not in fields})
    return execution.apply(BDH(BDHConfig(**{k: v for k, v in kw.items() if k in fields})))


def make_model(seed: int = 0, **kw) -> BDH:
    torch.manual_seed(seed)
    return bdh(**{**TINY, "dropout": 0.0, **kw}).eval()


# ---------------------------------------------------------------- naive loop (official equations)


def naive_freqs(n: int) -> torch.Tensor:
    i = torch.arange(n, dtype=torch.float32)
    return 1.0 / ((2**16) ** ((i / 2).floor() * 2 / n)) / (2 * math.pi)


def naive_rope(v: torch.Tensor, t: int, freqs: torch.Tensor) -> torch.Tensor:
    """Rotate the interleaved pairs of one position's vector v (N,), the official way."""
    phases = (torch.tensor(float(t)) * freqs % 1) * (2 * math.pi)
    v_rot = torch.stack((-v[1::2], v[::2]), dim=-1).view(-1)
    return v * phases.cos() + v_rot * phases.sin()


def naive_attention(q: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """q: T, N; v: T, D. out_t = sum_{s<t} (q_t . q_s) v_s, one position at a time."""
    out = torch.zeros(q.size(0), v.size(1), dtype=torch.float64)
    for t in range(q.size(0)):
        for s in range(t):
            out[t] += (q[t].double() @ q[s].double()) * v[s].double()
    return out


def naive_bdh(sd: dict, cfg: BDHConfig, idx: torch.Tensor) -> torch.Tensor:
    """BDH-GPU logits, one sequence, head and position at a time, in the dtype of sd."""
    nh, D, N = cfg.n_head, cfg.n_embd, cfg.n_neurons
    freqs = sd["attn.freqs"].view(N).float()

    def ln(z):
        return F.layer_norm(z, (D,))

    out = []
    for seq in idx:
        T = seq.numel()
        x = ln(sd["embed.weight"][seq])  # T, D
        for _ in range(cfg.n_layer):
            xy_heads = []
            for h in range(nh):
                x_sparse = F.relu(x @ sd["encoder"][h])  # T, N
                q = torch.stack([naive_rope(x_sparse[t], t, freqs) for t in range(T)])
                a = ln(naive_attention(q, x))  # T, D
                y_sparse = F.relu(a @ sd["encoder_v"][h])  # T, N
                xy_heads.append(x_sparse * y_sparse)
            xy = torch.cat(xy_heads, dim=-1)  # T, nh*N in the official (head-major) order
            x = ln(x + ln(xy @ sd["decoder"]))
        out.append(x @ sd["lm_head"])
    return torch.stack(out)


def official_state_dict(cfg: BDHConfig, seed: int = 0) -> dict:
    """A state dict with the official names and shapes, built by hand."""
    g = torch.Generator().manual_seed(seed)
    nh, D, N, V = cfg.n_head, cfg.n_embd, cfg.n_neurons, cfg.vocab_size

    def randn(*shape, std=0.1):
        return torch.randn(*shape, generator=g) * std

    return {
        "decoder": randn(nh * N, D),
        "encoder": randn(nh, D, N),
        "attn.freqs": naive_freqs(N).view(1, 1, 1, N),
        "embed.weight": randn(V, D, std=1.0),
        "encoder_v": randn(nh, D, N),
        "lm_head": randn(D, V),
    }


def logits_and_grads(switches: dict, idx: torch.Tensor, seed: int = 3):
    """Logits of a train-mode model with official_state_dict weights, and the weights' grads."""
    model = make_model(**switches).train()  # dropout 0: train mode only switches the code paths
    weights = official_state_dict(model.config)
    if model.config.attn_decay == "learned":  # rates off ALiBi's, as after some training
        weights["attn.decay_rate"] = torch.tensor([-1.0, -4.0])
    model.load_state_dict(weights, strict=True)
    logits = model(idx)
    g = torch.Generator().manual_seed(seed)
    (logits * torch.randn(logits.shape, generator=g)).sum().backward()
    return logits, {n: p.grad for n, p in model.named_parameters()}


# ---------------------------------------------------------------- structure and config


@pytest.mark.parametrize("fused", [True, False])
def test_default_param_count(fused):
    with torch.device("meta"):
        model = bdh(fused=fused)
    assert sum(p.numel() for p in model.parameters()) == 25_296_896


@pytest.mark.parametrize("fused", [True, False])
def test_state_dict_has_official_names_and_shapes(fused):
    with torch.device("meta"):
        model = bdh(fused=fused)
    expected = {
        "decoder": (4 * 8192, 256),
        "encoder": (4, 256, 8192),
        "attn.freqs": (1, 1, 1, 8192),
        "embed.weight": (256, 256),
        "encoder_v": (4, 256, 8192),
        "lm_head": (256, 256),
    }
    assert {k: tuple(v.shape) for k, v in model.state_dict().items()} == expected


def test_freqs_buffer_matches_official_formula():
    model = make_model()
    assert model.attn.freqs.dtype == torch.float32
    assert torch.equal(model.attn.freqs.view(-1), naive_freqs(tiny().n_neurons))


@pytest.mark.parametrize(
    "kw",
    [
        dict(n_embd=30, n_head=4),
        dict(dropout=1.0),
        dict(dropout=-0.1),
        dict(n_layer=0),
        dict(n_head=-1),
        dict(vocab_size=0),
        dict(chunk_size=0),
        dict(attention="flash"),
        dict(n_embd=6, n_head=2, mlp_internal_dim_multiplier=1),  # odd N: RoPE needs pairs
        dict(fused=False, attention="chunked"),  # the fast paths need the fused layer
        dict(fused=False, compile_elementwise=True),
        dict(attn_decay="rope"),
    ],
)
def test_config_validation(kw):
    with pytest.raises(ValueError):
        bdh(**kw)


def test_the_config_is_the_architecture_and_the_reference_knows_no_fast_path():
    """BDHConfig holds what a checkpoint describes; a bare BDH runs model.py's own layer."""
    assert [f.name for f in dataclasses.fields(BDHConfig)] == [
        "n_layer", "n_embd", "dropout", "n_head", "mlp_internal_dim_multiplier", "vocab_size",
        "attn_decay", "block_size",
    ]  # fmt: skip
    assert BDH(tiny()).layer_runner.__module__ == "bdh_pl.models.bdh.model"
    assert make_model().layer_runner == BDHExecution()  # fused, applied from outside


# ---------------------------------------------------------------- the plain model: the reference


def test_plain_model_matches_naive_loop_values_and_grads():
    cfg = tiny()
    sd = official_state_dict(cfg)
    idx = torch.randint(0, cfg.vocab_size, (2, 13), generator=torch.Generator().manual_seed(2))
    logits, grads = logits_and_grads(PLAIN, idx)
    assert logits.shape == (2, 13, cfg.vocab_size) and logits.dtype == torch.float32
    ref = {k: v.double().requires_grad_(k != "attn.freqs") for k, v in sd.items()}
    expected = naive_bdh(ref, cfg, idx)
    torch.testing.assert_close(logits, expected.float(), atol=1e-5, rtol=1e-5)
    weight = torch.randn(logits.shape, generator=torch.Generator().manual_seed(3))
    (expected * weight).sum().backward()
    for name, grad in grads.items():
        torch.testing.assert_close(grad, ref[name].grad.float(), atol=1e-5, rtol=1e-4, msg=name)


@pytest.mark.parametrize("fused", [True, False])
def test_rope_matches_official_rope_at_large_positions(fused):
    N = 64
    model = make_model(fused=fused)
    pos = [0, 1, 777, 123_456, 3_000_000]
    q = torch.randn(len(pos), N)
    expected = torch.stack([naive_rope(q[i], t, naive_freqs(N)) for i, t in enumerate(pos)])
    phases = torch.cat([model.attn.phases(t, 1) for t in pos])  # T, N
    plain = model.attn.rope(q, phases.cos(), phases.sin())
    torch.testing.assert_close(plain, expected, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(rotate(q, rotation(phases, False)), expected, atol=1e-5, rtol=1e-5)
    halves = rotate(to_halves(q, -1), rotation(phases, True))
    torch.testing.assert_close(halves, to_halves(expected, -1), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("T", [1, 7, 16, 37])
def test_attention_matches_naive_loop(T):
    torch.manual_seed(T)
    nh, B, N, D = 2, 2, 16, 8
    q, v = torch.randn(nh, B, T, N), torch.randn(B, T, D)
    expected = torch.stack(
        [torch.stack([naive_attention(q[h, b], v[b]) for b in range(B)]) for h in range(nh)]
    ).float()
    torch.testing.assert_close(attention_quadratic(q, v), expected, atol=1e-5, rtol=1e-5)
    for chunk in (1, 5, 16, 64):
        torch.testing.assert_close(attention_chunked(q, v, chunk), expected, atol=1e-5, rtol=1e-5)


# ---------------------------------------------------------------- each switch == the plain model


@pytest.mark.parametrize("switch", list(SWITCHES))
def test_switch_matches_plain_model_values_and_grads(switch):
    """Includes chunked == quadratic (T = 45: a padded last chunk)."""
    idx = torch.randint(0, 64, (2, 45), generator=torch.Generator().manual_seed(1))
    ref_logits, ref_grads = logits_and_grads(PLAIN, idx)
    logits, grads = logits_and_grads(SWITCHES[switch], idx)
    torch.testing.assert_close(logits, ref_logits, atol=1e-5, rtol=1e-5)
    for name, grad in grads.items():
        torch.testing.assert_close(grad, ref_grads[name], atol=1e-5, rtol=1e-4, msg=name)


def test_attention_functions_gradcheck():
    torch.manual_seed(0)
    q = torch.randn(2, 2, 7, 4, dtype=torch.float64, requires_grad=True)
    v = torch.randn(2, 7, 3, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(attention_quadratic, (q, v), fast_mode=True)
    for chunk in (1, 3, 8):
        f = lambda q, v, c=chunk: attention_chunked(q, v, c)  # noqa: E731
        assert torch.autograd.gradcheck(f, (q, v), fast_mode=True)


def test_sparse_rope_and_gate_gradcheck():
    torch.manual_seed(0)
    model = make_model()
    x = torch.randn(2, 1, 5, 64, dtype=torch.float64, requires_grad=True)
    phases = model.attn.phases(0, 5).double()
    for halves in (False, True):
        rot = rotation(phases, halves)
        f = lambda x, rot=rot: SparseRope.apply(x, rot, False)  # noqa: E731
        assert torch.autograd.gradcheck(f, (x,), fast_mode=True)
    y = torch.randn(2, 5, 64, dtype=torch.float64, requires_grad=True)
    xs = torch.randn(2, 5, 64, dtype=torch.float64).relu().requires_grad_()
    dec = torch.randn(2, 64, 3, dtype=torch.float64, requires_grad=True)
    keep = dropout_keep(dropout_bits((2, 5, 64), torch.device("cpu")), 0.3)
    for k in (None, keep):
        f = lambda y, xs, dec, k=k: GateDecode.apply(y, xs, k, dec, 0.3, False)  # noqa: E731
        assert torch.autograd.gradcheck(f, (y, xs, dec), fast_mode=True)
    # dropped entries are zero, kept ones scaled by 1 / (1 - p)
    out = GateDecode.apply(y, xs, keep, dec, 0.3, False)
    xy = torch.where(keep, y.relu() * xs / 0.7, 0.0)
    torch.testing.assert_close(out, (xy @ dec).sum(0))


@pytest.mark.parametrize("p", [0.1, 0.5])
def test_dropout_bits_rate(p):
    torch.manual_seed(0)
    keep = dropout_keep(dropout_bits((1000, 1000), torch.device("cpu")), p)
    assert keep.dtype == torch.bool
    assert abs(1 - keep.float().mean().item() - p) < 3e-3
    # independent across the four 16-bit words of each 64-bit draw
    per_word = keep.view(-1, 4).float().mean(0)
    assert (per_word - (1 - p)).abs().max() < 5e-3


@pytest.mark.parametrize("fused", [True, False])
def test_dropout_in_train_mode_only_and_seeded(fused):
    model = make_model(dropout=0.2, fused=fused)
    idx = torch.randint(0, 64, (2, 16))
    with torch.no_grad():
        ref = model(idx)  # eval
        reference_p0 = make_model(dropout=0.0, fused=fused)(idx)
        model.train()
        torch.manual_seed(1)
        a = model(idx)
        torch.manual_seed(1)
        b = model(idx)
        c = model(idx)
    torch.testing.assert_close(ref, reference_p0)
    assert torch.equal(a, b) and not torch.allclose(a, c) and not torch.allclose(a, ref)


def test_to_halves_is_a_permutation_of_the_neurons():
    w = torch.randn(3, 5, 8)
    perm = torch.tensor([0, 2, 4, 6, 1, 3, 5, 7])
    assert torch.equal(to_halves(w, -1), w[..., perm])
    assert torch.equal(to_halves(w.transpose(1, 2), 1), w.transpose(1, 2)[:, perm])
    assert to_halves(w, -1, torch.bfloat16).dtype == torch.bfloat16


@pytest.mark.parametrize("kw", [PLAIN, dict(attention="quadratic"), dict(attention="chunked")])
def test_causality(kw):
    model = make_model(**kw, chunk_size=4)
    idx = torch.randint(0, 64, (2, 24))
    with torch.no_grad():
        ref = model(idx)
        for t in (0, 5, 11, 22):
            changed = idx.clone()
            changed[:, t + 1 :] = (changed[:, t + 1 :] + 1) % 64
            got = model(changed)
            torch.testing.assert_close(got[:, : t + 1], ref[:, : t + 1], atol=1e-6, rtol=0)
    assert not torch.allclose(got[:, -1], ref[:, -1])


def test_auto_attention_picks_by_length(monkeypatch):
    model = make_model(attention="auto", chunk_size=4)
    calls = []
    orig = linear_attention.attention_chunked
    monkeypatch.setattr(
        linear_attention, "attention_chunked", lambda *a: calls.append(1) or orig(*a)
    )
    N, D = model.config.n_neurons, model.config.n_embd
    threshold = chunked_from(N, D, 4, torch.float32)
    assert threshold < chunked_from(N, D, 4, torch.bfloat16)
    with torch.no_grad():
        model(torch.zeros(1, threshold - 1, dtype=torch.long))
        assert not calls
        model(torch.zeros(1, threshold, dtype=torch.long))
        assert calls
    # the default config keeps the quadratic form at the usual block sizes
    default = BDHConfig()
    assert chunked_from(default.n_neurons, default.n_embd, 256, torch.bfloat16) > 1024


def test_plus_transpose_blocked_path():
    g = torch.randn(3, 1024, 1024)
    assert torch.equal(_plus_transpose(g), g + g.mT)


@pytest.mark.parametrize("fused", [True, False])
def test_activation_checkpointing_grads_equal_plain(fused):
    idx = torch.randint(0, 64, (2, 19))
    grads = []
    for ckpt in (False, True):
        model = make_model(dropout=0.1, activation_checkpointing=ckpt, fused=fused).train()
        torch.manual_seed(123)  # same dropout masks: checkpoint replays the RNG state
        model(idx).square().mean().backward()
        grads.append({n: p.grad.clone() for n, p in model.named_parameters()})
    for name in grads[0]:
        torch.testing.assert_close(grads[1][name], grads[0][name], atol=1e-6, rtol=1e-5)


def test_sparsity_dict():
    idx = torch.randint(0, 64, (2, 9))
    per_model = []
    for fused in (True, False):
        stats: dict = {}
        logits = make_model(fused=fused)(idx, sparsity=stats)
        assert set(stats) == {f"{k}_l{i}" for k in "xy" for i in range(2)}
        for v in stats.values():
            assert v.ndim == 0 and not v.requires_grad and 0.0 <= v.item() <= 1.0
        # ReLU of roughly symmetric pre-activations: about half the neurons fire at init
        assert 0.2 < stats["x_l0"].item() < 0.8
        assert logits.requires_grad
        per_model.append(stats)
    for key, value in per_model[0].items():
        torch.testing.assert_close(value, per_model[1][key], msg=key)


@pytest.mark.parametrize("fused", [True, False])
def test_bf16_autocast_close_to_fp32(fused):
    model = make_model(fused=fused)
    idx = torch.randint(0, 64, (2, 33))
    with torch.no_grad():
        ref = model(idx)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            got = model(idx)
    assert model.attn.freqs.dtype == torch.float32
    torch.testing.assert_close(got.float(), ref, atol=0.05, rtol=0.05)
    # a bf16 model (.to casts every float buffer) keeps the RoPE frequencies exact: fp32 phases
    phases = model.attn.phases(0, 4096)
    model.to(torch.bfloat16)
    assert torch.equal(model.attn.phases(0, 4096), phases)
    with torch.no_grad():
        assert model(idx).isfinite().all()


# ---------------------------------------------------------------- recurrent inference


@pytest.mark.parametrize("fused", [True, False])
def test_recurrent_step_matches_parallel_forward(fused):
    model = make_model(attention="quadratic", fused=fused)
    T, prompt = 530, 10
    idx = torch.randint(0, 64, (2, T))
    with torch.no_grad():
        full = model(idx)  # B, T, V
        logits, state = model.prefill(idx[:, :prompt])
        stepped = [logits]
        for t in range(prompt, T - 1):
            logits, state = model.step(idx[:, t], state)
            stepped.append(logits)
    assert state.pos == T - 1
    torch.testing.assert_close(
        torch.stack(stepped, 1), full[:, prompt - 1 : T - 1], atol=1e-5, rtol=0
    )


def test_prefill_state_equal_across_switches():
    idx = torch.randint(0, 64, (1, 40))
    l_p, s_p = make_model(**PLAIN).prefill(idx)
    for attention in ("quadratic", "chunked"):
        logits, state = make_model(attention=attention, chunk_size=16).prefill(idx)
        torch.testing.assert_close(logits, l_p, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(state.kv, s_p.kv, atol=1e-5, rtol=1e-5)
        assert state.pos == s_p.pos == 40


@pytest.mark.parametrize("fused", [True, False])
def test_greedy_generate_equals_naive_rerun(fused):
    model = make_model(fused=fused)
    idx = torch.randint(0, 64, (2, 5))
    out = model.generate(idx, max_new_tokens=30, top_k=1)
    expected = idx
    with torch.no_grad():
        for _ in range(30):
            nxt = model(expected)[:, -1].argmax(-1, keepdim=True)
            expected = torch.cat((expected, nxt), dim=1)
    assert torch.equal(out, expected)


def test_generate_sampling_shapes_and_seeded_determinism():
    model = make_model()
    idx = torch.randint(0, 64, (3, 4))
    torch.manual_seed(7)
    a = model.generate(idx, max_new_tokens=12, temperature=0.8, top_k=5)
    torch.manual_seed(7)
    b = model.generate(idx, max_new_tokens=12, temperature=0.8, top_k=5)
    assert a.shape == (3, 16) and torch.equal(a, b) and torch.equal(a[:, :4], idx)
    assert torch.equal(model.generate(idx, max_new_tokens=0), idx)


# ---------------------------------------------------------------- today's BDH, bit for bit

# A checkpoint of bdh-pl 0.1.0 (tests/unit/training/test_legacy_checkpoint.py) and what the code of
# before the damped attention (commit 45ef88e) computed from it, written by
#   OMP_NUM_THREADS=1 python -c "import sys; sys.path[:0] = ['tests', 'tests/unit/models'];
#   import test_bdh; test_bdh.write_legacy_outputs()"
LEGACY = Path(__file__).resolve().parents[2] / "fixtures" / "bdh-tiny-v0.1.0.ckpt"
LEGACY_OUTPUTS = LEGACY.with_name("bdh-tiny-v0.1.0-outputs.pt")


def legacy_outputs() -> dict[str, torch.Tensor]:
    """Logits of the legacy checkpoint in each form: parallel, stream of windows, generation."""
    network = load_model(LEGACY).model.network
    idx = torch.tensor([list(b"It reads an article, byte by byte.")])
    forms = {
        "plain": BDHExecution(fused=False),
        "quadratic": BDHExecution(attention="quadratic"),
        "chunked": BDHExecution(attention="chunked", chunk_size=16),
    }
    out = {}
    with torch.no_grad():
        for name, execution in forms.items():
            execution.apply(network)
            out[name] = network(idx)
            state = network.init_state(1)
            windows = [network.forward_state(w, state) for w in idx.split(16, dim=1)]
            out[f"{name} stream"], out[f"{name} state"] = torch.cat(windows, 1), state.kv
            out[f"{name} generate"] = network.generate(idx[:, :8], 24, top_k=1)
    return out


def write_legacy_outputs() -> None:
    torch.set_num_threads(1)
    torch.save(legacy_outputs(), LEGACY_OUTPUTS)


def test_an_old_checkpoint_loads_undamped_and_computes_what_it_did_bit_for_bit():
    loaded = load_model(LEGACY)
    assert loaded.model.config.attn_decay == "none" == loaded.model.network.config.attn_decay
    assert "attn.decay_rate" not in loaded.model.network.state_dict()
    outputs = legacy_outputs()
    expected = torch.load(LEGACY_OUTPUTS, weights_only=True)
    assert outputs.keys() == expected.keys()
    for name, value in outputs.items():
        if torch.equal(value, expected[name]) or not value.is_floating_point():
            assert torch.equal(value, expected[name]), name
            continue
        # The file was written on a CPU without AVX-512: there the stream and state paths sum in
        # another order and differ in the last bits (4.5e-8 on 0.29 with AMX/AVX-512 here). Any
        # change to the computation (a decay, a lost term) moves them by orders of magnitude more.
        ulps = 4 * torch.finfo(value.dtype).eps * expected[name].abs().max()
        assert (value - expected[name]).abs().max() <= ulps, name


# ---------------------------------------------------------------- damped attention


def naive_damped(q: torch.Tensor, v: torch.Tensor, log_decay: torch.Tensor) -> torch.Tensor:
    """q: nh, B, T, N; v: B, T, D. out_t = sum_{s<t} gamma_h^(t-s) (q_t . q_s) v_s, one
    position pair at a time (autograd through it gives the reference gradients)."""
    nh, B, T, _ = q.shape
    rows = []
    for h in range(nh):
        for b in range(B):
            for t in range(T):
                terms = [(log_decay[h] * (t - s)).exp() * (q[h, b, t] @ q[h, b, s]) * v[b, s]
                         for s in range(t)]  # fmt: skip
                rows.append(torch.stack(terms).sum(0) if terms else v.new_zeros(v.size(-1)))
    return torch.stack(rows).view(nh, B, T, -1)


def naive_recurrent(q: torch.Tensor, v: torch.Tensor, log_decay: torch.Tensor) -> torch.Tensor:
    """The same as a decayed state read and written one token at a time: S <- gamma (S + q^T v)."""
    gamma = log_decay.exp().view(-1, 1, 1, 1)
    S = q.new_zeros(q.size(0), q.size(1), q.size(3), v.size(2))  # nh, B, N, D
    out = []
    for t in range(q.size(2)):
        out.append(q[:, :, t : t + 1] @ S)
        S = gamma * (S + q[:, :, t : t + 1].mT @ v[None, :, t : t + 1])
    return torch.cat(out, 2)


def damped_reference(q, v, log_decay):
    """model.Attention (RoPE by angle 0: the identity), heads second, its decay set to ld."""
    attn = Attention(tiny(n_head=q.size(0), attn_decay="learned"))
    attn.log_decay = lambda: log_decay
    T, N = q.size(2), q.size(3)
    cos, sin = torch.ones(T, N, dtype=q.dtype), torch.zeros(T, N, dtype=q.dtype)
    return attn(q.transpose(0, 1), v.unsqueeze(1), cos, sin).transpose(0, 1)


def in_pieces(q, v, log_decay, pieces, mode="quadratic"):
    """attention() over consecutive pieces of the positions, the state carried in kv."""
    kv = q.new_zeros(q.size(0), q.size(1), q.size(3), v.size(2))
    out, start = [], 0
    for n in pieces:
        sl = slice(start, start + n)
        out.append(linear_attention.attention(q[:, :, sl], v[:, sl], kv, mode, 4, log_decay))
        start += n
    return torch.cat(out, 2)


def test_damped_attention_equals_a_naive_loop_values_and_grads_in_every_form():
    """parallel (model.py, fused quadratic) = chunked = recurrent (pieces, single steps) =
    the naive double loop and the naive decayed state; gradients of q, v and the decay too
    (the recurrent forms carry the state detached, truncated BPTT: their values only)."""
    g = torch.Generator().manual_seed(0)
    nh, B, T, N, D = 2, 2, 11, 6, 3
    q0, v0 = torch.randn(nh, B, T, N, generator=g), torch.randn(B, T, D, generator=g)
    ld0 = torch.tensor([-0.7, -0.05])  # gamma 0.50 and 0.95
    w = torch.randn(nh, B, T, D, generator=g)

    def run(form):
        q, v, ld = (t.double().requires_grad_() for t in (q0, v0, ld0))
        out = form(q, v, ld)
        return (out.detach(), *torch.autograd.grad((out * w).sum(), (q, v, ld)))

    expected = run(naive_damped)
    forms = {
        "naive recurrent": naive_recurrent,
        "model.Attention": damped_reference,
        "quadratic": attention_quadratic,
        **{
            f"chunked {c}": lambda q, v, ld, c=c: attention_chunked(q, v, c, ld) for c in (1, 4, 32)
        },
        "pieces": lambda q, v, ld: in_pieces(q, v, ld, [4, 1, 6]),
        "pieces chunked": lambda q, v, ld: in_pieces(q, v, ld, [9, 2], "chunked"),
        "steps": lambda q, v, ld: in_pieces(q, v, ld, [1] * T),
    }
    for name, form in forms.items():
        if name.startswith(("pieces", "steps")):  # the carried state is detached: values only
            got = (form(q0.double(), v0.double(), ld0.double()),)
        else:
            got = run(form)
        for what, a, b in zip(("values", "q", "v", "decay"), got, expected, strict=False):
            torch.testing.assert_close(a, b, atol=1e-10, rtol=1e-10, msg=f"{name} {what}")
    assert torch.autograd.gradcheck(
        lambda q, v, ld: attention_quadratic(q, v, ld),
        tuple(t.double().requires_grad_() for t in (q0, v0, ld0)), fast_mode=True,
    )  # fmt: skip


DAMPED_SWITCHES = ["fused quadratic", "fused chunked", "fused checkpointed"]


@pytest.mark.parametrize("decay", ["alibi", "learned"])
@pytest.mark.parametrize("switch", DAMPED_SWITCHES)
def test_damped_switch_matches_plain_model_values_and_grads(switch, decay):
    idx = torch.randint(0, 64, (2, 45), generator=torch.Generator().manual_seed(1))
    ref_logits, ref_grads = logits_and_grads({**PLAIN, "attn_decay": decay}, idx)
    logits, grads = logits_and_grads({**SWITCHES[switch], "attn_decay": decay}, idx)
    torch.testing.assert_close(logits, ref_logits, atol=1e-5, rtol=1e-5)
    assert ("attn.decay_rate" in grads) == (decay == "learned")
    for name, grad in grads.items():
        torch.testing.assert_close(grad, ref_grads[name], atol=1e-5, rtol=1e-4, msg=name)
    undamped, _ = logits_and_grads(PLAIN, idx)
    assert not torch.allclose(logits, undamped, atol=1e-3)  # the decay does change the model


@pytest.mark.parametrize("fused", [True, False])
def test_damped_steps_and_windows_match_the_parallel_forward(fused):
    """Generation (one token at a time) and windows of a stream, O(1) per token, equal to
    one parallel forward: the decayed state carries exactly what the mask weighs."""
    switches = dict(attention="chunked", chunk_size=8) if fused else PLAIN
    model = make_model(**switches, attn_decay="learned")
    with torch.no_grad():
        model.attn.decay_rate.copy_(torch.tensor([-1.0, -4.0]))
        idx = torch.randint(0, 64, (2, 50), generator=torch.Generator().manual_seed(4))
        full = model(idx)
        logits, state = model.prefill(idx[:, :10])
        stepped = [logits]
        for t in range(10, 49):
            logits, state = model.step(idx[:, t], state)
            stepped.append(logits)
        windowed = model.init_state(2)
        windows = torch.cat([model.forward_state(w, windowed) for w in idx.split(16, 1)], 1)
    torch.testing.assert_close(torch.stack(stepped, 1), full[:, 9:49], atol=1e-5, rtol=0)
    torch.testing.assert_close(windows, full, atol=1e-5, rtol=0)
