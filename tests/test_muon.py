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
