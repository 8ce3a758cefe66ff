"""Model and dataset card templates, shipped as package data."""
