"""GAN-CLS (text-to-image), ProGAN, and the shared loss in gan / aae."""

import io
import math

import pytest
import torch
import torch.nn.functional as F

from components.data.batch import Batch, DataSpec
from components.losses.adversarial import NonSaturating
from components.models import build_model
from components.models.gan_cls import matching_aware_discriminator_loss
from components.models.progan import EqualizedConv2d, MinibatchStddev, PixelNorm
from components.training import Settings, fit


pytestmark = pytest.mark.usefixtures("one_thread")


# --- the shared non-saturating loss is the BCE gan and aae used to write -------------------------

def test_nonsaturating_loss_equals_the_bce_formula_gan_and_aae_used():
    d_real, d_fake = torch.tensor([[2.0], [-1.0], [30.0]]), torch.tensor([[0.5], [-3.0], [-40.0]])
    ones, zeros = torch.ones(3, 1), torch.zeros(3, 1)
    loss = NonSaturating()
    old_d = F.binary_cross_entropy_with_logits(d_real, ones) + F.binary_cross_entropy_with_logits(d_fake, zeros)
    assert torch.allclose(loss.discriminator(d_real, d_fake), old_d, rtol=1e-6, atol=1e-7)
    assert torch.allclose(loss.generator(d_fake), F.binary_cross_entropy_with_logits(d_fake, ones), rtol=1e-6)


# --- GAN-CLS --------------------------------------------------------------------------------------

VOCAB = ("<pad>", "<unk>", "a", "picture", "of", "left", "right", "bright", "on", "the", "side")
PHRASINGS = {0: ["a picture of left", "bright on the left", "left side"],
             1: ["a picture of right", "bright on the right", "right side"]}
SPEC = DataSpec.single((1, 8, 8), 256, vocabulary=VOCAB, fields=("captions",), caption_length=5)
SMALL = {"latent_dim": 8, "embedding_dim": 8, "word_dim": 8, "text_hidden": 16, "width": 16}


def halves(n, seed=0) -> Batch:
    """Images bright on the left or the right half, captioned in three phrasings each."""
    g = torch.Generator().manual_seed(seed)
    side = torch.randint(2, (n,), generator=g)
    x = 0.1 * torch.rand(n, 1, 8, 8, generator=g)
    x[side == 0, :, :, :4] += 0.8
    x[side == 1, :, :, 4:] += 0.8
    captions = [PHRASINGS[int(s)][i % 3] for i, s in enumerate(side)]
    return Batch(x, captions=captions, caption_tokens=torch.tensor([SPEC.tokenize(c, 5) for c in captions]))


def test_matching_aware_loss_is_the_papers_formula():
    s_r, s_w, s_f = torch.tensor([1.5, -0.5]), torch.tensor([0.3, -2.0]), torch.tensor([-1.0, 2.5])
    sig = torch.sigmoid
    expected = -(torch.log(sig(s_r)).mean() + 0.5 * (torch.log(1 - sig(s_w)).mean() + torch.log(1 - sig(s_f)).mean()))
    got = matching_aware_discriminator_loss(NonSaturating(), s_r, s_w, s_f)
    assert got == pytest.approx(float(expected), rel=1e-6)
    # a real image with a mismatching caption is penalized like a fake: raising s_w raises the loss
    assert matching_aware_discriminator_loss(NonSaturating(), s_r, s_w + 1, s_f) > got


