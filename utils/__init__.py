"""Small shared utilities: configs, safe loading."""
