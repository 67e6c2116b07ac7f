"""Local services for the embedded default, the fleet simulator, the CLI and deployment."""
