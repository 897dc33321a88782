"""Tests of the BDH model against a naive, independent re-implementation of the published math."""

import math

import pytest
import torch
import torch.nn.functional as F

from bdh_pl.models.bdh import (
    BDH,
    Attention,
    BDHConfig,
    GateDecode,
    SparseRope,
    attention_chunked,
    attention_quadratic,
    dropout_bits,
    dropout_keep,
    rotate,
    to_halves,
)


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    # tiny tensors: threads only add sync cost, and on a shared 2-core machine a stalled
    # second thread can make each small op take milliseconds
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


TINY = dict(n_layer=2, n_embd=32, n_head=2, mlp_internal_dim_multiplier=4, vocab_size=64)


def tiny(**kw) -> BDHConfig:
    return BDHConfig(**{**TINY, "dropout": 0.0, **kw})


def make_model(seed: int = 0, **kw) -> BDH:
    torch.manual_seed(seed)
    return BDH(tiny(**kw)).eval()


# ---------------------------------------------------------------- naive reference (official math)


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


def naive_forward(sd: dict, cfg: BDHConfig, idx: torch.Tensor) -> torch.Tensor:
    """Official BDH-GPU forward, one sequence and one head at a time, in float64."""
    nh, D, N = cfg.n_head, cfg.n_embd, cfg.n_neurons
    sd = {k: v.double() for k, v in sd.items()}
    freqs = sd["attn.freqs"].view(N)

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
    return torch.stack(out).float()


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


# ---------------------------------------------------------------- structure and config


def test_default_param_count():
    with torch.device("meta"):
        model = BDH(BDHConfig())
    assert sum(p.numel() for p in model.parameters()) == 25_296_896


def test_state_dict_has_official_names_and_shapes():
    with torch.device("meta"):
        model = BDH(BDHConfig())
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
    ],
)
def test_config_validation(kw):
    with pytest.raises(ValueError):
        BDHConfig(**kw)


# ---------------------------------------------------------------- numerics


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


