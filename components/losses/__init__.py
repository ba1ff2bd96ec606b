"""Training objectives shared by several models (the adversarial losses, InfoGAN's information term)."""