def test_gan_int_term_is_in_the_generator_loss():
    torch.manual_seed(0)
    model = build_model("gan_cls", SPEC, SMALL)
    batch = halves(8)
    phi = model.embed(batch.caption_tokens).detach()
    z = model.noise(8)
    total, terms = model.generator_loss(z, phi)
    assert terms["g_int"].item() > 0
    assert float(total) == pytest.approx(float(terms["g_cls"] + terms["g_int"]), rel=1e-5)
    torch.manual_seed(0)
    cls_only = build_model("gan_cls", SPEC, {**SMALL, "interpolation_weight": 0.0})
    assert float(cls_only.generator_loss(z, phi)[0]) == pytest.approx(float(cls_only.generator_loss(z, phi)[1]["g_cls"]))
    # the interpolated embedding lies halfway between two captions' embeddings: G receives it
    seen = []
    hook = model.generator.register_forward_hook(lambda m, args, out: seen.append(args[1]))
    model.generator_loss(z, phi)
    hook.remove()
    assert torch.allclose(seen[1], 0.5 * phi + 0.5 * phi.roll(1, 0))


def test_unknown_words_map_to_unk_and_any_caption_is_answered():
    model = build_model("gan_cls", SPEC, SMALL)
    assert model.tokens(["a zebra of left"])[0].tolist() == [2, 1, 4, 5, 0]
    assert model.sample(3, "completely unseen words here").shape == (3, 1, 8, 8)
    assert model.sample(2, ["left side", "xyzzy"]).shape == (2, 1, 8, 8)
    with pytest.raises(ValueError, match="3 samples with 2 captions"):
        model.sample(3, ["left side", "right side"])


def test_unconditional_sampling_draws_training_captions_or_refuses():
    from components.models.base import NotSupported
    model = build_model("gan_cls", SPEC, {**SMALL, "caption_bank": 4})
    with pytest.raises(NotSupported, match="pass condition"):
        model.sample(2)
    model.remember(halves(6).caption_tokens)
    assert int(model.banked) == 6 and model.sample(5).shape == (5, 1, 8, 8)
    assert model.bank.tolist() == halves(6).caption_tokens[[4, 5, 2, 3]].tolist()   # a ring: last 4 kept


def test_text_embedding_differs_between_captions():
    model = build_model("gan_cls", SPEC, SMALL)
    phi = model.embed(model.tokens(["left side", "right side", "left side"]))
    assert not torch.allclose(phi[0], phi[1], atol=1e-4)
    assert torch.equal(phi[0], phi[2])


def test_samples_follow_their_captions_after_a_short_training():
    torch.manual_seed(0)
    model = build_model("gan_cls", SPEC, SMALL)
    data = halves(128)

    def train(epoch, batch_size):
        order = torch.randperm(len(data), generator=torch.Generator().manual_seed(epoch))
        return [data.select(order[i:i + batch_size]) for i in range(0, len(data), batch_size)]

    fit(model, train, lambda: [data.select(torch.arange(32))],
        Settings.from_dict(dict(epochs=8, batch_size=32, lr=0.002, patience=100)))
    model.eval()
    g = torch.Generator().manual_seed(1)
    left = model.sample(32, "a picture of left", generator=g)
    right = model.sample(32, "bright on the right", generator=g)
    unseen = model.sample(32, "a left side zebra", generator=g)   # an unknown word among known ones
    for x, brighter in ((left, "left"), (right, "right"), (unseen, "left")):
        l, r = float(x[..., :4].mean()), float(x[..., 4:].mean())
        assert (l > r + 0.2) if brighter == "left" else (r > l + 0.2), (brighter, l, r)


# --- GAN-CLS evaluation: held-out phrasings, per-class FID, interpolation ---------------------------

SIDES = ("left", "right")


def captioned_halves(n, seed=0):
    """`halves` images labelled by side and captioned as components/data/captions.py captions the test split."""
    from components.data.captions import caption_length, make_captions, vocabulary

    g = torch.Generator().manual_seed(seed)
    side = torch.randint(2, (n,), generator=g)
    x = 0.1 * torch.rand(n, 1, 8, 8, generator=g)
    x[side == 0, :, :, :4] += 0.8
    x[side == 1, :, :, 4:] += 0.8
    test = make_captions("test", side.numpy(), SIDES, ["synthetic"] * n, None, (), seed)
    train = make_captions("train", side.numpy(), SIDES, ["synthetic"] * n, None, (), seed)
    spec = DataSpec.single((1, 8, 8), 256, class_names=SIDES, vocabulary=tuple(vocabulary(train)),
                           fields=("labels", "captions"), caption_length=caption_length(train + test))
    return spec, Batch(x, labels=side, captions=test)


