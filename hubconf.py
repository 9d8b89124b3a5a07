"""torch.hub entry points: ``torch.hub.load(repo, "odenet_fashion_mnist")`` or
``torch.hub.load(repo, "pretrained", "org/name")``; one entry per zoo folder in model_cards/."""

dependencies = ["torch", "safetensors", "huggingface_hub", "pytorch_lightning"]

from nodezoo.zoo import entrypoints  # noqa: E402

globals().update(entrypoints())
