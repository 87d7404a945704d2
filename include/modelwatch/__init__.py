"""ModelWatch: monitoring pipelines for deployed machine-learning models."""

__version__ = "0.1.0"
