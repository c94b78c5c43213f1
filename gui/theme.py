"""The app's look: a dark Fusion palette, a style sheet, pyqtgraph defaults and the shared colour maps."""

from __future__ import annotations

import pyqtgraph as pg
from PyQt6.QtGui import QColor, QFont, QPalette
from PyQt6.QtWidgets import QApplication

BACKGROUND = "#1e2127"
PANEL = "#262a31"
BASE = "#1a1d22"
TEXT = "#d7dae0"
MUTED = "#8a93a3"
ACCENT = "#4fb3ff"

# One colour per series, readable on the dark background (train, validation/test, extra ...).
SERIES = ("#4fb3ff", "#ff9f43", "#7bd88f", "#fc618d", "#c39ac9", "#fce566")

VIRIDIS = pg.colormap.get("viridis")
GREY = pg.colormap.get("CET-L1")
# Blue-white-red around zero: kernels and signed outputs read as "negative / zero / positive", and tiles
# stand out from the dark background.
DIVERGING = pg.colormap.get("CET-D1")

STYLE_SHEET = f"""
QMainWindow, QDialog {{ background: {BACKGROUND}; }}
QDockWidget::title {{ background: {PANEL}; padding: 6px; font-weight: 600; }}
QTabWidget::pane {{ border: 1px solid #343a44; top: -1px; }}
QTabBar::tab {{ background: {PANEL}; color: {MUTED}; padding: 7px 16px; border: 1px solid #343a44;
               border-bottom: none; margin-right: 2px; border-top-left-radius: 4px;
               border-top-right-radius: 4px; }}
QTabBar::tab:selected {{ background: {BACKGROUND}; color: {TEXT}; border-top: 2px solid {ACCENT}; }}
QGroupBox {{ border: 1px solid #343a44; border-radius: 5px; margin-top: 14px; padding-top: 6px; }}
QGroupBox::title {{ subcontrol-origin: margin; left: 8px; padding: 0 4px; color: {MUTED}; }}
QPushButton {{ background: #313743; border: 1px solid #414958; border-radius: 4px; padding: 5px 12px; }}
QPushButton:hover {{ background: #3a4250; }}
QPushButton:pressed {{ background: #2a2f38; }}
QPushButton:disabled {{ color: #5b6270; background: #2a2e36; border-color: #333842; }}
QPushButton#primary {{ background: #1f6fb2; border-color: #2b82cc; color: white; font-weight: 600; }}
QPushButton#primary:hover {{ background: #2580cb; }}
QPushButton#primary:disabled {{ background: #27445e; color: #8aa2b8; }}
QStatusBar {{ background: {PANEL}; color: {TEXT}; }}
QStatusBar QLabel {{ padding: 0 8px; }}
QLabel#caption {{ color: {MUTED}; }}
QLabel#heading {{ font-size: 13pt; font-weight: 600; }}
QScrollArea {{ border: none; }}
QToolTip {{ background: {PANEL}; color: {TEXT}; border: 1px solid #414958; }}
"""


def apply(app: QApplication) -> None:
    """Give `app` the dark theme and set pyqtgraph's defaults (row-major images, antialiased curves)."""
    app.setStyle("Fusion")
    palette = QPalette()
    roles = {
        QPalette.ColorRole.Window: BACKGROUND, QPalette.ColorRole.WindowText: TEXT,
        QPalette.ColorRole.Base: BASE, QPalette.ColorRole.AlternateBase: PANEL,
        QPalette.ColorRole.Text: TEXT, QPalette.ColorRole.Button: PANEL,
        QPalette.ColorRole.ButtonText: TEXT, QPalette.ColorRole.Highlight: "#2b6cb0",
        QPalette.ColorRole.HighlightedText: "#ffffff", QPalette.ColorRole.ToolTipBase: PANEL,
        QPalette.ColorRole.ToolTipText: TEXT, QPalette.ColorRole.PlaceholderText: MUTED,
        QPalette.ColorRole.Link: ACCENT,
    }
    for role, colour in roles.items():
        palette.setColor(role, QColor(colour))
    for role in (QPalette.ColorRole.Text, QPalette.ColorRole.ButtonText, QPalette.ColorRole.WindowText):
        palette.setColor(QPalette.ColorGroup.Disabled, role, QColor("#5b6270"))
    app.setPalette(palette)
    font = QFont(app.font())
    font.setPointSizeF(max(font.pointSizeF(), 10.0))
    app.setFont(font)
    app.setStyleSheet(STYLE_SHEET)
    configure_pyqtgraph()


def configure_pyqtgraph() -> None:
    """Row-major images (arrays index [row, column] like NumPy), dark plots, antialiased lines."""
    pg.setConfigOptions(imageAxisOrder="row-major", background=BASE, foreground=TEXT, antialias=True)


def plain_axes(plot, minor_ticks: bool = False) -> None:
    """Show axis values as they are (no "(x0.001)" SI rescaling of the labels) and, unless `minor_ticks`,
    only major ticks and grid lines: the minor grid costs a live plot ~10× more painting time."""
    for name in ("left", "bottom"):
        axis = plot.getAxis(name)
        axis.enableAutoSIPrefix(False)
        if not minor_ticks:
            axis.setStyle(maxTickLevel=0)


def pen(index: int, width: float = 2.0, alpha: int = 255):
    """The pen of series `index` (cycling through SERIES)."""
    colour = QColor(SERIES[index % len(SERIES)])
    colour.setAlpha(alpha)
    return pg.mkPen(colour, width=width)
