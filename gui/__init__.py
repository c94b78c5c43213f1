"""convlab's desktop app: a live training lab (PyQt6 + pyqtgraph) on top of the engine's public API.

Run it with `convlab-gui` (see `convlab_gui.app`). Training runs in a worker thread that writes into a
lock-protected `LiveData`; the window repaints from it on a timer.
"""
