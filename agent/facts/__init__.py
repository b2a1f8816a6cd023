"""Site facts from Azure: the JSON the Azure CLI prints, read from files, merged into the agent's TOML."""