class SideReader(torch.nn.Module):
    """An evaluation classifier for the halves: features are the halves' brightness, class the brighter."""

    def features(self, x):
        left, right = x[..., :4].mean((1, 2, 3)), x[..., 4:].mean((1, 2, 3))
        return torch.stack([left, right, left * right], 1)

    def head(self, features):
        return features[:, :2]


@pytest.mark.parametrize("seed", [0, 1, 5])
def test_the_held_out_phrasings_are_the_ones_the_data_layer_held_out(seed):
    from components.data.captions import phrasings
    from components.models.gan_cls import phrasings_of

    spec, test = captioned_halves(200, seed)
    assert phrasings_of(spec, test.captions, test.labels) == {"heldout": list(phrasings(seed)["test"]),
                                                              "train": list(phrasings(seed)["train"])}
    assert phrasings_of(spec, ["a zebra"] + test.captions[1:], test.labels) is None


def test_caption_accuracy_is_measured_apart_on_held_out_and_training_phrasings():
    from components.metrics.sample_quality import SampleJudge
    from components.models.gan_cls import GANCLS, caption_text, phrasings_of

    spec, test = captioned_halves(200)
    training = phrasings_of(spec, test.captions, test.labels)["train"]
    seen = {caption_text(spec, t, k): k for t in training for k in range(2)}

    class ReadsTrainingWordings(GANCLS):
        """Draws the side a training phrasing names; any other text gets the left side."""

        def sample(self, n, condition=None, generator=None):
            sides = [seen.get(caption, 0) for caption in condition]
            x = torch.zeros(n, 1, 8, 8)
            for i, side in enumerate(sides):
                x[i, :, :, 4 * side:4 * side + 4] = 0.9
            return x + 0.05 * torch.rand(n, 1, 8, 8, generator=generator)

    model = ReadsTrainingWordings(spec, GANCLS.Params(**SMALL))
    settings = {"seed": 0, "num_samples": 40, "judge": SampleJudge(SideReader(), test.images, test.labels, 2)}
    metrics = model.evaluation_metrics(test, settings)
    assert metrics["train_caption_accuracy"] == 1.0
    assert metrics["heldout_caption_accuracy"] == 0.5    # only the left side, which it draws for anything
    # per-class FID of the held-out captions' samples: the right side asked, the left drawn
    assert metrics["fid_class_1"] > 100 * metrics["fid_class_0"]
    figures = model.evaluation_figures(test, settings)
    assert set(figures) == {"class_samples.png", "caption_interpolation.png", "per_class_fid.png"}


def test_caption_interpolation_feeds_the_generator_the_mixed_embedding_with_one_noise():
    torch.manual_seed(0)
    spec, _ = captioned_halves(50)
    model = build_model("gan_cls", spec, SMALL).eval()
    first, second = "a picture of left", "here is right"
    walk = model.interpolate(first, second, steps=5, generator=torch.Generator().manual_seed(3))
    z = model.noise(1, torch.Generator().manual_seed(3))
    phi = model.embed(model.tokens([first, second]))
    with torch.no_grad():
        for i, t in enumerate((0.0, 0.25, 0.5, 0.75, 1.0)):
            expected = (model.generator(z, (1 - t) * phi[:1] + t * phi[1:]) + 1) / 2
            assert torch.allclose(walk[i], expected[0].clamp(0, 1), atol=1e-6), t
    assert not torch.allclose(walk[0], walk[-1], atol=1e-3)


# --- ProGAN ---------------------------------------------------------------------------------------

def progan(shape=(1, 8, 8), **params):
    values = {"latent_dim": 8, "width": 16, "phase_images": [64, 128], "phase_batch_sizes": [16, 16], **params}
    return build_model("progan", DataSpec.single(shape, 256), values)


