"""tychoreg: a registry for versioned packages on S3 or a local directory."""

__version__ = "0.1.0"
