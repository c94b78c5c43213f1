"""The main window's tabs: curves, kernels, feature maps, evaluation, gradient flow, kernel playground.

Each panel has a `title` and a `refresh(view)` that repaints from a `RunView` only when its data changed.
"""
