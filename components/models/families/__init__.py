"""Base classes of model families (explicit and autoregressive, autoencoder, adversarial): what their
models share."""
