"""Command-line tools: ``contract`` (check a wire contract), ``token`` (mint a token), ``doctor``."""
