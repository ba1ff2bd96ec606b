"""ProGAN's training as the official code has it: Adam's state emptied when a block starts and ends
fading in (reset_opt_for_new_lod), and an average of the generator set by a half-life in images
(StyleGAN's ema_kimg, StyleGAN2-ADA's ema_rampup), so the averaged generator at each phase's end is
a trained one; the phase FIDs of both the averaged and the live generator."""

import pytest
import torch
from torch import nn

from components.errors import ConfigError
from components.data.batch import Batch, DataSpec
from components.models import build_model
from components.training import Callback, Settings, fit
from components.training.ema import EMA


def progan(**params):
    values = {"latent_dim": 8, "width": 16, "phase_images": [64, 128], "phase_batch_sizes": [16, 16], **params}
    return build_model("progan", DataSpec.single((1, 8, 8), 256), values)


def tiny_data(n=64):
    x = torch.rand(n, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    return (lambda epoch, batch_size: [Batch(x[i:i + batch_size]) for i in range(0, n, batch_size)],
            lambda: [Batch(x[:16])])


def initial_share(ema: EMA, module: nn.Module, steps) -> float:
    """Run `steps` (images shown per step) with the live weights held at 0 after the first: what is left of
    the initial weights in the average is then its share of them."""
    initial = [p.detach().clone() for p in module.parameters()]
    with torch.no_grad():
        for p in module.parameters():
            p.zero_()
    seen = 0
    for shown in steps:
        seen += shown
        ema.update(module, shown, seen)
    weight = next(iter(ema.shadow))
    return (ema.shadow[weight] / initial[0]).mean().item()


def test_the_half_life_is_in_images_whatever_the_batch_size():
    torch.manual_seed(0)
    for batch in (16, 64):
        module = nn.Sequential(nn.Linear(3, 3))
        ema = EMA(module, ("0",), kimg=0.256)   # 256 images
        assert initial_share(ema, module, [batch] * (1024 // batch)) == pytest.approx(0.5 ** 4, rel=1e-5)


def test_the_warm_up_leaves_almost_none_of_the_initial_weights():
    torch.manual_seed(0)
    module = nn.Sequential(nn.Linear(3, 3))
    ema = EMA(module, ("0",), kimg=10.0, rampup=0.05)
    # at most 0.05 of the images seen so far: the first step's half-life is 0.8 images of its 16
    assert ema.beta(16, 16) == pytest.approx(0.5 ** 20)
    share = initial_share(ema, module, [16] * 4)
    assert 0 <= share < 1e-6
    assert ema.beta(64, 10 ** 6) == pytest.approx(0.5 ** (64 / 10_000))   # later: the half-life itself


def test_one_form_of_average_at_a_time():
    base = dict(epochs=1, batch_size=16, lr=0.001, patience=1)
    with pytest.raises(ConfigError, match="^training: set one of ema_decay .per step. and ema_kimg"):
        Settings.from_dict({**base, "ema_decay": 0.999, "ema_kimg": 10.0})
    with pytest.raises(ConfigError, match="^training: ema_rampup caps ema_kimg's half-life: it needs ema_kimg$"):
        Settings.from_dict({**base, "ema_decay": 0.999, "ema_rampup": 0.05})


class Steps(Callback):
    """Adam's step count of a 4x4 weight and of one of the 8x8 block's, after each training step."""

    def __init__(self):
        self.old, self.new, self.critic = [], [], []

    def on_step_end(self, run):
        count = lambda name, p: int(run.optimizers[name].state[p]["step"]) if p in run.optimizers[name].state else 0  # noqa: E731
        g, d = run.model.generator, run.model.discriminator
        self.old.append(count("generator", g.project.weight))
        self.new.append(count("generator", g.blocks[0].conv1.weight))
        self.critic.append(count("discriminator", d.out.weight))


def test_adam_starts_afresh_when_a_block_starts_and_ends_fading_in():
    torch.manual_seed(0)
    train, valid = tiny_data()
    steps = Steps()
    # 4 steps of 16 images per epoch: epoch 1 at 4x4; epoch 2 fades 8x8 in (alpha 0 .. 3/4); then alpha 1
    fit(progan(), train, valid, Settings.from_dict(dict(epochs=4, batch_size=16, lr=0.001, patience=100)), [steps])
    assert steps.old == [1, 2, 3, 4, 1, 2, 3, 4, 1, 2, 3, 4, 5, 6, 7, 8]
    assert steps.new == [0, 0, 0, 0, 1, 2, 3, 4, 1, 2, 3, 4, 5, 6, 7, 8]
    assert steps.critic == steps.old


def test_the_averaged_generator_at_each_phase_end_is_mostly_trained():
    """The initial weights' share of the average is the product of the steps' betas: with a half-life
    of 16 images it is under 0.5^(64/16) after the 64 images of the 4x4 phase (the warm-up makes it
    smaller still); the paper's 0.999 per step would leave 0.999^4 of them."""
    torch.manual_seed(0)
    model = progan()
    initial = model.generator.project.weight.detach().clone()

    class Betas(Callback):
        betas, averaged, live = [], None, None

        def on_fit_start(self, run):
            update = run.ema.update

            def recorded(model, shown, seen):
                self.betas.append(run.ema.beta(shown, seen))
                update(model, shown, seen)
            run.ema.update = recorded

        def on_epoch_end(self, run, record):
            if self.averaged is None:
                self.averaged = run.ema.shadow["generator.project.weight"].clone()
                self.live = run.model.generator.project.weight.detach().clone()

    seen = Betas()
    train, valid = tiny_data()
    settings = dict(epochs=1, batch_size=16, lr=0.001, patience=100, ema_kimg=0.016, ema_rampup=0.05)
    fit(model, train, valid, Settings.from_dict(settings), [seen])
    assert len(seen.betas) == 4
    share = torch.tensor(seen.betas).prod().item()
    assert share <= 0.5 ** (64 / 16)
    # the warm-up: half-lives of 0.05 * 16, 32, 48 images, then the 16 images of ema_kimg
    assert seen.betas == pytest.approx([0.5 ** (16 / 0.8), 0.5 ** (16 / 1.6), 0.5 ** (16 / 2.4), 0.5 ** (16 / 3.2)])
    # so the average sits by the trained weights, not by the initial ones
    assert (seen.averaged - seen.live).norm() < 0.1 * (initial - seen.live).norm()


def test_phase_ends_keep_samples_and_fids_of_the_averaged_and_the_live_generator():
    from components.metrics.sample_quality import SampleJudge

    class Pixels(torch.nn.Module):
        def features(self, x):
            return x.flatten(1)

        def head(self, features):
            return features[:, :2]

    torch.manual_seed(0)
    model = progan()
    train, valid = tiny_data()
    fit(model, train, valid, Settings.from_dict(dict(epochs=3, batch_size=16, lr=0.001, patience=100,
                                                     ema_decay=0.9)))
    assert model.phase_recorded.tolist() == model.phase_recorded_live.tolist() == [True, True]
    assert not torch.equal(model.phase_samples, model.phase_samples_live)
    test = Batch(torch.rand(64, 1, 8, 8, generator=torch.Generator().manual_seed(1)))
    metrics = model.evaluation_metrics(test, {"seed": 0, "judge": SampleJudge(Pixels(), test.images, None, 2)})
    assert {"fid_phase_4", "fid_phase_8", "fid_phase_4_live", "fid_phase_8_live"} <= set(metrics)
    assert metrics["fid_phase_8"] != metrics["fid_phase_8_live"]


def test_the_default_entry_trains_at_the_papers_minibatch_of_16():
    """At 64 images a step the digits' 8x8 phase has ~340 steps and its new block never learns: the live
    8x8 generator collapsed to one noisy image (FID ~1100-1500 over 3 seeds, 772 -> 1283 on the default
    pipeline). The paper's 16 (appendix A.1) gives the 8x8 phase ~1350 steps (FID ~230-250)."""
    from components.config import load_params
    from components.schema import architecture_params

    name, arch = architecture_params(load_params(), "progan")
    model = build_model(name, DataSpec.single((1, 8, 8), 17), arch)
    assert [phase.batch_size for phase in model.phases()] == [16, 16]
    assert model.phases()[-1].images // model.phases()[-1].batch_size >= 1000
