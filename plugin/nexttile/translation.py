"""User-visible strings through Qt's translation system, and the plugin's translator
(i18n/nexttile_<language>.qm, when one exists for the QGIS user locale)."""

import os

from qgis.core import QgsSettings
from qgis.PyQt.QtCore import QCoreApplication, QLocale, QTranslator

#: The context of every NextTile string: the one pylupdate5 files a plain `tr("...")`
#: call under, so the .ts it writes (see i18n/README.md) matches what runs.
CONTEXT = "@default"


def tr(text):
    """Translates a user-visible string (context CONTEXT)."""
    return QCoreApplication.translate(CONTEXT, text)


def install_translator():
    """Installs i18n/nexttile_<language>.qm for the QGIS user locale (e.g. `de` of
    `de_CH`) and returns the translator; None when there is no such file."""
    locale = QgsSettings().value("locale/userLocale", "", type=str) or QLocale().name()
    path = os.path.join(os.path.dirname(__file__), "i18n", f"nexttile_{locale[:2]}.qm")
    translator = QTranslator()
    if not os.path.isfile(path) or not translator.load(path):
        return None
    QCoreApplication.installTranslator(translator)
    return translator
