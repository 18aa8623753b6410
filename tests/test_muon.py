import io

import torch

from clipgen.models.gpt import ConditionTransformer, GPTConfig
from clipgen.train.gpt import GPTOptimConfig, make_optimizer
from clipgen.train.muon import MuonWithAdamW, is_hidden_matrix, orthogonalize


def test_orthogonalize_brings_every_singular_value_near_one():
    torch.manual_seed(0)
    for shape in [(96, 32), (32, 96), (48, 48)]:
        # a badly conditioned gradient: singular values spread over two orders of magnitude (five
        # quintic steps lift the smallest by a few hundred times, not more)
        u, _, v = torch.linalg.svd(torch.randn(*shape), full_matrices=False)
        grad = u @ torch.diag(torch.logspace(-1, 1, min(shape))) @ v
        singular = torch.linalg.svdvals(orthogonalize(grad))
        assert singular.min() > 0.5 and singular.max() < 1.3, shape


def test_a_stack_is_orthogonalised_as_each_matrix_alone():
    torch.manual_seed(0)
    stack = torch.randn(3, 40, 24)
    together = orthogonalize(stack)
    for matrix, result in zip(stack, together):
        assert torch.allclose(orthogonalize(matrix), result, atol=1e-5)


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


def test_muon_takes_the_blocks_matrices_and_resumes_exactly():
    # (that it trains at all: test_gpt.py::test_a_few_steps_fit_one_sequence)
    model = _model().train()
    opt = _optimizer(model)
    assert isinstance(opt, MuonWithAdamW) and [g["muon"] for g in opt.param_groups] == [True, False, False]
    hidden = [name for name, p in model.named_parameters() if is_hidden_matrix(name, p)]
    assert hidden and all(name.startswith("blocks.") for name in hidden) and "tok_emb.weight" not in hidden
    cond, tokens = torch.randn(2, 12), torch.randint(0, 37, (2, 16))
    for _ in range(3):
        _step(model, opt, cond, tokens)
    # resuming from a saved checkpoint continues exactly where the first optimizer was
    buffer = io.BytesIO()
    torch.save({"model": model.state_dict(), "opt": opt.state_dict()}, buffer)
    buffer.seek(0)
    saved = torch.load(buffer, weights_only=True)
    copy = _model()
    copy.load_state_dict(saved["model"])
    resumed = _optimizer(copy)
    resumed.load_state_dict(saved["opt"])
    for m, o in ((model, opt), (copy, resumed)):
        _step(m, o, cond, tokens)
    for a, b in zip(model.parameters(), copy.parameters()):
        assert torch.equal(a, b)
