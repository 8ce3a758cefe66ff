"""Staging and pushing ClearSep datasets and models to the Hugging Face Hub."""
