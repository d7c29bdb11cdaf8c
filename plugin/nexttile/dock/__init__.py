"""The main NextTile dock (view.py: the widgets; controller.py: the logic)."""

from .controller import AOI_CHOICES, LABELS_LAYER, SUGGESTIONS_LAYER, DockController, DockForm
from .view import NextTileDock

__all__ = ["AOI_CHOICES", "LABELS_LAYER", "SUGGESTIONS_LAYER", "DockController", "DockForm", "NextTileDock"]
