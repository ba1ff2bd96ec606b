"""Base classes of model families (autoregressive, autoencoder): what their models share."""