def test_equalized_learning_rate_scales_n01_weights_by_hes_constant():
    torch.manual_seed(0)
    conv = EqualizedConv2d(64, 32, 3)
    assert conv.scale == pytest.approx(math.sqrt(2 / (64 * 9)))
    assert float(conv.weight.mean()) == pytest.approx(0, abs=0.02)
    assert float(conv.weight.std()) == pytest.approx(1, abs=0.02)
    x = torch.randn(2, 64, 5, 5)
    assert torch.allclose(conv(x), F.conv2d(x, conv.weight * conv.scale, conv.bias, padding=1))
    # the stored weight is what the optimizer sees: its gradient carries the runtime scale
    conv(x).sum().backward()
    plain = conv.weight.detach().clone().requires_grad_(True)
    F.conv2d(x, plain * conv.scale, conv.bias.detach(), padding=1).sum().backward()
    assert torch.allclose(conv.weight.grad, plain.grad)


def test_pixel_norm_gives_unit_mean_square_per_pixel():
    x = torch.randn(3, 16, 4, 4) * 7 + 2
    y = PixelNorm()(x)
    assert torch.allclose(y.pow(2).mean(1), torch.ones(3, 4, 4), atol=1e-5)
    assert torch.allclose(y / y.norm(dim=1, keepdim=True), x / x.norm(dim=1, keepdim=True), atol=1e-6)


def test_minibatch_stddev_adds_the_batch_mean_std_as_a_channel():
    x = torch.randn(6, 5, 4, 4)
    y = MinibatchStddev()(x)
    assert y.shape == (6, 6, 4, 4) and torch.equal(y[:, :5], x)
    expected = x.std(0, unbiased=False).mean()
    assert torch.allclose(y[:, 5], expected.expand(6, 4, 4), atol=1e-5)


def test_fade_in_starts_at_the_upsampled_smaller_network_and_ends_at_the_new_block():
    torch.manual_seed(0)
    model = progan((1, 28, 28), resolutions=[4, 8, 16, 32], phase_images=[64] * 4, phase_batch_sizes=[8] * 4)
    g = model.generator
    z = torch.randn(4, 8)
    with torch.no_grad():
        for level in (1, 2, 3):
            smaller = g(z, level - 1, 1.0)
            assert torch.allclose(g(z, level, 0.0), F.interpolate(smaller, scale_factor=2, mode="nearest"), atol=1e-6)
            h = g.norm(F.leaky_relu(g.first(g.norm(F.leaky_relu(g.project(g.norm(z)).view(4, -1, 4, 4), 0.2))), 0.2))
            for k in range(1, level + 1):
                h = g.blocks[k - 1](h)
            assert torch.allclose(g(z, level, 1.0), g.to_rgb[level](h), atol=1e-6)
            assert g(z, level, 0.3).shape == (4, 1, 4 * 2 ** level, 4 * 2 ** level)
        d = model.discriminator
        x = torch.randn(4, 1, 16, 16)
        assert torch.allclose(d(x, 2, 0.0), d(F.avg_pool2d(x, 2), 1, 1.0), atol=1e-5)   # mirrored in D
        assert not torch.allclose(d(x, 2, 1.0), d(F.avg_pool2d(x, 2), 1, 1.0), atol=1e-3)
    assert model.sample(2).shape == (2, 1, 28, 28)


