"""Layers shared by several models: masked convolutions, PixelRNN layers, pixel likelihoods."""
