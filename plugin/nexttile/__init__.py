"""NextTile QGIS plugin: a thin client of the NextTile daemon."""


def classFactory(iface):  # noqa: N802 (QGIS API name)
    """QGIS entry point; imports lazily so loading QGIS stays fast."""
    from .plugin import NextTilePlugin

    return NextTilePlugin(iface)
