"""Data sets and GAN training. Never imported by the live engine."""
