"""movie-recs: a nightly batch recommender that reads and writes SQL tables."""

__version__ = "0.1.0"