def tiny_data(n=64):
    x = torch.rand(n, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    return (lambda epoch, batch_size: [Batch(x[i:i + batch_size]) for i in range(0, n, batch_size)],
            lambda: [Batch(x[:16])])


SETTINGS = dict(epochs=5, batch_size=32, lr=0.001, patience=100, ema_decay=0.9)


def test_phases_drive_the_resolution_and_alpha_through_fit():
    torch.manual_seed(0)
    model = progan()                              # 4x4 for 64 images (one epoch), then 8x8 fading over 64
    assert [(p.resolution, p.images, p.batch_size) for p in model.phases()] == [(4, 64, 16), (8, 128, 16)]
    train, valid = tiny_data()
    run = fit(model, train, valid, Settings.from_dict(SETTINGS))
    history = run.state["history"]
    assert [r["train_resolution"] for r in history] == [4, 8, 8, 8, 8]
    # alpha as the step saw it: 0, 1/4, 2/4, 3/4 over the first 64 images of the phase, then 1
    assert history[1]["train_alpha"] == pytest.approx(0.375)
    assert [r["train_alpha"] for r in history[2:]] == [1.0, 1.0, 1.0]
    assert int(model.level) == 1 and float(model.alpha) == 1.0
    assert model.sample(3).shape == (3, 1, 8, 8)


def test_a_run_resumed_mid_fade_continues_with_the_same_alpha():
    class Snapshot:
        saved = None
        def on_fit_start(self, run): ...
        def on_epoch_end(self, run, record): ...

        def on_step_end(self, run):
            if run.state["step"] == 6:        # 4x4: 4 steps; 8x8: 2 steps in -> alpha 2/4
                buffer = io.BytesIO()
                torch.save(run.checkpoint(), buffer)
                buffer.seek(0)
                self.saved = torch.load(buffer, weights_only=False)

    train, valid = tiny_data()
    settings = Settings.from_dict({**SETTINGS, "epochs": 2})
    torch.manual_seed(0)
    snapshot = Snapshot()
    fit(progan(), train, valid, settings, [snapshot])
    saved = snapshot.saved
    assert float(saved["model"]["alpha"]) == pytest.approx(0.5) and saved["phase"] == 1
    # The checkpoint is taken mid-epoch; resuming replays that epoch from its start with the saved model,
    # as a restart from it would: the fade continues from 0.5, not from 0.
    class Alphas:
        seen: list = []
        def on_fit_start(self, run): ...
        def on_epoch_end(self, run, record): ...
        def on_step_end(self, run):
            self.seen.append(float(run.model.alpha))

    torch.manual_seed(1)
    resumed, alphas = progan(), Alphas()
    run = fit(resumed, train, valid, settings, [alphas], state=saved)
    assert resumed.phases()[run.state["phase"]].resolution == 8 and int(resumed.level) == 1
    assert alphas.seen == pytest.approx([0.75, 1.0, 1.0, 1.0])     # from 0.5 on, as the first run went
    assert int(resumed.phase_images_seen) == 32 + 64


def test_the_end_of_each_phase_keeps_samples_of_the_ema_and_the_live_generator_whichever_epoch_is_selected():
    from components.models.families.adversarial import to_unit
    from components.models.progan import PHASE_SAMPLES, PHASE_SEED
    from components.training import final_weights

    z = torch.randn(PHASE_SAMPLES, 8, generator=torch.Generator().manual_seed(PHASE_SEED))

    class AtPhaseEnds:
        live, averaged = {}, {}
        def on_fit_start(self, run): ...
        def on_step_end(self, run): ...

        @torch.no_grad()
        def on_epoch_end(self, run, record):   # epoch 1 ends the 4x4 phase, epoch 3 training (at 8x8)
            level = int(run.model.level)
            up = lambda x: F.interpolate(to_unit(x.clamp(-1, 1)), size=(8, 8), mode="nearest")  # noqa: E731
            self.live[level] = up(run.model.generator(z, level, 1.0))
            with run.averaged():
                self.averaged[level] = up(run.model.generator(z, level, 1.0))

    torch.manual_seed(0)
    model, seen = progan(), AtPhaseEnds()
    train, valid = tiny_data()
    quality = lambda model, epoch: {"fid": abs(epoch - 2.0)}   # noqa: E731  (epoch 2 is the best: selected)
    run = fit(model, train, valid, Settings.from_dict({**SETTINGS, "epochs": 3}), [seen], quality=quality)
    assert run.selection.best_epoch == 2
    kept = final_weights(run.checkpoint())
    assert kept["phase_recorded"].tolist() == [True, True]   # the selected epoch's weights, both phases' records
    for level in (0, 1):
        samples = kept["phase_samples"][level].float() / 255
        assert (samples - seen.averaged[level]).abs().max() <= 0.5 / 255 + 1e-6   # 8-bit EMA generator's
        assert (samples - seen.live[level]).abs().max() > 0.05                      # not the live one's
        live = kept["phase_samples_live"][level].float() / 255                      # kept beside it
        assert (live - seen.live[level]).abs().max() <= 0.5 / 255 + 1e-6


def test_progan_selection_only_weighs_the_grown_network():
    from components.training import final_weights

    torch.manual_seed(0)
    model = progan()          # epoch 1: 4x4; epoch 2: 8x8 fading in (alpha reaches 1 at its end); epoch 3: 8x8
    train, valid = tiny_data()
    quality = lambda model, epoch: {"fid": float(epoch)}   # noqa: E731  (the 4x4 epoch scores best)
    run = fit(model, train, valid, Settings.from_dict({**SETTINGS, "epochs": 3}), quality=quality)
    assert run.selection.best_epoch == 2 and run.selection.best == 2.0
    kept = final_weights(run.checkpoint())
    assert int(kept["level"]) == 1 and float(kept["alpha"]) == 1.0


class Pixels(torch.nn.Module):
    """An evaluation classifier whose features are the pixels themselves."""

    def features(self, x):
        return x.flatten(1)

    def head(self, features):
        return features[:, :2]


def test_phase_fid_compares_with_the_real_images_averaged_down_to_the_phase_resolution():
    from components.metrics.sample_quality import SampleJudge
    from components.models.families.adversarial import to_unit
    from components.models.progan import PHASE_SAMPLES, PHASE_SEED

    g = torch.Generator().manual_seed(0)
    coarse = F.interpolate(torch.randint(10, 246, (PHASE_SAMPLES, 1, 4, 4), generator=g).float(), scale_factor=2)
    checker = 10 * ((torch.arange(8)[:, None] + torch.arange(8)) % 2 * 2 - 1).float()  # averages to 0 per 2x2
    test = Batch((coarse + checker) / 255)
    judge = SampleJudge(Pixels(), test.images, None, 2)
    settings = {"seed": 0, "judge": judge}
    model = progan().eval()
    # a perfect 4x4 phase: it kept the test images averaged down to 4x4 (8-bit values, shown at 8x8)
    model.phase_samples[0] = coarse.to(torch.uint8)
    model.phase_recorded[0] = True
    metrics = model.evaluation_metrics(test, settings)
    assert metrics["fid_phase_4"] == pytest.approx(0.0, abs=1e-6)
    # against the full-resolution images it would be the checkerboard's shift of the mean: 64 (10/255)^2
    # (to 1e-5: the images are float32, and the rounding of their 64 features shows at 1e-6 on some CPUs)
    assert judge.fid(coarse / 255) == pytest.approx(64 * (10 / 255) ** 2, rel=1e-5)
    assert metrics["fid_phase_8"] == "not recorded: training ended before this phase"
    model.level.fill_(1)
    model.on_phase_end(model.phases()[1])         # the 8x8 phase ends: its samples against the images as they are
    z = torch.randn(PHASE_SAMPLES, 8, generator=torch.Generator().manual_seed(PHASE_SEED))
    with torch.no_grad():
        expected = judge.fid((to_unit(model.generator(z, 1, 1.0).clamp(-1, 1)) * 255).round() / 255)
    assert model.evaluation_metrics(test, settings)["fid_phase_8"] == pytest.approx(expected, rel=1e-6)
    assert set(model.evaluation_figures(test, settings)) == {"phase_1_4x4.png", "phase_2_8x8.png"}
