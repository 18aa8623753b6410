import io

import pytest
import torch

from clipgen.models.gpt import ConditionTransformer, GPTConfig
from clipgen.train.gpt import GPTOptimConfig, make_optimizer
from clipgen.train.muon import MuonAndAdamW, is_hidden_matrix


def _model():
    torch.manual_seed(0)
    cfg = GPTConfig(vocab_size=37, block_size=16, cond_dim=12, n_prefix=3, n_layer=2, n_head=2, n_embd=32)
    return ConditionTransformer(cfg)


def _optimizer(model):
    return make_optimizer(model, GPTOptimConfig(optimizer="muon", muon_lr=0.02, lr=1e-2))


def _step(model, opt, cond, tokens):
    opt.zero_grad()
    model.loss(cond, tokens).backward()
    opt.step()


def _trained():
    """A model and its optimizer three steps in, and the batch they took them on."""
    model = _model().train()
    opt = _optimizer(model)
    batch = torch.randn(2, 12), torch.randint(0, 37, (2, 16))
    for _ in range(3):
        _step(model, opt, *batch)
    return model, opt, batch


def _resumed_next_step(model, opt, opt_state, batch):
    """The model and a copy resumed from its weights and `opt_state`, one more step each."""
    copy = _model()
    copy.load_state_dict(model.state_dict())
    resumed = _optimizer(copy)
    resumed.load_state_dict(opt_state)
    for m, o in ((model, opt), (copy, resumed)):
        _step(m, o, *batch)
    return model, copy, resumed


def _round_trip(state):
    buffer = io.BytesIO()
    torch.save(state, buffer)
    buffer.seek(0)
    return torch.load(buffer, weights_only=True)


def test_torch_muon_takes_the_blocks_matrices_and_adamw_the_rest():
    # (that it trains at all: test_gpt.py::test_a_few_steps_fit_one_sequence)
    model = _model()
    opt = _optimizer(model)
    assert isinstance(opt, MuonAndAdamW) and [g["muon"] for g in opt.param_groups] == [True, False, False]
    hidden = {id(p) for name, p in model.named_parameters() if is_hidden_matrix(name, p)}
    assert hidden and {id(p) for p in opt.muon.param_groups[0]["params"]} == hidden
    assert "tok_emb.weight" not in {name for name, p in model.named_parameters() if id(p) in hidden}
    assert sum(len(g["params"]) for g in opt.param_groups) == len(list(model.parameters()))
    # the recipe clipgen's own Muon had: Nesterov, no decay on the matrices, sqrt(max(1, rows / cols))
    muon = opt.muon.param_groups[0]
    assert muon["nesterov"] and muon["weight_decay"] == 0.0 and muon["adjust_lr_fn"] == "original"
    # the trainer sets the rate through param_groups: the two optimizers read the same dicts
    for group in opt.param_groups:
        group["lr"] = 0.5
    assert all(g["lr"] == 0.5 for inner in (opt.muon, opt.adamw) for g in inner.param_groups)


def test_resuming_continues_exactly():
    model, opt, batch = _trained()
    saved = _round_trip(opt.state_dict())
    # one state in torch's format over every group, the AdamW parameters numbered after Muon's
    keys, n_muon = sorted(saved["state"]), len(opt.muon.param_groups[0]["params"])
    assert keys[:n_muon] == list(range(n_muon)) and n_muon < len(keys) and keys[-1] < len(list(model.parameters()))
    model, copy, _ = _resumed_next_step(model, opt, saved, batch)
    for a, b in zip(model.parameters(), copy.parameters()):
        assert torch.equal(a, b)


def test_a_checkpoint_of_clipgens_own_muon_resumes():
    # clipgen's Muon (before torch's) saved the same layout, but its Muon group lacked torch's
    # settings and its momentum buffers were sums, 1 / (1 - momentum) times torch's averages
    model, opt, batch = _trained()
    old = _round_trip(opt.state_dict())
    momentum = old["param_groups"][0]["momentum"]
    for key in ("nesterov", "ns_coefficients", "eps", "ns_steps", "adjust_lr_fn"):
        del old["param_groups"][0][key]
    old["param_groups"][0] |= {"betas": (0.9, 0.95), "eps": 1e-8}
    for i in old["param_groups"][0]["params"]:
        old["state"][i]["momentum_buffer"] /= 1 - momentum
    model, copy, resumed = _resumed_next_step(model, opt, old, batch)
    assert resumed.muon.param_groups[0]["nesterov"] and resumed.muon.param_groups[0]["eps"] == 1e-7
    for a, b in zip(model.parameters(), copy.parameters()):
        assert torch.allclose(a, b, atol=1e-6)


def test_state_of_other_groups_is_refused():
    model = _model()
    state = _optimizer(model).state_dict()
    state["param_groups"][0]["muon"] = False
    with pytest.raises(ValueError, match="other Muon / AdamW groups"):
        _optimizer(_model()).load_state_dict(state)


@pytest.mark.parametrize("native", [True, False])
def test_muon_runs_newton_schulz_in_float32_where_bf16_is_not_native(monkeypatch, native):
    # torch's bf16 Newton–Schulz is emulated without native bf16 (4.2x the step with oneDNN held to AVX2)
    from clipgen.train.muon import Float32Muon

    monkeypatch.setattr(torch.cpu, "get_capabilities", lambda: {"avx2": True, "amx_tile": False, "avx512_bf16": native})
    muon = _optimizer(_model()).muon
    assert type(muon) is (torch.optim.Muon if native else Float32Muon)


def test_float32_muon_takes_torchs_steps_up_to_bf16_rounding_and_shares_its_state():
    from clipgen.train.muon import Float32Muon

    torch.manual_seed(0)
    shapes = [(48, 16), (16, 48), (32, 32)]  # tall, wide, square
    start = [torch.randn(shape) for shape in shapes]
    grads = [[torch.randn(shape) for shape in shapes] for _ in range(3)]
    settings = dict(lr=0.02, momentum=0.95, nesterov=True, weight_decay=0.01, adjust_lr_fn="original")
    runs = {}
    for kind in (torch.optim.Muon, Float32Muon):
        params = [torch.nn.Parameter(p.clone()) for p in start]
        opt = kind(params, **settings)
        for step_grads in grads:
            for param, grad in zip(params, step_grads):
                param.grad = grad.clone()
            opt.step()
        runs[kind] = params, opt
    (torch_params, torch_opt), (ours, our_opt) = runs[torch.optim.Muon], runs[Float32Muon]
    for theirs, mine, begin in zip(torch_params, ours, start):
        moved = (theirs - begin).norm()
        assert moved > 0.01 and (mine - theirs).norm() < 0.02 * moved  # the same steps, bf16 apart
    # the same checkpoint format both ways: one loads the other's state
    Float32Muon([torch.nn.Parameter(p.clone()) for p in start], **settings).load_state_dict(torch_opt.state_dict())
    assert torch_opt.state_dict()["param_groups"] == our_opt.state_dict()["param_groups"]
