"""Data sets as tensors: the built-in ones (digits, CIFAR, ...) and the user's own."""
