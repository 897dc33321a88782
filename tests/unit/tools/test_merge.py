"""`merge`: two BDHs of one base as one; the zero-neuron twin, the rule, incompatible models."""

from __future__ import annotations

import torch

from bdh_pl.models.bdh import BDH, BDHConfig
from bdh_pl.training.loading import load_bdh


def tiny_bdh(n_embd: int = 16) -> BDH:
    torch.manual_seed(0)
    config = BDHConfig(
        n_layer=2, n_embd=n_embd, n_head=2, mlp_internal_dim_multiplier=4, dropout=0.0
    )
    return BDH(config).eval()  # 2 heads of 32 neurons


def finetuned(base: BDH, seed: int, steps: int = 3) -> BDH:
    """A copy of base after a few AdamW steps on random bytes of its own."""
    model = BDH(base.config)
    model.load_state_dict(base.state_dict())
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    gen = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        idx = torch.randint(0, 256, (2, 17), generator=gen)
        logits = model(idx[:, :-1])
        loss = torch.nn.functional.cross_entropy(logits.flatten(0, 1), idx[:, 1:].flatten())
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model.eval()


def save(model: BDH, path) -> str:
    torch.save(model.state_dict(), path)  # plain weights, as the official code saves them
    return str(path)


def test_merging_with_a_zero_neuron_twin_gives_the_model_back(tmp_path, save_checkpoint, run_cli):
    network = save_checkpoint(tmp_path / "a.ckpt", "bdh").eval()  # the network, not trivial
    twin = BDH(network.config)
    twin.load_state_dict(network.state_dict())
    with torch.no_grad():
        for name in ("encoder", "encoder_v", "decoder"):
            getattr(twin, name).zero_()
    code, err = run_cli(
        ["merge", save(network, tmp_path / "a.pt"), save(twin, tmp_path / "z.pt"), "--n_layer",
         "2", "--out", str(tmp_path / "m")]
    )  # fmt: skip
    assert code == 0, err
    merged, config = load_bdh(tmp_path / "m")
    assert merged.config.n_head == 2 * network.config.n_head
    assert merged.config.n_neurons == network.config.n_neurons
    assert config["tokenizer"] == "byte"
    idx = torch.randint(0, 256, (3, 24), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        want, got = network(idx), merged(idx)
    assert torch.equal(want.argmax(-1), got.argmax(-1))
    torch.testing.assert_close(got, want, rtol=0, atol=1e-6)  # sums of the same terms and zeros
    with torch.no_grad():  # the recurrent form too: the state of the zero heads stays zero
        want_step = network.prefill(idx)[0]
        got_step, state = merged.prefill(idx)
    torch.testing.assert_close(got_step, want_step, rtol=0, atol=1e-6)
    assert not state.kv[:, network.config.n_head :].any()


def test_merging_two_finetuned_models_is_the_rule(tmp_path, run_cli):
    base = tiny_bdh()
    a, b = finetuned(base, seed=1), finetuned(base, seed=2)
    assert not torch.equal(a.encoder, b.encoder) and not torch.equal(a.embed.weight, b.embed.weight)
    code, err = run_cli(
        ["merge", save(a, tmp_path / "a.pt"), save(b, tmp_path / "b.pt"), "--n_layer", "2",
         "--out", str(tmp_path / "m")]
    )  # fmt: skip
    assert code == 0, err
    merged, _ = load_bdh(tmp_path / "m")
    nh, N = a.config.n_head, a.config.n_neurons
    for h in range(2 * nh):  # head h of the merged model: A's head h, then B's heads
        parent, own = (a, h) if h < nh else (b, h - nh)
        assert torch.equal(merged.encoder[h], parent.encoder[own])
        assert torch.equal(merged.encoder_v[h], parent.encoder_v[own])
        for i in range(N):  # the decoder row of neuron i of that head
            assert torch.equal(merged.decoder[h * N + i], parent.decoder[own * N + i])
    for name in ("embed.weight", "lm_head", "attn.freqs"):
        want = (a.state_dict()[name] + b.state_dict()[name]) / 2
        assert torch.equal(merged.state_dict()[name], want)
    idx = torch.randint(0, 256, (2, 16), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert torch.isfinite(merged(idx)).all()


def test_models_of_different_bases_are_refused_in_one_line(tmp_path, run_cli):
    a, b = save(tiny_bdh(), tmp_path / "a.pt"), save(tiny_bdh(n_embd=32), tmp_path / "b.pt")
    code, err = run_cli(["merge", a, b, "--n_layer", "2", "--out", str(tmp_path / "m")])
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert "cannot merge" in err and "n_embd" in err and "same base" in err
    assert not (tmp_path / "m").exists()
