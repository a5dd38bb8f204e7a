"""Foundation's agent runtime (import package ``foundation_agent``): what runs in every member pod."""

__version__ = "0.1.0"
