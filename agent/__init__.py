"""erpath agent: measures which path each Power Platform endpoint really takes."""

__version__ = "0.1.0"
