"""The `nexttile` Processing algorithms, one per module beside their shared base."""

from .create_project import CreateProjectAlgorithm
from .export import ExportAlgorithm
from .retrain import RetrainAlgorithm
from .score import ScoreAlgorithm
from .send_labels import SendLabelsAlgorithm
from .suggest import SuggestAlgorithm

ALGORITHMS = [
    CreateProjectAlgorithm,
    ScoreAlgorithm,
    SuggestAlgorithm,
    SendLabelsAlgorithm,
    RetrainAlgorithm,
    ExportAlgorithm,
]
