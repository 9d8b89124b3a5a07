"""Published zoo folders (Hugging Face repo layout), shipped as ``nodezoo.model_cards``."""