def test_rotate_matches_official_rope_at_large_positions():
    N = 64
    freqs = naive_freqs(N)
    model = make_model()
    pos = torch.tensor([0.0, 1.0, 777.0, 123_456.0, 3_000_000.0])
    q = torch.randn(len(pos), N)
    expected = torch.stack([naive_rope(q[i], int(t), freqs) for i, t in enumerate(pos)])
    got = rotate(q, model.attn.rotation(pos))
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("attention", ["quadratic", "chunked"])
def test_forward_matches_naive_reference_with_official_state_dict(attention):
    cfg = tiny(attention=attention, chunk_size=8)
    sd = official_state_dict(cfg)
    model = BDH(cfg).eval()
    model.load_state_dict(sd, strict=True)
    idx = torch.randint(0, cfg.vocab_size, (2, 21), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        logits = model(idx)
    assert logits.shape == (2, 21, cfg.vocab_size) and logits.dtype == torch.float32
    torch.testing.assert_close(logits, naive_forward(sd, cfg, idx), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("attention", ["quadratic", "chunked"])
def test_grads_match_naive_reference(attention):
    cfg = tiny(attention=attention, chunk_size=8)
    sd = official_state_dict(cfg)
    model = BDH(cfg).train()  # dropout 0: train mode only switches the code paths
    model.load_state_dict(sd, strict=True)
    idx = torch.randint(0, cfg.vocab_size, (2, 13), generator=torch.Generator().manual_seed(2))
    weight = torch.randn(2, 13, cfg.vocab_size, generator=torch.Generator().manual_seed(3))
    (model(idx) * weight).sum().backward()
    ref = {k: v.double().requires_grad_(k != "attn.freqs") for k, v in sd.items()}
    (naive_forward(ref, cfg, idx) * weight).sum().backward()
    for name, p in model.named_parameters():
        torch.testing.assert_close(p.grad, ref[name].grad.float(), atol=1e-5, rtol=1e-4, msg=name)


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
    rot = model.attn.rotation(torch.arange(5.0)).to(torch.complex128)
    assert torch.autograd.gradcheck(lambda x: SparseRope.apply(x, rot, False), (x,), fast_mode=True)
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


def test_dropout_in_train_mode_only_and_seeded():
    model = make_model(dropout=0.2)
    idx = torch.randint(0, 64, (2, 16))
    with torch.no_grad():
        ref = model(idx)  # eval
        reference_p0 = make_model(dropout=0.0)(idx)
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


def test_compiled_kernels_match_eager():
    """compile_elementwise (torch.compile, neurons in halves order) == the eager path."""
    idx = torch.randint(0, 64, (2, 24))
    results = []
    for compiled in (False, True):
        model = make_model(compile_elementwise=compiled).train()
        logits = model(idx)
        logits.square().mean().backward()
        results.append((logits, {n: p.grad for n, p in model.named_parameters()}))
    (l_e, g_e), (l_c, g_c) = results
    torch.testing.assert_close(l_c, l_e, atol=1e-5, rtol=1e-5)
    for name in g_e:
        torch.testing.assert_close(g_c[name], g_e[name], atol=1e-6, rtol=1e-4, msg=name)
    # the compiled dropout gate against the eager one, same mask
    y = torch.randn(2, 48, 64, requires_grad=True)
    xs = torch.randn(2, 48, 64).relu().requires_grad_()
    dec = torch.randn(2, 64, 8, requires_grad=True)
    keep = dropout_keep(dropout_bits((2, 48, 64), torch.device("cpu")), 0.25)
    outs = []
    for compiled in (False, True):
        out = GateDecode.apply(y, xs, keep, dec, 0.25, compiled)
        outs.append((out, *torch.autograd.grad(out.square().sum(), (y, xs, dec))))
    for e, c in zip(*outs, strict=True):
        torch.testing.assert_close(c, e, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("attention", ["quadratic", "chunked"])
def test_causality(attention):
    model = make_model(attention=attention, chunk_size=4)
    idx = torch.randint(0, 64, (2, 24))
    with torch.no_grad():
        ref = model(idx)
        for t in (0, 5, 11, 22):
            changed = idx.clone()
            changed[:, t + 1 :] = (changed[:, t + 1 :] + 1) % 64
            got = model(changed)
            torch.testing.assert_close(got[:, : t + 1], ref[:, : t + 1], atol=1e-6, rtol=0)
    assert not torch.allclose(got[:, -1], ref[:, -1])


def test_chunked_equals_quadratic_values_and_grads():
    torch.manual_seed(0)
    idx = torch.randint(0, 64, (2, 45))
    results = []
    for attention in ("quadratic", "chunked"):
        model = make_model(attention=attention, chunk_size=8).train()
        logits = model(idx)
        logits.square().mean().backward()
        results.append((logits, {n: p.grad for n, p in model.named_parameters()}))
    (l_q, g_q), (l_c, g_c) = results
    torch.testing.assert_close(l_c, l_q, atol=1e-5, rtol=1e-5)
    for name in g_q:
        torch.testing.assert_close(g_c[name], g_q[name], atol=1e-5, rtol=1e-4, msg=name)


def test_auto_attention_picks_by_length(monkeypatch):
    import bdh_pl.models.bdh as bdh_module

    model = make_model(attention="auto", chunk_size=4)
    calls = []
    orig = bdh_module.attention_chunked
    monkeypatch.setattr(bdh_module, "attention_chunked", lambda *a: calls.append(1) or orig(*a))
    threshold = model.attn.chunked_from(torch.float32)
    assert threshold < model.attn.chunked_from(torch.bfloat16)
    with torch.no_grad():
        model(torch.zeros(1, threshold - 1, dtype=torch.long))
        assert not calls
        model(torch.zeros(1, threshold, dtype=torch.long))
        assert calls
    # the default config keeps the quadratic form at the usual block sizes
    assert Attention(BDHConfig()).chunked_from(torch.bfloat16) > 1024


def test_plus_transpose_blocked_path():
    from bdh_pl.models.bdh import _plus_transpose

    g = torch.randn(3, 1024, 1024)
    assert torch.equal(_plus_transpose(g), g + g.mT)


def test_activation_checkpointing_grads_equal_plain():
    idx = torch.randint(0, 64, (2, 19))
    grads = []
    for ckpt in (False, True):
        model = make_model(dropout=0.1, activation_checkpointing=ckpt).train()
        torch.manual_seed(123)  # same dropout masks: checkpoint replays the RNG state
        model(idx).square().mean().backward()
        grads.append({n: p.grad.clone() for n, p in model.named_parameters()})
    for name in grads[0]:
        torch.testing.assert_close(grads[1][name], grads[0][name], atol=1e-6, rtol=1e-5)


def test_sparsity_dict():
    model = make_model()
    stats: dict = {}
    logits = model(torch.randint(0, 64, (2, 9)), sparsity=stats)
    assert set(stats) == {f"{k}_l{i}" for k in "xy" for i in range(2)}
    for v in stats.values():
        assert v.ndim == 0 and not v.requires_grad and 0.0 <= v.item() <= 1.0
    # ReLU of roughly symmetric pre-activations: about half the neurons fire at init
    assert 0.2 < stats["x_l0"].item() < 0.8
    assert logits.requires_grad


def test_bf16_autocast_close_to_fp32():
    model = make_model()
    idx = torch.randint(0, 64, (2, 33))
    with torch.no_grad():
        ref = model(idx)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            got = model(idx)
    assert model.attn.freqs.dtype == torch.float32
    torch.testing.assert_close(got.float(), ref, atol=0.05, rtol=0.05)
    # a bf16 model keeps the RoPE frequencies exact
    assert torch.equal(model.to(torch.bfloat16).attn.freqs, naive_freqs(64).view(1, 1, 1, 64))


# ---------------------------------------------------------------- recurrent inference


def test_recurrent_step_matches_parallel_forward():
    model = make_model(attention="quadratic")
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


def test_prefill_chunked_state_matches_quadratic():
    idx = torch.randint(0, 64, (1, 40))
    outs = []
    for attention in ("quadratic", "chunked"):
        model = make_model(attention=attention, chunk_size=16)
        outs.append(model.prefill(idx))
    (l_q, s_q), (l_c, s_c) = outs
    torch.testing.assert_close(l_c, l_q, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(s_c.kv, s_q.kv, atol=1e-5, rtol=1e-5)
    assert s_c.pos == s_q.pos == 40


def test_greedy_generate_equals_naive_rerun():
    model = make_model()
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
