"""Looking inside a network: the layer-by-layer summary (shapes, parameters, MACs, receptive
fields) and probes (feature maps, kernel tiles, activation and gradient statistics)."""

from .probes import conv_layers, feature_maps, kernel_grid, layer_statistics
from .summary import LayerRow, ModelSummary, summary, summary_cli

__all__ = ["LayerRow", "ModelSummary", "summary", "summary_cli",
           "conv_layers", "feature_maps", "kernel_grid", "layer_statistics"]
