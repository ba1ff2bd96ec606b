import torch

from components.data.batch import Batch, DataSpec
from components.models import build_model


def vae_with_a_poor_posterior():
    """An untrained VAE with a sharp decoder: q(z|x) is far from p(z|x), so the bounds differ clearly."""
    torch.manual_seed(0)
    model = build_model("vae", DataSpec.single((1, 4, 4)), {"latent_dim": 2, "hidden_units": [16]}).eval()
    with torch.no_grad():
        for p in model.decoder.parameters():
            p.mul_(3)
    return model, torch.bernoulli(torch.full((32, 1, 4, 4), 0.5))


def test_elbo_is_below_the_importance_weighted_bound_which_grows_with_k():
    model, x = vae_with_a_poor_posterior()
    elbo, bounds = [], {k: [] for k in (1, 10, 100)}
    for seed in range(20):  # the statement is about expectations: average over seeds
        torch.manual_seed(seed)
        reconstruction, kl = model.elbo_terms(x)
        elbo.append((reconstruction - kl).mean())
        for k in bounds:
            bounds[k].append(model.iwae_log_prob(x, k, chunk=7).mean())  # chunked, as for large k
    elbo = torch.stack(elbo).mean()
    means = {k: torch.stack(v).mean() for k, v in bounds.items()}
    assert abs(means[1] - elbo) < 0.5          # k=1 is the ELBO itself (in expectation)
    assert elbo < means[10] < means[100]
    assert means[100] - elbo > 1.0


def test_training_raises_the_elbo_and_it_splits_into_reconstruction_and_kl():
    torch.manual_seed(0)
    data = torch.bernoulli(torch.rand(8, 1, 4, 4).repeat(16, 1, 1, 1))
    model = build_model("vae", DataSpec.single((1, 4, 4)), {"latent_dim": 2, "hidden_units": [16]})
    optimizers = model.configure_optimizers(1e-2)
    first = model.training_step(Batch(data), optimizers)
    for _ in range(100):
        last = model.training_step(Batch(data), optimizers)
    assert last["loss"] < first["loss"] - 1.0
    reconstruction, kl = model.elbo_terms(data)
    assert reconstruction.shape == kl.shape == (len(data),)
    assert (kl >= 0).all() and (reconstruction <= 0).all()
    assert model.encode(data).shape == (len(data), 2)
