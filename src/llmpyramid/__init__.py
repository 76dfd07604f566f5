"""llmpyramid: a test pyramid for a hybrid llama.cpp inference platform."""

__version__ = "0.1.0"
