"""The review panel: walks the suggestions one by one with the keyboard (panel.py: the
widgets; controller.py: the logic; queue.py: the labels waiting for the daemon;
history.py: the round history chart)."""
