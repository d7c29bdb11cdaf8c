"""The round history as a small bar chart (QPainter, no dependencies): per round, the
labels added stacked by class, and the agreement of the previous head with the analyst
on the newly labelled tiles written above the bar."""

from qgis.PyQt.QtCore import QRectF, Qt
from qgis.PyQt.QtGui import QColor, QFont, QPainter
from qgis.PyQt.QtWidgets import QSizePolicy, QWidget

from ..translation import tr

PALETTE = ["#4e79a7", "#f28e2b", "#59a14f", "#e15759", "#76b7b2", "#edc948", "#b07aa1", "#ff9da7", "#9c755f", "#bab0ac"]
UNUSABLE_COLOUR = "#555555"



def round_rows(rounds):
    """(number, added per class, agreed, compared, trained tiles) per round, from
    GET /projects/{id}/rounds."""
    rows = []
    for r in rounds or []:
        summary = r.get("summary") or {}
        agreement = summary.get("agreement") or {}
        retrained = summary.get("retrained") or {}
        rows.append((
            int(r.get("number") or 0),
            dict(agreement.get("added") or {}),
            int(agreement.get("agreed") or 0),
            int(agreement.get("compared") or 0),
            retrained.get("labelled_tiles"),
        ))
    return rows


def describe(rounds):
    """One line per round, for the tooltip and the panel's text."""
    lines = []
    for number, added, agreed, compared, trained in round_rows(rounds):
        per_class = ", ".join(f"{c} {n}" for c, n in sorted(added.items(), key=lambda cn: -cn[1]))
        rate = f"{agreed}/{compared} ({100.0 * agreed / compared:.0f} %)" if compared else tr("n/a")
        lines.append(tr("Round {n}: +{added} labels ({per_class}); trained on {trained} tiles; agreement {rate}").format(
            n=number, added=sum(added.values()), per_class=per_class or "-", trained=trained, rate=rate))
    return lines


class HistoryChart(QWidget):
    """Bars of labels added per round, stacked by class; agreement above each bar."""

    def __init__(self, parent=None):
        super().__init__(parent)
        self.rounds = []
        self.classes = []
        self.setMinimumHeight(110)
        self.setSizePolicy(QSizePolicy.Expanding, QSizePolicy.Fixed)

    def set_rounds(self, rounds, classes):
        self.rounds = list(rounds or [])
        self.classes = list(classes or [])
        self.setToolTip("\n".join(describe(self.rounds)))
        self.update()

    def colour(self, cls):
        if cls == "unusable":
            return QColor(UNUSABLE_COLOUR)
        i = self.classes.index(cls) if cls in self.classes else len(self.classes)
        return QColor(PALETTE[i % len(PALETTE)])

    def paintEvent(self, event):  # noqa: N802 (Qt API name)
        p = QPainter(self)
        p.setRenderHint(QPainter.Antialiasing)
        rows = round_rows(self.rounds)
        w, h = self.width(), self.height()
        small = QFont(self.font())
        small.setPointSizeF(max(6.0, small.pointSizeF() * 0.85))
        p.setFont(small)
        if not rows:
            p.setPen(self.palette().color(self.foregroundRole()))
            p.drawText(QRectF(0, 0, w, h), Qt.AlignCenter, tr("No round yet: label, then Retrain"))
            return
        top, bottom, left = 16.0, h - 16.0, 4.0
        most = max(1, max(sum(r[1].values()) for r in rows))
        slot = (w - left) / max(len(rows), 1)
        bar = min(36.0, slot * 0.6)
        for k, (number, added, agreed, compared, _) in enumerate(rows):
            x = left + k * slot + (slot - bar) / 2
            y = bottom
            for cls, n in sorted(added.items(), key=lambda cn: (cn[0] == "unusable", -cn[1])):
                height = (bottom - top) * n / most
                p.fillRect(QRectF(x, y - height, bar, height), self.colour(cls))
                y -= height
            p.setPen(self.palette().color(self.foregroundRole()))
            p.drawText(QRectF(x - slot / 2, bottom, bar + slot, 16), Qt.AlignHCenter | Qt.AlignTop, tr("R{n}").format(n=number))
            rate = f"{100.0 * agreed / compared:.0f}%" if compared else "–"
            p.drawText(QRectF(x - slot / 2, y - 16, bar + slot, 16), Qt.AlignHCenter | Qt.AlignBottom, rate)
