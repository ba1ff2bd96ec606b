"""The explicit-likelihood family: models that give each image's log-likelihood, trained by
maximizing it (GenerativeModel's default training step) and selected by it."""

from components.models.base import GenerativeModel


class ExplicitModel(GenerativeModel):
    """A model with a `log_prob`, exact unless `likelihood` names the bound it is; it samples too.
    The kept weights are those of the epoch with the lowest validation NLL."""
    family = "explicit"
    likelihood = "exact"
    selection = ("nll", "min")
    capabilities = {"sample", "log_prob"}
