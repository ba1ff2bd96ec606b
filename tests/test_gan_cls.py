"""GAN-CLS's text encoder: the joint-embedding pretraining of Reed et al. 2016a, its optimizer, its freezing."""

import pytest
import torch
import torch.nn.functional as F

from components.data.batch import Batch, DataSpec
from components.models import build_model
from components.models.gan_cls import joint_embedding_loss, structured_hinge
from components.training.schedules import Optimizer, configure_optimizers


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


VOCAB = ("<pad>", "<unk>", "a", "picture", "of", "left", "right", "bright", "on", "the", "side", "top")
PHRASINGS = ("a picture of {}", "bright on the {}", "the {} side")
SIDES = ("left", "right", "top")
SPEC = DataSpec.single((1, 8, 8), 256, vocabulary=VOCAB, fields=("captions", "labels"), caption_length=5,
                       class_names=("left", "right", "top"))
SMALL = {"latent_dim": 8, "embedding_dim": 8, "word_dim": 8, "text_hidden": 16, "width": 16}


def sides(n, seed=0, phrasings=(0, 1)) -> Batch:
    """Images bright on the left, the right or the top, captioned in `phrasings`, with their labels."""
    g = torch.Generator().manual_seed(seed)
    label = torch.randint(3, (n,), generator=g)
    x = 0.1 * torch.rand(n, 1, 8, 8, generator=g)
    x[label == 0, :, :, :4] += 0.8
    x[label == 1, :, :, 4:] += 0.8
    x[label == 2, :, :4, :] += 0.8
    captions = [PHRASINGS[phrasings[i % len(phrasings)]].format(SIDES[int(k)]) for i, k in enumerate(label)]
    tokens = torch.tensor([SPEC.tokenize(c, 5) for c in captions])
    return Batch(x, labels=label, captions=captions, caption_tokens=tokens)


def test_structured_hinge_is_the_papers_formula():
    scores = torch.tensor([[2.0, 1.5, -1.0], [0.0, 3.0, 2.5], [1.0, 1.0, 4.0]])
    target = torch.tensor([0, 2, 2])
    # max_y (Delta + s_y - s_true), Delta = 1 off the true class, 0 on it; never below 0
    expected = (max(0, 1 + 1.5 - 2.0, 1 - 1.0 - 2.0) + max(0, 1 + 0.0 - 2.5, 1 + 3.0 - 2.5)
                + max(0, 1 + 1.0 - 4.0)) / 3
    assert float(structured_hinge(scores, target)) == pytest.approx(expected)


def test_joint_embedding_loss_is_the_symmetric_structured_loss_on_class_means():
    images = torch.tensor([[1.0, 0.0], [0.0, 2.0], [1.0, 1.0]])
    texts = torch.tensor([[0.5, 0.0], [1.0, 1.0], [0.0, -1.0]])
    labels = torch.tensor([7, 3, 7])          # any class ids: classes 3 and 7, sorted
    text_means = torch.stack([texts[1], (texts[0] + texts[2]) / 2])     # class 3, class 7
    image_means = torch.stack([images[1], (images[0] + images[2]) / 2])
    target = torch.tensor([1, 0, 1])

    def hinge(scores):
        return sum(max(0.0, max(float(1 + scores[n, y] - scores[n, target[n]]) for y in range(2)
                                if y != target[n])) for n in range(3)) / 3

    expected = hinge(images @ text_means.T) + hinge(texts @ image_means.T)
    assert float(joint_embedding_loss(images, texts, labels)) == pytest.approx(expected)
    # texts aligned with their class's images and far from the other's: no loss
    aligned = torch.tensor([[10.0, 0.0], [0.0, 10.0], [10.0, 0.0]])
    assert float(joint_embedding_loss(aligned, aligned, torch.tensor([0, 1, 0]))) == 0.0


def test_text_encoder_optimizer_rate_lands_in_its_param_groups():
    model = build_model("gan_cls", SPEC, SMALL)
    optimizers = configure_optimizers(model, 2e-4, {"text_encoder": Optimizer(lr=1e-3)})
    text = optimizers["text_encoder"]
    assert all(group["lr"] == 1e-3 for group in text.param_groups)
    assert optimizers["discriminator"].param_groups[0]["lr"] == 2e-4
    ids = {id(p) for g in text.param_groups for p in g["params"]}
    assert all(id(p) in ids for p in model.text_encoder.parameters())
    # the encoder is in no other optimizer: D's rate never reaches it
    for name in ("discriminator", "generator"):
        assert not any(id(p) in ids for g in optimizers[name].param_groups for p in g["params"])


