"""infoplane: information-theoretic analysis and training of language models."""

__version__ = "0.1.0"
