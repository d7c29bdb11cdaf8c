"""The plugin's user settings (QgsSettings, never project files): the review panel's
keyboard map, zoom margin and label batching, and the daemon's last-known lists."""

import json

from qgis.core import QgsApplication, QgsSettings
from qgis.PyQt.QtGui import QKeySequence

KEYS = "nexttile/review/keys"
MARGIN = "nexttile/review/margin_tiles"
BATCH = "nexttile/review/batch"
AUTO_RETRAIN = "nexttile/review/auto_retrain"
QUEUE_FILE = "nexttile/review/queue_file"
HEALTH_CACHE = "nexttile/health_cache"

#: Answers that are not a class; a class answer is "class:<name>".
SKIP, UNUSABLE, UNDO, RETRAIN = "skip", "unusable", "undo", "retrain"
#: Keys of the first classes, then letters that no other action uses.
CLASS_KEYS = list("1234567890") + [c for c in "ABCDEFGHIJKLMNOPQTVWXY"]
DEFAULT_ACTION_KEYS = {SKIP: "S", UNUSABLE: "U", UNDO: "Backspace", RETRAIN: "R"}

# Built-in lists for when no daemon has answered yet (GET /health has the real ones).
FALLBACK_STRATEGIES = ["auto", "top_k", "random", "coreset", "clustering", "mcfps", "typiclust", "probcover"]
FALLBACK_METRICS = ["entropy", "bald", "margin", "least_confidence", "variation_ratio", "predicted_loss"]
# The selection defaults for when no daemon has answered yet: GET /health's `defaults`
# (the same constants the CLI's flags and the daemon's request bodies use) replace them.
FALLBACK_DEFAULTS = {"strategy": "auto", "budget": 20, "max_budget": 10000, "mc_passes": 20,
                     "max_mc_passes": 1000, "min_spacing_m": 0.0, "seed": 0}


def normalize_key(text):
    """A key as QKeySequence writes it ("s" → "S", "backspace" → "Backspace")."""
    return QKeySequence(str(text)).toString()


def default_keymap(classes):
    """Class i gets CLASS_KEYS[i] (1–9, 0, then letters that no action uses)."""
    keys = {f"class:{c}": CLASS_KEYS[i] for i, c in enumerate(classes) if i < len(CLASS_KEYS)}
    keys.update(DEFAULT_ACTION_KEYS)
    return keys


def keymap(classes):
    """The keyboard map for `classes`: the defaults overridden by the user's settings
    (action → key, e.g. {"class:Forest": "F", "skip": "Space"})."""
    keys = default_keymap(classes)
    raw = QgsSettings().value(KEYS, "", type=str) or ""
    if raw:
        try:
            saved = json.loads(raw)
        except ValueError:
            saved = {}
        if isinstance(saved, dict):
            keys.update({str(k): str(v) for k, v in saved.items() if v})
    return {action: normalize_key(k) for action, k in keys.items()}


def save_keymap(keys):
    """Stores the user's keyboard map (action → key)."""
    QgsSettings().setValue(KEYS, json.dumps({k: normalize_key(v) for k, v in keys.items()}))


def margin_tiles():
    """How much ground the canvas shows around a tile under review, in tile widths on
    each side (default 2)."""
    return QgsSettings().value(MARGIN, 2.0, type=float)


def batch_size():
    """Labels posted to the daemon per request (default 5)."""
    return max(1, QgsSettings().value(BATCH, 5, type=int))


def auto_retrain():
    """Whether answering the last suggestion of a round starts the retrain."""
    return QgsSettings().value(AUTO_RETRAIN, True, type=bool)


def queue_file():
    """Where labels wait until the daemon has acknowledged them: the QGIS profile folder
    unless the setting names another file."""
    import os

    path = QgsSettings().value(QUEUE_FILE, "", type=str)
    return path or os.path.join(QgsApplication.qgisSettingsDirPath(), "nexttile", "pending_labels.json")


def remember_health(health):
    """Keeps the daemon's strategy and metric lists for the next start (no network then)."""
    keep = {k: health.get(k) for k in ("strategies", "default_strategy", "metrics", "unusable_class", "defaults")
            if health.get(k)}
    QgsSettings().setValue(HEALTH_CACHE, json.dumps(keep))


def daemon_lists():
    """(strategies, metrics, default strategy) as the daemon last reported them, else
    the built-in lists."""
    try:
        cached = json.loads(QgsSettings().value(HEALTH_CACHE, "", type=str) or "{}")
    except ValueError:
        cached = {}
    strategies = cached.get("strategies") or FALLBACK_STRATEGIES
    metrics = cached.get("metrics") or FALLBACK_METRICS
    return list(strategies), list(metrics), cached.get("default_strategy") or "auto"


def daemon_defaults(health=None):
    """The selection defaults (budget, MC passes, spacing and their limits) of `health`
    (a GET /health answer), else as the daemon last reported them, else the built-in
    ones; a missing or malformed entry falls back to the built-in value."""
    if health is None:
        try:
            health = json.loads(QgsSettings().value(HEALTH_CACHE, "", type=str) or "{}")
        except ValueError:
            health = {}
    given = health.get("defaults") if isinstance(health, dict) else None
    given = given if isinstance(given, dict) else {}
    out = dict(FALLBACK_DEFAULTS)
    for key, fallback in FALLBACK_DEFAULTS.items():
        value = given.get(key)
        if isinstance(value, (int, float)) and not isinstance(value, bool) and not isinstance(fallback, str):
            out[key] = type(fallback)(value)
        elif isinstance(value, str) and isinstance(fallback, str):
            out[key] = value
    return out