def test_pretraining_puts_same_class_captions_closer_then_freezes_the_encoder():
    torch.manual_seed(0)
    model = build_model("gan_cls", SPEC, {**SMALL, "text_pretraining_steps": 60})
    optimizers = configure_optimizers(model, 2e-4, {"text_encoder": Optimizer(lr=3e-3)})
    # two phrasings of the three classes' captions
    held = sides(30, seed=1, phrasings=(1,))
    train = sides(30, seed=1, phrasings=(0,))

    def separation():
        """Mean distance of captions in one phrasing to other classes' captions in the other over that to
        their own class's, and how many are nearest their own class's mean in the other phrasing."""
        a, b = model.embed(held.caption_tokens), model.embed(train.caption_tokens)
        distance = torch.cdist(a, b)
        same = held.labels[:, None] == train.labels[None, :]
        means = torch.stack([b[train.labels == k].mean(0) for k in range(3)])
        nearest = torch.cdist(a, means).argmin(1)
        return float(distance[~same].mean() / distance[same].mean()), float((nearest == held.labels).float().mean())

    with torch.no_grad():
        before = separation()
        first = sides(48, seed=999)
        initial = float(joint_embedding_loss(F.normalize(model.image_encoder(2 * first.images - 1), dim=1),
                                             model.embed(first.caption_tokens), first.labels))
    assert initial > 0.5
    for step in range(60):
        batch = sides(48, seed=100 + step)   # phrasings 0 and 1 only
        record = model.training_step(batch, optimizers)
        assert "text_loss" in record
    assert int(model.text_steps) == 60 and not model.pretraining
    with torch.no_grad():
        after = separation()
    assert after[0] > before[0] + 0.2 and after[1] == 1.0, (before, after)
    # the structured loss is met on captions and images it has not seen: margins of 1 for every pair
    fresh = sides(48, seed=999)
    with torch.no_grad():
        met = joint_embedding_loss(F.normalize(model.image_encoder(2 * fresh.images - 1), dim=1),
                                   model.embed(fresh.caption_tokens), fresh.labels)
    assert float(met) < 0.05 * initial
    # a caption embeds nearer its own class's captions than the other classes'
    with torch.no_grad():
        phi = model.embed(sides(30, seed=2).caption_tokens)
    labels = sides(30, seed=2).labels
    distance = torch.cdist(phi, phi)
    same = labels[:, None] == labels[None, :]
    assert float(distance[same].mean()) < 0.7 * float(distance[~same].mean())
    # afterwards the encoder is fixed (the paper's pretrained encoder): GAN steps leave it unchanged
    frozen = {k: v.clone() for k, v in model.text_encoder.state_dict().items()}
    record = model.training_step(sides(32, seed=5), optimizers)
    assert "text_loss" not in record
    assert all(torch.equal(frozen[k], v) for k, v in model.text_encoder.state_dict().items())


def test_during_pretraining_only_the_joint_loss_moves_the_encoder():
    torch.manual_seed(0)
    model = build_model("gan_cls", SPEC, {**SMALL, "text_pretraining_steps": 5})
    optimizers = configure_optimizers(model, 2e-4)
    seen = []
    original = model.pretraining_step

    def spy(*args):
        seen.append({k: v.clone() for k, v in model.text_encoder.state_dict().items()})
        out = original(*args)
        seen.append({k: v.clone() for k, v in model.text_encoder.state_dict().items()})
        return out

    model.pretraining_step = spy
    model.training_step(sides(32), optimizers)
    model.training_step(sides(32, seed=1), optimizers)
    # what the encoder holds after one step's pretraining update is what the next step starts from
    assert all(torch.equal(seen[1][k], seen[2][k]) for k in seen[1])
    assert not all(torch.equal(seen[0][k], seen[1][k]) for k in seen[0])


def test_without_pretraining_the_discriminator_loss_trains_the_encoder_at_its_own_rate():
    torch.manual_seed(0)
    model = build_model("gan_cls", SPEC, {**SMALL, "text_pretraining_steps": 0})
    optimizers = configure_optimizers(model, 2e-4, {"text_encoder": Optimizer(lr=1e-3)})
    before = {k: v.clone() for k, v in model.text_encoder.state_dict().items()}
    record = model.training_step(sides(32), optimizers)
    assert "text_loss" not in record
    assert not all(torch.equal(before[k], v) for k, v in model.text_encoder.state_dict().items())
    # Adam's first step moves each weight by about its rate: the encoder's is 1e-3, not D's 2e-4
    step = (model.text_encoder.rnn.weight_hh_l0 - before["rnn.weight_hh_l0"]).abs().max()
    assert 5e-4 < float(step) < 1.5e-3


def test_pretraining_progress_is_saved_with_the_weights():
    model = build_model("gan_cls", SPEC, {**SMALL, "text_pretraining_steps": 3})
    optimizers = configure_optimizers(model, 2e-4)
    model.training_step(sides(16), optimizers)
    restored = build_model("gan_cls", SPEC, {**SMALL, "text_pretraining_steps": 3})
    restored.load_state_dict(model.state_dict())
    assert int(restored.text_steps) == 1 and restored.pretraining
